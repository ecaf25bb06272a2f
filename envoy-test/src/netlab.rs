//! Real L4 faults: the upstream runs in a network namespace of its own, joined to the host by a
//! veth pair, and iptables rules inside that namespace drop, reset or black-hole its traffic.
//! Envoy stays in the test's namespace, so its admin API and listeners are on 127.0.0.1 as
//! usual. Everything the lab creates (namespace, veth, rules, upstream process) goes on drop,
//! also when a test fails. Needs root, `ip` and `iptables`; `Lab::available` says why not.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

fn base36(mut v: u32) -> String {
    let mut out = Vec::new();
    loop {
        out.extend(char::from_digit(v % 36, 36));
        v /= 36;
        if v == 0 {
            break;
        }
    }
    out.iter().rev().collect()
}

/// A /30 of 10.231.0.0/16 held by one lab: claimed by creating a file named after it
/// (`create_new`, atomic across processes) under /run/meshtriage-netlab, removed on drop, so
/// two labs never put the same addresses on two host interfaces (which would misroute).
struct Subnet {
    claim: PathBuf,
    host: String,
    lab: String,
}

impl Subnet {
    fn claim(owner: &str) -> Subnet {
        let dir = PathBuf::from("/run/meshtriage-netlab");
        let _ = std::fs::create_dir_all(&dir);
        reap_stale(&dir);
        // Start where this process and lab are unlikely to meet another; walk on when taken.
        let start = (std::process::id() as usize * 7 + owner.len()) % 16_384;
        for k in 0..16_384 {
            let i = (start + k) % 16_384;
            let (third, fourth) = (i / 64, (i % 64) * 4);
            let claim = dir.join(format!("10.231.{third}.{fourth}"));
            let created = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&claim);
            if let Ok(mut f) = created {
                // The owning process in decimal, then the lab's name.
                let line = format!("{} {owner}", std::process::id());
                let _ = std::io::Write::write_all(&mut f, line.as_bytes());
                return Subnet {
                    claim,
                    host: format!("10.231.{third}.{}", fourth + 1),
                    lab: format!("10.231.{third}.{}", fourth + 2),
                };
            }
        }
        panic!(
            "no free /30 in 10.231.0.0/16 (stale claims in {}?)",
            dir.display()
        );
    }
}

/// Removes the labs of test processes that died without cleaning up (killed, not failed: a
/// failing test drops its lab): a claim holds `<pid> <lab id>` (pid in decimal); when that
/// process is gone, its namespace, host interface and claim go. A claim still being written
/// (empty) or in another form is left alone.
fn reap_stale(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let Some((pid, owner)) = text
            .split_once(' ')
            .and_then(|(p, o)| Some((p.parse::<u32>().ok()?, o)))
        else {
            continue;
        };
        if owner.is_empty() {
            continue;
        }
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        kill_all_in(&format!("mtlab-{owner}"));
        let _ = run(&["ip", "netns", "del", &format!("mtlab-{owner}")]);
        let _ = run(&["ip", "link", "del", &format!("mth{owner}")]);
        let _ = std::fs::remove_file(entry.path());
    }
}

/// Kills every process in the namespace `ns`: what an upstream forked (nginx's worker)
/// outlives its parent's SIGKILL, and any process left in a namespace keeps it (and its
/// addresses) alive after `ip netns del`.
fn kill_all_in(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = run(&["kill", "-KILL", pid]);
        }
    }
}

impl Drop for Subnet {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.claim);
    }
}

/// Port the lab's upstream listens on, inside its namespace.
pub const PORT: u16 = 8080;

/// The lab upstream: small and large responses, an app error, as a Python stdlib server so
/// it runs inside the namespace as its own process.
const UPSTREAM_PY: &str = r#"
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
LARGE = b"x" * 200_000
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path.startswith("/large"): body, code = LARGE, 200
        elif self.path.startswith("/status/503"): body, code = b"unavailable\n", 503
        else: body, code = b"small\n", 200
        self.send_response(code)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.flush()          # headers in their own (small) packet
        self.wfile.write(body)
ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"#;

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One namespace with an upstream at `addr`:8080, reachable from the host over a veth pair.
pub struct Lab {
    ns: String,
    host_if: String,
    pub host_addr: String,
    pub addr: String,
    upstream: Option<Child>,
    _subnet: Subnet,
}

