//! Evidence that a failing response was produced by another proxy further upstream: verdict
//! entries written by an upstream meshtriage, that Envoy's `proxy-status` header, or the body of
//! one of Envoy's well-known local replies.

use crate::flags::ResponseFlags;
use crate::sfv::{self, BareItem};
use crate::substr;
use crate::taxonomy::{Class, Layer};

/// At most this many verdict entries are passed on (the newest ones).
pub const MAX_ENTRIES: usize = 8;
/// At most this many bytes of verdict entries are passed on.
pub const MAX_HEADER_BYTES: usize = 4096;
/// Local-reply bodies longer than this are not Envoy's.
pub const MAX_LOCAL_REPLY_BODY: usize = 256;

/// What the upstream response says about an upstream proxy.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum UpstreamEvidence {
    #[default]
    None,
    /// Trusted meshtriage entries; the root (oldest kept) entry's layer and class.
    Verdicts { layer: Layer, class: Class },
    /// An RFC 9209 `Proxy-Status` entry from an upstream proxy (Envoy's `details` carries its
    /// response code details and short flags).
    ProxyStatus {
        error: String,
        details: Option<String>,
        flags: ResponseFlags,
    },
    /// A body that is one of Envoy's local replies (or another gateway's error page, see
    /// [`crate::gateway_replies`]).
    LocalReplyBody { class: Class, retried: bool },
    /// The headers make another proxy's reply likely, not certain (the body, read later,
    /// confirms or refutes it): the verdict header carries `inferred`.
    Inferred { class: Class },
}

/// Upstream verdict entries after bounding.
#[derive(Clone, Debug, PartialEq)]
pub struct Entries {
    /// The value to pass on: the newest members, within the count and size bounds.
    pub header: String,
    pub layer: Layer,
    pub class: Class,
    /// Members were dropped to stay within the bounds.
    pub cut: bool,
}

/// Parses and bounds the verdict header lines of an upstream response. `Err` when the value is
/// not an RFC 8941 List (it is then dropped and counted); `Ok(None)` when it has no members.
pub fn bound_entries(lines: &[&[u8]]) -> Result<Option<Entries>, sfv::Malformed> {
    let mut members = Vec::new();
    for line in lines {
        members.extend(sfv::parse_list(line)?);
    }
    let total = members.len();
    let mut start = total.saturating_sub(MAX_ENTRIES);
    let size = |from: usize| -> usize {
        members
            .iter()
            .skip(from)
            .map(|m| m.text.len() + 2)
            .sum::<usize>()
            .saturating_sub(2)
    };
    while start < total && size(start) > MAX_HEADER_BYTES {
        start += 1;
    }
    let kept: Vec<&sfv::Member> = members.iter().skip(start).collect();
    let Some(root) = kept.first() else {
        // Members that no bound can keep (one over 4 KiB) are not what a meshtriage hop
        // writes: malformed, like a syntax error.
        return if total == 0 {
            Ok(None)
        } else {
            Err(sfv::Malformed)
        };
    };
    let layer = root
        .item
        .as_ref()
        .and_then(BareItem::as_token)
        .and_then(Layer::parse);
    let class = root
        .param("class")
        .and_then(BareItem::as_token)
        .and_then(Class::parse);
    // `unknown` goes only with `unclassified` (README.md, "The verdict header"; docs/taxonomy.md): anything else is not a verdict
    // this plugin could have written, and is kept as unclassified.
    let (layer, class) = match (layer, class) {
        (Some(l), Some(c)) if (l == Layer::Unknown) == (c == Class::Unclassified) => (l, c),
        _ => (Layer::Unknown, Class::Unclassified),
    };
    let header = kept
        .iter()
        .map(|m| m.text.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Some(Entries {
        header,
        layer,
        class,
        cut: start > 0,
    }))
}

/// Reads the entry an upstream proxy added to `proxy-status` (the last member with `error`).
pub fn parse_proxy_status(value: &[u8]) -> Option<UpstreamEvidence> {
    let members = sfv::parse_list(value).ok()?;
    let member = members.iter().rev().find(|m| m.param("error").is_some())?;
    let error = member
        .param("error")
        .and_then(BareItem::as_token)?
        .to_string();
    let raw = member
        .param("details")
        .and_then(BareItem::as_string)
        .unwrap_or("");
    // Envoy writes `details="<code details>; <short flags>"`.
    let (details, flags) = match substr::rsplit_once(raw, "; ") {
        Some((d, f)) => (d, ResponseFlags::parse_short_names(f)),
        None => (raw, ResponseFlags::default()),
    };
    let details = (!details.is_empty()).then(|| details.to_string());
    Some(UpstreamEvidence::ProxyStatus {
        error,
        details,
        flags,
    })
}

