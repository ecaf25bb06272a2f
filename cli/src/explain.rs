//! `meshtriage explain`: what a piece of Envoy text says, read with the plugin's own tables:
//! local-reply bodies, response flags, response code details, `Proxy-Status`, `x-meshtriage`,
//! TLS failure reasons, a status code, or several of them together.

use crate::judge::{self, deciding_rule, describe_rule, is_transport_failure, sole_flag};
use meshtriage_core::flags::ResponseFlags;
use meshtriage_core::sfv::{self, BareItem};
use meshtriage_core::taxonomy::{Hints, HINTS, HINT_MEANINGS, RULES};
use meshtriage_core::upstream::{
    class_for_proxy_status, local_reply_class, local_reply_transport_failure, parse_proxy_status,
    reset_reason_class, UpstreamEvidence,
};
use meshtriage_core::{
    classify, is_failing, Class, Config, Hint, Layer, Origin, Outcome, Phase, Side, Signals,
};
use serde_json::{json, Value};

/// What one piece of the input was read as.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    Status(u16),
    Flags(ResponseFlags),
    Details(String),
    TransportFailure(String),
    /// A local-reply body, its class, whether it says retries were made, and the transport
    /// failure reason in it.
    LocalReply {
        class: Class,
        retried: bool,
        transport_failure: Option<String>,
    },
    ProxyStatus {
        error: String,
        details: Option<String>,
        flags: ResponseFlags,
    },
    /// `x-meshtriage` members.
    Verdicts(Vec<String>),
}

impl Piece {
    fn kind(&self) -> &'static str {
        match self {
            Piece::Status(_) => "status",
            Piece::Flags(_) => "response flags",
            Piece::Details(_) => "response code details",
            Piece::TransportFailure(_) => "transport failure reason",
            Piece::LocalReply { .. } => "local-reply body",
            Piece::ProxyStatus { .. } => "Proxy-Status",
            Piece::Verdicts(_) => "x-meshtriage",
        }
    }

    fn reads(&self) -> String {
        match self {
            Piece::Status(s) => s.to_string(),
            Piece::Flags(f) => f.short_names(),
            Piece::Details(d) => d.clone(),
            Piece::TransportFailure(t) => t.clone(),
            Piece::LocalReply { class, retried, .. } => format!(
                "{}{}",
                class.as_str(),
                if *retried { " (after retries)" } else { "" }
            ),
            Piece::ProxyStatus { error, .. } => format!("error={error}"),
            Piece::Verdicts(v) => format!("{} hop(s)", v.len()),
        }
    }
}

/// Every `details` string the rules name, and the detail prefixes that carry a reset reason.
fn known_details(text: &str) -> bool {
    const RESET_DETAILS: [&str; 2] = [
        "upstream_reset_before_response_started",
        "upstream_reset_after_response_started",
    ];
    let word = text.split('{').next().unwrap_or(text);
    RESET_DETAILS.contains(&word)
        || matches!(text, "via_upstream" | "direct_response" | "health_check_ok")
        || RULES.iter().flat_map(|r| r.when).any(|c| match c {
            meshtriage_core::taxonomy::Cond::Details(d) => text == *d,
            meshtriage_core::taxonomy::Cond::DetailsPrefix(d) => text.starts_with(d),
            meshtriage_core::taxonomy::Cond::DetailsContains(d) => text.contains(d),
            _ => false,
        })
}

/// Envoy's response code details: a known one, or the shape they all have (snake_case, words
/// joined by `_` or `.`, maybe `{reason}` or `[policy]` after).
fn looks_like_details(text: &str) -> bool {
    let word = text.split(['{', '[']).next().unwrap_or(text);
    !text.is_empty()
        && !text.contains(' ')
        && text.is_ascii()
        && (known_details(text)
            || (word.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                && word.contains(['_', '.'])
                && word.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.'
                })))
}

fn parse_verdicts(text: &str) -> Option<Vec<String>> {
    let members = sfv::parse_list(text.as_bytes()).ok()?;
    if members.is_empty() {
        return None;
    }
    for m in &members {
        m.item
            .as_ref()
            .and_then(BareItem::as_token)
            .and_then(Layer::parse)?;
        m.param("class")
            .and_then(BareItem::as_token)
            .and_then(Class::parse)?;
    }
    Some(members.into_iter().map(|m| m.text).collect())
}

