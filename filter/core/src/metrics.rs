//! Metrics: one table, [`METRICS`] (name, kind, labels, meaning, defined up front or not),
//! from which the docs table (README.md, docs/reference.md) and the series the plugin defines at
//! start-up come. Tags use Istio's `name.tag=.=value;.;` convention so Envoy's `stats_tags`
//! regexes `(tag=\.=(.*?);\.;)` turn them into Prometheus labels. Every label value comes from a
//! closed enum.

use crate::hop_by_hop::HopHeader;
use crate::taxonomy::{Class, Direction, Layer, Origin, Side};

pub const REQUESTS: &str = "meshtriage_requests_total";
pub const FAILURES: &str = "meshtriage_failures_total";
pub const HOP_BY_HOP: &str = "meshtriage_hop_by_hop_headers_total";
pub const TCP_CONNECTIONS: &str = "meshtriage_tcp_connections_total";
pub const TCP_FAILURES: &str = "meshtriage_tcp_failures_total";
pub const CONFIG_ERRORS: &str = "meshtriage_config_errors_total";
pub const INTERNAL_ERRORS: &str = "meshtriage_internal_errors_total";
/// Gauge: the VM's linear memory in bytes, refreshed every second.
pub const VM_MEMORY: &str = "meshtriage_vm_memory_bytes";
/// Upstream verdict headers that were not RFC 8941 and were dropped.
pub const MALFORMED_UPSTREAM: &str = "meshtriage_malformed_upstream_verdicts_total";
/// Counter: a cluster's retries went over the retry budget (one per episode, VM-wide).
pub const RETRY_BUDGET_EXCEEDED: &str = "meshtriage_retry_budget_exceeded_total";
/// Gauge: highest retries-per-request ratio (per-mille) among the direction's clusters with at
/// least `retry_budget.min_requests` requests in the window. Per direction, not per cluster:
/// cluster names are unbounded.
pub const RETRY_RATIO: &str = "meshtriage_retry_ratio_permille";
/// Gauge: failure ratio of large requests minus that of the others (per-mille, floored at 0)
/// over the window, all clusters of the direction together.
pub const LARGE_PAYLOAD_FAILURE_RATIO: &str = "meshtriage_large_payload_failure_ratio_permille";
/// Counter: gRPC failures by status code (`grpc_code`: one of the 16 failing codes' names).
pub const GRPC_FAILURES: &str = "meshtriage_grpc_failures_total";
/// Histogram: request body bytes of every request.
pub const REQUEST_BYTES: &str = "meshtriage_request_bytes";
/// Histogram: request body bytes of failing requests, by layer.
pub const FAILED_REQUEST_BYTES: &str = "meshtriage_failed_request_bytes";

/// Kinds of host metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric the plugin writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    /// Its tags, in the order the name carries them (a subset of [`TAGS`]).
    pub labels: &'static [&'static str],
    pub help: &'static str,
    /// Defined when the plugin is configured, so dashboards see zeros, not gaps: with no
    /// labels, or for each listener direction (`inbound`, `outbound`) when `dir` is the only one.
    pub predefined: bool,
}

const fn metric(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
    predefined: bool,
) -> Metric {
    Metric {
        name,
        kind,
        labels,
        help,
        predefined,
    }
}

use Kind::{Counter, Gauge, Histogram};

/// Every metric the plugin writes.
#[rustfmt::skip]
pub const METRICS: [Metric; 15] = [
    metric(REQUESTS, Counter, &["dir"], "HTTP requests seen (added once per second)", false),
    metric(FAILURES, Counter, &["dir", "layer", "class", "origin", "side"], "failing HTTP requests by verdict", false),
    metric(HOP_BY_HOP, Counter, &["dir", "header"], "upstream responses carrying a hop-by-hop header", false),
    metric(GRPC_FAILURES, Counter, &["dir", "grpc_code"], "gRPC failures by status code (`grpc_code`: one of the 16 failing codes, e.g. `unavailable`)", false),
    metric(TCP_CONNECTIONS, Counter, &["dir"], "connections seen by the network filter", false),
    metric(TCP_FAILURES, Counter, &["dir", "layer", "class"], "failing connections by verdict", false),
    metric(CONFIG_ERRORS, Counter, &[], "configurations refused for errors (the last good one stays)", true),
    metric(INTERNAL_ERRORS, Counter, &[], "host calls that failed or malformed upstream values (debug log says which)", true),
    metric(MALFORMED_UPSTREAM, Counter, &[], "upstream verdict headers that were not RFC 8941, dropped", true),
    metric(RETRY_BUDGET_EXCEEDED, Counter, &["dir"], "a cluster's retries went over the retry budget (one per episode)", true),
    metric(RETRY_RATIO, Gauge, &["dir"], "highest retries-per-request ratio (per-mille) among the direction's busy clusters", false),
    metric(LARGE_PAYLOAD_FAILURE_RATIO, Gauge, &["dir"], "failure ratio of large requests minus that of the others (per-mille, floored at 0)", false),
    metric(REQUEST_BYTES, Histogram, &["dir"], "request body bytes of requests with a body", false),
    metric(FAILED_REQUEST_BYTES, Histogram, &["dir", "layer"], "request body bytes of failing requests with a body", false),
    metric(VM_MEMORY, Gauge, &[], "the VM's linear memory in bytes, refreshed every second", false),
];

