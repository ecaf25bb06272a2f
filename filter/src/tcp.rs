//! The network (L4) filter, selected by root id `meshtriage-tcp`. It gathers what it sees of one
//! connection (data each way, upstream FIN, who closed the downstream connection, the time of
//! the last data) and, in `on_log` (the last callback, after `on_done`), reads the connection's
//! properties, classifies it with `meshtriage_core::tcp`, counts it and writes filter state
//! `wasm.meshtriage` for the connection's access log (tcp_proxy's).
//! It counts only `meshtriage_tcp_*` metrics: the HTTP filter, which may share this VM, counts
//! the request metrics.

use crate::host;
use crate::metrics;
use crate::settings::{Settings, FILTER_STATE};
use meshtriage_core::metrics as names;
use meshtriage_core::tcp::{classify_tcp, tcp_verdict, Closer, TcpSignals};
use proxy_wasm::traits::{Context, StreamContext};
use proxy_wasm::types::{Action, PeerType};
use std::rc::Rc;

pub struct TcpFilter {
    settings: Rc<Settings>,
    bytes_from_downstream: u64,
    bytes_to_downstream: u64,
    upstream_fin: bool,
    downstream_closed: Option<Closer>,
    /// Host time of the last data in either direction (or of the new connection).
    last_activity: Option<u64>,
    /// Host time of the downstream close.
    closed_at: Option<u64>,
}

impl TcpFilter {
    pub fn new(settings: Rc<Settings>) -> Self {
        TcpFilter {
            settings,
            bytes_from_downstream: 0,
            bytes_to_downstream: 0,
            upstream_fin: false,
            downstream_closed: None,
            last_activity: None,
            closed_at: None,
        }
    }

    fn activity(&mut self) {
        if let Some(now) = host::now_nanos() {
            self.last_activity = Some(now);
        }
    }

    /// Reads the connection's properties (end of connection only).
    fn signals(&self) -> TcpSignals {
        let dir = self.settings.direction();
        TcpSignals {
            direction: dir,
            flags: host::response_flags(),
            upstream_failure: host::upstream_transport_failure(),
            downstream_failure: host::downstream_transport_failure(),
            termination: host::termination_details(),
            downstream_closed: self.downstream_closed,
            upstream_fin: self.upstream_fin,
            proxied: host::cluster_name().is_some() || host::has_upstream_address(),
            bytes_from_downstream: self.bytes_from_downstream,
            bytes_to_downstream: self.bytes_to_downstream,
            quiet_nanos: match (self.last_activity, self.closed_at) {
                (Some(last), Some(end)) => Some(end.saturating_sub(last)),
                _ => None,
            },
            attempts: host::attempt_count(),
            connect_nanos: host::cx_pool_ready_nanos(),
            upstream_mtls: host::upstream_is_mesh_workload(),
        }
    }

    fn finish(&mut self) {
        let s = self.signals();
        metrics::count(names::tcp_connections(s.direction));
        let Some(outcome) = classify_tcp(&s) else {
            return;
        };
        metrics::count(names::tcp_failures(
            s.direction,
            outcome.layer,
            outcome.class,
        ));
        let verdict = tcp_verdict(outcome, &s, &self.settings.hop);
        let text = verdict.encode(self.settings.config.include_detail);
        if !host::set_filter_state(FILTER_STATE, text.as_bytes()) {
            metrics::internal_error("could not set connection filter state");
        }
    }
}

impl Context for TcpFilter {}

impl StreamContext for TcpFilter {
    fn on_new_connection(&mut self) -> Action {
        self.activity();
        Action::Continue
    }

    fn on_downstream_data(&mut self, data_size: usize, _end_of_stream: bool) -> Action {
        if data_size > 0 {
            self.bytes_from_downstream = self
                .bytes_from_downstream
                .saturating_add(u64::try_from(data_size).unwrap_or(0));
            self.activity();
        }
        Action::Continue
    }

    fn on_upstream_data(&mut self, data_size: usize, end_of_stream: bool) -> Action {
        if data_size > 0 {
            self.bytes_to_downstream = self
                .bytes_to_downstream
                .saturating_add(u64::try_from(data_size).unwrap_or(0));
            self.activity();
        }
        if end_of_stream {
            self.upstream_fin = true;
        }
        Action::Continue
    }

    fn on_upstream_close(&mut self, _peer_type: PeerType) {
        // Envoy calls it only when the upstream sent FIN (docs/envoy-signals.md §2).
        self.upstream_fin = true;
    }

    fn on_downstream_close(&mut self, peer_type: PeerType) {
        self.downstream_closed = Some(Closer::from_peer_type(peer_type as u32));
        self.closed_at = host::now_nanos();
    }

    fn on_log(&mut self) {
        self.finish();
    }
}
