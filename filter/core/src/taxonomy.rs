//! THE taxonomy: every class with its layer, origin, side, Proxy-Status type and operator text,
//! every hint, and the ordered rules that map Envoy's signals to a class. Classification,
//! header tokens, metric labels and docs/taxonomy.md all come from these tables.

use crate::flags::Flag;

/// The layer at which an exchange failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    L4,
    L7,
    Unknown,
}

impl Layer {
    pub const ALL: [Layer; 3] = [Layer::L4, Layer::L7, Layer::Unknown];

    pub const fn as_str(self) -> &'static str {
        match self {
            Layer::L4 => "l4",
            Layer::L7 => "l7",
            Layer::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Layer> {
        Layer::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// Who produced the failing response (or outcome).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// This proxy (a local reply, or a reset it saw).
    Proxy,
    /// Another proxy further upstream (its local reply or its verdict).
    UpstreamProxy,
    /// The upstream application.
    App,
    /// The downstream client (it went away, or sent something malformed).
    Client,
}

impl Origin {
    pub const ALL: [Origin; 4] = [
        Origin::Proxy,
        Origin::UpstreamProxy,
        Origin::App,
        Origin::Client,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Origin::Proxy => "proxy",
            Origin::UpstreamProxy => "upstream_proxy",
            Origin::App => "app",
            Origin::Client => "client",
        }
    }

    pub fn parse(s: &str) -> Option<Origin> {
        Origin::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// Where the fault lies relative to this proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Upstream,
    Downstream,
    Local,
}

impl Side {
    pub const ALL: [Side; 3] = [Side::Upstream, Side::Downstream, Side::Local];

    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Upstream => "upstream",
            Side::Downstream => "downstream",
            Side::Local => "local",
        }
    }

    pub fn parse(s: &str) -> Option<Side> {
        Side::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// Listener direction (`xds.listener_direction`: 0 unspecified, 1 inbound, 2 outbound).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    #[default]
    Unknown,
    Inbound,
    Outbound,
}

impl Direction {
    pub const ALL: [Direction; 3] = [Direction::Inbound, Direction::Outbound, Direction::Unknown];

    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Unknown => "unknown",
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }

    pub fn from_envoy(value: i64) -> Direction {
        match value {
            1 => Direction::Inbound,
            2 => Direction::Outbound,
            _ => Direction::Unknown,
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        Direction::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Position in [`Direction::ALL`]: the index of per-direction arrays (metric ids, gauges,
    /// window evaluations).
    pub const fn index(self) -> usize {
        match self {
            Direction::Inbound => 0,
            Direction::Outbound => 1,
            Direction::Unknown => 2,
        }
    }
}

/// One class of the taxonomy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    ConnectRefused,
    ConnectTimeout,
    TlsCertificateError,
    TlsHandshakeRejected,
    TlsProtocolError,
    ConnectionTerminated,
    NoHealthyUpstream,
    DnsResolutionFailed,
    DownstreamDisconnect,
    ResponseTruncated,
    TransferStalled,
    UpstreamProtocolError,
    StreamReset,
    UpstreamTimeout,
    IdleTimeout,
    MaxDurationReached,
    CircuitBreakerOpen,
    ClusterNotFound,
    RouteNotFound,
    AuthzDenied,
    AuthnFailed,
    RateLimited,
    LoadShed,
    FaultInjected,
    DownstreamProtocolError,
    FilterFailure,
    AppError,
    AppGrpcError,
    GatewayError,
    GrpcDeadlineExceeded,
    DownstreamTlsError,
    ConnectionPolicyClosed,
    Unclassified,
}

/// What the taxonomy says about one class.
#[derive(Debug)]
pub struct ClassInfo {
    pub class: Class,
    pub token: &'static str,
    pub layer: Layer,
    pub origin: Origin,
    pub side: Side,
    /// RFC 9209 `Proxy-Status` error type, for `proxy_status: true`.
    pub proxy_status: &'static str,
}

/// The prose about one class (docs, demo, scenario table). A table of its own: the plugin
/// never reads it, so it stays out of the wasm module.
#[derive(Debug)]
pub struct ClassDocs {
    /// What it means, in one line.
    pub meaning: &'static str,
    /// Where an operator should look next.
    pub next_step: &'static str,
}

macro_rules! class_table {
    ($( $class:ident => $token:literal, $layer:ident, $origin:ident, $side:ident, $ps:literal,
        $meaning:literal, $next:literal; )*) => {
        /// Every class, in enum order.
        pub const CLASSES: &[ClassInfo] = &[$( ClassInfo {
            class: Class::$class, token: $token, layer: Layer::$layer, origin: Origin::$origin,
            side: Side::$side, proxy_status: $ps,
        }, )*];
        /// The prose of every class, in enum order.
        pub const CLASS_DOCS: &[ClassDocs] = &[$( ClassDocs {
            meaning: $meaning, next_step: $next,
        }, )*];
    };
}

class_table! {
    ConnectRefused => "connect_refused", L4, Proxy, Upstream, "connection_refused",
        "the upstream host refused the TCP connection (nothing listening, or a middlebox RST)",
        "is the app listening on the target port? check the endpoint's pod/process and any firewall";
    ConnectTimeout => "connect_timeout", L4, Proxy, Upstream, "connection_timeout",
        "the TCP (or TLS) connection was not established within connect_timeout",
        "SYNs are dropped or the host is overloaded: check network policy, firewall, node load";
    TlsCertificateError => "tls_certificate_error", L4, Proxy, Upstream, "tls_certificate_error",
        "the upstream's certificate failed verification (unknown CA, SAN mismatch, expired)",
        "compare the upstream certificate with the cluster's trusted CA and SAN matchers";
    TlsHandshakeRejected => "tls_handshake_rejected", L4, Proxy, Upstream, "tls_alert_received",
        "the upstream aborted the TLS handshake with an alert (e.g. it requires a client certificate)",
        "check mTLS modes on both sides (PeerAuthentication STRICT vs a plaintext or non-mesh client)";
    TlsProtocolError => "tls_protocol_error", L4, Proxy, Upstream, "tls_protocol_error",
        "the TLS handshake failed for another reason (e.g. the peer speaks plaintext)",
        "the cluster uses TLS but the port serves plaintext (or the reverse): check DestinationRule tls mode";
    ConnectionTerminated => "connection_terminated", L4, Proxy, Upstream, "connection_terminated",
        "the upstream closed or reset the connection before sending any response byte",
        "look at the upstream app: it crashed, closed on purpose, or hit its keep-alive timeout";
    NoHealthyUpstream => "no_healthy_upstream", L4, Proxy, Upstream, "destination_unavailable",
        "the cluster had no healthy endpoint to connect to",
        "check endpoints/readiness of the target service and outlier detection ejections";
    DnsResolutionFailed => "dns_resolution_failed", L4, Proxy, Upstream, "dns_error",
        "the upstream host name could not be resolved",
        "check the cluster's DNS name and the resolver";
    DownstreamDisconnect => "downstream_disconnect", L4, Client, Downstream, "connection_terminated",
        "the client went away (closed or reset) before the response completed",
        "the client gave up: check its timeout against this route's latency";
    ResponseTruncated => "response_truncated", L4, App, Upstream, "http_response_incomplete",
        "the response started, then the upstream broke it (reset, close, or broken framing)",
        "hint broken_chunked_framing: the app declared chunked but sent a plain body (copied headers); else look for upstream crashes or resets";
    TransferStalled => "transfer_stalled", L4, Proxy, Upstream, "http_response_timeout",
        "the response started, then no more bytes arrived until a timeout fired",
        "black-hole signature: MTU/fragmentation, packet loss or a middlebox; check with large vs small payloads";
    UpstreamProtocolError => "upstream_protocol_error", L7, Proxy, Upstream, "http_protocol_error",
        "the upstream's response violated HTTP framing (CL+TE, duplicate CL/TE, h2 vs h1)",
        "check the app's response headers (copied Transfer-Encoding/Content-Length) and the cluster's protocol";
    StreamReset => "stream_reset", L7, Proxy, Upstream, "connection_terminated",
        "the upstream reset the HTTP/2 stream (RST_STREAM, refused stream) before responding",
        "look at the upstream's HTTP/2 server: stream limits, GOAWAY on restart, errors";
    UpstreamTimeout => "upstream_timeout", L7, Proxy, Upstream, "http_response_timeout",
        "the upstream did not answer within the route (or per-try) timeout",
        "the app is slow: check its latency; hint slow_connect points at the network instead";
    IdleTimeout => "idle_timeout", L7, Proxy, Upstream, "http_response_timeout",
        "the stream saw no activity for the idle timeout",
        "the app stalled mid-exchange: check its latency and the route's idle_timeout";
    MaxDurationReached => "max_duration_reached", L7, Proxy, Upstream, "http_response_timeout",
        "the stream reached its configured maximum duration",
        "check max_stream_duration against how long the app legitimately needs";
    CircuitBreakerOpen => "circuit_breaker_open", L7, Proxy, Upstream, "connection_limit_reached",
        "this proxy's circuit breaker for the cluster overflowed",
        "raise the DestinationRule connectionPool limits or find why the upstream is slow";
    ClusterNotFound => "cluster_not_found", L7, Proxy, Local, "destination_unavailable",
        "the route points at a cluster this proxy does not know",
        "configuration: check the route's destination and that the cluster was pushed";
    RouteNotFound => "route_not_found", L7, Proxy, Local, "destination_not_found",
        "no route matched the request",
        "configuration: check the VirtualService/route host and path matches";
    AuthzDenied => "authz_denied", L7, Proxy, Local, "http_request_denied",
        "this proxy's authorization policy (RBAC, ext_authz) denied the request",
        "policy, not network: check AuthorizationPolicy/RBAC rules for this source";
    AuthnFailed => "authn_failed", L7, Proxy, Local, "http_request_denied",
        "this proxy rejected the request's credentials (JWT)",
        "check the token, issuer and RequestAuthentication";
    RateLimited => "rate_limited", L7, Proxy, Local, "connection_limit_reached",
        "this proxy's rate limit rejected the request (or the rate limit service failed)",
        "check local/global rate limit settings and the client's request rate";
    LoadShed => "load_shed", L7, Proxy, Local, "connection_limit_reached",
        "this proxy dropped the request on purpose (drop_overload, overload manager, health check failing)",
        "check the cluster's drop_overloads, overload manager and health-check state";
    FaultInjected => "fault_injected", L7, Proxy, Local, "proxy_internal_response",
        "a fault injection rule aborted the request",
        "a VirtualService fault rule is active: remove it if unintended";
    DownstreamProtocolError => "downstream_protocol_error", L7, Client, Downstream, "http_request_error",
        "the client sent a malformed request (codec error, bad headers, HTTP/1.0)",
        "fix the client: its request framing or headers are invalid";
    FilterFailure => "filter_failure", L7, Proxy, Local, "proxy_internal_error",
        "a filter of this proxy failed (wasm VM failure, missing filter config)",
        "check this proxy's logs for the failing filter";
    AppError => "app_error", L7, App, Upstream, "",
        "the upstream application answered with a failing HTTP status",
        "look at the app's logs: the network delivered its answer";
    AppGrpcError => "app_grpc_error", L7, App, Upstream, "",
        "the upstream application answered with a failing gRPC status",
        "look at the app's logs: the network delivered its answer";
    GatewayError => "gateway_error", L7, UpstreamProxy, Upstream, "",
        "a proxy or load balancer further upstream (nginx, HAProxy, ...) answered with its own error page: it got no valid answer from its backend",
        "the app behind that gateway never answered: read the gateway's error log for its backend, then check that backend (the table of gateway replies below says which)";
    GrpcDeadlineExceeded => "grpc_deadline_exceeded", L7, Client, Upstream, "",
        "the gRPC call outlived the deadline its client set (grpc-timeout): the client cancelled it, or the server answered DEADLINE_EXCEEDED, whichever timer fired first",
        "latency, not the network: compare the client's deadline with the upstream's latency (p99); raise the deadline or make the call faster, and check that each hop passes on the remaining deadline";
    DownstreamTlsError => "downstream_tls_error", L4, Client, Downstream, "",
        "the client's TLS handshake with this proxy failed (plaintext client on a TLS port, missing or untrusted client certificate)",
        "check the client's TLS settings against this listener: a plaintext client on a STRICT mTLS port, or a certificate it does not trust (network filter only)";
    ConnectionPolicyClosed => "connection_policy_closed", L4, Proxy, Local, "",
        "a network filter of this proxy closed the connection and gave a reason (connection termination details)",
        "read `detail`: it names the filter's reason (network filters only)";
    Unclassified => "unclassified", Unknown, Proxy, Local, "proxy_internal_error",
        "failing, but no rule matched the signals",
        "read the flags and detail parameters; please report the case";
}

impl Class {
    pub fn info(self) -> &'static ClassInfo {
        CLASSES.get(self as usize).unwrap_or(&UNCLASSIFIED)
    }

    /// What the class means and where to look next.
    pub fn docs(self) -> &'static ClassDocs {
        const NONE: ClassDocs = ClassDocs {
            meaning: "",
            next_step: "",
        };
        CLASS_DOCS.get(self as usize).unwrap_or(&NONE)
    }