/// Reads one piece of text, `None` when it is none of the known kinds.
pub fn read_piece(text: &str) -> Option<Piece> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if let Some(UpstreamEvidence::LocalReplyBody { class, retried }) =
        local_reply_class(t.as_bytes())
    {
        return Some(Piece::LocalReply {
            class,
            retried,
            transport_failure: local_reply_transport_failure(t).map(str::to_string),
        });
    }
    if let Some(v) = parse_verdicts(t) {
        return Some(Piece::Verdicts(v));
    }
    if let Some(UpstreamEvidence::ProxyStatus {
        error,
        details,
        flags,
    }) = parse_proxy_status(t.as_bytes())
    {
        return Some(Piece::ProxyStatus {
            error,
            details,
            flags,
        });
    }
    if t.len() == 3 {
        if let Ok(code) = t.parse::<u16>() {
            if (100..=599).contains(&code) {
                return Some(Piece::Status(code));
            }
        }
    }
    if let Ok(flags) = judge::parse_flags(t) {
        if flags.0 != 0 {
            return Some(Piece::Flags(flags));
        }
    }
    // A bare Proxy-Status error type (`connection_refused`), as dashboards show it.
    if class_for_proxy_status(t) != Class::Unclassified {
        return Some(Piece::ProxyStatus {
            error: t.to_string(),
            details: None,
            flags: ResponseFlags::default(),
        });
    }
    if looks_like_details(t) {
        return Some(Piece::Details(t.to_string()));
    }
    if is_transport_failure(t) {
        return Some(Piece::TransportFailure(t.to_string()));
    }
    None
}

/// The pieces of the input and the parts nobody understood. The whole text is tried first (a
/// body pasted without quotes), then each argument, then each word of an argument.
pub fn read_all(args: &[String]) -> (Vec<(String, Piece)>, Vec<String>) {
    let joined = args.join(" ");
    if args.len() > 1 {
        // Only the kinds that hold spaces: a body, a Proxy-Status, verdicts.
        if let Some(
            p @ (Piece::LocalReply { .. } | Piece::ProxyStatus { .. } | Piece::Verdicts(_)),
        ) = read_piece(&joined)
        {
            return (vec![(joined, p)], Vec::new());
        }
    }
    let mut pieces = Vec::new();
    let mut unknown = Vec::new();
    for arg in args {
        if let Some(p) = read_piece(arg) {
            pieces.push((arg.clone(), p));
            continue;
        }
        for word in arg.split_whitespace() {
            match read_piece(word) {
                Some(p) => pieces.push((word.to_string(), p)),
                None => unknown.push(word.to_string()),
            }
        }
    }
    (pieces, unknown)
}

/// One explained verdict.
#[derive(Clone, Debug)]
pub struct Finding {
    /// `None`: the evidence shows no failure.
    pub outcome: Option<Outcome>,
    /// The verdict as the plugin's header would write it.
    pub header: Option<String>,
    /// What decided, in words.
    pub decided_by: String,
    /// The hop that wrote it (x-meshtriage members).
    pub hop: Option<String>,
    /// Classes the same text could also be, given evidence it does not carry.
    pub alternatives: Vec<(Class, String)>,
}

fn outcome_of_class(class: Class, hints: Hints) -> Outcome {
    let info = class.info();
    Outcome {
        class,
        layer: info.layer,
        origin: info.origin,
        side: info.side,
        hints,
    }
}

