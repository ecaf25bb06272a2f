//! Across hops, with two real Envoys: client app → client sidecar (outbound, `client.shop`) →
//! server sidecar (inbound, `server.shop`) → gateway app → API app. Each test says which hop
//! failed and at which layer, as each sidecar reports it: the header the client app gets, both
//! access logs and both sidecars' metrics. `cargo test --test e2e_hops -- --nocapture` prints
//! the per-hop verdicts (docs/incident-copied-headers.md walks through them).

use meshtriage_core::metrics::{FAILURES, HOP_BY_HOP};
use meshtriage_envoy_test::envoy::Envoy;
use meshtriage_envoy_test::mesh::{Mesh, ServerSide};
use meshtriage_envoy_test::verdict::{self, View};
use meshtriage_envoy_test::Response;

/// A verdict as one hop must report it.
#[derive(Clone, Copy)]
struct Want {
    layer: &'static str,
    class: &'static str,
    origin: &'static str,
    dir: &'static str,
    hop: &'static str,
    hints: &'static [&'static str],
}

const fn want(
    layer: &'static str,
    class: &'static str,
    origin: &'static str,
    dir: &'static str,
    hop: &'static str,
) -> Want {
    Want {
        layer,
        class,
        origin,
        dir,
        hop,
        hints: &[],
    }
}

impl Want {
    const fn hints(mut self, hints: &'static [&'static str]) -> Self {
        self.hints = hints;
        self
    }

    fn mismatches(&self, v: &View) -> Vec<String> {
        let mut bad = Vec::new();
        for (what, got, want) in [
            ("layer", v.layer.as_str(), self.layer),
            ("class", v.class(), self.class),
            ("origin", v.get("origin").unwrap_or(""), self.origin),
            ("side", v.get("side").unwrap_or(""), "upstream"),
            ("dir", v.get("dir").unwrap_or(""), self.dir),
            ("hop", v.get("hop").unwrap_or(""), self.hop),
        ] {
            if got != want {
                bad.push(format!("{what}: got {got:?}, want {want:?}"));
            }
        }
        let mut got = v.hints();
        got.sort_unstable();
        let mut want = self.hints.to_vec();
        want.sort_unstable();
        if got != want {
            bad.push(format!("hints: got {got:?}, want {want:?}"));
        }
        bad
    }
}

/// What the client app saw, as one verdict list (empty when no header).
fn header_members(r: &Response) -> Vec<View> {
    r.headers_named("x-meshtriage")
        .iter()
        .flat_map(|h| verdict::parse(h))
        .collect()
}

/// The access-log verdict one sidecar wrote for `path` (`None`: `verdict=-`).
fn logged(envoy: &Envoy, path: &str) -> Option<View> {
    let line = envoy
        .wait_access_log(&format!("scn={path} "))
        .unwrap_or_else(|| panic!("no access-log line for {path}\n{}", envoy.diagnostics()));
    println!("    access log: {line}");
    verdict::from_access_log(&line)
}

fn failures(envoy: &Envoy, w: &Want) -> f64 {
    envoy.metric(
        FAILURES,
        &[
            ("dir", w.dir),
            ("layer", w.layer),
            ("class", w.class),
            ("origin", w.origin),
            ("side", "upstream"),
        ],
    )
}

/// Sends `path` through the mesh and checks, at each hop, the access-log verdict and a +1 on
/// the failure counter with the same labels. `header`: the one member the client app must get
/// (`None`: no header at all). Returns the response for further checks.
fn across(
    mesh: &Mesh,
    path: &str,
    status: u16,
    header: Option<Want>,
    server: Option<Want>,
    client: Want,
) -> Response {
    let server_before = server.map(|w| failures(&mesh.server, &w));
    let client_before = failures(&mesh.client, &client);
    println!("GET {path}");
    let r = mesh.get(path);
    let mut bad = Vec::new();
    if r.status != status {
        bad.push(format!("status: got {}, want {status}", r.status));
    }
    let members = header_members(&r);
    println!(
        "  client app got {}{}\n    x-meshtriage: {:?}",
        r.status,
        if r.truncated { " (truncated body)" } else { "" },
        r.headers_named("x-meshtriage")
    );
    match (header, members.as_slice()) {
        (None, []) => {}
        (Some(w), [v]) => bad.extend(w.mismatches(v).into_iter().map(|m| format!("header {m}"))),
        (_, got) => bad.push(format!(
            "header: want {} member(s), got {got:?}",
            u8::from(header.is_some())
        )),
    }
    println!("  server sidecar (inbound):");
    let server_view = logged(&mesh.server, path);
    match (server, server_view) {
        (Some(w), Some(v)) => {
            bad.extend(
                w.mismatches(&v)
                    .into_iter()
                    .map(|m| format!("server log {m}")),
            );
            let after =
                mesh.server
                    .wait_metric(FAILURES, &labels(&w), server_before.unwrap_or(0.0) + 1.0);
            if after != server_before.unwrap_or(0.0) + 1.0 {
                bad.push(format!("server metric: {server_before:?} -> {after}"));
            }
        }
        (None, None) => {}
        (w, v) => bad.push(format!(
            "server log: want {}, got {v:?}",
            w.map_or("none", |w| w.class)
        )),
    }
    println!("  client sidecar (outbound):");
    match logged(&mesh.client, path) {
        Some(v) => bad.extend(
            client
                .mismatches(&v)
                .into_iter()
                .map(|m| format!("client log {m}")),
        ),
        None => bad.push("client log: no verdict".into()),
    }
    let after = mesh
        .client
        .wait_metric(FAILURES, &labels(&client), client_before + 1.0);
    if after != client_before + 1.0 {
        bad.push(format!(
            "client metric: {client_before} -> {after}, want +1"
        ));
    }
    assert!(
        bad.is_empty(),
        "{path}:\n  {}\n{}",
        bad.join("\n  "),
        mesh.diagnostics()
    );
    r
}

