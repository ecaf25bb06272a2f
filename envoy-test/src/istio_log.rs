//! Istio's default access-log formats (text and JSON encoding), each line also carrying the
//! plugin's verdict (`%FILTER_STATE(wasm.meshtriage:PLAIN)%`): real lines for the tests of
//! `meshtriage logs`, which must read them the way the plugin judged the same requests.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Istio's `EnvoyTextLogFormat` (pilot/pkg/model/telemetry_logging.go, Istio releases with
/// `%UPSTREAM_CLUSTER_RAW%`; earlier ones print `%UPSTREAM_CLUSTER%` at the same place),
/// without its final newline.
pub const ISTIO_TEXT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% \
%PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \
\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% \
%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \
\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% \
%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% \
%REQUESTED_SERVER_NAME% %ROUTE_NAME%";

/// The plugin's verdict operator, appended to Istio's formats.
pub const VERDICT_OPERATOR: &str = "%FILTER_STATE(wasm.meshtriage:PLAIN)%";

/// Istio's `EnvoyJSONLogFormatIstio` keys and operators (`accessLogEncoding: JSON`).
pub const ISTIO_JSON_FIELDS: [(&str, &str); 24] = [
    ("start_time", "%START_TIME%"),
    ("route_name", "%ROUTE_NAME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    (
        "upstream_transport_failure_reason",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    ),
];

/// Where a bed writes its Istio-format logs.
pub fn text_log(dir: &Path) -> PathBuf {
    dir.join("istio-text.log")
}

pub fn json_log(dir: &Path) -> PathBuf {
    dir.join("istio-json.log")
}

/// Two file access logs: Istio's text format and its JSON encoding, each with the verdict
/// (the JSON key `meshtriage`).
pub fn access_logs(dir: &Path) -> Vec<Value> {
    let mut fields: serde_json::Map<String, Value> = ISTIO_JSON_FIELDS
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    fields.insert("meshtriage".into(), json!(VERDICT_OPERATOR));
    let file = |path: PathBuf, format: Value| {
        json!({"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path.display().to_string(), "log_format": format}})
    };
    vec![
        file(
            text_log(dir),
            json!({"text_format_source": {"inline_string": format!("{ISTIO_TEXT_FORMAT} {VERDICT_OPERATOR}\n")}}),
        ),
        file(json_log(dir), json!({"json_format": Value::Object(fields)})),
    ]
}

/// Adds the Istio-format logs to every HTTP connection manager of a bootstrap.
pub fn add_to(bootstrap: &mut Value, dir: &Path) {
    let Some(listeners) = bootstrap["static_resources"]["listeners"].as_array_mut() else {
        return;
    };
    for l in listeners {
        for chain in l["filter_chains"].as_array_mut().into_iter().flatten() {
            for f in chain["filters"].as_array_mut().into_iter().flatten() {
                if let Some(logs) = f["typed_config"]["access_log"].as_array_mut() {
                    logs.extend(access_logs(dir));
                }
            }
        }
    }
}
