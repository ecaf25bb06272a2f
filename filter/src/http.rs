//! The HTTP filter: one pass over the response headers decides whether the response may be
//! failing; only then are Envoy's properties read, the verdict classified and written. `on_log`
//! catches failures that appear after the headers and feeds metrics and filter state.
//! Rules from envoy-signals §1–2: never read request headers after the request phase, never
//! write headers in `on_log`.

use crate::host::{self, Map};
use crate::metrics;
use crate::root::Settings;
use crate::window;
use meshtriage_core::flags::{Flag, ResponseFlags};
use meshtriage_core::hop_by_hop::HopByHop;
use meshtriage_core::metrics as names;
use meshtriage_core::response::{parse_grpc_status, trusts_upstream, ResponseScan};
use meshtriage_core::sfv;
use meshtriage_core::upstream::{
    bound_entries, local_reply_class, parse_proxy_status, UpstreamEvidence, MAX_LOCAL_REPLY_BODY,
};
use meshtriage_core::window::Counts;
use meshtriage_core::wire::HeaderPairs;
use meshtriage_core::{classify, is_failing, Direction, Outcome, Phase, Signals, Verdict};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

/// Filter-state key: `%FILTER_STATE(wasm.meshtriage:PLAIN)%` in access logs.
const FILTER_STATE: &str = "meshtriage";

pub struct HttpFilter {
    settings: Rc<Settings>,
    dir: Option<Direction>,
    /// The response-headers callback ran (this filter sits where it sees the response).
    saw_headers: bool,
    /// Status the upstream's headers carried when they went downstream.
    header_status: Option<u16>,
    chunked: bool,
    content_length: Option<u64>,
    hop_by_hop: HopByHop,
    grpc_trailer: Option<u32>,
    verdict: Option<Verdict>,
    /// Request body bytes that passed this filter (summed in the body callback: no host call).
    request_bytes: u64,
    /// The response reached its end of stream (headers, last body chunk or trailers).
    response_complete: bool,
    /// `upstream.request_attempt_count`, once read.
    attempts: Option<u64>,
    /// The verdict's header text, reused for the filter state.
    encoded: Option<String>,
    /// The filter state holds the current verdict (see `publish`).
    published: bool,
    /// `xds.cluster_name`, read at most once (`Some(None)`: no cluster, e.g. no route).
    cluster: Option<Option<String>>,
    /// A failing response whose small body may be another Envoy's local reply: read as it
    /// passes, it refines the verdict at the end of the stream.
    probe: Option<Box<BodyProbe>>,
}

/// The body of a response that may be another Envoy's local reply, and the header-phase
/// signals to classify it again with.
struct BodyProbe {
    signals: Signals,
    body: Vec<u8>,
}

impl HttpFilter {
    pub fn new(settings: Rc<Settings>) -> Self {
        HttpFilter {
            settings,
            dir: None,
            saw_headers: false,
            header_status: None,
            chunked: false,
            content_length: None,
            hop_by_hop: HopByHop::default(),
            grpc_trailer: None,
            verdict: None,
            probe: None,
            request_bytes: 0,
            response_complete: false,
            attempts: None,
            encoded: None,
            published: false,
            cluster: None,
        }
    }

    /// The listener direction (`Settings::direction`), worked out at most once per request.
    fn direction(&mut self) -> Direction {
        let settings = &self.settings;
        *self.dir.get_or_insert_with(|| settings.direction())
    }

    fn cluster(&mut self) -> Option<&str> {
        self.cluster
            .get_or_insert_with(|| host::property_string(b"xds\0cluster_name"))
            .as_deref()
    }

    /// The request's cluster was over its retry budget at this worker's last window flush.
    /// The cluster name is read only when some cluster of this direction is over budget.
    fn retry_budget_exceeded(&mut self, dir: Direction) -> bool {
        let settings = self.settings.clone();
        window::any_over_budget(&settings, dir)
            && self
                .cluster()
                .is_some_and(|c| window::over_budget(&settings, dir, c))
    }

