//! One pass over the upstream response's headers, and what to do with the verdict header.
//! The glue hands the raw header pairs in; everything the verdict needs is picked out here.

use crate::config::{Config, Trust};
use crate::gateway_replies::{server_product, squid_error_code, ContentKind, HeaderView, Product};
use crate::hop_by_hop::HopByHop;
use crate::taxonomy::Direction;
use crate::upstream::MAX_LOCAL_REPLY_BODY;

/// What the response headers say.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResponseScan {
    pub status: Option<u16>,
    /// The real `grpc-status` header (trailers-only responses).
    pub grpc_status: Option<u32>,
    /// A `grpc-status` that is not a small number.
    pub grpc_status_malformed: bool,
    pub chunked: bool,
    pub content_length: Option<u64>,
    pub hop_by_hop: HopByHop,
    /// Lines of the verdict header, when present (rare: allocated only then).
    pub verdict_lines: Vec<Vec<u8>>,
    pub proxy_status: Option<Vec<u8>>,
    /// `text/plain` (or no content type) and small: may be an Envoy local reply's body.
    pub small_text_body: bool,
    /// The product `Server` names (gateway replies, [`crate::gateway_replies`]).
    pub server: Product,
    /// A row's `X-Squid-Error` code (Squid's own error pages only).
    pub squid_error: Option<&'static str>,
    pub content: ContentKind,
}

/// Parses a gRPC status value; `None` for anything but 0..=99.
pub fn parse_grpc_status(value: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if text.is_empty() || text.len() > 2 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl ResponseScan {
    /// Scans header pairs (names lowercase, as Envoy hands them over).
    pub fn scan<'a>(
        headers: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
        verdict_header: Option<&str>,
    ) -> Self {
        let mut scan = ResponseScan::default();
        // `:status` first: hop-by-hop `upgrade` depends on it.
        if let Some((_, v)) = headers.clone().find(|(n, _)| *n == ":status") {
            scan.status = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
        }
        let mut text_type = true;
        for (name, value) in headers {
            match name {
                "grpc-status" => match parse_grpc_status(value) {
                    Some(code) => scan.grpc_status = Some(code),
                    None => scan.grpc_status_malformed = true,
                },
                "transfer-encoding" => {
                    scan.chunked = value
                        .split(|b| *b == b',')
                        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
                }
                "content-length" => {
                    scan.content_length = std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                }
                "content-type" => {
                    scan.content = ContentKind::of(value);
                    text_type = scan.content == ContentKind::Plain;
                }
                "server" => scan.server = server_product(value),
                "x-squid-error" => scan.squid_error = squid_error_code(value),
                "proxy-status" => scan.proxy_status = Some(value.to_vec()),
                _ if verdict_header == Some(name) => scan.verdict_lines.push(value.to_vec()),
                _ => scan.hop_by_hop.observe(name, value, scan.status),
            }
        }
        scan.small_text_body = text_type
            && scan
                .content_length
                .is_some_and(|l| l > 0 && l <= MAX_LOCAL_REPLY_BODY as u64);
        scan
    }

    /// Could the body be one of Envoy's local replies (a proxy further upstream answered)?
    /// Only then is it worth buffering: small `text/plain`, a status Envoy's local replies use,
    /// and no `proxy-status` (which says the same without the body).
    pub fn may_carry_local_reply(&self) -> bool {
        self.small_text_body
            && self.proxy_status.is_none()
            && self.status.is_some_and(is_local_reply_status)
    }

    /// What the gateway-reply table looks at.
    pub fn header_view(&self) -> HeaderView {
        HeaderView {
            status: self.status,
            server: self.server,
            squid_error: self.squid_error,
            content: self.content,
            length: self.content_length,
        }
    }

    /// Could this response be failing at header time? Cheap: no property needed.
    pub fn may_fail(&self, cfg: &Config) -> bool {
        self.status
            .is_none_or(|s| s >= 400 || cfg.failure_statuses.contains(s))
            || self.grpc_status.is_some_and(|g| cfg.grpc_failing(g))
    }
}

