//! The standard test bed: one Envoy with an outbound and an inbound HTTP listener (meshtriage
//! first in the chain, then RBAC, local rate limit, fault, router), a route per scenario, the
//! misbehaving upstreams behind them, and TLS listeners acting as TLS upstreams. The same
//! builders produce the demo's and docker-compose's configs.

use crate::certs::{self, Certs};
use crate::envoy::Envoy;
use crate::paths;
use crate::upstream::{self, Upstream, H2};
use serde_json::{json, Value};
use std::path::Path;

/// The access-log line every shipped config writes.
pub const ACCESS_FORMAT: &str = "ACCESS scn=%REQ(X-SCN)% code=%RESPONSE_CODE% flags=%RESPONSE_FLAGS% \
details=%RESPONSE_CODE_DETAILS% ps=%RESP(PROXY-STATUS)% verdict=%FILTER_STATE(wasm.meshtriage:PLAIN)%\n";

pub fn string_value(s: &str) -> Value {
    json!({"@type": "type.googleapis.com/google.protobuf.StringValue", "value": s})
}

fn vm_config(wasm: &str) -> Value {
    json!({"runtime": "envoy.wasm.runtime.v8", "vm_id": "meshtriage", "code": {"local": {"filename": wasm}}})
}

/// The meshtriage HTTP filter with `config` (JSON text) as plugin configuration.
pub fn http_wasm(wasm: &str, config: &str) -> Value {
    json!({"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": "meshtriage", "root_id": "meshtriage", "configuration": string_value(config),
                   "vm_config": vm_config(wasm), "failure_policy": "FAIL_OPEN"}}})
}

/// The meshtriage network filter (root id `meshtriage-tcp`).
pub fn net_wasm(wasm: &str, config: &str) -> Value {
    json!({"name": "envoy.filters.network.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
        "config": {"name": "meshtriage-tcp", "root_id": "meshtriage-tcp", "configuration": string_value(config),
                   "vm_config": vm_config(wasm), "failure_policy": "FAIL_OPEN"}}})
}

pub fn file_access_log(path: &str) -> Value {
    json!([{"name": "envoy.access_loggers.file", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "path": path, "log_format": {"text_format_source": {"inline_string": ACCESS_FORMAT}}}}])
}

pub fn router() -> Value {
    json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
}

