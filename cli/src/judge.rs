//! From what a log line or a pasted text says to a verdict, with meshtriage-core's rules: the
//! fields become the same `Signals` the plugin builds, and `is_failing`/`classify` decide.

use meshtriage_core::classify::matching_rule;
use meshtriage_core::flags::{Flag, ResponseFlags};
use meshtriage_core::taxonomy::{Cond, Rule, RULES};
use meshtriage_core::verdict::{ExchangeFacts, Verdict};
use meshtriage_core::{
    classify, is_failing, Class, Config, Direction, Layer, Outcome, Phase, Signals,
};

/// Parses Envoy's `%RESPONSE_FLAGS%` (`UF,URX`) or `%RESPONSE_FLAGS_LONG%` names; `-` is none.
/// `Err` names the first word that is not a flag.
pub fn parse_flags(text: &str) -> Result<ResponseFlags, String> {
    let mut flags = ResponseFlags::default();
    for word in text
        .split([',', ' ', '|'])
        .filter(|w| !w.is_empty() && *w != "-")
    {
        match Flag::from_name(word) {
            Some(f) => flags = flags.with(f),
            None => return Err(word.to_string()),
        }
    }
    Ok(flags)
}

/// The listener direction an Istio cluster name shows (`inbound|8080||`, `outbound|80||svc`).
pub fn direction_of_cluster(cluster: &str) -> Direction {
    if cluster.starts_with("inbound|") {
        Direction::Inbound
    } else if cluster.starts_with("outbound|") {
        Direction::Outbound
    } else {
        Direction::Unknown
    }
}

/// What an access-log line says about one request.
#[derive(Clone, Debug, Default)]
pub struct LineFacts {
    /// `%RESPONSE_CODE%`; 0 (no response sent) is `None`.
    pub status: Option<u16>,
    pub flags: ResponseFlags,
    /// `%RESPONSE_CODE_DETAILS%`; `None` when the format has none (or it is `-`).
    pub details: Option<String>,
    pub transport_failure: Option<String>,
    pub grpc_status: Option<u32>,
    pub attempts: u64,
    pub direction: Direction,
}

impl LineFacts {
    /// The signals the plugin would have had at the end of the stream, as far as the line
    /// shows them. The response had started when the status sent downstream is below 400
    /// (the plugin's own test: the upstream's headers went out and were not failing).
    pub fn signals(&self) -> Signals {
        Signals {
            phase: Phase::Log,
            status: self.status,
            flags: self.flags,
            details: self.details.clone(),
            transport_failure: self.transport_failure.clone(),
            grpc_status: self.grpc_status,
            attempts: self.attempts,
            direction: self.direction,
            response_started: self.status.is_some_and(|s| s < 400),
            ..Signals::default()
        }
    }
}

/// The verdict on a line's facts, `None` when the request did not fail.
pub fn judge(facts: &LineFacts, cfg: &Config) -> Option<Outcome> {
    let s = facts.signals();
    is_failing(&s, cfg).then(|| classify(&s, cfg))
}

/// The rule that decided, and its number in the rule table (1-based, as docs/taxonomy.md).
pub fn deciding_rule(s: &Signals, cfg: &Config) -> Option<(usize, &'static Rule)> {
    let rule = matching_rule(s, cfg)?;
    // `RULES` is a const: compare rows by content, not address.
    let shown = format!("{rule:?}");
    let n = RULES.iter().position(|r| format!("{r:?}") == shown)?;
    Some((n + 1, rule))
}

/// How a rule reads (`UF + transport failure reason contains ...`).
pub fn describe_rule(rule: &Rule) -> String {
    rule.when
        .iter()
        .map(|c| c.describe())
        .collect::<Vec<_>>()
        .join(" + ")
}

/// The flag that alone decides `class` (its single-flag rule): what Envoy's flags were when
/// a local-reply body or a reset reason names that class.
pub fn sole_flag(class: Class) -> Option<Flag> {
    RULES
        .iter()
        .filter(|r| r.class == class)
        .find_map(|r| match r.when {
            [Cond::Flag(f)] => Some(*f),
            _ => None,
        })
}

