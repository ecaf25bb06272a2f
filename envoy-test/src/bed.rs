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
    http_wasm_named("meshtriage", wasm, config)
}

/// The HTTP filter under the plugin name `name`: the plugin keeps its last good configuration
/// per name, so listeners with different configurations need different names.
pub fn http_wasm_named(name: &str, wasm: &str, config: &str) -> Value {
    json!({"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": name, "root_id": "meshtriage", "configuration": string_value(config),
                   "vm_config": vm_config(wasm), "failure_policy": "FAIL_OPEN"}}})
}

/// `config` (plugin configuration JSON, empty = defaults) stating the listener's `direction`
/// (`"inbound"`/`"outbound"`), as an operator does when a listener's direction is known
/// statically: the plugin then skips the per-request `xds.listener_direction` read. A
/// configuration that is not a JSON object is returned as is (the plugin reports it).
pub fn with_direction(config: &str, direction: &str) -> String {
    let doc = if config.trim().is_empty() {
        Ok(json!({}))
    } else {
        serde_json::from_str::<Value>(config)
    };
    match doc {
        Ok(Value::Object(mut map)) => {
            map.insert("direction".into(), json!(direction));
            Value::Object(map).to_string()
        }
        _ => config.to_string(),
    }
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
        // The keep-alive race on a pool of its own (other scenarios leave no idle connection).
        route("/race/", "c_race", json!({})),
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

/// ext_authz (disabled unless a route enables it) asking the app cluster: the check request
/// goes to `/authz` + the request path, so `/extauthz/status/403` is denied with a 403.
pub fn ext_authz_filter() -> Value {
    json!({"name": "envoy.filters.http.ext_authz", "disabled": true, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "transport_api_version": "V3",
        "http_service": {"server_uri": {"uri": "http://127.0.0.1", "cluster": "c_app", "timeout": "1s"},
                         "path_prefix": "/authz"}}})
}

/// Public test key only (HS256 secret "meshtriage-test"): requests without a token are denied.
const JWKS: &str = r#"{"keys":[{"kty":"oct","alg":"HS256","kid":"t","k":"bWVzaHRyaWFnZS10ZXN0"}]}"#;

/// jwt_authn requiring a token on `/jwt` only.
pub fn jwt_filter() -> Value {
    json!({"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"test": {"issuer": "meshtriage-test", "local_jwks": {"inline_string": JWKS}}},
        "rules": [{"match": {"prefix": "/jwt"}, "requires": {"provider_name": "test"}}]}})
}

/// The routes added by the scenario matrix (connect timeout, ext_authz, JWT).
fn more_routes() -> Vec<Value> {
    let enable_authz = json!({"typed_per_filter_config": {"envoy.filters.http.ext_authz": {
        "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
        "config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
                   "check_settings": {}}}}});
    vec![
        route("/uct", "c_blackhole", json!({"timeout": "5s"})),
        route("/extauthz/", "c_app", enable_authz),
        route("/jwt", "c_app", json!({})),
        route("/drop", "c_drop", json!({})),
    ]
}

/// An edit of the bootstrap (see [`BedOptions::customize`]).
pub type BootstrapEdit = std::rc::Rc<dyn Fn(&mut Value)>;

/// Options for [`Bed::start`].
#[derive(Clone, Default)]
pub struct BedOptions {
    /// Plugin configuration (JSON text); empty = defaults.
    pub plugin_config: String,
    /// Leave the plugin out (baseline).
    pub without_plugin: bool,
    /// Also write Istio's default text and JSON access logs, with the verdict
    /// (`istio_log::text_log(&bed.dir)`, `istio_log::json_log(&bed.dir)`).
    pub istio_logs: bool,
    /// Edits the bootstrap before Envoy starts (e.g. `trace_bed` adds a tracer).
    pub customize: Option<BootstrapEdit>,
}

