//! Signals in, outcome out: is the exchange failing, and if so which class, layer, origin,
//! side and hints. Total: every input gets an answer, never an error.

use crate::config::Config;
use crate::flags::Flag;
use crate::signals::{Phase, Signals};
use crate::substr;
use crate::taxonomy::{Class, Cond, Direction, Hint, Hints, Layer, Origin, Rule, Side, RULES};
use crate::upstream::{class_for_proxy_status, UpstreamEvidence};

/// Connects slower than this earn the `slow_connect` hint (SYN retransmissions start at 1 s).
pub const SLOW_CONNECT_NANOS: u64 = 1_000_000_000;

/// The decision for one failing exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub class: Class,
    pub layer: Layer,
    pub origin: Origin,
    pub side: Side,
    pub hints: Hints,
}

impl Outcome {
    /// Is the upstream certificate worth reading for the `mtls` hint? Only transport-layer
    /// verdicts: there the mesh's mTLS is a suspect; on an app's 5xx in a mesh it is always
    /// true and says nothing (and reading it costs a host call per failure).
    pub fn wants_mtls(&self) -> bool {
        self.layer == Layer::L4
    }
}

/// Is this exchange failing? (docs/decision-tree.md; README.md, "The verdict header".)
pub fn is_failing(s: &Signals, cfg: &Config) -> bool {
    if matches!(s.upstream, UpstreamEvidence::Verdicts { .. }) {
        return true; // a trusted upstream hop already judged it failing
    }
    // Another Envoy's local reply with status >= 400 was failing at that hop (route, RBAC, rate
    // limit...): it stays failing here, even when this hop's failure_statuses would not say so.
    if s.via_upstream()
        && s.status.is_some_and(|c| c >= 400)
        && matches!(
            s.upstream,
            UpstreamEvidence::ProxyStatus { .. }
                | UpstreamEvidence::LocalReplyBody { .. }
                | UpstreamEvidence::Inferred { .. }
        )
    {
        return true;
    }
    if let Some(status) = s.status {
        if status >= 500 && !s.via_upstream() {
            return true;
        }
        if s.via_upstream() && cfg.failure_statuses.contains(status) {
            return true;
        }
        if s.local_reply() && status >= 400 {
            return true;
        }
        if s.details.is_none() && status >= 500 {
            return true;
        }
    }
    if s.grpc_status.is_some_and(|g| cfg.grpc_failing(g)) {
        return true;
    }
    // Late failures (reset, truncation, client gone) only show in flags and details.
    s.flags.any_failure()
        || s.details()
            .starts_with("upstream_reset_after_response_started")
        || (s.phase == Phase::Log && s.status.is_none() && s.details.is_some())
}

fn holds(cond: Cond, s: &Signals, cfg: &Config) -> bool {
    match cond {
        Cond::Flag(f) => s.flags.has(f),
        Cond::Details(d) => s.details() == d,
        Cond::DetailsPrefix(d) => s.details().starts_with(d),
        Cond::DetailsContains(d) => substr::contains(s.details(), d),
        Cond::TfrContains(t) => substr::contains(s.transport_failure(), t),
        Cond::ResponseStarted => s.response_started,
        Cond::ChunkedWithoutBody => s.chunked && s.response_body_bytes == 0,
        Cond::ViaUpstream => s.via_upstream(),
        Cond::GrpcFailing => s.grpc_status.is_some_and(|g| cfg.grpc_failing(g)),
        Cond::StatusFailing => s.status.is_some_and(|c| cfg.failure_statuses.contains(c)),
    }
}

/// The first rule whose conditions all hold.
pub fn matching_rule(s: &Signals, cfg: &Config) -> Option<&'static Rule> {
    RULES
        .iter()
        .find(|r| r.when.iter().all(|c| holds(*c, s, cfg)))
}