/// RFC 9209 error types Envoy emits, for a `proxy-status` without usable details.
const PROXY_STATUS_CLASSES: [(&str, Class); 13] = [
    ("connection_refused", Class::ConnectRefused),
    ("connection_timeout", Class::ConnectTimeout),
    ("connection_terminated", Class::ConnectionTerminated),
    ("destination_unavailable", Class::NoHealthyUpstream),
    ("destination_not_found", Class::RouteNotFound),
    ("dns_error", Class::DnsResolutionFailed),
    ("http_response_timeout", Class::UpstreamTimeout),
    ("http_protocol_error", Class::UpstreamProtocolError),
    ("http_request_error", Class::FaultInjected),
    ("connection_limit_reached", Class::CircuitBreakerOpen),
    ("tls_certificate_error", Class::TlsCertificateError),
    ("tls_alert_received", Class::TlsHandshakeRejected),
    ("tls_protocol_error", Class::TlsProtocolError),
];

pub fn class_for_proxy_status(error: &str) -> Class {
    PROXY_STATUS_CLASSES
        .iter()
        .find(|(e, _)| *e == error)
        .map_or(Class::Unclassified, |(_, c)| *c)
}

const RESET_PREFIX: &str = "upstream connect error or disconnect/reset before headers. ";

/// Envoy's reset reasons as they appear in its local-reply body.
const RESET_REASONS: [(&str, Class); 7] = [
    ("remote connection failure", Class::ConnectRefused),
    ("connection failure", Class::ConnectRefused),
    ("connection timeout", Class::ConnectTimeout),
    ("connection termination", Class::ConnectionTerminated),
    ("overflow", Class::CircuitBreakerOpen),
    ("protocol error", Class::UpstreamProtocolError),
    ("remote refused stream reset", Class::StreamReset),
];

/// Whole bodies of Envoy's other local replies.
const REPLY_BODIES: [(&str, Class); 11] = [
    ("no healthy upstream", Class::NoHealthyUpstream),
    ("upstream request timeout", Class::UpstreamTimeout),
    ("stream timeout", Class::IdleTimeout),
    (
        "upstream max stream duration reached",
        Class::MaxDurationReached,
    ),
    ("RBAC: access denied", Class::AuthzDenied),
    ("Jwt is missing", Class::AuthnFailed),
    ("local_rate_limited", Class::RateLimited),
    ("fault filter abort", Class::FaultInjected),
    ("drop overload", Class::LoadShed),
    ("unconditional drop overload", Class::LoadShed),
    ("envoy overloaded", Class::LoadShed),
];

