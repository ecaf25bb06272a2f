//! The HTTP filter's decisions as two pure stages, in the manner of linkerd2-proxy's
//! `ClassifyResponse` / `ClassifyEos`: the **header stage** turns the response-header scan, the
//! configuration and (only when the headers may show a failure) the host's properties into a
//! [`HeaderPlan`] (what to do with the verdict header, whether to probe the body, the verdict
//! so far); the **end-of-stream stage** says which late reads are needed and returns the final
//! verdict. The glue (`filter/src/http.rs`) reads, calls these and writes.
//!
//! Host reads go through [`Reads`], asked lazily: the stages decide *whether* a property is
//! worth its host call (~13k Envoy instructions), the glue only performs it. Both stages build a
//! verdict through [`assemble`], the one place a verdict is made from signals.
//!
//! Rules (docs/envoy-signals.md §1-2): headers are written only in the header stage; the
//! end-of-stream stage feeds metrics and filter state only.

use crate::classify::{classify, is_failing};
use crate::config::Config;
use crate::flags::{Flag, ResponseFlags};
use crate::gateway_replies::{confirmed_by_body, MAX_GATEWAY_PAGE};
use crate::grpc;
use crate::response::{trusts_upstream, ResponseScan};
use crate::sfv;
use crate::signals::{Phase, Signals};
use crate::tls13_rejection;
use crate::upstream::{bound_entries, local_reply_class, parse_proxy_status, UpstreamEvidence};
use crate::verdict::Verdict;

/// The host reads a stage may ask for. Each is one or more host calls: a stage asks only when
/// the answer can change the outcome.
pub trait Reads {
    /// The signals of a response that may be failing (`response.flags`, code details,
    /// attempts, ... see `filter/src/http.rs`), gathered at `phase` for `status`.
    fn signals(&mut self, phase: Phase, status: Option<u16>) -> Signals;
    /// Does the upstream certificate carry a SPIFFE identity (the `mtls` hint)?
    fn upstream_mtls(&mut self) -> bool;
    /// `response.flags` (end of stream).
    fn response_flags(&mut self) -> ResponseFlags;
    /// `response.code`, 0 as `None` (end of stream).
    fn response_code(&mut self) -> Option<u16>;
    /// A new TLS 1.3 upstream connection on which this proxy presented no certificate
    /// (`upstream.tls_version`, then `upstream.subject_local_certificate`).
    fn tls13_without_client_cert(&mut self) -> bool {
        false
    }
    /// The request's `grpc-timeout` ran out (`request.headers`, `request.duration`; only
    /// answered at the end of the stream).
    fn grpc_deadline_ran_out(&mut self) -> bool {
        false
    }
}

/// Which optional properties a signal gathering reads (the glue asks before each).
pub struct SignalReads;

impl SignalReads {
    /// `upstream.cx_pool_ready_duration` (`slow_connect`): not on a failed connect, where the
    /// duration measures the failure, not a slow success.
    pub fn connect_duration(flags: ResponseFlags) -> bool {
        !flags.has(Flag::UF)
    }

    /// `response.size`: only at the end of the stream (at header time no body has passed).
    pub fn response_size(phase: Phase) -> bool {
        phase == Phase::Log
    }
}

/// The one verdict assembly: `None` when the signals are not failing; else classifies and,
/// for a transport-layer verdict, reads the upstream certificate for the `mtls` hint (one host
/// read, only there) and classifies again with it.
pub fn assemble(
    s: &mut Signals,
    cfg: &Config,
    hop: &str,
    reads: &mut impl Reads,
) -> Option<Verdict> {
    let request_readable = s.phase == Phase::Log;
    assemble_reading(s, cfg, hop, reads, request_readable)
}

/// [`assemble`], told whether the request's headers may be read (only from `on_log`).
fn assemble_reading(
    s: &mut Signals,
    cfg: &Config,
    hop: &str,
    reads: &mut impl Reads,
    request_readable: bool,
) -> Option<Verdict> {
    if !is_failing(s, cfg) {
        return None;
    }
    let mut outcome = classify(s, cfg);
    // Both ends of a gRPC deadline get one verdict (the request's header is readable at the
    // end of the stream only; a header-time status 4 is looked at again there, see `finish`).
    if request_readable && grpc::may_be_deadline(s, outcome.class) {
        s.grpc_deadline = reads.grpc_deadline_ran_out();
        if s.grpc_deadline {
            outcome = classify(s, cfg);
        }
    }
    if outcome.wants_mtls() {
        s.upstream_mtls = reads.upstream_mtls();
        if tls13_rejection::worth_reading(&outcome, s) {
            s.upstream_tls13_no_client_cert = reads.tls13_without_client_cert();
        }
        if s.upstream_mtls || s.upstream_tls13_no_client_cert {
            outcome = classify(s, cfg);
        }
    }
    let mut verdict = Verdict::new(outcome, s, hop);
    if !request_readable {
        grpc::presume_deadline(&mut verdict);
    }
    Some(verdict)
}

