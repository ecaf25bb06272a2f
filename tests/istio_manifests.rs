//! Keeps the Istio files that restate the plugin's own tables equal to meshtriage-core: the
//! mesh config's `extraStatTags` (the metric labels) and the dashboard's direction variable.
//! Everything else in istio/ is checked by the tools that consume it (`make istio`:
//! istio/tests/run.sh), against the README's generated metric table.

#[cfg(test)]
mod istio_tables {
    use meshtriage_core::metrics as names;
    use meshtriage_core::Direction;
    use serde_json::Value;
    use std::path::Path;

    fn read(rel: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn mesh_config_tags_are_the_plugins_tags() {
        let want = format!("extraStatTags: [{}]", names::TAGS.join(", "));
        for file in [
            "istio/mesh/istiod-values.yaml",
            "istio/mesh/istio-operator.yaml",
        ] {
            assert!(read(file).contains(&want), "{file} lacks `{want}`");
        }
    }

    #[test]
    fn dashboard_direction_variable_lists_every_direction() {
        let dash: Value = serde_json::from_str(&read("istio/monitoring/grafana-dashboard.json"))
            .unwrap_or_default();
        let var = dash["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == "dir")
            .cloned()
            .unwrap_or_default();
        let all: Vec<&str> = Direction::ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(var["query"], all.join(","));
    }
}