/// Where everything of a bed lives: the native bed fills it with ephemeral ports and scratch
/// paths, `gen-configs` with the fixed ports and container paths of docker-compose. One
/// [`bootstrap`] builds both, so the two cannot drift.
#[derive(Clone, Debug)]
pub struct Topology {
    /// Address of the outbound/inbound listeners (`127.0.0.1`; `0.0.0.0` in a container).
    pub listen: String,
    pub port: u16,
    pub inbound_port: u16,
    pub tls_port: u16,
    pub mtls_port: u16,
    /// The misbehaving HTTP/1.1 app.
    pub app_port: u16,
    pub h2_rst_port: u16,
    pub h2_refused_port: u16,
    /// A listener with a full accept queue (connect timeout).
    pub blackhole_port: u16,
    /// A port where nothing listens.
    pub refused_port: u16,
    pub ca: String,
    pub other_ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub wasm: String,
    pub access_log: String,
    /// The plugin configuration; `None` leaves the plugin out.
    pub plugin_config: Option<String>,
    /// Add each HTTP listener's `direction` to its copy of the plugin configuration (the shipped
    /// configs). The native bed leaves it out, so its tests exercise the `"auto"` default.
    pub state_direction: bool,
}

/// The bed's Envoy bootstrap (without `admin`, which [`Envoy::start`] adds).
pub fn bootstrap(t: &Topology) -> Value {
    // `direction`: the listener's, as the plugin configuration spells it.
    let filters = |direction: &str| {
        let mut f = Vec::new();
        if let Some(cfg) = &t.plugin_config {
            if t.state_direction {
                f.push(http_wasm_named(
                    &format!("meshtriage-{direction}"),
                    &t.wasm,
                    &with_direction(cfg, direction),
                ));
            } else {
                f.push(http_wasm(&t.wasm, cfg));
            }
        }
        f.extend(policy_filters());
        f.push(ext_authz_filter());
        f.push(jwt_filter());
        f.push(router());
        f
    };
    let mut all_routes = routes();
    if let Some(list) = all_routes.as_array_mut() {
        // Before the catch-all-free scenario routes; prefixes do not overlap.
        list.extend(more_routes());
    }
    let simple_routes = json!([route("/", "c_app", json!({}))]);
    let h1 = protocol(json!({"http_protocol_options": {}}));
    let h2 = protocol(json!({"http2_protocol_options": {}}));
    let certs = Certs {
        ca: t.ca.clone().into(),
        server_cert: t.server_cert.clone().into(),
        server_key: t.server_key.clone().into(),
        other_ca: t.other_ca.clone().into(),
    };
    let log = t.access_log.as_str();
    let mut http_listeners = [
        listener(
            "outbound",
            t.port,
            Some("OUTBOUND"),
            vec![hcm("out", all_routes.clone(), filters("outbound"), log)],
            None,
        ),
        listener(
            "inbound",
            t.inbound_port,
            Some("INBOUND"),
            vec![hcm("in", all_routes, filters("inbound"), log)],
            None,
        ),
    ];
    for l in &mut http_listeners {
        l["address"]["socket_address"]["address"] = json!(t.listen);
    }
    let [outbound, inbound] = http_listeners;
    json!({
        "node": {"id": "bed-node", "cluster": "bed", "metadata": {"NAME": "bed", "NAMESPACE": "test"}},
        "stats_config": {"stats_tags": stats_tags()},
        "static_resources": {
            "listeners": [
                outbound,
                inbound,
                listener("tls_upstream", t.tls_port, None, vec![hcm("tls", simple_routes.clone(), vec![router()], log)], Some(downstream_tls(&certs, false))),
                listener("mtls_upstream", t.mtls_port, None, vec![hcm("mtls", simple_routes, vec![router()], log)], Some(downstream_tls(&certs, true))),
            ],
            "clusters": [
                cluster("c_app", t.app_port, h1.clone()),
                cluster("c_race", t.app_port, h1.clone()),
                cluster("c_refused", t.refused_port, json!({})),
                json!({"name": "c_empty", "type": "STATIC", "connect_timeout": "1s", "load_assignment": {"cluster_name": "c_empty"}}),
                cluster("c_app_msd", t.app_port, json!({"typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "common_http_protocol_options": {"max_stream_duration": "0.5s"},
                    "explicit_http_config": {"http_protocol_options": {}}}}})),
                cluster("c_cb", t.app_port, json!({"circuit_breakers": {"thresholds": [{"max_requests": 1, "max_pending_requests": 1, "max_connections": 1}]}})),
                cluster("c_tls_plain", t.app_port, upstream_tls(None, None)),
                cluster("c_tls_badca", t.tls_port, upstream_tls(Some(&certs.other_ca), None)),
                cluster("c_tls_badsan", t.tls_port, upstream_tls(Some(&certs.ca), Some("other.local"))),
                cluster("c_tls_nocert", t.mtls_port, upstream_tls(Some(&certs.ca), Some("upstream.local"))),
                cluster("c_tls_ok", t.tls_port, upstream_tls(Some(&certs.ca), Some("upstream.local"))),
                cluster("c_h2_rst", t.h2_rst_port, h2.clone()),
                cluster("c_h2_refused", t.h2_refused_port, h2.clone()),
                cluster("c_app_h2", t.app_port, h2),
                cluster("c_app_trailers", t.app_port, protocol(json!({"http_protocol_options": {"enable_trailers": true}}))),
                cluster("c_blackhole", t.blackhole_port, json!({"connect_timeout": "0.5s"})),
                json!({"name": "c_drop", "type": "STATIC", "connect_timeout": "1s", "load_assignment": {"cluster_name": "c_drop",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": t.app_port}}}}]}],
                    "policy": {"drop_overloads": [{"category": "all", "drop_percentage": {"numerator": 100, "denominator": "HUNDRED"}}]}}}),
            ]
        }
    })
}

