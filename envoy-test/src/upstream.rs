//! Misbehaving loopback upstreams. The HTTP/1.1 server picks its behaviour from the request
//! path (first segment after an optional prefix, e.g. `/close`, `/status/503`), so one server
//! serves every scenario. The HTTP/2 server works at frame level to reset streams on purpose.

use socket2::SockRef;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Requests `/flaky/N` has seen (all servers of the process).
static FLAKY: AtomicU64 = AtomicU64::new(0);

/// A server thread that stops when dropped.
pub struct Upstream {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the accept loop
    }
}

/// Serves each connection of `listener` with `handler` on its own thread.
pub fn serve(listener: TcpListener, handler: fn(TcpStream)) -> Upstream {
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            if flag.load(Ordering::SeqCst) {
                break;
            }
            if let Ok(c) = conn {
                // Head and body go out in separate writes: without this, Nagle plus delayed
                // ACKs add 40 ms to many responses.
                let _ = c.set_nodelay(true);
                thread::spawn(move || handler(c));
            }
        }
    });
    Upstream { port, stop }
}

/// The HTTP/1.1 server whose behaviour follows the path (see `respond`).
pub fn http1() -> Upstream {
    http1_at(0)
}

/// [`http1`] on a fixed loopback port (0: any).
pub fn http1_at(port: u16) -> Upstream {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"));
    serve(listener, handle_http1)
}

/// A loopback listener whose accept queue is full and never drained: SYNs to it are dropped,
/// so connecting to it times out (Envoy: UF `{connection_timeout}`). Closed on drop.
pub struct Blackhole {
    pub port: u16,
    _listener: socket2::Socket,
    _fillers: Vec<TcpStream>,
}

/// A [`Blackhole`] on a fixed loopback port (0: any).
pub fn blackhole_at(port: u16) -> Blackhole {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let _ = socket.set_reuse_address(true);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    socket
        .bind(&addr.into())
        .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"));
    socket.listen(0).unwrap();
    let local = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap();
    // Fill the accept queue (backlog 0 still queues one); stop at the first connect that hangs.
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&local, Duration::from_millis(300)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    Blackhole {
        port: local.port(),
        _listener: socket,
        _fillers: fillers,
    }
}

struct Request {
    path: String,
    headers: Vec<(String, String)>,
    body_len: usize,
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    if !line.ends_with("HTTP/1.1\r\n") && !line.ends_with("HTTP/1.0\r\n") {
        return None;
    }
    let path = line.split(' ').nth(1)?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body_len = 0;
    if let Some(len) = get("content-length").and_then(|l| l.parse::<usize>().ok()) {
        let limit = path
            .split_once("/rst-early/")
            .and_then(|(_, n)| n.parse::<usize>().ok());
        if limit.is_some_and(|n| len >= n) {
            // Decide on the declared length alone: `respond` resets with the body unread.
            return Some(Request {
                path,
                headers,
                body_len: len,
            });
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).ok()?;
        body_len = len;
    } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        body_len = read_chunked(r)?.len();
    }
    Some(Request {
        path,
        headers,
        body_len,
    })
}

/// A chunked body (chunk extensions ignored, no trailers), `None` on a malformed one or a
/// connection that ends first. Also the Zipkin receiver's (crate::zipkin).
pub(crate) fn read_chunked(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        r.read_line(&mut size).ok()?;
        let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        let mut chunk = vec![0; n + 2];
        r.read_exact(&mut chunk).ok()?;
        if n == 0 {
            return Some(body);
        }
        chunk.truncate(n);
        body.extend(chunk);
    }
}