/// Recognises an Envoy local-reply body.
pub fn local_reply_class(body: &[u8]) -> Option<UpstreamEvidence> {
    if body.len() > MAX_LOCAL_REPLY_BODY {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?.trim_end();
    if let Some(rest) = text.strip_prefix(RESET_PREFIX) {
        let (retried, reason) =
            if let Some(r) = rest.strip_prefix("retried and the latest reset reason: ") {
                (true, r)
            } else {
                (false, rest.strip_prefix("reset reason: ")?)
            };
        let class = RESET_REASONS
            .iter()
            .find(|(r, _)| reason.starts_with(r))
            .map_or(Class::StreamReset, |(_, c)| *c);
        return Some(UpstreamEvidence::LocalReplyBody { class, retried });
    }
    let class = REPLY_BODIES
        .iter()
        .find(|(b, _)| *b == text)
        .map(|(_, c)| *c)?;
    Some(UpstreamEvidence::LocalReplyBody {
        class,
        retried: false,
    })
}

/// The class of one of Envoy's reset reasons, spelt as in its local-reply body
/// (`connection termination`) or its response code details (`connection_termination`).
pub fn reset_reason_class(reason: &str) -> Option<Class> {
    let spaced = reason.replace('_', " ");
    RESET_REASONS
        .iter()
        .find(|(r, _)| spaced.starts_with(r))
        .map(|(_, c)| *c)
}

/// The transport failure reason Envoy appends to a reset local-reply body
/// (`..., transport failure reason: TLS_error:...`), if any.
pub fn local_reply_transport_failure(body: &str) -> Option<&str> {
    substr::rsplit_once(body, "transport failure reason: ")
        .map(|(_, r)| r.trim_end())
        .filter(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn keeps_the_newest_entries_within_bounds() {
        let many: Vec<String> = (0..20)
            .map(|i| format!("l4;class=connect_refused;hop=\"h{i}\""))
            .collect();
        let joined = many.join(", ");
        let e = bound_entries(&[joined.as_bytes()]).unwrap().unwrap();
        assert!(e.cut);
        assert_eq!(e.header.split(", ").count(), MAX_ENTRIES);
        assert!(e.header.starts_with("l4;class=connect_refused;hop=\"h12\""));
        assert_eq!((e.layer, e.class), (Layer::L4, Class::ConnectRefused));
    }

    #[test]
    fn a_huge_entry_is_dropped_for_size() {
        let big = format!(
            "l7;class=app_error;hop=\"{}\", l4;class=connection_terminated",
            "x".repeat(5000)
        );
        let e = bound_entries(&[big.as_bytes()]).unwrap().unwrap();
        assert_eq!(e.header, "l4;class=connection_terminated");
        let huge = format!("l7;class=app_error;hop=\"{}\"", "x".repeat(5000));
        assert_eq!(bound_entries(&[huge.as_bytes()]), Err(sfv::Malformed));
        assert_eq!(bound_entries(&[b""]), Ok(None));
    }

    #[test]
    fn foreign_or_malformed_entries() {
        let e = bound_entries(&[b"whatever;x=1"]).unwrap().unwrap();
        assert_eq!(e.class, Class::Unclassified);
        let e = bound_entries(&[b"unknown;class=connect_refused"])
            .unwrap()
            .unwrap();
        assert_eq!((e.layer, e.class), (Layer::Unknown, Class::Unclassified));
        let e = bound_entries(&[b"l4;class=unclassified"]).unwrap().unwrap();
        assert_eq!((e.layer, e.class), (Layer::Unknown, Class::Unclassified));
        assert!(bound_entries(&[b"l4;class="]).is_err());
        let two = bound_entries(&[b"l4;class=connect_timeout", b"l7;class=app_error"])
            .unwrap()
            .unwrap();
        assert_eq!(two.class, Class::ConnectTimeout);
    }

    #[test]
    fn reads_envoys_proxy_status() {
        let v = br#"sigproxy; error=connection_terminated; details="upstream_reset_before_response_started{connection_termination}; UC""#;
        assert_eq!(
            parse_proxy_status(v),
            Some(UpstreamEvidence::ProxyStatus {
                error: "connection_terminated".into(),
                details: Some(
                    "upstream_reset_before_response_started{connection_termination}".into()
                ),
                flags: ResponseFlags::parse_short_names("UC"),
            })
        );
        assert_eq!(parse_proxy_status(b"garbage;;"), None);
    }

    #[test]
    fn recognises_local_reply_bodies() {
        let body = b"upstream connect error or disconnect/reset before headers. reset reason: connection termination";
        assert_eq!(
            local_reply_class(body),
            Some(UpstreamEvidence::LocalReplyBody {
                class: Class::ConnectionTerminated,
                retried: false
            })
        );
        let retried = b"upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused";
        assert_eq!(
            local_reply_class(retried),
            Some(UpstreamEvidence::LocalReplyBody {
                class: Class::ConnectRefused,
                retried: true
            })
        );
        assert_eq!(
            local_reply_class(b"no healthy upstream"),
            Some(UpstreamEvidence::LocalReplyBody {
                class: Class::NoHealthyUpstream,
                retried: false
            })
        );
        assert_eq!(local_reply_class(b"{\"error\":\"db down\"}"), None);
        assert_eq!(
            local_reply_transport_failure(std::str::from_utf8(retried).unwrap()),
            Some("delayed connect error: Connection refused")
        );
        assert_eq!(local_reply_transport_failure("no healthy upstream"), None);
        assert_eq!(
            reset_reason_class("connection_termination"),
            Some(Class::ConnectionTerminated)
        );
        assert_eq!(
            reset_reason_class("remote_connection_failure"),
            Some(Class::ConnectRefused)
        );
        assert_eq!(reset_reason_class("banana"), None);
    }
}
