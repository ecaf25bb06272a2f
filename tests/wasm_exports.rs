//! `make wasm` drops the callbacks meshtriage never implements from the module's exports
//! (filter/tools/trim-exports, whose `DROPPED` list is read here), so Envoy skips those
//! crossings into the VM. This keeps the list honest: a dropped callback must not be
//! implemented in filter/src (it would silently never run), and the module the e2e tests load
//! must really be trimmed.

use meshtriage_envoy_test::paths::root;
use meshtriage_trim_exports::{exports, DROPPED};

fn dropped() -> Vec<String> {
    DROPPED.iter().map(|s| s.to_string()).collect()
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
                 DROPPED in filter/tools/trim-exports/src/lib.rs",
                path.display()
            );
        }
    }
}

#[test]
fn the_built_module_does_not_export_them() {
    let module = std::fs::read(meshtriage_envoy_test::paths::wasm()).unwrap();
    let exported = exports(&module).unwrap();
    for export in dropped() {
        assert!(
            !exported.contains(&export),
            "{export} is still exported: build with `make wasm`"
        );
    }
    // What Envoy needs is still there.
    for export in [
        "proxy_on_response_headers",
        "proxy_on_log",
        "proxy_on_delete",
    ] {
        assert!(exported.iter().any(|e| e == export), "{export} is missing");
    }
}
