//! Renders the docs tables from the one taxonomy/config/metrics table in meshtriage-core into
//! OUT_DIR; `tests/docs_sync.rs` checks the committed docs against them (and rewrites them
//! with MESHTRIAGE_BLESS=1, which `make docs` sets).

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let pages = [
        ("taxonomy.md", meshtriage_core::docs::taxonomy_page()),
        ("reference.md", meshtriage_core::docs::reference_page()),
        ("config-table.md", meshtriage_core::docs::config_markdown()),
        (
            "metrics-table.md",
            meshtriage_core::docs::metrics_markdown(),
        ),
        (
            "attributes-table.md",
            meshtriage_core::docs::attributes_markdown(),
        ),
    ];
    for (name, text) in pages {
        if let Err(e) = std::fs::write(out.join(name), text) {
            println!("cargo:warning=cannot write {name}: {e}");
        }
    }
    println!("cargo:rerun-if-changed=filter/core/src");
    println!("cargo:rerun-if-changed=build.rs");
}