fn labels(w: &Want) -> [(&'static str, &'static str); 5] {
    [
        ("dir", w.dir),
        ("layer", w.layer),
        ("class", w.class),
        ("origin", w.origin),
        ("side", "upstream"),
    ]
}

const SERVER: &str = "server.shop";
const CLIENT: &str = "client.shop";

#[test]
fn the_copied_headers_incident_end_to_end() {
    let mesh = Mesh::start("hops-incident", ServerSide::Meshtriage);

    // Shape 1: the gateway app closes without answering. The server sidecar says so in the
    // header; the client sidecar keeps that verdict and counts it as the upstream proxy's.
    let server = want("l4", "connection_terminated", "proxy", "inbound", SERVER)
        .hints(&["app_closed_connection"]);
    let r = across(
        &mesh,
        "/gw/close",
        503,
        Some(server),
        Some(server),
        want(
            "l4",
            "connection_terminated",
            "upstream_proxy",
            "outbound",
            CLIENT,
        ),
    );
    let member = &header_members(&r)[0];
    assert_eq!(member.get("flags"), Some("UC"));
    assert_eq!(
        member.get("detail"),
        Some("upstream_reset_before_response_started{connection_termination}")
    );

    // Shape 2: copied `Transfer-Encoding: chunked` over a plain body. Headers already went out
    // as a 200, so no header: both hops report it late, in metrics and access logs.
    let r = across(
        &mesh,
        "/gw/copy",
        200,
        None,
        Some(
            want("l7", "response_truncated", "app", "inbound", SERVER)
                .hints(&["broken_chunked_framing", "hop_by_hop_headers"]),
        ),
        want("l7", "response_truncated", "app", "outbound", CLIENT)
            .hints(&["broken_chunked_framing"]),
    );
    assert!(r.truncated, "the client app got a cut body");
    // The copied hop-by-hop headers were counted where they arrived (the server sidecar).
    for h in ["connection", "nominated", "upgrade"] {
        assert!(
            mesh.server
                .metric(HOP_BY_HOP, &[("dir", "inbound"), ("header", h)])
                >= 1.0,
            "{h}\n{}",
            mesh.diagnostics()
        );
    }

    // Shape 3: copied TE plus the gateway's own Content-Length. Envoy's codec rejects it before
    // any filter sees a header: upstream_protocol_error, detail protocol_error.
    let server = want("l7", "upstream_protocol_error", "proxy", "inbound", SERVER);
    let r = across(
        &mesh,
        "/gw/copy-cl",
        502,
        Some(server),
        Some(server),
        want(
            "l7",
            "upstream_protocol_error",
            "upstream_proxy",
            "outbound",
            CLIENT,
        ),
    );
    assert_eq!(
        header_members(&r)[0].get("detail"),
        Some("upstream_reset_before_response_started{protocol_error}")
    );
}

#[test]
fn hop_by_hop_headers_are_counted_per_hop_and_hinted_on_failures() {
    let mesh = Mesh::start("hops-hbh", ServerSide::Meshtriage);
    // A success with copied hop-by-hop headers: counted, never a verdict.
    let r = mesh.get("/gw/copy-hop");
    assert_eq!(r.status, 200);
    assert!(r.header("x-meshtriage").is_none());
    assert_eq!(logged(&mesh.server, "/gw/copy-hop"), None);
    assert_eq!(logged(&mesh.client, "/gw/copy-hop"), None);
    for h in ["connection", "nominated", "upgrade"] {
        assert_eq!(
            mesh.server
                .wait_metric(HOP_BY_HOP, &[("dir", "inbound"), ("header", h)], 1.0),
            1.0,
            "{h}"
        );
    }
    // Envoy strips connection/upgrade before the next hop: the client sidecar saw none.
    assert_eq!(mesh.client.metric(HOP_BY_HOP, &[]), 0.0);

    // The same headers on a failing answer: the server hop hints at them, the client keeps it.
    let server = want("l7", "app_error", "app", "inbound", SERVER).hints(&["hop_by_hop_headers"]);
    across(
        &mesh,
        "/gw/copy-hop-503",
        503,
        Some(server),
        Some(server),
        want("l7", "app_error", "upstream_proxy", "outbound", CLIENT),
    );

    // te / trailer / nominated headers pass through Envoy: both hops count them.
    let r = mesh.get("/app/hop");
    assert_eq!(r.status, 200);
    for h in ["te", "trailer"] {
        assert_eq!(
            mesh.server
                .wait_metric(HOP_BY_HOP, &[("dir", "inbound"), ("header", h)], 1.0),
            1.0,
            "server {h}"
        );
        assert_eq!(
            mesh.client
                .wait_metric(HOP_BY_HOP, &[("dir", "outbound"), ("header", h)], 1.0),
            1.0,
            "client {h}"
        );
    }

    // Duplicate Content-Length from the app: fatal, never seen by filters, still framing.
    let server = want("l7", "upstream_protocol_error", "proxy", "inbound", SERVER);
    across(
        &mesh,
        "/app/dup-cl",
        502,
        Some(server),
        Some(server),
        want(
            "l7",
            "upstream_protocol_error",
            "upstream_proxy",
            "outbound",
            CLIENT,
        ),
    );
}

