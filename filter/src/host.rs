//! The only module that talks to the host. It declares the proxy-wasm ABI calls itself so that
//! no host status can ever panic: every call returns `Option`/`bool`, and callers fail open.
//! (The SDK's own wrappers `panic!` on unexpected statuses and kill the VM - docs/envoy-signals.md §2.)
//! Every property it reads is a row of `meshtriage_core::attributes`, read by one typed reader.
#![allow(unsafe_code)]

use std::ptr::null_mut;

use meshtriage_core::attributes as attr;
use meshtriage_core::flags::ResponseFlags;
use meshtriage_core::metrics::Kind;
use meshtriage_core::Direction;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

/// Header maps the plugin touches (values from the SDK's ABI enums).
#[derive(Clone, Copy)]
#[repr(u32)]
pub enum Map {
    ResponseHeaders = MapType::HttpResponseHeaders as u32,
    ResponseTrailers = MapType::HttpResponseTrailers as u32,
}

const STATUS_OK: u32 = Status::Ok as u32;
const BUFFER_PLUGIN_CONFIGURATION: u32 = BufferType::PluginConfiguration as u32;
const BUFFER_RESPONSE_BODY: u32 = BufferType::HttpResponseBody as u32;
const STATUS_NOT_FOUND: u32 = Status::NotFound as u32;
const STATUS_CAS_MISMATCH: u32 = Status::CasMismatch as u32;
const METRIC_COUNTER: u32 = MetricType::Counter as u32;
const METRIC_GAUGE: u32 = MetricType::Gauge as u32;
const METRIC_HISTOGRAM: u32 = MetricType::Histogram as u32;

#[cfg(target_arch = "wasm32")]
mod abi {
    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
        pub fn proxy_get_property(
            path: *const u8,
            path_size: usize,
            out: *mut *mut u8,
            out_size: *mut usize,
        ) -> u32;
        pub fn proxy_set_property(
            path: *const u8,
            path_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_get_header_map_pairs(map: u32, out: *mut *mut u8, out_size: *mut usize)
            -> u32;
        pub fn proxy_replace_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_add_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
        pub fn proxy_get_buffer_bytes(
            buffer: u32,
            start: usize,
            max: usize,
            out: *mut *mut u8,
            out_size: *mut usize,
        ) -> u32;
        pub fn proxy_define_metric(
            kind: u32,
            name: *const u8,
            name_size: usize,
            out_id: *mut u32,
        ) -> u32;
        pub fn proxy_increment_metric(id: u32, offset: i64) -> u32;
        pub fn proxy_record_metric(id: u32, value: u64) -> u32;
        pub fn proxy_get_shared_data(
            key: *const u8,
            key_size: usize,
            out: *mut *mut u8,
            out_size: *mut usize,
            cas: *mut u32,
        ) -> u32;
        pub fn proxy_set_shared_data(
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
            cas: u32,
        ) -> u32;
        pub fn proxy_get_current_time_nanoseconds(out: *mut u64) -> u32;
        pub fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    }
}

/// Native builds (clippy, docs) never run host code; the stubs answer "not available".
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::missing_safety_doc)]
mod abi {
    pub unsafe fn proxy_log(_: u32, _: *const u8, _: usize) -> u32 {
        1
    }
    pub unsafe fn proxy_get_property(
        _: *const u8,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
    ) -> u32 {
        1
    }
    pub unsafe fn proxy_set_property(_: *const u8, _: usize, _: *const u8, _: usize) -> u32 {
        1
    }
    pub unsafe fn proxy_get_header_map_pairs(_: u32, _: *mut *mut u8, _: *mut usize) -> u32 {
        1
    }
    pub unsafe fn proxy_replace_header_map_value(
        _: u32,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
    ) -> u32 {
        1
    }
    pub unsafe fn proxy_add_header_map_value(
        _: u32,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
    ) -> u32 {
        1
    }
    pub unsafe fn proxy_remove_header_map_value(_: u32, _: *const u8, _: usize) -> u32 {
        1
    }
    pub unsafe fn proxy_get_buffer_bytes(
        _: u32,
        _: usize,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
    ) -> u32 {
        1
    }
    pub unsafe fn proxy_define_metric(_: u32, _: *const u8, _: usize, _: *mut u32) -> u32 {
        1
    }
    pub unsafe fn proxy_increment_metric(_: u32, _: i64) -> u32 {
        1
    }
    pub unsafe fn proxy_record_metric(_: u32, _: u64) -> u32 {
        1
    }
    pub unsafe fn proxy_get_shared_data(
        _: *const u8,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
        _: *mut u32,
    ) -> u32 {
        1
    }
    pub unsafe fn proxy_set_shared_data(
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: u32,
    ) -> u32 {
        1
    }
    pub unsafe fn proxy_get_current_time_nanoseconds(_: *mut u64) -> u32 {
        1
    }
    pub unsafe fn proxy_set_tick_period_milliseconds(_: u32) -> u32 {
        1
    }
}

