//! The verdict on trace spans, with a real Envoy 1.40 and its Zipkin tracer reporting (Zipkin
//! API v2 JSON over HTTP) to a collector the test starts: which spans carry the
//! `meshtriage.*` tags (docs/tracing.md), and that they agree with the response header and
//! the access log.

use meshtriage_core::trace::TAGS;
use meshtriage_envoy_test::client;
use meshtriage_envoy_test::trace_bed::TraceBed;
use meshtriage_envoy_test::verdict::{self, View};
use meshtriage_envoy_test::zipkin::Span;

/// The span's tags as a verdict view, after checking the separate tags against the whole one.
fn span_verdict(span: &Span) -> Option<View> {
    let whole = span.tag("meshtriage.verdict")?;
    let v = verdict::parse(whole).into_iter().next().unwrap();
    assert_eq!(
        span.tag("meshtriage.layer"),
        Some(v.layer.as_str()),
        "{span:?}"
    );
    assert_eq!(span.tag("meshtriage.class"), Some(v.class()), "{span:?}");
    assert_eq!(span.tag("meshtriage.origin"), v.get("origin"), "{span:?}");
    Some(v)
}

fn no_verdict_tags(span: &Span) {
    for t in TAGS {
        assert_eq!(span.tag(t.tag), None, "{} on {span:?}", t.tag);
    }
}

/// The access log's verdict for `scn` (the bed's format: `verdict=` last).
fn logged(t: &TraceBed, scn: &str) -> Option<View> {
    let line = t
        .bed
        .envoy
        .wait_access_log(&format!("scn={scn} "))
        .unwrap_or_else(|| panic!("no access log line for {scn}"));
    verdict::from_access_log(&line)
}

/// Sends `path`, then checks the proxy's span against the header and the access log.
/// Returns the span's verdict (None: no tags).
fn traced(t: &TraceBed, path: &str) -> Option<View> {
    let r = t.bed.get(path);
    let span = t.span(path);
    let on_span = span_verdict(&span);
    let header = r
        .header("x-meshtriage")
        .map(|h| verdict::parse(h).remove(0));
    assert_eq!(on_span, header, "{path}: span and header");
    if on_span.is_some() {
        assert_eq!(on_span, logged(t, path), "{path}: span and access log");
        assert_eq!(span.tag("probe.resp_header"), r.header("x-meshtriage"));
    } else {
        no_verdict_tags(&span);
    }
    on_span
}

/// A sidecar's Envoy as Istio configures it: one span per request, the proxy's.
#[test]
fn failures_known_by_the_end_of_the_response_are_on_the_proxys_span() {
    let t = TraceBed::start("trace-proxy-span", "", false);
    // L4 and L7, known at header time: the proxy's span, the header and the log agree.
    for (path, layer, class) in [
        ("/uf", "l4", "connect_refused"),
        ("/app/close", "l4", "connection_terminated"),
        ("/app/status/503", "l7", "app_error"),
        ("/deny", "l7", "authz_denied"),
    ] {
        let v = traced(&t, path).unwrap_or_else(|| panic!("{path}: no verdict on the span"));
        assert_eq!((v.layer.as_str(), v.class()), (layer, class), "{path}");
    }
    // Late: a failing gRPC status in trailers is known before the stream ends. No header
    // (it left with the 200), but the span carries it, as does the access log.
    let path = "/grpc/grpc-trailers/13";
    let r = t.bed.get(path);
    assert_eq!((r.status, r.header("x-meshtriage")), (200, None));
    let v = span_verdict(&t.span(path)).expect("the late gRPC verdict on the span");
    assert_eq!((v.layer.as_str(), v.class()), ("l7", "app_grpc_error"));
    assert_eq!(Some(v), logged(&t, path), "span and access log");
    // Refined by the body: a plain Envoy hop's local reply. The header keeps what the headers
    // proved; the body, read as it passed, credits that hop before the stream ends, so the
    // span (and the access log) carry the refined verdict.
    let path = "/plainhop/refused";
    let r = t.bed.get(path);
    assert_eq!(r.status, 503);
    let header = verdict::parse(r.header("x-meshtriage").unwrap()).remove(0);
    assert_eq!(
        (header.class(), header.get("origin")),
        ("app_error", Some("app"))
    );
    let span = t.span(path);
    let v = span_verdict(&span).expect("the refined verdict on the span");
    assert_eq!(
        (v.layer.as_str(), v.class(), v.get("origin")),
        ("l4", "connect_refused", Some("upstream_proxy"))
    );
    assert_eq!(Some(v), logged(&t, path), "span and access log");
    assert_eq!(span.tag("probe.resp_header"), r.header("x-meshtriage"));
    // Successes: no tags on any span.
    for path in [
        "/app/ok",
        "/app/status/404",
        "/app/hop",
        "/grpc/grpc-trailers/0",
    ] {
        assert!(traced(&t, path).is_none(), "{path}");
        assert_eq!(logged(&t, path), None, "{path}");
    }
    assert!(t.errors().is_empty(), "{:?}", t.errors());
}

