//! The standard bed with a tracer on its outbound and inbound HTTP listeners, reporting every
//! span to a receiver the bed starts: Envoy's Zipkin tracer (Zipkin API v2 JSON over HTTP) to a
//! [`zipkin::Collector`], or its OpenTelemetry tracer (OTLP/HTTP protobuf) to an
//! [`otlp::Receiver`]. The listeners carry meshtriage's custom tags (`meshtriage_core::trace::TAGS`) as an
//! operator would configure them, plus [`PROBES`] that the tests use to find and compare spans.

use crate::bed::{Bed, BedOptions};
use crate::otlp;
use crate::zipkin::{self, Span};
use meshtriage_core::trace::TAGS;
use serde_json::{json, Value};
use std::rc::Rc;
use std::time::Duration;

/// Tags for the tests only: the request's scenario tag (to find its span) and the response's
/// verdict header as Envoy formats it for a span (to compare with the filter-state tags).
pub const PROBES: [(&str, &str); 2] = [
    ("scn", "%REQ(X-SCN)%"),
    ("probe.resp_header", "%RESP(X-MESHTRIAGE)%"),
];

/// The cluster of the span receiver.
const CLUSTER: &str = "span_receiver";

/// Which of Envoy's tracers reports the spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracer {
    Zipkin,
    OpenTelemetry,
}

impl Tracer {
    /// The HCM tracing `provider` reporting to the receiver's cluster on `port`.
    fn provider(self, port: u16) -> Value {
        match self {
            Tracer::Zipkin => json!({"name": "envoy.tracers.zipkin", "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
                "collector_cluster": CLUSTER,
                "collector_endpoint": zipkin::ENDPOINT,
                "collector_endpoint_version": "HTTP_JSON",
                "shared_span_context": false}}),
            Tracer::OpenTelemetry => {
                json!({"name": "envoy.tracers.opentelemetry", "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "http_service": {"http_uri": {
                    "uri": format!("http://127.0.0.1:{port}{}", otlp::ENDPOINT),
                    "cluster": CLUSTER, "timeout": "1s"}},
                "service_name": "bed"}})
            }
        }
    }

    /// The runtime keys that make the tracer report each span at once (both batch 5 spans or
    /// wait 5 s by default).
    fn flush_now(self) -> Value {
        let name = match self {
            Tracer::Zipkin => "zipkin",
            Tracer::OpenTelemetry => "opentelemetry",
        };
        json!({format!("tracing.{name}.min_flush_spans"): 1,
               format!("tracing.{name}.flush_interval_ms"): 100})
    }
}

/// Requests under this prefix cross a second, plain Envoy hop (a listener of the same Envoy
/// without the plugin and without `proxy-status`) whose only route goes to the refused port:
/// its local reply's body is the only evidence of where the 503 came from.
pub const PLAIN_HOP: &str = "/plainhop/";

/// The access log (besides the bed's) joining a request's trace id to its verdict, as an
/// operator would write it to go from a span to the verdict the span cannot carry.
pub const TRACE_LOG: &str = "trace.log";
pub const TRACE_LOG_FORMAT: &str = "TRACE scn=%REQ(X-SCN)% trace_id=%TRACE_ID% \
request_id=%REQ(X-REQUEST-ID)% verdict=%FILTER_STATE(wasm.meshtriage:PLAIN)%\n";

/// One trace-log line.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceLogLine {
    pub trace_id: String,
    pub request_id: String,
    pub verdict: String,
}

/// Envoy's HCM `tracing` block: the tracer and every custom tag. `upstream_span`: the router
/// reports its own span per upstream attempt (`spawn_upstream_span`), a child of the proxy's
/// span; a sidecar's Envoy as Istio configures it has only the proxy's span.
pub fn tracing_config(provider: Value, upstream_span: bool) -> Value {
    let mut tags: Vec<Value> = TAGS
        .iter()
        .map(|t| json!({"tag": t.tag, "value": t.formatter()}))
        .collect();
    tags.extend(PROBES.iter().map(|(t, v)| json!({"tag": t, "value": v})));
    json!({
        "provider": provider,
        "custom_tags": tags,
        "spawn_upstream_span": upstream_span,
    })
}