/// Classifies a failing exchange.
pub fn classify(s: &Signals, cfg: &Config) -> Outcome {
    let mut hints = Hints::default();
    let (class, layer, origin, side) =
        if let Some((class, layer)) = upstream_class(s, cfg, &mut hints) {
            (class, layer, Origin::UpstreamProxy, Side::Upstream)
        } else {
            let rule = matching_rule(s, cfg);
            let class = rule.map_or(Class::Unclassified, |r| r.class);
            // Both ends of a gRPC deadline (client cancel, server status 4): one verdict.
            let (rule, class) = if s.grpc_deadline && crate::grpc::may_be_deadline(s, class) {
                (None, Class::GrpcDeadlineExceeded)
            } else {
                (rule, class)
            };
            if let Some(h) = rule.and_then(|r| r.hint) {
                hints.insert(h);
            }
            let info = class.info();
            (
                class,
                rule.and_then(|r| r.layer).unwrap_or(info.layer),
                info.origin,
                info.side,
            )
        };
    add_hints(s, cfg, class, &mut hints);
    Outcome {
        class,
        layer,
        origin,
        side,
        hints,
    }
}

/// When an upstream proxy produced the failing answer: its class and layer.
fn upstream_class(s: &Signals, cfg: &Config, hints: &mut Hints) -> Option<(Class, Layer)> {
    if !s.via_upstream() {
        return None;
    }
    match &s.upstream {
        UpstreamEvidence::None => None,
        UpstreamEvidence::Verdicts { layer, class } => Some((*class, *layer)),
        UpstreamEvidence::ProxyStatus {
            error,
            details,
            flags,
        } => {
            // Re-run the rules on what the upstream Envoy saw.
            let theirs = Signals {
                flags: *flags,
                details: details.clone(),
                status: s.status,
                ..Signals::default()
            };
            let rule = matching_rule(&theirs, cfg)
                .filter(|r| r.class != Class::AppError && r.class != Class::AppGrpcError);
            if flags.has(Flag::URX) {
                hints.insert(Hint::RetriesExhausted);
            }
            if let Some(h) = rule.and_then(|r| r.hint) {
                hints.insert(h);
            }
            let class = rule.map_or_else(|| class_for_proxy_status(error), |r| r.class);
            Some((
                class,
                rule.and_then(|r| r.layer).unwrap_or(class.info().layer),
            ))
        }
        UpstreamEvidence::LocalReplyBody { class, retried } => {
            if *retried {
                hints.insert(Hint::RetriesExhausted);
            }
            Some((*class, class.info().layer))
        }
        UpstreamEvidence::Inferred { class } => Some((*class, class.info().layer)),
    }
}

fn add_hints(s: &Signals, cfg: &Config, class: Class, hints: &mut Hints) {
    if s.flags.has(Flag::URX) {
        hints.insert(Hint::RetriesExhausted);
    }
    if class == Class::ConnectionTerminated && s.direction == Direction::Inbound {
        hints.insert(Hint::AppClosedConnection);
    }
    if s.hop_by_hop.suspicious() {
        hints.insert(Hint::HopByHopHeaders);
    }
    if s.upstream_mtls {
        hints.insert(Hint::Mtls);
    }
    let response_bytes = s
        .response_body_bytes
        .max(s.declared_response_bytes.unwrap_or(0));
    if s.request_body_bytes >= cfg.large_payload_bytes || response_bytes >= cfg.large_payload_bytes
    {
        hints.insert(Hint::LargePayload);
    }
    if s.retry_budget_exceeded {
        hints.insert(Hint::RetryBudgetExceeded);
    }
    if s.upstream_tls13_no_client_cert && class == Class::ConnectionTerminated {
        hints.insert(Hint::Tls13NoClientCert);
    }
    if crate::reused_connection::reused_connection(s, class) {
        hints.insert(Hint::ReusedConnection);
    }
    // On a failed connect (UF) the duration measures the failure, not a slow success.
    if !s.flags.has(Flag::UF) && s.connect_nanos.is_some_and(|n| n >= SLOW_CONNECT_NANOS) {
        hints.insert(Hint::SlowConnect);
    }
}
