//! `make bench`: the cost of meshtriage per request, side by side with no wasm filter and with
//! a no-op proxy-wasm filter, on this machine. One Envoy per variant (one worker, pinned to
//! CPU 0), wrk pinned to CPU 1, variants interleaved over several rounds; prints medians and
//! the spread, and ratios measured within each round. Bounded: ROUNDS × variants × SECONDS.

use meshtriage_envoy_test::bed::{cluster, listener, protocol, router, stats_tags};
use meshtriage_envoy_test::{paths, upstream, Envoy};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

const WRK_SCRIPT: &str = r#"
local paths = {}
for p in string.gmatch(os.getenv("BENCH_PATHS"), "[^,]+") do table.insert(paths, p) end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d socket_errors=%d non2xx=%d p50=%d p99=%d p999=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"#;

struct Variant {
    name: &'static str,
    envoy: usize,
    paths: &'static str,
}

const VARIANTS: [Variant; 6] = [
    Variant {
        name: "no filter, 200s",
        envoy: 0,
        paths: "/ok",
    },
    Variant {
        name: "no-op wasm, 200s",
        envoy: 1,
        paths: "/ok",
    },
    Variant {
        name: "meshtriage, 200s",
        envoy: 2,
        paths: "/ok",
    },
    Variant {
        name: "meshtriage auto, 200s",
        envoy: 3,
        paths: "/ok",
    },
    Variant {
        name: "no-op wasm, 503s",
        envoy: 1,
        paths: "/uf,/status/503",
    },
    Variant {
        name: "meshtriage, 503s",
        envoy: 2,
        paths: "/uf,/status/503",
    },
];

#[derive(Clone, Copy, Default)]
struct Run {
    rps: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    cpu_us: f64,
    errors: u64,
}

fn wasm_filter(name: &str, root_id: &str, file: &Path, config: &str) -> Value {
    json!({"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": name, "root_id": root_id, "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config},
                   "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": file}}},
                   "failure_policy": "FAIL_OPEN"}}})
}

