#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code
//! One case per connection scenario, with the signals Envoy 1.40's tcp_proxy and network wasm
//! filter really produce (docs/envoy-signals.md §7 "tcp_proxy + network wasm
//! filter"), plus the verdict each encodes to.

use meshtriage_core::flags::{Flag, ResponseFlags};
use meshtriage_core::tcp::{classify_tcp, tcp_verdict, Closer, TcpSignals, IDLE_QUIET_NANOS};
use meshtriage_core::{Class, Direction, Hint, Layer, Origin, Side};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn flags(list: &[Flag]) -> ResponseFlags {
    list.iter()
        .fold(ResponseFlags::default(), |f, x| f.with(*x))
}

/// A proxied connection that Envoy closed (`closer`), with `fl` flags.
fn conn(fl: &[Flag], closer: Closer) -> TcpSignals {
    TcpSignals {
        direction: Direction::Outbound,
        flags: flags(fl),
        downstream_closed: Some(closer),
        proxied: true,
        attempts: 1,
        quiet_nanos: Some(1_000_000),
        ..TcpSignals::default()
    }
}

fn some(s: &str) -> Option<String> {
    Some(s.to_string())
}

fn check(s: &TcpSignals, class: Class, layer: Layer, origin: Origin, side: Side) {
    let o = classify_tcp(s).unwrap_or_else(|| panic!("{s:?} should be a failure"));
    assert_eq!(
        (o.class, o.layer, o.origin, o.side),
        (class, layer, origin, side),
        "{s:?}"
    );
}

const REFUSED: &str = "delayed connect error: Connection refused";
const PLAINTEXT_PEER: &str =
    "TLS_error:|268435703:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER:TLS_error_end";

#[test]
fn it_marks_connect_failures_as_l4_upstream() {
    let mut s = conn(&[Flag::UF, Flag::URX], Closer::Local);
    s.upstream_failure = some(REFUSED);
    check(
        &s,
        Class::ConnectRefused,
        Layer::L4,
        Origin::Proxy,
        Side::Upstream,
    );
    // Connect timeout: no transport failure reason (and no retries hint for one attempt).
    let mut t = conn(&[Flag::UF, Flag::URX], Closer::Local);
    t.connect_nanos = Some(1_000_000_000);
    check(
        &t,
        Class::ConnectTimeout,
        Layer::L4,
        Origin::Proxy,
        Side::Upstream,
    );
    assert!(classify_tcp(&t).unwrap().hints.is_empty());
    s.attempts = 3;
    assert!(classify_tcp(&s)
        .unwrap()
        .hints
        .contains(Hint::RetriesExhausted));
}

#[test]
fn it_names_upstream_tls_failures_like_the_http_table() {
    for (tfr, class) in [
        (PLAINTEXT_PEER, Class::TlsProtocolError),
        (
            "TLS_error:|268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:verify cert failed:TLS_error_end",
            Class::TlsCertificateError,
        ),
        (
            "TLS_error:|268436496:SSL routines:OPENSSL_internal:SSLV3_ALERT_HANDSHAKE_FAILURE:TLS_error_end",
            Class::TlsHandshakeRejected,
        ),
    ] {
        let mut s = conn(&[Flag::UF, Flag::URX], Closer::Local);
        s.upstream_failure = some(tfr);
        check(&s, class, Layer::L4, Origin::Proxy, Side::Upstream);
    }
}

#[test]
fn it_marks_a_downstream_tls_failure_as_the_clients() {
    let mut s = conn(&[], Closer::Remote);
    s.downstream_failure =
        some("TLS_error:|268435612:SSL routines:OPENSSL_internal:HTTP_REQUEST:TLS_error_end");
    s.proxied = false;
    check(
        &s,
        Class::DownstreamTlsError,
        Layer::L4,
        Origin::Client,
        Side::Downstream,
    );
    let v = tcp_verdict(classify_tcp(&s).unwrap(), &s, "gw.edge");
    assert!(v.encode(true).contains(";detail=\"TLS_error:"));
    assert!(!v.encode(false).contains("detail"));
}