    pub fn as_str(self) -> &'static str {
        self.info().token
    }

    pub fn parse(s: &str) -> Option<Class> {
        CLASSES.iter().find(|c| c.token == s).map(|c| c.class)
    }

    pub fn all() -> impl Iterator<Item = Class> {
        CLASSES.iter().map(|c| c.class)
    }
}

const UNCLASSIFIED: ClassInfo = ClassInfo {
    class: Class::Unclassified,
    token: "unclassified",
    layer: Layer::Unknown,
    origin: Origin::Proxy,
    side: Side::Local,
    proxy_status: "proxy_internal_error",
};

/// A hint refines a verdict; several can apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hint {
    RetriesExhausted,
    AppClosedConnection,
    HopByHopHeaders,
    BrokenChunkedFraming,
    Mtls,
    LargePayload,
    RetryBudgetExceeded,
    SlowConnect,
    ReusedConnection,
    Tls13NoClientCert,
}

/// Every hint with its token, in the order they are written.
pub const HINTS: [(Hint, &str); 10] = [
    (Hint::RetriesExhausted, "retries_exhausted"),
    (Hint::AppClosedConnection, "app_closed_connection"),
    (Hint::HopByHopHeaders, "hop_by_hop_headers"),
    (Hint::BrokenChunkedFraming, "broken_chunked_framing"),
    (Hint::Mtls, "mtls"),
    (Hint::LargePayload, "large_payload"),
    (Hint::RetryBudgetExceeded, "retry_budget_exceeded"),
    (Hint::SlowConnect, "slow_connect"),
    (Hint::ReusedConnection, "reused_connection"),
    (Hint::Tls13NoClientCert, "tls13_no_client_cert"),
];

