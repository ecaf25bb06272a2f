//! The shipped Envoy configs (docker-compose) are generated from the tests' builders, are
//! current, and Envoy 1.40 accepts each of them (`envoy --mode validate`).

use meshtriage_core::Direction;
use meshtriage_envoy_test::configs::{self, CERTS_DIR, WASM_PATH};
use meshtriage_envoy_test::{certs, paths, Envoy};

#[test]
fn shipped_envoy_configs_are_generated_from_the_bed() {
    for (name, text) in configs::render() {
        let path = configs::dir().join(name);
        if std::env::var_os("MESHTRIAGE_BLESS").is_some() {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "{} is stale: run `cargo run -p meshtriage-envoy-test --bin gen-configs`",
            path.display()
        );
    }
}

#[test]
fn envoy_validates_every_shipped_config() {
    let dir = paths::scratch("validate");
    let certs = certs::generate(&dir.join("certs"));
    let certs_dir = certs.ca.parent().unwrap().display().to_string();
    for (name, text) in configs::render() {
        // The container paths, pointed at this machine's plugin and certificates.
        let local = text
            .replace(WASM_PATH, &paths::wasm().display().to_string())
            .replace(&format!("{CERTS_DIR}/"), &format!("{certs_dir}/"));
        let path = dir.join(name);
        std::fs::write(&path, local).unwrap();
        if let Err(e) = Envoy::validate(&path) {
            panic!("envoy --mode validate rejected {name}:\n{e}");
        }
    }
}

#[test]
fn compose_mounts_what_the_configs_expect() {
    let compose =
        std::fs::read_to_string(paths::root().join("envoy-test/docker-compose.yaml")).unwrap();
    for (name, _) in configs::render() {
        assert!(
            compose.contains(&format!("./configs/{name}:")),
            "{name} not mounted"
        );
    }
    assert!(compose.contains(&format!(":{WASM_PATH}:ro")));
    assert!(compose.contains(&format!("certs:{CERTS_DIR}")));
    assert!(compose.contains("envoyproxy/envoy:v1.40"));
    for port in [
        configs::OUTBOUND_PORT,
        configs::INBOUND_PORT,
        configs::ADMIN_PORT,
    ] {
        assert!(
            compose.contains(&format!("\"{port}:{port}\"")),
            "port {port}"
        );
    }
}

#[test]
fn shipped_listeners_state_their_direction() {
    // Each listener's direction is known statically, so its copy of the plugin configuration
    // states it and the plugin skips the per-request `xds.listener_direction` read.
    let cfg = configs::compose_bootstrap();
    let mut seen = Vec::new();
    for l in cfg["static_resources"]["listeners"].as_array().unwrap() {
        let Some(dir) = l["traffic_direction"].as_str() else {
            continue;
        };
        for chain in l["filter_chains"].as_array().unwrap() {
            for f in chain["filters"].as_array().unwrap() {
                for h in f["typed_config"]["http_filters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if h["name"] != "envoy.filters.http.wasm" {
                        continue;
                    }
                    let text = h["typed_config"]["config"]["configuration"]["value"]
                        .as_str()
                        .unwrap();
                    let plugin: serde_json::Value = serde_json::from_str(text).unwrap();
                    assert_eq!(
                        plugin["direction"],
                        dir.to_lowercase(),
                        "listener {}",
                        l["name"]
                    );
                    let expected = match dir {
                        "INBOUND" => Direction::Inbound,
                        _ => Direction::Outbound,
                    };
                    let parsed = meshtriage_core::config::parse(text.as_bytes()).unwrap();
                    assert_eq!(parsed.direction, Some(expected));
                    seen.push(dir.to_string());
                }
            }
        }
    }
    seen.sort();
    assert_eq!(seen, ["INBOUND", "OUTBOUND"]);
}
