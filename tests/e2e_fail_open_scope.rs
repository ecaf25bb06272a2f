//! What `failure_policy: FAIL_OPEN` covers in Envoy 1.40, and what it does not (README,
//! "Deploy"; istio/README.md, "Pitfalls"). It covers a VM that fails while serving
//! (`tests/e2e_fail_open.rs`: the request in flight gets a 503, later ones bypass the plugin).
//! It does not cover a module that fails to load, nor a bad `vm_config`: Envoy rejects the
//! whole configuration ("Plugin configured to fail closed failed to load", whatever the
//! policy), so a static bootstrap does not start, and under Istio (ECDS) the update is rejected.

use meshtriage_envoy_test::bed::{router, string_value};
use meshtriage_envoy_test::{paths, Envoy};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A bootstrap with one listener whose only plugin is configured FAIL_OPEN.
fn bootstrap(module: &Path, runtime: &str) -> Value {
    let wasm = json!({"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": "meshtriage", "root_id": "meshtriage", "configuration": string_value("{}"),
                   "failure_policy": "FAIL_OPEN",
                   "vm_config": {"runtime": runtime, "vm_id": "meshtriage",
                                 "code": {"local": {"filename": module.display().to_string()}}}}}});
    let hcm = json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "h",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]},
        "http_filters": [wasm, router()]}});
    json!({"static_resources": {"listeners": [{"name": "l",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [hcm]}]}]}})
}

fn write(dir: &Path, name: &str, cfg: &Value) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(cfg).unwrap()).unwrap();
    path
}

#[test]
fn fail_open_does_not_cover_a_module_that_fails_to_load_or_a_bad_vm_config() {
    let dir = paths::scratch("fail-open-scope");
    let not_wasm = dir.join("not-wasm.wasm");
    std::fs::write(&not_wasm, b"not a WebAssembly module").unwrap();
    let good = paths::wasm();
    assert!(
        good.exists(),
        "{} is missing: run `make wasm`",
        good.display()
    );

    // The control: the same bootstrap with the real module and runtime is valid.
    let ok = write(&dir, "ok.json", &bootstrap(&good, "envoy.wasm.runtime.v8"));
    Envoy::validate(&ok).unwrap_or_else(|e| panic!("the control config is rejected:\n{e}"));

    for (name, cfg, expected) in [
        (
            "a module that is not WebAssembly",
            bootstrap(&not_wasm, "envoy.wasm.runtime.v8"),
            "Plugin configured to fail closed failed to load",
        ),
        (
            "a module file that does not exist",
            bootstrap(&dir.join("missing.wasm"), "envoy.wasm.runtime.v8"),
            "Invalid path",
        ),
        (
            "a vm_config naming a runtime this Envoy lacks",
            bootstrap(&good, "envoy.wasm.runtime.wamr_not_built"),
            "Plugin configured to fail closed failed to load",
        ),
    ] {
        let path = write(&dir, "bad.json", &cfg);
        let err = Envoy::validate(&path)
            .err()
            .unwrap_or_else(|| panic!("{name}: Envoy accepted it despite FAIL_OPEN?"));
        assert!(err.contains(expected), "{name}: {err}");
    }

    // Not only `--mode validate`: a real start on the unloadable module exits (bounded wait).
    let path = write(
        &dir,
        "start.json",
        &bootstrap(&not_wasm, "envoy.wasm.runtime.v8"),
    );
    let log = dir.join("envoy.log");
    let mut child = Command::new(paths::envoy_bin())
        .arg("-c")
        .arg(&path)
        .args(["--use-dynamic-base-id", "--log-level", "warn", "--log-path"])
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("Envoy started serving with a module that cannot load");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("Plugin configured to fail closed failed to load"),
        "{text}"
    );
}
