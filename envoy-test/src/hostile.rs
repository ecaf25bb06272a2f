//! A hostile HTTP/1.1 upstream: answers each request with raw bytes chosen by the request path
//! (the last path segment names a response of [`response`]), byte for byte, so tests can send
//! what no well-behaved server would: huge or malformed verdict headers, non-UTF-8 bytes,
//! thousands of headers, absurd `grpc-status` values, a `proxy-status` that lies.

use crate::upstream::Upstream;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

/// `proxy-status` naming a refused connection, whatever really happened.
pub const LYING_PROXY_STATUS: &str = "liar; error=connection_refused";

/// Members of the `many-members` verdict header.
pub const MANY_MEMBERS: usize = 500;

/// Headers of the `many-headers` responses.
pub const MANY_HEADERS: usize = 2000;

fn head(status: u16, headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len()).into_bytes();
    for (n, v) in headers {
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// One valid verdict member of about 80 bytes.
fn member(i: usize) -> String {
    format!(
        "l4;class=connect_refused;origin=proxy;side=upstream;hop=\"hop-{i:05}.hostile.example\""
    )
}

/// The raw response for `name` (the last path segment), `None` when unknown.
pub fn response(name: &str) -> Option<Vec<u8>> {
    let ff: &[u8] = b"\xff\xfe\x80bad";
    let (status, rest) = name.split_once('-').unwrap_or((name, ""));
    let status: u16 = status.parse().ok()?;
    let r = match rest {
        "ok" => head(status, &[], b"ok\n"),
        // ~40 KiB: one member with a huge parameter.
        "huge-member" => {
            let big = format!("l4;class=connect_refused;hop=\"{}\"", "h".repeat(40 * 1024));
            head(status, &[("x-meshtriage", big.as_bytes())], b"")
        }
        // ~40 KiB: 500 valid members on one line.
        "many-members" => {
            let all: Vec<String> = (0..MANY_MEMBERS).map(member).collect();
            head(status, &[("x-meshtriage", all.join(", ").as_bytes())], b"")
        }
        // The same members, one header line each (the plugin sees 500 values).
        "many-lines" => {
            let all: Vec<String> = (0..MANY_MEMBERS).map(member).collect();
            let pairs: Vec<(&str, &[u8])> =
                all.iter().map(|m| ("x-meshtriage", m.as_bytes())).collect();
            head(status, &pairs, b"")
        }
        "malformed" => head(
            status,
            &[("x-meshtriage", b"l4;class=;hop=\"open, (((, ?2")],
            b"",
        ),
        "nonutf8-verdict" => head(status, &[("x-meshtriage", ff)], b""),
        "nonutf8-grpc" => head(
            status,
            &[("content-type", b"application/grpc"), ("grpc-status", ff)],
            b"",
        ),
        "nonutf8-proxy-status" => head(status, &[("proxy-status", ff)], b""),
        "nonutf8-connection" => head(
            status,
            &[("connection", ff), ("content-type", ff), ("keep-alive", ff)],
            b"",
        ),
        "nonutf8-all" => head(
            status,
            &[
                ("x-meshtriage", ff),
                ("grpc-status", ff),
                ("proxy-status", ff),
                ("connection", ff),
                ("content-type", ff),
                ("transfer-encoding-x", ff),
                ("x-other", ff),
            ],
            b"",
        ),
        "many-headers" => {
            let names: Vec<String> = (0..MANY_HEADERS).map(|i| format!("x-h{i}")).collect();
            let pairs: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"v"[..])).collect();
            head(status, &pairs, b"")
        }
        "grpc-absurd" => head(
            status,
            &[
                ("content-type", b"application/grpc"),
                ("grpc-status", b"99999999999999999999"),
            ],
            b"",
        ),
        "grpc-negative" => head(
            status,
            &[
                ("content-type", b"application/grpc"),
                ("grpc-status", b"-14"),
            ],
            b"",
        ),
        "grpc-two" => head(
            status,
            &[
                ("content-type", b"application/grpc"),
                ("grpc-status", b"14"),
                ("grpc-status", b"0"),
            ],
            b"",
        ),
        "lying-proxy-status" => head(
            status,
            &[("proxy-status", LYING_PROXY_STATUS.as_bytes())],
            b"",
        ),
        _ => return None,
    };
    Some(r)
}

fn handle(stream: TcpStream) {
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    let mut stream = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_or(true, |n| n == 0) {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or("/").to_string();
        // Headers (requests carry no body here).
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).map_or(true, |n| n == 0) {
                return;
            }
            if h.trim_end().is_empty() {
                break;
            }
        }
        let name = path
            .split('?')
            .next()
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap_or("");
        let raw = response(name).unwrap_or_else(|| head(404, &[], b"unknown hostile response\n"));
        if stream.write_all(&raw).is_err() {
            return;
        }
    }
}

/// Starts the hostile server on a loopback port (keep-alive; stops when dropped).
pub fn start() -> Upstream {
    crate::upstream::serve(TcpListener::bind("127.0.0.1:0").unwrap(), handle)
}
