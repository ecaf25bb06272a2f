//! The core plugin against a real Envoy 1.40: each failure the taxonomy names gets the right
//! verdict in the header (when known at header time), the access log and the metrics.

use meshtriage_core::metrics::{CONFIG_ERRORS, FAILURES, REQUESTS};
use meshtriage_envoy_test::bed::{Bed, BedOptions};
use meshtriage_envoy_test::scenario::{check, Expect};
use meshtriage_envoy_test::verdict;

fn bed(name: &str) -> Bed {
    Bed::start(name, BedOptions::default())
}

const L4: &str = "l4";
const L7: &str = "l7";

#[test]
fn transport_failures_are_l4_from_the_proxy() {
    let b = bed("l4");
    let out = |path, e| check(&b, b.port, "outbound", path, &e);
    let r = out(
        "/uf",
        Expect::new(503, L4, "connect_refused", "proxy", "upstream"),
    );
    let v = &verdict::parse(r.header("x-meshtriage").unwrap())[0];
    assert_eq!(v.get("hop"), Some("bed.test"));
    assert_eq!(v.get("flags"), Some("UF"));
    assert!(v
        .get("detail")
        .unwrap()
        .starts_with("upstream_reset_before_response_started{remote_connection_failure"));
    out(
        "/app/close",
        Expect::new(503, L4, "connection_terminated", "proxy", "upstream"),
    );
    out(
        "/app/rst",
        Expect::new(503, L4, "connection_terminated", "proxy", "upstream"),
    );
    out(
        "/uh",
        Expect::new(503, L4, "no_healthy_upstream", "proxy", "upstream"),
    );
    out(
        "/tls/plain",
        Expect::new(503, L4, "tls_protocol_error", "proxy", "upstream"),
    );
    out(
        "/tls/badca",
        Expect::new(503, L4, "tls_certificate_error", "proxy", "upstream"),
    );
    out(
        "/tls/badsan",
        Expect::new(503, L4, "tls_certificate_error", "proxy", "upstream"),
    );
    out(
        "/tls/nocert",
        Expect::new(503, L4, "tls_handshake_rejected", "proxy", "upstream"),
    );
    assert_eq!(
        b.get("/tls/ok").status,
        200,
        "the TLS upstream itself works"
    );
}

#[test]
fn an_inbound_app_closing_without_answering_is_pointed_at() {
    let b = bed("inbound");
    check(
        &b,
        b.inbound_port,
        "inbound",
        "/app/close",
        &Expect::new(503, L4, "connection_terminated", "proxy", "upstream")
            .hints(&["app_closed_connection"]),
    );
}

#[test]
fn retries_exhausted_carry_attempts() {
    let b = bed("retries");
    let r = check(
        &b,
        b.port,
        "outbound",
        "/retry-uf",
        &Expect::new(503, L4, "connect_refused", "proxy", "upstream").hints(&["retries_exhausted"]),
    );
    let v = &verdict::parse(r.header("x-meshtriage").unwrap())[0];
    assert_eq!(v.get("attempts"), Some("3"));
    assert_eq!(v.get("flags"), Some("UF,URX"));
    check(
        &b,
        b.port,
        "outbound",
        "/retry/status/503",
        &Expect::new(503, L7, "app_error", "app", "upstream").hints(&["retries_exhausted"]),
    );
}

#[test]
fn protocol_and_timeout_failures_are_l7() {
    let b = bed("l7");
    let out = |path, e| check(&b, b.port, "outbound", path, &e);
    out(
        "/app/cl-te",
        Expect::new(502, L7, "upstream_protocol_error", "proxy", "upstream"),
    );
    out(
        "/app/slow/3000",
        Expect::new(504, L7, "upstream_timeout", "proxy", "upstream"),
    );
    out(
        "/h2rst/x",
        Expect::new(503, L7, "stream_reset", "proxy", "upstream"),
    );
    out(
        "/h2/ok",
        Expect::new(502, L7, "upstream_protocol_error", "proxy", "upstream"),
    );
    out(
        "/app/status/503",
        Expect::new(503, L7, "app_error", "app", "upstream"),
    );
    out(
        "/nc",
        Expect::new(503, L7, "cluster_not_found", "proxy", "local"),
    );
    out(
        "/nothing-routes-here",
        Expect::new(404, L7, "route_not_found", "proxy", "local"),
    );
}

