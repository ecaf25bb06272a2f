//! Plugin configuration: a JSON object (README.md "Configuration") read by serde_json into a
//! `Value` and walked by hand through one table, [`KEYS`]: each row is a key's name, its
//! documented default, its meaning (docs/reference.md and the README are rendered from them)
//! and the function that validates and applies it. A bad configuration is reported as one
//! [`ConfigError`] naming every bad key; the caller keeps the last good configuration.

use crate::substr;
use crate::taxonomy::Direction;
use serde_json::Value;
use std::fmt;

pub const DEFAULT_HEADER: &str = "x-meshtriage";

/// Whether verdict entries from upstream are kept (README.md, "The verdict header").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Keep them on outbound listeners, remove them on inbound ones and when unknown.
    Auto,
    Always,
    Never,
}

/// Failing HTTP statuses as a bitset over 0..640.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusSet([u64; 10]);

impl StatusSet {
    fn insert(&mut self, code: u16) {
        if let Some(w) = self.0.get_mut(usize::from(code / 64)) {
            *w |= 1 << (code % 64);
        }
    }

    pub fn contains(&self, code: u16) -> bool {
        self.0
            .get(usize::from(code / 64))
            .is_some_and(|w| w & (1 << (code % 64)) != 0)
    }
}

/// Retry budget (issue: retry storms): retries allowed per request over a window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudget {
    pub ratio: f64,
    pub window_seconds: u32,
    pub min_requests: u64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            ratio: 0.1,
            window_seconds: 10,
            min_requests: 20,
        }
    }
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Verdict header name; `None` disables the header.
    pub header: Option<String>,
    pub expose_header: bool,
    pub hop: Option<String>,
    pub trust_upstream: Trust,
    pub failure_statuses: StatusSet,
    /// Bit n set: gRPC code n is failing.
    pub grpc_failure_codes: u32,
    pub include_detail: bool,
    pub proxy_status: bool,
    pub large_payload_bytes: u64,
    pub retry_budget: RetryBudget,
    /// The listener direction when the operator states it (`None`: read per request).
    pub direction: Option<Direction>,
}

impl Default for Config {
    fn default() -> Self {
        let mut statuses = StatusSet([0; 10]);
        (500..600).for_each(|c| statuses.insert(c));
        Config {
            header: Some(DEFAULT_HEADER.to_string()),
            expose_header: true,
            hop: None,
            trust_upstream: Trust::Auto,
            failure_statuses: statuses,
            grpc_failure_codes: [2u32, 4, 8, 12, 13, 14, 15]
                .iter()
                .fold(0, |m, c| m | 1 << c),
            include_detail: true,
            proxy_status: false,
            large_payload_bytes: 1_048_576,
            retry_budget: RetryBudget::default(),
            direction: None,
        }
    }
}

impl Config {
    pub fn grpc_failing(&self, code: u32) -> bool {
        code < 32 && self.grpc_failure_codes & (1 << code) != 0
    }
}

/// One problem: the key (`retry_budget.ratio`, `failure_statuses[2]`, `(document)`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub reason: String,
}

/// A bad configuration: every problem found, in key order (at least one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

/// Problems listed in the error line; the rest are counted (a hostile document may hold any
/// number of keys, and the line must stay one readable line).
pub const MAX_LISTED: usize = 16;
/// Longest key name shown in the error line.
const MAX_SHOWN_KEY: usize = 64;

impl ConfigError {
    /// A problem with the document as a whole.
    pub fn document(reason: impl Into<String>) -> ConfigError {
        ConfigError {
            problems: vec![problem("(document)", reason)],
        }
    }

    /// The keys named, in order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.problems.iter().map(|p| p.field.as_str())
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid meshtriage configuration: ")?;
        let mut unknown = false;
        for (i, p) in self.problems.iter().take(MAX_LISTED).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            let shown: String = p.field.chars().take(MAX_SHOWN_KEY).collect();
            let cut = if shown.len() < p.field.len() {
                "…"
            } else {
                ""
            };
            write!(f, "field `{shown}{cut}`: {}", p.reason)?;
            unknown |= p.reason == UNKNOWN && !p.field.starts_with("retry_budget.");
        }
        if let Some(more) = self
            .problems
            .len()
            .checked_sub(MAX_LISTED)
            .filter(|n| *n > 0)
        {
            write!(f, "; and {more} more")?;
        }
        if unknown {
            write!(f, " (known keys: {})", key_names())?;
        }
        Ok(())
    }
}