    /// Reads the properties a classification needs (failure path only).
    /// Properties only some classes use are read only when the flags make them matter.
    fn signals(&mut self, phase: Phase, status: Option<u16>) -> Signals {
        let dir = self.direction();
        let in_log = phase == Phase::Log;
        let retry_budget_exceeded = self.retry_budget_exceeded(dir);
        let flags = host::property(b"response\0flags")
            .map(|b| ResponseFlags::from_property(&b))
            .unwrap_or_default();
        // On a failed connect (UF) the connect duration measures the failure (no slow_connect).
        // The transport failure reason is not read: Envoy copies it into the code details.
        let failed_connect = flags.has(Flag::UF);
        Signals {
            phase,
            status,
            flags,
            details: host::property_string(b"response\0code_details"),
            transport_failure: None,
            grpc_status: self.grpc_trailer,
            attempts: self.attempts(),
            direction: dir,
            response_started: self.saw_headers && self.header_status.is_some_and(|s| s < 400),
            chunked: self.chunked,
            declared_response_bytes: self.content_length,
            response_body_bytes: if in_log {
                host::property_u64(b"response\0size").unwrap_or(0)
            } else {
                0
            },
            request_body_bytes: self.request_bytes,
            hop_by_hop: self.hop_by_hop,
            upstream_mtls: false, // read by `classify` only for transport-layer verdicts
            connect_nanos: if failed_connect {
                None
            } else {
                host::property_u64(b"upstream\0cx_pool_ready_duration")
            },
            retry_budget_exceeded,
            upstream: UpstreamEvidence::None,
        }
    }

    /// `upstream.request_attempt_count`, read at most once per request.
    fn attempts(&mut self) -> u64 {
        *self.attempts.get_or_insert_with(|| {
            host::property_u64(b"upstream\0request_attempt_count").unwrap_or(0)
        })
    }

    fn header_name(&self) -> Option<&str> {
        self.settings.config.header.as_deref()
    }

    fn on_response_headers(&mut self, end_of_stream: bool) -> Action {
        let Some(buf) = host::header_map(Map::ResponseHeaders) else {
            metrics::internal_error("response headers unavailable");
            return Action::Continue;
        };
        let scan = ResponseScan::scan(HeaderPairs::new(&buf), self.header_name());
        self.saw_headers = true;
        self.header_status = scan.status;
        self.chunked = scan.chunked;
        self.content_length = scan.content_length;
        self.hop_by_hop = scan.hop_by_hop;
        if !scan.hop_by_hop.is_empty() {
            let dir = self.direction();
            for h in scan.hop_by_hop.iter() {
                metrics::count_hop_by_hop(dir, h);
            }
        }
        if scan.grpc_status_malformed {
            metrics::internal_error("malformed grpc-status from upstream");
        }
        let cfg = &self.settings.config;
        if !scan.may_fail(cfg) {
            // Success: never pass a verdict through.
            if !scan.verdict_lines.is_empty() {
                self.remove_verdict_header();
            }
            return Action::Continue;
        }
        self.classify_response(scan, end_of_stream)
    }

    fn classify_response(&mut self, scan: ResponseScan, end_of_stream: bool) -> Action {
        let mut s = self.signals(Phase::ResponseHeaders, scan.status);
        s.grpc_status = scan.grpc_status;
        let settings = self.settings.clone();
        let cfg = &settings.config;
        let mut kept_entries = None;
        if s.via_upstream() {
            if !scan.verdict_lines.is_empty() && trusts_upstream(cfg, s.direction) {
                let lines: Vec<&[u8]> = scan.verdict_lines.iter().map(Vec::as_slice).collect();
                match bound_entries(&lines) {
                    Ok(Some(e)) => {
                        s.upstream = UpstreamEvidence::Verdicts {
                            layer: e.layer,
                            class: e.class,
                        };
                        kept_entries = Some(e.header);
                    }
                    Ok(None) => {}
                    Err(_) => metrics::count(names::MALFORMED_UPSTREAM.to_string()),
                }
            }
            if kept_entries.is_none() {
                if let Some(ps) = scan.proxy_status.as_deref() {
                    match parse_proxy_status(ps) {
                        Some(evidence) => s.upstream = evidence,
                        None if sfv::parse_list(ps).is_err() => {
                            metrics::internal_error("malformed proxy-status from upstream")
                        }
                        None => {}
                    }
                }
            }
        }
        // No entries and no proxy-status: the body may still be another Envoy's local reply.
        // Envoy cannot hold the headers and hand the body over first (proxy-wasm turns a pause
        // into StopAllIterationAndWatermark: no body callback until the headers go on), so the
        // header keeps what the headers prove, and the body refines metrics and filter state.
        if s.via_upstream()
            && kept_entries.is_none()
            && s.upstream == UpstreamEvidence::None
            && !end_of_stream
            && scan.may_carry_local_reply()
        {
            self.probe = Some(Box::new(BodyProbe {
                signals: s.clone(),
                body: Vec::new(),
            }));
        }
        self.decide(&scan, s, kept_entries);
        Action::Continue
    }

