//! Micro-benchmark of the pure decision path, native: header scan of a success response, and
//! classify + encode of failing exchanges (every class's example). Prints ns per operation,
//! median of several rounds with the spread.
//! `cargo run --release -p meshtriage-core --example bench_classify`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use meshtriage_core::examples::example_signals;
use meshtriage_core::response::ResponseScan;
use meshtriage_core::wire::{serialize, HeaderPairs};
use meshtriage_core::{classify, is_failing, Class, Config, Verdict};
use std::hint::black_box;
use std::time::Instant;

fn time(rounds: usize, iters: u32, mut f: impl FnMut()) -> (f64, f64, f64) {
    let mut per = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        per.push(t.elapsed().as_nanos() as f64 / f64::from(iters));
    }
    per.sort_by(|a, b| a.total_cmp(b));
    (per[per.len() / 2], per[0], per[per.len() - 1])
}

fn main() {
    let cfg = Config::default();
    let headers = serialize(&[
        (":status", b"200"),
        ("content-type", b"application/json"),
        ("content-length", b"512"),
        ("date", b"Sun, 22 Nov 2026 02:00:00 GMT"),
        ("server", b"envoy"),
        ("x-envoy-upstream-service-time", b"3"),
        ("x-request-id", b"2b1f8a0e-3c0d-4b7e-9d1c-8e6f0b9a7c55"),
    ]);
    let failing: Vec<_> = Class::all()
        .map(example_signals)
        .filter(|s| is_failing(s, &cfg))
        .collect();
    println!("meshtriage-core micro-benchmark (native, release), 7 rounds");
    let (m, lo, hi) = time(7, 200_000, || {
        let scan = ResponseScan::scan(HeaderPairs::new(black_box(&headers)), Some("x-meshtriage"));
        black_box(scan.may_fail(&cfg));
    });
    println!(
        "  success: scan 7 response headers + may_fail     {m:>8.1} ns/op  [{lo:.1}, {hi:.1}]"
    );
    let (m, lo, hi) = time(7, 20_000, || {
        for s in &failing {
            let v = Verdict::new(classify(black_box(s), &cfg), s, "checkout.shop");
            black_box(v.encode(true));
        }
    });
    let n = failing.len() as f64;
    println!("  failure: classify + Verdict::encode (per class)  {:>8.1} ns/op  [{:.1}, {:.1}]  over {} classes", m / n, lo / n, hi / n, failing.len());
}