/// Takes ownership of a buffer the host allocated through the SDK's `proxy_on_memory_allocate`
/// (a boxed slice of exactly `size` bytes).
fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: the host wrote `size` bytes into memory it obtained from our allocator with
    // exactly that size, and hands ownership back to us.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// A property value; `None` when missing or on any host error. Private: every attribute the
/// plugin reads has a typed reader below, over its row in `meshtriage_core::attributes`.
///
/// Takes the path alone, not the row: the row's docs text must not reach the module.
fn property(path: &'static [u8]) -> Option<Vec<u8>> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: pointers are valid for the call; the result buffer is taken by `take`.
    let status =
        unsafe { abi::proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    let value = take(data, size);
    (status == STATUS_OK).then_some(value).flatten()
}

fn property_i64(path: &'static [u8]) -> Option<i64> {
    property(path)
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(i64::from_le_bytes)
}

fn property_u64(path: &'static [u8]) -> Option<u64> {
    property_i64(path).map(|v| u64::try_from(v).unwrap_or(0))
}

fn property_string(path: &'static [u8]) -> Option<String> {
    property(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .filter(|s| !s.is_empty())
}

/// `response.flags`, decoded (none when absent).
pub fn response_flags() -> ResponseFlags {
    property(attr::RESPONSE_FLAGS.path)
        .map(|b| ResponseFlags::from_property(&b))
        .unwrap_or_default()
}

/// `response.code_details`.
pub fn code_details() -> Option<String> {
    property_string(attr::RESPONSE_CODE_DETAILS.path)
}

/// `response.code`; `None` when absent or 0 (no response).
pub fn response_code() -> Option<u16> {
    property_i64(attr::RESPONSE_CODE.path)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c != 0)
}

/// `response.size` (body bytes sent downstream).
pub fn response_size() -> Option<u64> {
    property_u64(attr::RESPONSE_SIZE.path)
}

/// `upstream.request_attempt_count` (0 when absent: no upstream attempt).
pub fn attempt_count() -> u64 {
    property_u64(attr::REQUEST_ATTEMPT_COUNT.path).unwrap_or(0)
}

/// `upstream.cx_pool_ready_duration` in nanoseconds.
pub fn cx_pool_ready_nanos() -> Option<u64> {
    property_u64(attr::CX_POOL_READY_DURATION.path)
}

/// `upstream.tls_version` is TLS 1.3 and this proxy presented no certificate
/// (`upstream.subject_local_certificate` empty; read only after a TLS 1.3 version).
pub fn upstream_tls13_without_client_cert() -> bool {
    let version = property_string(attr::UPSTREAM_TLS_VERSION.path);
    version.as_deref() == Some("TLSv1.3")
        && meshtriage_core::tls13_rejection::tls13_without_client_cert(
            version.as_deref(),
            property_string(attr::UPSTREAM_LOCAL_SUBJECT.path).as_deref(),
        )
}

/// The request's `grpc-timeout` (read through `request.headers`; Envoy answers it at the log)
/// and how long the request took, in nanoseconds.
pub fn grpc_timeout_and_duration() -> Option<(Vec<u8>, u64)> {
    let timeout = property(attr::REQUEST_GRPC_TIMEOUT.path)?;
    Some((timeout, property_u64(attr::REQUEST_DURATION.path)?))
}

/// The upstream certificate carries a SPIFFE identity (`upstream.uri_san_peer_certificate`).
pub fn upstream_is_mesh_workload() -> bool {
    property_string(attr::UPSTREAM_PEER_URI_SAN.path).is_some_and(|san| attr::is_spiffe(&san))
}

/// `upstream.transport_failure_reason`.
pub fn upstream_transport_failure() -> Option<String> {
    property_string(attr::UPSTREAM_TRANSPORT_FAILURE_REASON.path)
}

/// `connection.transport_failure_reason` (downstream TLS).
pub fn downstream_transport_failure() -> Option<String> {
    property_string(attr::CONNECTION_TRANSPORT_FAILURE_REASON.path)
}

/// `connection.termination_details` (network RBAC).
pub fn termination_details() -> Option<String> {
    property_string(attr::CONNECTION_TERMINATION_DETAILS.path)
}

/// `upstream.address` is set.
pub fn has_upstream_address() -> bool {
    property_string(attr::UPSTREAM_ADDRESS.path).is_some()
}

/// `xds.cluster_name`.
pub fn cluster_name() -> Option<String> {
    property_string(attr::CLUSTER_NAME.path)
}

/// `xds.listener_direction`, as Envoy states it for the current stream or connection.
pub fn listener_direction() -> Direction {
    property_i64(attr::LISTENER_DIRECTION.path).map_or(Direction::Unknown, Direction::from_envoy)
}

/// `xds.node.metadata.NAME` (Istio workload name).
pub fn node_name() -> Option<String> {
    property_string(attr::NODE_NAME.path)
}

/// `xds.node.metadata.NAMESPACE`.
pub fn node_namespace() -> Option<String> {
    property_string(attr::NODE_NAMESPACE.path)
}

/// `xds.node.id`.
pub fn node_id() -> Option<String> {
    property_string(attr::NODE_ID.path)
}

/// `plugin_name`.
pub fn plugin_name() -> Option<String> {
    property_string(attr::PLUGIN_NAME.path)
}

/// `plugin_root_id`.
pub fn plugin_root_id() -> Option<String> {
    property_string(attr::PLUGIN_ROOT_ID.path)
}

/// Writes filter state `wasm.<name>` (readable in access logs). Returns false on host error.
pub fn set_filter_state(name: &str, value: &[u8]) -> bool {
    // SAFETY: pointers are valid for the duration of the call.
    unsafe {
        abi::proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) == STATUS_OK
    }
}

