//! Connection (L4) classification for the network filter: what the filter saw of one
//! connection (`TcpSignals`), the ordered rule table that maps it to a class of the taxonomy,
//! and the verdict it becomes. Same classes as the HTTP table where the meaning is the same;
//! every connection failure is layer `l4`.
//!
//! Evidence (docs/envoy-signals.md §2, §5, §7 "tcp_proxy + network wasm filter"): tcp_proxy sets
//! `UF`+`URX` on connect failures (refused: transport failure reason `delayed connect error…`;
//! timeout: no reason; TLS: `TLS_error:…`), `UR` on an upstream RST, `DT` on
//! `max_downstream_connection_duration`, `UO` on a `max_connections` overflow. Network RBAC sets
//! `connection.termination_details`; a failed downstream TLS handshake sets
//! `connection.transport_failure_reason`. The idle timeout sets nothing at all: it is inferred
//! from Envoy closing the connection itself, without an upstream FIN, after a quiet period.

use crate::classify::Outcome;
use crate::flags::{Flag as F, ResponseFlags};
use crate::substr;
use crate::taxonomy::{Class, Direction, Hint, Hints, Layer, Side};
use crate::verdict::Verdict;

/// Who closed the downstream connection (the `PeerType` of `on_downstream_close`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Closer {
    #[default]
    Unknown,
    /// Envoy closed it.
    Local,
    /// The client closed it.
    Remote,
}

impl Closer {
    /// From the ABI value: 1 = Local, 2 = Remote, anything else Unknown.
    pub fn from_peer_type(value: u32) -> Closer {
        match value {
            1 => Closer::Local,
            2 => Closer::Remote,
            _ => Closer::Unknown,
        }
    }
}

/// Silence before Envoy's own close from which the close counts as an idle timeout. Envoy does
/// not say that its idle timer fired (no flag, no termination details), and the configured
/// `idle_timeout` cannot be read from a filter; real idle timeouts are seconds to hours.
pub const IDLE_QUIET_NANOS: u64 = 1_000_000_000;

/// What the network filter observed about one connection.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TcpSignals {
    pub direction: Direction,
    /// `response.flags` of the connection.
    pub flags: ResponseFlags,
    /// `upstream.transport_failure_reason`.
    pub upstream_failure: Option<String>,
    /// `connection.transport_failure_reason` (downstream TLS handshake).
    pub downstream_failure: Option<String>,
    /// `connection.termination_details` (a network filter closed the connection with a reason).
    pub termination: Option<String>,
    /// `on_downstream_close` ran, and who closed.
    pub downstream_closed: Option<Closer>,
    /// The upstream ended its side cleanly (FIN): `on_upstream_close`, or end of stream on
    /// upstream data.
    pub upstream_fin: bool,
    /// The connection is proxied to a cluster (tcp_proxy picked one), as opposed to a
    /// terminating filter such as the HTTP connection manager, which has no upstream events.
    pub proxied: bool,
    /// Bytes the client sent.
    pub bytes_from_downstream: u64,
    /// Bytes sent to the client.
    pub bytes_to_downstream: u64,
    /// Time without data in either direction before the downstream close.
    pub quiet_nanos: Option<u64>,
    /// `upstream.request_attempt_count`.
    pub attempts: u64,
    /// `upstream.cx_pool_ready_duration`.
    pub connect_nanos: Option<u64>,
    /// The upstream connection used mesh mTLS (a SPIFFE peer identity).
    pub upstream_mtls: bool,
}

