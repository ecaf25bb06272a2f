#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code
//! Real data: the test bed's Envoy 1.40 with the plugin writes Istio's default text format and
//! Istio's JSON encoding, each line also carrying the plugin's verdict; every failure the
//! scenario matrix produces goes through it (HTTP/1.1, and its plain GETs again over HTTP/2 with
//! curl). Then `meshtriage logs` must judge each
//! line from its fields as the plugin judged the same request, and `meshtriage explain` must
//! read every local-reply body Envoy sent as the plugin's header verdict said.

use meshtriage_envoy_test::bed::{Bed, BedOptions};
use meshtriage_envoy_test::client::{self, Response};
use meshtriage_envoy_test::istio_log;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_meshtriage");

#[derive(Clone, Copy)]
enum Send {
    Get,
    Inbound,
    /// The second request finds the rate limit used up.
    Twice,
    /// The client leaves once the request reached the upstream.
    GiveUp,
    /// While two slow requests hold the circuit breaker.
    Overflow,
    /// Content-Length and chunked in one request: the codec rejects it.
    ClTe,
}

/// The scenario matrix's requests (tests/e2e_matrix.rs), HTTP/1.1, plus successes.
const REQUESTS: &[(&str, Send)] = &[
    ("/app/ok", Send::Get),
    ("/uf", Send::Get),
    ("/uct", Send::Get),
    ("/app/close", Send::Get),
    ("/app/rst", Send::Get),
    ("/app/close", Send::Inbound),
    ("/retry-uf", Send::Get),
    ("/uh", Send::Get),
    ("/tls/badca", Send::Get),
    ("/tls/badsan", Send::Get),
    ("/tls/nocert", Send::Get),
    ("/tls/plain", Send::Get),
    ("/tls/ok", Send::Get),
    ("/app/midbody-rst", Send::Get),
    ("/app/stall-body", Send::Get),
    // Slow answers come 2 s or more after the timer or the give-up they race with, as in
    // tests/e2e_matrix.rs: margins a loaded 2-core machine cannot eat.
    ("/cb/slow/4000", Send::GiveUp),
    ("/h2rst/x", Send::Get),
    ("/h2refused/x", Send::Get),
    ("/app/half-headers", Send::Get),
    ("/app/cl-te", Send::Get),
    ("/app/dup-cl", Send::Get),
    ("/app/dup-te", Send::Get),
    ("/h2/ok", Send::Get),
    ("/app/copied-te", Send::Get),
    ("/app/ok", Send::ClTe),
    ("/app/slow/3000", Send::Get),
    ("/pertry/slow/2500", Send::Get),
    ("/si/slow/3000", Send::Get),
    ("/umsdr/slow/3000", Send::Get),
    ("/cb/slow/10", Send::Overflow),
    ("/nc", Send::Get),
    ("/no/route/here", Send::Get),
    ("/deny", Send::Get),
    ("/extauthz/status/403", Send::Get),
    ("/jwt", Send::Get),
    ("/rl", Send::Twice),
    ("/fault", Send::Get),
    ("/drop", Send::Get),
    ("/app/status/503", Send::Get),
    ("/retry/status/503", Send::Get),
    ("/app/grpc-only/14", Send::Get),
    ("/grpc/grpc-trailers/13", Send::Get),
    ("/app/status/200", Send::Get),
];

/// Every class the matrix produces over HTTP/1.1.
const MATRIX_CLASSES: &[&str] = &[
    "connect_refused",
    "connect_timeout",
    "connection_terminated",
    "no_healthy_upstream",
    "tls_certificate_error",
    "tls_handshake_rejected",
    "tls_protocol_error",
    "response_truncated",
    "transfer_stalled",
    "downstream_disconnect",
    "stream_reset",
    "upstream_protocol_error",
    "downstream_protocol_error",
    "upstream_timeout",
    "idle_timeout",
    "max_duration_reached",
    "circuit_breaker_open",
    "cluster_not_found",
    "route_not_found",
    "authz_denied",
    "authn_failed",
    "rate_limited",
    "fault_injected",
    "load_shed",
    "app_error",
    "app_grpc_error",
];