fn start_envoy(
    name: &str,
    filter: Option<Value>,
    app_port: u16,
    refused_port: u16,
) -> (Envoy, u16) {
    let dir = paths::scratch(&format!("bench-{name}"));
    let mut filters: Vec<Value> = filter.into_iter().collect();
    filters.push(router());
    let hcm = json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench", "codec_type": "AUTO",
        "route_config": {"name": "bench", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/uf"}, "route": {"cluster": "refused"}},
            {"match": {"prefix": "/"}, "route": {"cluster": "app"}}]}]},
        "http_filters": filters}});
    let cfg = json!({
    "node": {"id": "bench", "metadata": {"NAME": "bench", "NAMESPACE": "perf"}},
    "stats_config": {"stats_tags": stats_tags()},
    "static_resources": {
        "listeners": [listener("bench", 0, Some("OUTBOUND"), vec![hcm], None)],
        "clusters": [cluster("app", app_port, protocol(json!({"http_protocol_options": {}}))),
                     cluster("refused", refused_port, json!({}))],
    }});
    let envoy = Envoy::start(&cfg, &dir);
    let port = envoy.port("bench");
    // Envoy on CPU 0, everything else (wrk, upstream threads) on CPU 1.
    let _ = Command::new("taskset")
        .args(["-apc", "0", &envoy.pid().to_string()])
        .output();
    (envoy, port)
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|x| x.1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn wrk(
    port: u16,
    paths: &str,
    seconds: u32,
    script: &Path,
    connections: u32,
) -> (u64, f64, f64, f64, f64, u64) {
    let out = Command::new("taskset")
        .args([
            "-c",
            "1",
            "wrk",
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}"))
        .env("BENCH_PATHS", paths)
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("BENCH "))
        .unwrap_or_else(|| panic!("wrk printed no summary:\n{text}"));
    let get = |k: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    (
        get("requests") as u64,
        get("duration_us"),
        get("p50"),
        get("p99"),
        get("p999"),
        get("socket_errors") as u64,
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn spread(v: &[f64]) -> (f64, f64) {
    let m = median(v.to_vec());
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    ((lo / m - 1.0) * 100.0, (hi / m - 1.0) * 100.0)
}

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let seconds: u32 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let connections: u32 = std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let plugin = paths::wasm();
    let noop = paths::root().join("target/wasm32-wasip1/release/meshtriage_noop.wasm");
    assert!(
        noop.exists(),
        "{} is missing: run `make bench`",
        noop.display()
    );
    let app = upstream::http1();
    let refused = paths::closed_port();
    let script = paths::scratch("bench").join("bench.lua");
    std::fs::write(&script, WRK_SCRIPT).unwrap();
    let envoys = [
        start_envoy("none", None, app.port, refused.port),
        start_envoy(
            "noop",
            Some(wasm_filter("noop", "", &noop, "")),
            app.port,
            refused.port,
        ),
        // As the Istio manifests and envoy-test/configs deploy it: the direction stated.
        start_envoy(
            "meshtriage",
            Some(wasm_filter(
                "meshtriage",
                "meshtriage",
                &plugin,
                r#"{"direction": "outbound"}"#,
            )),
            app.port,
            refused.port,
        ),
        // The default configuration: `xds.listener_direction` read on every request.
        start_envoy(
            "meshtriage-auto",
            Some(wasm_filter("meshtriage-auto", "meshtriage", &plugin, "")),
            app.port,
            refused.port,
        ),
    ];
    println!("meshtriage bench: {rounds} rounds x {} variants x {seconds} s, wrk -t1 -c{connections} on CPU 1, Envoy 1.40 --concurrency 1 on CPU 0", VARIANTS.len());
    for (envoy, port) in &envoys {
        wrk(*port, "/ok", 1, &script, connections); // warm-up: VM compiled, pools filled
        let _ = envoy;
    }
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..rounds {
        // Rotate the order every round so no variant always runs first or last.
        for k in 0..VARIANTS.len() {
            let i = (k + round) % VARIANTS.len();
            let v = &VARIANTS[i];
            // BENCH_ONLY=success|failure narrows the run (for quick comparisons).
            let only = std::env::var("BENCH_ONLY").unwrap_or_default();
            if (only == "success" && v.paths != "/ok") || (only == "failure" && v.paths == "/ok") {
                runs[i].push(Run::default());
                continue;
            }
            let (envoy, port) = &envoys[v.envoy];
            let cpu0 = cpu_seconds(envoy.pid());
            let (requests, dur_us, p50, p99, p999, errors) =
                wrk(*port, v.paths, seconds, &script, connections);
            let cpu = cpu_seconds(envoy.pid()) - cpu0;
            runs[i].push(Run {
                rps: requests as f64 / (dur_us / 1e6),
                p50,
                p99,
                p999,
                cpu_us: cpu * 1e6 / requests.max(1) as f64,
                errors,
            });
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }
    println!(
        "\n{:<20} {:>10} {:>14} {:>9} {:>9} {:>9} {:>12} {:>7}",
        "variant", "req/s", "(spread %)", "p50 µs", "p99 µs", "p99.9 µs", "CPU µs/req", "errors"
    );
    for (i, v) in VARIANTS.iter().enumerate() {
        let r = &runs[i];
        let rps: Vec<f64> = r.iter().map(|x| x.rps).collect();
        let (lo, hi) = spread(&rps);
        println!(
            "{:<20} {:>10.0} {:>14} {:>9.0} {:>9.0} {:>9.0} {:>12.1} {:>7}",
            v.name,
            median(rps.clone()),
            format!("{lo:+.1}/{hi:+.1}"),
            median(r.iter().map(|x| x.p50).collect()),
            median(r.iter().map(|x| x.p99).collect()),
            median(r.iter().map(|x| x.p999).collect()),
            median(r.iter().map(|x| x.cpu_us).collect()),
            r.iter().map(|x| x.errors).sum::<u64>()
        );
    }
    // Ratios within each round (same minute, same machine state), then the median and range.
    let ratio = |a: usize, b: usize, f: fn(&Run) -> f64| -> (f64, f64, f64) {
        let v: Vec<f64> = runs[a]
            .iter()
            .zip(&runs[b])
            .map(|(x, y)| f(x) / f(y))
            .collect();
        let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        (median(v), lo, hi)
    };
    println!("\nratios (median of per-round ratios, [min, max]):");
    for (label, a, b, f, target) in [
        (
            "success throughput vs no-op",
            2,
            1,
            (|r: &Run| r.rps) as fn(&Run) -> f64,
            "target >= 0.97",
        ),
        (
            "success p99 vs no-op",
            2,
            1,
            |r: &Run| r.p99,
            "target <= 1.05",
        ),
        ("success throughput vs no filter", 2, 0, |r: &Run| r.rps, ""),
        (
            "no-op throughput vs no filter",
            1,
            0,
            |r: &Run| r.rps,
            "(the wasm ABI itself)",
        ),
        (
            "success throughput, direction auto",
            3,
            1,
            |r: &Run| r.rps,
            "(default config)",
        ),
        (
            "failure throughput vs no-op",
            5,
            4,
            |r: &Run| r.rps,
            "target >= 0.90",
        ),
        ("failure p99 vs no-op", 5, 4, |r: &Run| r.p99, ""),
        ("success CPU/req vs no-op", 2, 1, |r: &Run| r.cpu_us, ""),
    ] {
        let (m, lo, hi) = ratio(a, b, f);
        println!("  {label:<34} {m:.3}  [{lo:.3}, {hi:.3}]  {target}");
    }
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!(
        "\nmodule size: meshtriage.wasm {} bytes ({:.0} KiB); no-op {} bytes",
        size(&plugin),
        size(&plugin) as f64 / 1024.0,
        size(&noop)
    );
    for (name, (envoy, _)) in ["no filter", "no-op", "meshtriage", "meshtriage auto"]
        .iter()
        .zip(&envoys)
    {
        let vm = envoy.metric("meshtriage_vm_memory_bytes", &[]);
        let vm = if vm > 0.0 {
            format!(", VM linear memory {:.1} MiB", vm / 1048576.0)
        } else {
            String::new()
        };
        println!("Envoy RSS ({name}): {:.1} MiB{vm}", rss_mib(envoy.pid()));
    }
}
