//! Real third-party software behind a real Envoy 1.40 with meshtriage (outbound listener):
//! nginx 1.22, HAProxy 2.6, Apache httpd 2.4, Varnish 7.1 and Squid 5.7 from Debian in front of
//! a dead, a hung and a closing backend, and a second Envoy without the plugin (a namespace that did not
//! opt in). Each scenario checks
//! what a user sees: the verdict header, the access-log verdict and the failure metric. A
//! program that cannot be installed skips its scenarios with a message naming the package.
//! `cargo test --test e2e_real_software -- --nocapture` prints the captured replies.

use meshtriage_core::metrics::{FAILURES, GRPC_FAILURES};
use meshtriage_envoy_test::bed::{
    cluster, hcm, http_wasm, listener, router, stats_tags, with_direction,
};
use meshtriage_envoy_test::envoy::Envoy;
use meshtriage_envoy_test::real_software::{self, raw_backend, Daemon, RawBackend};
use meshtriage_envoy_test::verdict::{self, View};
use meshtriage_envoy_test::{paths, request, Response};
use serde_json::{json, Value};

fn route(prefix: &str, cluster: &str, timeout: &str) -> Value {
    json!({"match": {"prefix": prefix}, "route": {"cluster": cluster, "timeout": timeout}})
}

/// An Envoy without meshtriage: its local replies are what a plain-Envoy hop sends.
fn plain_envoy(hold: &RawBackend, close: &RawBackend) -> (Envoy, u16) {
    let dir = paths::scratch("plain-envoy");
    let log = dir.join("access.log").display().to_string();
    let routes = json!([
        route("/envoy/uh", "c_empty", "5s"),
        route("/envoy/ut", "c_hold", "0.5s"),
        route("/envoy/uc", "c_close", "5s"),
    ]);
    // As deployed by default (Istio too): no `proxy-status` on its replies.
    let mut manager = hcm("plain", routes, vec![router()], &log);
    if let Some(tc) = manager["typed_config"].as_object_mut() {
        tc.remove("proxy_status_config");
    }
    let bootstrap = json!({"static_resources": {
    "listeners": [listener("plain", 0, None, vec![manager], None)],
    "clusters": [
        cluster("c_hold", hold.port, json!({})),
        cluster("c_close", close.port, json!({})),
        {"name": "c_empty", "type": "STATIC", "connect_timeout": "1s",
         "load_assignment": {"cluster_name": "c_empty", "endpoints": []}},
    ]}});
    let envoy = Envoy::start(&bootstrap, &dir);
    let port = envoy.port("plain");
    (envoy, port)
}

/// The Envoy with meshtriage on its outbound listener, routing `/nginx/`, `/haproxy/` and
/// `/envoy/` to the respective proxies.
fn meshtriage_envoy(targets: &[(&str, u16)]) -> (Envoy, u16) {
    let dir = paths::scratch("real-software");
    let log = dir.join("access.log").display().to_string();
    let wasm = paths::wasm().display().to_string();
    let routes: Vec<Value> = targets
        .iter()
        .map(|(name, _)| route(&format!("/{name}/"), &format!("c_{name}"), "5s"))
        .collect();
    let clusters: Vec<Value> = targets
        .iter()
        .map(|(name, port)| cluster(&format!("c_{name}"), *port, json!({})))
        .collect();
    let filters = vec![
        http_wasm(&wasm, &with_direction("{}", "outbound")),
        router(),
    ];
    let bootstrap = json!({
        "stats_config": {"stats_tags": stats_tags()},
        "static_resources": {
            "listeners": [listener("outbound", 0, Some("OUTBOUND"), vec![hcm("outbound", json!(routes), filters, &log)], None)],
            "clusters": clusters}});
    let envoy = Envoy::start(&bootstrap, &dir);
    let port = envoy.port("outbound");
    (envoy, port)
}

/// What one scenario must produce.
struct Want {
    path: &'static str,
    status: u16,
    class: &'static str,
    origin: &'static str,
    /// The header's verdict is marked `inferred` (the headers alone made it likely).
    inferred: bool,
}

