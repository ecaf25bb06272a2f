//! The misbehaving upstreams of the bed on the fixed ports of `envoy-test/configs/envoy.yaml`,
//! for docker-compose (Envoy shares this container's network namespace, so 127.0.0.1 works).
//! `--certs DIR` first writes throwaway certificates there, then `DIR/ready`. `--ephemeral`
//! binds every server to a port the kernel picks and prints them (`ports app=N …`) instead.

use meshtriage_envoy_test::configs::{
    APP_PORT, BLACKHOLE_PORT, H2_REFUSED_PORT, H2_RST_PORT, REFUSED_PORT,
};
use meshtriage_envoy_test::upstream::{self, H2};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(dir) = args
        .iter()
        .position(|a| a == "--certs")
        .and_then(|i| args.get(i + 1))
    {
        let dir = std::path::Path::new(dir);
        meshtriage_envoy_test::configs::compose_certs(dir);
        std::fs::write(dir.join("ready"), "").unwrap();
        println!("certificates in {}", dir.display());
    }
    if args.iter().any(|a| a == "--ephemeral") {
        // For tools that start their own Envoy (envoy-test/tools/bench_instructions.py): every
        // server binds port 0 and one line on stdout says which ports they got, so no port is
        // guessed. The closed port is held (bound, never listening) while this process runs.
        let app = upstream::http1();
        let rst = upstream::http2(H2::ResetBeforeHeaders);
        let refused_h2 = upstream::http2(H2::Refused);
        let blackhole = upstream::blackhole_at(0);
        let closed = meshtriage_envoy_test::paths::closed_port();
        println!(
            "ports app={} h2_rst={} h2_refused={} blackhole={} refused={}",
            app.port, rst.port, refused_h2.port, blackhole.port, closed.port
        );
        let _ = std::io::Write::flush(&mut std::io::stdout());
        loop {
            std::thread::park();
        }
    }
    let _app = upstream::http1_at(APP_PORT);
    let _rst = upstream::http2_at(H2::ResetBeforeHeaders, H2_RST_PORT);
    let _refused = upstream::http2_at(H2::Refused, H2_REFUSED_PORT);
    let _blackhole = upstream::blackhole_at(BLACKHOLE_PORT);
    println!(
        "upstreams: http/1.1 app :{APP_PORT}, h2 RST_STREAM :{H2_RST_PORT}, h2 REFUSED_STREAM \
         :{H2_REFUSED_PORT}, full backlog :{BLACKHOLE_PORT}, nothing on :{REFUSED_PORT}"
    );
    loop {
        std::thread::park();
    }
}