fn problem(field: &str, reason: impl Into<String>) -> Problem {
    Problem {
        field: field.to_string(),
        reason: reason.into(),
    }
}

const UNKNOWN: &str = "unknown key";

/// The known keys, as the error line lists them.
fn key_names() -> String {
    APPLY
        .iter()
        .map(|(name, _)| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a JSON value reads in an error ("string \"no\"", "integer `3`").
fn shown(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_f64() => "a floating point number".into(),
        // Integers only here (floats are above): written without serde_json's float printer.
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => format!("integer `{u}`"),
            (None, Some(i)) => format!("integer `{i}`"),
            (None, None) => "a floating point number".into(),
        },
        Value::String(t) => format!("string {:?}", t.chars().take(64).collect::<String>()),
        Value::Array(_) => "a sequence".into(),
        Value::Object(_) => "a map".into(),
    }
}

fn wrong(field: &str, v: &Value, expected: &str) -> Problem {
    problem(
        field,
        format!("invalid type: {}, expected {expected}", shown(v)),
    )
}

fn boolean(field: &str, v: &Value) -> Result<bool, Problem> {
    v.as_bool().ok_or_else(|| wrong(field, v, "a boolean"))
}

fn string<'v>(field: &str, v: &'v Value) -> Result<&'v str, Problem> {
    v.as_str().ok_or_else(|| wrong(field, v, "a string"))
}

fn unsigned(field: &str, v: &Value) -> Result<u64, Problem> {
    v.as_u64()
        .ok_or_else(|| wrong(field, v, "a non-negative integer"))
}

fn array<'v>(field: &str, v: &'v Value) -> Result<&'v Vec<Value>, Problem> {
    v.as_array().ok_or_else(|| wrong(field, v, "a sequence"))
}

/// Validates one key's value and applies it to the configuration.
type Apply = fn(&mut Config, &Value) -> Result<(), Vec<Problem>>;

/// One configuration key: the row every derived list comes from.
pub struct Key {
    pub name: &'static str,
    /// The documented default, as JSON (`None`: computed, see `meaning`).
    pub default: Option<&'static str>,
    /// What the docs say when there is no JSON default.
    pub default_text: &'static str,
    pub meaning: &'static str,
    apply: Apply,
}

impl Key {
    /// The default as the docs show it.
    pub fn default_shown(&self) -> &'static str {
        self.default.unwrap_or(self.default_text)
    }
}

fn one(r: Result<(), Problem>) -> Result<(), Vec<Problem>> {
    r.map_err(|p| vec![p])
}

fn apply_header(c: &mut Config, v: &Value) -> Result<(), Vec<Problem>> {
    one(string("header", v).and_then(|h| {
        c.header =
            match h {
                "" => None,
                name if valid_header_name(name) => Some(name.to_string()),
                _ => return Err(problem(
                    "header",
                    "must be a lowercase HTTP header name (token characters, at most 64) or \"\"",
                )),
            };
        Ok(())
    }))
}

fn apply_expose_header(c: &mut Config, v: &Value) -> Result<(), Vec<Problem>> {
    one(boolean("expose_header", v).map(|b| c.expose_header = b))
}

fn apply_hop(c: &mut Config, v: &Value) -> Result<(), Vec<Problem>> {
    one(string("hop", v).and_then(|hop| {
        if hop.is_empty()
            || hop.len() > 253
            || !hop
                .bytes()
                .all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            return Err(problem(
                "hop",
                "must be 1 to 253 printable ASCII characters without spaces, quotes or backslashes",
            ));
        }
        c.hop = Some(hop.to_string());
        Ok(())
    }))
}