impl Lab {
    /// `Err(reason)` when this machine cannot build the lab (not root, no ip/iptables).
    pub fn available() -> Result<(), String> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| e.to_string())?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("needs root (network namespaces, veth, iptables)".into());
        }
        for tool in ["ip", "iptables", "python3"] {
            if Command::new(tool).arg("--version").output().is_err() {
                return Err(format!(
                    "needs `{tool}` (apt-get install -y iproute2 iptables)"
                ));
            }
        }
        Ok(())
    }

    /// Creates the namespace, the veth pair and the Python upstream. `n` names the lab in
    /// messages; names and addresses are unique per process and lab (see [`Subnet`]), so labs
    /// of one run and of runs in parallel never collide.
    pub fn start(n: u8) -> Lab {
        Lab::start_with(n, |lab| {
            let script = std::env::temp_dir().join(format!("{}-upstream.py", lab.ns));
            std::fs::write(&script, UPSTREAM_PY).expect("write lab upstream");
            vec![
                "python3".into(),
                script.display().to_string(),
                lab.addr.clone(),
                PORT.to_string(),
            ]
        })
    }

    /// [`Lab::start`] with another upstream: `upstream(lab)` returns the command line (program
    /// first) run inside the namespace; it must listen on `lab.addr`:[`PORT`] (the lab waits
    /// for that). The command may fork (nginx's master and worker): on drop every process in
    /// the namespace is killed, not only the one started here.
    pub fn start_with(n: u8, upstream: impl FnOnce(&Lab) -> Vec<String>) -> Lab {
        static LABS: AtomicU32 = AtomicU32::new(0);
        // Interface names have at most 15 bytes: pid and counter in base 36 keep them short.
        let id = format!(
            "{}x{}",
            base36(std::process::id()),
            base36(LABS.fetch_add(1, Ordering::Relaxed))
        );
        let subnet = Subnet::claim(&id);
        let mut lab = Lab {
            ns: format!("mtlab-{id}"),
            host_if: format!("mth{id}"),
            host_addr: subnet.host.clone(),
            addr: subnet.lab.clone(),
            upstream: None,
            _subnet: subnet,
        };
        let _ = n;
        let peer = format!("mtp{id}");
        let (ns, host_if) = (&lab.ns, &lab.host_if);
        let steps = [
            format!("ip netns add {ns}"),
            format!("ip link add {host_if} type veth peer name {peer}"),
            format!("ip link set {peer} netns {ns}"),
            format!("ip addr add {}/30 dev {host_if}", lab.host_addr),
            format!("ip link set {host_if} up"),
            format!("ip -n {ns} addr add {}/30 dev {peer}", lab.addr),
            format!("ip -n {ns} link set {peer} up"),
            // No segmentation offload on the lab's side: with it, TCP hands iptables 64 KB
            // super-packets (a 1 MB body is ~40 of them), so a drop rule's odds apply per
            // 40 packets instead of per ~700 wire packets and "85 % loss" lets a large body
            // through now and then. One segment per packet makes every rule act on the wire.
            format!("ip -n {ns} link set {peer} gso_max_segs 1"),
            format!("ip -n {ns} link set lo up"),
        ];
        // Names and addresses hold no white space: each step splits into its arguments.
        for step in &steps {
            let args: Vec<&str> = step.split_whitespace().collect();
            if let Err(e) = run(&args) {
                panic!("lab set-up failed: {e}");
            }
        }
        let command = upstream(&lab);
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.ns])
            .args(&command)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start lab upstream");
        lab.upstream = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(
            &format!("{}:{PORT}", lab.addr).parse().expect("addr"),
            Duration::from_millis(300),
        )
        .is_err()
        {
            if let Some(Ok(Some(status))) = lab.upstream.as_mut().map(Child::try_wait) {
                panic!("lab upstream {command:?} exited with {status}");
            }
            assert!(Instant::now() < deadline, "lab upstream did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        lab
    }

    /// Adds an iptables rule inside the namespace (arguments after `iptables`).
    pub fn rule(&self, args: &str) {
        let mut full = vec!["ip", "netns", "exec", &self.ns, "iptables"];
        full.extend(args.split_whitespace());
        run(&full).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs `args` (program first) inside the namespace; its stdout, or why it failed.
    pub fn exec(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args)
            .output()
            .map_err(|e| format!("ip netns exec: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Removes every rule of the namespace.
    pub fn clear_rules(&self) {
        let _ = run(&["ip", "netns", "exec", &self.ns, "iptables", "-F"]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.upstream.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        kill_all_in(&self.ns);
        // Deleting the namespace takes its end of the veth pair, and with it the host's end.
        let _ = run(&["ip", "netns", "del", &self.ns]);
        let _ = run(&["ip", "link", "del", &self.host_if]);
    }
}

/// The fault rules of the scenarios (applied in the upstream's namespace), by name.
pub fn fault(name: &str) -> Vec<String> {
    let p = PORT;
    match name {
        // A middlebox (or a closed port) answers the SYN with a reset.
        "reset_on_connect" => vec![format!("-A INPUT -p tcp --dport {p} -j REJECT --reject-with tcp-reset")],
        // A firewall silently drops SYNs.
        "syn_drop" => vec![format!("-A INPUT -p tcp --dport {p} --tcp-flags SYN,ACK,FIN,RST SYN -j DROP")],
        // A middlebox resets the connection once 20 kB of the response went through.
        "reset_mid_response" => vec![format!(
            "-A INPUT -p tcp --dport {p} -m connbytes --connbytes 20000: --connbytes-dir reply --connbytes-mode bytes -j REJECT --reject-with tcp-reset"
        )],
        // Packets over 1000 bytes vanish: headers pass, a large body never arrives.
        "mtu_black_hole" => vec![format!("-A OUTPUT -p tcp --sport {p} -m length --length 1000:65535 -j DROP")],
        // The first SYN-ACK of every connection is lost: each connect takes one retransmission (~1 s).
        "handshake_loss" => vec![format!("-A OUTPUT -p tcp --sport {p} --tcp-flags SYN,ACK SYN,ACK -m connbytes --connbytes 0:1 --connbytes-dir reply --connbytes-mode packets -j DROP")],
        // Heavy random loss (85 %) on everything the upstream sends.
        "heavy_loss" => vec![format!("-A OUTPUT -p tcp --sport {p} -m statistic --mode random --probability 0.85 -j DROP")],
        other => panic!("unknown fault {other}"),
    }
}

/// An Envoy (in the test's namespace) whose clusters point at the lab upstream:
/// `/c/…` (connect timeout 1 s, route timeout 3 s) and `/patient/…` (connect timeout 5 s,
/// route timeout 3 s). One request per upstream connection, so every request connects anew.
/// On `/c/` the connect timeout must fire before the route timeout (dropped SYNs are a
/// connect timeout, not a slow app): 2 s apart, which a loaded machine cannot close.
pub fn envoy(lab: &Lab, name: &str, plugin_config: &str) -> (crate::Envoy, u16) {
    use crate::bed::{cluster, hcm, http_wasm, listener, router, stats_tags};
    use serde_json::json;
    let dir = crate::paths::scratch(name);
    let wasm = crate::paths::wasm().display().to_string();
    let log = dir.join("access.log").display().to_string();
    let routes = json!([
        {"match": {"prefix": "/c/"}, "route": {"cluster": "lab", "timeout": "3s", "prefix_rewrite": "/"}},
        {"match": {"prefix": "/patient/"}, "route": {"cluster": "lab_patient", "timeout": "3s", "prefix_rewrite": "/"}},
    ]);
    let one_request = |connect: &str| {
        let mut c = cluster(
            "x",
            PORT,
            json!({"connect_timeout": connect,
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "common_http_protocol_options": {"max_requests_per_connection": 1},
                "explicit_http_config": {"http_protocol_options": {}}}}}),
        );
        c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"]["address"] = json!(lab.addr);
        c
    };
    let mut fast = one_request("1s");
    fast["name"] = json!("lab");
    fast["load_assignment"]["cluster_name"] = json!("lab");
    let mut patient = one_request("5s");
    patient["name"] = json!("lab_patient");
    patient["load_assignment"]["cluster_name"] = json!("lab_patient");
    let cfg = json!({
        "node": {"id": "lab-node", "metadata": {"NAME": "lab", "NAMESPACE": "l4"}},
        "stats_config": {"stats_tags": stats_tags()},
        "static_resources": {
            "listeners": [listener("outbound", 0, Some("OUTBOUND"),
                vec![hcm("lab", routes, vec![http_wasm(&wasm, plugin_config), router()], &log)], None)],
            "clusters": [fast, patient],
        }
    });
    let envoy = crate::Envoy::start(&cfg, &dir);
    let port = envoy.port("outbound");
    (envoy, port)
}

/// For the demo: an MTU black hole, a small and a large response through it. Returns
/// `(what, status the client saw, verdict text)` rows, or why the lab cannot run here.
pub fn demo_rows() -> Result<Vec<(String, String, String)>, String> {
    Lab::available()?;
    let lab = Lab::start(9);
    for rule in fault("mtu_black_hole") {
        lab.rule(&rule);
    }
    let (envoy, port) = envoy(&lab, "demo-l4", r#"{"large_payload_bytes": 100000}"#);
    let mut rows = Vec::new();
    for (what, path) in [
        ("MTU black hole: 6-byte response", "/c/small"),
        ("MTU black hole: 200 kB response", "/c/large"),
    ] {
        let r = crate::client::request(port, "GET", path, &[("x-scn", path)], b"")
            .map_err(|e| e.to_string())?;
        let verdict = envoy
            .wait_access_log(&format!("scn={path} "))
            .and_then(|l| crate::verdict::from_access_log(&l))
            .map_or("no verdict (success)".to_string(), |v| {
                format!(
                    "{} {} [{}] (access log)",
                    v.layer,
                    v.class(),
                    v.get("hints").unwrap_or("")
                )
            });
        let status = if r.truncated {
            format!("{}*", r.status)
        } else {
            r.status.to_string()
        };
        rows.push((what.to_string(), status, verdict));
    }
    Ok(rows)
}