/// All pairs of a header map, serialized (decode with `meshtriage_core::wire::HeaderPairs`).
pub fn header_map(map: Map) -> Option<Vec<u8>> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: as in `property`.
    let status = unsafe { abi::proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
    let value = take(data, size);
    (status == STATUS_OK).then_some(value).flatten()
}

pub fn replace_header(map: Map, name: &str, value: &str) -> bool {
    // SAFETY: pointers are valid for the duration of the call.
    unsafe {
        abi::proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        ) == STATUS_OK
    }
}

pub fn add_header(map: Map, name: &str, value: &str) -> bool {
    // SAFETY: pointers are valid for the duration of the call.
    unsafe {
        abi::proxy_add_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        ) == STATUS_OK
    }
}

pub fn remove_header(map: Map, name: &str) -> bool {
    // SAFETY: pointers are valid for the duration of the call.
    unsafe {
        abi::proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) == STATUS_OK
    }
}

/// The plugin configuration bytes (`size` from `on_configure`).
pub fn plugin_configuration(size: usize) -> Option<Vec<u8>> {
    if size == 0 {
        return Some(Vec::new());
    }
    let mut data = null_mut();
    let mut out = 0;
    // SAFETY: as in `property`.
    let status = unsafe {
        abi::proxy_get_buffer_bytes(BUFFER_PLUGIN_CONFIGURATION, 0, size, &mut data, &mut out)
    };
    let value = take(data, out);
    (status == STATUS_OK).then_some(value).flatten()
}

