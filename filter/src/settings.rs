//! What every stream of one plugin shares, read-only: the configuration, this proxy's identity,
//! its role (HTTP or network filter) and the names it is known by. Built once per
//! `on_configure` by the root context (`root.rs`); the filters only read it.

use crate::host;
use meshtriage_core::{Config, Direction};

/// Root id that selects the network (L4) filter; anything else is the HTTP filter.
pub const TCP_ROOT_ID: &str = "meshtriage-tcp";

/// Filter-state key of this hop's verdict: `%FILTER_STATE(wasm.meshtriage:PLAIN)%` in access
/// logs (HTTP and connection logs alike).
pub const FILTER_STATE: &str = "meshtriage";

/// Which filter this plugin instance is, from its root id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// `envoy.filters.http.wasm`: per-request verdicts, header, request metrics.
    #[default]
    Http,
    /// `envoy.filters.network.wasm` (root id [`TCP_ROOT_ID`]): per-connection verdicts.
    Tcp,
}

impl Role {
    pub fn from_root_id(root_id: Option<&str>) -> Role {
        if root_id == Some(TCP_ROOT_ID) {
            Role::Tcp
        } else {
            Role::Http
        }
    }
}

#[derive(Debug, Default)]
pub struct Settings {
    pub config: Config,
    pub role: Role,
    /// This proxy's identity, written as `hop`.
    pub hop: String,
    /// Shared-data key of this plugin's sliding window (retry budget, payload sizes).
    pub window_key: String,
}

impl Settings {
    pub fn new(config: Config, role: Role, plugin: &str) -> Settings {
        let hop = sanitize_hop(hop_identity(&config));
        Settings {
            config,
            role,
            hop,
            window_key: format!("meshtriage.window.{plugin}"),
        }
    }

    /// The configured `direction`, else Envoy's `xds.listener_direction` for the stream or
    /// connection being handled (one host call: callers read it at most once).
    pub fn direction(&self) -> Direction {
        self.config
            .direction
            .unwrap_or_else(host::listener_direction)
    }
}

/// Config `hop`, else Istio node metadata `NAME.NAMESPACE`, else the node id.
fn hop_identity(config: &Config) -> String {
    if let Some(hop) = &config.hop {
        return hop.clone();
    }
    match (host::node_name(), host::node_namespace()) {
        (Some(n), Some(ns)) => format!("{n}.{ns}"),
        (Some(n), None) => n,
        _ => host::node_id().unwrap_or_default(),
    }
}

/// Node ids and metadata are free text; the header needs printable ASCII.
fn sanitize_hop(hop: String) -> String {
    hop.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .take(253)
        .collect()
}
