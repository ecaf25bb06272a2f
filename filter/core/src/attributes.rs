//! Every Envoy attribute (property) the plugin reads: one row each, with when it is read, what
//! it holds, why, and what it costs. `filter/src/host.rs` has one typed reader per row (the only
//! place a property path appears), and SECURITY.md's table of what the plugin reads is rendered
//! from this one (`docs::attributes_markdown`, checked by tests/docs_sync.rs). Each read is a
//! host call (~13k Envoy instructions, docs/performance.md) and a trust decision: a new read is
//! a new row here.

/// When the plugin reads the attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Once per plugin configuration (`on_configure`).
    Configure,
    /// HTTP: at response headers, only when the headers show a failure.
    FailingHeaders,
    /// HTTP: at the end of the stream (`on_log`).
    Log,
    /// Network filter: once when the connection ends.
    ConnectionEnd,
}

impl When {
    pub const fn describe(self) -> &'static str {
        match self {
            When::Configure => "configuration",
            When::FailingHeaders => "failing response headers",
            When::Log => "end of request (`on_log`)",
            When::ConnectionEnd => "end of connection",
        }
    }
}

/// How often it is read, which is what it costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cost {
    /// Once per configuration: free on the request path.
    PerConfiguration,
    /// Only for failing requests (or only for some classes of them).
    FailuresOnly,
    /// Every request when the condition holds (see `why`), else never.
    Conditional,
    /// Once per connection (network filter).
    PerConnection,
}

impl Cost {
    pub const fn describe(self) -> &'static str {
        match self {
            Cost::PerConfiguration => "once per configuration",
            Cost::FailuresOnly => "failing requests only",
            Cost::Conditional => "per request, only as stated",
            Cost::PerConnection => "once per connection",
        }
    }
}

/// The value's wire type (proxy-wasm serialises properties as bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// 8 bytes, little-endian.
    Int,
    /// UTF-8 text (read lossily).
    Text,
}

/// One attribute the plugin reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attribute {
    /// The path as the host takes it: segments joined by NUL.
    pub path: &'static [u8],
    pub kind: Kind,
    pub when: &'static [When],
    pub cost: Cost,
    pub why: &'static str,
}

impl Attribute {
    /// The dotted name Envoy documents (`response.flags`).
    pub fn name(&self) -> String {
        self.path
            .iter()
            .map(|b| if *b == 0 { '.' } else { char::from(*b) })
            .collect()
    }
}

use Cost::*;
use Kind::*;
use When::*;

pub const RESPONSE_FLAGS: Attribute = Attribute {
    path: b"response\0flags",
    kind: Int,
    when: &[FailingHeaders, Log, ConnectionEnd],
    cost: FailuresOnly,
    why: "Envoy's response flags, the main evidence of every rule; at `on_log` only for a response that did not complete or has a failing gRPC trailer",
};
pub const RESPONSE_CODE_DETAILS: Attribute = Attribute {
    path: b"response\0code_details",
    kind: Text,
    when: &[FailingHeaders, Log],
    cost: FailuresOnly,
    why: "response code details: who answered, the reset reason (`detail`)",
};
pub const RESPONSE_CODE: Attribute = Attribute {
    path: b"response\0code",
    kind: Int,
    when: &[Log],
    cost: FailuresOnly,
    why: "the status of a late failure (no response headers seen)",
};
pub const RESPONSE_SIZE: Attribute = Attribute {
    path: b"response\0size",
    kind: Int,
    when: &[Log],
    cost: FailuresOnly,
    why: "response body bytes of a late failure (`large_payload` hint)",
};
pub const REQUEST_ATTEMPT_COUNT: Attribute = Attribute {
    path: b"upstream\0request_attempt_count",
    kind: Int,
    when: &[FailingHeaders, Log, ConnectionEnd],
    cost: Conditional,
    why: "upstream attempts (`attempts`, `retries_exhausted`); at `on_log` also for the retry-budget window, which samples requests past a rate",
};
pub const CX_POOL_READY_DURATION: Attribute = Attribute {
    path: b"upstream\0cx_pool_ready_duration",
    kind: Int,
    when: &[FailingHeaders, Log, ConnectionEnd],
    cost: FailuresOnly,
    why: "time to get an upstream connection (`slow_connect` hint); not read on a failed connect",
};
pub const UPSTREAM_PEER_URI_SAN: Attribute = Attribute {
    path: b"upstream\0uri_san_peer_certificate",
    kind: Text,
    when: &[FailingHeaders, Log, ConnectionEnd],
    cost: FailuresOnly,
    why: "a SPIFFE identity on the upstream certificate (`mtls` hint); HTTP: transport-layer verdicts only",
};
pub const UPSTREAM_TRANSPORT_FAILURE_REASON: Attribute = Attribute {
    path: b"upstream\0transport_failure_reason",
    kind: Text,
    when: &[ConnectionEnd],
    cost: PerConnection,
    why: "why the upstream connection failed (refused, TLS); HTTP reads it from the code details instead",
};
pub const CONNECTION_TRANSPORT_FAILURE_REASON: Attribute = Attribute {
    path: b"connection\0transport_failure_reason",
    kind: Text,
    when: &[ConnectionEnd],
    cost: PerConnection,
    why: "a failed downstream TLS handshake",
};
pub const CONNECTION_TERMINATION_DETAILS: Attribute = Attribute {
    path: b"connection\0termination_details",
    kind: Text,
    when: &[ConnectionEnd],
    cost: PerConnection,
    why: "network RBAC denials",
};
pub const UPSTREAM_ADDRESS: Attribute = Attribute {
    path: b"upstream\0address",
    kind: Text,
    when: &[ConnectionEnd],
    cost: PerConnection,
    why: "whether the connection was proxied at all (with `xds.cluster_name`)",
};
pub const CLUSTER_NAME: Attribute = Attribute {
    path: b"xds\0cluster_name",
    kind: Text,
    when: &[FailingHeaders, Log, ConnectionEnd],
    cost: Conditional,
    why: "the retry-budget window's key: read at `on_log` for sampled requests, and at failing headers only when some cluster is over budget; never written to a header or label",
};
pub const LISTENER_DIRECTION: Attribute = Attribute {
    path: b"xds\0listener_direction",
    kind: Int,
    when: &[FailingHeaders, Log, ConnectionEnd],
    cost: Conditional,
    why: "`dir` and the trust rule, on every request only when `direction` is `\"auto\"`",
};
pub const NODE_NAME: Attribute = Attribute {
    path: b"xds\0node\0metadata\0NAME",
    kind: Text,
    when: &[Configure],
    cost: PerConfiguration,
    why: "`hop` (Istio workload name), unless configured",
};
pub const NODE_NAMESPACE: Attribute = Attribute {
    path: b"xds\0node\0metadata\0NAMESPACE",
    kind: Text,
    when: &[Configure],
    cost: PerConfiguration,
    why: "`hop` (Istio namespace), unless configured",
};
pub const NODE_ID: Attribute = Attribute {
    path: b"xds\0node\0id",
    kind: Text,
    when: &[Configure],
    cost: PerConfiguration,
    why: "`hop` when there is no Istio metadata",
};
pub const PLUGIN_NAME: Attribute = Attribute {
    path: b"plugin_name",
    kind: Text,
    when: &[Configure],
    cost: PerConfiguration,
    why: "names the plugin in error logs; keys its last good configuration and window",
};
pub const PLUGIN_ROOT_ID: Attribute = Attribute {
    path: b"plugin_root_id",
    kind: Text,
    when: &[Configure],
    cost: PerConfiguration,
    why: "selects the role: HTTP filter, or network filter (`meshtriage-tcp`)",
};

