//! Two Envoys as two sidecars: client app → **client sidecar** (OUTBOUND listener, node
//! `client.shop`) → **server sidecar** (INBOUND listener, node `server.shop`) → server apps.
//! The server sidecar may run without meshtriage (a plain Envoy hop), with or without Envoy's
//! own `proxy-status`, to show what the client sidecar still recognises.
//!
//! Server routes: `/gw/…` → the gateway app (copied-headers incident, see `gateway`), `/uf` →
//! a refused port, `/uh` → no endpoints, `/deny` → RBAC deny, `/slow/…` → the scripted app
//! with a 1 s route timeout, anything else → the scripted app (`upstream::http1`).

use crate::bed::{cluster, hcm, http_wasm, listener, policy_filters, protocol, router, stats_tags};
use crate::envoy::Envoy;
use crate::gateway::{self, App};
use crate::paths;
use crate::upstream::{self, Upstream};
use serde_json::{json, Value};

/// How the server sidecar runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerSide {
    /// meshtriage on both sidecars.
    Meshtriage,
    /// A plain Envoy hop that adds `proxy-status` (HCM `proxy_status_config`).
    PlainWithProxyStatus,
    /// A plain Envoy hop without `proxy-status`: only its local-reply bodies tell.
    PlainBodyOnly,
}

/// A running two-sidecar mesh; everything stops on drop.
pub struct Mesh {
    pub client: Envoy,
    pub server: Envoy,
    /// The client app's entry point: the client sidecar's outbound listener.
    pub port: u16,
    /// The server sidecar's inbound listener.
    pub server_port: u16,
    _app: Upstream,
    _refused: paths::ClosedPort,
    _gateway: App,
    _api: App,
}

fn route(prefix: &str, cluster: &str, timeout: &str, extra: Value) -> Value {
    let mut r =
        json!({"match": {"prefix": prefix}, "route": {"cluster": cluster, "timeout": timeout}});
    if let (Some(obj), Some(more)) = (r.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            obj.insert(k.clone(), v.clone());
        }
    }
    r
}

fn node(name: &str) -> Value {
    json!({"id": format!("{name}-node"), "cluster": name, "metadata": {"NAME": name, "NAMESPACE": "shop"}})
}

impl Mesh {
    pub fn start(name: &str, server_side: ServerSide) -> Mesh {
        let wasm = paths::wasm().display().to_string();
        let app = upstream::http1();
        let api = gateway::api();
        let gw = gateway::gateway(api.port);
        let refused = paths::closed_port();
        let h1 = protocol(json!({"http_protocol_options": {}}));

        // Server sidecar: inbound listener in front of the apps.
        let server_dir = paths::scratch(&format!("{name}-server"));
        let mut filters = Vec::new();
        if server_side == ServerSide::Meshtriage {
            filters.push(http_wasm(&wasm, ""));
        }
        filters.extend(policy_filters());
        filters.push(router());
        let rbac_deny = json!({"typed_per_filter_config": {"envoy.filters.http.rbac": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
            "rbac": {"rules": {"action": "DENY", "policies": {"deny-all": {"permissions": [{"any": true}], "principals": [{"any": true}]}}}}}}});
        let routes = json!([
            route("/gw/", "gateway", "1s", json!({})),
            route("/uf", "refused", "1s", json!({})),
            route("/uh", "empty", "1s", json!({})),
            route("/deny", "app", "1s", rbac_deny),
            route("/", "app", "1s", json!({})),
        ]);
        let log = server_dir.join("access.log").display().to_string();
        let mut server_hcm = hcm("inbound", routes, filters, &log);
        if server_side == ServerSide::PlainBodyOnly {
            if let Some(tc) = server_hcm["typed_config"].as_object_mut() {
                tc.remove("proxy_status_config");
            }
        }
        let server_cfg = json!({
            "node": node("server"),
            "stats_config": {"stats_tags": stats_tags()},
            "static_resources": {
                "listeners": [listener("inbound", 0, Some("INBOUND"), vec![server_hcm], None)],
                "clusters": [
                    cluster("app", app.port, h1.clone()),
                    cluster("gateway", gw.port, h1.clone()),
                    cluster("refused", refused.port, json!({})),
                    json!({"name": "empty", "type": "STATIC", "connect_timeout": "1s", "load_assignment": {"cluster_name": "empty"}}),
                ]
            }
        });
        let server = Envoy::start(&server_cfg, &server_dir);
        let server_port = server.port("inbound");

        // Client sidecar: outbound listener whose one cluster is the server sidecar. Its route
        // timeout is longer than the server's, so the server hop's answer always arrives first.
        let client_dir = paths::scratch(&format!("{name}-client"));
        let log = client_dir.join("access.log").display().to_string();
        let client_filters = vec![http_wasm(&wasm, ""), router()];
        let client_hcm = hcm(
            "outbound",
            json!([route("/", "server", "5s", json!({}))]),
            client_filters,
            &log,
        );
        let client_cfg = json!({
            "node": node("client"),
            "stats_config": {"stats_tags": stats_tags()},
            "static_resources": {
                "listeners": [listener("outbound", 0, Some("OUTBOUND"), vec![client_hcm], None)],
                "clusters": [cluster("server", server_port, h1)]
            }
        });
        let client = Envoy::start(&client_cfg, &client_dir);
        let port = client.port("outbound");
        Mesh {
            client,
            server,
            port,
            server_port,
            _app: app,
            _refused: refused,
            _gateway: gw,
            _api: api,
        }
    }

    /// GET through the whole mesh (client sidecar first), tagged for both access logs.
    pub fn get(&self, path: &str) -> crate::Response {
        crate::client::request(self.port, "GET", path, &[("x-scn", path)], b"")
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.diagnostics()))
    }

    /// Both sidecars' logs, for failing tests.
    pub fn diagnostics(&self) -> String {
        format!(
            "==== client sidecar ====\n{}==== server sidecar ====\n{}",
            self.client.diagnostics(),
            self.server.diagnostics()
        )
    }
}