const fn want(
    path: &'static str,
    status: u16,
    class: &'static str,
    origin: &'static str,
    inferred: bool,
) -> Want {
    Want {
        path,
        status,
        class,
        origin,
        inferred,
    }
}

fn logged(envoy: &Envoy, scn: &str) -> View {
    let needle = format!("scn={scn} ");
    for _ in 0..50 {
        if let Some(v) = envoy
            .access_log_lines()
            .iter()
            .filter(|l| l.contains(&needle))
            .find_map(|l| verdict::from_access_log(l))
        {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no verdict logged for {scn}\n{}", envoy.diagnostics())
}

/// Sends each scenario once and checks header, access log and metric; returns the failures.
fn check(envoy: &Envoy, port: u16, wants: &[Want]) -> Vec<String> {
    let mut bad = Vec::new();
    for w in wants {
        let labels = [
            ("class", w.class),
            ("origin", w.origin),
            ("side", "upstream"),
        ];
        let before = envoy.metric(FAILURES, &labels);
        let scn = w.path.trim_start_matches('/').replace('/', "-");
        let r: Response = request(port, "GET", w.path, &[("x-scn", &scn)], b"").unwrap();
        println!(
            "{} -> {} server={:?} content-type={:?} via={:?} x-squid-error={:?}\n{}\nheader: {:?}",
            w.path,
            r.status,
            r.header("server"),
            r.header("content-type"),
            r.header("via"),
            r.header("x-squid-error"),
            r.text(),
            r.header("x-meshtriage")
        );
        if r.status != w.status {
            bad.push(format!("{}: status {} want {}", w.path, r.status, w.status));
            continue;
        }
        let header = r
            .header("x-meshtriage")
            .map(verdict::parse)
            .and_then(|v| v.into_iter().next());
        match header {
            None => bad.push(format!("{}: no verdict header", w.path)),
            Some(h) => {
                let inferred = h.get("inferred").is_some();
                if h.class() != w.class
                    || h.get("origin") != Some(w.origin)
                    || inferred != w.inferred
                {
                    bad.push(format!("{}: header {h:?}", w.path));
                }
            }
        }
        let log = logged(envoy, &scn);
        if log.class() != w.class
            || log.get("origin") != Some(w.origin)
            || log.get("inferred").is_some()
        {
            bad.push(format!("{}: access log {log:?}", w.path));
        }
        let after = envoy.wait_metric(FAILURES, &labels, before + 1.0);
        if after != before + 1.0 {
            bad.push(format!("{}: metric {before} -> {after}", w.path));
        }
    }
    bad
}

#[test]
fn nginx_gateway_replies_are_the_gateways_and_its_app_errors_stay_the_apps() {
    let bin = match real_software::tool("nginx", "nginx") {
        Ok(bin) => bin,
        Err(why) => return meshtriage_suite::skip(&why),
    };
    let dead = paths::closed_port(); // nothing listens: nginx's connect is refused
    let hold = raw_backend(true);
    let nginx: Daemon = real_software::nginx(
        &bin,
        &format!(
            "proxy_read_timeout 1s; proxy_connect_timeout 1s;\n\
             location /nginx/dead {{ proxy_pass http://127.0.0.1:{}; }}\n\
             location /nginx/hung {{ proxy_pass http://127.0.0.1:{}; }}\n\
             location /nginx/app500 {{ return 500; }}\n\
             location /nginx/app503 {{ return 503; }}\n",
            dead.port, hold.port
        ),
    );
    let (envoy, port) = meshtriage_envoy(&[("nginx", nginx.port)]);
    let bad = check(
        &envoy,
        port,
        &[
            want("/nginx/dead", 502, "gateway_error", "upstream_proxy", true),
            want(
                "/nginx/hung",
                504,
                "upstream_timeout",
                "upstream_proxy",
                true,
            ),
            want("/nginx/app500", 500, "app_error", "app", false),
            want("/nginx/app503", 503, "app_error", "app", false),
        ],
    );
    assert!(bad.is_empty(), "{bad:#?}\n{}", envoy.diagnostics());
}

#[test]
fn haproxy_gateway_replies_are_the_gateways() {
    let bin = match real_software::tool("haproxy", "haproxy") {
        Ok(bin) => bin,
        Err(why) => return meshtriage_suite::skip(&why),
    };
    let hold = raw_backend(true);
    let close = raw_backend(false);
    let dead = paths::closed_port();
    let haproxy = real_software::haproxy(
        &bin,
        &format!(
            "  use_backend bad if {{ path_beg /haproxy/bad }}\n  use_backend hung if {{ path_beg /haproxy/hung }}\n  default_backend none\n\
             backend bad\n  server s1 127.0.0.1:{}\n\
             backend hung\n  server s1 127.0.0.1:{}\n\
             backend none\n  server s1 127.0.0.1:{}\n",
            close.port, hold.port, dead.port
        ),
    );
    let (envoy, port) = meshtriage_envoy(&[("haproxy", haproxy.port)]);
    let bad = check(
        &envoy,
        port,
        &[
            want("/haproxy/bad", 502, "gateway_error", "upstream_proxy", true),
            want(
                "/haproxy/none",
                503,
                "no_healthy_upstream",
                "upstream_proxy",
                true,
            ),
            want(
                "/haproxy/hung",
                504,
                "upstream_timeout",
                "upstream_proxy",
                true,
            ),
        ],
    );
    assert!(
        bad.is_empty(),
        "{bad:#?}\n{}\n{}",
        envoy.diagnostics(),
        haproxy.log()
    );
}

/// Apache httpd's mod_proxy: its "Proxy Error" page (a hung backend past `ProxyTimeout`) is
/// the gateway's. (A backend that closes unanswered gets the same page on a new client
/// connection; on a reused one Apache closes the client's connection instead, and Envoy reports
/// `connection_terminated`: not scripted here.) Its 503 for a refused backend is Apache's generic
/// 503 page, the same an app's 503 gets under `ProxyErrorOverride On` or a `R=503` rule: not a
/// row, it stays the app's (precision first). The app's own 502/503 passed through stay the
/// app's.
#[test]
fn apache_proxy_errors_are_the_gateways_and_its_app_errors_stay_the_apps() {
    let bin = match real_software::tool("apache2", "apache2") {
        Ok(bin) => bin,
        Err(why) => return meshtriage_suite::skip(&why),
    };
    let dead = paths::closed_port();
    let hold = raw_backend(true);
    let app = real_software::status_app();
    let apache = real_software::apache(
        &bin,
        &format!(
            "ProxyTimeout 1\n\
             ProxyPass /apache/dead http://127.0.0.1:{}/\n\
             ProxyPass /apache/hung http://127.0.0.1:{}/\n\
             ProxyPass /apache/app http://127.0.0.1:{}/app\n",
            dead.port, hold.port, app.port
        ),
    );
    let (envoy, port) = meshtriage_envoy(&[("apache", apache.port)]);
    let bad = check(
        &envoy,
        port,
        &[
            want("/apache/hung", 502, "gateway_error", "upstream_proxy", true),
            want("/apache/dead", 503, "app_error", "app", false),
            want("/apache/app/502", 502, "app_error", "app", false),
            want("/apache/app/503", 503, "app_error", "app", false),
        ],
    );
    assert!(
        bad.is_empty(),
        "{bad:#?}\n{}\n{}",
        envoy.diagnostics(),
        apache.log()
    );
}

/// Varnish's built-in `vcl_backend_error` page ("Backend fetch failed", 503) for a refused and
/// a hung backend is the gateway's; the app's own 502/503 passed through stay the app's, though
/// Varnish adds its `Via` to them as well (why `Via` is no signal).
#[test]
fn varnish_backend_fetch_failed_is_the_gateways_and_its_app_errors_stay_the_apps() {
    let (varnishd, varnishadm) = match (
        real_software::tool("varnishd", "varnish"),
        real_software::tool("varnishadm", "varnish"),
    ) {
        (Ok(d), Ok(a)) => (d, a),
        (Err(why), _) | (_, Err(why)) => return meshtriage_suite::skip(&why),
    };
    let dead = paths::closed_port();
    let hold = raw_backend(true);
    let app = real_software::status_app();
    let vcl = format!(
        "vcl 4.1;\n\
         backend dead {{ .host = \"127.0.0.1\"; .port = \"{}\"; .connect_timeout = 1s; }}\n\
         backend hung {{ .host = \"127.0.0.1\"; .port = \"{}\"; .first_byte_timeout = 1s; }}\n\
         backend app {{ .host = \"127.0.0.1\"; .port = \"{}\"; }}\n\
         sub vcl_recv {{\n\
           if (req.url ~ \"^/varnish/dead\") {{ set req.backend_hint = dead; }}\n\
           elsif (req.url ~ \"^/varnish/hung\") {{ set req.backend_hint = hung; }}\n\
           else {{ set req.backend_hint = app; }}\n\
           return (pass);\n\
         }}\n",
        dead.port, hold.port, app.port
    );
    let varnish = real_software::varnish(&varnishd, &varnishadm, &vcl);
    let (envoy, port) = meshtriage_envoy(&[("varnish", varnish.port)]);
    let passed = request(port, "GET", "/varnish/app/503", &[], b"").unwrap();
    assert!(
        passed.header("via").is_some_and(|v| v.contains("varnish")),
        "Varnish's Via on the app's page: {:?}",
        passed.headers
    );
    let bad = check(
        &envoy,
        port,
        &[
            want(
                "/varnish/dead",
                503,
                "gateway_error",
                "upstream_proxy",
                true,
            ),
            want(
                "/varnish/hung",
                503,
                "gateway_error",
                "upstream_proxy",
                true,
            ),
            want("/varnish/app/502", 502, "app_error", "app", false),
            want("/varnish/app/503", 503, "app_error", "app", false),
        ],
    );
    assert!(
        bad.is_empty(),
        "{bad:#?}\n{}\n{}",
        envoy.diagnostics(),
        varnish.log()
    );
}

/// Squid as a reverse proxy: its own error pages carry `X-Squid-Error` (a refused, a hung and a
/// closing peer), which makes them certain already in the header (no `inferred`); the app's own
/// 502/503 passed through carry Squid's `Via` too and stay the app's.
#[test]
fn squid_errors_are_the_gateways_and_its_app_errors_stay_the_apps() {
    let bin = match real_software::tool("squid", "squid") {
        Ok(bin) => bin,
        Err(why) => return meshtriage_suite::skip(&why),
    };
    let dead = paths::closed_port();
    let hold = raw_backend(true);
    let close = raw_backend(false);
    let app = real_software::status_app();
    let mut peers = String::new();
    for (name, port, opts) in [
        ("dead", dead.port, " connect-timeout=1"),
        ("hung", hold.port, ""),
        ("bad", close.port, ""),
        ("app", app.port, ""),
    ] {
        peers.push_str(&format!(
            "cache_peer 127.0.0.1 parent {port} 0 no-query no-digest originserver name={name}{opts}\n\
             acl to_{name} urlpath_regex ^/squid/{name}\n\
             cache_peer_access {name} allow to_{name}\ncache_peer_access {name} deny all\n"
        ));
    }
    // One try: Squid would otherwise retry an empty reply for ~20 s.
    peers.push_str("read_timeout 1 seconds\nforward_max_tries 1\n");
    let squid = real_software::squid(&bin, &peers);
    let (envoy, port) = meshtriage_envoy(&[("squid", squid.port)]);
    let bad = check(
        &envoy,
        port,
        &[
            want("/squid/dead", 502, "gateway_error", "upstream_proxy", false),
            want(
                "/squid/hung",
                504,
                "upstream_timeout",
                "upstream_proxy",
                false,
            ),
            want("/squid/bad", 502, "gateway_error", "upstream_proxy", false),
            want("/squid/app/502", 502, "app_error", "app", false),
            want("/squid/app/503", 503, "app_error", "app", false),
        ],
    );
    assert!(
        bad.is_empty(),
        "{bad:#?}\n{}\n{}",
        envoy.diagnostics(),
        squid.log()
    );
}

#[test]
fn a_plain_envoy_hops_replies_are_inferred_in_the_header_and_certain_in_the_log() {
    let hold = raw_backend(true);
    let close = raw_backend(false);
    let (plain, plain_port) = plain_envoy(&hold, &close);
    let (envoy, port) = meshtriage_envoy(&[("envoy", plain_port)]);
    let bad = check(
        &envoy,
        port,
        &[
            want(
                "/envoy/uh",
                503,
                "no_healthy_upstream",
                "upstream_proxy",
                true,
            ),
            want("/envoy/ut", 504, "upstream_timeout", "upstream_proxy", true),
            want(
                "/envoy/uc",
                503,
                "connection_terminated",
                "upstream_proxy",
                true,
            ),
        ],
    );
    assert!(
        bad.is_empty(),
        "{bad:#?}\n{}\n{}",
        envoy.diagnostics(),
        plain.diagnostics()
    );
}

/// The keep-alive race: the upstream closes a pooled connection just as the proxy reuses it.
/// The hint rests on how fast the pool handed the connection over (see
/// filter/core/src/reused_connection.rs): a few tries allow for a busy machine; an app that
/// closes a new connection never gets it.
#[test]
fn the_keep_alive_race_is_hinted_and_a_fresh_close_is_not() {
    let racer = real_software::keepalive_racer();
    let (envoy, port) = meshtriage_envoy(&[("race", racer.port)]);
    let labels = [
        ("class", "connection_terminated"),
        ("origin", "proxy"),
        ("side", "upstream"),
    ];
    let mut hinted = 0;
    for i in 0..5 {
        let before = envoy.metric(FAILURES, &labels);
        let first = request(port, "GET", "/race/ok", &[], b"").unwrap();
        assert_eq!(first.status, 200);
        let scn = format!("race{i}");
        let r = request(port, "GET", "/race/reuse", &[("x-scn", &scn)], b"").unwrap();
        assert_eq!(r.status, 503);
        let header = verdict::parse(r.header("x-meshtriage").expect("a verdict header"));
        let h = header.first().unwrap();
        assert_eq!(
            (h.layer.as_str(), h.class()),
            ("l4", "connection_terminated")
        );
        let log = logged(&envoy, &scn);
        assert_eq!(log.class(), "connection_terminated");
        assert_eq!(
            h.hints().contains(&"reused_connection"),
            log.hints().contains(&"reused_connection"),
            "header and log agree"
        );
        assert_eq!(
            envoy.wait_metric(FAILURES, &labels, before + 1.0),
            before + 1.0
        );
        hinted += usize::from(h.hints().contains(&"reused_connection"));

        // The app closes a new connection unanswered: no hint.
        let scn = format!("fresh{i}");
        let c = request(port, "GET", "/race/close-now", &[("x-scn", &scn)], b"").unwrap();
        assert_eq!(c.status, 503);
        let log = logged(&envoy, &scn);
        assert_eq!(log.class(), "connection_terminated");
        assert!(!log.hints().contains(&"reused_connection"), "{log:?}");
    }
    assert!(
        hinted > 0,
        "no race of 5 got the hint\n{}",
        envoy.diagnostics()
    );
}

/// The upstream requires a client certificate; this proxy offers none (an mTLS-mode mismatch).
fn mtls_mismatch(version: &str, max: &str) -> (View, Option<View>, f64) {
    let certs = meshtriage_envoy_test::certs::generate(&paths::scratch("tls-certs"));
    let server = real_software::tls_server_requiring_client_cert(&certs, version);
    let dir = paths::scratch("tls-mismatch");
    let log = dir.join("access.log").display().to_string();
    let wasm = paths::wasm().display().to_string();
    let routes = json!([route("/", "c_tls", "5s")]);
    let filters = vec![
        http_wasm(&wasm, &with_direction("{}", "outbound")),
        router(),
    ];
    let tls = json!({"transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "sni": "upstream.local",
        "common_tls_context": {"tls_params": {"tls_maximum_protocol_version": max},
            "validation_context": {"trusted_ca": {"filename": certs.ca}}}}}});
    let bootstrap = json!({
        "stats_config": {"stats_tags": stats_tags()},
        "static_resources": {
            "listeners": [listener("outbound", 0, Some("OUTBOUND"), vec![hcm("outbound", routes, filters, &log)], None)],
            "clusters": [cluster("c_tls", server.port, tls)]}});
    let envoy = Envoy::start(&bootstrap, &dir);
    let port = envoy.port("outbound");
    let r = request(port, "GET", "/", &[("x-scn", "mtls")], b"").unwrap();
    println!("{version}: {} {:?}", r.status, r.header("x-meshtriage"));
    let header = r
        .header("x-meshtriage")
        .map(verdict::parse)
        .and_then(|v| v.into_iter().next());
    let logged = logged(&envoy, "mtls");
    let labels = [
        ("class", logged.class()),
        ("layer", "l4"),
        ("origin", "proxy"),
    ];
    let counted = envoy.wait_metric(FAILURES, &labels, 1.0);
    (logged, header, counted)
}