    /// The probed body is another Envoy's local reply: the final verdict credits that proxy.
    fn refine_from_body(&mut self) {
        let Some(probe) = self.probe.take() else {
            return;
        };
        let BodyProbe { mut signals, body } = *probe;
        let Some(evidence) = local_reply_class(&body) else {
            return;
        };
        signals.upstream = evidence;
        let settings = self.settings.clone();
        if is_failing(&signals, &settings.config) {
            let outcome = classify_mtls(&mut signals, &settings.config);
            self.verdict = Some(Verdict::new(outcome, &signals, &settings.hop));
            self.encoded = None;
            self.published = false;
        }
    }

    /// The probed body is complete: refine now, while the trace span is still open.
    fn refine_before_span(&mut self) {
        self.refine_from_body();
        if !self.published {
            self.publish();
        }
    }

    /// Classifies a response that may be failing and writes the header.
    fn decide(&mut self, scan: &ResponseScan, s: Signals, kept_entries: Option<String>) {
        let settings = self.settings.clone();
        let cfg = &settings.config;
        if !is_failing(&s, cfg) {
            if !scan.verdict_lines.is_empty() {
                self.remove_verdict_header();
            }
            return;
        }
        let mut s = s;
        let verdict = Verdict::new(classify_mtls(&mut s, cfg), &s, &settings.hop);
        if let Some(name) = cfg.header.as_deref() {
            let ok = match (&kept_entries, cfg.expose_header) {
                (_, false) => {
                    scan.verdict_lines.is_empty() || host::remove_header(Map::ResponseHeaders, name)
                }
                (Some(entries), true) => host::replace_header(Map::ResponseHeaders, name, entries),
                (None, true) => {
                    let text = self.encoded.insert(verdict.encode(cfg.include_detail));
                    host::replace_header(Map::ResponseHeaders, name, text)
                }
            };
            if !ok {
                metrics::internal_error("could not write the verdict header");
            }
        }
        if cfg.proxy_status && kept_entries.is_none() {
            if let Some(ps) = verdict.proxy_status() {
                host::add_header(Map::ResponseHeaders, "proxy-status", &ps);
            }
        }
        self.verdict = Some(verdict);
        // Now, not in `on_log`: Envoy finishes the trace span before it runs the access
        // loggers, and the span's tags read this state (docs/tracing.md).
        self.publish();
    }

    /// Writes the verdict to filter state: the whole text (the header's, when it was written)
    /// and the separate fields the trace span's tags read. Failing requests only.
    fn publish(&mut self) {
        let Some(v) = &self.verdict else {
            return;
        };
        let include_detail = self.settings.config.include_detail;
        let text = self.encoded.get_or_insert_with(|| v.encode(include_detail));
        let mut ok = host::set_filter_state(FILTER_STATE, text.as_bytes());
        for (key, value) in meshtriage_core::trace::field_states(v) {
            ok &= host::set_filter_state(key, value.as_bytes());
        }
        if !ok {
            metrics::internal_error("could not set filter state");
        }
        self.published = true;
    }

    fn remove_verdict_header(&self) {
        if let Some(name) = self.header_name() {
            if !host::remove_header(Map::ResponseHeaders, name) {
                metrics::internal_error("could not remove an upstream verdict header");
            }
        }
    }

    /// End of stream: the final verdict, metrics and filter state.
    fn finish(&mut self) {
        let dir = self.direction();
        metrics::count_request(dir);
        self.refine_from_body();
        self.classify_late();
        self.account(dir);
        let Some(v) = &self.verdict else {
            return;
        };
        metrics::count_failure(dir, v.layer, v.class, v.origin, v.side);
        if self.request_bytes > 0 {
            // Like the all-requests histogram: requests with a body (see `record_request_bytes`).
            metrics::histogram(
                names::failed_request_bytes(dir, v.layer),
                self.request_bytes,
            );
        }
        // A verdict of the headers or trailers is already there; a late one is written now.
        if !self.published {
            self.publish();
        }
    }

