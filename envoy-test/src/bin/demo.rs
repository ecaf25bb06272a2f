//! `make demo`: one Envoy 1.40 with meshtriage and upstreams that misbehave on purpose; each
//! scenario's request is sent and the verdict printed with what to look at next.

use meshtriage_core::Class;
use meshtriage_envoy_test::bed::{Bed, BedOptions};
use meshtriage_envoy_test::verdict::{self, View};

const SCENARIOS: &[(&str, &str, bool)] = &[
    // (what happens, path, inbound listener?)
    ("app answers 200", "/app/ok", false),
    ("nothing listens on the port", "/uf", false),
    ("SYNs dropped (backlog-full listener)", "/uct", false),
    ("app closes without answering (inbound)", "/app/close", true),
    ("app resets the connection", "/app/rst", false),
    ("no endpoints in the cluster", "/uh", false),
    ("TLS cluster, plaintext server", "/tls/plain", false),
    ("TLS, certificate from an unknown CA", "/tls/badca", false),
    ("TLS, certificate for another name", "/tls/badsan", false),
    ("mTLS: server wants a client cert", "/tls/nocert", false),
    ("retries exhausted on refused port", "/retry-uf", false),
    ("app too slow (route timeout 1 s)", "/app/slow/1500", false),
    ("app sends Content-Length + chunked", "/app/cl-te", false),
    ("HTTP/2 upstream resets the stream", "/h2rst/x", false),
    ("app answers 503", "/app/status/503", false),
    (
        "gRPC UNAVAILABLE (trailers-only)",
        "/app/grpc-only/14",
        false,
    ),
    ("RBAC policy denies", "/deny", false),
    ("ext_authz service denies", "/extauthz/status/403", false),
    ("JWT missing", "/jwt", false),
    ("fault injection abort", "/fault", false),
    ("no route for the path", "/no/route/here", false),
    (
        "copied Transfer-Encoding, plain body",
        "/app/copied-te",
        false,
    ),
    ("upstream resets mid-body", "/app/midbody-rst", false),
    ("app forges a verdict (inbound)", "/app/forged/503", true),
    (
        "nginx's 502 page (captured, replayed)",
        "/app/gateway-page/0",
        false,
    ),
    (
        "HAProxy's 503 page (captured, replayed)",
        "/app/gateway-page/3",
        false,
    ),
    (
        "keep-alive race (reused connection)",
        "/race/close-reused",
        false,
    ),
];

fn describe(v: &View) -> String {
    let hints = v
        .get("hints")
        .map(|h| format!(" [{h}]"))
        .unwrap_or_default();
    let grpc = v
        .get("grpc")
        .map(|c| format!(" grpc={c}"))
        .unwrap_or_default();
    let inferred = if v.get("inferred").is_some() {
        " inferred"
    } else {
        ""
    };
    format!(
        "{} {} origin={} side={}{}{}{}",
        v.layer,
        v.class(),
        v.get("origin").unwrap_or("-"),
        v.get("side").unwrap_or("-"),
        inferred,
        grpc,
        hints
    )
}

fn main() {
    println!("meshtriage demo: starting Envoy 1.40 with the plugin and misbehaving upstreams...");
    let bed = Bed::start("demo", BedOptions::default());
    println!(
        "\n{:<40} {:>6}  {:<6} {:<62} {:<24} next step",
        "scenario", "status", "where", "meshtriage verdict", "Envoy's Proxy-Status"
    );
    println!("{}", "-".repeat(190));
    for (i, (what, path, inbound)) in SCENARIOS.iter().enumerate() {
        let tagged = format!(
            "{path}{}demo={i}",
            if path.contains('?') { '&' } else { '?' }
        );
        let port = if *inbound { bed.inbound_port } else { bed.port };
        if path.contains("close-reused") {
            // The race needs a pooled connection that served a request.
            let _ = bed.get_on(port, path);
        }
        let r = bed.get_on(port, &tagged);
        let header = r
            .header("x-meshtriage")
            .map(|h| verdict::parse(h).into_iter().next());
        let line = bed.envoy.wait_access_log(&format!("scn={tagged} "));
        let envoy_ps = line
            .as_deref()
            .and_then(|l| l.split(" ps=").nth(1))
            .and_then(|ps| ps.split("; ").find_map(|x| x.strip_prefix("error=")))
            .unwrap_or("-")
            .to_string();
        let (place, v) = match header {
            Some(Some(v)) => ("header", Some(v)),
            // Late failures (after the headers) only reach the access log and metrics.
            _ => ("log", line.and_then(|l| verdict::from_access_log(&l))),
        };
        let (text, next) = match &v {
            Some(v) => (
                describe(v),
                Class::parse(v.class()).map_or("", |c| c.docs().next_step),
            ),
            None => ("no verdict (success)".to_string(), ""),
        };
        let place = if v.is_some() { place } else { "-" };
        let status = if r.truncated {
            format!("{}*", r.status)
        } else {
            r.status.to_string()
        };
        println!(
            "{:<40} {:>6}  {:<6} {:<62} {:<24} {}",
            what, status, place, text, envoy_ps, next
        );
    }
    println!("\n* = the client got a cut response (headers, then the connection closed).");
    println!("Every scenario, over HTTP/1.1 and HTTP/2, is in docs/scenarios.md (`cargo test --test e2e_matrix`).");
    // The plugin adds request counts to Envoy's counter once per second.
    std::thread::sleep(std::time::Duration::from_millis(1300));
    println!("\nPrometheus (Envoy admin /stats/prometheus):");
    for line in bed.envoy.prometheus().lines().filter(|l| {
        l.starts_with("meshtriage_failures_total") || l.starts_with("meshtriage_requests_total")
    }) {
        println!("  {line}");
    }
    println!("\nAccess-log field %FILTER_STATE(wasm.meshtriage:PLAIN)%, last line:");
    if let Some(last) = bed.envoy.access_log_lines().last() {
        println!(
            "  {}",
            last.rsplit_once(" verdict=").map_or(last.as_str(), |x| x.1)
        );
    }
    // A real L4 fault (network namespace + iptables), when this machine allows it.
    match meshtriage_envoy_test::netlab::demo_rows() {
        Ok(rows) => {
            println!("\nA real L4 fault (upstream in its own network namespace, iptables drops packets >= 1000 bytes):");
            for (what, status, verdict) in rows {
                println!("  {what:<38} {status:>6}  {verdict}");
            }
        }
        Err(why) => println!("\n(Real L4 faults skipped: the lab {why}. Run `sudo make demo` to see an MTU black hole.)"),
    }
}