fn wait(cond: &dyn Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send(bed: &Bed, path: &str, how: Send) -> Option<Response> {
    let get = |port: u16| client::request(port, "GET", path, &[], b"").ok();
    match how {
        Send::Get => get(bed.port),
        Send::Inbound => get(bed.inbound_port),
        Send::Twice => {
            let _ = get(bed.port);
            get(bed.port)
        }
        Send::GiveUp => {
            let active = || bed.envoy.stat("cluster.c_cb.upstream_rq_active") >= 1.0;
            let reached = client::request_then_close(bed.port, path, &[], &active);
            assert!(matches!(reached, Ok(true)), "never reached the upstream");
            wait(&|| bed.envoy.stat("cluster.c_cb.upstream_rq_active") < 1.0);
            None
        }
        Send::Overflow => std::thread::scope(|scope| {
            let stat = |n: &str| bed.envoy.stat(&format!("cluster.c_cb.{n}"));
            let holder = || {
                let _ = client::request(bed.port, "GET", "/cb/slow/3000", &[], b"");
            };
            let first = scope.spawn(holder);
            wait(&|| stat("upstream_rq_active") >= 1.0);
            let overflows = stat("upstream_rq_pending_overflow");
            let second = scope.spawn(holder);
            wait(&|| {
                stat("upstream_rq_pending_active") >= 1.0
                    || stat("upstream_rq_pending_overflow") > overflows
            });
            let r = get(bed.port);
            let _ = first.join();
            let _ = second.join();
            r
        }),
        Send::ClTe => {
            let raw = format!(
                "POST {path} HTTP/1.1\r\nhost: test.local\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            );
            client::send_raw(bed.port, raw.as_bytes())
                .ok()
                .and_then(|b| client::parse(&b))
        }
    }
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `meshtriage logs --format json --verdict-from WHICH FILE`: the rows by line number.
fn rows(file: &std::path::Path, which: &str) -> Vec<Value> {
    let out = Command::new(BIN)
        .args(["logs", "--format", "json", "--verdict-from", which])
        .arg(file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "meshtriage logs {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn key(row: &Value) -> String {
    format!(
        "{} {} origin={} side={}",
        row["layer"].as_str().unwrap_or(""),
        row["class"].as_str().unwrap_or(""),
        row["origin"].as_str().unwrap_or(""),
        row["side"].as_str().unwrap_or("")
    )
}

/// Evidence an access-log format does not carry, so the fields cannot show what the plugin
/// saw: said per class, checked to be the only differences.
fn known_gap(plugin: &Value, fields: Option<&Value>) -> Option<&'static str> {
    match (plugin["class"].as_str(), fields) {
        // Istio's formats have no %GRPC_STATUS%: a gRPC error in a 200 looks like a success.
        (Some("app_grpc_error"), None) => Some("no grpc-status in Istio's formats"),
        // The plugin saw `transfer-encoding: chunked` and no body chunk (l7, hint
        // broken_chunked_framing); the line only shows a reset after the response started (l4).
        (Some("response_truncated"), Some(f))
            if f["class"] == "response_truncated"
                && plugin["layer"] == "l7"
                && f["layer"] == "l4" =>
        {
            Some("response framing (chunked) is not in the access log")
        }
        _ => None,
    }
}

fn compare(file: &std::path::Path) -> (BTreeSet<String>, usize) {
    let by_plugin = rows(file, "plugin");
    let by_fields = rows(file, "fields");
    let at = |rows: &[Value], line: u64| rows.iter().find(|r| r["line"] == line).cloned();
    let mut problems = Vec::new();
    let mut classes = BTreeSet::new();
    let mut gaps = 0;
    for p in &by_plugin {
        let line = p["line"].as_u64().unwrap();
        classes.insert(p["class"].as_str().unwrap_or("").to_string());
        let f = at(&by_fields, line);
        if f.as_ref().map(key) == Some(key(p)) {
            continue;
        }
        if let Some(why) = known_gap(p, f.as_ref()) {
            gaps += 1;
            eprintln!("{}:{line}: {} ({why})", file.display(), key(p));
            continue;
        }
        problems.push(format!(
            "line {line}: plugin {} [{}], fields {}",
            key(p),
            p["plugin"].as_str().unwrap_or(""),
            f.as_ref().map_or("no failure".to_string(), key)
        ));
    }
    for f in &by_fields {
        if at(&by_plugin, f["line"].as_u64().unwrap()).is_none() {
            problems.push(format!(
                "line {}: fields {} but the plugin saw no failure",
                f["line"],
                key(f)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{}: {} disagreement(s):\n{}\n---- log ----\n{}",
        file.display(),
        problems.len(),
        problems.join("\n"),
        lines(file).join("\n")
    );
    (classes, gaps)
}

#[test]
fn logs_agree_with_the_plugin_and_explain_reads_every_local_reply() {
    let bed = Bed::start(
        "cli-logs",
        BedOptions {
            istio_logs: true,
            ..BedOptions::default()
        },
    );
    let mut bodies = Vec::new();
    for (path, how) in REQUESTS {
        let Some(r) = send(&bed, path, *how) else {
            continue;
        };
        let verdict = r.header("x-meshtriage").map(str::to_string);
        if let (Some(v), false) = (verdict, r.body.is_empty()) {
            bodies.push((
                path.to_string(),
                v,
                String::from_utf8_lossy(&r.body).into_owned(),
            ));
        }
    }
    // The plain GETs again over HTTP/2 (curl, h2c): `%PROTOCOL%` and the stream-level resets
    // differ, the judgement from the line's fields must not.
    let mut h2_sent = 0;
    for (path, how) in REQUESTS {
        if matches!(how, Send::Get) {
            let _ = client::request_h2(bed.port, path, &[]);
            h2_sent += 1;
        }
    }
    // Every request's line in both logs (Envoy flushes access logs about once a second).
    let text = istio_log::text_log(&bed.dir);
    let json = istio_log::json_log(&bed.dir);
    // + the rate limit's first request and the two breaker holders
    let want = REQUESTS.len() + 3 + h2_sent;
    wait(&|| lines(&text).len() >= want && lines(&json).len() >= want);
    std::thread::sleep(Duration::from_millis(1500));

    let (text_classes, text_gaps) = compare(&text);
    let (json_classes, json_gaps) = compare(&json);
    for c in MATRIX_CLASSES {
        assert!(text_classes.contains(*c), "no {c} in the text log");
        assert!(json_classes.contains(*c), "no {c} in the JSON log");
    }
    // The known gaps, once per protocol.
    assert!(
        text_gaps <= 6 && json_gaps <= 6,
        "more gaps than the known ones"
    );
    let h2_lines = lines(&text)
        .iter()
        .filter(|l| l.contains(" HTTP/2\" "))
        .count();
    assert!(
        h2_lines >= h2_sent,
        "{h2_lines} HTTP/2 lines for {h2_sent} requests"
    );

    // explain on every local-reply body Envoy wrote (the app's own bodies are not Envoy's).
    let mut explained = 0;
    let mut fixture = String::from(
        "# Local-reply bodies Envoy 1.40 sent in the scenario matrix (HTTP/1.1), with the plugin's\n\
         # class for the same request: request path, class, body. Written by tests/e2e_logs.rs\n\
         # (MESHTRIAGE_BLESS=1), read by tests/cli.rs.\n",
    );
    for (path, verdict, body) in &bodies {
        let out = Command::new(BIN)
            .args(["explain", "--format", "json", body.as_str()])
            .output()
            .unwrap();
        let plugin_class = verdict
            .split(';')
            .find_map(|p| p.strip_prefix("class="))
            .unwrap_or("");
        // Not Envoy's text: the app's own bodies, and the body ext_authz passes on from the
        // authorization service (`status 403`).
        if verdict.contains("origin=app") || path.starts_with("/extauthz/") {
            continue;
        }
        assert_eq!(
            out.status.code(),
            Some(0),
            "{path}: explain {body:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let e: Value = serde_json::from_slice(&out.stdout).unwrap();
        let got = e["verdicts"][0]["class"].as_str().unwrap_or("");
        // Envoy's body for a failed connect is the same for a refused port and a TLS failure:
        // then the plugin's class must be among those explain names as not ruled out.
        let also: Vec<&str> = e["verdicts"][0]["could_also_be"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["class"].as_str())
            .collect();
        assert!(
            got == plugin_class || also.contains(&plugin_class),
            "{path}: explain {body:?} → {e}, plugin said {plugin_class}"
        );
        eprintln!("explain ok: {path}: {body:?} → {got}");
        explained += 1;
        fixture.push_str(&format!("{path}\t{plugin_class}\t{}\n", body.trim_end()));
    }
    assert!(explained >= 10, "only {explained} local-reply bodies");
    let committed =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/local-replies.tsv");
    if std::env::var_os("MESHTRIAGE_BLESS").is_some() {
        std::fs::write(&committed, &fixture).unwrap();
    } else {
        assert_eq!(
            std::fs::read_to_string(&committed).unwrap_or_default(),
            fixture,
            "tests/fixtures/local-replies.tsv is stale: MESHTRIAGE_BLESS=1 cargo test -p meshtriage-cli --test e2e_logs"
        );
    }
}
