//! The docs are generated from the code's tables (build.rs); this keeps the committed copies
//! in sync. `MESHTRIAGE_BLESS=1 cargo test --test docs_sync` (or `make docs`) rewrites them.

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check_page(rel: &str, generated: &str) {
    let path = root().join(rel);
    if std::env::var_os("MESHTRIAGE_BLESS").is_some() {
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == generated, "{rel} is stale: run `make docs`");
}

#[test]
fn taxonomy_doc_is_generated_from_the_table() {
    check_page(
        "docs/taxonomy.md",
        include_str!(concat!(env!("OUT_DIR"), "/taxonomy.md")),
    );
}

#[test]
fn reference_doc_is_generated_from_the_tables() {
    check_page(
        "docs/reference.md",
        include_str!(concat!(env!("OUT_DIR"), "/reference.md")),
    );
}

/// The README's generated blocks (between `BEGIN generated: NAME` and `END generated: NAME`).
#[test]
fn readme_tables_match_the_code() {
    let path = root().join("README.md");
    let mut readme = std::fs::read_to_string(&path).unwrap();
    for (name, table) in [
        (
            "config",
            include_str!(concat!(env!("OUT_DIR"), "/config-table.md")),
        ),
        (
            "metrics",
            include_str!(concat!(env!("OUT_DIR"), "/metrics-table.md")),
        ),
    ] {
        let begin = readme
            .find(&format!("<!-- BEGIN generated: {name}"))
            .unwrap_or_else(|| panic!("README.md lacks the {name} block"));
        let body = begin + readme[begin..].find("-->\n").unwrap() + 4;
        let end = readme
            .find(&format!("<!-- END generated: {name} -->"))
            .unwrap();
        if std::env::var_os("MESHTRIAGE_BLESS").is_some() {
            readme.replace_range(body..end, table);
        } else {
            assert!(
                readme[body..end] == *table,
                "README.md's {name} table is stale: run `make docs`"
            );
        }
    }
    if std::env::var_os("MESHTRIAGE_BLESS").is_some() {
        std::fs::write(&path, readme).unwrap();
    }
}