/// What the header stage sees. A struct so that new header-time evidence is one more field.
#[derive(Clone, Copy, Debug)]
pub struct HeaderInput<'a> {
    pub scan: &'a ResponseScan,
    /// The headers end the stream (no body to probe).
    pub end_of_stream: bool,
}

/// What to do with the verdict header on the response going downstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderAction {
    /// Leave the response's headers as they are.
    Keep,
    /// Remove every verdict entry (a success, or `expose_header: false`).
    Strip,
    /// Replace the header with the upstream's entries, bounded (a trusted upstream verdict).
    Replace(String),
    /// Write this hop's verdict (the text is reused for the filter state).
    Write(String),
}

/// Problems in what the upstream sent, to count (they never change the traffic).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Malformed {
    /// An upstream verdict header that is not RFC 8941 (dropped).
    pub upstream_verdict: bool,
    /// A `proxy-status` that is not RFC 8941.
    pub proxy_status: bool,
}

/// The body of a response that may be another Envoy's local reply, and the header-time
/// signals to classify it again with once it has passed.
#[derive(Clone, Debug, PartialEq)]
pub struct BodyProbe {
    pub signals: Signals,
    pub body: Vec<u8>,
    /// The body outgrew the cap: no gateway's reply (an `inferred` verdict is withdrawn).
    pub overflow: bool,
}

/// What to do with one response-body chunk of a probed response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeStep {
    /// Nothing to read (an empty chunk).
    Skip,
    /// Read the chunk and keep it.
    Read,
    /// Bigger than any local reply: no body evidence; drop the probe.
    GiveUp,
}

impl BodyProbe {
    /// A probe of a response with these header-time signals.
    pub fn new(signals: Signals) -> BodyProbe {
        BodyProbe {
            signals,
            body: Vec::new(),
            overflow: false,
        }
    }

    /// The body is bigger than any gateway's reply: keep the signals (to withdraw an
    /// `inferred` verdict at the end), drop the bytes.
    pub fn give_up(&mut self) {
        self.overflow = true;
        self.body = Vec::new();
    }

    pub fn step(&self, chunk_size: usize) -> ProbeStep {
        if self.overflow || chunk_size == 0 {
            ProbeStep::Skip
        } else if self.body.len().saturating_add(chunk_size) > MAX_GATEWAY_PAGE {
            ProbeStep::GiveUp
        } else {
            ProbeStep::Read
        }
    }
}

/// The header stage's decision.
#[derive(Clone, Debug, PartialEq)]
pub struct HeaderPlan {
    pub header: HeaderAction,
    /// An RFC 9209 `Proxy-Status` member to append (`proxy_status: true`).
    pub proxy_status: Option<String>,
    pub verdict: Option<Verdict>,
    /// Read the body as it passes: it may refine the verdict at the end of the stream.
    pub probe: Option<Box<BodyProbe>>,
    pub malformed: Malformed,
}

impl HeaderPlan {
    /// A response that is not failing: no verdict passes through.
    fn success(scan: &ResponseScan) -> HeaderPlan {
        HeaderPlan {
            header: if scan.verdict_lines.is_empty() {
                HeaderAction::Keep
            } else {
                HeaderAction::Strip
            },
            proxy_status: None,
            verdict: None,
            probe: None,
            malformed: Malformed::default(),
        }
    }
}

/// The header stage. Reads nothing unless the scan says the response may be failing.
pub fn plan_headers(
    input: HeaderInput<'_>,
    cfg: &Config,
    hop: &str,
    reads: &mut impl Reads,
) -> HeaderPlan {
    let scan = input.scan;
    if !scan.may_fail(cfg) {
        return HeaderPlan::success(scan);
    }
    let mut s = reads.signals(Phase::ResponseHeaders, scan.status);
    s.grpc_status = scan.grpc_status;
    let mut malformed = Malformed::default();
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
                Err(_) => malformed.upstream_verdict = true,
            }
        }
        if kept_entries.is_none() {
            if let Some(ps) = scan.proxy_status.as_deref() {
                match parse_proxy_status(ps) {
                    Some(evidence) => s.upstream = evidence,
                    None => malformed.proxy_status = sfv::parse_list(ps).is_err(),
                }
            }
        }
    }
    // No entries and no proxy-status: the body may still be another Envoy's local reply.
    // Envoy cannot hold the headers and hand the body over first (proxy-wasm turns a pause into
    // StopAllIterationAndWatermark: no body callback until the headers go on), so the header
    // keeps what the headers prove, and the body refines metrics and filter state.
    // Another gateway's error page (nginx, HAProxy, Apache, Varnish, a plain Envoy) likewise:
    // the headers make it likely (the header says `inferred`, see crate::gateway_replies), the
    // body certain; Squid's `X-Squid-Error` makes it certain at once.
    let mut probe = None;
    if s.via_upstream() && kept_entries.is_none() && s.upstream == UpstreamEvidence::None {
        let view = scan.header_view();
        if !input.end_of_stream && (scan.may_carry_local_reply() || view.may_be_gateway_page()) {
            probe = Some(Box::new(BodyProbe::new(s.clone())));
        }
        if let Some(reply) = view.likely() {
            s.upstream = if reply.headers.certain() {
                UpstreamEvidence::LocalReplyBody {
                    class: reply.class,
                    retried: false,
                }
            } else {
                UpstreamEvidence::Inferred { class: reply.class }
            };
        }
    }
    let Some(verdict) = assemble(&mut s, cfg, hop, reads) else {
        let mut plan = HeaderPlan::success(scan);
        plan.probe = probe;
        plan.malformed = malformed;
        return plan;
    };
    let kept = kept_entries.is_some();
    let header = match (&cfg.header, kept_entries, cfg.expose_header) {
        (None, _, _) => HeaderAction::Keep,
        (Some(_), _, false) if scan.verdict_lines.is_empty() => HeaderAction::Keep,
        (Some(_), _, false) => HeaderAction::Strip,
        (Some(_), Some(entries), true) => HeaderAction::Replace(entries),
        (Some(_), None, true) => HeaderAction::Write(verdict.encode(cfg.include_detail)),
    };
    // Verdict::proxy_status speaks for this proxy's own errors only: an `inferred` verdict
    // (another proxy's page, a presumed client deadline) never gets an entry.
    let proxy_status = if cfg.proxy_status && !kept {
        verdict.proxy_status()
    } else {
        None
    };
    HeaderPlan {
        header,
        proxy_status,
        verdict: Some(verdict),
        probe,
        malformed,
    }
}

