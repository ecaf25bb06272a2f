//! The network (L4) filter against a real Envoy 1.40 in front of tcp_proxy: every connection
//! failure gets the right verdict in the tcp_proxy access log
//! (`%FILTER_STATE(wasm.meshtriage:PLAIN)%`) and in `meshtriage_tcp_failures_total`; clean
//! connections are counted and nothing more. And the network filter in front of an HTTP
//! connection manager shares one module and one VM with the HTTP filter without double counting.

use meshtriage_core::metrics::{FAILURES, REQUESTS, TCP_CONNECTIONS, TCP_FAILURES};
use meshtriage_envoy_test::tcp_bed::{
    self, connect, echo_roundtrip, read_to_end, reset_close, send_and_wait_end, TcpBed,
};
use meshtriage_envoy_test::verdict;
use std::io::{Read, Write};
use std::net::Shutdown;

/// What a failed connection must show.
struct Want {
    scn: &'static str,
    dir: &'static str,
    layer: &'static str,
    class: &'static str,
    origin: &'static str,
    side: &'static str,
    flags: Option<&'static str>,
}

const fn want(
    scn: &'static str,
    dir: &'static str,
    class: &'static str,
    origin: &'static str,
    side: &'static str,
) -> Want {
    Want {
        scn,
        dir,
        layer: "l4",
        class,
        origin,
        side,
        flags: None,
    }
}

impl Want {
    const fn flags(mut self, flags: &'static str) -> Self {
        self.flags = Some(flags);
        self
    }

    fn labels(&self) -> [(&str, &str); 3] {
        [
            ("dir", self.dir),
            ("layer", self.layer),
            ("class", self.class),
        ]
    }
}

/// Runs `drive` (one connection through listener `w.scn`) and checks the access-log verdict
/// and the failure counter (+1). Returns the access-log line.
fn expect_failure(b: &TcpBed, w: &Want, drive: impl FnOnce(u16)) -> String {
    expect_failure_at(b, w, 1, drive)
}

fn expect_failure_at(b: &TcpBed, w: &Want, nth_line: usize, drive: impl FnOnce(u16)) -> String {
    let before = b.envoy.metric(TCP_FAILURES, &w.labels());
    drive(b.port(w.scn));
    let mut bad = Vec::new();
    let line = b.wait_log(w.scn, nth_line).unwrap_or_default();
    match verdict::from_access_log(&line) {
        Some(v) => {
            for (what, got, want) in [
                ("layer", v.layer.as_str(), w.layer),
                ("class", v.class(), w.class),
                ("origin", v.get("origin").unwrap_or(""), w.origin),
                ("side", v.get("side").unwrap_or(""), w.side),
                ("dir", v.get("dir").unwrap_or(""), w.dir),
                ("hop", v.get("hop").unwrap_or(""), "tcpbed.test"),
            ] {
                if got != want {
                    bad.push(format!("access log {what}: got {got:?}, want {want:?}"));
                }
            }
            if let Some(f) = w.flags {
                if v.get("flags") != Some(f) {
                    bad.push(format!("flags: got {:?}, want {f:?}", v.get("flags")));
                }
            }
        }
        None => bad.push(format!("access log: no verdict in {line:?}")),
    }
    let after = b.envoy.wait_metric(TCP_FAILURES, &w.labels(), before + 1.0);
    if after != before + 1.0 {
        bad.push(format!(
            "{TCP_FAILURES}{:?}: {before} -> {after}, want +1",
            w.labels()
        ));
    }
    assert!(
        bad.is_empty(),
        "{}:\n  {}\n{}",
        w.scn,
        bad.join("\n  "),
        b.envoy.diagnostics()
    );
    line
}

#[test]
fn it_classifies_failed_connects_as_l4_upstream() {
    let b = TcpBed::start("tcp-connect");
    let line = expect_failure(
        &b,
        &want(
            "refused",
            "outbound",
            "connect_refused",
            "proxy",
            "upstream",
        )
        .flags("UF,URX"),
        |port| {
            send_and_wait_end(port, b"hello");
        },
    );
    let v = verdict::from_access_log(&line).unwrap();
    assert_eq!(
        v.get("detail"),
        Some("delayed connect error: Connection refused"),
        "{line}"
    );
    expect_failure(
        &b,
        &want(
            "timeout",
            "outbound",
            "connect_timeout",
            "proxy",
            "upstream",
        )
        .flags("UF,URX"),
        |port| {
            send_and_wait_end(port, b"hello");
        },
    );
    let line = expect_failure(
        &b,
        &want(
            "tls_upstream",
            "outbound",
            "tls_protocol_error",
            "proxy",
            "upstream",
        )
        .flags("UF,URX"),
        |port| {
            send_and_wait_end(port, b"hello");
        },
    );
    assert!(
        verdict::from_access_log(&line)
            .unwrap()
            .get("detail")
            .unwrap()
            .starts_with("TLS_error:"),
        "{line}"
    );
    // max_connections 1: a held connection, then a second one overflows the circuit breaker.
    let mut held = connect(b.port("cb"));
    echo_roundtrip(&mut held, b"hold");
    expect_failure(
        &b,
        &want(
            "cb",
            "outbound",
            "circuit_breaker_open",
            "proxy",
            "upstream",
        )
        .flags("UO"),
        |port| {
            send_and_wait_end(port, b"hello");
        },
    );
    drop(held);
}