fn reset(stream: &TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

fn handle_http1(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    let mut stream = stream;
    let mut served = 0u32;
    loop {
        if reader.fill_buf().map_or(true, |b| b.is_empty()) {
            return;
        }
        let Some(req) = read_request(&mut reader) else {
            // Like any HTTP server, answer garbage (e.g. a TLS ClientHello) with a plaintext 400.
            let _ = stream.write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            return;
        };
        // The keep-alive race, made deterministic: a reused connection is closed unanswered,
        // as when the server's idle timeout fires just as the proxy reuses the connection.
        if served > 0 && req.path.contains("/close-reused") {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        served += 1;
        if !respond(&mut stream, &req) {
            return;
        }
    }
}

fn ok(stream: &mut TcpStream, status: u16, extra: &str, body: &str) -> bool {
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{extra}\r\n",
        body.len()
    );
    // One write: head and body in separate writes meet Nagle + delayed ACK (40 ms stalls).
    stream.write_all((head + body).as_bytes()).is_ok()
}

/// Answers one request; false when the connection must end.
fn respond(s: &mut TcpStream, req: &Request) -> bool {
    let segs: Vec<&str> = req
        .path
        .split('?')
        .next()
        .unwrap_or("")
        .split('/')
        .filter(|x| !x.is_empty())
        .collect();
    // `/anything/<behaviour>/<arg>`: the last two segments decide (routes may add prefixes).
    let (what, arg) = match segs.as_slice() {
        [.., w, a] if a.chars().all(|c| c.is_ascii_digit()) => (*w, *a),
        [.., w] => (*w, ""),
        [] => ("ok", ""),
    };
    let num = arg.parse::<u64>().unwrap_or(0);
    match what {
        "status" => ok(s, num as u16, "", &format!("status {num}\n")),
        "large" => {
            let body = "x".repeat(num as usize);
            ok(s, 200, "", &body)
        }
        "slow" => {
            thread::sleep(Duration::from_millis(num));
            ok(s, 200, "", "slow\n")
        }
        "close-reused" => ok(s, 200, "", "ok\n"),
        // Replays a captured gateway error page (a row of meshtriage's signature table).
        "gateway-page" => gateway_page(s, num as usize),
        "close" => {
            let _ = s.shutdown(Shutdown::Both);
            false
        }
        "rst" => {
            reset(s);
            false
        }
        "rst-large" if req.body_len >= num as usize => {
            reset(s);
            false
        }
        "rst-large" => ok(s, 200, "", "small enough\n"),
        // Like rst-large, but resets while the body is still being sent (it is never read).
        "rst-early" if req.body_len >= num as usize => {
            reset(s);
            false
        }
        "rst-early" => ok(s, 200, "", "small enough\n"),
        // Fails N % of requests, spread evenly (Bresenham over one server-wide counter).
        "flaky" => {
            let k = FLAKY.fetch_add(1, Ordering::SeqCst);
            let n = num.min(100);
            if (k + 1) * n / 100 > k * n / 100 {
                ok(s, 503, "", "flaky\n")
            } else {
                ok(s, 200, "", "ok\n")
            }
        }
        "half-headers" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/pl");
            let _ = s.shutdown(Shutdown::Both);
            false
        }
        "cl-te" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
            false
        }
        "dup-cl" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello");
            false
        }
        "dup-te" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
            false
        }
        // The pass-through bug: the upstream client's chunked header copied over a plain body.
        "copied-te" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: keep-alive, x-copied\r\nx-copied: 1\r\n\r\n{\"ok\":true}");
            let _ = s.flush();
            thread::sleep(Duration::from_millis(100));
            let _ = s.shutdown(Shutdown::Both);
            false
        }
        "midbody-rst" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n0123456789");
            let _ = s.flush();
            thread::sleep(Duration::from_millis(100));
            reset(s);
            false
        }
        "stall-body" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789");
            let _ = s.flush();
            thread::sleep(Duration::from_secs(5));
            false
        }
        "grpc-trailers" => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ntransfer-encoding: chunked\r\ntrailer: grpc-status\r\n\r\n";
            let body = format!("5\r\n\0\0\0\0\0\r\n0\r\ngrpc-status: {num}\r\ngrpc-message: from-trailers\r\n\r\n");
            s.write_all(head.as_bytes()).is_ok() && s.write_all(body.as_bytes()).is_ok()
        }
        "grpc-only" => ok(s, 200, &format!("grpc-status: {num}\r\ngrpc-message: trailers-only\r\n"), ""),
        "grpc-bad" => ok(s, 200, "grpc-status: 99999999999\r\n", ""),
        "forged" => ok(s, num as u16, "x-meshtriage: l4;class=connect_refused;origin=proxy;side=upstream;hop=\"forged\"\r\n", "forged\n"),
        "hop" => ok(s, if num == 0 { 200 } else { num as u16 }, "connection: keep-alive, x-hop-named\r\nx-hop-named: 1\r\nte: trailers\r\ntrailer: x-t\r\nproxy-connection: keep-alive\r\nupgrade: h2c\r\n", "hop\n"),
        "echo-headers" => {
            let body: String = req.headers.iter().map(|(n, v)| format!("{n}: {v}\n")).collect();
            ok(s, 200, "", &body)
        }
        _ => ok(s, 200, "", "ok\n"),
    }
}

