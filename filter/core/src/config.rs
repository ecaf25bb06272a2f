//! Plugin configuration: JSON (contract §5) parsed by serde into `RawConfig`, then validated
//! into `Config`. A bad configuration is reported as one `ConfigError` naming the key; the
//! caller keeps the last good configuration.

use crate::substr;
use crate::taxonomy::Direction;
use serde_json::Value;
use std::fmt;

pub const DEFAULT_HEADER: &str = "x-meshtriage";

/// Whether verdict entries from upstream are kept (contract §3).
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

/// A configuration problem: the key and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid meshtriage configuration: field `{}`: {}",
            self.field, self.reason
        )
    }
}

fn err(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// The JSON document as written (contract §5); every key optional.
#[derive(Debug, Default)]
pub struct RawConfig {
    pub header: Option<String>,
    pub expose_header: Option<bool>,
    pub hop: Option<String>,
    pub trust_upstream: Option<RawTrust>,
    pub failure_statuses: Option<Vec<RawStatus>>,
    pub grpc_failure_codes: Option<Vec<u32>>,
    pub include_detail: Option<bool>,
    pub proxy_status: Option<bool>,
    pub large_payload_bytes: Option<u64>,
    pub retry_budget: Option<RetryBudget>,
    pub direction: Option<String>,
}

#[derive(Debug)]
pub enum RawTrust {
    Bool(bool),
    Text(String),
}

#[derive(Debug)]
pub enum RawStatus {
    Code(u16),
    Class(String),
}

const KEY_NAMES: &str = "`header`, `expose_header`, `hop`, `trust_upstream`, `failure_statuses`, \
`grpc_failure_codes`, `include_detail`, `proxy_status`, `large_payload_bytes`, `retry_budget`, \
`direction`";

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

fn wrong(field: &str, v: &Value, expected: &str) -> ConfigError {
    err(
        field,
        format!("invalid type: {}, expected {expected}", shown(v)),
    )
}

fn boolean(field: &str, v: &Value) -> Result<bool, ConfigError> {
    v.as_bool().ok_or_else(|| wrong(field, v, "a boolean"))
}

fn string(field: &str, v: &Value) -> Result<String, ConfigError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| wrong(field, v, "a string"))
}

fn unsigned(field: &str, v: &Value) -> Result<u64, ConfigError> {
    v.as_u64()
        .ok_or_else(|| wrong(field, v, "a non-negative integer"))
}

fn array<'v>(field: &str, v: &'v Value) -> Result<&'v Vec<Value>, ConfigError> {
    v.as_array().ok_or_else(|| wrong(field, v, "a sequence"))
}

fn retry_budget(v: &Value) -> Result<RetryBudget, ConfigError> {
    let map = v
        .as_object()
        .ok_or_else(|| wrong("retry_budget", v, "a map"))?;
    let mut rb = RetryBudget::default();
    for (key, v) in map {
        let field = format!("retry_budget.{key}");
        match key.as_str() {
            "ratio" => rb.ratio = v.as_f64().ok_or_else(|| wrong(&field, v, "a number"))?,
            "window_seconds" => {
                rb.window_seconds = unsigned(&field, v)?.try_into().map_err(|_| err(&field, "must be 1 to 3600"))?;
            }
            "min_requests" => rb.min_requests = unsigned(&field, v)?,
            _ => return Err(err(&field, format!("unknown field `{key}`, expected one of `ratio`, `window_seconds`, `min_requests`"))),
        }
    }
    Ok(rb)
}