/// Explains the pieces together (all but `x-meshtriage` members, which are verdicts already).
pub fn combine(pieces: &[(String, Piece)], cfg: &Config) -> Option<Finding> {
    let mut status = None;
    let mut flags = ResponseFlags::default();
    let mut details: Option<String> = None;
    let mut tfr: Option<String> = None;
    let mut fallback: Option<(Class, String)> = None;
    let mut retried = false;
    let mut any = false;
    let mut local_reply = false;
    let mut ps_error: Option<String> = None;
    for (text, p) in pieces {
        any |= !matches!(p, Piece::Verdicts(_));
        match p {
            Piece::Status(s) => status = Some(*s),
            Piece::Flags(f) => flags = ResponseFlags(flags.0 | f.0),
            Piece::Details(d) => details = Some(d.clone()),
            Piece::TransportFailure(t) => tfr = Some(t.clone()),
            Piece::LocalReply {
                class,
                retried: r,
                transport_failure,
            } => {
                retried |= *r;
                local_reply = true;
                if tfr.is_none() {
                    tfr.clone_from(transport_failure);
                }
                fallback = Some((*class, format!("Envoy's local-reply body {text:?}")));
            }
            Piece::ProxyStatus {
                error,
                details: d,
                flags: f,
            } => {
                if details.is_none() {
                    details.clone_from(d);
                }
                flags = ResponseFlags(flags.0 | f.0);
                ps_error = Some(error.clone());
                local_reply = true; // Envoy writes Proxy-Status on its own replies
                fallback = Some((
                    class_for_proxy_status(error),
                    format!("Proxy-Status error type `{error}`"),
                ));
            }
            Piece::Verdicts(_) => {}
        }
    }
    if !any {
        return None;
    }
    // The reset reason in the details (`upstream_reset_before_response_started{...}`) names a
    // class the way the local-reply body does.
    if fallback.is_none() {
        if let Some(reason) = details
            .as_deref()
            .and_then(|d| d.split_once('{'))
            .map(|(_, r)| r.split(['|', '}']).next().unwrap_or(""))
        {
            if let Some(class) = reset_reason_class(reason) {
                fallback = Some((class, format!("the reset reason `{reason}` in the details")));
            }
        }
    }
    let mut implied = String::new();
    if flags.0 == 0 && tfr.is_some() {
        // No flags given but a transport failure reason: the flag the body's (or reset
        // reason's) class stands for, so that the rules can refine it with the reason; a
        // transport failure reason alone means a failed upstream connect.
        let flag = fallback
            .as_ref()
            .and_then(|(c, _)| sole_flag(*c))
            .or_else(|| tfr.as_ref().and_then(|_| sole_flag(Class::ConnectRefused)));
        if let Some(f) = flag {
            flags = flags.with(f);
            implied = format!(" (flag {} implied by the text)", f.short_name());
        }
    }
    let mut s = Signals {
        phase: Phase::Log,
        status,
        flags,
        details: details.clone(),
        transport_failure: tfr,
        // As for log lines: a status below 400 with a failure means the response had started.
        response_started: status.is_some_and(|c| c < 400),
        ..Signals::default()
    };
    if let Some((n, rule)) = deciding_rule(&s, cfg) {
        let mut outcome = classify(&s, cfg);
        if retried {
            outcome.hints.insert(Hint::RetriesExhausted);
        }
        let alternatives = if rule.when.len() == 1 {
            judge::alternatives(flags, outcome.class, local_reply)
        } else {
            Vec::new()
        };
        return Some(Finding {
            header: Some(judge::encode(outcome, flags, details)),
            outcome: Some(outcome),
            decided_by: format!(
                "rule #{n} of the taxonomy: {}{implied}",
                describe_rule(rule)
            ),
            hop: None,
            alternatives,
        });
    }
    if let Some((class, why)) = fallback {
        let mut hints = Hints::default();
        if retried || flags.has(meshtriage_core::flags::Flag::URX) {
            hints.insert(Hint::RetriesExhausted);
        }
        let outcome = outcome_of_class(class, hints);
        let shown = match sole_flag(class) {
            Some(f) if flags.0 == 0 => flags.with(f),
            _ => flags,
        };
        let mut alternatives = judge::alternatives(shown, class, local_reply);
        // Other classes the plugin reports with the same Proxy-Status error type.
        if let Some(e) = &ps_error {
            for c in meshtriage_core::taxonomy::CLASSES {
                let only_late = RULES.iter().filter(|r| r.class == c.class).all(|r| {
                    r.when.iter().any(|w| {
                        matches!(
                            w,
                            meshtriage_core::taxonomy::Cond::ResponseStarted
                                | meshtriage_core::taxonomy::Cond::ChunkedWithoutBody
                        )
                    })
                });
                if c.proxy_status == e
                    && !only_late
                    && c.class != class
                    && !alternatives.iter().any(|a| a.0 == c.class)
                {
                    alternatives.push((
                        c.class,
                        format!("{} (same Proxy-Status type)", rules_of(c.class)),
                    ));
                }
            }
        }
        return Some(Finding {
            header: Some(judge::encode(outcome, flags, details)),
            outcome: Some(outcome),
            decided_by: why,
            hop: None,
            alternatives,
        });
    }
    // Status and details alone: failing or not, by the plugin's own test.
    if s.details.is_none() && s.status.is_some_and(|c| c < 500) {
        s.details = Some("via_upstream".into());
    }
    if !is_failing(&s, cfg) {
        return Some(Finding {
            outcome: None,
            header: None,
            decided_by: "not a failure by the plugin's rules (no failure flag, status not failing)"
                .into(),
            hop: None,
            alternatives: Vec::new(),
        });
    }
    let outcome = classify(&s, cfg);
    let decided_by = if outcome.class == Class::Unclassified {
        "failing, but the text carries no flag or details any rule reads: add the response flags or details".into()
    } else {
        "the status and details".into()
    };
    Some(Finding {
        header: Some(judge::encode(outcome, flags, s.details.clone())),
        outcome: Some(outcome),
        decided_by,
        hop: None,
        alternatives: Vec::new(),
    })
}