    /// A failure the headers did not show: a failing gRPC status in the trailers, or one
    /// Envoy's flags record at the end (reset, truncation, client gone).
    fn classify_late(&mut self) {
        let cfg = &self.settings.config;
        let late_grpc = self.grpc_trailer.is_some_and(|g| cfg.grpc_failing(g));
        // A response that reached its end of stream cannot have failed after its headers (late
        // failures never get an end-of-stream callback), so a success needs no flag read.
        if self.verdict.is_none() && (!self.response_complete || late_grpc) {
            let flags = host::property(b"response\0flags")
                .map(|b| ResponseFlags::from_property(&b))
                .unwrap_or_default();
            if flags.any_failure() || late_grpc || !self.saw_headers {
                let status = host::property_i64(b"response\0code")
                    .and_then(|c| u16::try_from(c).ok())
                    .filter(|c| *c != 0);
                let mut s = self.signals(Phase::Log, status);
                let settings = self.settings.clone();
                if is_failing(&s, &settings.config) {
                    self.verdict = Some(Verdict::new(
                        classify_mtls(&mut s, &settings.config),
                        &s,
                        &settings.hop,
                    ));
                }
            }
        }
    }

    /// Every request: the request-size histogram and the window (retry budget, payload
    /// sizes). The window needs the attempt count and the cluster name (two host calls), so
    /// past a rate it takes a weighted sample (see `window::sample_weight`); large requests
    /// are always counted.
    fn account(&mut self, dir: Direction) {
        metrics::record_request_bytes(dir, self.request_bytes);
        let large = self.request_bytes >= self.settings.config.large_payload_bytes;
        let weight = if large { 1 } else { window::sample_weight() };
        if weight == 0 {
            return;
        }
        let attempts = self.attempts();
        if attempts == 0 {
            return;
        }
        let counts = Counts::request(attempts, self.verdict.is_some(), large).scaled(weight);
        let settings = self.settings.clone();
        if let Some(cluster) = self.cluster() {
            window::record(&settings, dir, cluster, counts);
        }
    }
}

/// Classifies; a transport-layer verdict then reads the upstream certificate for the `mtls`
/// hint (one host call only there) and is classified again with it.
fn classify_mtls(s: &mut Signals, cfg: &meshtriage_core::Config) -> Outcome {
    let outcome = classify(s, cfg);
    if !outcome.wants_mtls() {
        return outcome;
    }
    s.upstream_mtls = host::property_string(b"upstream\0uri_san_peer_certificate")
        .is_some_and(|san| san.starts_with("spiffe://"));
    if s.upstream_mtls {
        classify(s, cfg)
    } else {
        outcome
    }
}

impl Context for HttpFilter {}

impl HttpContext for HttpFilter {
    fn on_http_request_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        // Envoy passes the size of this chunk (the filter never buffers).
        self.request_bytes = self.request_bytes.saturating_add(body_size as u64);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.response_complete |= end_of_stream;
        self.on_response_headers(end_of_stream)
    }

    /// Only a probed response (a possible local reply) is read, chunk by chunk as it passes,
    /// up to the cap; every body flows on untouched, nothing is ever held.
    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.response_complete |= end_of_stream;
        let Some(probe) = self.probe.as_mut() else {
            return Action::Continue;
        };
        if body_size == 0 {
            if end_of_stream {
                self.refine_before_span();
            }
            return Action::Continue;
        }
        if probe.body.len() + body_size > MAX_LOCAL_REPLY_BODY {
            self.probe = None; // bigger than any local reply: no body evidence
            return Action::Continue;
        }
        match host::response_body(body_size) {
            Some(chunk) => probe.body.extend_from_slice(&chunk),
            None => {
                self.probe = None;
                metrics::internal_error("response body unavailable");
            }
        }
        if end_of_stream {
            self.refine_before_span();
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.response_complete = true;
        let Some(buf) = host::header_map(Map::ResponseTrailers) else {
            return Action::Continue;
        };
        if let Some((_, v)) = HeaderPairs::new(&buf).find(|(n, _)| *n == "grpc-status") {
            match parse_grpc_status(v) {
                Some(code) => self.grpc_trailer = Some(code),
                None => metrics::internal_error("malformed grpc-status trailer"),
            }
        }
        // A failing status: classified now, while the trace span is still open.
        let cfg = &self.settings.config;
        if self.grpc_trailer.is_some_and(|g| cfg.grpc_failing(g)) {
            self.refine_from_body();
            self.classify_late();
            if !self.published {
                self.publish();
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        self.finish();
    }
}
