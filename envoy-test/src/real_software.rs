//! Real third-party software for tests/e2e_real_software.rs: nginx and HAProxy from Debian,
//! started on loopback sockets this process bound (port 0, read back, handed over as an
//! inherited file descriptor: no port race); Apache httpd on a port held by an `SO_REUSEPORT`
//! reservation until it has bound it (Squid: an `SO_REUSEADDR` one); Varnish on port 0, read
//! back over its CLI; plus tiny raw backends (one that holds every connection open, one that
//! closes each connection unanswered, an app that answers the status its path names). A program that is missing and cannot be
//! installed makes its scenario skip with a message naming the package.

use crate::paths;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

/// `bin` from the Debian package `package`: found, else installed with apt-get (root only),
/// else `Err` saying why the scenario must be skipped (the test reports it with
/// `meshtriage_suite::skip`, which `cargo test` shows even for a passing test).
pub fn tool(bin: &str, package: &str) -> Result<PathBuf, String> {
    let find = || {
        ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(bin))
            .find(|p| p.exists())
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    static UPDATE: Once = Once::new();
    UPDATE.call_once(|| {
        let _ = Command::new("apt-get")
            .args(["update", "-qq"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    });
    let _ = Command::new("apt-get")
        .args([
            "-o",
            "DPkg::Lock::Timeout=600",
            "install",
            "-y",
            "-qq",
            package,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    find().ok_or_else(|| {
        format!("{bin} not found and the Debian package `{package}` could not be installed (apt-get as root)")
    })
}

/// A daemon started here (nginx, HAProxy, Apache httpd, Varnish, Squid, ...); killed on drop.
pub struct Daemon {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Daemon {
    /// Waits (at most `secs`) until `port_in(log)` finds the port the daemon `what` wrote to
    /// its log (it bound port 0 itself); panics with the log if it exits or never says.
    fn from_log(
        child: Child,
        dir: PathBuf,
        what: &str,
        secs: u64,
        port_in: impl Fn(&str) -> Option<u16>,
    ) -> Daemon {
        let mut daemon = Daemon {
            child,
            port: 0,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(secs);
        while daemon.port == 0 {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("{what} exited with {status}\n{}", daemon.log());
            }
            daemon.port = port_in(&daemon.log()).unwrap_or(0);
            assert!(
                Instant::now() < deadline,
                "{what}: no port in its log\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    /// SIGTERM first: nginx's master then stops its worker, which a SIGKILL of the master
    /// orphans (it kept running, holding the listening socket). SIGKILL after 2 s for a daemon
    /// that does not stop. The child is not reaped before the signal, so its pid is still ours.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = self.child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Binds 127.0.0.1:0 in a small python3 launcher, then runs `program` with the listening socket
/// inherited. `config(port, fd)` returns the program's arguments and extra environment,
/// written once the port is known. Waits (bounded) until the port accepts connections.
pub fn spawn_on_inherited_socket(
    name: &str,
    program: &Path,
    config: impl FnOnce(&Path, u16, i32) -> (Vec<String>, Vec<(String, String)>),
) -> Daemon {
    const LAUNCHER: &str = "import os, socket, sys\n\
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(128); s.set_inheritable(True)\n\
open(sys.argv[1] + '.tmp', 'w').write('%d %d' % (s.getsockname()[1], s.fileno()))\n\
os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n\
line = sys.stdin.readline().rstrip('\\n').split('\\t')\n\
env = dict(os.environ); env.update(dict(kv.split('=', 1) for kv in line[1:] if kv))\n\
args = line[0].split('\\x1f')\n\
os.execve(args[0], args, env)\n";
    let dir = paths::scratch(name);
    let port_file = dir.join("port");
    let log = std::fs::File::create(dir.join("daemon.log")).expect("daemon log");
    let mut child = Command::new("python3")
        .args(["-c", LAUNCHER])
        .arg(&port_file)
        .stdin(Stdio::piped())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("python3 (the launcher) must be installed");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (port, fd) = loop {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            let mut it = text.split(' ').filter_map(|x| x.parse::<i64>().ok());
            if let (Some(p), Some(f)) = (it.next(), it.next()) {
                break (p as u16, f as i32);
            }
        }
        assert!(Instant::now() < deadline, "{name}: launcher did not bind");
        std::thread::sleep(Duration::from_millis(20));
    };
    let (args, env) = config(&dir, port, fd);
    let mut line = std::iter::once(program.display().to_string())
        .chain(args)
        .collect::<Vec<_>>()
        .join("\x1f");
    for (k, v) in env {
        line.push('\t');
        line.push_str(&format!("{k}={v}"));
    }
    line.push('\n');
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(line.as_bytes())
        .expect("launcher stdin");
    // The socket listens from the start; wait until the program has taken over (it answers).
    Daemon { child, port, dir }.answering(name)
}

impl Daemon {
    /// Waits (at most 10 s) until the daemon answers an HTTP request on its port (any status);
    /// panics with its log if it exits or never does.
    fn answering(mut self, name: &str) -> Daemon {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{name} exited with {status}\n{}", self.log());
            }
            if crate::request(self.port, "GET", "/__ready", &[], b"").is_ok() {
                return self;
            }
            assert!(
                Instant::now() < deadline,
                "{name} not answering\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// nginx (foreground, one worker) with `server_body` inside `server { listen ...; }`.
pub fn nginx(nginx: &Path, server_body: &str) -> Daemon {
    let body = server_body.to_string();
    spawn_on_inherited_socket("nginx", nginx, move |dir, port, fd| {
        (
            nginx_args(dir, &format!("listen 127.0.0.1:{port};"), &body),
            vec![("NGINX".into(), format!("{fd};"))],
        )
    })
}

/// nginx's command line (without the program) in the foreground with one worker, its files
/// under `dir`, and `server` (`listen` and more) inside `server { ... }` before the locations
/// `server_body`; writes `dir`/nginx.conf.
pub fn nginx_args(dir: &Path, server: &str, server_body: &str) -> Vec<String> {
    let d = dir.display();
    let conf = format!(
        "daemon off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{ access_log off;\n\
           client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;\n\
           uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n\
           server {{ {server} location = /__ready {{ return 204; }}\n{server_body}\n}} }}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).expect("nginx.conf");
    vec![
        "-e".into(),
        format!("{d}/error.log"),
        "-p".into(),
        d.to_string(),
        "-c".into(),
        format!("{d}/nginx.conf"),
    ]
}

/// HAProxy (foreground) with `frontend_and_backends` after a frontend bound to the socket.
pub fn haproxy(haproxy: &Path, rest: &str) -> Daemon {
    let rest = rest.to_string();
    spawn_on_inherited_socket("haproxy", haproxy, move |dir, _port, fd| {
        let conf = format!(
            "global\n  maxconn 64\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 10s\n  timeout server 1s\n\
             frontend fe\n  bind fd@{fd}\n  http-request return status 204 if {{ path /__ready }}\n{rest}\n"
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, conf).expect("haproxy.cfg");
        (
            vec!["-db".into(), "-f".into(), path.display().to_string()],
            vec![],
        )
    })
}

/// Apache httpd (`-X`: one process, so killing it leaves no children) with mod_proxy_http and
/// `directives` (`ProxyPass` lines). Apache cannot take an inherited socket; it binds with
/// `SO_REUSEPORT` when `ListenCoresBucketsRatio` is set (strace shows the setsockopt), so the
/// port is held by a [`paths::reserve_port`] reservation until Apache answers on it.
pub fn apache(apache: &Path, directives: &str) -> Daemon {
    let dir = paths::scratch("apache");
    let reservation = paths::reserve_port();
    let port = reservation.port;
    let d = dir.display();
    let modules = "/usr/lib/apache2/modules";
    let conf = format!(
        "ServerRoot {d}\nDefaultRuntimeDir {d}\nPidFile {d}/httpd.pid\nErrorLog {d}/daemon.log\n\
         LoadModule mpm_event_module {modules}/mod_mpm_event.so\n\
         LoadModule authz_core_module {modules}/mod_authz_core.so\n\
         LoadModule proxy_module {modules}/mod_proxy.so\n\
         LoadModule proxy_http_module {modules}/mod_proxy_http.so\n\
         User www-data\nGroup www-data\nServerName localhost\n\
         ListenCoresBucketsRatio 1\nListen 127.0.0.1:{port}\n{directives}\n"
    );
    let path = dir.join("httpd.conf");
    std::fs::write(&path, conf).expect("httpd.conf");
    let log = std::fs::File::create(dir.join("stdout.log")).expect("log");
    let child = Command::new(apache)
        .arg("-X")
        .arg("-f")
        .arg(&path)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("apache2");
    let daemon = Daemon { child, port, dir }.answering("apache2");
    drop(reservation);
    daemon
}

/// Varnish (foreground, no privilege separation) with `vcl` (the whole VCL file). It binds port
/// 0 for clients and for its CLI; the client port is read back with `varnishadm
/// debug.listen_address` (the way Varnish's own test tool finds it).
pub fn varnish(varnishd: &Path, varnishadm: &Path, vcl: &str) -> Daemon {
    let dir = paths::scratch("varnish");
    let vcl_path = dir.join("default.vcl");
    std::fs::write(&vcl_path, vcl).expect("default.vcl");
    let work = dir.join("work");
    let log = std::fs::File::create(dir.join("daemon.log")).expect("log");
    let child = Command::new(varnishd)
        .args(["-F", "-j", "none", "-a", "127.0.0.1:0", "-T", "127.0.0.1:0"])
        .args(["-s", "malloc,16m", "-n"])
        .arg(&work)
        .arg("-f")
        .arg(&vcl_path)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("varnishd");
    let mut daemon = Daemon {
        child,
        port: 0,
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemon.port == 0 {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            panic!("varnishd exited with {status}\n{}", daemon.log());
        }
        // `a0 127.0.0.1 41234`
        daemon.port = Command::new(varnishadm)
            .args(["-t", "2", "-n"])
            .arg(&work)
            .arg("debug.listen_address")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .find_map(|l| l.split_whitespace().nth(2)?.parse().ok())
            })
            .unwrap_or(0);
        assert!(
            Instant::now() < deadline,
            "varnishd: no listen address\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.answering("varnishd")
}

/// Squid 5 as a reverse proxy (`accel`, foreground, no cache, no helpers) with `peers` (the
/// `cache_peer` lines and their access rules). Squid binds neither port 0 nor an inherited
/// socket; its port is held by a [`paths::reserve_port_reuse_addr`] reservation until it
/// answers.
pub fn squid(squid: &Path, peers: &str) -> Daemon {
    let dir = paths::scratch("squid");
    let reservation = paths::reserve_port_reuse_addr();
    let port = reservation.port;
    let d = dir.display();
    let conf = format!(
        "http_port 127.0.0.1:{port} accel defaultsite=app.local no-vhost\n{peers}\n\
         never_direct allow all\nhttp_access allow all\ncache deny all\n\
         pinger_enable off\npid_filename none\naccess_log none\ncache_log /dev/null\n\
         coredump_dir {d}\nshutdown_lifetime 0 seconds\n"
    );
    let path = dir.join("squid.conf");
    std::fs::write(&path, conf).expect("squid.conf");
    let log = std::fs::File::create(dir.join("daemon.log")).expect("log");
    let child = Command::new(squid)
        .args(["-N", "-d", "1", "-f"])
        .arg(&path)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("squid");
    let daemon = Daemon { child, port, dir }.answering("squid");
    drop(reservation);
    daemon
}

/// An app: answers each request with the status its path ends in (`/x/app/502`; else 200) and
/// a small HTML page of its own, `Server: tiny-app`. Stops when dropped.
pub fn status_app() -> RawBackend {
    RawBackend::accept(|c| {
        let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = std::io::BufReader::new(&c);
        let Some(first) = read_head(&mut reader) else {
            return;
        };
        let path = first.split_whitespace().nth(1).unwrap_or("/");
        let status: u16 = path
            .rsplit('/')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(200);
        let body = format!("<html><body><h1>{status}</h1>the app's own page</body></html>");
        let reply = format!(
            "HTTP/1.1 {status} App\r\nServer: tiny-app\r\nContent-Type: text/html\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = (&c).write_all(reply.as_bytes());
    })
}

/// A raw TCP backend: `hold` keeps every connection open (a hung app), else each connection
/// is closed as soon as the request arrives, unanswered. Stops when dropped.
pub struct RawBackend {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl RawBackend {
    /// Listens on a loopback port of the kernel's choosing and hands each connection to
    /// `serve` on the accept thread, until dropped.
    fn accept(mut serve: impl FnMut(TcpStream) + Send + 'static) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    serve(c);
                }
            }
        });
        RawBackend { port, stop }
    }
}

/// Reads one request head: its request line, `None` when the peer sent nothing.
fn read_head(reader: &mut std::io::BufReader<&TcpStream>) -> Option<String> {
    let mut first = String::new();
    if std::io::BufRead::read_line(reader, &mut first).unwrap_or(0) == 0 {
        return None;
    }
    loop {
        let mut line = String::new();
        match std::io::BufRead::read_line(reader, &mut line) {
            Ok(n) if n > 2 => continue,
            _ => return Some(first),
        }
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

pub fn raw_backend(hold: bool) -> RawBackend {
    let mut held = Vec::new();
    RawBackend::accept(move |mut c| {
        if hold {
            held.push(c);
        } else {
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut c, &mut buf);
        }
    })
}

/// The keep-alive race, made deterministic: on each connection the first request is answered
/// (`200`, keep-alive) unless its path contains `close-now` (then the connection is closed
/// unanswered: an app closing on purpose); the second request on a connection is never
/// answered, the connection is closed, as a server does when its keep-alive timeout fires just
/// as the proxy reuses the connection. Stops when dropped.
pub fn keepalive_racer() -> RawBackend {
    RawBackend::accept(|c| {
        std::thread::spawn(move || {
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = std::io::BufReader::new(&c);
            match read_head(&mut reader) {
                Some(first) if !first.contains("close-now") => {}
                _ => return,
            }
            let _ = (&c).write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
            // The next request on this connection: read it, then close unanswered.
            let mut next = String::new();
            let _ = std::io::BufRead::read_line(&mut reader, &mut next);
        });
    })
}

/// `openssl s_server` on 127.0.0.1 (it binds port 0 and reports the port), serving HTTP
/// (`-www`) with the bed's server certificate and requiring a client certificate signed by the
/// bed's CA (`-Verify 1`), with TLS `version` (`-tls1_2` or `-tls1_3`). Killed on drop.
pub fn tls_server_requiring_client_cert(certs: &crate::certs::Certs, version: &str) -> Daemon {
    let dir = paths::scratch("s_server");
    let log_path = dir.join("daemon.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let child = Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            "127.0.0.1:0",
            "-www",
            "-Verify",
            "1",
            version,
        ])
        .arg("-cert")
        .arg(&certs.server_cert)
        .arg("-key")
        .arg(&certs.server_key)
        .arg("-CAfile")
        .arg(&certs.ca)
        .stdin(Stdio::piped())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("openssl (apt-get install openssl)");
    Daemon::from_log(child, dir, "s_server", 10, |log| {
        log.lines()
            .find_map(|l| l.strip_prefix("ACCEPT 127.0.0.1:")?.trim().parse().ok())
    })
}

/// A Python venv under target/ with the PyPI packages `packages`, created on first use; `Err`
/// saying why the scenario must be skipped when pip cannot install them.
pub fn python_venv(name: &str, packages: &[&str]) -> Result<PathBuf, String> {
    let venv = paths::root().join("target").join(name);
    let python = venv.join("bin/python");
    let marker = venv.join(format!(".installed-{}", packages.join("-")));
    if marker.exists() {
        return Ok(python);
    }
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .args(packages)
            .status()
            .is_ok_and(|s| s.success());
    if ok {
        let _ = std::fs::write(&marker, "");
        Ok(python)
    } else {
        Err(format!(
            "could not pip-install the PyPI package(s) {} into {}",
            packages.join(", "),
            venv.display()
        ))
    }
}

const GRPC_SERVER: &str = r#"
import sys, time, grpc
from concurrent import futures

def slow(request, context):
    time.sleep(3)
    return b"late"

def unavailable(request, context):
    context.abort(grpc.StatusCode.UNAVAILABLE, "backend down")

def ok(request, context):
    return b"ok"

def deadline(request, context):
    # The server's timer fires first: it gives up 30 ms before the client would.
    time.sleep(max(0.0, (context.time_remaining() or 0.0) - 0.03))
    context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded on the server")

def own_deadline(request, context):
    # The app's own call to a dependency timed out, long before the caller's deadline.
    context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "dependency deadline exceeded")

handler = grpc.method_handlers_generic_handler("test.Svc", {
    "OwnDeadline": grpc.unary_unary_rpc_method_handler(own_deadline),
    "Slow": grpc.unary_unary_rpc_method_handler(slow),
    "Unavailable": grpc.unary_unary_rpc_method_handler(unavailable),
    "Ok": grpc.unary_unary_rpc_method_handler(ok),
    "ServerDeadline": grpc.unary_unary_rpc_method_handler(deadline),
})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
server.add_generic_rpc_handlers((handler,))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
server.wait_for_termination(timeout=120)
"#;

const GRPC_CLIENT: &str = r#"
import sys, grpc
port, method, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
with grpc.insecure_channel("127.0.0.1:" + port) as ch:
    call = ch.unary_unary("/test.Svc/" + method)
    try:
        call(b"x", timeout=timeout, metadata=(("x-scn", sys.argv[4]),))
        print("OK")
    except grpc.RpcError as e:
        md = dict(e.trailing_metadata() or ())
        print(e.code().name, md.get("x-meshtriage", "-"))
"#;

/// A grpcio server (unary methods `test.Svc/Slow` (3 s), `ServerDeadline` (answers
/// DEADLINE_EXCEEDED 30 ms before the client's deadline), `OwnDeadline` (answers
/// DEADLINE_EXCEEDED at once), `Unavailable`, `Ok`) on a port it
/// binds itself and reports. Killed on drop.
pub fn grpc_server(python: &Path) -> Daemon {
    let dir = paths::scratch("grpc-server");
    let script = dir.join("server.py");
    std::fs::write(&script, GRPC_SERVER).expect("server.py");
    let out = dir.join("daemon.log");
    let log = std::fs::File::create(&out).expect("log");
    let child = Command::new(python)
        .arg(&script)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("python");
    Daemon::from_log(child, dir, "grpc server", 20, |log| {
        log.lines().next().and_then(|l| l.trim().parse().ok())
    })
}

/// One grpcio client call through `port`: the status name and the verdict header the client
/// got in its trailing metadata (`-`: none).
pub fn grpc_call(python: &Path, port: u16, method: &str, timeout_s: f64, scn: &str) -> String {
    let dir = paths::scratch("grpc-client");
    let script = dir.join("client.py");
    std::fs::write(&script, GRPC_CLIENT).expect("client.py");
    let out = Command::new(python)
        .arg(&script)
        .args([&port.to_string(), method, &timeout_s.to_string(), scn])
        .output()
        .expect("python");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const WSGI_APP: &str = r#"
def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    status = {"/app/502": "502 Bad Gateway", "/app/503": "503 Service Unavailable",
              "/app/500": "500 Internal Server Error"}.get(path, "200 OK")
    body = ("<html><body><h1>%s</h1>the app's own page</body></html>" % status).encode()
    start_response(status, [("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
    return [body]
"#;

/// gunicorn (an HTTP/1.1 app server from PyPI) serving a WSGI app that answers `/app/502`,
/// `/app/503` and `/app/500` with its own HTML error pages; it binds port 0 and logs the
/// port. Killed on drop.
pub fn gunicorn(python: &Path) -> Daemon {
    let dir = paths::scratch("gunicorn");
    std::fs::write(dir.join("wsgi_app.py"), WSGI_APP).expect("wsgi_app.py");
    let log_path = dir.join("daemon.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let child = Command::new(python)
        .args(["-m", "gunicorn", "-b", "127.0.0.1:0", "-w", "1", "--chdir"])
        .arg(&dir)
        .arg("wsgi_app:app")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("python");
    Daemon::from_log(child, dir, "gunicorn", 20, |log| {
        log.lines()
            .find_map(|l| l.split("Listening at: http://127.0.0.1:").nth(1))
            .and_then(|p| p.split_whitespace().next())
            .and_then(|p| p.parse().ok())
    })
}