#[test]
fn it_classifies_envoy_and_policy_closes() {
    check(
        &conn(&[Flag::UR], Closer::Local),
        Class::ConnectionTerminated,
        Layer::L4,
        Origin::Proxy,
        Side::Upstream,
    );
    check(
        &conn(&[Flag::DT], Closer::Local),
        Class::MaxDurationReached,
        Layer::L4,
        Origin::Proxy,
        Side::Local,
    );
    check(
        &conn(&[Flag::UO], Closer::Local),
        Class::CircuitBreakerOpen,
        Layer::L4,
        Origin::Proxy,
        Side::Upstream,
    );
    check(
        &conn(&[Flag::UH], Closer::Local),
        Class::NoHealthyUpstream,
        Layer::L4,
        Origin::Proxy,
        Side::Upstream,
    );
    let mut rbac = conn(&[], Closer::Local);
    rbac.termination = some("rbac_access_denied_matched_policy[deny-all]");
    check(
        &rbac,
        Class::AuthzDenied,
        Layer::L4,
        Origin::Proxy,
        Side::Local,
    );
    let mut other = conn(&[], Closer::Local);
    other.termination = some("some_filter_reason");
    check(
        &other,
        Class::ConnectionPolicyClosed,
        Layer::L4,
        Origin::Proxy,
        Side::Local,
    );
}

#[test]
fn it_infers_the_idle_timeout_from_a_quiet_local_close() {
    let mut s = conn(&[], Closer::Local);
    s.quiet_nanos = Some(IDLE_QUIET_NANOS);
    check(
        &s,
        Class::IdleTimeout,
        Layer::L4,
        Origin::Proxy,
        Side::Local,
    );
    // Envoy closed without a reason right after traffic: failing, but no evidence for a class.
    s.quiet_nanos = Some(IDLE_QUIET_NANOS - 1);
    check(
        &s,
        Class::Unclassified,
        Layer::Unknown,
        Origin::Proxy,
        Side::Local,
    );
}

#[test]
fn it_marks_a_client_that_went_away() {
    check(
        &conn(&[], Closer::Remote),
        Class::DownstreamDisconnect,
        Layer::L4,
        Origin::Client,
        Side::Downstream,
    );
}

#[test]
fn clean_connections_are_not_failures() {
    // The client closes: the upstream answers with FIN, then Envoy closes the downstream.
    let mut s = conn(&[], Closer::Local);
    s.upstream_fin = true;
    s.quiet_nanos = Some(5 * IDLE_QUIET_NANOS);
    assert_eq!(classify_tcp(&s), None);
    // The upstream closes first: FIN, then the client closes.
    s.downstream_closed = Some(Closer::Remote);
    assert_eq!(classify_tcp(&s), None);
    // In front of the HTTP connection manager there are no upstream events at all.
    let mut hcm = conn(&[], Closer::Remote);
    hcm.proxied = false;
    assert_eq!(classify_tcp(&hcm), None);
    hcm.downstream_closed = Some(Closer::Local);
    hcm.quiet_nanos = Some(5 * IDLE_QUIET_NANOS);
    assert_eq!(classify_tcp(&hcm), None);
    // An injected delay is not a failure.
    let mut di = conn(&[Flag::DI], Closer::Remote);
    di.upstream_fin = true;
    assert_eq!(classify_tcp(&di), None);
}

#[test]
fn the_verdict_uses_the_header_syntax() {
    let mut s = conn(&[Flag::UF, Flag::URX], Closer::Local);
    s.upstream_failure = some(REFUSED);
    let v = tcp_verdict(classify_tcp(&s).unwrap(), &s, "bed.test");
    assert_eq!(
        v.encode(true),
        "l4;class=connect_refused;origin=proxy;side=upstream;dir=outbound;hop=\"bed.test\";\
         flags=\"UF,URX\";detail=\"delayed connect error: Connection refused\""
    );
}

#[test]
fn any_unknown_failure_flag_is_unclassified_not_clean() {
    let s = conn(&[Flag::LR], Closer::Local);
    check(
        &s,
        Class::Unclassified,
        Layer::Unknown,
        Origin::Proxy,
        Side::Local,
    );
}
