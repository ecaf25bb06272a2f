//! What the plugin observed about one exchange, as plain data. The host glue fills it from
//! Envoy's properties and headers; nothing here reads the host or the clock.

use crate::flags::ResponseFlags;
use crate::hop_by_hop::HopByHop;
use crate::taxonomy::Direction;
use crate::upstream::UpstreamEvidence;

/// `response.code_details` values that mean "the answer is not this proxy's own reply".
const NOT_A_LOCAL_REPLY: [&str; 3] = ["via_upstream", "direct_response", "health_check_ok"];

/// When the signals were gathered: the two points where the plugin decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// `on_http_response_headers`: the verdict can still become a header.
    #[default]
    ResponseHeaders,
    /// `on_log`: the end of the stream; late failures are visible.
    Log,
}

/// Everything classification looks at.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Signals {
    pub phase: Phase,
    /// HTTP status sent (or about to be sent) downstream; `None` when no response was sent.
    pub status: Option<u16>,
    pub flags: ResponseFlags,
    /// `response.code_details`.
    pub details: Option<String>,
    /// `upstream.transport_failure_reason`.
    pub transport_failure: Option<String>,
    /// The real `grpc-status` (trailers-only headers, or trailers), never Envoy's derived one.
    pub grpc_status: Option<u32>,
    /// `upstream.request_attempt_count`.
    pub attempts: u64,
    pub direction: Direction,
    /// The upstream's response headers went downstream before the failure.
    pub response_started: bool,
    /// The upstream response declared `transfer-encoding: chunked`.
    pub chunked: bool,
    /// Response body bytes seen by the filter.
    pub response_body_bytes: u64,
    /// The response's declared `content-length` (a stalled body never arrives, but its size
    /// was announced: that is what `large_payload` needs).
    pub declared_response_bytes: Option<u64>,
    /// Request body bytes (for `large_payload`).
    pub request_body_bytes: u64,
    /// Hop-by-hop headers the upstream response carried.
    pub hop_by_hop: HopByHop,
    /// The upstream connection used mesh mTLS (a SPIFFE peer identity).
    pub upstream_mtls: bool,
    /// A new TLS 1.3 upstream connection on which this proxy presented no certificate (read by
    /// the glue only when [`crate::tls13_rejection::worth_reading`] says so).
    pub upstream_tls13_no_client_cert: bool,
    /// The request carried `grpc-timeout` and the call lasted about that long (read by the
    /// glue only when [`crate::grpc::may_be_deadline`] says so).
    pub grpc_deadline: bool,
    /// `upstream.cx_pool_ready_duration` in nanoseconds.
    pub connect_nanos: Option<u64>,
    /// Retries to this cluster are over budget in the current window.
    pub retry_budget_exceeded: bool,
    /// What the response says about a proxy further upstream.
    pub upstream: UpstreamEvidence,
}

impl Signals {
    pub fn details(&self) -> &str {
        self.details.as_deref().unwrap_or("")
    }

    /// `upstream.transport_failure_reason`, else the copy Envoy puts in the code details
    /// (`upstream_reset_before_response_started{remote_connection_failure|TLS_error:...}`,
    /// spaces as `_`): the glue reads the details anyway, so it skips the extra property.
    pub fn transport_failure(&self) -> &str {
        match self.transport_failure.as_deref() {
            Some(t) if !t.is_empty() => t,
            _ => transport_failure_in_details(self.details()),
        }
    }

    /// The upstream application's answer passed through (`via_upstream`).
    pub fn via_upstream(&self) -> bool {
        self.details.as_deref() == Some("via_upstream")
    }

    /// This proxy produced the response itself (route, RBAC, rate limit, router reply...).
    pub fn local_reply(&self) -> bool {
        self.details
            .as_deref()
            .is_some_and(|d| !NOT_A_LOCAL_REPLY.contains(&d))
    }
}

/// The transport failure reason inside `reason{reset_reason|transport_failure_reason}`.
pub fn transport_failure_in_details(details: &str) -> &str {
    details
        .split_once('{')
        .and_then(|(_, inner)| inner.split_once('|'))
        .map(|(_, rest)| rest.strip_suffix('}').unwrap_or(rest))
        .unwrap_or("")
}