/// A real TLS server (`openssl s_server -Verify 1`) requires a client certificate; this proxy
/// offers none. TLS 1.2: the handshake alert, `tls_handshake_rejected`. TLS 1.3: Envoy sees a
/// plain termination; the verdict says `connection_terminated` with `tls13_no_client_cert`.
#[test]
fn a_missing_client_certificate_is_named_under_tls12_and_tls13() {
    let (log, header, counted) = mtls_mismatch("-tls1_3", "TLSv1_3");
    assert_eq!(counted, 1.0, "failure metric");
    let header = header.expect("a verdict header");
    for v in [&log, &header] {
        assert_eq!(
            (v.layer.as_str(), v.class()),
            ("l4", "connection_terminated"),
            "{v:?}"
        );
        assert!(v.hints().contains(&"tls13_no_client_cert"), "{v:?}");
    }
    let (log, header, counted) = mtls_mismatch("-tls1_2", "TLSv1_2");
    assert_eq!(counted, 1.0, "failure metric");
    let header = header.expect("a verdict header");
    for v in [&log, &header] {
        assert_eq!(v.class(), "tls_handshake_rejected", "{v:?}");
        assert!(!v.hints().contains(&"tls13_no_client_cert"), "{v:?}");
    }
}

/// gRPC through Envoy with grpcio on both ends: the failing status in the header parameter
/// `grpc` and the `grpc_code` metric label; a call that outlives its deadline gets one verdict,
/// `grpc_deadline_exceeded`, whichever side ends it first.
#[test]
fn grpc_status_codes_and_deadlines() {
    let python = match real_software::python_venv("grpc-venv", &["grpcio"]) {
        Ok(python) => python,
        Err(why) => return meshtriage_suite::skip(&why),
    };
    let server = real_software::grpc_server(&python);
    let (envoy, port) = grpc_envoy(server.port);
    let got = real_software::grpc_call(&python, port, "Unavailable", 5.0, "unavailable");
    let (code, header) = got.split_once(' ').unwrap_or((&got, "-"));
    assert_eq!(code, "UNAVAILABLE", "{got}");
    let h = verdict::parse(header)
        .into_iter()
        .next()
        .expect("verdict in the trailers-only reply");
    assert_eq!(
        (h.class(), h.get("grpc")),
        ("app_grpc_error", Some("14")),
        "{h:?}"
    );
    let log = logged(&envoy, "unavailable");
    assert_eq!(
        (log.class(), log.get("grpc")),
        ("app_grpc_error", Some("14"))
    );
    let unavailable = [("grpc_code", "unavailable")];
    assert_eq!(envoy.wait_metric(GRPC_FAILURES, &unavailable, 1.0), 1.0);

    // The deadline (0.5 s) runs out while the server sleeps (3 s): the client cancels the
    // stream, or the server's timer fires first and it answers status 4.
    let calls: u8 = 3;
    for i in 0..calls {
        let scn = format!("deadline{i}");
        let got = real_software::grpc_call(&python, port, "Slow", 0.5, &scn);
        assert!(got.starts_with("DEADLINE_EXCEEDED"), "{got}");
        let log = logged(&envoy, &scn);
        assert_eq!(
            (
                log.layer.as_str(),
                log.class(),
                log.get("origin"),
                log.get("side")
            ),
            (
                "l7",
                "grpc_deadline_exceeded",
                Some("client"),
                Some("upstream")
            ),
            "{log:?}"
        );
    }
    // The server's status 4 first, trailers-only: the header is written before the request's
    // `grpc-timeout` can be read (Envoy exposes it again at the log), so it keeps the code; the
    // access log and the metric carry the deadline verdict.
    let got = real_software::grpc_call(&python, port, "ServerDeadline", 1.0, "server-deadline");
    let (code, header) = got.split_once(' ').unwrap_or((&got, "-"));
    assert_eq!(code, "DEADLINE_EXCEEDED", "{got}");
    let h = verdict::parse(header)
        .into_iter()
        .next()
        .expect("verdict in the trailers-only reply");
    assert_eq!(
        (h.class(), h.get("grpc")),
        ("app_grpc_error", Some("4")),
        "{h:?}"
    );
    let log = logged(&envoy, "server-deadline");
    assert_eq!(
        (log.class(), log.get("origin"), log.get("grpc")),
        ("grpc_deadline_exceeded", Some("client"), Some("4")),
        "{log:?}"
    );
    // Counted by code wherever a status 4 was seen (a client's cancel carries no code).
    let with_code = envoy
        .access_log_lines()
        .iter()
        .filter(|l| l.contains(";grpc=4;"))
        .count() as f64;
    let code4 = [("grpc_code", "deadline_exceeded")];
    assert_eq!(
        envoy.wait_metric(GRPC_FAILURES, &code4, with_code),
        with_code
    );
    let deadline = [("class", "grpc_deadline_exceeded")];
    let all = f64::from(calls + 1);
    assert_eq!(envoy.wait_metric(FAILURES, &deadline, all), all);
    // A success carries nothing.
    assert_eq!(
        real_software::grpc_call(&python, port, "Ok", 5.0, "ok"),
        "OK"
    );
    assert_eq!(envoy.metric(FAILURES, &[("class", "app_grpc_error")]), 1.0);
}

