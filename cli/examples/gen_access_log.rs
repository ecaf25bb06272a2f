//! Writes an Istio-format access log of a given size for `make bench-logs`: mesh-like successes
//! and about 2 % failing requests whose status, flags, details and transport failure reason are
//! the ones Envoy 1.40 wrote in the scenario matrix (tests/fixtures/istio-text.log), across
//! every class the matrix produces. Deterministic (a fixed-seed generator).
//!
//! `cargo run --release -p meshtriage-cli --example gen_access_log -- OUT BYTES [FAIL_PERMILLE]`

use std::io::Write;

/// A tiny xorshift generator: reproducible files without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len() as u64) as usize)
    }
}

/// (status, flags, details, transport failure reason) of every failing line of the fixture.
fn failures() -> Vec<(String, String, String, String)> {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/istio-text.log");
    let text = std::fs::read_to_string(fixture).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        // `...HTTP/1.1" 503 UF details - "reason" ...`
        let Some((_, rest)) = line.split_once("\" ") else {
            continue;
        };
        let mut words = rest.splitn(4, ' ');
        let (Some(code), Some(flags), Some(details), Some(rest)) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            continue;
        };
        if flags == "-" && details == "via_upstream" && !code.starts_with('5') {
            continue; // a success (or a gRPC error the fields cannot show)
        }
        let reason = rest
            .split_once(" \"")
            .and_then(|(_, r)| r.split_once('"'))
            .map_or("-", |(r, _)| r);
        out.push((code.into(), flags.into(), details.into(), reason.into()));
    }
    out
}

const SERVICES: [&str; 6] = [
    "reviews",
    "ratings",
    "details",
    "productpage",
    "checkout",
    "cart",
];
const PATHS: [&str; 6] = [
    "/api/v1/items?page=2",
    "/reviews/0",
    "/ratings/7",
    "/health",
    "/api/v1/cart/checkout",
    "/static/app.js",
];
const AGENTS: [&str; 3] = [
    "Go-http-client/1.1",
    "curl/8.5.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
];
const OK: [&str; 6] = ["200", "200", "200", "201", "204", "404"];

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(out), Some(bytes)) = (args.get(1), args.get(2).and_then(|b| b.parse::<u64>().ok()))
    else {
        eprintln!("usage: gen_access_log OUT BYTES [FAIL_PERMILLE]");
        std::process::exit(2);
    };
    let permille = args.get(3).and_then(|p| p.parse().ok()).unwrap_or(20u64);
    let failures = failures();
    if failures.is_empty() {
        eprintln!("gen_access_log: no failing lines in tests/fixtures/istio-text.log");
        std::process::exit(2);
    }
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut written, mut lines, mut failing) = (0u64, 0u64, 0u64);
    let mut line = String::with_capacity(512);
    while written < bytes {
        use std::fmt::Write as _;
        line.clear();
        let ms = lines * 3; // ~330 requests per second
        let (s, m, h) = (ms / 1000 % 60, ms / 60_000 % 60, 10 + ms / 3_600_000 % 14);
        let svc = rng.pick(&SERVICES).copied().unwrap_or("reviews");
        let (code, flags, details, reason) = if rng.below(1000) < permille {
            failing += 1;
            let f = rng.pick(&failures).cloned().unwrap_or_default();
            (f.0, f.1, f.2, f.3)
        } else {
            let code = rng.pick(&OK).copied().unwrap_or("200");
            (code.into(), "-".into(), "via_upstream".into(), "-".into())
        };
        let id = (rng.next(), rng.next());
        let _ = writeln!(
            line,
            "[2026-12-07T{h:02}:{m:02}:{s:02}.{:03}Z] \"GET {} HTTP/1.1\" {code} {flags} {details} - \"{reason}\" 0 {} {} {} \"-\" \"{}\" \"{:08x}-{:04x}-{:04x}-{:04x}-{:012x}\" \"{svc}.default.svc.cluster.local:9080\" \"10.244.{}.{}:9080\" outbound|9080||{svc}.default.svc.cluster.local 10.244.0.12:{} 10.96.{}.{}:9080 10.244.0.12:{} - default",
            ms % 1000,
            rng.pick(&PATHS).copied().unwrap_or("/"),
            rng.below(20_000),
            rng.below(300),
            rng.below(290),
            rng.pick(&AGENTS).copied().unwrap_or("-"),
            id.0 as u32,
            (id.0 >> 32) as u16,
            (id.0 >> 48) as u16,
            id.1 as u16,
            id.1 >> 16 & 0xffff_ffff_ffff,
            rng.below(255),
            rng.below(255),
            30_000 + rng.below(30_000),
            rng.below(255),
            rng.below(255),
            30_000 + rng.below(30_000),
        );
        w.write_all(line.as_bytes())?;
        written += line.len() as u64;
        lines += 1;
    }
    w.flush()?;
    eprintln!(
        "gen_access_log: {out}: {written} bytes, {lines} lines, {failing} failing ({:.2} %)",
        100.0 * failing as f64 / lines.max(1) as f64
    );
    Ok(())
}