/// Failures Envoy records only when the stream ends (a truncated body, the client gone) are
/// classified in `on_log`, after Envoy finished the proxy's span: the span has no verdict, the
/// access log has, and its `%TRACE_ID%` leads from one to the other.
#[test]
fn failures_known_only_at_the_end_are_not_on_the_proxys_span() {
    let t = TraceBed::start("trace-late", "", false);
    for (path, layer) in [("/app/midbody-rst", "l4"), ("/app/copied-te", "l7")] {
        let r = t.bed.get(path);
        assert!(r.truncated, "{path}: the client saw a cut response");
        let span = t.span(path);
        no_verdict_tags(&span);
        // What the span does show: Envoy's own flag.
        assert_eq!(span.tag("response_flags"), Some("UPE"), "{path}");
        let logged = logged(&t, path).expect("the access log has the late verdict");
        assert_eq!(
            (logged.layer.as_str(), logged.class()),
            (layer, "response_truncated")
        );
        let line = t.trace_log(path).expect("trace log line");
        assert_eq!(
            line.trace_id, span.trace_id,
            "{path}: %TRACE_ID% names the span's trace"
        );
        // Istio's access log has no trace id but the request id, which the span carries.
        assert_eq!(
            span.tag("guid:x-request-id"),
            Some(line.request_id.as_str()),
            "{path}: the span's request id is the logged one"
        );
        assert_eq!(verdict::parse(&line.verdict).remove(0), logged);
    }
    // The upstream would answer after 4 s: time enough for a loaded machine to leave first.
    let path = "/cb/slow/4000";
    client_leaves(&t, path);
    let span = t.span(path);
    no_verdict_tags(&span);
    assert_eq!(span.tag("response_flags"), Some("DC"));
    let v = logged(&t, path).expect("the access log has the verdict");
    assert_eq!(
        (v.layer.as_str(), v.class()),
        ("l4", "downstream_disconnect")
    );
}

/// With `spawn_upstream_span`, the router's span of the attempt ends when the router is
/// destroyed, after `on_log`, when the client left: that span carries the late verdict.
/// A reset upstream ends its span at the reset, before `on_log`: no verdict there either.
#[test]
fn the_routers_span_carries_a_client_gone_verdict() {
    let t = TraceBed::start("trace-upstream-span", "", true);
    // The upstream would answer after 4 s: time enough for a loaded machine to leave first.
    let path = "/cb/slow/4000";
    client_leaves(&t, path);
    no_verdict_tags(&t.span(path));
    let up = t.upstream_span(path);
    assert_eq!(up.parent_id.as_deref(), Some(t.span(path).id.as_str()));
    let v = span_verdict(&up).expect("the verdict on the router's span");
    assert_eq!(
        (v.layer.as_str(), v.class()),
        ("l4", "downstream_disconnect")
    );
    assert_eq!(v.get("origin"), Some("client"));
    assert_eq!(Some(v), logged(&t, path), "span and access log");

    let path = "/app/midbody-rst";
    assert!(t.bed.get(path).truncated);
    no_verdict_tags(&t.span(path));
    no_verdict_tags(&t.upstream_span(path));
    // A local reply after a failed connect: the attempt's span ended at the connect failure,
    // before the reply passed the plugin; the proxy's span has the verdict.
    let path = "/uf";
    assert!(traced(&t, path).is_some());
    no_verdict_tags(&t.upstream_span(path));
    // A failing upstream response is on both spans; a success on neither.
    let path = "/app/status/503";
    let v = traced(&t, path).expect("verdict");
    assert_eq!(span_verdict(&t.upstream_span(path)), Some(v));
    let path = "/app/ok";
    assert!(traced(&t, path).is_none());
    no_verdict_tags(&t.upstream_span(path));
    assert!(t.errors().is_empty(), "{:?}", t.errors());
}

/// The client sends a request to a slow upstream and leaves once it is in flight.
fn client_leaves(t: &TraceBed, path: &str) {
    let active = || t.bed.envoy.stat("cluster.c_cb.upstream_rq_active") >= 1.0;
    let reached = client::request_then_close(t.bed.port, path, &[("x-scn", path)], &active);
    assert!(
        matches!(reached, Ok(true)),
        "never reached the upstream: {reached:?}"
    );
}

/// docs/tracing.md names every tag with the filter-state key it reads.
#[test]
fn the_docs_name_every_tag() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/tracing.md"))
        .expect("docs/tracing.md");
    for t in TAGS {
        let row = format!("| `{}` | `{}` |", t.tag, t.formatter());
        assert!(doc.contains(&row), "docs/tracing.md lacks the row {row}");
    }
}

/// The same tags through Envoy's OpenTelemetry tracer (OTLP/HTTP, decoded with the
/// OpenTelemetry protobufs), the exporter behind Istio's `opentelemetry` provider: span
/// attributes on failing spans only.
#[test]
fn the_opentelemetry_tracer_reports_the_same_tags() {
    let t = match TraceBed::start_otlp("trace-otlp", "") {
        Ok(t) => t,
        Err(why) => {
            meshtriage_suite::skip(&why);
            return;
        }
    };
    for (path, layer, class) in [
        ("/uf", "l4", "connect_refused"),
        ("/app/status/503", "l7", "app_error"),
    ] {
        let v = traced(&t, path).unwrap_or_else(|| panic!("{path}: no verdict on the span"));
        assert_eq!((v.layer.as_str(), v.class()), (layer, class), "{path}");
    }
    let path = "/grpc/grpc-trailers/13";
    assert_eq!(t.bed.get(path).header("x-meshtriage"), None);
    let v = span_verdict(&t.span(path)).expect("the late gRPC verdict on the span");
    assert_eq!(Some(v), logged(&t, path), "span and access log");
    let path = "/app/midbody-rst";
    assert!(t.bed.get(path).truncated);
    no_verdict_tags(&t.span(path));
    assert!(traced(&t, "/app/ok").is_none());
    assert!(t.errors().is_empty(), "{:?}", t.errors());
}
