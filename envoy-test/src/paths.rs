//! Where the harness finds Envoy, the plugin and scratch space.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

/// The plugin: `MESHTRIAGE_WASM`, else the contract's release artifact.
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

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