/// What the end-of-stream stage sees. A struct so that new late evidence is one more field.
#[derive(Debug, Default)]
pub struct EndInput {
    /// The response-headers callback ran.
    pub saw_headers: bool,
    /// The response reached its end of stream (headers, last body chunk or trailers).
    pub response_complete: bool,
    /// A `grpc-status` trailer.
    pub grpc_trailer: Option<u32>,
    /// The header stage's verdict, if it made one.
    pub verdict: Option<Verdict>,
    /// The header stage's body probe, with the body read.
    pub probe: Option<Box<BodyProbe>>,
    /// The stage runs from `on_log`. Earlier runs (end of a probed body, a failing gRPC
    /// trailer) are in the response phase, where the request's headers are not to be read.
    pub at_log: bool,
}

/// The end-of-stream stage's decision.
#[derive(Debug, PartialEq)]
pub struct EndPlan {
    /// The final verdict.
    pub verdict: Option<Verdict>,
    /// The verdict differs from the header stage's (refined by the body, or a late failure):
    /// the header's text no longer describes it.
    pub changed: bool,
}

/// The end-of-stream stage: refines a probed response from its body, else, only for a
/// response that did not complete (late failures never reach their end of stream) or ended in
/// a failing gRPC trailer, reads the flags and classifies the late failure.
pub fn finish(input: EndInput, cfg: &Config, hop: &str, reads: &mut impl Reads) -> EndPlan {
    let mut verdict = input.verdict;
    let mut changed = false;
    if let Some(probe) = input.probe {
        let BodyProbe {
            mut signals,
            body,
            overflow,
        } = *probe;
        let evidence = if overflow {
            None
        } else {
            local_reply_class(&body).or_else(|| confirmed_by_body(signals.status, &body))
        };
        let inferred = verdict.as_ref().is_some_and(|v| v.inferred);
        if let Some(evidence) = evidence {
            signals.upstream = evidence;
            if let Some(v) = assemble(&mut signals, cfg, hop, reads) {
                verdict = Some(v);
                changed = true;
            }
        } else if inferred {
            // The body refutes what the headers suggested: the verdict goes back to the app.
            verdict = assemble(&mut signals, cfg, hop, reads);
            changed = true;
        }
    }
    // A status 4 presumed the deadline before the log: the request's `grpc-timeout` is
    // readable only now, and settles it.
    if let Some(v) = verdict.as_mut() {
        if input.at_log && grpc::deadline_presumed(v) {
            let ran_out = reads.grpc_deadline_ran_out();
            grpc::settle_deadline(v, ran_out);
            changed = true;
        }
    }
    let late_grpc = input.grpc_trailer.is_some_and(|g| cfg.grpc_failing(g));
    if verdict.is_none() && (!input.response_complete || late_grpc) {
        let flags = reads.response_flags();
        if flags.any_failure() || late_grpc || !input.saw_headers {
            let status = reads.response_code();
            let mut s = reads.signals(Phase::Log, status);
            if let Some(v) = assemble_reading(&mut s, cfg, hop, reads, input.at_log) {
                verdict = Some(v);
                changed = true;
            }
        }
    }
    EndPlan { verdict, changed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taxonomy::{Class, Direction, Layer, Origin};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A host that answers from fixed values and counts what was asked.
    #[derive(Default)]
    struct Fake {
        signals: Signals,
        mtls: bool,
        flags: ResponseFlags,
        code: Option<u16>,
        /// The request's `grpc-timeout` ran out.
        deadline: bool,
        /// A new TLS 1.3 connection without a client certificate.
        tls13: bool,
        asked_signals: Vec<Phase>,
        asked_mtls: u32,
        asked_flags: u32,
        asked_code: u32,
        asked_deadline: u32,
        asked_tls13: u32,
    }

    impl Reads for Fake {
        fn signals(&mut self, phase: Phase, status: Option<u16>) -> Signals {
            self.asked_signals.push(phase);
            Signals {
                phase,
                status,
                ..self.signals.clone()
            }
        }
        fn upstream_mtls(&mut self) -> bool {
            self.asked_mtls += 1;
            self.mtls
        }
        fn response_flags(&mut self) -> ResponseFlags {
            self.asked_flags += 1;
            self.flags
        }
        fn response_code(&mut self) -> Option<u16> {
            self.asked_code += 1;
            self.code
        }
        fn tls13_without_client_cert(&mut self) -> bool {
            self.asked_tls13 += 1;
            self.tls13
        }
        fn grpc_deadline_ran_out(&mut self) -> bool {
            self.asked_deadline += 1;
            self.deadline
        }
    }

    fn scan(pairs: &[(&str, &str)]) -> ResponseScan {
        ResponseScan::scan(
            pairs.iter().map(|(n, v)| (*n, v.as_bytes())),
            Some("x-meshtriage"),
        )
    }

    fn details(d: &str, dir: Direction) -> Signals {
        Signals {
            details: Some(d.to_string()),
            direction: dir,
            ..Signals::default()
        }
    }

    fn uf() -> Signals {
        Signals {
            flags: ResponseFlags(Flag::UF.mask()),
            details: Some(
                "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}".into(),
            ),
            ..Signals::default()
        }
    }

    const UPSTREAM_ENTRY: &str = "l4;class=connect_refused;origin=proxy;side=upstream;hop=\"b.ns\"";

    fn cfg(f: impl FnOnce(&mut Config)) -> Config {
        let mut c = Config::default();
        f(&mut c);
        c
    }

    fn plan(pairs: &[(&str, &str)], eos: bool, c: &Config, fake: &mut Fake) -> HeaderPlan {
        let scan = scan(pairs);
        plan_headers(
            HeaderInput {
                scan: &scan,
                end_of_stream: eos,
            },
            c,
            "a.ns",
            fake,
        )
    }

    fn kind(a: &HeaderAction) -> &'static str {
        match a {
            HeaderAction::Keep => "keep",
            HeaderAction::Strip => "strip",
            HeaderAction::Replace(_) => "replace",
            HeaderAction::Write(_) => "write",
        }
    }

    /// Every branch of the header stage: (case, headers, end of stream, config, host signals,
    /// expected action, verdict class, probe, host signal reads).
    #[test]
    fn header_stage_table() {
        let d = Config::default();
        let hidden = cfg(|c| c.expose_header = false);
        let no_header = cfg(|c| c.header = None);
        let never = cfg(|c| c.trust_upstream = crate::config::Trust::Never);
        let app503_out = details("via_upstream", Direction::Outbound);
        let app503_in = details("via_upstream", Direction::Inbound);
        let ok = details("via_upstream", Direction::Outbound);
        type Row<'a> = (
            &'a str,
            Vec<(&'a str, &'a str)>,
            bool,
            &'a Config,
            Signals,
            &'a str,
            Option<Class>,
            bool,
            usize,
        );
        let plain503 = vec![
            (":status", "503"),
            ("content-type", "text/plain"),
            ("content-length", "95"),
        ];
        let with_entry =
            |status: &'static str| vec![(":status", status), ("x-meshtriage", UPSTREAM_ENTRY)];
        let rows: Vec<Row> = vec![
            (
                "success, no header",
                vec![(":status", "200")],
                false,
                &d,
                ok.clone(),
                "keep",
                None,
                false,
                0,
            ),
            (
                "success strips a verdict",
                with_entry("200"),
                false,
                &d,
                ok.clone(),
                "strip",
                None,
                false,
                0,
            ),
            (
                "404 may fail, is not failing",
                vec![(":status", "404")],
                false,
                &d,
                ok.clone(),
                "keep",
                None,
                false,
                1,
            ),
            (
                "404, trusted upstream verdict: kept",
                with_entry("404"),
                false,
                &d,
                ok.clone(),
                "replace",
                Some(Class::ConnectRefused),
                false,
                1,
            ),
            (
                "404, untrusted upstream verdict: stripped",
                with_entry("404"),
                false,
                &d,
                app503_in.clone(),
                "strip",
                None,
                false,
                1,
            ),
            (
                "local UF 503: written",
                vec![(":status", "503")],
                true,
                &d,
                uf(),
                "write",
                Some(Class::ConnectRefused),
                false,
                1,
            ),
            (
                "hidden: nothing to strip",
                vec![(":status", "503")],
                true,
                &hidden,
                uf(),
                "keep",
                Some(Class::ConnectRefused),
                false,
                1,
            ),
            (
                "hidden: entries stripped",
                with_entry("503"),
                true,
                &hidden,
                app503_out.clone(),
                "strip",
                Some(Class::ConnectRefused),
                false,
                1,
            ),
            (
                "no header configured",
                with_entry("503"),
                true,
                &no_header,
                app503_out.clone(),
                "keep",
                Some(Class::ConnectRefused),
                false,
                1,
            ),
            (
                "outbound keeps upstream entries",
                with_entry("503"),
                true,
                &d,
                app503_out.clone(),
                "replace",
                Some(Class::ConnectRefused),
                false,
                1,
            ),
            (
                "inbound replaces an app's verdict",
                with_entry("503"),
                true,
                &d,
                app503_in.clone(),
                "write",
                Some(Class::AppError),
                false,
                1,
            ),
            (
                "never trusted",
                with_entry("503"),
                true,
                &never,
                app503_out.clone(),
                "write",
                Some(Class::AppError),
                false,
                1,
            ),
            (
                "malformed entries: own verdict",
                vec![(":status", "503"), ("x-meshtriage", "l4;;;")],
                true,
                &d,
                app503_out.clone(),
                "write",
                Some(Class::AppError),
                false,
                1,
            ),
            (
                "proxy-status names the error",
                vec![
                    (":status", "503"),
                    ("proxy-status", "envoy; error=connection_refused"),
                ],
                true,
                &d,
                app503_in.clone(),
                "write",
                Some(Class::ConnectRefused),
                false,
                1,
            ),
            (
                "small plain 503 is probed",
                plain503.clone(),
                false,
                &d,
                app503_in.clone(),
                "write",
                Some(Class::AppError),
                true,
                1,
            ),
            (
                "no probe at end of stream",
                plain503.clone(),
                true,
                &d,
                app503_in.clone(),
                "write",
                Some(Class::AppError),
                false,
                1,
            ),
            (
                "no probe of a local reply",
                plain503.clone(),
                false,
                &d,
                uf(),
                "write",
                Some(Class::ConnectRefused),
                false,
                1,
            ),
        ];
        for (case, headers, eos, c, signals, action, class, probe, reads) in rows {
            let mut fake = Fake {
                signals,
                ..Fake::default()
            };
            let p = plan(&headers, eos, c, &mut fake);
            assert_eq!(kind(&p.header), action, "{case}: {:?}", p.header);
            assert_eq!(p.verdict.as_ref().map(|v| v.class), class, "{case}");
            assert_eq!(p.probe.is_some(), probe, "{case}");
            assert_eq!(fake.asked_signals.len(), reads, "{case}: signal reads");
            if let HeaderAction::Write(text) = &p.header {
                let v = p.verdict.as_ref().unwrap();
                assert_eq!(*text, v.encode(c.include_detail), "{case}");
            }
        }
    }

    #[test]
    fn kept_entries_are_the_upstreams_and_get_no_proxy_status() {
        let c = cfg(|c| c.proxy_status = true);
        let mut fake = Fake {
            signals: details("via_upstream", Direction::Outbound),
            ..Fake::default()
        };
        let p = plan(
            &[(":status", "503"), ("x-meshtriage", UPSTREAM_ENTRY)],
            true,
            &c,
            &mut fake,
        );
        assert_eq!(p.header, HeaderAction::Replace(UPSTREAM_ENTRY.to_string()));
        assert_eq!(p.proxy_status, None);
        assert_eq!(p.verdict.unwrap().origin, Origin::UpstreamProxy);
        let mut fake = Fake {
            signals: uf(),
            ..Fake::default()
        };
        let p = plan(&[(":status", "503")], true, &c, &mut fake);
        assert!(p.proxy_status.unwrap().contains("error=connection_refused"));
        let mut fake = Fake {
            signals: uf(),
            ..Fake::default()
        };
        assert_eq!(
            plan(&[(":status", "503")], true, &Config::default(), &mut fake).proxy_status,
            None
        );
    }

    #[test]
    fn malformed_upstream_values_are_reported() {
        let mut fake = Fake {
            signals: details("via_upstream", Direction::Outbound),
            ..Fake::default()
        };
        let p = plan(
            &[
                (":status", "503"),
                ("x-meshtriage", "l4;;;"),
                ("proxy-status", "(("),
            ],
            true,
            &Config::default(),
            &mut fake,
        );
        assert_eq!(
            p.malformed,
            Malformed {
                upstream_verdict: true,
                proxy_status: true
            }
        );
        let mut fake = Fake {
            signals: details("via_upstream", Direction::Outbound),
            ..Fake::default()
        };
        // A valid List naming no known error is not malformed.
        let p = plan(
            &[(":status", "503"), ("proxy-status", "x; error=made_up")],
            true,
            &Config::default(),
            &mut fake,
        );
        assert_eq!(p.malformed, Malformed::default());
    }

    #[test]
    fn mtls_is_read_only_for_transport_verdicts() {
        let c = Config::default();
        let mut fake = Fake {
            signals: uf(),
            mtls: true,
            ..Fake::default()
        };
        let v = plan(&[(":status", "503")], true, &c, &mut fake)
            .verdict
            .unwrap();
        assert_eq!(fake.asked_mtls, 1);
        assert!(v.hints.contains(crate::taxonomy::Hint::Mtls) || v.layer == Layer::L4);
        let mut fake = Fake {
            signals: details("via_upstream", Direction::Inbound),
            mtls: true,
            ..Fake::default()
        };
        plan(&[(":status", "503")], true, &c, &mut fake);
        assert_eq!(fake.asked_mtls, 0, "an app error reads no certificate");
    }

    #[test]
    fn probe_reads_small_chunks_only() {
        let probe = BodyProbe {
            signals: Signals::default(),
            body: vec![b'x'; 200],
            overflow: false,
        };
        assert_eq!(probe.step(0), ProbeStep::Skip);
        let room = MAX_GATEWAY_PAGE - 200;
        assert_eq!(probe.step(room), ProbeStep::Read);
        assert_eq!(probe.step(room + 1), ProbeStep::GiveUp);
        assert_eq!(probe.step(usize::MAX), ProbeStep::GiveUp);
    }

    #[test]
    fn signal_reads_skip_what_cannot_matter() {
        assert!(!SignalReads::connect_duration(ResponseFlags(
            Flag::UF.mask()
        )));
        assert!(SignalReads::connect_duration(ResponseFlags(
            Flag::UC.mask()
        )));
        assert!(SignalReads::response_size(Phase::Log));
        assert!(!SignalReads::response_size(Phase::ResponseHeaders));
    }

    const ENVOY_UC_BODY: &[u8] =
        b"upstream connect error or disconnect/reset before headers. reset reason: connection termination";

    /// Every branch of the end-of-stream stage: (case, input, host flags, expected class,
    /// changed, flag reads, signal reads).
    #[test]
    fn end_stage_table() {
        let c = Config::default();
        let header_verdict = || {
            let mut fake = Fake {
                signals: uf(),
                ..Fake::default()
            };
            plan(&[(":status", "503")], true, &c, &mut fake).verdict
        };
        let probe = |body: &[u8]| {
            Some(Box::new(BodyProbe {
                signals: Signals {
                    status: Some(503),
                    ..details("via_upstream", Direction::Inbound)
                },
                body: body.to_vec(),
                overflow: false,
            }))
        };
        let app_verdict = || {
            let mut fake = Fake {
                signals: details("via_upstream", Direction::Inbound),
                ..Fake::default()
            };
            plan(&[(":status", "503")], true, &c, &mut fake).verdict
        };
        let complete = |verdict, probe| EndInput {
            at_log: true,
            saw_headers: true,
            response_complete: true,
            grpc_trailer: None,
            verdict,
            probe,
        };
        let uc = ResponseFlags(Flag::UC.mask());
        type Row = (
            &'static str,
            EndInput,
            ResponseFlags,
            Option<Class>,
            bool,
            u32,
            usize,
        );
        let rows: Vec<Row> = vec![
            (
                "complete success reads nothing",
                complete(None, None),
                uc,
                None,
                false,
                0,
                0,
            ),
            (
                "header verdict stands",
                complete(header_verdict(), None),
                uc,
                Some(Class::ConnectRefused),
                false,
                0,
                0,
            ),
            (
                "probe: Envoy's reply refines",
                complete(app_verdict(), probe(ENVOY_UC_BODY)),
                uc,
                Some(Class::ConnectionTerminated),
                true,
                0,
                0,
            ),
            (
                "probe: the app's own text",
                complete(app_verdict(), probe(b"oops")),
                uc,
                Some(Class::AppError),
                false,
                0,
                0,
            ),
            (
                "incomplete, no failure flag",
                EndInput {
                    at_log: true,
                    response_complete: false,
                    ..complete(None, None)
                },
                ResponseFlags(0),
                None,
                false,
                1,
                0,
            ),
            (
                "incomplete, reset after headers",
                EndInput {
                    at_log: true,
                    response_complete: false,
                    ..complete(None, None)
                },
                uc,
                Some(Class::ResponseTruncated),
                true,
                1,
                1,
            ),
            (
                "no headers at all: classified",
                EndInput {
                    at_log: true,
                    saw_headers: false,
                    response_complete: false,
                    ..complete(None, None)
                },
                ResponseFlags(0),
                None,
                false,
                1,
                1,
            ),
            (
                "failing gRPC trailer",
                EndInput {
                    at_log: true,
                    grpc_trailer: Some(14),
                    ..complete(None, None)
                },
                ResponseFlags(0),
                Some(Class::AppGrpcError),
                true,
                1,
                1,
            ),
            (
                "succeeding gRPC trailer",
                EndInput {
                    at_log: true,
                    grpc_trailer: Some(0),
                    ..complete(None, None)
                },
                ResponseFlags(0),
                None,
                false,
                0,
                0,
            ),
        ];
        for (case, input, flags, class, changed, flag_reads, signal_reads) in rows {
            let grpc = input.grpc_trailer;
            let mut fake = Fake {
                signals: Signals {
                    flags,
                    grpc_status: grpc,
                    details: Some(if flags.has(Flag::UC) {
                        "upstream_reset_after_response_started{connection_termination}".into()
                    } else {
                        "via_upstream".into()
                    }),
                    ..Signals::default()
                },
                flags,
                code: Some(200),
                ..Fake::default()
            };
            let end = finish(input, &c, "a.ns", &mut fake);
            assert_eq!(end.verdict.as_ref().map(|v| v.class), class, "{case}");
            assert_eq!(end.changed, changed, "{case}");
            assert_eq!(fake.asked_flags, flag_reads, "{case}: flag reads");
            assert_eq!(
                fake.asked_signals.len(),
                signal_reads,
                "{case}: signal reads"
            );
            assert_eq!(fake.asked_code as usize, signal_reads, "{case}: code reads");
        }
    }

    const NGINX_504: &str = "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n";

    fn nginx_504_headers() -> Vec<(&'static str, &'static str)> {
        vec![
            (":status", "504"),
            ("server", "nginx/1.22.1"),
            ("content-type", "text/html"),
            ("content-length", "167"),
        ]
    }

    /// The headers make nginx's page likely (`inferred` in the header); the body makes it
    /// certain, refutes it (the app's own page), or is too big to be it.
    #[test]
    fn gateway_pages_are_inferred_then_confirmed_or_withdrawn() {
        let c = Config::default();
        let header_stage = || {
            let mut fake = Fake {
                signals: details("via_upstream", Direction::Outbound),
                ..Fake::default()
            };
            plan(&nginx_504_headers(), false, &c, &mut fake)
        };
        let p = header_stage();
        let v = p.verdict.clone().unwrap();
        assert_eq!(
            (v.class, v.origin, v.inferred),
            (Class::UpstreamTimeout, Origin::UpstreamProxy, true)
        );
        assert!(matches!(&p.header, HeaderAction::Write(t) if t.contains(";inferred")));
        let with_ps = cfg(|c| c.proxy_status = true);
        let mut fake = Fake {
            signals: details("via_upstream", Direction::Outbound),
            ..Fake::default()
        };
        let ps = plan(&nginx_504_headers(), false, &with_ps, &mut fake).proxy_status;
        assert_eq!(ps, None, "no Proxy-Status for an inferred verdict");
        assert!(p.probe.is_some(), "the body is probed");
        let end = |body: &[u8], overflow: bool| {
            let p = header_stage();
            let mut probe = p.probe.unwrap();
            probe.body = body.to_vec();
            if overflow {
                probe.give_up();
            }
            let input = EndInput {
                at_log: true,
                saw_headers: true,
                response_complete: true,
                verdict: p.verdict,
                probe: Some(probe),
                ..EndInput::default()
            };
            let mut fake = Fake::default();
            finish(input, &c, "a.ns", &mut fake)
        };
        let confirmed = end(NGINX_504.as_bytes(), false);
        let v = confirmed.verdict.unwrap();
        assert_eq!(
            (v.class, v.origin, v.inferred),
            (Class::UpstreamTimeout, Origin::UpstreamProxy, false)
        );
        for (body, overflow) in [
            (&b"<html>the app's own 504</html>"[..], false),
            (&b""[..], true),
        ] {
            let refuted = end(body, overflow);
            let v = refuted.verdict.unwrap();
            assert!(refuted.changed);
            assert_eq!(
                (v.class, v.origin, v.inferred),
                (Class::AppError, Origin::App, false)
            );
        }
        // A 500 through nginx is never a gateway's.
        let mut fake = Fake {
            signals: details("via_upstream", Direction::Outbound),
            ..Fake::default()
        };
        let mut h = nginx_504_headers();
        h[0] = (":status", "500");
        let p = plan(&h, false, &c, &mut fake);
        assert_eq!(
            p.verdict.map(|v| (v.class, v.inferred)),
            Some((Class::AppError, false))
        );
        assert!(p.probe.is_none());
    }

    /// Squid's `X-Squid-Error` makes its page certain in the header: no `inferred`, no probe;
    /// without it (an app's page Squid forwarded) the verdict stays the app's.
    #[test]
    fn squid_errors_are_certain_from_the_headers() {
        let c = Config::default();
        let mut headers = vec![
            (":status", "504"),
            ("server", "squid/5.7"),
            ("content-type", "text/html;charset=utf-8"),
            ("content-length", "3115"),
            ("via", "1.1 vm (squid/5.7)"),
            ("x-squid-error", "ERR_READ_TIMEOUT 0"),
        ];
        let stage = |h: &[(&str, &str)]| {
            let mut fake = Fake {
                signals: details("via_upstream", Direction::Outbound),
                ..Fake::default()
            };
            plan(h, false, &c, &mut fake)
        };
        let p = stage(&headers);
        let v = p.verdict.unwrap();
        assert_eq!(
            (v.class, v.origin, v.inferred),
            (Class::UpstreamTimeout, Origin::UpstreamProxy, false)
        );
        assert!(p.probe.is_none(), "nothing to read");
        // Squid's timeout, not this proxy's: no Proxy-Status entry of this hop claims it.
        let with_ps = cfg(|c| c.proxy_status = true);
        let mut fake = Fake {
            signals: details("via_upstream", Direction::Outbound),
            ..Fake::default()
        };
        assert_eq!(
            plan(&headers, false, &with_ps, &mut fake).proxy_status,
            None
        );
        headers.pop();
        let p = stage(&headers);
        let v = p.verdict.unwrap();
        assert_eq!((v.class, v.origin), (Class::AppError, Origin::App));
        assert!(p.probe.is_none());
    }

    /// Before `on_log` (end of a probed body, a failing trailer) the stage is in the response
    /// phase: it never reads the request's `grpc-timeout`, neither for a header-time status 4
    /// nor for a failing trailer; `on_log` settles them.
    #[test]
    fn the_request_is_not_read_before_the_log() {
        let c = Config::default();
        let via_upstream = || Fake {
            signals: details("via_upstream", Direction::Outbound),
            ..Fake::default()
        };
        let mut fake = Fake {
            deadline: true,
            ..via_upstream()
        };
        let p = plan(
            &[(":status", "200"), ("grpc-status", "4")],
            true,
            &c,
            &mut fake,
        );
        let input = EndInput {
            saw_headers: true,
            response_complete: true,
            verdict: p.verdict,
            ..EndInput::default()
        };
        let end = finish(input, &c, "a.ns", &mut fake);
        assert_eq!(
            end.verdict.map(|v| (v.class, v.inferred)),
            Some((Class::GrpcDeadlineExceeded, true)),
            "presumed, not settled"
        );
        assert_eq!(fake.asked_deadline, 0);
        // A failing status-4 trailer after a 200: the late path, still before the log.
        let mut fake = Fake {
            signals: Signals {
                grpc_status: Some(4),
                ..details("via_upstream", Direction::Outbound)
            },
            deadline: true,
            ..Fake::default()
        };
        let input = EndInput {
            saw_headers: true,
            response_complete: true,
            grpc_trailer: Some(4),
            ..EndInput::default()
        };
        let end = finish(input, &c, "a.ns", &mut fake);
        assert_eq!(fake.asked_deadline, 0);
        assert_eq!(
            end.verdict.map(|v| (v.class, v.inferred)),
            Some((Class::GrpcDeadlineExceeded, true)),
            "presumed, not settled"
        );
    }

    /// A trailers-only status 4 at header time cannot read the request's `grpc-timeout`: the
    /// header presumes the deadline (`inferred`), and the log settles it (one read), only for
    /// status 4.
    #[test]
    fn a_header_time_status_4_is_settled_at_the_end() {
        let c = Config::default();
        for (deadline, class) in [
            (true, Class::GrpcDeadlineExceeded),
            (false, Class::AppGrpcError),
        ] {
            let mut fake = Fake {
                signals: details("via_upstream", Direction::Outbound),
                deadline,
                ..Fake::default()
            };
            let p = plan(
                &[(":status", "200"), ("grpc-status", "4")],
                true,
                &c,
                &mut fake,
            );
            let v = p.verdict.unwrap();
            assert_eq!(
                (v.class, v.grpc, v.inferred),
                (Class::GrpcDeadlineExceeded, Some(4), true)
            );
            assert!(
                matches!(&p.header, HeaderAction::Write(t) if t.contains("class=grpc_deadline_exceeded;origin=client;side=upstream;inferred;grpc=4"))
            );
            let input = EndInput {
                at_log: true,
                saw_headers: true,
                response_complete: true,
                verdict: Some(v),
                ..EndInput::default()
            };
            let end = finish(input, &c, "a.ns", &mut fake);
            assert_eq!(
                end.verdict.map(|v| (v.class, v.inferred)),
                Some((class, false))
            );
            assert!(end.changed, "the header's `inferred` no longer holds");
            assert_eq!(fake.asked_deadline, 1);
        }
        // Another code: nothing to look at.
        let mut fake = Fake {
            signals: details("via_upstream", Direction::Outbound),
            deadline: true,
            ..Fake::default()
        };
        let p = plan(
            &[(":status", "200"), ("grpc-status", "14")],
            true,
            &c,
            &mut fake,
        );
        let input = EndInput {
            at_log: true,
            saw_headers: true,
            response_complete: true,
            verdict: p.verdict,
            ..EndInput::default()
        };
        let end = finish(input, &c, "a.ns", &mut fake);
        assert_eq!(end.verdict.map(|v| v.grpc), Some(Some(14)));
        assert_eq!(fake.asked_deadline, 0);
    }

    /// The TLS version and local certificate are read only for a new connection's UC.
    #[test]
    fn tls13_reads_only_for_a_new_connections_termination() {
        let c = Config::default();
        let uc = |connect_nanos| Signals {
            flags: ResponseFlags(Flag::UC.mask()),
            details: Some("upstream_reset_before_response_started{connection_termination}".into()),
            connect_nanos,
            ..Signals::default()
        };
        for (nanos, asked, hinted) in [(Some(2_000_000), 1, true), (Some(5_000), 0, false)] {
            let mut fake = Fake {
                signals: uf(),
                tls13: true,
                ..Fake::default()
            };
            let v = assemble(&mut uc(nanos), &c, "a.ns", &mut fake).unwrap();
            assert_eq!(fake.asked_tls13, asked, "{nanos:?}");
            assert_eq!(
                v.hints.contains(crate::taxonomy::Hint::Tls13NoClientCert),
                hinted
            );
        }
        let mut fake = Fake {
            tls13: true,
            ..Fake::default()
        };
        let _ = assemble(&mut uf(), &c, "a.ns", &mut fake);
        assert_eq!(
            fake.asked_tls13, 0,
            "a refused connect reads no TLS version"
        );
    }
}