#[test]
fn forged_verdicts_stop_at_the_server_sidecar() {
    let mesh = Mesh::start("hops-forged", ServerSide::Meshtriage);
    // The app forges a verdict on a 503: the server sidecar replaces it with its own.
    let server = want("l7", "app_error", "app", "inbound", SERVER);
    let r = across(
        &mesh,
        "/app/forged/503",
        503,
        Some(server),
        Some(server),
        want("l7", "app_error", "upstream_proxy", "outbound", CLIENT),
    );
    assert!(!r.headers_named("x-meshtriage").concat().contains("forged"));
    // On a success nothing reaches the client, forged or not.
    let r = mesh.get("/app/forged/200");
    assert_eq!(r.status, 200);
    assert!(r.header("x-meshtriage").is_none(), "{:?}", r.headers);
}

/// Failures of a server hop that does not run meshtriage, as the client sidecar sees them.
/// `by_body`: that hop sends no `proxy-status`, only its local-reply body tells. Envoy hands a
/// body to the filter only after the headers went on, so there the header keeps what the
/// headers prove (`app_error`) and the access log and metrics carry the refined verdict.
fn plain_server_hop(mesh: &Mesh, by_body: bool) {
    let cases = [
        (
            "/close",
            503,
            want(
                "l4",
                "connection_terminated",
                "upstream_proxy",
                "outbound",
                CLIENT,
            ),
        ),
        (
            "/uf",
            503,
            want(
                "l4",
                "connect_refused",
                "upstream_proxy",
                "outbound",
                CLIENT,
            ),
        ),
        (
            "/uh",
            503,
            want(
                "l4",
                "no_healthy_upstream",
                "upstream_proxy",
                "outbound",
                CLIENT,
            ),
        ),
        (
            "/slow/3000",
            504,
            want(
                "l7",
                "upstream_timeout",
                "upstream_proxy",
                "outbound",
                CLIENT,
            ),
        ),
    ];
    let app = want("l7", "app_error", "app", "outbound", CLIENT);
    for (path, status, w) in cases {
        // Without `proxy-status`, the headers (status, `server: envoy`, text/plain, length)
        // make a fixed-length local reply likely: the header says so with `inferred`; the
        // refused connect's body (its length varies with the error text) stays the app's
        // until the body is read.
        let inferred = by_body && path != "/uf";
        let header = match (by_body, inferred) {
            (false, _) | (true, true) => w,
            (true, false) => app,
        };
        let r = across(mesh, path, status, Some(header), None, w);
        let marked = header_members(&r)
            .first()
            .is_some_and(|v| v.get("inferred").is_some());
        assert_eq!(marked, inferred, "{path}: `inferred` in the header");
    }
    // The app's own small text 503 looks like a local reply until its body is read: app_error.
    across(mesh, "/status/503", 503, Some(app), None, app);
    // Successes pass untouched.
    let r = mesh.get("/ok");
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    assert!(r.header("x-meshtriage").is_none());
}

#[test]
fn a_plain_envoy_hop_is_recognised_by_its_proxy_status() {
    let mesh = Mesh::start("hops-ps", ServerSide::PlainWithProxyStatus);
    plain_server_hop(&mesh, false);
}

#[test]
fn a_plain_envoy_hop_is_recognised_by_its_local_reply_body() {
    let mesh = Mesh::start("hops-body", ServerSide::PlainBodyOnly);
    plain_server_hop(&mesh, true);
    // The body was read as it passed: it reaches the client app unchanged.
    let r = mesh.get("/close");
    assert!(r.header("proxy-status").is_none());
    assert_eq!(
        r.text(),
        "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
    );
    // An RBAC 403 of the server hop: not failing by status here, but the body says it was the
    // server hop's policy reply, so it is counted (no header: known only from the body).
    let w = want("l7", "authz_denied", "upstream_proxy", "outbound", CLIENT);
    across(&mesh, "/deny", 403, None, None, w);
}
