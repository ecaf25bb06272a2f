//! What a plugin failure costs users, against a real Envoy 1.40. meshtriage itself cannot be
//! made to panic (no panicking code paths outside tests: see docs/hardening.md), so a fixture
//! plugin (`envoy-test/fixtures/panic-plugin`, with meshtriage's panic hook) panics in
//! `on_http_response_headers`. With `failure_policy: FAIL_OPEN` — what every shipped
//! meshtriage config uses — the request that hit the panic is lost (Envoy answers it with 503
//! `wasm_fail_stream`), and every later request bypasses the dead plugin and gets the
//! upstream's answer; the panic hook's line is in Envoy's log. With `FAIL_CLOSED` every request
//! after the panic is a 503. Hence the static no-panic rules: FAIL_OPEN is the second line.

use meshtriage_envoy_test::bed::{cluster, file_access_log, router, string_value};
use meshtriage_envoy_test::envoy::Envoy;
use meshtriage_envoy_test::{client, paths, upstream};
use serde_json::{json, Value};
use std::path::PathBuf;

fn fixture() -> PathBuf {
    let p = paths::root().join("target/wasm32-wasip1/release/meshtriage_panic_fixture.wasm");
    assert!(p.exists(), "{} is missing: run `make wasm`", p.display());
    p
}

fn listener(name: &str, port: u16, policy: &str, log: &str) -> Value {
    let wasm = json!({"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": name, "root_id": "", "configuration": string_value(""),
                   "vm_config": {"runtime": "envoy.wasm.runtime.v8", "vm_id": name,
                                 "code": {"local": {"filename": fixture().display().to_string()}}},
                   "failure_policy": policy}}});
    let hcm = json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": name, "access_log": file_access_log(log),
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "c_app", "timeout": "5s"}}]}]},
        "http_filters": [wasm, router()]}});
    json!({"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
           "filter_chains": [{"filters": [hcm]}]})
}

#[test]
fn with_fail_open_a_plugin_panic_costs_only_the_request_that_hit_it() {
    let dir = paths::scratch("fail-open");
    let app = upstream::http1();
    let log = dir.join("access.log").display().to_string();
    let cfg = json!({
        "node": {"id": "fail-open", "cluster": "bed"},
        "static_resources": {
            "listeners": [listener("open", 0, "FAIL_OPEN", &log), listener("closed", 0, "FAIL_CLOSED", &log)],
            "clusters": [cluster("c_app", app.port, json!({}))]
        }
    });
    let envoy = Envoy::start(&cfg, &dir);
    let (open, closed) = (envoy.port("open"), envoy.port("closed"));
    let get = |port: u16, scn: &str| {
        client::request(port, "GET", "/ok", &[("x-scn", scn)], b"")
            .unwrap_or_else(|e| panic!("{e}\n{}", envoy.diagnostics()))
    };
    // The request whose callback traps is failed by Envoy (503 `wasm_fail_stream`) even with
    // FAIL_OPEN: Envoy 1.40 cannot resume a stream inside a dead VM. Every later request
    // bypasses the failed plugin and gets the upstream's answer.
    let first = get(open, "open-0");
    assert_eq!(first.status, 503, "{}", envoy.diagnostics());
    for i in 1..6 {
        let r = get(open, &format!("open-{i}"));
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "ok\n"),
            "request {i} after the plugin crashed\n{}",
            envoy.diagnostics()
        );
    }
    let line = envoy.wait_access_log("scn=open-0 ").unwrap();
    assert!(line.contains("details=wasm_fail_stream"), "{line}");
    // The hook said why, on one line, before the VM went.
    let hook_line = |text: &str| {
        text.lines().any(|l| {
            l.contains("[error]")
                && l.contains("meshtriage: panic: panicked at")
                && l.contains("deliberate panic in on_http_response_headers")
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !hook_line(&envoy.log_text()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        hook_line(&envoy.log_text()),
        "no one-line panic hook message\n{}",
        envoy.log_tail(60)
    );
    // Control: with FAIL_CLOSED the dead plugin fails every request.
    for i in 0..3 {
        let r = get(closed, &format!("closed-{i}"));
        assert_eq!(r.status, 503, "closed-{i}\n{}", envoy.diagnostics());
    }
}
