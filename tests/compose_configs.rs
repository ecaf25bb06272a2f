//! The docker-compose bed, checked by the tools that consume it: the shipped Envoy configs are
//! generated from the tests' builders and current; Envoy 1.40 accepts each of them run as the
//! official image runs it (uid 101, `setpriv`), unmodified, in a chroot with the container's
//! paths and file modes (the config and module bind-mounted, the certificates in /certs);
//! `docker-compose config` accepts the compose file and binds the module long-form.

use meshtriage_core::Direction;
use meshtriage_envoy_test::configs::{self, CERTS_DIR, ENVOY_IMAGE_UID, WASM_PATH};
use meshtriage_envoy_test::{certs, paths};
use meshtriage_suite::skip;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
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

/// Why Envoy cannot be run as the image's user in the container's file layout here, if it
/// cannot: that needs root (mount namespace, chroot, setpriv).
fn cannot_run_as_in_the_container() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some(
            "not root: cannot build the container's file layout nor switch to uid 101".into(),
        );
    }
    for (tool, package) in [
        ("setpriv", "util-linux"),
        ("unshare", "util-linux"),
        ("chroot", "coreutils"),
    ] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Some(format!(
                "{tool} not found: install the Debian package {package}"
            ));
        }
    }
    None
}

/// `envoy --mode validate -c /etc/envoy/envoy.yaml` as the envoy container runs it: in a
/// private mount namespace and a chroot holding what the container holds at the same paths
/// (the committed config and the built module bind-mounted read-only at /etc/envoy, the
/// certificates in /certs as `write_certs` leaves them, the host's /usr for Envoy's libraries),
/// as uid/gid 101 without supplementary groups. Stdout, where the access log goes, is a file
/// owned by uid 101: the image's entrypoint chowns the container's stdout to the envoy user.
fn validate_in_container_layout(name: &str, write_certs: fn(&Path)) -> Result<(), String> {
    let dir = paths::scratch("container");
    let root = dir.join("root");
    for d in ["usr", "dev", "proc", "etc/envoy", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    // /bin, /lib... as on the host: links into /usr (merged /usr) or bind-mounted directories.
    let mut binds = vec![
        ("/usr".to_string(), "/usr".to_string()),
        ("/dev".into(), "/dev".into()),
    ];
    for d in ["bin", "lib", "lib64", "sbin"] {
        let host = Path::new("/").join(d);
        match std::fs::read_link(&host) {
            Ok(target) => std::os::unix::fs::symlink(target, root.join(d)).unwrap(),
            Err(_) if host.is_dir() => {
                std::fs::create_dir_all(root.join(d)).unwrap();
                binds.push((host.display().to_string(), format!("/{d}")));
            }
            Err(_) => {}
        }
    }
    // Mount points for single files, then what they show.
    let files = [
        (
            "/etc/ld.so.cache".to_string(),
            "/etc/ld.so.cache".to_string(),
        ),
        (
            paths::envoy_executable().display().to_string(),
            "/envoy".into(),
        ),
        (
            configs::dir().join(name).display().to_string(),
            format!("/etc/envoy/{name}"),
        ),
        (paths::wasm().display().to_string(), WASM_PATH.into()),
    ];
    for (_, inside) in &files {
        std::fs::write(root.join(inside.trim_start_matches('/')), b"").unwrap();
    }
    binds.extend(files);
    std::fs::create_dir_all(root.join(CERTS_DIR.trim_start_matches('/'))).unwrap();
    write_certs(&root.join(CERTS_DIR.trim_start_matches('/')));
    let stdout = dir.join("stdout");
    let file = std::fs::File::create(&stdout).map_err(|e| e.to_string())?;
    std::os::unix::fs::chown(&stdout, Some(ENVOY_IMAGE_UID), Some(ENVOY_IMAGE_UID))
        .map_err(|e| e.to_string())?;
    let mut script = String::from("set -e\n");
    for (host, inside) in &binds {
        let at = root.join(inside.trim_start_matches('/'));
        script += &format!("mount --bind '{host}' '{}'\n", at.display());
        script += &format!("mount -o remount,bind,ro '{}'\n", at.display());
    }
    script += &format!("mount -t proc proc '{}'\n", root.join("proc").display());
    let id = ENVOY_IMAGE_UID;
    script += &format!(
        "exec chroot '{}' setpriv --reuid {id} --regid {id} --clear-groups /envoy --mode validate \
         -c /etc/envoy/{name} --use-dynamic-base-id --log-level warn\n",
        root.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdout(file)
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

/// Without root: each shipped config with its container paths pointed at local copies, run as
/// the current user (what can be checked there).
fn validate_locally(name: &str, text: &str) -> Result<(), String> {
    let dir = paths::scratch("validate");
    let certs = dir.join("certs");
    configs::compose_certs(&certs);
    let local = text
        .replace(WASM_PATH, &paths::wasm().display().to_string())
        .replace(&format!("{CERTS_DIR}/"), &format!("{}/", certs.display()));
    let path = dir.join(name);
    std::fs::write(&path, local).unwrap();
    let out = Command::new(paths::envoy_executable())
        .args(["--mode", "validate", "-c"])
        .arg(&path)
        .args(["--use-dynamic-base-id", "--log-level", "warn"])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    Err(String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn envoy_as_the_images_user_validates_every_shipped_config() {
    let why_not = cannot_run_as_in_the_container();
    if let Some(why) = &why_not {
        skip(&format!("{why}; validating as the current user only"));
    }
    for (name, text) in configs::render() {
        let result = match why_not {
            None => validate_in_container_layout(name, |d| {
                configs::compose_certs(d);
            }),
            Some(_) => validate_locally(name, &text),
        };
        if let Err(e) = result {
            panic!("envoy --mode validate (as the envoy container runs it) rejected {name}:\n{e}");
        }
    }
}

#[test]
fn a_key_only_root_can_read_fails_as_the_images_user() {
    // What the compose bed shipped before: keys as OpenSSL 3 writes them (0600, root). The check
    // above must be able to see that: Envoy as uid 101 cannot load the key.
    if let Some(why) = cannot_run_as_in_the_container() {
        skip(&why);
        return;
    }
    let err = validate_in_container_layout("envoy.yaml", |d| {
        let certs = certs::generate(d);
        let mode = std::fs::metadata(&certs.server_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "openssl writes keys 0600");
    })
    .expect_err("uid 101 cannot read a 0600 root key");
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