/// The rules of a class, as they read.
fn rules_of(class: Class) -> String {
    RULES
        .iter()
        .filter(|r| r.class == class)
        .map(describe_rule)
        .collect::<Vec<_>>()
        .join("; or ")
}

/// One finding per `x-meshtriage` member (each hop's verdict as written).
pub fn decode_verdicts(pieces: &[(String, Piece)]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (_, p) in pieces {
        let Piece::Verdicts(members) = p else {
            continue;
        };
        for m in members {
            let Ok(parsed) = sfv::parse_list(m.as_bytes()) else {
                continue;
            };
            let Some(member) = parsed.first() else {
                continue;
            };
            let token = |k: &str| member.param(k).and_then(BareItem::as_token);
            let text = |k: &str| member.param(k).and_then(BareItem::as_string);
            let class = token("class")
                .and_then(Class::parse)
                .unwrap_or(Class::Unclassified);
            let info = class.info();
            let mut hints = Hints::default();
            for h in text("hints").unwrap_or("").split(' ') {
                if let Some(h) = Hint::parse(h) {
                    hints.insert(h);
                }
            }
            let outcome = Outcome {
                class,
                layer: member
                    .item
                    .as_ref()
                    .and_then(BareItem::as_token)
                    .and_then(Layer::parse)
                    .unwrap_or(info.layer),
                origin: token("origin")
                    .and_then(Origin::parse)
                    .unwrap_or(info.origin),
                side: token("side").and_then(Side::parse).unwrap_or(info.side),
                hints,
            };
            // `inferred`: the header's class and origin are likely, not certain; the hop's
            // access log and metrics carry the settled verdict.
            let inferred = matches!(member.param("inferred"), Some(BareItem::Boolean(true)));
            let decided_by = if inferred {
                "the verdict a meshtriage hop wrote (x-meshtriage), marked `inferred`: likely, \
                 not certain (the headers alone); that hop's access log and metrics carry the \
                 settled verdict"
            } else {
                "the verdict a meshtriage hop wrote (x-meshtriage)"
            };
            out.push(Finding {
                outcome: Some(outcome),
                header: Some(m.clone()),
                decided_by: decided_by.into(),
                hop: text("hop").map(str::to_string),
                alternatives: Vec::new(),
            });
        }
    }
    out
}

/// The whole explanation.
pub struct Explanation {
    pub pieces: Vec<(String, Piece)>,
    pub unknown: Vec<String>,
    pub findings: Vec<Finding>,
}

pub fn explain(args: &[String], cfg: &Config) -> Explanation {
    let (pieces, unknown) = read_all(args);
    let mut findings = decode_verdicts(&pieces);
    if let Some(f) = combine(&pieces, cfg) {
        findings.push(f);
    }
    Explanation {
        pieces,
        unknown,
        findings,
    }
}

fn hint_meaning(h: Hint) -> &'static str {
    HINTS
        .iter()
        .position(|(x, _)| *x == h)
        .and_then(|i| HINT_MEANINGS.get(i))
        .copied()
        .unwrap_or("")
}

impl Explanation {
    pub fn to_json(&self) -> Value {
        json!({
            "evidence": self.pieces.iter().map(|(text, p)| json!({
                "text": text, "kind": p.kind(), "reads": p.reads()})).collect::<Vec<_>>(),
            "not_understood": self.unknown,
            "verdicts": self.findings.iter().map(|f| match &f.outcome {
                None => json!({"failing": false, "decided_by": f.decided_by}),
                Some(o) => json!({
                    "failing": true,
                    "layer": o.layer.as_str(), "class": o.class.as_str(),
                    "origin": o.origin.as_str(), "side": o.side.as_str(),
                    "hints": o.hints.iter().map(|h| h.as_str()).collect::<Vec<_>>(),
                    "hop": f.hop,
                    "meaning": o.class.docs().meaning,
                    "next_step": o.class.docs().next_step,
                    "hint_meanings": o.hints.iter().map(|h| json!({"hint": h.as_str(), "meaning": hint_meaning(h)})).collect::<Vec<_>>(),
                    "decided_by": f.decided_by,
                    "header": f.header,
                    "could_also_be": f.alternatives.iter().map(|(c, need)| json!({"class": c.as_str(), "needs": need})).collect::<Vec<_>>(),
                }),
            }).collect::<Vec<_>>(),
        })
    }

