//! A Zipkin collector for tests: accepts what Envoy's Zipkin tracer reports (`POST
//! /api/v2/spans`, Zipkin API v2 JSON, `collector_endpoint_version: HTTP_JSON`) on 127.0.0.1 and
//! keeps the spans. Each span is checked against the Zipkin v2 model (openzipkin/zipkin-api,
//! `zipkin2-api.yaml`: hex ids, microsecond times, string tags) as it arrives, so a report
//! that a real Zipkin or Jaeger collector would reject fails the test instead of being read.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The path Envoy posts to (the tracer's `collector_endpoint`).
pub const ENDPOINT: &str = "/api/v2/spans";

/// One reported span, as the Zipkin v2 model names its fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub trace_id: String,
    pub id: String,
    pub parent_id: Option<String>,
    pub name: String,
    /// `CLIENT`, `SERVER`, `PRODUCER`, `CONSUMER`, or empty.
    pub kind: String,
    pub timestamp_us: u64,
    pub duration_us: u64,
    pub local_service: String,
    pub tags: BTreeMap<String, String>,
}

impl Span {
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct Store {
    spans: Vec<Span>,
    /// Reports that broke the protocol (bad JSON, a span outside the v2 model, wrong path).
    errors: Vec<String>,
    posts: usize,
}

/// The collector; its thread stops when this is dropped.
pub struct Collector {
    pub port: u16,
    store: Arc<Mutex<Store>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Starts a collector on an ephemeral loopback port.
pub fn start() -> Collector {
    let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind the Zipkin collector");
    let port = listener.local_addr().unwrap().port();
    let store = Arc::new(Mutex::new(Store::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (s, f) = (store.clone(), stop.clone());
    thread::spawn(move || {
        for conn in listener.incoming() {
            if f.load(Ordering::SeqCst) {
                break;
            }
            if let Ok(c) = conn {
                let s = s.clone();
                thread::spawn(move || serve(c, &s));
            }
        }
    });
    Collector { port, store, stop }
}

impl Collector {
    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.store.lock().unwrap().spans.clone()
    }

    /// Protocol errors seen so far (empty when every report was valid Zipkin v2).
    pub fn errors(&self) -> Vec<String> {
        self.store.lock().unwrap().errors.clone()
    }

    pub fn posts(&self) -> usize {
        self.store.lock().unwrap().posts
    }

    /// Waits (bounded) for a span `pick` accepts; `None` after `within`.
    pub fn wait_for(&self, within: Duration, pick: impl Fn(&Span) -> bool) -> Option<Span> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.spans().into_iter().find(&pick) {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One keep-alive HTTP/1.1 connection from Envoy's async client.
fn serve(conn: TcpStream, store: &Mutex<Store>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut out = match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    };
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let mut length = 0usize;
        let mut chunked = false;
        let mut content_type = String::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                let v = v.trim();
                match n.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = v.parse().unwrap_or(0),
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "content-type" => content_type = v.to_ascii_lowercase(),
                    _ => {}
                }
            }
        }
        let body = if chunked {
            crate::upstream::read_chunked(&mut r)
        } else {
            let mut b = vec![0; length];
            r.read_exact(&mut b).ok().map(|_| b)
        };
        let Some(body) = body else { return };
        let status = {
            let mut st = store.lock().unwrap();
            st.posts += 1;
            if method != "POST" || path != ENDPOINT {
                st.errors
                    .push(format!("{method} {path}: not the v2 span endpoint"));
                "404 Not Found"
            } else if !content_type.starts_with("application/json") {
                st.errors.push(format!("content-type {content_type:?}"));
                "415 Unsupported Media Type"
            } else {
                match parse_report(&body) {
                    Ok(spans) => {
                        st.spans.extend(spans);
                        "202 Accepted"
                    }
                    Err(e) => {
                        st.errors.push(e);
                        "400 Bad Request"
                    }
                }
            }
        };
        let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn is_hex(s: &str, lens: &[usize]) -> bool {
    lens.contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A v2 report: a JSON array of spans.
pub fn parse_report(body: &[u8]) -> Result<Vec<Span>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let list = doc
        .as_array()
        .ok_or("a v2 report is a JSON array of spans")?;
    list.iter().map(parse_span).collect()
}

/// One span of the v2 model; the fields the model marks required, and the types of the rest.
pub fn parse_span(v: &Value) -> Result<Span, String> {
    let obj = v.as_object().ok_or("a span is a JSON object")?;
    let text = |k: &str| obj.get(k).and_then(Value::as_str);
    let trace_id = text("traceId").ok_or("span without traceId")?;
    if !is_hex(trace_id, &[16, 32]) {
        return Err(format!(
            "traceId {trace_id:?} is not 16 or 32 lower-hex characters"
        ));
    }
    let id = text("id").ok_or("span without id")?;
    if !is_hex(id, &[16]) {
        return Err(format!("id {id:?} is not 16 lower-hex characters"));
    }
    let parent_id = match obj.get("parentId") {
        None => None,
        Some(p) => match p.as_str() {
            Some(p) if is_hex(p, &[16]) => Some(p.to_string()),
            _ => return Err(format!("parentId {p} is not 16 lower-hex characters")),
        },
    };
    let kind = text("kind").unwrap_or("").to_string();
    if !["", "CLIENT", "SERVER", "PRODUCER", "CONSUMER"].contains(&kind.as_str()) {
        return Err(format!("kind {kind:?} is not a v2 span kind"));
    }
    let micros = |k: &str| match obj.get(k) {
        None => Ok(0),
        Some(n) => n
            .as_u64()
            .ok_or(format!("{k} {n} is not an integer of microseconds")),
    };
    let mut tags = BTreeMap::new();
    if let Some(t) = obj.get("tags") {
        for (k, val) in t.as_object().ok_or("tags is not an object")? {
            let s = val
                .as_str()
                .ok_or(format!("tag {k} is not a string: {val}"))?;
            tags.insert(k.clone(), s.to_string());
        }
    }
    let local_service = obj
        .get("localEndpoint")
        .and_then(|e| e.get("serviceName"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok(Span {
        trace_id: trace_id.to_string(),
        id: id.to_string(),
        parent_id,
        name: text("name").unwrap_or("").to_string(),
        kind,
        timestamp_us: micros("timestamp")?,
        duration_us: micros("duration")?,
        local_service,
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v2_span_parses_and_a_bad_one_is_refused() {
        let ok =
            br#"[{"traceId":"0123456789abcdef","id":"0123456789abcdef","kind":"SERVER","name":"x",
            "timestamp":1,"duration":2,"localEndpoint":{"serviceName":"bed"},"tags":{"a":"b"}}]"#;
        let spans = parse_report(ok).unwrap();
        assert_eq!(spans[0].tag("a"), Some("b"));
        assert_eq!(spans[0].local_service, "bed");
        for bad in [
            &br#"{"traceId":"0123456789abcdef","id":"0123456789abcdef"}"#[..],
            br#"[{"traceId":"XYZ","id":"0123456789abcdef"}]"#,
            br#"[{"traceId":"0123456789abcdef","id":"0123456789abcdef","tags":{"n":1}}]"#,
            br#"[{"traceId":"0123456789abcdef","id":"0123456789abcdef","kind":"server"}]"#,
        ] {
            assert!(
                parse_report(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
