//! The connection test bed: one Envoy with a tcp_proxy listener per connection scenario, each
//! with the meshtriage network filter first (root id `meshtriage-tcp`), plus one listener where
//! the network filter sits in front of an HTTP connection manager that runs the HTTP filter
//! from the same module and VM. Plain TCP upstreams (echo, reset, a full accept backlog) live
//! here too. Every listener writes one tcp_proxy access-log line per connection:
//! `TCP scn=<listener> … verdict=%FILTER_STATE(wasm.meshtriage:PLAIN)%`.

use crate::bed::{self, cluster, hcm, http_wasm, listener, net_wasm, router, upstream_tls};
use crate::certs;
use crate::envoy::Envoy;
use crate::paths;
use crate::upstream::{self, Upstream};
use serde_json::{json, Value};
use socket2::{Domain, SockRef, Socket, Type};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// tcp_proxy `idle_timeout` of the `idle` listener. The plugin calls a close idle when the
/// connection was quiet for at least 1 s (`IDLE_QUIET_NANOS`); Envoy's timer closes it after at
/// least 1.5 s of quiet, and load can only make that later, so the margin cannot be eaten.
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(1500);
/// tcp_proxy `max_downstream_connection_duration` of the `duration` listener. Envoy flags the
/// close (`DT`) itself, so the verdict does not depend on when it fires.
pub const MAX_DURATION: Duration = Duration::from_millis(500);

/// The access-log line of every tcp_proxy listener (`scn` is the listener name).
pub fn tcp_access_format(scn: &str) -> String {
    format!(
        "TCP scn={scn} flags=%RESPONSE_FLAGS% tfr=%UPSTREAM_TRANSPORT_FAILURE_REASON% \
         term=%CONNECTION_TERMINATION_DETAILS% rx=%BYTES_RECEIVED% tx=%BYTES_SENT% \
         verdict=%FILTER_STATE(wasm.meshtriage:PLAIN)%\n"
    )
}

/// A tcp_proxy filter to `cluster` with a file access log; `extra` adds tcp_proxy fields.
pub fn tcp_proxy(scn: &str, cluster: &str, log: &str, extra: Value) -> Value {
    let mut cfg = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": scn, "cluster": cluster,
        "access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": log, "log_format": {"text_format_source": {"inline_string": tcp_access_format(scn)}}}}]});
    if let (Some(obj), Some(more)) = (cfg.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            obj.insert(k.clone(), v.clone());
        }
    }
    json!({"name": "envoy.filters.network.tcp_proxy", "typed_config": cfg})
}

/// Network RBAC that denies every connection (policy `deny-all`).
pub fn network_rbac_deny() -> Value {
    json!({"name": "envoy.filters.network.rbac", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC", "stat_prefix": "net_rbac",
        "rules": {"action": "DENY", "policies": {"deny-all": {
            "permissions": [{"any": true}], "principals": [{"any": true}]}}}}})
}

/// Echoes what it reads; closes (FIN) when the client does.
fn echo(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 || s.write_all(buf.get(..n).unwrap_or_default()).is_err() {
            break;
        }
    }
    let _ = s.shutdown(Shutdown::Both);
}

/// Reads the first bytes, then resets the connection (RST).
fn reset_after_read(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    let _ = s.read(&mut buf);
    let _ = SockRef::from(&s).set_linger(Some(Duration::ZERO));
}

pub fn tcp_echo() -> Upstream {
    upstream::serve(TcpListener::bind("127.0.0.1:0").unwrap(), echo)
}

pub fn tcp_reset() -> Upstream {
    upstream::serve(TcpListener::bind("127.0.0.1:0").unwrap(), reset_after_read)
}

/// A listener that never accepts and whose accept queue is full: new SYNs are dropped, so a
/// connect attempt hangs until the client's connect timeout.
pub struct FullBacklog {
    pub port: u16,
    _listener: Socket,
    _fillers: Vec<TcpStream>,
}

pub fn full_backlog() -> FullBacklog {
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    listener.bind(&addr.into()).unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            fillers.push(s);
        }
    }
    FullBacklog {
        port: addr.port(),
        _listener: listener,
        _fillers: fillers,
    }
}

/// The tcp_proxy scenarios: (listener name, direction).
pub const SCENARIOS: [(&str, &str); 11] = [
    ("refused", "OUTBOUND"),
    ("timeout", "OUTBOUND"),
    ("tls_upstream", "OUTBOUND"),
    ("tls_downstream", "INBOUND"),
    ("reset", "OUTBOUND"),
    ("idle", "OUTBOUND"),
    ("duration", "OUTBOUND"),
    ("cb", "OUTBOUND"),
    ("rbac", "INBOUND"),
    ("client_gone", "INBOUND"),
    ("clean", "OUTBOUND"),
];

