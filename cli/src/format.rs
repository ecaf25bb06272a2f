//! Envoy access-log formats: a format string compiled into literals and fields, and a line
//! read back against it (literal by literal, so a line is only as expensive as the fields a
//! verdict needs); Istio's JSON encoding; and the built-in formats people actually have.

use memchr::memmem;
use std::borrow::Cow;

/// The command operators a verdict (or the summary) reads; every other one is skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    StartTime,
    Status,
    Flags,
    Details,
    TransportFailure,
    GrpcStatus,
    Attempts,
    Authority,
    Cluster,
    UpstreamHost,
    Method,
    Path,
    /// `%FILTER_STATE(wasm.meshtriage...)%`: the plugin's verdict.
    Verdict,
    Other,
}

pub const FIELDS: usize = Field::Other as usize + 1;

impl Field {
    /// The field of an operator (`RESPONSE_CODE`, `REQ(:AUTHORITY)`, ...), case as Envoy spells it.
    pub fn of_operator(op: &str) -> Field {
        let upper = op.to_ascii_uppercase();
        let name = upper.split(':').next().unwrap_or("");
        match name {
            _ if upper.starts_with("START_TIME") => Field::StartTime,
            "RESPONSE_CODE" => Field::Status,
            "RESPONSE_FLAGS" | "RESPONSE_FLAGS_LONG" => Field::Flags,
            "RESPONSE_CODE_DETAILS" => Field::Details,
            "UPSTREAM_TRANSPORT_FAILURE_REASON" => Field::TransportFailure,
            "GRPC_STATUS_NUMBER" | "GRPC_STATUS" => Field::GrpcStatus,
            "UPSTREAM_REQUEST_ATTEMPT_COUNT" => Field::Attempts,
            "UPSTREAM_CLUSTER" | "UPSTREAM_CLUSTER_RAW" => Field::Cluster,
            "UPSTREAM_HOST" => Field::UpstreamHost,
            _ if upper.starts_with("REQ(:AUTHORITY)") || upper.starts_with("REQ(HOST)") => {
                Field::Authority
            }
            _ if upper.starts_with("REQ(:METHOD)") => Field::Method,
            _ if upper.starts_with("REQ(X-ENVOY-ORIGINAL-PATH?:PATH)")
                || upper.starts_with("REQ(:PATH)") =>
            {
                Field::Path
            }
            _ if upper.starts_with("FILTER_STATE(WASM.MESHTRIAGE") => Field::Verdict,
            _ => Field::Other,
        }
    }

    /// Fields that decide whether a request failed.
    fn decisive(self) -> bool {
        matches!(
            self,
            Field::Status | Field::Flags | Field::Details | Field::GrpcStatus
        )
    }
}

#[derive(Clone, Debug)]
enum Piece {
    Lit(Vec<u8>),
    Field(Field),
}

/// A compiled text format.
#[derive(Clone, Debug)]
pub struct TextFormat {
    pub name: &'static str,
    /// One of [`builtin`]: its last field is a single word.
    builtin: bool,
    pieces: Vec<Piece>,
    /// Pieces up to here decide whether the line failed.
    decisive_end: usize,
    has: [bool; FIELDS],
    /// Literal finders, one per piece (for the literal after a field).
    finders: Vec<Option<memmem::Finder<'static>>>,
}

/// Istio's default text format (`EnvoyTextLogFormat`, Istio 1.9 and later; from the releases
/// that print `%UPSTREAM_CLUSTER_RAW%`, earlier ones `%UPSTREAM_CLUSTER%` at the same place).
pub const ISTIO: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// Envoy's default format (when an access log sets none).
pub const ENVOY_DEFAULT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// The plugin's verdict operator, as appended to a format.
pub const VERDICT_OPERATOR: &str = "%FILTER_STATE(wasm.meshtriage:PLAIN)%";

/// The built-in text formats, tried in this order.
pub fn builtin() -> Vec<TextFormat> {
    let istio_verdict = format!("{} {VERDICT_OPERATOR}\n", ISTIO.trim_end());
    [
        ("istio+verdict", istio_verdict.as_str()),
        ("istio", ISTIO),
        ("envoy", ENVOY_DEFAULT),
    ]
    .into_iter()
    .filter_map(|(name, f)| TextFormat::compile(name, f).ok())
    .map(|f| TextFormat { builtin: true, ..f })
    .collect()
}

/// What one line says, field by field (`-` and empty values are absent).
#[derive(Clone, Debug, Default)]
pub struct Values<'a> {
    pub v: [Option<Cow<'a, [u8]>>; FIELDS],
    /// The format has a details field (else `via_upstream` may be inferred).
    pub has_details: bool,
}

impl<'a> Values<'a> {
    pub fn get(&self, f: Field) -> Option<&[u8]> {
        self.v.get(f as usize).and_then(|x| x.as_deref())
    }

    pub fn text(&self, f: Field) -> Option<&str> {
        self.get(f).and_then(|b| std::str::from_utf8(b).ok())
    }