/// What each hint of [`HINTS`] means, same order (docs only: kept out of the wasm module).
pub const HINT_MEANINGS: [&str; 10] = [
    "URX: the retry policy gave up; `attempts` says how many were made",
    "UC on an inbound listener: the local app closed the connection without answering - look at the app, not the network",
    "the failing response carried hop-by-hop headers (connection, te, trailer, upgrade, ...): an app copying another response's headers",
    "the response declared chunked framing and no body chunk could be parsed: copied Transfer-Encoding over a plain body",
    "the failing upstream connection used mesh mTLS (on transport-layer verdicts: on an app's error in a mesh it would always be true)",
    "the request or response body was at or above large_payload_bytes",
    "retries to this cluster exceeded the retry budget in the current window",
    "the upstream connection took a second or more to establish: SYN retransmissions, i.e. loss on the path",
    "the request went out on a pooled connection that had already served one, and the upstream closed it before answering. When the upstream closes idle connections (its keep-alive timeout), this is the keep-alive race: make the upstream's keep-alive timeout longer than this proxy's idle timeout for the cluster, and retry on reset",
    "the upstream closed a new TLS 1.3 connection before answering, and this proxy presented no client certificate: a server that requires one rejects it this way under TLS 1.3 (alert 116 after the handshake, which Envoy reports as a plain termination). Check the mTLS modes: the upstream wants mTLS (PeerAuthentication STRICT, a server requiring client certificates) and this side sends none (DestinationRule tls mode DISABLE or SIMPLE, or a workload without sidecar)",
];

impl Hint {
    pub const fn bit(self) -> u16 {
        1 << (self as u16)
    }

    pub fn as_str(self) -> &'static str {
        HINTS.get(self as usize).map_or("", |h| h.1)
    }

    pub fn parse(s: &str) -> Option<Hint> {
        HINTS.iter().find(|h| h.1 == s).map(|h| h.0)
    }
}

/// A set of hints (bit per hint).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Hints(pub u16);

impl Hints {
    pub fn insert(&mut self, hint: Hint) {
        self.0 |= hint.bit();
    }