/// Adds the tracer to the bed's two HTTP listeners, the receiver's cluster, and a runtime
/// layer that makes the tracer report each span at once. The trace log goes next to the bed's
/// access log. `plain_hop_port`: see [`PLAIN_HOP`].
pub fn add_tracer(
    boot: &mut Value,
    tracer: Tracer,
    receiver_port: u16,
    upstream_span: bool,
    plain_hop_port: u16,
) {
    if let Some(listeners) = boot["static_resources"]["listeners"].as_array_mut() {
        for l in listeners {
            if !matches!(l["name"].as_str(), Some("outbound" | "inbound")) {
                continue;
            }
            if let Some(filters) = l["filter_chains"][0]["filters"].as_array_mut() {
                for f in filters {
                    if f["name"] == "envoy.filters.network.http_connection_manager" {
                        let hcm = &mut f["typed_config"];
                        hcm["tracing"] =
                            tracing_config(tracer.provider(receiver_port), upstream_span);
                        let to_hop = json!({"match": {"prefix": PLAIN_HOP},
                            "route": {"cluster": "c_plain_hop", "timeout": "2s"}});
                        if let Some(routes) =
                            hcm["route_config"]["virtual_hosts"][0]["routes"].as_array_mut()
                        {
                            routes.insert(0, to_hop);
                        }
                        let bed_log = hcm["access_log"][0]["typed_config"]["path"].as_str();
                        let trace_log = std::path::Path::new(bed_log.unwrap_or("."))
                            .with_file_name(TRACE_LOG)
                            .display()
                            .to_string();
                        if let Some(logs) = hcm["access_log"].as_array_mut() {
                            logs.push(json!({"name": "envoy.access_loggers.file", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                                "path": trace_log,
                                "log_format": {"text_format_source": {"inline_string": TRACE_LOG_FORMAT}}}}));
                        }
                    }
                }
            }
        }
    }
    let refused = boot["static_resources"]["clusters"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "c_refused"))
        .map(|c| {
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"]["port_value"]
                .clone()
        })
        .and_then(|p| p.as_u64())
        .unwrap_or(0) as u16;
    if let Some(clusters) = boot["static_resources"]["clusters"].as_array_mut() {
        clusters.push(crate::bed::cluster(CLUSTER, receiver_port, json!({})));
        clusters.push(crate::bed::cluster(
            "c_plain_hop",
            plain_hop_port,
            json!({}),
        ));
        clusters.push(crate::bed::cluster("c_plain_refused", refused, json!({})));
    }
    let plain_routes = json!([{"match": {"prefix": "/"}, "route": {"cluster": "c_plain_refused"}}]);
    let mut plain = crate::bed::hcm(
        "plainhop",
        plain_routes,
        vec![crate::bed::router()],
        "/dev/null",
    );
    if let Some(tc) = plain["typed_config"].as_object_mut() {
        tc.remove("proxy_status_config");
        tc.remove("access_log");
    }
    if let Some(listeners) = boot["static_resources"]["listeners"].as_array_mut() {
        listeners.push(crate::bed::listener(
            "plain_hop",
            plain_hop_port,
            None,
            vec![plain],
            None,
        ));
    }
    boot["layered_runtime"] =
        json!({"layers": [{"name": "tracing", "static_layer": tracer.flush_now()}]});
}

/// Where the spans arrive.
enum Receiver {
    Zipkin(zipkin::Collector),
    Otlp(otlp::Receiver),
}

/// A traced bed: the standard bed plus its span receiver.
pub struct TraceBed {
    pub bed: Bed,
    receiver: Receiver,
}

