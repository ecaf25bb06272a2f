#![allow(clippy::unwrap_used)]
use meshtriage_envoy_test::bed::{cluster, hcm, http_wasm, listener, router, stats_tags, with_direction};
use meshtriage_envoy_test::envoy::Envoy;
use meshtriage_envoy_test::{paths, request, real_software};
use serde_json::json;
#[test]
fn measure() {
    let racer = real_software::keepalive_racer();
    let dir = paths::scratch("race");
    let log = dir.join("access.log").display().to_string();
    let wasm = paths::wasm().display().to_string();
    let port = paths::free_port();
    let routes = json!([{"match": {"prefix": "/"}, "route": {"cluster": "c", "timeout": "5s"}}]);
    let b = json!({"stats_config": {"stats_tags": stats_tags()}, "static_resources": {
        "listeners": [listener("o", port, Some("OUTBOUND"), vec![hcm("o", routes, vec![http_wasm(&wasm, &with_direction("{}", "outbound")), router()], &log)], None)],
        "clusters": [cluster("c", racer.port, json!({}))]}});
    let e = Envoy::start(&b, &dir);
    for i in 0..5 {
        let a = request(port, "GET", "/ok", &[("x-scn", &format!("ok{i}"))], b"").unwrap();
        let r = request(port, "GET", "/reuse", &[("x-scn", &format!("race{i}"))], b"").unwrap();
        let c = request(port, "GET", "/close-now", &[("x-scn", &format!("close{i}"))], b"").unwrap();
        println!("{} {} {}", a.status, r.status, c.status);
        println!("race: {:?}\nclose: {:?}", r.header("x-meshtriage"), c.header("x-meshtriage"));
    }
    drop(e);
}