/// A running connection bed: Envoy plus its upstreams, stopped on drop.
pub struct TcpBed {
    pub envoy: Envoy,
    /// The listener with the network filter in front of an HCM (with the HTTP filter).
    pub http_port: u16,
    _upstreams: Vec<Upstream>,
    _backlog: FullBacklog,
    _refused: paths::ClosedPort,
}

impl TcpBed {
    pub fn start(name: &str) -> TcpBed {
        let dir = paths::scratch(name);
        let certs = certs::generate(&dir.join("certs"));
        let (echo, reset, http) = (tcp_echo(), tcp_reset(), upstream::http1());
        let backlog = full_backlog();
        let log = dir.join("access.log").display().to_string();
        let wasm = paths::wasm().display().to_string();
        let net = || net_wasm(&wasm, "");
        let refused = paths::closed_port();
        // Every listener binds port 0; `port` looks up what the kernel chose.
        let mut listeners = Vec::new();
        for (scn, direction) in SCENARIOS {
            let (cluster, extra) = match scn {
                "refused" => ("c_refused", json!({})),
                "timeout" => ("c_backlog", json!({})),
                "tls_upstream" => ("c_tls_plain", json!({})),
                "reset" => ("c_reset", json!({})),
                "idle" => (
                    "c_echo",
                    json!({"idle_timeout": format!("{}s", IDLE_TIMEOUT.as_secs_f64())}),
                ),
                "duration" => (
                    "c_echo",
                    json!({"max_downstream_connection_duration": format!("{}s", MAX_DURATION.as_secs_f64())}),
                ),
                "cb" => ("c_cb", json!({})),
                _ => ("c_echo", json!({})),
            };
            let mut filters = vec![net()];
            if scn == "rbac" {
                filters.push(network_rbac_deny());
            }
            filters.push(tcp_proxy(scn, cluster, &log, extra));
            let tls = (scn == "tls_downstream").then(|| bed::downstream_tls(&certs, false));
            listeners.push(listener(scn, 0, Some(direction), filters, tls));
        }
        let routes =
            json!([{"match": {"prefix": "/"}, "route": {"cluster": "c_http", "timeout": "5s"}}]);
        listeners.push(listener(
            "http",
            0,
            Some("OUTBOUND"),
            vec![
                net(),
                hcm("http", routes, vec![http_wasm(&wasm, ""), router()], &log),
            ],
            None,
        ));
        let cfg = json!({
            "node": {"id": "tcp-bed-node", "cluster": "bed", "metadata": {"NAME": "tcpbed", "NAMESPACE": "test"}},
            "stats_config": {"stats_tags": bed::stats_tags()},
            "static_resources": {
                "listeners": listeners,
                "clusters": [
                    cluster("c_echo", echo.port, json!({})),
                    cluster("c_refused", refused.port, json!({})),
                    cluster("c_backlog", backlog.port, json!({"connect_timeout": "0.5s"})),
                    cluster("c_tls_plain", echo.port, upstream_tls(None, None)),
                    cluster("c_reset", reset.port, json!({})),
                    cluster("c_cb", echo.port, json!({"circuit_breakers": {"thresholds": [{"max_connections": 1}]}})),
                    cluster("c_http", http.port, bed::protocol(json!({"http_protocol_options": {}}))),
                ]
            }
        });
        let envoy = Envoy::start(&cfg, &dir);
        TcpBed {
            http_port: envoy.port("http"),
            envoy,
            _upstreams: vec![echo, reset, http],
            _backlog: backlog,
            _refused: refused,
        }
    }

    /// The port of the listener of scenario `scn`.
    pub fn port(&self, scn: &str) -> u16 {
        self.envoy.port(scn)
    }

    /// Waits (bounded) for the `n`-th access-log line of listener `scn` (1-based).
    pub fn wait_log(&self, scn: &str, n: usize) -> Option<String> {
        let needle = format!("TCP scn={scn} ");
        let deadline = Instant::now() + crate::envoy::WAIT;
        loop {
            let lines: Vec<String> = self
                .envoy
                .access_log_lines()
                .into_iter()
                .filter(|l| l.starts_with(&needle))
                .collect();
            if lines.len() >= n {
                return lines.into_iter().nth(n - 1);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A client connection to a bed listener (reads time out after 10 s).
pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Writes `data` and reads exactly `data.len()` bytes back (through an echo upstream).
pub fn echo_roundtrip(s: &mut TcpStream, data: &[u8]) {
    s.write_all(data).unwrap();
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, data);
}

/// Reads until the connection ends (EOF, reset or the read timeout); returns what came back.
pub fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(buf.get(..n).unwrap_or_default()),
            // A signal is not the end of the connection.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    out
}

/// Sends `data` (ignoring errors: Envoy may already have closed) and waits for the end.
pub fn send_and_wait_end(port: u16, data: &[u8]) -> Vec<u8> {
    let mut s = connect(port);
    let _ = s.write_all(data);
    read_to_end(&mut s)
}

/// Closes with a RST (SO_LINGER 0), as a client that crashed or gave up.
pub fn reset_close(s: TcpStream) {
    let _ = SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}
