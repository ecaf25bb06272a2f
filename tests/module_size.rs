//! The plugin module stays within its 200 KB budget (docs/performance.md, "Module size").
//! `make wasm` runs binaryen's `wasm-opt` on what cargo builds; cargo alone (`cargo build
//! --release --target wasm32-wasip1 -p meshtriage`, even a no-op rebuild) puts the larger,
//! unoptimized module back at the same path, and this test says so instead of letting the
//! image, the demo and the e2e tests use it unnoticed.

use meshtriage_envoy_test::paths;
use std::path::Path;

const BUDGET: u64 = 200_000;

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| Path::new(&d).join(tool).is_file()))
}

#[test]
fn plugin_module_is_within_budget() {
    if std::env::var_os("MESHTRIAGE_WASM").is_some() {
        meshtriage_suite::skip("MESHTRIAGE_WASM is set: size budget not checked");
        return;
    }
    let path = paths::wasm();
    let size = std::fs::metadata(&path).unwrap().len();
    if size <= BUDGET {
        return;
    }
    if !on_path("wasm-opt") {
        meshtriage_suite::skip(&format!(
            "{} is {size} bytes, over the {BUDGET}-byte budget, and wasm-opt is not installed \
             (apt-get install binaryen, or `make tools`): budget not checked",
            path.display()
        ));
        return;
    }
    panic!(
        "{} is {size} bytes, over the {BUDGET}-byte budget: build it with `make wasm` (cargo \
         alone does not run wasm-opt), or see docs/performance.md for what takes the room",
        path.display()
    );
}