/// Classes the same flags lead to with more evidence (rules with one of the flags and further
/// conditions), with what they need: when the text shows only the flag, these are not ruled
/// out. `local_reply`: the proxy answered itself, so rules about a started response do not apply.
pub fn alternatives(
    flags: ResponseFlags,
    decided: Class,
    local_reply: bool,
) -> Vec<(Class, String)> {
    let mut out: Vec<(Class, String)> = Vec::new();
    for r in RULES {
        let has_flag = r
            .when
            .iter()
            .any(|c| matches!(c, Cond::Flag(f) if flags.has(*f)));
        let late = r
            .when
            .iter()
            .any(|c| matches!(c, Cond::ResponseStarted | Cond::ChunkedWithoutBody));
        if r.class == decided || r.when.len() < 2 || !has_flag || (local_reply && late) {
            continue;
        }
        let need = describe_rule(r);
        match out.iter_mut().find(|(c, _)| *c == r.class) {
            Some((_, text)) => {
                text.push_str("; or ");
                text.push_str(&need);
            }
            None => out.push((r.class, need)),
        }
    }
    out
}

/// Does any rule look at this transport failure reason (or is it one Envoy writes on a failed
/// connect)?
pub fn is_transport_failure(text: &str) -> bool {
    RULES.iter().flat_map(|r| r.when).any(|c| match c {
        Cond::TfrContains(t) => text.contains(t),
        _ => false,
    }) || text.starts_with("delayed connect error")
        || text.starts_with("TLS_error")
        || text.starts_with("TLS error")
}

/// The verdict header member a plugin would write for this outcome (no hop).
pub fn encode(outcome: Outcome, flags: ResponseFlags, detail: Option<String>) -> String {
    Verdict::from_parts(
        outcome,
        ExchangeFacts {
            dir: Direction::Unknown,
            hop: "",
            flags,
            detail,
            attempts: 0,
        },
    )
    .encode(true)
}

/// A verdict's four parts as the summary keys them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub layer: &'static str,
    pub class: &'static str,
    pub origin: &'static str,
    pub side: &'static str,
}

impl Key {
    pub fn of(o: &Outcome) -> Key {
        Key {
            layer: o.layer.as_str(),
            class: o.class.as_str(),
            origin: o.origin.as_str(),
            side: o.side.as_str(),
        }
    }

    pub fn layer(&self) -> Layer {
        Layer::parse(self.layer).unwrap_or(Layer::Unknown)
    }
}

/// The outcome a verdict member written by the plugin states (`l4;class=...;origin=...`).
pub fn outcome_of_member(text: &str) -> Option<Outcome> {
    use meshtriage_core::sfv::{self, BareItem};
    use meshtriage_core::{Hint, Origin, Side};
    let members = sfv::parse_list(text.trim().as_bytes()).ok()?;
    let member = members.first()?;
    let layer = member
        .item
        .as_ref()
        .and_then(BareItem::as_token)
        .and_then(Layer::parse)?;
    let class = member
        .param("class")
        .and_then(BareItem::as_token)
        .and_then(Class::parse)?;
    let info = class.info();
    let token = |k: &str| member.param(k).and_then(BareItem::as_token);
    let mut hints = meshtriage_core::taxonomy::Hints::default();
    for h in member
        .param("hints")
        .and_then(BareItem::as_string)
        .unwrap_or("")
        .split(' ')
        .filter_map(Hint::parse)
    {
        hints.insert(h);
    }
    Some(Outcome {
        class,
        layer,
        origin: token("origin")
            .and_then(Origin::parse)
            .unwrap_or(info.origin),
        side: token("side").and_then(Side::parse).unwrap_or(info.side),
        hints,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flags_short_and_long() {
        let f = parse_flags("UF,URX").unwrap();
        assert_eq!(f.short_names(), "UF,URX");
        assert_eq!(
            parse_flags("UpstreamConnectionFailure,UpstreamRetryLimitExceeded").unwrap(),
            f
        );
        assert_eq!(parse_flags("-").unwrap(), ResponseFlags::default());
        assert_eq!(parse_flags("UF,XX"), Err("XX".to_string()));
    }

    #[test]
    fn a_stalled_body_after_a_200_is_late() {
        let facts = LineFacts {
            status: Some(200),
            flags: parse_flags("UT").unwrap(),
            details: Some("upstream_response_timeout".into()),
            ..LineFacts::default()
        };
        let o = judge(&facts, &Config::default()).unwrap();
        assert_eq!(o.class, Class::TransferStalled);
        let ok = LineFacts {
            status: Some(200),
            details: Some("via_upstream".into()),
            ..LineFacts::default()
        };
        assert!(judge(&ok, &Config::default()).is_none());
    }

    #[test]
    fn single_flag_rules() {
        assert_eq!(sole_flag(Class::ConnectRefused), Some(Flag::UF));
        assert_eq!(sole_flag(Class::ConnectionTerminated), Some(Flag::UC));
        assert_eq!(sole_flag(Class::AppError), None);
    }
}