/// What the HTTP/2 server does with each stream.
#[derive(Clone, Copy)]
pub enum H2 {
    /// RST_STREAM(INTERNAL_ERROR) before any response.
    ResetBeforeHeaders,
    /// RST_STREAM(REFUSED_STREAM).
    Refused,
}

/// A frame-level HTTP/2 server (prior knowledge) that resets every stream.
pub fn http2(mode: H2) -> Upstream {
    http2_at(mode, 0)
}

/// [`http2`] on a fixed loopback port (0: any).
pub fn http2_at(mode: H2, port: u16) -> Upstream {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"));
    match mode {
        H2::ResetBeforeHeaders => serve(listener, |s| h2_conn(s, 2)),
        H2::Refused => serve(listener, |s| h2_conn(s, 7)),
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn h2_conn(mut s: TcpStream, rst_code: u32) {
    let mut preface = [0u8; 24];
    if s.read_exact(&mut preface).is_err() {
        return;
    }
    let _ = s.write_all(&frame(4, 0, 0, &[]));
    loop {
        let mut head = [0u8; 9];
        if s.read_exact(&mut head).is_err() {
            return;
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let mut payload = vec![0; len];
        if s.read_exact(&mut payload).is_err() {
            return;
        }
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        match head[3] {
            4 if head[4] & 1 == 0 => {
                let _ = s.write_all(&frame(4, 1, 0, &[]));
            }
            1 => {
                let _ = s.write_all(&frame(3, 0, stream, &rst_code.to_be_bytes()));
            }
            6 if head[4] & 1 == 0 => {
                let _ = s.write_all(&frame(6, 1, 0, &payload));
            }
            _ => {}
        }
    }
}

/// Row `index` of the gateway-reply table, sent as that proxy sent it (status, `Server`,
/// content type and the captured body).
fn gateway_page(s: &mut TcpStream, index: usize) -> bool {
    use meshtriage_core::gateway_replies::{Headers, Product, GATEWAY_DOCS, GATEWAY_REPLIES};
    let (Some(row), Some(docs)) = (GATEWAY_REPLIES.get(index), GATEWAY_DOCS.get(index)) else {
        return ok(s, 404, "", "no such row\n");
    };
    let squid;
    let (server, content_type) = match row.headers {
        Headers::ServerHtml(Product::Nginx) => ("server: nginx/1.22.1\r\n", "text/html"),
        Headers::ServerHtml(Product::Apache) => (
            "server: Apache/2.4.71 (Debian)\r\n",
            "text/html; charset=iso-8859-1",
        ),
        Headers::ServerHtml(Product::Varnish) => (
            "server: Varnish\r\nvia: 1.1 varnish (Varnish/7.1)\r\n",
            "text/html; charset=utf-8",
        ),
        Headers::EnvoyText(_) => ("server: envoy\r\n", "text/plain"),
        Headers::SquidError(code) => {
            squid = format!("server: squid/5.7\r\nx-squid-error: {code} 0\r\n");
            (squid.as_str(), "text/html;charset=utf-8")
        }
        _ => ("", "text/html"),
    };
    let reply = format!(
        "HTTP/1.1 {} X\r\n{server}content-type: {content_type}\r\ncontent-length: {}\r\n\r\n{}",
        row.status,
        docs.sample.len(),
        docs.sample
    );
    s.write_all(reply.as_bytes()).is_ok()
}