impl TraceBed {
    /// The Zipkin tracer; `upstream_span`: see [`tracing_config`].
    pub fn start(name: &str, plugin_config: &str, upstream_span: bool) -> TraceBed {
        let collector = zipkin::start();
        let port = collector.port;
        Self::with(
            name,
            plugin_config,
            upstream_span,
            Tracer::Zipkin,
            port,
            Receiver::Zipkin(collector),
        )
    }

    /// The OpenTelemetry tracer; `Err` says why its receiver cannot run (the test skips).
    pub fn start_otlp(name: &str, plugin_config: &str) -> Result<TraceBed, String> {
        let dir = crate::paths::scratch(&format!("{name}-otlp"));
        let receiver = otlp::start(&dir)?;
        let port = receiver.port;
        Ok(Self::with(
            name,
            plugin_config,
            false,
            Tracer::OpenTelemetry,
            port,
            Receiver::Otlp(receiver),
        ))
    }

    fn with(
        name: &str,
        plugin_config: &str,
        upstream_span: bool,
        tracer: Tracer,
        port: u16,
        receiver: Receiver,
    ) -> TraceBed {
        // Held until Envoy is ready: the bed's cluster points at the plain hop's listener.
        let reservation = crate::paths::reserve_port();
        let hop = reservation.port;
        let bed = Bed::start(
            name,
            BedOptions {
                plugin_config: plugin_config.into(),
                customize: Some(Rc::new(move |boot: &mut Value| {
                    add_tracer(boot, tracer, port, upstream_span, hop)
                })),
                ..BedOptions::default()
            },
        );
        drop(reservation);
        TraceBed { bed, receiver }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        match &self.receiver {
            Receiver::Zipkin(c) => c.spans(),
            Receiver::Otlp(r) => r.read().0,
        }
    }

    /// Reports that broke the tracer's protocol (empty when all were valid).
    pub fn errors(&self) -> Vec<String> {
        match &self.receiver {
            Receiver::Zipkin(c) => c.errors(),
            Receiver::Otlp(r) => r.read().1,
        }
    }

    /// The proxy's span of the request tagged `scn` (the root span: the downstream request),
    /// waiting up to 10 s for the tracer's report.
    pub fn span(&self, scn: &str) -> Span {
        self.wait_span(scn, |s| s.parent_id.is_none())
    }

    /// The router's span of the request tagged `scn` (needs `upstream_span`).
    pub fn upstream_span(&self, scn: &str) -> Span {
        self.wait_span(scn, |s| s.parent_id.is_some())
    }

    /// The trace-log line for `scn` (waits up to `envoy::WAIT`: a loaded machine flushes late).
    pub fn trace_log(&self, scn: &str) -> Option<TraceLogLine> {
        let path = self.bed.envoy.dir.join(TRACE_LOG);
        let needle = format!("TRACE scn={scn} ");
        let deadline = std::time::Instant::now() + crate::envoy::WAIT;
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.starts_with(&needle)) {
                let rest = line.strip_prefix(&needle)?.strip_prefix("trace_id=")?;
                let (trace_id, rest) = rest.split_once(" request_id=")?;
                let (request_id, verdict) = rest.split_once(" verdict=")?;
                return Some(TraceLogLine {
                    trace_id: trace_id.to_string(),
                    request_id: request_id.to_string(),
                    verdict: verdict.to_string(),
                });
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_span(&self, scn: &str, which: impl Fn(&Span) -> bool) -> Span {
        // Bounded like the harness's other waits; a span normally arrives within milliseconds.
        let deadline = std::time::Instant::now() + crate::envoy::WAIT;
        loop {
            let spans = self.spans();
            if let Some(s) = spans.iter().find(|s| s.tag("scn") == Some(scn) && which(s)) {
                return s.clone();
            }
            if std::time::Instant::now() >= deadline {
                panic!(
                    "no span tagged scn={scn} reached the receiver (errors {:?}, {} spans: {:?})\n{}",
                    self.errors(),
                    spans.len(),
                    spans.iter().map(|s| s.tag("scn").unwrap_or("")).collect::<Vec<_>>(),
                    self.bed.envoy.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
