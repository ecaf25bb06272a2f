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

/// Rewrites (bless) or checks the generated blocks of `rel` (between `BEGIN generated: NAME`
/// and `END generated: NAME`).
fn check_blocks(rel: &str, blocks: &[(&str, &str)]) {
    let path = root().join(rel);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (name, table) in blocks {
        let begin = text
            .find(&format!("<!-- BEGIN generated: {name}"))
            .unwrap_or_else(|| panic!("{rel} lacks the {name} block"));
        let body = begin + text[begin..].find("-->\n").unwrap() + 4;
        let end = text
            .find(&format!("<!-- END generated: {name} -->"))
            .unwrap();
        if std::env::var_os("MESHTRIAGE_BLESS").is_some() {
            text.replace_range(body..end, table);
        } else {
            assert!(
                text[body..end] == **table,
                "{rel}'s {name} table is stale: run `make docs`"
            );
        }
    }
    if std::env::var_os("MESHTRIAGE_BLESS").is_some() {
        std::fs::write(&path, text).unwrap();
    }
}

#[test]
fn readme_tables_match_the_code() {
    check_blocks(
        "README.md",
        &[
            (
                "config",
                include_str!(concat!(env!("OUT_DIR"), "/config-table.md")),
            ),
            (
                "metrics",
                include_str!(concat!(env!("OUT_DIR"), "/metrics-table.md")),
            ),
        ],
    );
}

/// SECURITY.md's list of what the plugin reads from Envoy is the attribute catalogue.
#[test]
fn security_reads_table_matches_the_catalogue() {
    check_blocks(
        "SECURITY.md",
        &[(
            "attributes",
            include_str!(concat!(env!("OUT_DIR"), "/attributes-table.md")),
        )],
    );
}

/// Every property the plugin reads goes through the catalogue
/// (`meshtriage_core::attributes`): no property path is spelled out in the glue.
#[test]
fn no_property_path_outside_the_catalogue() {
    for entry in std::fs::read_dir(root().join("filter/src")).unwrap() {
        let path = entry.unwrap().path();
        let src = std::fs::read_to_string(&path).unwrap();
        for (i, line) in src.lines().enumerate() {
            assert!(
                !(line.contains("b\"") && line.contains("\\0")),
                "{}:{}: a property path outside filter/core/src/attributes.rs: {line}",
                path.display(),
                i + 1
            );
        }
    }
}

/// docs/architecture.md promises that no module of `filter/src` imports one that imports it
/// back: the `use crate::…` graph is acyclic.
#[test]
fn filter_modules_have_no_import_cycle() {
    let dir = root().join("filter/src");
    let mut deps: Vec<(String, Vec<String>)> = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let module = path.file_stem().unwrap().to_string_lossy().to_string();
        let src = std::fs::read_to_string(&path).unwrap();
        let mut uses: Vec<String> = src
            .match_indices("crate::")
            .map(|(i, _)| {
                src[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .filter(|m| *m != module)
            .collect();
        uses.sort();
        uses.dedup();
        deps.push((module, uses));
    }
    // Depth-first search for a back edge.
    fn visit(m: &str, deps: &[(String, Vec<String>)], path: &mut Vec<String>) {
        if let Some(i) = path.iter().position(|p| p == m) {
            panic!(
                "import cycle in filter/src: {} -> {m}",
                path[i..].join(" -> ")
            );
        }
        path.push(m.to_string());
        for d in deps.iter().filter(|(n, _)| n == m).flat_map(|(_, d)| d) {
            visit(d, deps, path);
        }
        path.pop();
    }
    assert!(deps.iter().any(|(m, _)| m == "http"));
    for (m, _) in &deps {
        visit(m, &deps, &mut Vec::new());
    }
}
