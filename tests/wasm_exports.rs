//! `make wasm` drops the callbacks meshtriage never implements from the module's exports
//! (filter/tools/trim_exports.py), so Envoy skips those crossings into the VM. This keeps the
//! list honest: a dropped callback must not be implemented in filter/src (it would silently
//! never run), and the module the e2e tests load must really be trimmed.

use meshtriage_envoy_test::paths::root;

/// The export names listed in the script's `UNUSED` set.
fn dropped() -> Vec<String> {
    let script = std::fs::read_to_string(root().join("filter/tools/trim_exports.py")).unwrap();
    let set = script.split("UNUSED = {").nth(1).unwrap();
    let set = set.split('}').next().unwrap();
    set.split('"')
        .filter(|s| s.starts_with("proxy_on_"))
        .map(str::to_string)
        .collect()
}

/// The SDK trait method Envoy's export `name` dispatches to.
fn sdk_method(export: &str) -> String {
    let rest = export.trim_start_matches("proxy_on_");
    match rest {
        "request_headers" | "request_trailers" => format!("on_http_{rest}"),
        _ => format!("on_{rest}"),
    }
}

#[test]
fn dropped_callbacks_are_not_implemented() {
    let dropped = dropped();
    assert!(dropped.contains(&"proxy_on_request_headers".to_string()));
    for entry in std::fs::read_dir(root().join("filter/src")).unwrap() {
        let path = entry.unwrap().path();
        let src = std::fs::read_to_string(&path).unwrap();
        for export in &dropped {
            let method = format!("fn {}(", sdk_method(export));
            assert!(
                !src.contains(&method),
                "{} implements `{method}` but make wasm drops `{export}`: remove it from \
                 filter/tools/trim_exports.py",
                path.display()
            );
        }
    }
}

#[test]
fn the_built_module_does_not_export_them() {
    let module = std::fs::read(meshtriage_envoy_test::paths::wasm()).unwrap();
    for export in dropped() {
        let present = module.windows(export.len()).any(|w| w == export.as_bytes());
        assert!(
            !present,
            "{export} is still exported: build with `make wasm`"
        );
    }
    // What Envoy needs is still there.
    for export in [
        "proxy_on_response_headers",
        "proxy_on_log",
        "proxy_on_delete",
    ] {
        assert!(module.windows(export.len()).any(|w| w == export.as_bytes()));
    }
}
