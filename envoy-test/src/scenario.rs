//! A scenario as users see it: a request, then what the client, the metrics and the access log
//! must say. `check` returns every mismatch at once, with Envoy's diagnostics.

use crate::bed::Bed;
use crate::client::Response;
use crate::verdict::{self, View};
use meshtriage_core::metrics::FAILURES;

#[derive(Clone, Copy, Debug)]
pub struct Expect {
    /// Status the client sees (`None`: no response, e.g. a reset).
    pub status: Option<u16>,
    pub layer: &'static str,
    pub class: &'static str,
    pub origin: &'static str,
    pub side: &'static str,
    pub hints: &'static [&'static str],
    /// The verdict is known at header time (else: metrics and access log only).
    pub in_header: bool,
}

impl Expect {
    pub const fn new(
        status: u16,
        layer: &'static str,
        class: &'static str,
        origin: &'static str,
        side: &'static str,
    ) -> Self {
        Expect {
            status: Some(status),
            layer,
            class,
            origin,
            side,
            hints: &[],
            in_header: true,
        }
    }

    pub const fn hints(mut self, hints: &'static [&'static str]) -> Self {
        self.hints = hints;
        self
    }

    pub const fn late(mut self) -> Self {
        self.in_header = false;
        self
    }

    /// The client gets no response at all (it went away, or the stream was reset).
    pub const fn no_response(mut self) -> Self {
        self.status = None;
        self.in_header = false;
        self
    }
}

fn matches(v: &View, e: &Expect, dir: &str) -> Vec<String> {
    let mut bad = Vec::new();
    for (what, got, want) in [
        ("layer", v.layer.as_str(), e.layer),
        ("class", v.class(), e.class),
        ("origin", v.get("origin").unwrap_or(""), e.origin),
        ("side", v.get("side").unwrap_or(""), e.side),
        ("dir", v.get("dir").unwrap_or(""), dir),
    ] {
        if got != want {
            bad.push(format!("{what}: got {got:?}, want {want:?}"));
        }
    }
    // A hint written `name?` may be present or not (`reused_connection` rests on a timing).
    let optional = |g: &str| e.hints.iter().any(|h| h.strip_suffix('?') == Some(g));
    let mut got_hints: Vec<&str> = v.hints().into_iter().filter(|g| !optional(g)).collect();
    got_hints.sort_unstable();
    let mut want_hints: Vec<&str> = e
        .hints
        .iter()
        .copied()
        .filter(|h| !h.ends_with('?'))
        .collect();
    want_hints.sort_unstable();
    if got_hints != want_hints {
        bad.push(format!("hints: got {got_hints:?}, want {want_hints:?}"));
    }
    bad
}

/// What one scenario run observed, and every mismatch with its expectation.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The response the client got (`None`: none, e.g. the client went away first).
    pub response: Option<Response>,
    /// The scenario's access-log line.
    pub access_log: Option<String>,
    pub problems: Vec<String>,
}

impl Observed {
    /// Envoy's own `Proxy-Status` for the request, as the access log recorded it.
    pub fn envoy_proxy_status(&self) -> Option<&str> {
        let line = self.access_log.as_deref()?;
        let ps = line.split(" ps=").nth(1)?.split(" verdict=").next()?;
        (ps != "-").then_some(ps)
    }
}

/// Runs `send` (the request of a scenario on a listener of `bed` whose direction is `dir`)
/// and compares the client's view, the access-log line containing `needle` and the failure
/// counter with `e`. Never panics on a mismatch: the problems are returned.
pub fn verify(
    bed: &Bed,
    dir: &str,
    needle: &str,
    send: impl FnOnce() -> Option<Response>,
    e: &Expect,
) -> Observed {
    let labels = [
        ("dir", dir),
        ("layer", e.layer),
        ("class", e.class),
        ("origin", e.origin),
        ("side", e.side),
    ];
    let before = bed.envoy.metric(FAILURES, &labels);
    let resp = send();
    let mut bad = Vec::new();
    let status = resp.as_ref().map(|r| r.status);
    if status != e.status {
        bad.push(format!("status: got {status:?}, want {:?}", e.status));
    }
    let header = resp.as_ref().and_then(|r| r.header("x-meshtriage"));
    match (header, e.in_header) {
        (Some(h), true) => {
            let views = verdict::parse(h);
            match views.as_slice() {
                [v] => bad.extend(
                    matches(v, e, dir)
                        .into_iter()
                        .map(|m| format!("header {m}")),
                ),
                _ => bad.push(format!("header: want one member, got {h}")),
            }
        }
        (None, true) => bad.push("header: missing".into()),
        (Some(h), false) => bad.push(format!("header: want none, got {h}")),
        (None, false) => {}
    }
    let line = bed.envoy.wait_access_log(needle);
    match &line {
        Some(line) => match verdict::from_access_log(line) {
            Some(v) => bad.extend(
                matches(&v, e, dir)
                    .into_iter()
                    .map(|m| format!("access log {m}")),
            ),
            None => bad.push(format!("access log: no verdict in {line}")),
        },
        None => bad.push(format!("access log: no line with {needle:?}")),
    }
    let after = bed.envoy.wait_metric(FAILURES, &labels, before + 1.0);
    if after != before + 1.0 {
        bad.push(format!(
            "metric {FAILURES}{labels:?}: {before} -> {after}, want +1"
        ));
    }
    Observed {
        response: resp,
        access_log: line,
        problems: bad,
    }
}

/// Sends GET `path` to `port` (a listener of `bed` whose direction is `dir`) and checks the
/// header, the access-log line and the failure counter. Returns the response.
pub fn check(bed: &Bed, port: u16, dir: &str, path: &str, e: &Expect) -> Response {
    let o = verify(
        bed,
        dir,
        &format!("scn={path} "),
        || Some(bed.get_on(port, path)),
        e,
    );
    assert!(
        o.problems.is_empty(),
        "{path}:\n  {}\n{}",
        o.problems.join("\n  "),
        bed.envoy.diagnostics()
    );
    o.response.unwrap_or_default()
}
