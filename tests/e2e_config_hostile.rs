//! Hostile plugin configuration against a real Envoy 1.40: every key with a wrong type or
//! value, unknown keys, huge values, non-JSON bytes, and a configuration pushed at run time
//! (LDS from a watched file) that goes good → bad → good. Envoy never refuses the
//! configuration, traffic keeps flowing with its verdicts, the error log names the key, and the
//! last good configuration stays in force until a good one replaces it.

use meshtriage_core::metrics::CONFIG_ERRORS;
use meshtriage_envoy_test::bed::{
    cluster, file_access_log, router, stats_tags, string_value, ACCESS_FORMAT,
};
use meshtriage_envoy_test::envoy::Envoy;
use meshtriage_envoy_test::upstream::{self, Upstream};
use meshtriage_envoy_test::{client, paths, verdict, Response};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

fn wasm_filter(plugin: &str, configuration: Value) -> Value {
    json!({"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": plugin, "root_id": "meshtriage", "configuration": configuration,
                   "vm_config": {"runtime": "envoy.wasm.runtime.v8", "vm_id": "meshtriage",
                                 "code": {"local": {"filename": paths::wasm().display().to_string()}}},
                   "failure_policy": "FAIL_OPEN"}}})
}

/// A listener on `port` with meshtriage (`plugin`, `configuration`) and a router: `/uf` goes to
/// a closed port, everything else to the app.
fn listener(name: &str, port: u16, plugin: &str, configuration: Value, log: &Path) -> Value {
    let routes = json!([
        {"match": {"prefix": "/uf"}, "route": {"cluster": "c_refused", "timeout": "5s"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "c_app", "timeout": "5s"}},
    ]);
    let hcm = json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": name, "codec_type": "AUTO",
        "access_log": file_access_log(&log.display().to_string()),
        "route_config": {"name": name, "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": [wasm_filter(plugin, configuration), router()]}});
    json!({"name": name, "traffic_direction": "OUTBOUND",
           "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
           "filter_chains": [{"filters": [hcm]}]})
}

fn clusters(app: &Upstream, refused: &paths::ClosedPort) -> Value {
    json!([
        cluster("c_app", app.port, json!({})),
        cluster("c_refused", refused.port, json!({})),
    ])
}

fn get(envoy: &Envoy, port: u16, path: &str) -> Response {
    client::request(port, "GET", path, &[("x-scn", path)], b"")
        .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", envoy.diagnostics()))
}