/// [`meshtriage_envoy`] with one catch-all route to the gRPC server over HTTP/2 (gRPC paths
/// are `/package.Service/Method`).
fn grpc_envoy(grpc_port: u16) -> (Envoy, u16) {
    let dir = paths::scratch("real-software-grpc");
    let log = dir.join("access.log").display().to_string();
    let wasm = paths::wasm().display().to_string();
    let h2 = json!({"typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}}}}});
    let filters = vec![
        http_wasm(&wasm, &with_direction("{}", "outbound")),
        router(),
    ];
    let bootstrap = json!({
        "stats_config": {"stats_tags": stats_tags()},
        "static_resources": {
            "listeners": [listener("outbound", 0, Some("OUTBOUND"), vec![hcm("outbound", json!([route("/", "c_grpc", "5s")]), filters, &log)], None)],
            "clusters": [cluster("c_grpc", grpc_port, h2)]}});
    let envoy = Envoy::start(&bootstrap, &dir);
    let port = envoy.port("outbound");
    (envoy, port)
}

/// Precision: an app server's own 500/502/503 pages (gunicorn from PyPI, HTML, small) stay the
/// app's, header and log alike.
#[test]
fn an_app_servers_own_error_pages_stay_the_apps() {
    let python = match real_software::python_venv("gunicorn-venv", &["gunicorn"]) {
        Ok(python) => python,
        Err(why) => return meshtriage_suite::skip(&why),
    };
    let app = real_software::gunicorn(&python);
    let (envoy, port) = meshtriage_envoy(&[("app", app.port)]);
    let bad = check(
        &envoy,
        port,
        &[
            want("/app/502", 502, "app_error", "app", false),
            want("/app/503", 503, "app_error", "app", false),
            want("/app/500", 500, "app_error", "app", false),
        ],
    );
    assert!(
        bad.is_empty(),
        "{bad:#?}\n{}\n{}",
        envoy.diagnostics(),
        app.log()
    );
}
