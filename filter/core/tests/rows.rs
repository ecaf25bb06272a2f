#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code
//! One case per taxonomy row, with the signals Envoy 1.40 really produces for it
//! (docs/envoy-signals.md §7), plus the header each verdict encodes to.

use meshtriage_core::flags::{Flag, ResponseFlags};
use meshtriage_core::hop_by_hop::HopByHop;
use meshtriage_core::upstream::{local_reply_class, parse_proxy_status, UpstreamEvidence};
use meshtriage_core::{
    classify, is_failing, Class, Config, Direction, Hint, Layer, Origin, Phase, Side, Signals,
    Verdict,
};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn flags(list: &[Flag]) -> ResponseFlags {
    list.iter()
        .fold(ResponseFlags::default(), |f, x| f.with(*x))
}

fn sig(status: Option<u16>, fl: &[Flag], details: &str) -> Signals {
    Signals {
        status,
        flags: flags(fl),
        details: (!details.is_empty()).then(|| details.to_string()),
        attempts: 1,
        direction: Direction::Outbound,
        ..Signals::default()
    }
}

fn check(s: &Signals, class: Class, layer: Layer, origin: Origin, side: Side, hints: &[Hint]) {
    let cfg = Config::default();
    assert!(is_failing(s, &cfg), "{s:?} should be failing");
    let o = classify(s, &cfg);
    assert_eq!(
        (o.class, o.layer, o.origin, o.side),
        (class, layer, origin, side),
        "{s:?}"
    );
    let got: Vec<Hint> = o.hints.iter().collect();
    assert_eq!(got, hints, "hints of {:?}", class);
}

const URBRS: &str = "upstream_reset_before_response_started";

#[test]
fn it_marks_refused_connections_as_l4() {
    let mut s = sig(
        Some(503),
        &[Flag::UF],
        &format!("{URBRS}{{remote_connection_failure|delayed_connect_error:_Connection_refused}}"),
    );
    s.transport_failure = Some("delayed connect error: Connection refused".into());
    check(
        &s,
        Class::ConnectRefused,
        Layer::L4,
        Origin::Proxy,
        Side::Upstream,
        &[],
    );
}

#[test]
fn it_marks_connect_timeouts_as_l4() {
    let mut s = sig(
        Some(503),
        &[Flag::UF],
        &format!("{URBRS}{{connection_timeout}}"),
    );
    check(
        &s,
        Class::ConnectTimeout,
        Layer::L4,
        Origin::Proxy,
        Side::Upstream,
        &[],
    );
    // The pool waited the whole connect timeout: that is the failure, not a slow connect.
    s.connect_nanos = Some(1_000_000_000);
    check(
        &s,
        Class::ConnectTimeout,
        Layer::L4,
        Origin::Proxy,
        Side::Upstream,
        &[],
    );
}

/// The glue does not read `upstream.transport_failure_reason` for HTTP: Envoy copies it into
/// the code details (spaces as `_`, docs/envoy-signals.md §4 rows a, q, q2), which are read anyway.
#[test]
fn it_reads_the_transport_failure_from_the_details() {
    let from_details = |tfr: &str| {
        sig(
            Some(503),
            &[Flag::UF],
            &format!("{URBRS}{{remote_connection_failure|{tfr}}}"),
        )
    };
    for (tfr, class) in [
        ("TLS_error:|268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:verify_cert_failed:_SAN_matcher:TLS_error_end", Class::TlsCertificateError),
        ("TLS_error:|268436496:SSL_routines:OPENSSL_internal:SSLV3_ALERT_HANDSHAKE_FAILURE:TLS_error_end", Class::TlsHandshakeRejected),
        ("TLS_error:|268435703:SSL_routines:OPENSSL_internal:WRONG_VERSION_NUMBER:TLS_error_end", Class::TlsProtocolError),
        ("delayed_connect_error:_Connection_refused", Class::ConnectRefused),
    ] {
        check(&from_details(tfr), class, Layer::L4, Origin::Proxy, Side::Upstream, &[]);
    }
    assert_eq!(
        meshtriage_core::signals::transport_failure_in_details(
            "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}"
        ),
        "delayed_connect_error:_Connection_refused"
    );
    assert_eq!(
        meshtriage_core::signals::transport_failure_in_details("via_upstream"),
        ""
    );
}