pub const UPSTREAM_TLS_VERSION: Attribute = Attribute {
    path: b"upstream\0tls_version",
    kind: Text,
    when: &[FailingHeaders, Log],
    cost: FailuresOnly,
    why: "a new TLS 1.3 upstream connection closed before the response (`tls13_no_client_cert` hint); only for that failure",
};
pub const UPSTREAM_LOCAL_SUBJECT: Attribute = Attribute {
    path: b"upstream\0subject_local_certificate",
    kind: Text,
    when: &[FailingHeaders, Log],
    cost: FailuresOnly,
    why: "whether this proxy presented a client certificate (`tls13_no_client_cert` hint); only after a TLS 1.3 `upstream.tls_version`",
};
pub const REQUEST_GRPC_TIMEOUT: Attribute = Attribute {
    path: b"request\0headers\0grpc-timeout",
    kind: Text,
    when: &[Log],
    cost: FailuresOnly,
    why: "the call's deadline (`grpc_deadline_exceeded`); only for a client gone or a gRPC status 4 (Envoy answers `request.headers` at the log, not at response headers)",
};
pub const REQUEST_DURATION: Attribute = Attribute {
    path: b"request\0duration",
    kind: Int,
    when: &[Log],
    cost: FailuresOnly,
    why: "how long the call took, against its `grpc-timeout`; only when that header was there",
};

/// Every attribute read, in the order the docs list them.
pub const ATTRIBUTES: [Attribute; 22] = [
    RESPONSE_FLAGS,
    RESPONSE_CODE_DETAILS,
    RESPONSE_CODE,
    RESPONSE_SIZE,
    REQUEST_ATTEMPT_COUNT,
    CX_POOL_READY_DURATION,
    UPSTREAM_PEER_URI_SAN,
    UPSTREAM_TRANSPORT_FAILURE_REASON,
    CONNECTION_TRANSPORT_FAILURE_REASON,
    CONNECTION_TERMINATION_DETAILS,
    UPSTREAM_ADDRESS,
    CLUSTER_NAME,
    LISTENER_DIRECTION,
    NODE_NAME,
    NODE_NAMESPACE,
    NODE_ID,
    PLUGIN_NAME,
    PLUGIN_ROOT_ID,
    UPSTREAM_TLS_VERSION,
    UPSTREAM_LOCAL_SUBJECT,
    REQUEST_GRPC_TIMEOUT,
    REQUEST_DURATION,
];

/// A SPIFFE identity in an upstream certificate's URI SAN: the peer is a mesh workload.
pub fn is_spiffe(uri_san: &str) -> bool {
    uri_san.starts_with("spiffe://")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn paths_are_unique_and_named() {
        for (i, a) in ATTRIBUTES.iter().enumerate() {
            assert!(!a.path.is_empty() && !a.why.is_empty() && !a.when.is_empty());
            assert!(ATTRIBUTES.iter().skip(i + 1).all(|b| b.path != a.path));
            assert!(
                a.name().bytes().all(|b| b.is_ascii_graphic()),
                "{}",
                a.name()
            );
        }
        assert_eq!(RESPONSE_FLAGS.name(), "response.flags");
        assert!(is_spiffe("spiffe://cluster.local/ns/a/sa/b") && !is_spiffe("https://x"));
    }
}