/// What the plugin needs of [`METRICS`] at run time, projected at compile time: the module
/// then carries names, kinds and labels, not the help text.
// Evaluated at compile time: an index out of range fails the build, never a request.
#[allow(clippy::indexing_slicing)]
const RUNTIME: [(&str, Kind, &[&str], bool); METRICS.len()] = {
    let mut out: [(&str, Kind, &[&str], bool); METRICS.len()] =
        [("", Kind::Counter, &[], false); METRICS.len()];
    let mut i = 0;
    while i < METRICS.len() {
        let m = &METRICS[i];
        out[i] = (m.name, m.kind, m.labels, m.predefined);
        i += 1;
    }
    out
};

/// The full names of the series defined up front ([`Metric::predefined`]).
pub fn predefined() -> Vec<(Kind, String)> {
    let mut out = Vec::new();
    for (name, kind, labels, predefined) in RUNTIME {
        if !predefined {
            continue;
        }
        match labels {
            [] => out.push((kind, name.to_string())),
            ["dir"] => {
                for dir in [Direction::Inbound, Direction::Outbound] {
                    out.push((kind, tagged(name, &[("dir", dir.as_str())])));
                }
            }
            // Other label sets have unbounded combinations: never predefined.
            _ => {}
        }
    }
    out
}

/// Every tag the plugin writes, in the order names carry them.
pub const TAGS: [&str; 7] = [
    "dir",
    "layer",
    "class",
    "origin",
    "side",
    "header",
    "grpc_code",
];

/// The `stats_config.stats_tags` entries (tag name, regex) an Envoy bootstrap needs.
pub fn stats_tags() -> Vec<(&'static str, String)> {
    TAGS.iter()
        .map(|t| (*t, format!(r"({t}=\.=(.*?);\.;)")))
        .collect()
}

fn tagged(name: &str, tags: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(name.len() + 64);
    out.push_str(name);
    out.push('.');
    for (k, v) in tags {
        out.push_str(k);
        out.push_str("=.=");
        out.push_str(v);
        out.push_str(";.;");
    }
    out
}

pub fn requests(dir: Direction) -> String {
    tagged(REQUESTS, &[("dir", dir.as_str())])
}

pub fn failures(dir: Direction, layer: Layer, class: Class, origin: Origin, side: Side) -> String {
    tagged(
        FAILURES,
        &[
            ("dir", dir.as_str()),
            ("layer", layer.as_str()),
            ("class", class.as_str()),
            ("origin", origin.as_str()),
            ("side", side.as_str()),
        ],
    )
}

/// `code_label`: a label of [`crate::grpc::code_label`].
pub fn grpc_failures(dir: Direction, code_label: &str) -> String {
    tagged(
        GRPC_FAILURES,
        &[("dir", dir.as_str()), ("grpc_code", code_label)],
    )
}

pub fn retry_budget_exceeded(dir: Direction) -> String {
    tagged(RETRY_BUDGET_EXCEEDED, &[("dir", dir.as_str())])
}

pub fn retry_ratio(dir: Direction) -> String {
    tagged(RETRY_RATIO, &[("dir", dir.as_str())])
}

pub fn large_payload_failure_ratio(dir: Direction) -> String {
    tagged(LARGE_PAYLOAD_FAILURE_RATIO, &[("dir", dir.as_str())])
}

pub fn request_bytes(dir: Direction) -> String {
    tagged(REQUEST_BYTES, &[("dir", dir.as_str())])
}

pub fn failed_request_bytes(dir: Direction, layer: Layer) -> String {
    tagged(
        FAILED_REQUEST_BYTES,
        &[("dir", dir.as_str()), ("layer", layer.as_str())],
    )
}

pub fn hop_by_hop(dir: Direction, header: HopHeader) -> String {
    tagged(
        HOP_BY_HOP,
        &[("dir", dir.as_str()), ("header", header.label())],
    )
}

pub fn tcp_connections(dir: Direction) -> String {
    tagged(TCP_CONNECTIONS, &[("dir", dir.as_str())])
}