#[test]
fn policy_replies_are_seen_by_a_plugin_placed_before_the_policy() {
    let b = bed("policy");
    let out = |path, e| check(&b, b.port, "outbound", path, &e);
    out(
        "/deny",
        Expect::new(403, L7, "authz_denied", "proxy", "local"),
    );
    assert_eq!(b.get("/rl?first").status, 200);
    out(
        "/rl?second",
        Expect::new(429, L7, "rate_limited", "proxy", "local"),
    );
    out(
        "/fault",
        Expect::new(503, L7, "fault_injected", "proxy", "local"),
    );
}

#[test]
fn grpc_failures_use_the_real_grpc_status() {
    let b = bed("grpc");
    // Trailers-only: grpc-status in the headers of a 200.
    check(
        &b,
        b.port,
        "outbound",
        "/app/grpc-only/14",
        &Expect::new(200, L7, "app_grpc_error", "app", "upstream"),
    );
    // Status in trailers: known only at the end (metrics and access log).
    check(
        &b,
        b.port,
        "outbound",
        "/grpc/grpc-trailers/13",
        &Expect::new(200, L7, "app_grpc_error", "app", "upstream").late(),
    );
    // A non-failing gRPC code, and an absurd one: no verdict, counted as malformed input.
    for path in ["/app/grpc-only/5", "/grpc/grpc-trailers/0", "/app/grpc-bad"] {
        let r = b.get(path);
        assert_eq!(r.status, 200);
        assert!(r.header("x-meshtriage").is_none(), "{path}");
        let line = b.envoy.wait_access_log(&format!("scn={path} ")).unwrap();
        assert!(line.ends_with("verdict=-"), "{line}");
    }
    assert!(b.envoy.metric("meshtriage_internal_errors_total", &[]) >= 1.0);
}

#[test]
fn late_failures_reach_metrics_and_access_logs() {
    let b = bed("late");
    // The copied-headers incident: chunked declared, plain body sent.
    let r = check(
        &b,
        b.port,
        "outbound",
        "/app/copied-te",
        &Expect::new(200, L7, "response_truncated", "app", "upstream")
            .late()
            .hints(&["broken_chunked_framing", "hop_by_hop_headers"]),
    );
    assert!(r.truncated, "the client saw a cut response");
    check(
        &b,
        b.port,
        "outbound",
        "/app/midbody-rst",
        &Expect::new(200, L4, "response_truncated", "app", "upstream").late(),
    );
}

#[test]
fn success_responses_never_carry_a_verdict() {
    let b = bed("success");
    for path in [
        "/app/ok",
        "/app/status/404",
        "/app/hop",
        "/app/forged/200",
        "/tls/ok",
    ] {
        let r = b.get(path);
        assert!(r.status < 500, "{path}: {}", r.status);
        assert!(
            r.header("x-meshtriage").is_none(),
            "{path} carried {:?}",
            r.header("x-meshtriage")
        );
    }
    let line = b.envoy.wait_access_log("scn=/app/ok ").unwrap();
    assert!(line.ends_with("verdict=-"), "{line}");
    assert_eq!(
        b.envoy.wait_metric(REQUESTS, &[("dir", "outbound")], 5.0),
        5.0
    );
    assert_eq!(b.envoy.metric(FAILURES, &[]), 0.0);
    // Hop-by-hop headers are counted on every response, failing or not.
    for h in [
        "connection",
        "nominated",
        "te",
        "trailer",
        "proxy-connection",
        "upgrade",
    ] {
        assert_eq!(
            b.envoy.metric(
                "meshtriage_hop_by_hop_headers_total",
                &[("dir", "outbound"), ("header", h)]
            ),
            1.0,
            "{h}"
        );
    }
}

