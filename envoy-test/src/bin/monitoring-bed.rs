//! A short, bounded scenario run through real Envoys with the plugin, for the monitoring tests
//! (istio/tests/test_monitoring.py): one HTTP bed and one TCP bed, traffic that makes every
//! plugin metric appear (failures of each layer, an inbound app close, a gRPC status,
//! hop-by-hop headers, a retry storm, failed large uploads, TCP connections and failures).
//!
//! Protocol on stdin/stdout: it prints `http ADMIN_PORT` and `tcp ADMIN_PORT` (Prometheus
//! scrapes `/stats/prometheus` there) once both Envoys are ready, runs the traffic when it reads
//! a line (so the counters rise while Prometheus watches), prints `done`, and keeps the Envoys
//! up until its standard input closes; each further line runs the traffic again.

use meshtriage_envoy_test::bed::{Bed, BedOptions};
use meshtriage_envoy_test::request;
use meshtriage_envoy_test::tcp_bed::{self, TcpBed};
use std::io::{BufRead, Write};

const CONFIG: &str = r#"{"large_payload_bytes": 10000, "retry_budget": {"ratio": 0.1, "window_seconds": 10, "min_requests": 5}}"#;

fn main() {
    let bed = Bed::start(
        "monitoring",
        BedOptions {
            plugin_config: CONFIG.into(),
            ..BedOptions::default()
        },
    );
    let tcp = TcpBed::start("monitoring-tcp");
    println!("http {}", bed.envoy.admin_port);
    println!("tcp {}", tcp.envoy.admin_port);
    std::io::stdout().flush().unwrap();
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    // One round of traffic per line read, until stdin closes.
    while stdin.read_line(&mut line).unwrap_or(0) > 0 {
        let send = |port: u16, method: &str, path: &str, body: &[u8]| {
            request(port, method, path, &[("x-scn", path)], body)
                .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", bed.envoy.diagnostics()))
        };
        // Every loop is bounded: about 150 requests in all.
        for _ in 0..10 {
            send(bed.port, "GET", "/app/ok", b"");
            send(bed.port, "GET", "/app/status/503", b""); // l7 app_error
            send(bed.port, "GET", "/uf", b""); // l4 connect_refused
            send(bed.port, "GET", "/app/hop/200", b""); // hop-by-hop headers
            send(bed.inbound_port, "GET", "/app/close", b""); // inbound connection_terminated
            send(bed.port, "GET", "/app/grpc-only/14", b""); // gRPC UNAVAILABLE: grpc_code
        }
        for _ in 0..40 {
            send(bed.port, "GET", "/retry/flaky/80", b""); // retry storm: budget counter and gauge
        }
        for _ in 0..6 {
            send(bed.port, "POST", "/app/rst-large/10000", &[b's'; 100]);
        }
        for _ in 0..5 {
            send(bed.port, "POST", "/app/rst-large/10000", &[b'L'; 20_000]); // payload gauge
        }

        for _ in 0..3 {
            // A clean connection: one echo round trip, then closed by us.
            tcp_bed::echo_roundtrip(&mut tcp_bed::connect(tcp.port("clean")), b"ping");
            // Failing ones: Envoy closes them (the helper's read is bounded by a timeout).
            tcp_bed::send_and_wait_end(tcp.port("refused"), b"ping");
            tcp_bed::send_and_wait_end(tcp.port("reset"), b"ping");
        }

        println!("done");
        std::io::stdout().flush().unwrap();
        line.clear();
    }
}