    fn set(&mut self, f: Field, value: Cow<'a, [u8]>) {
        if f == Field::Other || value.is_empty() || &*value == b"-" {
            return;
        }
        if let Some(slot) = self.v.get_mut(f as usize) {
            *slot = Some(value);
        }
    }
}

/// Where a text line stopped matching its format.
#[derive(Debug)]
pub struct Mismatch;

impl TextFormat {
    /// Compiles an Envoy format string (`%OPERATOR%`, `%OPERATOR(arg)%`, `%OPERATOR(arg):N%`).
    pub fn compile(name: &'static str, format: &str) -> Result<TextFormat, String> {
        let text = format.strip_suffix('\n').unwrap_or(format);
        let bytes = text.as_bytes();
        let mut pieces = Vec::new();
        let mut lit = Vec::new();
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if b != b'%' {
                lit.push(b);
                i += 1;
                continue;
            }
            // An operator: NAME, optional (arg) that may hold '%', optional :N, then '%'.
            let mut j = i + 1;
            while bytes
                .get(j)
                .is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
            {
                j += 1;
            }
            if j == i + 1 {
                return Err(format!("a '%' at byte {i} starts no operator"));
            }
            if bytes.get(j) == Some(&b'(') {
                while bytes.get(j).is_some_and(|c| *c != b')') {
                    j += 1;
                }
                j += 1;
            }
            if bytes.get(j) == Some(&b':') {
                j += 1;
                while bytes.get(j).is_some_and(u8::is_ascii_digit) {
                    j += 1;
                }
            }
            if bytes.get(j) != Some(&b'%') {
                return Err(format!("operator at byte {i} is not closed by '%'"));
            }
            let op = text.get(i + 1..j).unwrap_or("");
            if !lit.is_empty() {
                pieces.push(Piece::Lit(std::mem::take(&mut lit)));
            }
            pieces.push(Piece::Field(Field::of_operator(op)));
            i = j + 1;
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        let mut has = [false; FIELDS];
        let mut decisive_end = 0;
        for (n, p) in pieces.iter().enumerate() {
            if let Piece::Field(f) = p {
                if let Some(h) = has.get_mut(*f as usize) {
                    *h = true;
                }
                if f.decisive() {
                    decisive_end = n + 1;
                }
            }
        }
        let has_field = |f: Field| has.get(f as usize).copied().unwrap_or(false);
        if !has_field(Field::Status) && !has_field(Field::Verdict) {
            return Err("the format has neither %RESPONSE_CODE% nor the plugin's verdict".into());
        }
        let finders = pieces
            .iter()
            .map(|p| match p {
                Piece::Lit(l) => Some(memmem::Finder::new(l).into_owned()),
                Piece::Field(_) => None,
            })
            .collect();
        Ok(TextFormat {
            name,
            builtin: false,
            pieces,
            decisive_end,
            has,
            finders,
        })
    }

    pub fn has(&self, f: Field) -> bool {
        self.has.get(f as usize).copied().unwrap_or(false)
    }

    /// Only the verdict field can say a line failed when its other fields say it did not.
    fn verdict_may_be_set(&self, line: &[u8]) -> bool {
        self.has(Field::Verdict) && !line.ends_with(b" -") && !line.ends_with(b"=-")
    }

    /// Reads pieces `from..to` of the line, starting at byte `*pos`.
    fn read<'a>(
        &self,
        line: &'a [u8],
        pos: &mut usize,
        range: std::ops::Range<usize>,
        out: &mut Values<'a>,
    ) -> Result<(), Mismatch> {
        for n in range {
            let rest = line.get(*pos..).ok_or(Mismatch)?;
            match self.pieces.get(n) {
                Some(Piece::Lit(l)) => {
                    if !rest.starts_with(l) {
                        return Err(Mismatch);
                    }
                    *pos += l.len();
                }
                Some(Piece::Field(f)) => {
                    let len = match self.finders.get(n + 1) {
                        Some(Some(finder)) => finder.find(rest).ok_or(Mismatch)?,
                        Some(None) => memchr::memchr(b' ', rest).unwrap_or(rest.len()),
                        // The last field runs to the end of the line; in the built-in formats it
                        // is a word (Istio's route name), unless it is the plugin's verdict: a
                        // space there means a verdict follows, i.e. another format.
                        None if self.builtin && *f != Field::Verdict && rest.contains(&b' ') => {
                            return Err(Mismatch)
                        }
                        None => rest.len(),
                    };
                    out.set(*f, Cow::Borrowed(rest.get(..len).ok_or(Mismatch)?));
                    *pos += len;
                }
                None => return Err(Mismatch),
            }
        }
        Ok(())
    }

    /// Reads a line (without its newline). `ok` says, from the decisive fields alone, whether
    /// the request plainly succeeded: then the rest of the line is not read.
    pub fn parse<'a>(
        &self,
        line: &'a [u8],
        ok: &mut dyn FnMut(&Values<'_>) -> bool,
    ) -> Result<(Values<'a>, bool), Mismatch> {
        let mut values = Values {
            has_details: self.has(Field::Details),
            ..Values::default()
        };
        let mut pos = 0;
        self.read(line, &mut pos, 0..self.decisive_end, &mut values)?;
        if !self.verdict_may_be_set(line) && ok(&values) {
            return Ok((values, true));
        }
        self.read(
            line,
            &mut pos,
            self.decisive_end..self.pieces.len(),
            &mut values,
        )?;
        if pos != line.len() {
            return Err(Mismatch);
        }
        Ok((values, false))
    }
}

