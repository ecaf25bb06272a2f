//! `make soak`: a bounded run of mixed requests (success and every failure class the bed can
//! produce) through Envoy with meshtriage, over keep-alive connections. Prints Envoy's memory
//! (process RSS, which includes the V8 wasm VMs' linear memory, and Envoy's heap stats) and the
//! plugin's error counters at the start, along the way and at the end. Not part of `make test`.
//!
//! `SOAK_REQUESTS` (default 1,000,000) and `SOAK_CONNECTIONS` (default 8) tune the run.

use meshtriage_core::metrics::{
    CONFIG_ERRORS, FAILURES, INTERNAL_ERRORS, MALFORMED_UPSTREAM, REQUESTS,
};
use meshtriage_envoy_test::bed::{Bed, BedOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// (path, weight, statuses a correct run answers with)
const MIX: &[(&str, u32, &[u16])] = &[
    ("/app/ok", 50, &[200]),
    ("/app/status/503", 8, &[503]),
    ("/app/status/404", 4, &[404]),
    ("/app/forged/503", 4, &[503]),
    ("/app/hop", 4, &[200]),
    ("/app/close", 4, &[503]),
    ("/uf", 4, &[503]),
    ("/uh", 4, &[503]),
    ("/nc", 4, &[503]),
    ("/nowhere", 4, &[404]),
    ("/deny", 4, &[403]),
    ("/rl", 3, &[200, 429]),
    ("/fault", 3, &[503]),
];

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reads one response (Content-Length bodies only, as the bed answers); its status and whether
/// the connection stays open.
fn read_response(r: &mut BufReader<TcpStream>) -> Option<(u16, bool)> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status = line.split(' ').nth(1)?.parse().ok()?;
    let (mut len, mut keep) = (0usize, true);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end().to_ascii_lowercase();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        } else if h == "connection: close" {
            keep = false;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((status, keep))
}

struct Counts {
    sent: AtomicU64,
    errors: AtomicU64,
    wrong_status: AtomicU64,
}

fn worker(port: u16, quota: u64, seed: u64, counts: Arc<Counts>) {
    let total: u32 = MIX.iter().map(|m| m.1).sum();
    let mut rng = seed | 1;
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    for _ in 0..quota {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut pick = (rng % u64::from(total)) as u32;
        let Some(&(path, _, ok)) = MIX.iter().find(|m| {
            if pick < m.1 {
                true
            } else {
                pick -= m.1;
                false
            }
        }) else {
            continue;
        };
        if conn.is_none() {
            conn = TcpStream::connect(("127.0.0.1", port)).ok().and_then(|s| {
                s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
                let r = BufReader::new(s.try_clone().ok()?);
                Some((s, r))
            });
        }
        let Some((s, r)) = conn.as_mut() else {
            counts.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let req = format!("GET {path} HTTP/1.1\r\nhost: soak.local\r\n\r\n");
        let got = s
            .write_all(req.as_bytes())
            .ok()
            .and_then(|_| read_response(r));
        counts.sent.fetch_add(1, Ordering::Relaxed);
        match got {
            Some((status, keep)) => {
                if !ok.contains(&status) {
                    counts.wrong_status.fetch_add(1, Ordering::Relaxed);
                }
                if !keep {
                    conn = None;
                }
            }
            None => {
                counts.errors.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn stat(bed: &Bed, name: &str) -> String {
    bed.envoy
        .admin(&format!("/stats?filter=^{}$", name.replace('.', "\\.")))
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
        .unwrap_or_else(|| "-".into())
}

fn figures(bed: &Bed, label: &str, sent: u64, started: Instant) {
    let m = |n: &str| bed.envoy.metric(n, &[]);
    println!(
        "{label:>6}: requests={sent:>8} t={:>6.1}s envoy_rss={:>7} KiB heap={} allocated={} wasm_vms_active={} wasm_vms_created={} | meshtriage vm_memory={} KiB requests={} failures={} internal_errors={} malformed_upstream={} config_errors={}",
        started.elapsed().as_secs_f64(),
        rss_kib(bed.envoy.pid()),
        stat(bed, "server.memory_heap_size"),
        stat(bed, "server.memory_allocated"),
        stat(bed, "wasm.envoy.wasm.runtime.v8.active"),
        stat(bed, "wasm.envoy.wasm.runtime.v8.created"),
        m(meshtriage_core::metrics::VM_MEMORY) / 1024.0,
        m(REQUESTS),
        m(FAILURES),
        m(INTERNAL_ERRORS),
        m(MALFORMED_UPSTREAM),
        m(CONFIG_ERRORS),
    );
}

fn main() {
    let total = env("SOAK_REQUESTS", 1_000_000);
    let conns = env("SOAK_CONNECTIONS", 8).max(1);
    let bed = Bed::start("soak", BedOptions::default());
    println!(
        "soak: {total} mixed requests over {conns} keep-alive connections to Envoy {} (outbound listener, plugin defaults)",
        meshtriage_envoy_test::paths::envoy_bin().display()
    );
    println!(
        "mix: {}",
        MIX.iter()
            .map(|m| format!("{} {}%", m.0, m.1))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let started = Instant::now();
    // Warm-up so the start figures include the VMs and connection pools.
    let warm = Arc::new(Counts {
        sent: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        wrong_status: AtomicU64::new(0),
    });
    worker(bed.port, 2000, 7, warm);
    figures(&bed, "start", 0, started);
    let counts = Arc::new(Counts {
        sent: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        wrong_status: AtomicU64::new(0),
    });
    let handles: Vec<_> = (0..conns)
        .map(|i| {
            let c = counts.clone();
            let port = bed.port;
            let quota = total / conns + u64::from(i < total % conns);
            std::thread::spawn(move || worker(port, quota, 0x9e37_79b9_7f4a_7c15 ^ (i + 1), c))
        })
        .collect();
    let step = (total / 4).max(1);
    let mut next = step;
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
        let sent = counts.sent.load(Ordering::Relaxed);
        if sent >= next && sent < total {
            figures(&bed, "run", sent, started);
            next += step;
        }
    }
    for h in handles {
        let _ = h.join();
    }
    // Stats flush asynchronously: wait (bounded) until the request counter settles.
    let want = 2000.0 + total as f64;
    let _ = bed.envoy.wait_metric(REQUESTS, &[], want);
    let sent = counts.sent.load(Ordering::Relaxed);
    figures(&bed, "end", sent, started);
    let errors = counts.errors.load(Ordering::Relaxed);
    let wrong = counts.wrong_status.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "done: {sent} requests in {secs:.1}s ({:.0}/s); client errors={errors} unexpected statuses={wrong}",
        sent as f64 / secs
    );
    let _ = std::fs::remove_file(&bed.envoy.access_log);
    if errors > 0 || wrong > 0 || bed.envoy.metric(INTERNAL_ERRORS, &[]) > 0.0 {
        println!("soak: FAILED\n{}", bed.envoy.log_tail(20));
        std::process::exit(1);
    }
    println!("soak: ok");
}