#[test]
fn a_verdict_forged_by_the_app_is_replaced_on_inbound() {
    let b = bed("forged");
    // Inbound: the upstream is the local app, which must not speak for the proxy.
    let r = check(
        &b,
        b.inbound_port,
        "inbound",
        "/app/forged/503",
        &Expect::new(503, L7, "app_error", "app", "upstream"),
    );
    assert!(!r.header("x-meshtriage").unwrap().contains("forged"));
    // Outbound: an upstream sidecar's verdict is kept, not judged again.
    let r = b.get("/app/forged/503");
    assert_eq!(
        r.headers_named("x-meshtriage"),
        vec![r#"l4;class=connect_refused;origin=proxy;side=upstream;hop="forged""#]
    );
    let labels = [
        ("dir", "outbound"),
        ("layer", "l4"),
        ("class", "connect_refused"),
        ("origin", "upstream_proxy"),
        ("side", "upstream"),
    ];
    assert_eq!(
        b.envoy.wait_metric(FAILURES, &labels, 1.0),
        1.0,
        "{}",
        b.envoy.diagnostics()
    );
}

#[test]
fn a_bad_plugin_config_is_logged_and_traffic_keeps_its_verdicts() {
    let b = Bed::start(
        "badconfig",
        BedOptions {
            plugin_config: r#"{"header": 5, "include_detail": true}"#.into(),
            ..BedOptions::default()
        },
    );
    check(
        &b,
        b.port,
        "outbound",
        "/uf",
        &Expect::new(503, L4, "connect_refused", "proxy", "upstream"),
    );
    assert_eq!(b.get("/app/ok").status, 200);
    let log = b.envoy.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("invalid meshtriage configuration"))
        .collect();
    assert!(
        !lines.is_empty(),
        "no config error logged:\n{}",
        b.envoy.log_tail(30)
    );
    assert!(
        lines
            .iter()
            .all(|l| l.contains("field `header`") && l.contains("[error]")),
        "{lines:?}"
    );
    assert!(b.envoy.metric(CONFIG_ERRORS, &[]) >= 1.0);
}

/// `direction` stated in the configuration replaces Envoy's `xds.listener_direction` (one host
/// call less per request). Stated wrongly on purpose here, so only the configuration can explain
/// the labels: the outbound listener's verdicts and counters say `inbound`.
#[test]
fn a_stated_direction_labels_verdicts_and_counters() {
    let b = Bed::start(
        "direction",
        BedOptions {
            plugin_config: r#"{"direction": "inbound"}"#.into(),
            ..BedOptions::default()
        },
    );
    let requests_before = b.envoy.metric(REQUESTS, &[("dir", "inbound")]);
    check(
        &b,
        b.port,
        "inbound",
        "/uf",
        &Expect::new(503, L4, "connect_refused", "proxy", "upstream"),
    );
    let requests = b
        .envoy
        .wait_metric(REQUESTS, &[("dir", "inbound")], requests_before + 1.0);
    assert!(requests > requests_before, "{requests}");
    assert_eq!(b.envoy.metric(REQUESTS, &[("dir", "outbound")]), 0.0);
}

#[test]
fn configuration_changes_the_header() {
    let b = Bed::start("config", BedOptions { plugin_config: r#"{"header": "x-why", "include_detail": false, "hop": "edge.gw", "proxy_status": true}"#.into(), ..BedOptions::default() });
    let r = b.get("/uf");
    assert!(r.header("x-meshtriage").is_none());
    let v = &verdict::parse(r.header("x-why").expect("renamed header"))[0];
    assert_eq!(
        (v.class(), v.get("hop"), v.get("detail")),
        ("connect_refused", Some("edge.gw"), None)
    );
    assert!(
        r.headers_named("proxy-status")
            .iter()
            .any(|p| p.contains("edge.gw; error=connection_refused")),
        "{:?}",
        r.headers
    );
    let hidden = Bed::start(
        "hidden",
        BedOptions {
            plugin_config: r#"{"expose_header": false}"#.into(),
            ..BedOptions::default()
        },
    );
    check(
        &hidden,
        hidden.port,
        "outbound",
        "/uf",
        &Expect::new(503, L4, "connect_refused", "proxy", "upstream").late(),
    );
}