/// The plugin's error lines in Envoy's log.
fn config_error_lines(envoy: &Envoy) -> Vec<String> {
    envoy
        .log_text()
        .lines()
        .filter(|l| l.contains("invalid meshtriage configuration"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_bad_key_is_named_and_traffic_keeps_flowing() {
    let text = |s: &str| string_value(s);
    let obj = |v: Value| string_value(&v.to_string());
    // (configuration, the field the error must name; "" = a good configuration)
    let cases: Vec<(Value, &str)> = vec![
        (obj(json!({"header": 5})), "header"),
        (obj(json!({"header": "X Bad"})), "header"),
        (obj(json!({"header": "x".repeat(100)})), "header"),
        (obj(json!({"header": ":status"})), "header"),
        (obj(json!({"expose_header": "no"})), "expose_header"),
        (obj(json!({"hop": 7})), "hop"),
        (obj(json!({"hop": "h".repeat(1 << 20)})), "hop"),
        (
            obj(json!({"trust_upstream": "sometimes"})),
            "trust_upstream",
        ),
        (obj(json!({"trust_upstream": 1})), "trust_upstream"),
        (obj(json!({"failure_statuses": "5xx"})), "failure_statuses"),
        (
            obj(json!({"failure_statuses": [700]})),
            "failure_statuses[0]",
        ),
        (
            obj(json!({"grpc_failure_codes": [99]})),
            "grpc_failure_codes[0]",
        ),
        (
            obj(json!({"grpc_failure_codes": {"a": 1}})),
            "grpc_failure_codes",
        ),
        (obj(json!({"include_detail": 1})), "include_detail"),
        (obj(json!({"proxy_status": "true"})), "proxy_status"),
        (
            obj(json!({"large_payload_bytes": -1})),
            "large_payload_bytes",
        ),
        (
            obj(json!({"large_payload_bytes": 1e300})),
            "large_payload_bytes",
        ),
        (
            obj(json!({"retry_budget": {"ratio": "x"}})),
            "retry_budget.ratio",
        ),
        (
            obj(json!({"retry_budget": {"window_seconds": 99999}})),
            "retry_budget.window_seconds",
        ),
        (obj(json!({"retry_budget": 3})), "retry_budget"),
        (obj(json!({"bogus": 1})), "bogus"),
        (text("not json"), "(document)"),
        (text("[]"), "(document)"),
        (text("{\"header\": \"x-a\""), "(document)"),
        // Non-UTF-8 bytes (protobuf BytesValue): Envoy hands them over as they are.
        (
            json!({"@type": "type.googleapis.com/google.protobuf.BytesValue", "value": "//79AHs="}),
            "(document)",
        ),
        (text(""), ""),
        (text("{}"), ""),
        // Several bad keys: one line naming all of them (the first is checked here, every
        // one below).
        (
            obj(json!({"header": 5, "bogus": 1, "retry_budget": {"ratio": 0}})),
            "bogus",
        ),
    ];
    let dir = paths::scratch("config-bad-keys");
    let app = upstream::http1();
    let log = dir.join("access.log");
    let refused = paths::closed_port();
    // Every listener binds port 0; their ports are looked up once Envoy is ready.
    let listeners: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, (cfg, _))| listener(&format!("l{i}"), 0, &format!("bad-{i}"), cfg.clone(), &log))
        .collect();
    let cfg = json!({
        "node": {"id": "cfg-node", "cluster": "bed"},
        "stats_config": {"stats_tags": stats_tags()},
        "static_resources": {"listeners": listeners, "clusters": clusters(&app, &refused)}
    });
    // Envoy accepts every one of them (a refused configuration would fail the start).
    let envoy = Envoy::start(&cfg, &dir);
    let ports: Vec<u16> = (0..cases.len())
        .map(|i| envoy.port(&format!("l{i}")))
        .collect();
    // The log is flushed asynchronously: wait (bounded) for the last bad plugin's line.
    let last_bad = cases.iter().rposition(|(_, f)| !f.is_empty()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !config_error_lines(&envoy)
        .iter()
        .any(|l| l.contains(&format!("(plugin `bad-{last_bad}`)")))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let lines = config_error_lines(&envoy);
    let mut bad = Vec::new();
    for (i, ((_, field), port)) in cases.iter().zip(&ports).enumerate() {
        let plugin = format!("bad-{i}");
        let mine: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains(&format!("(plugin `{plugin}`)")))
            .collect();
        if field.is_empty() {
            if !mine.is_empty() {
                bad.push(format!("{plugin}: a good config logged {mine:?}"));
            }
        } else if mine.is_empty() {
            bad.push(format!("{plugin}: no error line for `{field}`"));
        } else {
            for l in &mine {
                let named = l.contains(&format!("field `{field}`"));
                let defaults = l.contains("using the defaults");
                if !named || !defaults || !l.contains("[error]") || l.len() > 600 {
                    bad.push(format!("{plugin}: want field `{field}`: {l}"));
                }
            }
        }
        // Traffic flows with the defaults: verdicts on failures, successes untouched.
        let r = get(&envoy, *port, "/uf");
        match r.header("x-meshtriage").map(verdict::parse) {
            Some(v) if r.status == 503 && v[0].class() == "connect_refused" => {}
            _ => bad.push(format!("{plugin}: /uf gave {} {:?}", r.status, r.headers)),
        }
        let r = get(&envoy, *port, "/ok");
        if r.status != 200 || r.header("x-meshtriage").is_some() {
            bad.push(format!("{plugin}: /ok gave {} {:?}", r.status, r.headers));
        }
    }
    assert!(
        bad.is_empty(),
        "{}\n---- error lines ----\n{}",
        bad.join("\n"),
        lines.join("\n")
    );
    // The configuration with several bad keys: each of its error lines (one per VM that loads
    // it) names every key.
    let several = format!("(plugin `bad-{}`)", cases.len() - 1);
    let mine: Vec<&String> = lines.iter().filter(|l| l.contains(&several)).collect();
    assert!(!mine.is_empty());
    for l in mine {
        for field in ["bogus", "header", "retry_budget.ratio"] {
            assert!(l.contains(&format!("field `{field}`")), "{field}: {l}");
        }
    }
    let want = cases.iter().filter(|(_, f)| !f.is_empty()).count() as f64;
    assert!(envoy.metric(CONFIG_ERRORS, &[]) >= want);
}

/// Envoy reading its listeners from `lds.json` in `dir` (LDS from a watched file).
struct Lds {
    envoy: Envoy,
    dir: std::path::PathBuf,
    _app: Upstream,
    _refused: paths::ClosedPort,
    version: u32,
}

/// Writes the listener (port 0) with plugin configuration `config` to `dir/lds.json`
/// atomically (write, then rename over the watched file).
fn write_lds(dir: &Path, version: u32, config: &str) {
    let mut l = listener(
        "dyn",
        0,
        "meshtriage",
        string_value(config),
        &dir.join("access.log"),
    );
    l["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
    let doc = json!({"version_info": version.to_string(), "resources": [l]});
    let tmp = dir.join("lds.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&doc).unwrap()).unwrap();
    std::fs::rename(&tmp, dir.join("lds.json")).unwrap();
}

impl Lds {
    fn start(config: &str) -> Lds {
        let dir = paths::scratch("config-lds");
        let app = upstream::http1();
        let refused = paths::closed_port();
        write_lds(&dir, 1, config);
        let cfg = json!({
            "node": {"id": "lds-node", "cluster": "bed"},
            "stats_config": {"stats_tags": stats_tags()},
            "dynamic_resources": {"lds_config": {"resource_api_version": "V3",
                "path_config_source": {"path": dir.join("lds.json")}}},
            "static_resources": {"clusters": clusters(&app, &refused)}
        });
        Lds {
            envoy: Envoy::start(&cfg, &dir),
            dir,
            _app: app,
            _refused: refused,
            version: 1,
        }
    }

    /// The listener's port, asked anew each time: an update keeps the bound socket, and if
    /// Envoy ever re-bound it the test would follow instead of failing on a stale port.
    fn port(&self) -> u16 {
        self.envoy
            .bound_listeners()
            .into_iter()
            .find(|(n, _)| n == "dyn")
            .map(|(_, p)| p)
            .unwrap_or_else(|| panic!("no listener dyn\n{}", self.envoy.diagnostics()))
    }

    fn stat(&self, name: &str) -> u64 {
        self.envoy
            .admin(&format!("/stats?filter=^{}$", name.replace('.', "\\.")))
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Pushes `config` and waits (bounded) until Envoy has applied it to the listener.
    fn push(&mut self, config: &str) {
        let before = self.stat("listener_manager.lds.update_success");
        let updated = self.stat("listener_manager.listener_in_place_updated")
            + self.stat("listener_manager.listener_modified");
        self.version += 1;
        write_lds(&self.dir, self.version, config);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let done = self.stat("listener_manager.lds.update_success") > before
                && self.stat("listener_manager.listener_in_place_updated")
                    + self.stat("listener_manager.listener_modified")
                    > updated
                && self.stat("listener_manager.total_listeners_warming") == 0
                && self.stat("listener_manager.total_filter_chains_draining") == 0;
            if done {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "LDS update not applied\n{}",
                self.envoy.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The verdict header name a failing request gets, and that it carries a verdict.
    fn verdict_header(&self) -> String {
        let port = self.port();
        let r = get(&self.envoy, port, "/uf");
        assert_eq!(r.status, 503, "{}", self.envoy.diagnostics());
        let names: Vec<&str> = r
            .headers
            .iter()
            .filter(|(_, v)| v.starts_with("l4;class=connect_refused"))
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names.len(), 1, "{:?}", r.headers);
        assert_eq!(get(&self.envoy, port, "/ok").status, 200);
        names[0].to_string()
    }
}

#[test]
fn a_config_update_good_bad_good_keeps_the_last_good_one() {
    let mut lds = Lds::start(r#"{"header": "x-first"}"#);
    assert_eq!(lds.verdict_header(), "x-first");
    assert!(config_error_lines(&lds.envoy).is_empty());
    let errors = lds.envoy.metric(CONFIG_ERRORS, &[]);

    // A bad update: logged with its key, counted, and the previous good config stays.
    lds.push(r#"{"header": "x-second", "include_detail": "sometimes"}"#);
    let deadline = Instant::now() + Duration::from_secs(10);
    while config_error_lines(&lds.envoy).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let lines = config_error_lines(&lds.envoy);
    assert!(!lines.is_empty(), "{}", lds.envoy.log_tail(40));
    // Envoy first runs a new configuration in a throwaway clone of the VM (its configuration
    // canary), which has no last good configuration and says so; the VMs serving traffic keep
    // theirs.
    assert!(
        lines
            .iter()
            .all(|l| l.contains("field `include_detail`") && l.contains("(plugin `meshtriage`)")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("keeping the last good configuration")),
        "{lines:?}"
    );
    assert!(lds.envoy.wait_metric(CONFIG_ERRORS, &[], errors + 1.0) > errors);
    assert_eq!(
        lds.verdict_header(),
        "x-first",
        "the last good config stays"
    );

    // Non-JSON bytes: the same.
    lds.push("\u{1}\u{2} not json at all");
    assert_eq!(lds.verdict_header(), "x-first");

    // A good update applies again.
    lds.push(r#"{"header": "x-third"}"#);
    assert_eq!(lds.verdict_header(), "x-third");
    let log = lds.envoy.access_log_lines().join("\n");
    assert!(!log.contains("wasm_fail_stream"), "{log}");
    assert!(log.contains(ACCESS_FORMAT.split(' ').next().unwrap()));
}