fn apply_trust_upstream(c: &mut Config, v: &Value) -> Result<(), Vec<Problem>> {
    let k = "trust_upstream";
    c.trust_upstream = match v {
        Value::Bool(true) => Trust::Always,
        Value::Bool(false) => Trust::Never,
        Value::String(s) if s == "auto" => Trust::Auto,
        Value::String(s) => {
            return Err(vec![problem(
                k,
                format!(
                    "must be \"auto\", true or false, not {:?}",
                    s.chars().take(64).collect::<String>()
                ),
            )])
        }
        _ => return Err(vec![wrong(k, v, "\"auto\", true or false")]),
    };
    Ok(())
}

fn apply_failure_statuses(c: &mut Config, v: &Value) -> Result<(), Vec<Problem>> {
    let k = "failure_statuses";
    let mut set = StatusSet([0; 10]);
    for (i, item) in array(k, v).map_err(|p| vec![p])?.iter().enumerate() {
        let field = format!("{k}[{i}]");
        match item {
            Value::String(t) if matches!(t.as_str(), "4xx" | "5xx") => {
                let base = if t == "4xx" { 400 } else { 500 };
                (base..base + 100).for_each(|code| set.insert(code));
            }
            _ => match item.as_u64().and_then(|c| u16::try_from(c).ok()) {
                Some(code @ 100..=599) => set.insert(code),
                Some(code) => {
                    return Err(vec![problem(
                        &field,
                        format!("must be a status code 100-599, \"4xx\" or \"5xx\", not {code}"),
                    )])
                }
                None if item.is_string() => {
                    return Err(vec![problem(
                        &field,
                        format!(
                            "must be a status code 100-599, \"4xx\" or \"5xx\", not {}",
                            shown(item)
                        ),
                    )])
                }
                None => {
                    return Err(vec![wrong(
                        &field,
                        item,
                        "a status code or \"4xx\"/\"5xx\"",
                    )])
                }
            },
        }
    }
    c.failure_statuses = set;
    Ok(())
}

fn apply_grpc_failure_codes(c: &mut Config, v: &Value) -> Result<(), Vec<Problem>> {
    let k = "grpc_failure_codes";
    let mut mask = 0u32;
    for (i, item) in array(k, v).map_err(|p| vec![p])?.iter().enumerate() {
        let field = format!("{k}[{i}]");
        let code = unsigned(&field, item).map_err(|p| vec![p])?;
        if code > 16 {
            return Err(vec![problem(
                &field,
                format!("must be a gRPC code 0-16, not {code}"),
            )]);
        }
        mask |= 1 << code;
    }
    c.grpc_failure_codes = mask;
    Ok(())
}

fn apply_include_detail(c: &mut Config, v: &Value) -> Result<(), Vec<Problem>> {
    one(boolean("include_detail", v).map(|b| c.include_detail = b))
}

fn apply_proxy_status(c: &mut Config, v: &Value) -> Result<(), Vec<Problem>> {
    one(boolean("proxy_status", v).map(|b| c.proxy_status = b))
}

fn apply_large_payload_bytes(c: &mut Config, v: &Value) -> Result<(), Vec<Problem>> {
    let k = "large_payload_bytes";
    one(unsigned(k, v).and_then(|b| {
        if b == 0 {
            return Err(problem(k, "must be at least 1"));
        }
        c.large_payload_bytes = b;
        Ok(())
    }))
}

/// `retry_budget`: every bad sub-key is a problem of its own.
fn apply_retry_budget(c: &mut Config, v: &Value) -> Result<(), Vec<Problem>> {
    let map = v
        .as_object()
        .ok_or_else(|| vec![wrong("retry_budget", v, "a map")])?;
    let mut rb = RetryBudget::default();
    let mut problems = Vec::new();
    for (key, v) in map {
        let field = format!("retry_budget.{key}");
        let r = match key.as_str() {
            "ratio" => v
                .as_f64()
                .ok_or_else(|| wrong(&field, v, "a number"))
                .and_then(|r| {
                    if r.is_finite() && r > 0.0 && r <= 100.0 {
                        rb.ratio = r;
                        Ok(())
                    } else {
                        Err(problem(&field, "must be a number above 0 and at most 100"))
                    }
                }),
            "window_seconds" => unsigned(&field, v).and_then(|w| match u32::try_from(w) {
                Ok(w @ 1..=3600) => {
                    rb.window_seconds = w;
                    Ok(())
                }
                _ => Err(problem(&field, "must be 1 to 3600")),
            }),
            "min_requests" => unsigned(&field, v).map(|m| rb.min_requests = m),
            _ => Err(problem(
                &field,
                "unknown key, expected one of `ratio`, `window_seconds`, `min_requests`",
            )),
        };
        if let Err(p) = r {
            problems.push(p);
        }
    }
    if problems.is_empty() {
        c.retry_budget = rb;
        Ok(())
    } else {
        Err(problems)
    }
}