/// Reads the JSON object into a `RawConfig`, naming the key of the first problem.
fn raw(doc: &Value) -> Result<RawConfig, ConfigError> {
    let map = doc
        .as_object()
        .ok_or_else(|| wrong("(document)", doc, "a JSON object"))?;
    let mut raw = RawConfig::default();
    for (key, v) in map {
        let k = key.as_str();
        match k {
            "header" => raw.header = Some(string(k, v)?),
            "expose_header" => raw.expose_header = Some(boolean(k, v)?),
            "hop" => raw.hop = Some(string(k, v)?),
            "trust_upstream" => {
                raw.trust_upstream = Some(match v {
                    Value::Bool(b) => RawTrust::Bool(*b),
                    Value::String(t) => RawTrust::Text(t.clone()),
                    _ => return Err(wrong(k, v, "\"auto\", true or false")),
                });
            }
            "failure_statuses" => {
                let mut list = Vec::new();
                for (i, item) in array(k, v)?.iter().enumerate() {
                    list.push(match item {
                        Value::String(t) => RawStatus::Class(t.clone()),
                        _ => match item.as_u64().and_then(|c| u16::try_from(c).ok()) {
                            Some(code) => RawStatus::Code(code),
                            None => {
                                return Err(wrong(
                                    &format!("{k}[{i}]"),
                                    item,
                                    "a status code or \"4xx\"/\"5xx\"",
                                ))
                            }
                        },
                    });
                }
                raw.failure_statuses = Some(list);
            }
            "grpc_failure_codes" => {
                let mut codes = Vec::new();
                for (i, item) in array(k, v)?.iter().enumerate() {
                    let field = format!("{k}[{i}]");
                    let code = unsigned(&field, item)?;
                    codes.push(u32::try_from(code).map_err(|_| {
                        err(&field, format!("must be a gRPC code 0-16, not {code}"))
                    })?);
                }
                raw.grpc_failure_codes = Some(codes);
            }
            "include_detail" => raw.include_detail = Some(boolean(k, v)?),
            "proxy_status" => raw.proxy_status = Some(boolean(k, v)?),
            "large_payload_bytes" => raw.large_payload_bytes = Some(unsigned(k, v)?),
            "retry_budget" => raw.retry_budget = Some(retry_budget(v)?),
            "direction" => raw.direction = Some(string(k, v)?),
            _ => {
                return Err(err(
                    k,
                    format!("unknown field `{k}`, expected one of {KEY_NAMES}"),
                ))
            }
        }
    }
    Ok(raw)
}

/// Parses and validates a plugin configuration. Empty (or whitespace) means all defaults.
/// serde_json reads the document; the keys are walked here so that every error names its key
/// (and the module stays small: no derive or path-tracking code).
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Config::default());
    }
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| {
        let msg = e.to_string();
        let at = substr::find(&msg, " at line ").unwrap_or(msg.len());
        err("(document)", msg.get(..at).unwrap_or(&msg))
    })?;
    Config::try_from(raw(&doc)?)
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let mut c = Config::default();
        if let Some(h) = raw.header {
            c.header = match h.as_str() {
                "" => None,
                name if valid_header_name(name) => Some(name.to_string()),
                _ => return Err(err(
                    "header",
                    "must be a lowercase HTTP header name (token characters, at most 64) or \"\"",
                )),
            };
        }
        if let Some(hop) = raw.hop {
            if hop.is_empty()
                || hop.len() > 253
                || !hop
                    .bytes()
                    .all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\')
            {
                return Err(err("hop", "must be 1 to 253 printable ASCII characters without spaces, quotes or backslashes"));
            }
            c.hop = Some(hop);
        }
        if let Some(t) = raw.trust_upstream {
            c.trust_upstream = match t {
                RawTrust::Bool(true) => Trust::Always,
                RawTrust::Bool(false) => Trust::Never,
                RawTrust::Text(s) if s == "auto" => Trust::Auto,
                RawTrust::Text(s) => {
                    return Err(err(
                        "trust_upstream",
                        format!("must be \"auto\", true or false, not {s:?}"),
                    ))
                }
            };
        }
        if let Some(list) = raw.failure_statuses {
            let mut set = StatusSet([0; 10]);
            for (i, s) in list.iter().enumerate() {
                match s {
                    RawStatus::Code(code @ 100..=599) => set.insert(*code),
                    RawStatus::Class(k) if matches!(k.as_str(), "4xx" | "5xx") => {
                        let base = if k == "4xx" { 400 } else { 500 };
                        (base..base + 100).for_each(|code| set.insert(code));
                    }
                    other => {
                        let got = match other {
                            RawStatus::Code(c) => c.to_string(),
                            RawStatus::Class(k) => format!("{k:?}"),
                        };
                        return Err(err(
                            &format!("failure_statuses[{i}]"),
                            format!("must be a status code 100-599, \"4xx\" or \"5xx\", not {got}"),
                        ));
                    }
                }
            }
            c.failure_statuses = set;
        }
        if let Some(codes) = raw.grpc_failure_codes {
            let mut mask = 0u32;
            for (i, code) in codes.iter().enumerate() {
                if *code > 16 {
                    return Err(err(
                        &format!("grpc_failure_codes[{i}]"),
                        format!("must be a gRPC code 0-16, not {code}"),
                    ));
                }
                mask |= 1 << code;
            }
            c.grpc_failure_codes = mask;
        }
        if let Some(b) = raw.large_payload_bytes {
            if b == 0 {
                return Err(err("large_payload_bytes", "must be at least 1"));
            }
            c.large_payload_bytes = b;
        }
        if let Some(rb) = raw.retry_budget {
            if !(rb.ratio.is_finite() && rb.ratio > 0.0 && rb.ratio <= 100.0) {
                return Err(err(
                    "retry_budget.ratio",
                    "must be a number above 0 and at most 100",
                ));
            }
            if !(1..=3600).contains(&rb.window_seconds) {
                return Err(err("retry_budget.window_seconds", "must be 1 to 3600"));
            }
            c.retry_budget = rb;
        }
        if let Some(d) = raw.direction {
            c.direction = match d.as_str() {
                "auto" => None,
                "inbound" => Some(Direction::Inbound),
                "outbound" => Some(Direction::Outbound),
                _ => {
                    return Err(err(
                        "direction",
                        format!("must be \"auto\", \"inbound\" or \"outbound\", not {d:?}"),
                    ))
                }
            };
        }
        c.expose_header = raw.expose_header.unwrap_or(c.expose_header);
        c.include_detail = raw.include_detail.unwrap_or(c.include_detail);
        c.proxy_status = raw.proxy_status.unwrap_or(c.proxy_status);
        Ok(c)
    }
}