    pub const fn contains(self, hint: Hint) -> bool {
        self.0 & hint.bit() != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Hint> {
        HINTS.iter().map(|h| h.0).filter(move |h| self.contains(*h))
    }
}

/// One condition of a rule; all conditions of a rule must hold.
#[derive(Clone, Copy, Debug)]
pub enum Cond {
    /// The response flag is set.
    Flag(Flag),
    /// `response.code_details` equals the text.
    Details(&'static str),
    /// `response.code_details` starts with the text.
    DetailsPrefix(&'static str),
    /// `response.code_details` contains the text.
    DetailsContains(&'static str),
    /// `upstream.transport_failure_reason` contains the text.
    TfrContains(&'static str),
    /// The upstream's response headers had been passed on before the failure.
    ResponseStarted,
    /// The response declared chunked framing and not one body byte could be delivered.
    ChunkedWithoutBody,
    /// The upstream application answered (`via_upstream`).
    ViaUpstream,
    /// The real `grpc-status` is in the configured failing set.
    GrpcFailing,
    /// The HTTP status counts as failing for an app response.
    StatusFailing,
}

/// One row of the rule table: the first rule whose conditions all hold decides the class.
#[derive(Debug)]
pub struct Rule {
    pub class: Class,
    pub when: &'static [Cond],
    /// Overrides the class's layer for this rule.
    pub layer: Option<Layer>,
    /// A hint this rule implies.
    pub hint: Option<Hint>,
}

const fn rule(class: Class, when: &'static [Cond]) -> Rule {
    Rule {
        class,
        when,
        layer: None,
        hint: None,
    }
}

use Cond::*;
const URARS: &str = "upstream_reset_after_response_started";

/// The ordered rules (first match wins). Late signals (after the response started) come before
/// the flag rules they share flags with.
pub const RULES: &[Rule] = &[
    rule(Class::FilterFailure, &[Details("wasm_fail_stream")]),
    rule(Class::FilterFailure, &[Flag(Flag::NFCF)]),
    rule(Class::DownstreamDisconnect, &[Flag(Flag::DC)]),
    rule(Class::DownstreamDisconnect, &[Flag(Flag::DR)]),
    rule(
        Class::DownstreamDisconnect,
        &[DetailsPrefix("downstream_remote_disconnect")],
    ),
    rule(Class::DownstreamProtocolError, &[Flag(Flag::DPE)]),
    rule(Class::DownstreamProtocolError, &[Flag(Flag::IH)]),
    rule(Class::DownstreamProtocolError, &[DetailsPrefix("http1.")]),
    rule(Class::DownstreamProtocolError, &[DetailsPrefix("http2.")]),
    rule(Class::DownstreamProtocolError, &[Details("low_version")]),
    rule(
        Class::TlsCertificateError,
        &[Flag(Flag::UF), TfrContains("CERTIFICATE_VERIFY_FAILED")],
    ),
    rule(
        Class::TlsHandshakeRejected,
        &[Flag(Flag::UF), TfrContains("_ALERT_")],
    ),
    rule(
        Class::TlsProtocolError,
        &[Flag(Flag::UF), TfrContains("TLS_error")],
    ),
    rule(
        Class::ConnectTimeout,
        &[Flag(Flag::UF), DetailsContains("{connection_timeout")],
    ),
    // TCP connected (no `delayed connect error`), then the peer closed during the TLS handshake.
    rule(
        Class::TlsProtocolError,
        &[
            Flag(Flag::UF),
            DetailsContains("{remote_connection_failure}"),
        ],
    ),
    rule(Class::ConnectRefused, &[Flag(Flag::UF)]),
    rule(Class::DnsResolutionFailed, &[Flag(Flag::DF)]),
    rule(Class::NoHealthyUpstream, &[Flag(Flag::UH)]),
    rule(Class::CircuitBreakerOpen, &[Flag(Flag::UO)]),
    rule(Class::TransferStalled, &[Flag(Flag::UT), ResponseStarted]),
    rule(Class::TransferStalled, &[Flag(Flag::SI), ResponseStarted]),
    Rule {
        class: Class::ResponseTruncated,
        when: &[DetailsPrefix(URARS), ChunkedWithoutBody],
        layer: Some(Layer::L7),
        hint: Some(Hint::BrokenChunkedFraming),
    },
    rule(Class::ResponseTruncated, &[DetailsPrefix(URARS)]),
    rule(
        Class::ResponseTruncated,
        &[Flag(Flag::UPE), ResponseStarted],
    ),
    rule(Class::ResponseTruncated, &[Flag(Flag::UR), ResponseStarted]),
    rule(Class::UpstreamProtocolError, &[Flag(Flag::UPE)]),
    rule(Class::ConnectionTerminated, &[Flag(Flag::UC)]),
    rule(Class::ConnectionTerminated, &[Flag(Flag::LR)]),
    rule(Class::StreamReset, &[Flag(Flag::UR)]),
    rule(Class::UpstreamTimeout, &[Flag(Flag::UT)]),
    rule(Class::IdleTimeout, &[Flag(Flag::SI)]),
    rule(Class::MaxDurationReached, &[Flag(Flag::UMSDR)]),
    rule(Class::MaxDurationReached, &[Flag(Flag::DT)]),
    rule(
        Class::UpstreamTimeout,
        &[Details("request_overall_timeout")],
    ),
    rule(
        Class::MaxDurationReached,
        &[Details("max_duration_timeout")],
    ),
    rule(Class::ClusterNotFound, &[Flag(Flag::NC)]),
    rule(Class::RouteNotFound, &[Flag(Flag::NR)]),
    rule(
        Class::RouteNotFound,
        &[Details("route_configuration_not_found")],
    ),
    rule(Class::AuthzDenied, &[Flag(Flag::UAEX)]),
    rule(Class::AuthzDenied, &[DetailsPrefix("rbac_access_denied")]),
    rule(Class::AuthzDenied, &[DetailsPrefix("ext_authz")]),
    rule(Class::AuthnFailed, &[DetailsPrefix("jwt_authn")]),
    rule(Class::RateLimited, &[Flag(Flag::RL)]),
    rule(Class::RateLimited, &[Flag(Flag::RLSE)]),
    rule(Class::RateLimited, &[Details("local_rate_limited")]),
    rule(Class::RateLimited, &[Details("request_rate_limited")]),
    rule(Class::RateLimited, &[Details("rate_limiter_error")]),
    rule(Class::LoadShed, &[Flag(Flag::DO)]),
    rule(Class::LoadShed, &[Flag(Flag::UDO)]),
    rule(Class::LoadShed, &[Flag(Flag::OM)]),
    rule(Class::LoadShed, &[Flag(Flag::LH)]),
    rule(Class::LoadShed, &[Details("overload")]),
    rule(Class::FaultInjected, &[Flag(Flag::FI)]),
    rule(Class::FaultInjected, &[Details("fault_filter_abort")]),
    rule(Class::AppGrpcError, &[ViaUpstream, GrpcFailing]),
    rule(Class::AppError, &[ViaUpstream, StatusFailing]),
];

impl Cond {
    /// How the condition reads in the docs.
    pub fn describe(self) -> String {
        match self {
            Flag(f) => f.short_name().to_string(),
            Details(d) => format!("details `{d}`"),
            DetailsPrefix(d) => format!("details `{d}…`"),
            DetailsContains(d) => format!("details contain `{d}`"),
            TfrContains(t) => format!("transport failure reason contains `{t}`"),
            ResponseStarted => "after the response started".to_string(),
            ChunkedWithoutBody => "chunked response with no body delivered".to_string(),
            ViaUpstream => "`via_upstream`".to_string(),
            GrpcFailing => "grpc-status in the failing set".to_string(),
            StatusFailing => "status in the failing set".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn class_table_is_in_enum_order_with_unique_tokens() {
        for (i, info) in CLASSES.iter().enumerate() {
            assert_eq!(info.class as usize, i, "{} out of order", info.token);
            assert_eq!(Class::parse(info.token), Some(info.class));
        }
        assert_eq!(Class::Unclassified.info().layer, Layer::Unknown);
    }

    #[test]
    fn hint_table_is_in_enum_order() {
        for (i, h) in HINTS.iter().enumerate() {
            assert_eq!(h.0 as usize, i);
            assert_eq!(Hint::parse(h.1), Some(h.0));
        }
    }

    #[test]
    fn tokens_are_valid_rfc8941_tokens_and_label_values() {
        let ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
        };
        for c in CLASSES {
            assert!(ok(c.token), "{}", c.token);
        }
        for h in HINTS {
            assert!(ok(h.1), "{}", h.1);
        }
    }

    #[test]
    fn every_class_but_the_fallback_has_a_rule() {
        for c in Class::all().filter(|c| *c != Class::Unclassified) {
            assert!(
                RULES.iter().any(|r| r.class == c)
                    || c == Class::GrpcDeadlineExceeded // crate::grpc, over a rule's class
                    || crate::gateway_replies::GATEWAY_REPLIES
                        .iter()
                        .any(|r| r.class == c)
                    || crate::tcp::TCP_RULES.iter().any(|r| r.class == c),
                "{} has no rule",
                c.as_str()
            );
        }
    }
}