/// Statuses Envoy's recognisable local replies carry: 5xx, and 401/403/429 (JWT, RBAC, rate
/// limit).
pub fn is_local_reply_status(status: u16) -> bool {
    status >= 500 || matches!(status, 401 | 403 | 429)
}

/// Whether upstream verdict entries are kept on this listener.
pub fn trusts_upstream(cfg: &Config, dir: Direction) -> bool {
    match cfg.trust_upstream {
        Trust::Always => true,
        Trust::Never => false,
        Trust::Auto => dir == Direction::Outbound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hop_by_hop::HopHeader;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn scan(pairs: &[(&str, &str)]) -> ResponseScan {
        ResponseScan::scan(
            pairs.iter().map(|(n, v)| (*n, v.as_bytes())),
            Some("x-meshtriage"),
        )
    }

    #[test]
    fn picks_out_what_the_verdict_needs() {
        let s = scan(&[
            (":status", "503"),
            ("content-type", "text/plain"),
            ("content-length", "95"),
            ("x-meshtriage", "l4;class=connect_refused"),
            ("proxy-status", "envoy; error=connection_refused"),
            ("te", "trailers"),
        ]);
        assert_eq!(s.status, Some(503));
        assert!(s.small_text_body);
        assert_eq!(s.verdict_lines.len(), 1);
        assert!(s.proxy_status.is_some());
        assert!(s.hop_by_hop.contains(HopHeader::Te));
        assert!(s.may_fail(&Config::default()));
    }

    #[test]
    fn success_is_cheap_to_rule_out() {
        let s = scan(&[
            (":status", "200"),
            ("transfer-encoding", "chunked"),
            ("content-type", "application/json"),
        ]);
        assert!(s.chunked && !s.small_text_body);
        assert!(!s.may_fail(&Config::default()));
        let grpc = scan(&[(":status", "200"), ("grpc-status", "14")]);
        assert!(grpc.may_fail(&Config::default()));
    }

    #[test]
    fn absurd_grpc_status_is_flagged_not_trusted() {
        for bad in ["-1", "99999999999", "abc", "", "1 4"] {
            let s = scan(&[(":status", "200"), ("grpc-status", bad)]);
            assert!(s.grpc_status.is_none() && s.grpc_status_malformed, "{bad}");
        }
        assert_eq!(parse_grpc_status(b" 7 "), Some(7));
    }

    #[test]
    fn only_small_plain_failing_bodies_are_worth_reading() {
        let reply = [
            (":status", "503"),
            ("content-type", "text/plain"),
            ("content-length", "95"),
        ];
        assert!(scan(&reply).may_carry_local_reply());
        let mut with_ps = reply.to_vec();
        with_ps.push(("proxy-status", "envoy; error=connection_terminated"));
        assert!(
            !scan(&with_ps).may_carry_local_reply(),
            "proxy-status says it already"
        );
        for (n, v) in [
            (":status", "200"),
            (":status", "404"),
            ("content-type", "application/json"),
            ("content-length", "4096"),
            ("content-length", "0"),
        ] {
            let mut r = reply.to_vec();
            r.retain(|(k, _)| *k != n);
            r.push((n, v));
            assert!(!scan(&r).may_carry_local_reply(), "{n}: {v}");
        }
        let no_length = [(":status", "503"), ("content-type", "text/plain")];
        assert!(!scan(&no_length).may_carry_local_reply(), "unbounded body");
        let rbac = [(":status", "403"), ("content-length", "19")];
        assert!(scan(&rbac).may_carry_local_reply());
    }

    #[test]
    fn trust_follows_direction_in_auto() {
        let c = Config::default();
        assert!(trusts_upstream(&c, Direction::Outbound));
        assert!(!trusts_upstream(&c, Direction::Inbound));
        assert!(!trusts_upstream(&c, Direction::Unknown));
    }
}