fn apply_direction(c: &mut Config, v: &Value) -> Result<(), Vec<Problem>> {
    let k = "direction";
    one(string(k, v).and_then(|d| {
        c.direction = match d {
            "auto" => None,
            "inbound" => Some(Direction::Inbound),
            "outbound" => Some(Direction::Outbound),
            _ => {
                return Err(problem(
                    k,
                    format!(
                        "must be \"auto\", \"inbound\" or \"outbound\", not {:?}",
                        d.chars().take(64).collect::<String>()
                    ),
                ))
            }
        };
        Ok(())
    }))
}

/// Every configuration key: parsing, the key list of error lines, the docs (docs/reference.md,
/// README) and the documented defaults all come from this table.
pub const KEYS: [Key; 11] = [
    Key { name: "header", default: Some("\"x-meshtriage\""), default_text: "", meaning: "verdict header name; `\"\"` disables the header", apply: apply_header },
    Key { name: "expose_header", default: Some("true"), default_text: "", meaning: "`false`: strip all entries before responding downstream (edge gateways)", apply: apply_expose_header },
    Key { name: "hop", default: None, default_text: "from node metadata", meaning: "identity written in `hop` (else node metadata `NAME.NAMESPACE`, else node id)", apply: apply_hop },
    Key { name: "trust_upstream", default: Some("\"auto\""), default_text: "", meaning: "`\"auto\"` (keep upstream entries on outbound listeners only), `true`, `false`", apply: apply_trust_upstream },
    Key { name: "failure_statuses", default: Some("[\"5xx\"]"), default_text: "", meaning: "upstream statuses that count as failing: codes or `\"4xx\"`/`\"5xx\"`", apply: apply_failure_statuses },
    Key { name: "grpc_failure_codes", default: Some("[2, 4, 8, 12, 13, 14, 15]"), default_text: "", meaning: "gRPC codes that count as failing", apply: apply_grpc_failure_codes },
    Key { name: "include_detail", default: Some("true"), default_text: "", meaning: "write `detail` (response code details) into the header", apply: apply_include_detail },
    Key { name: "proxy_status", default: Some("false"), default_text: "", meaning: "also append an RFC 9209 `Proxy-Status` entry with the precise error type, for this proxy's own errors (never for an app's answer or another proxy's error page)", apply: apply_proxy_status },
    Key { name: "large_payload_bytes", default: Some("1048576"), default_text: "", meaning: "request or response body size from which a failing request gets the `large_payload` hint (and a request counts as large for the payload-size signal)", apply: apply_large_payload_bytes },
    Key { name: "retry_budget", default: Some("{\"ratio\": 0.1, \"window_seconds\": 10, \"min_requests\": 20}"), default_text: "", meaning: "per cluster: retries allowed per request over a sliding window (retry budget = baseline requests per second × `ratio`), and the request volume in the window below which no verdict is made; see docs/decision-tree.md", apply: apply_retry_budget },
    Key { name: "direction", default: Some("\"auto\""), default_text: "", meaning: "`\"inbound\"` or `\"outbound\"`: the listeners this plugin runs on, stated by the operator (the Istio manifests deploy one plugin per direction); `\"auto\"` reads `xds.listener_direction` on every request, which costs one host call each", apply: apply_direction },
];

/// What parsing needs of [`KEYS`], projected at compile time: the module then carries the
/// names and validators, not the docs text.
// Evaluated at compile time: an index out of range fails the build, never a request.
#[allow(clippy::indexing_slicing)]
const APPLY: [(&str, Apply); KEYS.len()] = {
    let mut out: [(&str, Apply); KEYS.len()] = [("", apply_header); KEYS.len()];
    let mut i = 0;
    while i < KEYS.len() {
        out[i] = (KEYS[i].name, KEYS[i].apply);
        i += 1;
    }
    out
};