#[test]
fn it_splits_tls_failures_by_reason() {
    let base = |tfr: &str| {
        let mut s = sig(
            Some(503),
            &[Flag::UF],
            &format!("{URBRS}{{remote_connection_failure|TLS_error}}"),
        );
        s.transport_failure = Some(tfr.to_string());
        s
    };
    check(&base("TLS_error:|268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:verify cert failed: SAN matcher:TLS_error_end"),
        Class::TlsCertificateError, Layer::L4, Origin::Proxy, Side::Upstream, &[]);
    check(&base("TLS_error:|268436496:SSL routines:OPENSSL_internal:SSLV3_ALERT_HANDSHAKE_FAILURE:TLS_error_end"),
        Class::TlsHandshakeRejected, Layer::L4, Origin::Proxy, Side::Upstream, &[]);
    check(
        &base(
            "TLS_error:|268435703:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER:TLS_error_end",
        ),
        Class::TlsProtocolError,
        Layer::L4,
        Origin::Proxy,
        Side::Upstream,
        &[],
    );
    // The peer closed the connection during the handshake: no TLS error text at all.
    let closed = sig(
        Some(503),
        &[Flag::UF],
        &format!("{URBRS}{{remote_connection_failure}}"),
    );
    check(
        &closed,
        Class::TlsProtocolError,
        Layer::L4,
        Origin::Proxy,
        Side::Upstream,
        &[],
    );
}

#[test]
fn it_marks_reset_before_headers_as_l4_and_blames_the_app_on_inbound() {
    let s = sig(
        Some(503),
        &[Flag::UC],
        &format!("{URBRS}{{connection_termination}}"),
    );
    check(
        &s,
        Class::ConnectionTerminated,
        Layer::L4,
        Origin::Proxy,
        Side::Upstream,
        &[],
    );
    let inbound = Signals {
        direction: Direction::Inbound,
        ..s
    };
    check(
        &inbound,
        Class::ConnectionTerminated,
        Layer::L4,
        Origin::Proxy,
        Side::Upstream,
        &[Hint::AppClosedConnection],
    );
}

#[test]
fn it_marks_retries_exhausted_with_attempts() {
    let mut s = sig(
        Some(503),
        &[Flag::UF, Flag::URX],
        &format!("{URBRS}{{remote_connection_failure|delayed_connect_error:_Connection_refused}}"),
    );
    s.attempts = 3;
    check(
        &s,
        Class::ConnectRefused,
        Layer::L4,
        Origin::Proxy,
        Side::Upstream,
        &[Hint::RetriesExhausted],
    );
    let v = Verdict::new(classify(&s, &Config::default()), &s, "a.b");
    assert!(
        v.encode(true)
            .contains(";attempts=3;hints=\"retries_exhausted\""),
        "{}",
        v.encode(true)
    );
    let app = sig(Some(503), &[Flag::URX], "via_upstream");
    check(
        &app,
        Class::AppError,
        Layer::L7,
        Origin::App,
        Side::Upstream,
        &[Hint::RetriesExhausted],
    );
}

#[test]
fn it_marks_missing_endpoints_and_config_errors() {
    check(
        &sig(Some(503), &[Flag::UH], "no_healthy_upstream"),
        Class::NoHealthyUpstream,
        Layer::L4,
        Origin::Proxy,
        Side::Upstream,
        &[],
    );
    check(
        &sig(Some(503), &[Flag::NC], "cluster_not_found"),
        Class::ClusterNotFound,
        Layer::L7,
        Origin::Proxy,
        Side::Local,
        &[],
    );
    check(
        &sig(Some(404), &[Flag::NR], "route_not_found"),
        Class::RouteNotFound,
        Layer::L7,
        Origin::Proxy,
        Side::Local,
        &[],
    );
}

#[test]
fn it_marks_framing_errors_as_l7_protocol() {
    check(
        &sig(
            Some(502),
            &[Flag::UPE],
            &format!("{URBRS}{{protocol_error}}"),
        ),
        Class::UpstreamProtocolError,
        Layer::L7,
        Origin::Proxy,
        Side::Upstream,
        &[],
    );
}

#[test]
fn it_marks_h2_stream_resets() {
    check(
        &sig(Some(503), &[Flag::UR], &format!("{URBRS}{{remote_reset}}")),
        Class::StreamReset,
        Layer::L7,
        Origin::Proxy,
        Side::Upstream,
        &[],
    );
    check(
        &sig(
            Some(503),
            &[Flag::UR],
            &format!("{URBRS}{{remote_refused_stream_reset}}"),
        ),
        Class::StreamReset,
        Layer::L7,
        Origin::Proxy,
        Side::Upstream,
        &[],
    );
}

