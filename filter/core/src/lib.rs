//! meshtriage-core: the pure decision logic of the meshtriage plugin. No proxy-wasm, no
//! clock, no I/O: signals in, verdict out. Tested natively and under wasm.
#![forbid(unsafe_code)]

pub mod attributes;
pub mod classify;
pub mod config;
pub mod docs;
pub mod examples;
pub mod flags;
pub mod gateway_replies;
pub mod grpc;
pub mod hop_by_hop;
pub mod metrics;
pub mod response;
pub mod reused_connection;
pub mod sfv;
pub mod signals;
pub mod stages;
pub mod substr;
pub mod taxonomy;
pub mod tcp;
pub mod tls13_rejection;
pub mod trace;
pub mod upstream;
pub mod verdict;
pub mod window;
pub mod wire;

pub use classify::{classify, is_failing, Outcome};
pub use config::{Config, ConfigError};
pub use signals::{Phase, Signals};
pub use taxonomy::{Class, Direction, Hint, Layer, Origin, Side};
pub use tcp::{classify_tcp, TcpSignals};
pub use verdict::Verdict;
