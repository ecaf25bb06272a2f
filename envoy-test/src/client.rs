//! A raw HTTP/1.1 client: sends exactly what it is told and reports exactly what came back,
//! including how the connection ended (a truncated body is data, not an error).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Clone, Debug, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body ended early (connection closed before Content-Length or the last chunk).
    pub truncated: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request on a fresh connection to 127.0.0.1:`port` (`Connection: close`).
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: test.local\r\nconnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    // Head and body in one write: Envoy's first read then holds the head and the start of the
    // body together, however the client thread is scheduled. Two writes let a loaded machine
    // run Envoy (and an upstream that answers on the head alone) in between, which changes
    // how many body bytes Envoy saw when the upstream answered (`large_payload`).
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A signal to this process (the L4 lab's children exiting, seen under load) is not
            // the server's answer: read again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) if raw.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    parse(&raw)
        .ok_or_else(|| std::io::Error::other(format!("no HTTP response ({} bytes)", raw.len())))
}

/// Parses a complete (or cut) HTTP/1.1 response.
pub fn parse(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let mut r = Response {
        status,
        headers,
        ..Response::default()
    };
    if r.header("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        let (body, complete) = dechunk(rest);
        r.body = body;
        r.truncated = !complete;
    } else if let Some(len) = r
        .header("content-length")
        .and_then(|l| l.parse::<usize>().ok())
    {
        r.truncated = rest.len() < len;
        r.body = rest[..rest.len().min(len)].to_vec();
    } else {
        r.body = rest.to_vec();
    }
    Some(r)
}

fn dechunk(mut data: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return (out, false);
        };
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            return (out, false);
        };
        data = &data[eol + 2..];
        if size == 0 {
            return (out, true);
        }
        if data.len() < size + 2 {
            out.extend_from_slice(&data[..data.len().min(size)]);
            return (out, false);
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// An HTTP/2 (h2c, prior knowledge) request through curl; `None` when curl got no response.
pub fn request_h2(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<Response> {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "-i", "--http2-prior-knowledge", "--max-time", "15"]);
    for (n, v) in headers {
        cmd.arg("-H").arg(format!("{n}: {v}"));
    }
    let out = cmd
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .ok()?;
    let raw = out.stdout;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Response {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
        truncated: !out.status.success(),
    })
}

/// Sends `bytes` as they are on a fresh connection and returns what came back before the
/// connection closed (e.g. a request Envoy's codec rejects).
pub fn send_raw(port: u16, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    s.write_all(bytes)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    Ok(raw)
}

/// Polls `ready` (bounded, 10 s) and reports whether it became true.
fn poll(ready: &dyn Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Sends a GET, waits until `ready` says the request reached the upstream, then closes the
/// connection without reading a response (a client giving up). False when `ready` never held.
pub fn request_then_close(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    ready: &dyn Fn() -> bool,
) -> std::io::Result<bool> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: test.local\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let ok = poll(ready);
    drop(s);
    Ok(ok)
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK "literal header field without indexing, new name" for every pair (no Huffman).
fn hpack(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in headers {
        out.push(0);
        out.push(n.len().min(126) as u8);
        out.extend_from_slice(&n.as_bytes()[..n.len().min(126)]);
        out.push(v.len().min(126) as u8);
        out.extend_from_slice(&v.as_bytes()[..v.len().min(126)]);
    }
    out
}

fn h2_request_bytes(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut all = vec![
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "test.local"),
        (":path", path),
    ];
    all.extend_from_slice(headers);
    let mut out = H2_PREFACE.to_vec();
    out.extend(h2_frame(4, 0, 0, &[]));
    out.extend(h2_frame(1, 0x5, 1, &hpack(&all)));
    out
}

/// h2c (prior knowledge): sends a GET on stream 1, waits until `ready`, then cancels the stream
/// with `RST_STREAM(CANCEL)` and closes. False when `ready` never held.
pub fn h2_request_then_cancel(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    ready: &dyn Fn() -> bool,
) -> std::io::Result<bool> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(&h2_request_bytes(path, headers))?;
    let ok = poll(ready);
    s.write_all(&h2_frame(3, 0, 1, &8u32.to_be_bytes()))?;
    s.flush()?;
    // Let Envoy read the reset before the FIN arrives (it would otherwise see a disconnect).
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut sink = [0u8; 4096];
    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
    Ok(ok)
}

/// h2c (prior knowledge): sends one raw HEADERS frame with `headers` exactly as given (e.g. an
/// invalid name) and returns the bytes Envoy answered with before closing.
pub fn h2_raw_request(port: u16, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Vec<u8>> {
    send_raw(port, &h2_request_bytes(path, headers))
}