#[test]
fn it_classifies_how_connections_end() {
    let b = TcpBed::start("tcp-ends");
    expect_failure(
        &b,
        &want(
            "reset",
            "outbound",
            "connection_terminated",
            "proxy",
            "upstream",
        )
        .flags("UR"),
        |port| {
            send_and_wait_end(port, b"hello");
        },
    );
    expect_failure(
        &b,
        &want(
            "duration",
            "outbound",
            "max_duration_reached",
            "proxy",
            "local",
        )
        .flags("DT"),
        |port| {
            send_and_wait_end(port, b"hello");
        },
    );
    let line = expect_failure(
        &b,
        &want("rbac", "inbound", "authz_denied", "proxy", "local"),
        |port| {
            send_and_wait_end(port, b"hello");
        },
    );
    assert_eq!(
        verdict::from_access_log(&line).unwrap().get("detail"),
        Some("rbac_access_denied_matched_policy[deny-all]")
    );
    let line = expect_failure(
        &b,
        &want(
            "tls_downstream",
            "inbound",
            "downstream_tls_error",
            "client",
            "downstream",
        ),
        |port| {
            send_and_wait_end(port, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n");
        },
    );
    assert!(
        line.contains("HTTP_REQUEST"),
        "the detail names the TLS error: {line}"
    );
    expect_failure(
        &b,
        &want(
            "client_gone",
            "inbound",
            "downstream_disconnect",
            "client",
            "downstream",
        ),
        |port| {
            let mut s = connect(port);
            echo_roundtrip(&mut s, b"hello");
            reset_close(s);
        },
    );
    // The idle timeout sets no flag and no reason: Envoy closes a quiet connection itself.
    expect_failure(
        &b,
        &want("idle", "outbound", "idle_timeout", "proxy", "local"),
        |port| {
            let mut s = connect(port);
            echo_roundtrip(&mut s, b"hello");
            assert!(read_to_end(&mut s).is_empty());
        },
    );
    assert!(tcp_bed::IDLE_TIMEOUT.as_nanos() >= u128::from(meshtriage_core::tcp::IDLE_QUIET_NANOS));
}

#[test]
fn clean_connections_are_counted_not_failed() {
    let b = TcpBed::start("tcp-clean");
    let conns = |dir| b.envoy.metric(TCP_CONNECTIONS, &[("dir", dir)]);
    let before = conns("outbound");
    // The client closes first; the upstream answers with FIN.
    let mut s = connect(b.port("clean"));
    echo_roundtrip(&mut s, b"ping");
    s.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut s).is_empty());
    drop(s);
    let line = b.wait_log("clean", 1).expect("access log line");
    assert_eq!(verdict::from_access_log(&line), None, "{line}");
    assert!(line.contains(" rx=4 tx=4 "), "{line}");
    assert_eq!(
        b.envoy
            .wait_metric(TCP_CONNECTIONS, &[("dir", "outbound")], before + 1.0),
        before + 1.0
    );
    assert_eq!(
        b.envoy.metric(TCP_FAILURES, &[]),
        0.0,
        "{}",
        b.envoy.prometheus()
    );
}

/// Sends `n` keep-alive GETs of `paths` on one connection (the last with `connection: close`)
/// and returns the statuses.
fn http_on_one_connection(port: u16, paths: &[&str]) -> Vec<u16> {
    let mut s = connect(port);
    let mut statuses = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let close = if i + 1 == paths.len() {
            "connection: close\r\n"
        } else {
            ""
        };
        write!(s, "GET {path} HTTP/1.1\r\nhost: test.local\r\n{close}\r\n").unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        statuses.push(head[9..12].parse().unwrap());
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
    }
    assert!(read_to_end(&mut s).is_empty());
    statuses
}

#[test]
fn network_and_http_filters_share_one_vm_without_double_counting() {
    let b = TcpBed::start("tcp-hcm");
    let out = [("dir", "outbound")];
    assert_eq!(
        http_on_one_connection(b.http_port, &["/ok", "/ok", "/status/503"]),
        [200, 200, 503]
    );
    assert_eq!(http_on_one_connection(b.http_port, &["/ok"]), [200]);
    let e = &b.envoy;
    assert_eq!(
        e.wait_metric(TCP_CONNECTIONS, &out, 2.0),
        2.0,
        "{}",
        e.diagnostics()
    );
    assert_eq!(
        e.wait_metric(REQUESTS, &out, 4.0),
        4.0,
        "{}",
        e.diagnostics()
    );
    let app_error = [("dir", "outbound"), ("class", "app_error")];
    assert_eq!(e.wait_metric(FAILURES, &app_error, 1.0), 1.0);
    // Every series once: HTTP counters only from the HTTP filter, tcp_* only from the network
    // filter; neither an HTTP failure nor a client closing is a connection failure.
    let prom = e.prometheus();
    assert_eq!(
        meshtriage_envoy_test::envoy::metric_in(&prom, REQUESTS, &[]),
        4.0
    );
    assert_eq!(
        meshtriage_envoy_test::envoy::metric_in(&prom, FAILURES, &[]),
        1.0
    );
    assert_eq!(
        meshtriage_envoy_test::envoy::metric_in(&prom, TCP_CONNECTIONS, &[]),
        2.0
    );
    assert_eq!(
        meshtriage_envoy_test::envoy::metric_in(&prom, TCP_FAILURES, &[]),
        0.0,
        "{prom}"
    );
    // One VM: the HTTP filter's verdict still reaches the HCM access log.
    let line = e.wait_access_log("code=503").unwrap();
    assert_eq!(
        verdict::from_access_log(&line).unwrap().class(),
        "app_error"
    );
    assert!(
        e.log_text().matches("panic").count() == 0,
        "{}",
        e.log_tail(40)
    );
}