/// RBAC, local rate limit and fault filters with no policy: routes switch them on.
pub fn policy_filters() -> Vec<Value> {
    vec![
        json!({"name": "envoy.filters.http.rbac", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"}}),
        json!({"name": "envoy.filters.http.local_ratelimit", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit", "stat_prefix": "rl"}}),
        json!({"name": "envoy.filters.http.fault", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}}),
    ]
}

pub fn hcm(stat_prefix: &str, routes: Value, filters: Vec<Value>, access_log: &str) -> Value {
    json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix, "codec_type": "AUTO",
        "access_log": file_access_log(access_log),
        "proxy_status_config": {"literal_proxy_name": stat_prefix},
        "route_config": {"name": stat_prefix, "validate_clusters": false,
                         "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": filters}})
}

/// A listener; `direction` is Envoy's `traffic_direction` (`INBOUND`/`OUTBOUND`), which the
/// plugin reads as `xds.listener_direction`.
pub fn listener(
    name: &str,
    port: u16,
    direction: Option<&str>,
    filters: Vec<Value>,
    tls: Option<Value>,
) -> Value {
    let mut chain = json!({"filters": filters});
    if let Some(t) = tls {
        chain["transport_socket"] = t;
    }
    let mut l = json!({"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                       "filter_chains": [chain]});
    if let Some(d) = direction {
        l["traffic_direction"] = json!(d);
    }
    l
}

pub fn cluster(name: &str, port: u16, extra: Value) -> Value {
    let mut c = json!({"name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}});
    if let (Some(obj), Some(more)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            obj.insert(k.clone(), v.clone());
        }
    }
    c
}

pub fn protocol(http: Value) -> Value {
    json!({"typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": http}}})
}

pub fn upstream_tls(ca: Option<&Path>, san: Option<&str>) -> Value {
    let mut ctx = json!({"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                         "sni": "upstream.local"});
    if let Some(ca) = ca {
        let mut vc = json!({"trusted_ca": {"filename": ca}});
        if let Some(san) = san {
            vc["match_typed_subject_alt_names"] =
                json!([{"san_type": "DNS", "matcher": {"exact": san}}]);
        }
        ctx["common_tls_context"] = json!({"validation_context": vc});
    }
    json!({"transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": ctx}})
}

pub fn downstream_tls(certs: &Certs, require_client: bool) -> Value {
    let mut ctx = json!({"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": {"tls_certificates": [{"certificate_chain": {"filename": certs.server_cert},
                                                      "private_key": {"filename": certs.server_key}}]}});
    if require_client {
        ctx["require_client_certificate"] = json!(true);
        ctx["common_tls_context"]["validation_context"] =
            json!({"trusted_ca": {"filename": certs.ca}});
    }
    json!({"name": "envoy.transport_sockets.tls", "typed_config": ctx})
}

fn route(prefix: &str, cluster: &str, extra: Value) -> Value {
    let mut r =
        json!({"match": {"prefix": prefix}, "route": {"cluster": cluster, "timeout": "1s"}});
    if let Some(obj) = extra.as_object() {
        for (k, v) in obj {
            if k == "typed_per_filter_config" {
                r[k] = v.clone();
            } else {
                r["route"][k] = v.clone();
            }
        }
    }
    r
}

const RETRY: &str =
    r#"{"retry_policy": {"retry_on": "connect-failure,5xx,reset", "num_retries": 2}}"#;

/// Every scenario route of the bed.
pub fn routes() -> Value {
    let retry: Value = serde_json::from_str(RETRY).unwrap_or_default();
    let rbac_deny = json!({"typed_per_filter_config": {"envoy.filters.http.rbac": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
        "rbac": {"rules": {"action": "DENY", "policies": {"deny-all": {"permissions": [{"any": true}], "principals": [{"any": true}]}}}}}}});
    let rate_limit = json!({"typed_per_filter_config": {"envoy.filters.http.local_ratelimit": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit", "stat_prefix": "rl",
        "token_bucket": {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "3600s"},
        "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": "rl_en"},
        "filter_enforced": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": "rl_enf"}}}});
    let fault = json!({"typed_per_filter_config": {"envoy.filters.http.fault": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
        "abort": {"http_status": 503, "percentage": {"numerator": 100, "denominator": "HUNDRED"}}}}});
    json!([
        route("/app/", "c_app", json!({})),
        route("/uf", "c_refused", json!({})),
        route("/uh", "c_empty", json!({})),
        route("/nc", "no_such_cluster", json!({})),
        route("/retry/", "c_app", retry.clone()),
        route("/retry-uf", "c_refused", retry),
        route(
            "/pertry/",
            "c_app",
            json!({"timeout": "5s", "retry_policy": {"retry_on": "5xx", "num_retries": 1, "per_try_timeout": "0.3s"}})
        ),
        route(
            "/si/",
            "c_app",
            json!({"timeout": "5s", "idle_timeout": "0.5s"})
        ),
        route("/umsdr/", "c_app_msd", json!({"timeout": "5s"})),
        route("/cb/", "c_cb", json!({"timeout": "5s"})),
        route("/deny", "c_app", rbac_deny),
        route("/rl", "c_app", rate_limit),
        route("/fault", "c_app", fault),
        route("/tls/plain", "c_tls_plain", json!({})),
        route("/tls/badca", "c_tls_badca", json!({})),
        route("/tls/badsan", "c_tls_badsan", json!({})),
        route("/tls/nocert", "c_tls_nocert", json!({})),
        route("/tls/ok", "c_tls_ok", json!({})),
        route("/h2rst/", "c_h2_rst", json!({})),
        route("/h2refused/", "c_h2_refused", json!({})),
        route("/h2/", "c_app_h2", json!({})),
        route("/grpc/", "c_app_trailers", json!({})),
    ])
}

/// Options for [`Bed::start`].
#[derive(Clone, Default)]
pub struct BedOptions {
    /// Plugin configuration (JSON text); empty = defaults.
    pub plugin_config: String,
    /// Leave the plugin out (baseline).
    pub without_plugin: bool,
}

/// A running bed: Envoy plus its upstreams, all stopped on drop.
pub struct Bed {
    pub envoy: Envoy,
    /// Outbound HTTP listener.
    pub port: u16,
    /// Inbound HTTP listener (same routes).
    pub inbound_port: u16,
    pub app: Upstream,
    _others: Vec<Upstream>,
}

impl Bed {
    pub fn start(name: &str, opts: BedOptions) -> Bed {
        let dir = paths::scratch(name);
        let certs = certs::generate(&dir.join("certs"));
        let app = upstream::http1();
        let h2_rst = upstream::http2(H2::ResetBeforeHeaders);
        let h2_refused = upstream::http2(H2::Refused);
        let (port, inbound_port, tls_port, mtls_port) = (
            paths::free_port(),
            paths::free_port(),
            paths::free_port(),
            paths::free_port(),
        );
        let log = dir.join("access.log").display().to_string();
        let wasm = paths::wasm().display().to_string();
        let filters = |with: bool| {
            let mut f = Vec::new();
            if with {
                f.push(http_wasm(&wasm, &opts.plugin_config));
            }
            f.extend(policy_filters());
            f.push(router());
            f
        };
        let simple_routes = json!([route("/", "c_app", json!({}))]);
        let h1 = protocol(json!({"http_protocol_options": {}}));
        let h2 = protocol(json!({"http2_protocol_options": {}}));
        let cfg = json!({
            "node": {"id": "bed-node", "cluster": "bed", "metadata": {"NAME": "bed", "NAMESPACE": "test"}},
            "stats_config": {"stats_tags": stats_tags()},
            "static_resources": {
                "listeners": [
                    listener("outbound", port, Some("OUTBOUND"), vec![hcm("out", routes(), filters(!opts.without_plugin), &log)], None),
                    listener("inbound", inbound_port, Some("INBOUND"), vec![hcm("in", routes(), filters(!opts.without_plugin), &log)], None),
                    listener("tls_upstream", tls_port, None, vec![hcm("tls", simple_routes.clone(), vec![router()], &log)], Some(downstream_tls(&certs, false))),
                    listener("mtls_upstream", mtls_port, None, vec![hcm("mtls", simple_routes, vec![router()], &log)], Some(downstream_tls(&certs, true))),
                ],
                "clusters": [
                    cluster("c_app", app.port, h1.clone()),
                    cluster("c_refused", upstream::refused_port(), json!({})),
                    json!({"name": "c_empty", "type": "STATIC", "connect_timeout": "1s", "load_assignment": {"cluster_name": "c_empty"}}),
                    cluster("c_app_msd", app.port, json!({"typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "common_http_protocol_options": {"max_stream_duration": "0.5s"},
                        "explicit_http_config": {"http_protocol_options": {}}}}})),
                    cluster("c_cb", app.port, json!({"circuit_breakers": {"thresholds": [{"max_requests": 1, "max_pending_requests": 1, "max_connections": 1}]}})),
                    cluster("c_tls_plain", app.port, upstream_tls(None, None)),
                    cluster("c_tls_badca", tls_port, upstream_tls(Some(&certs.other_ca), None)),
                    cluster("c_tls_badsan", tls_port, upstream_tls(Some(&certs.ca), Some("other.local"))),
                    cluster("c_tls_nocert", mtls_port, upstream_tls(Some(&certs.ca), Some("upstream.local"))),
                    cluster("c_tls_ok", tls_port, upstream_tls(Some(&certs.ca), Some("upstream.local"))),
                    cluster("c_h2_rst", h2_rst.port, h2.clone()),
                    cluster("c_h2_refused", h2_refused.port, h2.clone()),
                    cluster("c_app_h2", app.port, h2),
                    cluster("c_app_trailers", app.port, protocol(json!({"http_protocol_options": {"enable_trailers": true}}))),
                ]
            }
        });
        let envoy = Envoy::start(&cfg, &dir);
        Bed {
            envoy,
            port,
            inbound_port,
            app,
            _others: vec![h2_rst, h2_refused],
        }
    }

    /// GET on the outbound listener with an `x-scn` tag for the access log.
    pub fn get(&self, path: &str) -> crate::Response {
        self.get_on(self.port, path)
    }

    pub fn get_on(&self, port: u16, path: &str) -> crate::Response {
        crate::client::request(port, "GET", path, &[("x-scn", path)], b"")
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.envoy.diagnostics()))
    }
}

/// `stats_config.stats_tags` for the plugin's tags.
pub fn stats_tags() -> Value {
    Value::Array(
        meshtriage_core::metrics::stats_tags()
            .into_iter()
            .map(|(name, regex)| json!({"tag_name": name, "regex": regex}))
            .collect(),
    )
}
