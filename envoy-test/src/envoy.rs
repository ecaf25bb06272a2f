//! One Envoy process: started from a JSON bootstrap, polled until ready (never a fixed sleep),
//! killed on drop. Gives access to its admin API, Prometheus stats, logs and access log.

use crate::client::request;
use crate::paths;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the harness waits for something Envoy does asynchronously (an access-log line is
/// flushed every 50 ms, a metric appears at the plugin's next 1 s tick or Envoy's stats flush).
/// Normally well under a second; 20 s leaves room for a loaded 2-core machine, and a wait ends
/// as soon as the value is there, so only a failing test pays it.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Envoy {
    child: Child,
    pub dir: PathBuf,
    pub admin_port: u16,
    pub access_log: PathBuf,
    log: PathBuf,
    /// Every listener's name and the port it is bound to, as the admin API reported them once
    /// Envoy was ready (listeners configured with port 0 get theirs from the kernel).
    listeners: Vec<(String, u16)>,
}

impl Envoy {
    /// Starts Envoy with `bootstrap` (admin on an ephemeral port) and waits for `/ready`.
    pub fn start(bootstrap: &serde_json::Value, dir: &Path) -> Envoy {
        let mut cfg = bootstrap.clone();
        cfg["admin"] = serde_json::json!({"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}});
        let cfg_path = dir.join("envoy.json");
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        let admin_path = dir.join("admin.txt");
        let log = dir.join("envoy.log");
        let child = Command::new(paths::envoy_bin())
            .arg("-c")
            .arg(&cfg_path)
            .args([
                "--concurrency",
                "1",
                "--use-dynamic-base-id",
                "--log-level",
                "info",
            ])
            .args(["--file-flush-interval-msec", "50", "--drain-time-s", "0"])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("--log-path")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (run `make venv` or set ENVOY_BIN)",
                    paths::envoy_bin().display()
                )
            });
        let mut envoy = Envoy {
            child,
            dir: dir.to_path_buf(),
            admin_port: 0,
            access_log: dir.join("access.log"),
            log,
            listeners: Vec::new(),
        };
        // V8 compiles the plugin at start-up: a few seconds on a loaded 2-core machine. A
        // generous bound costs nothing when Envoy is quick, and the exit check fails fast.
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                panic!(
                    "envoy exited with {status} during start-up\n{}",
                    envoy.log_tail(60)
                );
            }
            if envoy.admin_port == 0 {
                if let Ok(text) = std::fs::read_to_string(&admin_path) {
                    envoy.admin_port = text
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                }
            }
            if envoy.admin_port != 0 {
                if let Ok(r) = request(envoy.admin_port, "GET", "/ready", &[], b"") {
                    if r.status == 200 {
                        envoy.listeners = envoy.bound_listeners();
                        return envoy;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("envoy not ready after 90 s\n{}", envoy.log_tail(60));
    }

    /// `envoy --mode validate` on a bootstrap: `Ok` or Envoy's complaint.
    pub fn validate(bootstrap_path: &Path) -> Result<(), String> {
        let out = Command::new(paths::envoy_bin())
            .args(["--mode", "validate", "-c"])
            .arg(bootstrap_path)
            .args(["--use-dynamic-base-id", "--log-level", "warn"])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// The port listener `name` is bound to. Test listeners are configured with port 0 (no port
    /// is ever picked by binding and releasing it, which races with every other process on the
    /// machine): the kernel chooses, and `/listeners` says what it chose.
    pub fn port(&self, name: &str) -> u16 {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .or_else(|| {
                // A listener added later (LDS): ask again.
                self.bound_listeners()
                    .into_iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, p)| p)
            })
            .unwrap_or_else(|| {
                panic!(
                    "envoy has no bound listener `{name}`: {}",
                    self.admin("/listeners?format=json")
                )
            })
    }

    /// `(name, port)` of every listener, from `/listeners?format=json`.
    pub fn bound_listeners(&self) -> Vec<(String, u16)> {
        let text = self.admin("/listeners?format=json");
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        doc["listener_statuses"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter_map(|l| {
                        let name = l["name"].as_str()?.to_string();
                        let port = l["local_address"]["socket_address"]["port_value"].as_u64()?;
                        Some((name, u16::try_from(port).ok()?))
                    })
                    .filter(|(_, p)| *p != 0)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn admin(&self, path: &str) -> String {
        request(self.admin_port, "GET", path, &[], b"")
            .map(|r| r.text())
            .unwrap_or_default()
    }

    pub fn admin_post(&self, path: &str) -> String {
        request(self.admin_port, "POST", path, &[], b"")
            .map(|r| r.text())
            .unwrap_or_default()
    }

    /// One counter or gauge from `/stats` (0 when absent), e.g. `cluster.c_app.upstream_rq_active`.
    pub fn stat(&self, name: &str) -> f64 {
        self.admin(&format!("/stats?filter=^{name}$"))
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(": ")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    pub fn prometheus(&self) -> String {
        self.admin("/stats/prometheus")
    }

    /// Sum of every Prometheus sample of `name` whose labels include all of `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_in(&self.prometheus(), name, labels)
    }

    /// Waits (bounded) until `metric` reaches `at_least`; returns the last value.
    pub fn wait_metric(&self, name: &str, labels: &[(&str, &str)], at_least: f64) -> f64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.metric(name, labels);
            if v >= at_least || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn access_log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits (bounded) for an access-log line containing `needle`.
    pub fn wait_access_log(&self, needle: &str) -> Option<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self
                .access_log_lines()
                .into_iter()
                .find(|l| l.contains(needle))
            {
                return Some(line);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// What a failing test prints: Envoy's log tail and the access log.
    pub fn diagnostics(&self) -> String {
        format!(
            "---- envoy log (tail) ----\n{}\n---- access log ----\n{}\n",
            self.log_tail(40),
            self.access_log_lines().join("\n")
        )
    }

    /// Envoy's process id (memory figures; the bench pins it to a CPU and reads its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sum of the samples of `name` in a Prometheus exposition whose labels include `labels`.
pub fn metric_in(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}