/// Istio's JSON encoding (its keys; numbers or strings), plus the verdict under `meshtriage`.
pub fn parse_json(line: &[u8]) -> Option<Values<'static>> {
    let serde_json::Value::Object(map) = serde_json::from_slice(line).ok()? else {
        return None;
    };
    let mut values = Values {
        has_details: map.contains_key("response_code_details"),
        ..Values::default()
    };
    const KEYS: [(&str, Field); 12] = [
        ("start_time", Field::StartTime),
        ("response_code", Field::Status),
        ("response_flags", Field::Flags),
        ("response_code_details", Field::Details),
        ("upstream_transport_failure_reason", Field::TransportFailure),
        ("grpc_status", Field::GrpcStatus),
        ("upstream_request_attempt_count", Field::Attempts),
        ("authority", Field::Authority),
        ("upstream_cluster", Field::Cluster),
        ("upstream_host", Field::UpstreamHost),
        ("path", Field::Path),
        ("meshtriage", Field::Verdict),
    ];
    if !map.contains_key("response_code") && !map.contains_key("meshtriage") {
        return None;
    }
    for (key, field) in KEYS {
        let text = match map.get(key) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => continue,
        };
        values.set(field, Cow::Owned(text.into_bytes()));
    }
    if let Some(serde_json::Value::String(m)) = map.get("method") {
        values.set(Field::Method, Cow::Owned(m.clone().into_bytes()));
    }
    Some(values)
}

/// A verdict member anywhere in a line of another format (`l4;class=...` to the end).
pub fn find_verdict(line: &[u8]) -> Option<Values<'_>> {
    let start = [&b"l4;class="[..], b"l7;class=", b"unknown;class="]
        .iter()
        .filter_map(|n| memmem::find(line, n))
        .min()?;
    let mut values = Values::default();
    values.set(Field::Verdict, Cow::Borrowed(line.get(start..)?));
    Some(values)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LINE: &[u8] = br#"[2026-12-07T15:50:01.123Z] "GET /uf HTTP/1.1" 503 UF upstream_reset_before_response_started{remote_connection_failure} - "delayed connect error: Connection refused" 0 145 0 - "-" "curl/8" "5c3a" "shop.local" "127.0.0.1:1" c_refused - 127.0.0.1:10000 127.0.0.1:5555 - -"#;

    #[test]
    fn reads_istio_text() {
        let formats = builtin();
        let istio = formats.iter().find(|f| f.name == "istio").unwrap();
        let (v, plainly_ok) = istio.parse(LINE, &mut |_| false).unwrap();
        assert!(!plainly_ok);
        assert_eq!(v.text(Field::Status), Some("503"));
        assert_eq!(v.text(Field::Flags), Some("UF"));
        assert_eq!(
            v.text(Field::TransportFailure),
            Some("delayed connect error: Connection refused")
        );
        assert_eq!(v.text(Field::Authority), Some("shop.local"));
        assert_eq!(v.text(Field::Cluster), Some("c_refused"));
        assert!(istio.parse(b"garbage", &mut |_| false).is_err());
        let envoy = formats.iter().find(|f| f.name == "envoy").unwrap();
        assert!(envoy.parse(LINE, &mut |_| false).is_err());
        // A line with the verdict appended is not a plain Istio line (the route name is a word).
        let mut with_verdict = LINE.to_vec();
        with_verdict.extend_from_slice(
            b" l4;class=connect_refused;origin=proxy;side=upstream;hints=\"a b\"",
        );
        assert!(istio.parse(&with_verdict, &mut |_| false).is_err());
        let both = formats.iter().find(|f| f.name == "istio+verdict").unwrap();
        let (v, _) = both.parse(&with_verdict, &mut |_| false).unwrap();
        assert!(v.text(Field::Verdict).unwrap().ends_with("hints=\"a b\""));
    }

    #[test]
    fn operators_with_arguments() {
        let f = TextFormat::compile(
            "x",
            "%START_TIME(%Y-%m-%dT%H:%M:%S)% %RESPONSE_CODE% %REQ(:AUTHORITY):20%\n",
        )
        .unwrap();
        let (v, _) = f
            .parse(b"2026-01-01T00:00:00 503 a.b", &mut |_| false)
            .unwrap();
        assert_eq!(v.text(Field::Authority), Some("a.b"));
        assert!(TextFormat::compile("x", "%BYTES_SENT%").is_err());
    }
}