/// Up to `max` bytes of the response body chunk passing through `on_http_response_body`.
pub fn response_body(max: usize) -> Option<Vec<u8>> {
    if max == 0 {
        return Some(Vec::new());
    }
    let mut data = null_mut();
    let mut out = 0;
    // SAFETY: as in `property`.
    let status =
        unsafe { abi::proxy_get_buffer_bytes(BUFFER_RESPONSE_BODY, 0, max, &mut data, &mut out) };
    let value = take(data, out);
    (status == STATUS_OK).then_some(value).flatten()
}

pub fn define_metric(kind: Kind, name: &str) -> Option<u32> {
    let kind = match kind {
        Kind::Counter => METRIC_COUNTER,
        Kind::Gauge => METRIC_GAUGE,
        Kind::Histogram => METRIC_HISTOGRAM,
    };
    let mut id = 0;
    // SAFETY: pointers are valid for the duration of the call.
    let status = unsafe { abi::proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
    (status == STATUS_OK).then_some(id)
}

pub fn define_counter(name: &str) -> Option<u32> {
    define_metric(Kind::Counter, name)
}

pub fn increment(id: u32, by: i64) -> bool {
    // SAFETY: plain values.
    unsafe { abi::proxy_increment_metric(id, by) == STATUS_OK }
}

/// Sets a gauge or records a histogram sample.
pub fn record(id: u32, value: u64) -> bool {
    // SAFETY: plain values.
    unsafe { abi::proxy_record_metric(id, value) == STATUS_OK }
}

/// Shared data (VM-wide across workers): `Some((value, cas))`, `value` `None` when the key does
/// not exist yet; `None` on any other host error.
pub fn shared_data(key: &str) -> Option<(Option<Vec<u8>>, u32)> {
    let mut data = null_mut();
    let mut size = 0;
    let mut cas = 0;
    // SAFETY: as in `property`.
    let status = unsafe {
        abi::proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
    };
    let value = take(data, size);
    match status {
        STATUS_OK => Some((Some(value.unwrap_or_default()), cas)),
        STATUS_NOT_FOUND => Some((None, 0)),
        _ => None,
    }
}

/// What a compare-and-swap write of shared data did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetShared {
    Done,
    /// Another worker wrote since our read: read again and retry.
    CasMismatch,
    Failed,
}

/// Writes shared data if it is still at `cas` (0: unconditionally, for a new key).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> SetShared {
    // SAFETY: pointers are valid for the duration of the call.
    let status = unsafe {
        abi::proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    };
    match status {
        STATUS_OK => SetShared::Done,
        STATUS_CAS_MISMATCH => SetShared::CasMismatch,
        _ => SetShared::Failed,
    }
}

/// Wall-clock time in nanoseconds since the epoch.
pub fn now_nanos() -> Option<u64> {
    let mut t = 0;
    // SAFETY: plain out pointer.
    let status = unsafe { abi::proxy_get_current_time_nanoseconds(&mut t) };
    (status == STATUS_OK).then_some(t)
}

/// Asks for `on_tick` on the calling root context every `ms` milliseconds.
pub fn set_tick_period(ms: u32) -> bool {
    // SAFETY: plain value.
    unsafe { abi::proxy_set_tick_period_milliseconds(ms) == STATUS_OK }
}

/// Size of this VM's linear memory in bytes (grows, never shrinks: a leak shows as growth).
pub fn vm_memory_bytes() -> u64 {
    #[cfg(target_arch = "wasm32")]
    let pages = core::arch::wasm32::memory_size(0) as u64;
    #[cfg(not(target_arch = "wasm32"))]
    let pages = 0u64;
    pages * 65_536
}

/// Logs through the host, ignoring failures (a log line must never take the VM down).
pub fn log(level: log::Level, message: &str) {
    let level = match level {
        log::Level::Trace => 0,
        log::Level::Debug => 1,
        log::Level::Info => 2,
        log::Level::Warn => 3,
        log::Level::Error => 4,
    };
    // SAFETY: pointers are valid for the duration of the call.
    let _ = unsafe { abi::proxy_log(level, message.as_ptr(), message.len()) };
}

/// `log` crate front end over [`log`]; Envoy filters by its own `--log-level`.
pub struct HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        log(record.level(), &format!("meshtriage: {}", record.args()));
    }

    fn flush(&self) {}
}