#[test]
fn it_marks_timeouts_and_limits() {
    check(
        &sig(Some(504), &[Flag::UT], "response_timeout"),
        Class::UpstreamTimeout,
        Layer::L7,
        Origin::Proxy,
        Side::Upstream,
        &[],
    );
    let mut pertry = sig(
        Some(504),
        &[Flag::UT, Flag::URX],
        "upstream_per_try_timeout",
    );
    pertry.attempts = 2;
    check(
        &pertry,
        Class::UpstreamTimeout,
        Layer::L7,
        Origin::Proxy,
        Side::Upstream,
        &[Hint::RetriesExhausted],
    );
    check(
        &sig(Some(504), &[Flag::SI], "stream_idle_timeout"),
        Class::IdleTimeout,
        Layer::L7,
        Origin::Proxy,
        Side::Upstream,
        &[],
    );
    check(
        &sig(
            Some(504),
            &[Flag::UMSDR],
            "upstream_max_stream_duration_reached",
        ),
        Class::MaxDurationReached,
        Layer::L7,
        Origin::Proxy,
        Side::Upstream,
        &[],
    );
    check(
        &sig(Some(503), &[Flag::UO], &format!("{URBRS}{{overflow}}")),
        Class::CircuitBreakerOpen,
        Layer::L7,
        Origin::Proxy,
        Side::Upstream,
        &[],
    );
}

#[test]
fn it_marks_policy_replies_as_local_l7() {
    check(
        &sig(
            Some(403),
            &[],
            "rbac_access_denied_matched_policy[deny-all]",
        ),
        Class::AuthzDenied,
        Layer::L7,
        Origin::Proxy,
        Side::Local,
        &[],
    );
    check(
        &sig(Some(403), &[Flag::UAEX], "ext_authz_denied"),
        Class::AuthzDenied,
        Layer::L7,
        Origin::Proxy,
        Side::Local,
        &[],
    );
    check(
        &sig(Some(401), &[], "jwt_authn_access_denied{Jwt_is_missing}"),
        Class::AuthnFailed,
        Layer::L7,
        Origin::Proxy,
        Side::Local,
        &[],
    );
    check(
        &sig(Some(429), &[Flag::RL], "local_rate_limited"),
        Class::RateLimited,
        Layer::L7,
        Origin::Proxy,
        Side::Local,
        &[],
    );
    check(
        &sig(Some(500), &[Flag::RLSE], "rate_limiter_error"),
        Class::RateLimited,
        Layer::L7,
        Origin::Proxy,
        Side::Local,
        &[],
    );
    check(
        &sig(Some(503), &[Flag::DO], "drop_overload"),
        Class::LoadShed,
        Layer::L7,
        Origin::Proxy,
        Side::Local,
        &[],
    );
    check(
        &sig(Some(503), &[Flag::UDO], "unconditional_drop_overload"),
        Class::LoadShed,
        Layer::L7,
        Origin::Proxy,
        Side::Local,
        &[],
    );
    check(
        &sig(Some(503), &[Flag::FI], "fault_filter_abort"),
        Class::FaultInjected,
        Layer::L7,
        Origin::Proxy,
        Side::Local,
        &[],
    );
    check(
        &sig(Some(503), &[], "wasm_fail_stream"),
        Class::FilterFailure,
        Layer::L7,
        Origin::Proxy,
        Side::Local,
        &[],
    );
}

#[test]
fn it_marks_app_answers_as_app_l7() {
    check(
        &sig(Some(503), &[], "via_upstream"),
        Class::AppError,
        Layer::L7,
        Origin::App,
        Side::Upstream,
        &[],
    );
    let mut grpc = sig(Some(200), &[], "via_upstream");
    grpc.grpc_status = Some(14);
    check(
        &grpc,
        Class::AppGrpcError,
        Layer::L7,
        Origin::App,
        Side::Upstream,
        &[],
    );
}

