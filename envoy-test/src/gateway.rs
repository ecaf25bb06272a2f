//! The copied-headers incident as two small apps. The **API app** answers like a real HTTP/1.1
//! server behind a framework (Apache-style): a chunked JSON body with `Transfer-Encoding`,
//! `Connection: Upgrade, Keep-Alive`, `Upgrade: h2,h2c` and `Keep-Alive`. The **gateway app**
//! calls it and, like a Spring/Feign pass-through, copies the API's response headers verbatim
//! onto the body it re-writes. What it does is chosen by the last path segment:
//!
//! | path | the gateway's answer |
//! |---|---|
//! | `…/copy` | the copied headers (chunked declared) over the de-chunked, plain body, then close |
//! | `…/copy-cl` | the copied headers plus its own `Content-Length` (CL + TE) |
//! | `…/close` | nothing: it closes the connection without answering (the framework choked) |
//! | `…/copy-hop` | only the copied `Connection`/`Upgrade` headers, with correct framing (a 200) |
//! | `…/copy-hop-503` | the same on a `503` |

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// The API's body (sent chunked).
pub const API_BODY: &str = "{\"orders\":[{\"id\":1,\"state\":\"shipped\"}]}";

/// Response headers of the API app, as it sends them.
pub const API_HEADERS: &str = "content-type: application/json\r\ntransfer-encoding: chunked\r\n\
connection: Upgrade, Keep-Alive\r\nupgrade: h2,h2c\r\nkeep-alive: timeout=5, max=100\r\nx-api-version: 3\r\n";

/// A loopback app thread that stops when dropped.
pub struct App {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> App {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handler = Arc::new(handler);
    thread::spawn(move || {
        for conn in listener.incoming() {
            if flag.load(Ordering::SeqCst) {
                break;
            }
            if let Ok(c) = conn {
                let h = handler.clone();
                thread::spawn(move || h(c));
            }
        }
    });
    App { port, stop }
}

/// Reads one request head (GET only: no body); returns its path and whether the client asked
/// to close the connection after the response.
fn read_head(r: &mut impl BufRead) -> Option<(String, bool)> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let path = line.split(' ').nth(1)?.to_string();
    let mut close = false;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 || h.trim_end().is_empty() {
            break;
        }
        close |= h.to_ascii_lowercase().starts_with("connection: close");
    }
    Some((path, close))
}

/// The API app: every request gets the chunked JSON answer with its hop-by-hop headers.
pub fn api() -> App {
    serve(|stream| {
        let Ok(clone) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(clone);
        let mut stream = stream;
        while let Some((_, close)) = read_head(&mut reader) {
            let head = format!("HTTP/1.1 200 OK\r\n{API_HEADERS}\r\n");
            let body = format!("{:x}\r\n{API_BODY}\r\n0\r\n\r\n", API_BODY.len());
            if stream.write_all(head.as_bytes()).is_err()
                || stream.write_all(body.as_bytes()).is_err()
                || close
            {
                return;
            }
        }
    })
}

/// A response as a Feign-style client hands it to the gateway: status, headers verbatim
/// (framing included), and the decoded body.
struct Upstream {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn call_api(api_port: u16) -> Option<Upstream> {
    let mut s = TcpStream::connect(("127.0.0.1", api_port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /orders HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n")
        .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let r = crate::client::parse(&raw)?;
    Some(Upstream {
        status: r.status,
        headers: r.headers,
        body: r.body,
    })
}

/// The gateway app in front of the API on `api_port` (behaviour by path, see the module docs).
pub fn gateway(api_port: u16) -> App {
    serve(move |stream| {
        let Ok(clone) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(clone);
        let mut stream = stream;
        // Well-framed answers keep the connection (as the copied `Keep-Alive` promises); the
        // broken ones end it.
        while let Some((path, _)) = read_head(&mut reader) {
            let mode = path.rsplit('/').next().unwrap_or("").to_string();
            let out = answer(api_port, &mode);
            if !out.is_empty() && stream.write_all(&out).is_err() {
                return;
            }
            if !mode.starts_with("copy-hop") {
                let _ = stream.flush();
                // Let the proxy read what was sent before the close.
                thread::sleep(Duration::from_millis(100));
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
        }
    })
}

/// The gateway's bytes for one request (`mode` = last path segment); empty: say nothing.
fn answer(api_port: u16, mode: &str) -> Vec<u8> {
    let Some(up) = call_api(api_port) else {
        return b"HTTP/1.1 500 X\r\ncontent-length: 0\r\n\r\n".to_vec();
    };
    let copied: String = up
        .headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    let (head, body) = match mode {
        "copy" => (
            format!("HTTP/1.1 {} OK\r\n{copied}\r\n", up.status),
            up.body,
        ),
        "copy-cl" => (
            format!(
                "HTTP/1.1 {} OK\r\n{copied}content-length: {}\r\n\r\n",
                up.status,
                up.body.len()
            ),
            up.body,
        ),
        "copy-hop" | "copy-hop-503" => {
            let status = if mode == "copy-hop" { 200 } else { 503 };
            let hop: String = up
                .headers
                .iter()
                .filter(|(n, _)| n == "connection" || n == "upgrade")
                .map(|(n, v)| format!("{n}: {v}\r\n"))
                .collect();
            (
                format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{hop}content-length: {}\r\n\r\n",
                    up.body.len()
                ),
                up.body,
            )
        }
        _ => return Vec::new(), // "close": the framework gave up on the copied headers
    };
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    out
}