    pub fn to_text(&self, st: &crate::style::Style) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for f in &self.findings {
            match &f.outcome {
                None => {
                    let _ = writeln!(out, "{} {}", st.bold("not failing:"), f.decided_by);
                }
                Some(o) => {
                    let mut head = format!(
                        "{} {}  origin={} side={}",
                        st.layer(o.layer.as_str()),
                        st.bold(o.class.as_str()),
                        o.origin.as_str(),
                        o.side.as_str()
                    );
                    if !o.hints.is_empty() {
                        let hints: Vec<&str> = o.hints.iter().map(|h| h.as_str()).collect();
                        let _ = write!(head, "  hints={}", hints.join(","));
                    }
                    if let Some(h) = &f.hop {
                        let _ = write!(head, "  hop={h}");
                    }
                    let _ = writeln!(out, "{head}");
                    let _ = writeln!(out, "  meaning:    {}", o.class.docs().meaning);
                    let _ = writeln!(out, "  next step:  {}", o.class.docs().next_step);
                    for h in o.hints.iter() {
                        let _ = writeln!(out, "  hint {}: {}", h.as_str(), hint_meaning(h));
                    }
                    let _ = writeln!(out, "  decided by: {}", f.decided_by);
                    if !f.alternatives.is_empty() {
                        let _ = writeln!(
                            out,
                            "  not ruled out (the text lacks the evidence that tells them apart):"
                        );
                        for (c, need) in &f.alternatives {
                            let _ = writeln!(out, "    {:<24} needs {need}", c.as_str());
                        }
                    }
                    if let Some(h) = &f.header {
                        let _ = writeln!(out, "  as header:  x-meshtriage: {h}");
                    }
                }
            }
        }
        if !self.pieces.is_empty() {
            out.push_str("evidence:\n");
            for (text, p) in &self.pieces {
                let shown: String = text.chars().take(100).collect();
                let _ = writeln!(out, "  {:<25} {:<28} <- {:?}", p.kind(), p.reads(), shown);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn one(args: &[&str]) -> Outcome {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let e = explain(&args, &Config::default());
        assert!(e.unknown.is_empty(), "{:?}", e.unknown);
        e.findings.last().unwrap().outcome.unwrap()
    }

    #[test]
    fn bodies_flags_details_and_tls() {
        assert_eq!(
            one(&["upstream connect error or disconnect/reset before headers. reset reason: connection termination"]).class,
            Class::ConnectionTerminated
        );
        let o = one(&["UF,URX"]);
        assert_eq!(o.class, Class::ConnectRefused);
        assert!(o.hints.contains(Hint::RetriesExhausted));
        assert_eq!(
            one(&["UF", "upstream_reset_before_response_started{remote_connection_failure|TLS_error:_268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED}"]).class,
            Class::TlsCertificateError
        );
        assert_eq!(
            one(&["upstream_reset_before_response_started{connection_termination}"]).class,
            Class::ConnectionTerminated
        );
        assert_eq!(
            one(&["UpstreamRetryLimitExceeded,UpstreamConnectionFailure"]).class,
            Class::ConnectRefused
        );
        assert_eq!(
            one(&[r#"out; error=connection_terminated; details="upstream_reset_before_response_started{connection_termination}; UC""#]).class,
            Class::ConnectionTerminated
        );
        assert_eq!(
            one(&["rbac_access_denied_matched_policy[deny-all]"]).class,
            Class::AuthzDenied
        );
        let v = one(&[r#"l4;class=connect_refused;origin=proxy;side=upstream;hop="a.b""#]);
        assert_eq!(v.class, Class::ConnectRefused);
    }

    #[test]
    fn unknown_words_are_named() {
        let e = explain(&["UF".into(), "banana".into()], &Config::default());
        assert_eq!(e.unknown, vec!["banana".to_string()]);
    }
}
