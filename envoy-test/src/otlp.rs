//! An OTLP/HTTP trace receiver for tests: `envoy-test/tools/otlp_receiver.py`, which decodes
//! Envoy's OpenTelemetry exports with the OpenTelemetry protobufs (PyPI `opentelemetry-proto`),
//! run from a venv under target/ that the first use creates. When Python or the package
//! cannot be had, [`start`] says why and the test skips, naming the package.

use crate::paths;
use crate::zipkin::Span;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

/// The PyPI package the receiver needs.
pub const PACKAGE: &str = "opentelemetry-proto";
/// The path Envoy posts to.
pub const ENDPOINT: &str = "/v1/traces";

/// The running receiver; stopped (its stdin closed, then killed) on drop.
pub struct Receiver {
    pub port: u16,
    child: Child,
    _stdin: Option<ChildStdin>,
    out: PathBuf,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self._stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The venv's Python with the package, set up once per process.
fn python() -> Result<PathBuf, String> {
    static SETUP: Mutex<()> = Mutex::new(());
    let _guard = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let venv = paths::root().join("target/otlp-venv");
    let py = venv.join("bin/python");
    let ready = |py: &Path| {
        Command::new(py)
            .args([
                "-c",
                "import opentelemetry.proto.collector.trace.v1.trace_service_pb2",
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ready(&py) {
        return Ok(py);
    }
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "-q",
        "--disable-pip-version-check",
        PACKAGE,
    ]))?;
    if ready(&py) {
        Ok(py)
    } else {
        Err(format!("{PACKAGE} installed but not importable"))
    }
}

/// Starts the receiver, writing spans under `dir`; `Err` names what is missing.
pub fn start(dir: &Path) -> Result<Receiver, String> {
    let py = python().map_err(|e| format!("PyPI package {PACKAGE} unavailable: {e}"))?;
    let out = dir.join("otlp-spans.jsonl");
    let script = paths::root().join("envoy-test/tools/otlp_receiver.py");
    let mut child = Command::new(py)
        .arg(&script)
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    let stdin = child.stdin.take();
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    match line.trim().parse() {
        Ok(port) => Ok(Receiver {
            port,
            child,
            _stdin: stdin,
            out,
        }),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("{} did not report its port", script.display()))
        }
    }
}

impl Receiver {
    /// Spans received so far, and the receiver's protocol errors.
    pub fn read(&self) -> (Vec<Span>, Vec<String>) {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let mut spans = Vec::new();
        let mut errors = Vec::new();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue; // a line still being written
            };
            if let Some(e) = v["error"].as_str() {
                errors.push(e.to_string());
                continue;
            }
            let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
            let tags: BTreeMap<String, String> = v["tags"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            spans.push(Span {
                trace_id: s("trace_id"),
                id: s("id"),
                parent_id: v["parent_id"].as_str().map(str::to_string),
                name: s("name"),
                kind: s("kind"),
                timestamp_us: 0,
                duration_us: 0,
                local_service: s("service"),
                tags,
            });
        }
        (spans, errors)
    }
}
