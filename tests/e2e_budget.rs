//! The last two branches of the triage decision tree against a real Envoy 1.40: "are retries
//! amplifying this?" (retry budget: hint, counter, gauge, and the hint going away when traffic
//! calms) and "does it only fail for large payloads?" (hint, concentration gauge, histograms).

use meshtriage_core::metrics::{
    FAILED_REQUEST_BYTES, LARGE_PAYLOAD_FAILURE_RATIO, REQUEST_BYTES, RETRY_BUDGET_EXCEEDED,
    RETRY_RATIO,
};
use meshtriage_envoy_test::bed::{Bed, BedOptions};
use meshtriage_envoy_test::verdict::{self, View};
use meshtriage_envoy_test::{request, Response};
use std::time::{Duration, Instant};

const OUT: (&str, &str) = ("dir", "outbound");

fn bed(name: &str, config: &str) -> Bed {
    Bed::start(
        name,
        BedOptions {
            plugin_config: config.to_string(),
            ..BedOptions::default()
        },
    )
}

/// One request on the outbound listener, tagged `scn` for the access log.
fn send(b: &Bed, method: &str, path: &str, scn: &str, body: &[u8]) -> Response {
    request(b.port, method, path, &[("x-scn", scn)], body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", b.envoy.diagnostics()))
}

fn verdict_of(r: &Response) -> Option<View> {
    r.header("x-meshtriage")
        .map(|h| verdict::parse(h).into_iter().next().unwrap())
}

fn has_hint(r: &Response, hint: &str) -> bool {
    verdict_of(r).is_some_and(|v| v.hints().contains(&hint))
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `secs` seconds.
fn poll<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The retry-budget window of the storm test. The probe right after the storm must still
/// find the storm in the window: it is sent at once, so the margin is the whole window, 5 s,
/// minus one request (the window also lags by up to a 1 s tick). The calm phase then waits
/// (bounded, 60 s) for the storm to leave it.
const STORM_WINDOW: &str =
    r#"{"retry_budget": {"ratio": 0.1, "window_seconds": 5, "min_requests": 5}}"#;

#[test]
fn a_retry_storm_marks_failures_until_traffic_calms() {
    let b = bed("budget", STORM_WINDOW);
    let budget_before = b.envoy.metric(RETRY_BUDGET_EXCEEDED, &[OUT]);

    // Storm: a flaky upstream (80 % of attempts fail) behind a route retrying 5xx twice.
    // Bounded: at most 400 requests or 30 s until a failing response carries the hint.
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    let hinted = loop {
        assert!(
            sent < 400 && Instant::now() < deadline,
            "no failing response got retry_budget_exceeded after {sent} requests\n{}",
            b.envoy.diagnostics()
        );
        sent += 1;
        let scn = format!("storm-{sent}");
        let r = send(&b, "GET", "/retry/flaky/80", &scn, b"");
        if r.status == 503 && has_hint(&r, "retry_budget_exceeded") {
            break (scn, verdict_of(&r).unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (scn, v) = hinted;
    assert_eq!(
        (
            v.layer.as_str(),
            v.class(),
            v.get("origin"),
            v.get("attempts")
        ),
        ("l7", "app_error", Some("app"), Some("3")),
        "{v:?}"
    );
    // Any failing response to the same cluster in that window gets the hint, retried or not
    // (sent first, while the storm is surely in the window).
    let r = send(&b, "GET", "/app/status/503", "probe-hot", b"");
    assert!(has_hint(&r, "retry_budget_exceeded"), "{r:?}");
    let mut hints = v.hints();
    hints.sort_unstable();
    assert_eq!(hints, ["retries_exhausted", "retry_budget_exceeded"]);
    assert!(
        verdict::logged(&b.envoy, &scn)
            .hints()
            .contains(&"retry_budget_exceeded"),
        "the access log carries the hint too"
    );

    // The episode is counted once, and the gauge shows retries per request (per-mille).
    let exceeded = b
        .envoy
        .wait_metric(RETRY_BUDGET_EXCEEDED, &[OUT], budget_before + 1.0);
    assert!(exceeded >= budget_before + 1.0, "{exceeded}");
    let ratio = b.envoy.metric(RETRY_RATIO, &[OUT]);
    assert!(
        ratio > 100.0,
        "retry ratio gauge {ratio} should exceed the 10 % budget"
    );

    // Calm: successes only on the same cluster; once the storm has left the 5 s window a
    // failing response no longer gets the hint, and the gauge falls under the budget.
    let mut round = 0;
    let calm = poll(60, || {
        round += 1;
        for _ in 0..5 {
            assert_eq!(send(&b, "GET", "/app/ok", "calm", b"").status, 200);
        }
        let r = send(&b, "GET", "/app/status/503", &format!("probe-{round}"), b"");
        assert_eq!(r.status, 503);
        (!has_hint(&r, "retry_budget_exceeded")).then_some(r)
    });
    let r = calm.unwrap_or_else(|| panic!("the hint never went away\n{}", b.envoy.diagnostics()));
    let v = verdict_of(&r).unwrap();
    assert_eq!(v.class(), "app_error");
    assert!(v.hints().is_empty(), "{v:?}");
    let gauge = poll(30, || {
        let g = b.envoy.metric(RETRY_RATIO, &[OUT]);
        (g <= 100.0).then_some(g)
    });
    assert!(
        gauge.is_some(),
        "retry ratio gauge stayed at {}",
        b.envoy.metric(RETRY_RATIO, &[OUT])
    );
    assert_eq!(
        b.envoy.metric(RETRY_BUDGET_EXCEEDED, &[OUT]),
        exceeded,
        "calm traffic starts no new episode"
    );
}

#[test]
fn large_uploads_that_fail_are_marked_and_the_concentration_shows() {
    let b = bed(
        "payload",
        // A 60 s window: all eleven requests stay in it while the gauge is read, however slowly
        // a loaded machine sends them (the gauge is the share of large requests that failed).
        r#"{"large_payload_bytes": 10000, "retry_budget": {"ratio": 0.1, "window_seconds": 60, "min_requests": 5}}"#,
    );
    // The upstream resets the connection when the body reaches 10,000 bytes.
    let small = vec![b's'; 100];
    let large = vec![b'L'; 20_000];
    for i in 0..6 {
        let r = send(
            &b,
            "POST",
            "/app/rst-large/10000",
            &format!("small-{i}"),
            &small,
        );
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.header("x-meshtriage").is_none());
    }
    for i in 0..5 {
        let scn = format!("large-{i}");
        let r = send(&b, "POST", "/app/rst-large/10000", &scn, &large);
        assert_eq!(r.status, 503, "{r:?}");
        let v = verdict_of(&r).unwrap_or_else(|| panic!("no verdict: {r:?}"));
        // The upstream read the whole body, then reset before answering: Envoy's UC.
        assert_eq!(
            (v.layer.as_str(), v.class(), v.get("origin"), v.get("side")),
            (
                "l4",
                "connection_terminated",
                Some("proxy"),
                Some("upstream")
            ),
            "{v:?}"
        );
        // The small requests left a pooled connection: `reused_connection` may join (it rests
        // on a timing, see filter/core/src/reused_connection.rs).
        let hints = |v: &View| -> Vec<String> {
            v.hints()
                .into_iter()
                .filter(|h| *h != "reused_connection")
                .map(str::to_string)
                .collect()
        };
        assert_eq!(hints(&v), ["large_payload"], "{v:?}");
        assert_eq!(hints(&verdict::logged(&b.envoy, &scn)), ["large_payload"]);
    }

    // Concentration: 5 of 5 large requests failed, 0 of 6 small ones: 1000 per-mille.
    let conc = poll(30, || {
        let g = b.envoy.metric(LARGE_PAYLOAD_FAILURE_RATIO, &[OUT]);
        (g >= 1000.0).then_some(g)
    });
    assert_eq!(
        conc,
        Some(1000.0),
        "{}",
        b.envoy.metric(LARGE_PAYLOAD_FAILURE_RATIO, &[OUT])
    );

    // Histograms (Envoy's default buckets; samples appear at Envoy's stats flush, ≤ 5 s).
    let failed = [OUT, ("layer", "l4")];
    let count = poll(30, || {
        let c = b
            .envoy
            .metric(&format!("{FAILED_REQUEST_BYTES}_count"), &failed);
        (c >= 5.0).then_some(c)
    });
    assert_eq!(count, Some(5.0), "{}", b.envoy.prometheus());
    let prom = b.envoy.prometheus();
    let bucket = |name: &str, labels: &[(&str, &str)], le: &str| {
        let mut l = labels.to_vec();
        l.push(("le", le));
        meshtriage_envoy_test::envoy::metric_in(&prom, &format!("{name}_bucket"), &l)
    };
    // Envoy's histogram sums are approximate (log-linear bins): within 5 %.
    let sum = |name: &str, labels: &[(&str, &str)]| {
        meshtriage_envoy_test::envoy::metric_in(&prom, &format!("{name}_sum"), labels)
    };
    let near = |got: f64, want: f64| (got - want).abs() <= want * 0.05;
    let failed_sum = sum(FAILED_REQUEST_BYTES, &failed);
    assert!(near(failed_sum, 100_000.0), "{failed_sum}");
    assert_eq!(bucket(FAILED_REQUEST_BYTES, &failed, "10000"), 0.0);
    assert_eq!(bucket(FAILED_REQUEST_BYTES, &failed, "30000"), 5.0);
    assert_eq!(
        meshtriage_envoy_test::envoy::metric_in(&prom, &format!("{REQUEST_BYTES}_count"), &[OUT]),
        11.0
    );
    let all_sum = sum(REQUEST_BYTES, &[OUT]);
    assert!(near(all_sum, 100_600.0), "{all_sum}");
    assert_eq!(bucket(REQUEST_BYTES, &[OUT], "100"), 6.0);

    // An upstream that resets while the 2 MB body is still being sent (it never reads it):
    // Envoy reports the same UC before any response, and enough bytes passed for the hint.
    // The client writes head and body in one call, so Envoy's first read already holds far
    // more than the 10,000-byte threshold (a loopback segment is up to 64 KiB) before the
    // upstream can have seen the head and reset.
    let r = send(
        &b,
        "POST",
        "/app/rst-early/100000",
        "early",
        &vec![b'E'; 2_000_000],
    );
    assert_eq!(r.status, 503, "{r:?}");
    let v = verdict_of(&r).unwrap_or_else(|| panic!("no verdict: {r:?}"));
    assert_eq!(
        (v.layer.as_str(), v.class(), v.get("flags")),
        ("l4", "connection_terminated", Some("UC")),
        "{v:?}"
    );
    assert_eq!(v.hints(), ["large_payload"], "{v:?}");
    assert_eq!(
        verdict::logged(&b.envoy, "early").hints(),
        ["large_payload"]
    );
    let small = send(&b, "POST", "/app/rst-early/100000", "early-small", &small);
    assert_eq!(small.status, 200, "{small:?}");
}
