//! A verdict and its encoding as one RFC 8941 List member (README.md, "The verdict header"), plus the RFC 9209
//! `Proxy-Status` entry for the same verdict.

use crate::classify::Outcome;
use crate::flags::ResponseFlags;
use crate::sfv::push_string;
use crate::signals::Signals;
use crate::taxonomy::{Class, Direction, Hints, Layer, Origin, Side};
use crate::upstream::UpstreamEvidence;
use std::fmt::Write;

/// Longest `detail` written.
pub const MAX_DETAIL: usize = 200;

/// This hop's verdict on one failing exchange.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub layer: Layer,
    pub class: Class,
    pub origin: Origin,
    pub side: Side,
    pub dir: Direction,
    pub hop: String,
    pub flags: ResponseFlags,
    pub detail: Option<String>,
    pub attempts: u64,
    pub hints: Hints,
    /// Origin and class are likely, not certain: written as the Boolean parameter `inferred`.
    /// Another proxy's reply known from the headers only (the body, read as it passes, settles
    /// it), or a status 4 presumed the caller's deadline (the log settles it, crate::grpc).
    /// The access log and the metrics carry the settled verdict.
    pub inferred: bool,
    /// The failing gRPC status (1..=16), written as `grpc=N`.
    pub grpc: Option<u32>,
}

/// What a verdict records about the exchange (request or connection) besides the outcome:
/// where it happened and what Envoy reported. (Not a proxy-wasm context.)
pub struct ExchangeFacts<'a> {
    pub dir: Direction,
    pub hop: &'a str,
    pub flags: ResponseFlags,
    pub detail: Option<String>,
    pub attempts: u64,
}

impl Verdict {
    /// The verdict of an HTTP exchange.
    pub fn new(outcome: Outcome, s: &Signals, hop: &str) -> Verdict {
        let mut v = Verdict::from_parts(
            outcome,
            ExchangeFacts {
                dir: s.direction,
                hop,
                flags: s.flags,
                detail: s.details.clone(),
                attempts: s.attempts,
            },
        );
        v.inferred = matches!(s.upstream, UpstreamEvidence::Inferred { .. })
            && outcome.origin == Origin::UpstreamProxy;
        v.grpc = s
            .grpc_status
            .filter(|c| crate::grpc::code_label(*c).is_some());
        v
    }

    pub fn from_parts(outcome: Outcome, c: ExchangeFacts<'_>) -> Verdict {
        Verdict {
            layer: outcome.layer,
            class: outcome.class,
            origin: outcome.origin,
            side: outcome.side,
            dir: c.dir,
            hop: c.hop.to_string(),
            flags: c.flags,
            detail: c.detail,
            attempts: c.attempts,
            hints: outcome.hints,
            inferred: false,
            grpc: None,
        }
    }

    /// The header member: `l4;class=…;origin=…;side=…;dir=…;hop="…";flags="…";detail="…";attempts=N;hints="…"`.
    pub fn encode(&self, include_detail: bool) -> String {
        let mut out = String::with_capacity(160);
        out.push_str(self.layer.as_str());
        let _ = write!(
            out,
            ";class={};origin={};side={}",
            self.class.as_str(),
            self.origin.as_str(),
            self.side.as_str()
        );
        if self.inferred {
            out.push_str(";inferred");
        }
        if let Some(code) = self.grpc {
            let _ = write!(out, ";grpc={code}");
        }
        if self.dir != Direction::Unknown {
            let _ = write!(out, ";dir={}", self.dir.as_str());
        }
        if !self.hop.is_empty() {
            out.push_str(";hop=");
            push_string(&mut out, &self.hop, 253);
        }
        if self.flags.0 != 0 {
            out.push_str(";flags=");
            push_string(&mut out, &self.flags.short_names(), 200);
        }
        if include_detail {
            if let Some(d) = self.detail.as_deref().filter(|d| !d.is_empty()) {
                out.push_str(";detail=");
                push_string(&mut out, d, MAX_DETAIL);
            }
        }
        if self.attempts > 1 {
            let _ = write!(out, ";attempts={}", self.attempts.min(999_999_999_999_999));
        }
        if !self.hints.is_empty() {
            out.push_str(";hints=\"");
            for (i, h) in self.hints.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(h.as_str());
            }
            out.push('"');
        }
        out
    }

    /// An RFC 9209 `Proxy-Status` member naming this proxy (`hop`, as a token when it is one).
    /// Only for an error of this proxy's own: an app's answer, or another proxy's error page
    /// (`upstream_proxy`: the error is that proxy's, RFC 9209 §2 has each intermediary speak
    /// for itself), gets none.
    pub fn proxy_status(&self) -> Option<String> {
        let error = self.class.info().proxy_status;
        if error.is_empty() || matches!(self.origin, Origin::App | Origin::UpstreamProxy) {
            return None;
        }
        let mut out = String::new();
        if crate::sfv::is_token(&self.hop) {
            out.push_str(&self.hop);
        } else {
            push_string(
                &mut out,
                if self.hop.is_empty() {
                    "meshtriage"
                } else {
                    &self.hop
                },
                253,
            );
        }
        let _ = write!(out, "; error={}", error);
        if let Some(d) = self.detail.as_deref().filter(|d| !d.is_empty()) {
            out.push_str("; details=");
            push_string(&mut out, d, MAX_DETAIL);
        }
        Some(out)
    }
}