#[test]
fn success_is_not_failing() {
    let cfg = Config::default();
    assert!(!is_failing(&sig(Some(200), &[], "via_upstream"), &cfg));
    assert!(!is_failing(&sig(Some(404), &[], "via_upstream"), &cfg));
    assert!(!is_failing(
        &sig(Some(200), &[Flag::DI], "via_upstream"),
        &cfg
    ));
    assert!(!is_failing(&sig(Some(200), &[], "direct_response"), &cfg));
    let mut ok_grpc = sig(Some(200), &[], "via_upstream");
    ok_grpc.grpc_status = Some(5); // NOT_FOUND is not in the default failing set
    assert!(!is_failing(&ok_grpc, &cfg));
}

#[test]
fn it_sees_late_failures_at_the_end_of_the_stream() {
    let late = |fl: &[Flag], details: &str, chunked: bool, body: u64| Signals {
        phase: Phase::Log,
        response_started: true,
        chunked,
        response_body_bytes: body,
        ..sig(Some(200), fl, details)
    };
    let urars = "upstream_reset_after_response_started{protocol_error}";
    // Copied `Transfer-Encoding: chunked` over a plain body: not one chunk parsed.
    check(
        &late(&[Flag::UPE], urars, true, 0),
        Class::ResponseTruncated,
        Layer::L7,
        Origin::App,
        Side::Upstream,
        &[Hint::BrokenChunkedFraming],
    );
    // Mid-body reset with Content-Length.
    check(
        &late(&[Flag::UPE], urars, false, 10),
        Class::ResponseTruncated,
        Layer::L4,
        Origin::App,
        Side::Upstream,
        &[],
    );
    check(
        &late(
            &[Flag::UR],
            "upstream_reset_after_response_started{remote_reset}",
            false,
            7,
        ),
        Class::ResponseTruncated,
        Layer::L4,
        Origin::App,
        Side::Upstream,
        &[],
    );
    // Content-Length larger than the body, then silence until the route timeout.
    check(
        &late(&[Flag::UT], "response_timeout", false, 10),
        Class::TransferStalled,
        Layer::L4,
        Origin::Proxy,
        Side::Upstream,
        &[],
    );
    // An MTU black hole: headers of a large response arrived, its body never did.
    let black_hole = Signals {
        declared_response_bytes: Some(2 << 20),
        ..late(&[Flag::UT], "response_timeout", false, 0)
    };
    check(
        &black_hole,
        Class::TransferStalled,
        Layer::L4,
        Origin::Proxy,
        Side::Upstream,
        &[Hint::LargePayload],
    );
    // Client went away.
    let dc = Signals {
        phase: Phase::Log,
        ..sig(None, &[Flag::DC], "downstream_remote_disconnect")
    };
    check(
        &dc,
        Class::DownstreamDisconnect,
        Layer::L4,
        Origin::Client,
        Side::Downstream,
        &[],
    );
    let dr = Signals {
        phase: Phase::Log,
        ..sig(None, &[Flag::DR], "http2.remote_reset")
    };
    check(
        &dr,
        Class::DownstreamDisconnect,
        Layer::L4,
        Origin::Client,
        Side::Downstream,
        &[],
    );
    let dpe = Signals {
        phase: Phase::Log,
        ..sig(Some(400), &[Flag::DPE], "http1.codec_error")
    };
    check(
        &dpe,
        Class::DownstreamProtocolError,
        Layer::L7,
        Origin::Client,
        Side::Downstream,
        &[],
    );
}

