//! Real L4 faults between network namespaces (iptables in the upstream's namespace): the
//! verdicts must name the transport problem, not the symptom it looks like at L7.
//! Needs root, `ip` and `iptables` (CI has them); elsewhere each test says why it skips.

use meshtriage_core::metrics::FAILURES;
use meshtriage_envoy_test::netlab::{self, Lab};
use meshtriage_envoy_test::verdict::{self, View};
use meshtriage_envoy_test::{request, Envoy, Response};

const CONFIG: &str = r#"{"large_payload_bytes": 100000}"#;

fn lab(n: u8, fault: Option<&str>) -> Option<(Lab, Envoy, u16)> {
    if let Err(why) = Lab::available() {
        meshtriage_suite::skip(&format!("the L4 lab {why}"));
        return None;
    }
    let lab = Lab::start(n);
    if let Some(f) = fault {
        for rule in netlab::fault(f) {
            lab.rule(&rule);
        }
    }
    let (envoy, port) = netlab::envoy(&lab, &format!("lab{n}"), CONFIG);
    Some((lab, envoy, port))
}

fn get(envoy: &Envoy, port: u16, path: &str) -> Response {
    request(port, "GET", path, &[("x-scn", path)], b"")
        .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", envoy.diagnostics()))
}

/// The verdict of `path`: from the header when present, else from the access log.
fn verdict_of(envoy: &Envoy, r: &Response, path: &str) -> (Option<View>, Option<View>) {
    let header = r
        .header("x-meshtriage")
        .map(|h| verdict::parse(h).remove(0));
    let line = envoy.wait_access_log(&format!("scn={path} "));
    (header, line.and_then(|l| verdict::from_access_log(&l)))
}

fn assert_verdict(envoy: &Envoy, v: &Option<View>, layer: &str, class: &str, hints: &[&str]) {
    let v = v
        .as_ref()
        .unwrap_or_else(|| panic!("no verdict for {class}\n{}", envoy.diagnostics()));
    assert_eq!(
        (v.layer.as_str(), v.class()),
        (layer, class),
        "{v:?}\n{}",
        envoy.diagnostics()
    );
    let mut got = v.hints();
    got.sort_unstable();
    let mut want = hints.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "hints of {class}");
    let labels = [("layer", layer), ("class", class)];
    assert!(
        envoy.wait_metric(FAILURES, &labels, 1.0) >= 1.0,
        "metric for {class}"
    );
}

#[test]
fn a_middlebox_reset_on_connect_is_connect_refused() {
    let Some((_lab, envoy, port)) = lab(1, Some("reset_on_connect")) else {
        return;
    };
    let r = get(&envoy, port, "/c/small");
    assert_eq!(r.status, 503);
    let (header, _) = verdict_of(&envoy, &r, "/c/small");
    assert_verdict(&envoy, &header, "l4", "connect_refused", &[]);
}

#[test]
fn dropped_syns_are_a_connect_timeout() {
    let Some((_lab, envoy, port)) = lab(2, Some("syn_drop")) else {
        return;
    };
    let r = get(&envoy, port, "/c/small");
    assert_eq!(r.status, 503);
    let (header, _) = verdict_of(&envoy, &r, "/c/small");
    assert_verdict(&envoy, &header, "l4", "connect_timeout", &[]);
}

#[test]
fn a_reset_mid_response_is_l4_truncation_not_an_app_error() {
    let Some((_lab, envoy, port)) = lab(3, Some("reset_mid_response")) else {
        return;
    };
    let r = get(&envoy, port, "/c/large");
    assert_eq!(r.status, 200, "headers went out before the reset");
    assert!(r.truncated, "the client got a cut body");
    let (header, log) = verdict_of(&envoy, &r, "/c/large");
    assert!(header.is_none(), "known only after the headers");
    assert_verdict(&envoy, &log, "l4", "response_truncated", &["large_payload"]);
}

#[test]
fn an_mtu_black_hole_stalls_large_responses_only() {
    let Some((_lab, envoy, port)) = lab(4, Some("mtu_black_hole")) else {
        return;
    };
    let small = get(&envoy, port, "/c/small");
    assert_eq!(small.status, 200);
    assert!(small.header("x-meshtriage").is_none());
    let r = get(&envoy, port, "/c/large");
    assert_eq!(r.status, 200, "headers fit in a small packet");
    assert!(r.body.is_empty() && r.truncated, "no body byte arrives");
    let (header, log) = verdict_of(&envoy, &r, "/c/large");
    assert!(header.is_none());
    assert_verdict(&envoy, &log, "l4", "transfer_stalled", &["large_payload"]);
}

#[test]
fn handshake_loss_marks_verdicts_slow_connect_and_leaves_successes_alone() {
    let Some((_lab, envoy, port)) = lab(5, Some("handshake_loss")) else {
        return;
    };
    let ok = get(&envoy, port, "/patient/small");
    assert_eq!(ok.status, 200);
    assert!(
        ok.header("x-meshtriage").is_none(),
        "a slow but successful request gets no verdict"
    );
    let r = get(&envoy, port, "/patient/status/503");
    assert_eq!(r.status, 503);
    let (header, _) = verdict_of(&envoy, &r, "/patient/status/503");
    assert_verdict(&envoy, &header, "l7", "app_error", &["slow_connect"]);
}

#[test]
fn heavy_loss_trips_the_route_timeout_with_the_evidence_at_hand() {
    let Some((_lab, envoy, port)) = lab(6, Some("heavy_loss")) else {
        return;
    };
    let r = get(&envoy, port, "/patient/large");
    let (header, log) = verdict_of(&envoy, &r, "/patient/large");
    let v = header
        .or(log)
        .unwrap_or_else(|| panic!("no verdict (status {})\n{}", r.status, envoy.diagnostics()));
    // Depending on which packets were lost, the timer fires before or after the headers.
    match v.class() {
        "upstream_timeout" => assert_eq!((r.status, v.layer.as_str()), (504, "l7")),
        "transfer_stalled" => assert_eq!((r.status, v.layer.as_str()), (200, "l4")),
        "connect_timeout" => assert_eq!(v.layer, "l4"),
        other => panic!("unexpected class {other}: {v:?}\n{}", envoy.diagnostics()),
    }
    println!("heavy loss: status {} verdict {:?}", r.status, v);
}