fn valid_header_name(name: &str) -> bool {
    name.len() <= 64
        && !name.starts_with(':')
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

/// Every configuration key with its default and meaning (docs/config.md comes from this).
pub const KEYS: [(&str, &str, &str); 11] = [
    ("header", "\"x-meshtriage\"", "verdict header name; `\"\"` disables the header"),
    ("expose_header", "true", "`false`: strip all entries before responding downstream (edge gateways)"),
    ("hop", "from node metadata", "identity written in `hop` (else node metadata `NAME.NAMESPACE`, else node id)"),
    ("trust_upstream", "\"auto\"", "`\"auto\"` (keep upstream entries on outbound listeners only), `true`, `false`"),
    ("failure_statuses", "[\"5xx\"]", "upstream statuses that count as failing: codes or `\"4xx\"`/`\"5xx\"`"),
    ("grpc_failure_codes", "[2, 4, 8, 12, 13, 14, 15]", "gRPC codes that count as failing"),
    ("include_detail", "true", "write `detail` (response code details) into the header"),
    ("proxy_status", "false", "also append an RFC 9209 `Proxy-Status` entry with the precise error type"),
    ("large_payload_bytes", "1048576", "request or response body size from which a failing request gets the `large_payload` hint (and a request counts as large for the payload-size signal)"),
    ("retry_budget", "{\"ratio\": 0.1, \"window_seconds\": 10, \"min_requests\": 20}", "per cluster: retries allowed per request over a sliding window (retry budget = baseline requests per second × `ratio`), and the request volume in the window below which no verdict is made; see docs/decision-tree.md"),
    ("direction", "\"auto\"", "`\"inbound\"` or `\"outbound\"`: the listeners this plugin runs on, stated by the operator (the Istio manifests deploy one plugin per direction); `\"auto\"` reads `xds.listener_direction` on every request, which costs one host call each"),
];

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn field(json: &str) -> String {
        parse(json.as_bytes()).unwrap_err().field
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
}