#[test]
fn it_credits_an_upstream_proxy() {
    let mut s = sig(Some(503), &[], "via_upstream");
    s.upstream = UpstreamEvidence::Verdicts {
        layer: Layer::L4,
        class: Class::ConnectionTerminated,
    };
    check(
        &s,
        Class::ConnectionTerminated,
        Layer::L4,
        Origin::UpstreamProxy,
        Side::Upstream,
        &[],
    );
    s.upstream = parse_proxy_status(br#"inner; error=connection_refused; details="upstream_reset_before_response_started{connection_timeout}; UF""#).unwrap();
    check(
        &s,
        Class::ConnectTimeout,
        Layer::L4,
        Origin::UpstreamProxy,
        Side::Upstream,
        &[],
    );
    s.upstream = local_reply_class(b"upstream connect error or disconnect/reset before headers. reset reason: connection termination").unwrap();
    check(
        &s,
        Class::ConnectionTerminated,
        Layer::L4,
        Origin::UpstreamProxy,
        Side::Upstream,
        &[],
    );
    s.upstream = local_reply_class(b"upstream request timeout").unwrap();
    check(
        &s,
        Class::UpstreamTimeout,
        Layer::L7,
        Origin::UpstreamProxy,
        Side::Upstream,
        &[],
    );
}

#[test]
fn an_upstream_proxys_policy_reply_stays_failing_across_the_hop() {
    // The server sidecar's RBAC 403 reaches the client sidecar as `via_upstream`; 403 is not in
    // the default failure_statuses, but it was a failing local reply at that hop.
    let mut s = sig(Some(403), &[], "via_upstream");
    assert!(!is_failing(&s, &Config::default()), "a plain app 403");
    s.upstream = local_reply_class(b"RBAC: access denied").unwrap();
    check(
        &s,
        Class::AuthzDenied,
        Layer::L7,
        Origin::UpstreamProxy,
        Side::Upstream,
        &[],
    );
    let mut ok = sig(Some(200), &[], "via_upstream");
    ok.upstream = local_reply_class(b"no healthy upstream").unwrap();
    assert!(
        !is_failing(&ok, &Config::default()),
        "a 200 is never failing"
    );
}

#[test]
fn hints_from_context() {
    let mut s = sig(
        Some(503),
        &[Flag::UC],
        &format!("{URBRS}{{connection_termination}}"),
    );
    let mut h = HopByHop::default();
    h.observe("connection", b"close, x-copied", Some(503));
    s.hop_by_hop = h;
    s.upstream_mtls = true;
    s.request_body_bytes = 2 << 20;
    s.connect_nanos = Some(3_000_000_000);
    s.retry_budget_exceeded = true;
    check(
        &s,
        Class::ConnectionTerminated,
        Layer::L4,
        Origin::Proxy,
        Side::Upstream,
        &[
            Hint::HopByHopHeaders,
            Hint::Mtls,
            Hint::LargePayload,
            Hint::RetryBudgetExceeded,
            Hint::SlowConnect,
        ],
    );
}

#[test]
fn unknown_failures_are_unclassified_never_an_error() {
    check(
        &sig(Some(500), &[], "some_future_detail"),
        Class::Unclassified,
        Layer::Unknown,
        Origin::Proxy,
        Side::Local,
        &[],
    );
    check(
        &sig(Some(502), &[], ""),
        Class::Unclassified,
        Layer::Unknown,
        Origin::Proxy,
        Side::Local,
        &[],
    );
}

#[test]
fn the_header_matches_the_readme_example() {
    let mut s = sig(
        Some(503),
        &[Flag::UC],
        &format!("{URBRS}{{connection_termination}}"),
    );
    s.direction = Direction::Inbound;
    let v = Verdict::new(classify(&s, &Config::default()), &s, "checkout.shop");
    assert_eq!(
        v.encode(true),
        r#"l4;class=connection_terminated;origin=proxy;side=upstream;dir=inbound;hop="checkout.shop";flags="UC";detail="upstream_reset_before_response_started{connection_termination}";hints="app_closed_connection""#
    );
    assert!(!v.encode(false).contains("detail="));
    let parsed = meshtriage_core::sfv::parse_list(v.encode(true).as_bytes()).unwrap();
    assert_eq!(parsed.len(), 1);
    assert_eq!(
        v.proxy_status().unwrap(),
        r#"checkout.shop; error=connection_terminated; details="upstream_reset_before_response_started{connection_termination}""#
    );
}

#[test]
fn every_flag_combination_classifies_and_encodes_parseably() {
    let cfg = Config::default();
    // Every single flag and every pair, with and without a response.
    for a in 0..30u32 {
        for b in a..30u32 {
            let s = Signals {
                flags: ResponseFlags((1 << a) | (1 << b)),
                status: Some(503),
                details: Some("x\"y\\z\u{1}".into()),
                ..Signals::default()
            };
            let v = Verdict::new(classify(&s, &cfg), &s, "h");
            let text = v.encode(true);
            assert!(
                meshtriage_core::sfv::parse_list(text.as_bytes()).is_ok(),
                "{text}"
            );
        }
    }
}

/// The glue reads the upstream certificate (for `mtls`) only when the verdict is transport-layer.
#[test]
fn only_transport_layer_verdicts_want_the_mtls_hint() {
    let cfg = Config::default();
    let reset = sig(
        Some(503),
        &[Flag::UC],
        &format!("{URBRS}{{connection_termination}}"),
    );
    assert!(classify(&reset, &cfg).wants_mtls());
    let app = sig(Some(503), &[], "via_upstream");
    assert!(!classify(&app, &cfg).wants_mtls());
}