/// One condition of a connection rule.
#[derive(Clone, Copy, Debug)]
pub enum TcpCond {
    Flag(F),
    /// Any flag that marks a failure.
    AnyFailureFlag,
    /// `connection.termination_details` starts with the text.
    TerminationPrefix(&'static str),
    /// `connection.termination_details` is set.
    Termination,
    /// `connection.transport_failure_reason` is set.
    DownstreamTlsFailure,
    /// `upstream.transport_failure_reason` contains the text.
    UpstreamTfrContains(&'static str),
    /// `upstream.transport_failure_reason` is empty.
    NoUpstreamTfr,
    ClosedBy(Closer),
    NoUpstreamFin,
    Proxied,
    /// At least [`IDLE_QUIET_NANOS`] without data before the close.
    QuietForIdleTimeout,
}

impl TcpCond {
    /// How the condition reads in the docs.
    pub fn describe(self) -> String {
        match self {
            TcpCond::Flag(f) => f.short_name().to_string(),
            TcpCond::AnyFailureFlag => "any other failure flag".into(),
            TcpCond::TerminationPrefix(t) => format!("termination details `{t}…`"),
            TcpCond::Termination => "any termination details".into(),
            TcpCond::DownstreamTlsFailure => "connection transport failure reason set".into(),
            TcpCond::UpstreamTfrContains(t) => {
                format!("transport failure reason contains `{t}`")
            }
            TcpCond::NoUpstreamTfr => "no transport failure reason".into(),
            TcpCond::ClosedBy(Closer::Local) => "Envoy closed the connection".into(),
            TcpCond::ClosedBy(Closer::Remote) => "the client closed the connection".into(),
            TcpCond::ClosedBy(Closer::Unknown) => "closed by an unknown peer".into(),
            TcpCond::NoUpstreamFin => "no FIN from the upstream".into(),
            TcpCond::Proxied => "proxied to a cluster".into(),
            TcpCond::QuietForIdleTimeout => format!(
                "no data for {} s or more before the close",
                IDLE_QUIET_NANOS / 1_000_000_000
            ),
        }
    }
}

/// One row of the connection rule table: the first rule whose conditions all hold decides.
#[derive(Debug)]
pub struct TcpRule {
    pub class: Class,
    pub when: &'static [TcpCond],
    /// Overrides the class's side for connections.
    pub side: Option<Side>,
}

const fn rule(class: Class, when: &'static [TcpCond]) -> TcpRule {
    TcpRule {
        class,
        when,
        side: None,
    }
}

const fn local(class: Class, when: &'static [TcpCond]) -> TcpRule {
    TcpRule {
        class,
        when,
        side: Some(Side::Local),
    }
}

use TcpCond::*;

/// The ordered connection rules (first match wins). A connection no rule matches ended
/// normally: a client or server that closes cleanly is not a failure.
pub const TCP_RULES: &[TcpRule] = &[
    rule(
        Class::AuthzDenied,
        &[TerminationPrefix("rbac_access_denied")],
    ),
    rule(Class::AuthzDenied, &[Flag(F::UAEX)]),
    rule(Class::ConnectionPolicyClosed, &[Termination]),
    rule(Class::DownstreamTlsError, &[DownstreamTlsFailure]),
    rule(
        Class::TlsCertificateError,
        &[
            Flag(F::UF),
            UpstreamTfrContains("CERTIFICATE_VERIFY_FAILED"),
        ],
    ),
    rule(
        Class::TlsHandshakeRejected,
        &[Flag(F::UF), UpstreamTfrContains("_ALERT_")],
    ),
    rule(
        Class::TlsProtocolError,
        &[Flag(F::UF), UpstreamTfrContains("TLS_error")],
    ),
    rule(Class::ConnectTimeout, &[Flag(F::UF), NoUpstreamTfr]),
    rule(Class::ConnectRefused, &[Flag(F::UF)]),
    rule(Class::DnsResolutionFailed, &[Flag(F::DF)]),
    rule(Class::NoHealthyUpstream, &[Flag(F::UH)]),
    rule(Class::ClusterNotFound, &[Flag(F::NC)]),
    rule(Class::CircuitBreakerOpen, &[Flag(F::UO)]),
    local(Class::MaxDurationReached, &[Flag(F::DT)]),
    rule(Class::ConnectionTerminated, &[Flag(F::UR)]),
    rule(Class::ConnectionTerminated, &[Flag(F::UC)]),
    rule(Class::DownstreamDisconnect, &[Flag(F::DC)]),
    rule(Class::DownstreamDisconnect, &[Flag(F::DR)]),
    rule(Class::Unclassified, &[AnyFailureFlag]),
    rule(
        Class::DownstreamDisconnect,
        &[Proxied, ClosedBy(Closer::Remote), NoUpstreamFin],
    ),
    local(
        Class::IdleTimeout,
        &[
            Proxied,
            ClosedBy(Closer::Local),
            NoUpstreamFin,
            QuietForIdleTimeout,
        ],
    ),
    rule(
        Class::Unclassified,
        &[Proxied, ClosedBy(Closer::Local), NoUpstreamFin],
    ),
];

fn text(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

fn holds(cond: TcpCond, s: &TcpSignals) -> bool {
    match cond {
        Flag(f) => s.flags.has(f),
        AnyFailureFlag => s.flags.any_failure(),
        TerminationPrefix(t) => text(&s.termination).starts_with(t),
        Termination => !text(&s.termination).is_empty(),
        DownstreamTlsFailure => !text(&s.downstream_failure).is_empty(),
        UpstreamTfrContains(t) => substr::contains(text(&s.upstream_failure), t),
        NoUpstreamTfr => text(&s.upstream_failure).is_empty(),
        ClosedBy(c) => s.downstream_closed == Some(c),
        NoUpstreamFin => !s.upstream_fin,
        Proxied => s.proxied,
        QuietForIdleTimeout => s.quiet_nanos.is_some_and(|q| q >= IDLE_QUIET_NANOS),
    }
}

/// The first connection rule whose conditions all hold.
pub fn matching_tcp_rule(s: &TcpSignals) -> Option<&'static TcpRule> {
    TCP_RULES
        .iter()
        .find(|r| r.when.iter().all(|c| holds(*c, s)))
}

/// Classifies a finished connection; `None` when it ended normally.
pub fn classify_tcp(s: &TcpSignals) -> Option<Outcome> {
    let rule = matching_tcp_rule(s)?;
    let info = rule.class.info();
    let mut hints = Hints::default();
    // tcp_proxy sets URX on every failed connect, even with one attempt: only more than one
    // attempt means retries were exhausted.
    if s.flags.has(F::URX) && s.attempts > 1 {
        hints.insert(Hint::RetriesExhausted);
    }
    if s.upstream_mtls {
        hints.insert(Hint::Mtls);
    }
    if rule.class != Class::ConnectTimeout
        && s.connect_nanos
            .is_some_and(|n| n >= crate::classify::SLOW_CONNECT_NANOS)
    {
        hints.insert(Hint::SlowConnect);
    }
    Some(Outcome {
        class: rule.class,
        layer: if rule.class == Class::Unclassified {
            Layer::Unknown
        } else {
            Layer::L4
        },
        origin: info.origin,
        side: rule.side.unwrap_or(info.side),
        hints,
    })
}

/// The verdict for a failed connection. `detail` carries the most specific reason Envoy gave:
/// termination details, else the downstream or upstream transport failure reason
/// (tcp_proxy sets no response code details).
pub fn tcp_verdict(outcome: Outcome, s: &TcpSignals, hop: &str) -> Verdict {
    let detail = [&s.termination, &s.downstream_failure, &s.upstream_failure]
        .into_iter()
        .find_map(|d| d.as_ref().filter(|d| !d.is_empty()).cloned());
    Verdict::from_parts(
        outcome,
        crate::verdict::ExchangeFacts {
            dir: s.direction,
            hop,
            flags: s.flags,
            detail,
            attempts: s.attempts,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn every_rule_is_reachable() {
        // A rule hidden behind an earlier rule with a subset of its conditions is dead.
        for (i, r) in TCP_RULES.iter().enumerate() {
            for earlier in TCP_RULES.iter().take(i) {
                let subset = earlier
                    .when
                    .iter()
                    .all(|e| r.when.iter().any(|c| format!("{c:?}") == format!("{e:?}")));
                assert!(!subset, "rule {} is shadowed", i + 1);
            }
        }
    }

    #[test]
    fn closer_follows_the_abi() {
        assert_eq!(Closer::from_peer_type(1), Closer::Local);
        assert_eq!(Closer::from_peer_type(2), Closer::Remote);
        assert_eq!(Closer::from_peer_type(0), Closer::Unknown);
        assert_eq!(Closer::from_peer_type(7), Closer::Unknown);
    }
}