/// Parses and validates a plugin configuration. Empty (or whitespace) means all defaults.
/// serde_json reads the document; the keys are walked here through [`KEYS`] so that every
/// error names its key, every bad key is reported at once, and the module stays small (no
/// derive or path-tracking code).
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Config::default());
    }
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| {
        let msg = e.to_string();
        let at = substr::find(&msg, " at line ").unwrap_or(msg.len());
        ConfigError::document(msg.get(..at).unwrap_or(&msg))
    })?;
    let map = doc.as_object().ok_or_else(|| ConfigError {
        problems: vec![wrong("(document)", &doc, "a JSON object")],
    })?;
    let mut c = Config::default();
    let mut problems = Vec::new();
    for (name, v) in map {
        match APPLY.iter().find(|(key, _)| key == name) {
            Some((_, apply)) => {
                if let Err(mut p) = apply(&mut c, v) {
                    problems.append(&mut p);
                }
            }
            None => problems.push(problem(name, UNKNOWN)),
        }
    }
    if problems.is_empty() {
        Ok(c)
    } else {
        Err(ConfigError { problems })
    }
}

fn valid_header_name(name: &str) -> bool {
    name.len() <= 64
        && !name.starts_with(':')
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn field(json: &str) -> String {
        let e = parse(json.as_bytes()).unwrap_err();
        assert_eq!(e.problems.len(), 1, "{e}");
        e.problems[0].field.clone()
    }

    #[test]
    fn empty_means_defaults() {
        assert_eq!(parse(b""), Ok(Config::default()));
        assert_eq!(parse(b"  \n"), Ok(Config::default()));
        assert_eq!(parse(b"{}"), Ok(Config::default()));
        let d = Config::default();
        assert!(d.failure_statuses.contains(503) && !d.failure_statuses.contains(404));
        assert!(d.grpc_failing(14) && !d.grpc_failing(5) && !d.grpc_failing(40));
    }

    #[test]
    fn every_key_parses() {
        let c = parse(br#"{"header":"x-verdict","expose_header":false,"hop":"gw.edge","trust_upstream":true,
            "failure_statuses":[429,"5xx"],"grpc_failure_codes":[14],"include_detail":false,"proxy_status":true,
            "large_payload_bytes":10,"retry_budget":{"ratio":0.2,"window_seconds":5,"min_requests":1}}"#).unwrap();
        assert_eq!(c.header.as_deref(), Some("x-verdict"));
        assert!(!c.expose_header && !c.include_detail && c.proxy_status);
        assert_eq!(c.trust_upstream, Trust::Always);
        assert!(
            c.failure_statuses.contains(429)
                && c.failure_statuses.contains(502)
                && !c.failure_statuses.contains(404)
        );
        assert!(c.grpc_failing(14) && !c.grpc_failing(2));
        assert_eq!(c.retry_budget.window_seconds, 5);
        assert_eq!(parse(br#"{"header":""}"#).unwrap().header, None);
        assert_eq!(
            parse(br#"{"trust_upstream":false}"#)
                .unwrap()
                .trust_upstream,
            Trust::Never
        );
    }

    #[test]
    fn direction_is_stated_or_read() {
        assert_eq!(parse(b"{}").unwrap().direction, None);
        assert_eq!(parse(br#"{"direction":"auto"}"#).unwrap().direction, None);
        assert_eq!(
            parse(br#"{"direction":"inbound"}"#).unwrap().direction,
            Some(Direction::Inbound)
        );
        assert_eq!(
            parse(br#"{"direction":"outbound"}"#).unwrap().direction,
            Some(Direction::Outbound)
        );
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(field(r#"{"headr":"x"}"#), "headr");
        assert_eq!(field(r#"{"expose_header":"no"}"#), "expose_header");
        assert_eq!(field(r#"{"header":"X Bad"}"#), "header");
        assert_eq!(field(r#"{"trust_upstream":"sometimes"}"#), "trust_upstream");
        assert_eq!(field(r#"{"direction":"sideways"}"#), "direction");
        assert_eq!(field(r#"{"direction":1}"#), "direction");
        assert_eq!(
            field(r#"{"failure_statuses":[200,"3xx"]}"#),
            "failure_statuses[1]"
        );
        assert_eq!(field(r#"{"failure_statuses":[99]}"#), "failure_statuses[0]");
        assert_eq!(
            field(r#"{"grpc_failure_codes":[17]}"#),
            "grpc_failure_codes[0]"
        );
        assert_eq!(
            field(r#"{"grpc_failure_codes":"all"}"#),
            "grpc_failure_codes"
        );
        assert_eq!(
            field(r#"{"retry_budget":{"ratio":0}}"#),
            "retry_budget.ratio"
        );
        assert_eq!(
            field(r#"{"retry_budget":{"burst":1}}"#),
            "retry_budget.burst"
        );
        assert_eq!(
            field(r#"{"large_payload_bytes":-1}"#),
            "large_payload_bytes"
        );
        assert_eq!(field(r#"{"hop":"a b"}"#), "hop");
        assert_eq!(field("not json"), "(document)");
        assert_eq!(field("[]"), "(document)");
        assert_eq!(field("{} {}"), "(document)");
        assert_eq!(field("\u{ff}"), "(document)");
        // An array is not read field by field into the struct.
        let all_null = "[null,null,null,null,null,null,null,null,null,null]";
        assert_eq!(field(all_null), "(document)");
        assert_eq!(field("[false]"), "(document)");
        // Truncated documents are syntax errors of the whole document.
        assert_eq!(field(r#"{"header": "x-a""#), "(document)");
        assert_eq!(field(r#"{"retry_budget": {"ratio": 0.5"#), "(document)");
        assert_eq!(field("{"), "(document)");
    }

    #[test]
    fn error_text_is_one_line_naming_the_field() {
        let e = parse(br#"{"include_detail": 3}"#).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("`include_detail`") && text.contains("expected a boolean"),
            "{text}"
        );
        assert!(!text.contains('\n'));
    }

    #[test]
    fn every_bad_key_is_named_in_one_line() {
        let e = parse(
            br#"{"include_detail": 3, "headr": "x", "retry_budget": {"ratio": 0, "burst": 1},
                "direction": "sideways", "hop": "gw.edge"}"#,
        )
        .unwrap_err();
        let fields: Vec<&str> = e.fields().collect();
        assert_eq!(
            fields,
            [
                "direction",
                "headr",
                "include_detail",
                "retry_budget.burst",
                "retry_budget.ratio"
            ]
        );
        let text = e.to_string();
        assert!(!text.contains('\n'), "{text}");
        for f in fields {
            assert!(text.contains(&format!("field `{f}`")), "{f}: {text}");
        }
        // The list of known keys once, for the unknown top-level key.
        assert_eq!(text.matches("known keys").count(), 1, "{text}");
        assert!(text.contains("`retry_budget`, `direction`"), "{text}");
    }

    #[test]
    fn a_hostile_document_gives_a_bounded_line() {
        let keys: Vec<String> = (0..1000)
            .map(|i| format!("\"{}{i}\": 1", "k".repeat(200)))
            .collect();
        let doc = format!("{{{}}}", keys.join(","));
        let e = parse(doc.as_bytes()).unwrap_err();
        assert_eq!(e.problems.len(), 1000);
        let text = e.to_string();
        assert!(text.len() < 4000, "{}", text.len());
        assert!(
            text.contains(&format!("; and {} more", 1000 - MAX_LISTED)),
            "{text}"
        );
    }

    /// The documented defaults are the defaults: a document of every key set to its
    /// documented default parses to `Config::default()`.
    #[test]
    fn documented_defaults_are_the_defaults() {
        let doc = KEYS
            .iter()
            .filter_map(|k| k.default.map(|d| format!("\"{}\": {d}", k.name)))
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(
            parse(format!("{{{doc}}}").as_bytes()),
            Ok(Config::default())
        );
        for k in KEYS {
            assert!(
                k.default.is_some() == k.default_text.is_empty(),
                "{}",
                k.name
            );
            assert!(!k.meaning.is_empty());
        }
    }
}
