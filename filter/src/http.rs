//! The HTTP filter: reads what Envoy hands over, calls the two response stages of
//! `meshtriage_core::stages` (header stage, end-of-stream stage) and writes what they plan:
//! the verdict header, metrics and filter state. Every decision is in the core; this file
//! performs host calls only (docs/architecture.md).

use crate::host::{self, Map};
use crate::metrics;
use crate::settings::{Settings, FILTER_STATE};
use crate::window;
use meshtriage_core::hop_by_hop::HopByHop;
use meshtriage_core::metrics as names;
use meshtriage_core::response::{parse_grpc_status, ResponseScan};
use meshtriage_core::stages::{
    self, BodyProbe, EndInput, HeaderAction, HeaderInput, ProbeStep, Reads, SignalReads,
};
use meshtriage_core::trace::end_stage_before_log;
use meshtriage_core::upstream::UpstreamEvidence;
use meshtriage_core::window::Counts;
use meshtriage_core::wire::HeaderPairs;
use meshtriage_core::{Direction, Phase, Signals, Verdict};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub struct HttpFilter {
    settings: Rc<Settings>,
    /// The listener direction, read at most once per request.
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
    /// The header stage's body probe (a possible local reply of another Envoy).
    probe: Option<Box<BodyProbe>>,
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
            .get_or_insert_with(host::cluster_name)
            .as_deref()
    }

    /// `upstream.request_attempt_count`, read at most once per request.
    fn attempts(&mut self) -> u64 {
        *self.attempts.get_or_insert_with(host::attempt_count)
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

    fn on_response_headers(&mut self, end_of_stream: bool) -> Action {
        let Some(buf) = host::header_map(Map::ResponseHeaders) else {
            metrics::internal_error("response headers unavailable");
            return Action::Continue;
        };
        let header_name = self.settings.config.header.as_deref();
        let scan = ResponseScan::scan(HeaderPairs::new(&buf), header_name);
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
        let settings = self.settings.clone();
        let input = HeaderInput {
            scan: &scan,
            end_of_stream,
        };
        let plan = stages::plan_headers(input, &settings.config, &settings.hop, self);
        if plan.malformed.upstream_verdict {
            metrics::count(names::MALFORMED_UPSTREAM.to_string());
        }
        if plan.malformed.proxy_status {
            metrics::internal_error("malformed proxy-status from upstream");
        }
        self.probe = plan.probe;
        if let Some(name) = settings.config.header.as_deref() {
            let ok = match plan.header {
                HeaderAction::Keep => true,
                HeaderAction::Strip => host::remove_header(Map::ResponseHeaders, name),
                HeaderAction::Replace(entries) => {
                    host::replace_header(Map::ResponseHeaders, name, &entries)
                }
                HeaderAction::Write(text) => {
                    host::replace_header(Map::ResponseHeaders, name, self.encoded.insert(text))
                }
            };
            if !ok {
                metrics::internal_error("could not write the verdict header");
            }
        }
        if let Some(ps) = plan.proxy_status {
            host::add_header(Map::ResponseHeaders, "proxy-status", &ps);
        }
        self.verdict = plan.verdict;
        // Now, not in `on_log`: Envoy finishes the trace span before it runs the access
        // loggers, and the span's tags read this state (docs/tracing.md).
        self.publish();
        Action::Continue
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

    /// The end-of-stream stage, and the filter state when its verdict is new. Also run before
    /// `on_log`, while the trace span is still open, where the evidence is complete: at the end
    /// of a probed body and on a failing gRPC trailer; `on_log` then runs it again to no effect.
    fn settle(&mut self, at_log: bool) {
        let settings = self.settings.clone();
        let input = EndInput {
            saw_headers: self.saw_headers,
            response_complete: self.response_complete,
            grpc_trailer: self.grpc_trailer,
            verdict: self.verdict.take(),
            probe: self.probe.take(),
            at_log,
        };
        let end = stages::finish(input, &settings.config, &settings.hop, self);
        if end.changed {
            self.encoded = None;
            self.published = false;
        }
        self.verdict = end.verdict;
        if !self.published {
            self.publish();
        }
    }

    /// End of stream: the final verdict, metrics and filter state.
    fn finish(&mut self) {
        let dir = self.direction();
        metrics::count_request(dir);
        self.settle(true);
        self.account(dir);
        let Some(v) = &self.verdict else {
            return;
        };
        metrics::count_failure(dir, v.layer, v.class, v.origin, v.side);
        if let Some(label) = v.grpc.and_then(meshtriage_core::grpc::code_label) {
            metrics::count(names::grpc_failures(dir, label));
        }
        if self.request_bytes > 0 {
            // Like the all-requests histogram: requests with a body (see `record_request_bytes`).
            metrics::histogram(
                names::failed_request_bytes(dir, v.layer),
                self.request_bytes,
            );
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

/// The host reads the stages ask for.
impl Reads for HttpFilter {
    fn signals(&mut self, phase: Phase, status: Option<u16>) -> Signals {
        let dir = self.direction();
        let retry_budget_exceeded = self.retry_budget_exceeded(dir);
        let flags = host::response_flags();
        Signals {
            phase,
            status,
            flags,
            details: host::code_details(),
            transport_failure: None, // Envoy copies it into the code details
            grpc_status: self.grpc_trailer,
            attempts: self.attempts(),
            direction: dir,
            response_started: self.saw_headers && self.header_status.is_some_and(|s| s < 400),
            chunked: self.chunked,
            declared_response_bytes: self.content_length,
            response_body_bytes: if SignalReads::response_size(phase) {
                host::response_size().unwrap_or(0)
            } else {
                0
            },
            request_body_bytes: self.request_bytes,
            hop_by_hop: self.hop_by_hop,
            upstream_mtls: false, // asked by the stages only for transport-layer verdicts
            upstream_tls13_no_client_cert: false, // likewise, for a new connection's UC
            grpc_deadline: false, // only for a client gone or a status 4
            connect_nanos: if SignalReads::connect_duration(flags) {
                host::cx_pool_ready_nanos()
            } else {
                None
            },
            retry_budget_exceeded,
            upstream: UpstreamEvidence::None,
        }
    }

    fn upstream_mtls(&mut self) -> bool {
        host::upstream_is_mesh_workload()
    }

    fn response_flags(&mut self) -> meshtriage_core::flags::ResponseFlags {
        host::response_flags()
    }

    fn response_code(&mut self) -> Option<u16> {
        host::response_code()
    }

    fn tls13_without_client_cert(&mut self) -> bool {
        host::upstream_tls13_without_client_cert()
    }

    fn grpc_deadline_ran_out(&mut self) -> bool {
        host::grpc_timeout_and_duration().is_some_and(|(timeout, elapsed)| {
            meshtriage_core::grpc::parse_timeout(&timeout)
                .is_some_and(|t| meshtriage_core::grpc::deadline_ran_out(t, elapsed))
        })
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
        match probe.step(body_size) {
            ProbeStep::Skip => {}
            ProbeStep::GiveUp => probe.give_up(),
            ProbeStep::Read => match host::response_body(body_size) {
                Some(chunk) => probe.body.extend_from_slice(&chunk),
                None => {
                    self.probe = None;
                    metrics::internal_error("response body unavailable");
                }
            },
        }
        if end_of_stream && end_stage_before_log(self.probe.is_some(), None, &self.settings.config)
        {
            self.settle(false);
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
        let cfg = &self.settings.config;
        if end_stage_before_log(self.probe.is_some(), self.grpc_trailer, cfg) {
            self.settle(false);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        self.finish();
    }
}