pub fn tcp_failures(dir: Direction, layer: Layer, class: Class) -> String {
    tagged(
        TCP_FAILURES,
        &[
            ("dir", dir.as_str()),
            ("layer", layer.as_str()),
            ("class", class.as_str()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// What Envoy's tag extraction does: each regex's first group is cut out of the name and
    /// its inner group becomes the tag value.
    fn extract(name: &str) -> (String, Vec<(String, String)>) {
        let mut rest = name.to_string();
        let mut tags = Vec::new();
        for t in TAGS {
            let open = format!("{t}=.=");
            if let Some(start) = rest.find(&open) {
                let after = &rest[start + open.len()..];
                let end = after.find(";.;").unwrap();
                tags.push((t.to_string(), after[..end].to_string()));
                rest = format!("{}{}", &rest[..start], &after[end + 3..]);
            }
        }
        (rest.trim_end_matches('.').to_string(), tags)
    }

    #[test]
    fn every_name_extracts_to_its_labels() {
        let n = failures(
            Direction::Inbound,
            Layer::L4,
            Class::ConnectionTerminated,
            Origin::Proxy,
            Side::Upstream,
        );
        let (base, tags) = extract(&n);
        assert_eq!(base, FAILURES);
        assert_eq!(tags.len(), 5);
        assert!(tags.contains(&("class".into(), "connection_terminated".into())));
        assert_eq!(
            extract(&hop_by_hop(Direction::Outbound, HopHeader::ProxyConnection)).1[1].1,
            "proxy-connection"
        );
        assert_eq!(extract(&requests(Direction::Unknown)).0, REQUESTS);
        assert_eq!(
            extract(&tcp_failures(
                Direction::Inbound,
                Layer::L4,
                Class::ConnectRefused
            ))
            .0,
            TCP_FAILURES
        );
        assert_eq!(
            extract(&tcp_connections(Direction::Inbound)).0,
            TCP_CONNECTIONS
        );
        for (name, base) in [
            (
                retry_budget_exceeded(Direction::Outbound),
                RETRY_BUDGET_EXCEEDED,
            ),
            (retry_ratio(Direction::Outbound), RETRY_RATIO),
            (
                large_payload_failure_ratio(Direction::Outbound),
                LARGE_PAYLOAD_FAILURE_RATIO,
            ),
            (request_bytes(Direction::Outbound), REQUEST_BYTES),
        ] {
            assert_eq!(
                extract(&name),
                (base.to_string(), vec![("dir".into(), "outbound".into())])
            );
        }
        let (base, tags) = extract(&failed_request_bytes(Direction::Inbound, Layer::L7));
        assert_eq!(base, FAILED_REQUEST_BYTES);
        assert_eq!(tags[1], ("layer".into(), "l7".into()));
    }

    #[test]
    fn the_table_is_consistent() {
        for (i, m) in METRICS.iter().enumerate() {
            assert!(METRICS.iter().skip(i + 1).all(|o| o.name != m.name));
            assert!(m.name.starts_with("meshtriage_") && !m.help.is_empty());
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}",
                m.name
            );
            assert!(m.labels.iter().all(|l| TAGS.contains(l)), "{}", m.name);
        }
        // The builders tag names with the table's labels, in its order.
        let built = [
            (requests(Direction::Inbound), REQUESTS),
            (
                failures(
                    Direction::Inbound,
                    Layer::L4,
                    Class::ConnectRefused,
                    Origin::Proxy,
                    Side::Upstream,
                ),
                FAILURES,
            ),
            (hop_by_hop(Direction::Inbound, HopHeader::Te), HOP_BY_HOP),
            (tcp_connections(Direction::Inbound), TCP_CONNECTIONS),
            (
                tcp_failures(Direction::Inbound, Layer::L4, Class::ConnectRefused),
                TCP_FAILURES,
            ),
            (
                retry_budget_exceeded(Direction::Inbound),
                RETRY_BUDGET_EXCEEDED,
            ),
            (retry_ratio(Direction::Inbound), RETRY_RATIO),
            (
                large_payload_failure_ratio(Direction::Inbound),
                LARGE_PAYLOAD_FAILURE_RATIO,
            ),
            (request_bytes(Direction::Inbound), REQUEST_BYTES),
            (
                failed_request_bytes(Direction::Inbound, Layer::L4),
                FAILED_REQUEST_BYTES,
            ),
        ];
        for (name, base) in built {
            let (b, tags) = extract(&name);
            let m = METRICS.iter().find(|m| m.name == base).unwrap();
            assert_eq!(b, base);
            let labels: Vec<&str> = tags.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(labels, m.labels, "{base}");
        }
        let pre: Vec<String> = predefined().into_iter().map(|(_, n)| n).collect();
        assert!(pre.contains(&CONFIG_ERRORS.to_string()));
        assert!(pre.contains(&retry_budget_exceeded(Direction::Outbound)));
        assert_eq!(pre.len(), 5);
    }

    #[test]
    fn tag_values_never_contain_the_markers() {
        for c in Class::all() {
            assert!(!c.as_str().contains(';') && !c.as_str().contains('='));
        }
    }
}