/// A running bed: Envoy plus its upstreams, all stopped on drop.
pub struct Bed {
    pub envoy: Envoy,
    /// Outbound HTTP listener.
    pub port: u16,
    /// Inbound HTTP listener (same routes).
    pub inbound_port: u16,
    pub app: Upstream,
    /// The bed's scratch directory (certificates, logs).
    pub dir: std::path::PathBuf,
    _others: Vec<Upstream>,
    _blackhole: upstream::Blackhole,
    _refused: paths::ClosedPort,
}

impl Bed {
    pub fn start(name: &str, opts: BedOptions) -> Bed {
        let dir = paths::scratch(name);
        let certs = certs::generate(&dir.join("certs"));
        let app = upstream::http1();
        let h2_rst = upstream::http2(H2::ResetBeforeHeaders);
        let h2_refused = upstream::http2(H2::Refused);
        let blackhole = upstream::blackhole_at(0);
        let refused = paths::closed_port();
        // The TLS listeners are upstreams of this same Envoy's clusters, so their ports must be
        // known before it starts: reserved (held) until Envoy has bound them. The HTTP
        // listeners bind port 0 and are looked up once Envoy is ready.
        let (tls, mtls) = (paths::reserve_port(), paths::reserve_port());
        let show = |p: &Path| p.display().to_string();
        let topology = Topology {
            listen: "127.0.0.1".into(),
            port: 0,
            inbound_port: 0,
            tls_port: tls.port,
            mtls_port: mtls.port,
            app_port: app.port,
            h2_rst_port: h2_rst.port,
            h2_refused_port: h2_refused.port,
            blackhole_port: blackhole.port,
            refused_port: refused.port,
            ca: show(&certs.ca),
            other_ca: show(&certs.other_ca),
            server_cert: show(&certs.server_cert),
            server_key: show(&certs.server_key),
            wasm: show(&paths::wasm()),
            access_log: show(&dir.join("access.log")),
            plugin_config: (!opts.without_plugin).then(|| opts.plugin_config.clone()),
            state_direction: false,
        };
        let mut cfg = bootstrap(&topology);
        if let Some(edit) = &opts.customize {
            edit(&mut cfg);
        }
        if let Some(listeners) = cfg["static_resources"]["listeners"].as_array_mut() {
            listeners.iter_mut().for_each(paths::reuse_port);
        }
        if opts.istio_logs {
            crate::istio_log::add_to(&mut cfg, &dir);
        }
        let envoy = Envoy::start(&cfg, &dir);
        drop((tls, mtls));
        Bed {
            dir,
            port: envoy.port("outbound"),
            inbound_port: envoy.port("inbound"),
            envoy,
            app,
            _others: vec![h2_rst, h2_refused],
            _blackhole: blackhole,
            _refused: refused,
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
