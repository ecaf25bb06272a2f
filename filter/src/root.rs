//! The root context: parses the configuration (never refusing it), learns this proxy's identity
//! and its role (HTTP or network filter) from the root id, and hands streams a snapshot.

use crate::host;
use crate::http::HttpFilter;
use crate::metrics;
use crate::tcp::TcpFilter;
use crate::window;
use meshtriage_core::{config, Config, Direction};
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::rc::Rc;

thread_local! {
    // The last good configuration per plugin name, VM-wide: Envoy gives a changed plugin
    // configuration a new root context on the same VM, and a bad update must keep the old one.
    // A VM hosts a few plugins at most: a list, no hash table.
    static LAST_GOOD: RefCell<Vec<(String, Config)>> = const { RefCell::new(Vec::new()) };
}

fn last_good(plugin: &str) -> Option<Config> {
    LAST_GOOD.with(|m| {
        let m = m.try_borrow().ok()?;
        m.iter().find(|(p, _)| p == plugin).map(|(_, c)| c.clone())
    })
}

fn remember(plugin: &str, config: &Config) {
    LAST_GOOD.with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            match m.iter_mut().find(|(p, _)| p == plugin) {
                Some((_, c)) => *c = config.clone(),
                None => m.push((plugin.to_string(), config.clone())),
            }
        }
    });
}

/// How often each worker merges its window delta into shared data.
const TICK_MS: u32 = 1000;

/// Root id that selects the network (L4) filter; anything else is the HTTP filter.
pub const TCP_ROOT_ID: &str = "meshtriage-tcp";

/// What every stream of this plugin shares (read-only).
#[derive(Debug, Default)]
pub struct Settings {
    pub config: Config,
    /// This proxy's identity, written as `hop`.
    pub hop: String,
    /// Shared-data key of this plugin's sliding window (retry budget, payload sizes).
    pub window_key: String,
}

impl Settings {
    /// The configured `direction`, else Envoy's `xds.listener_direction` for the stream or
    /// connection being handled (one host call: callers read it at most once).
    pub fn direction(&self) -> Direction {
        self.config.direction.unwrap_or_else(|| {
            host::property_i64(b"xds\0listener_direction")
                .map_or(Direction::Unknown, Direction::from_envoy)
        })
    }
}

#[derive(Default)]
pub struct Root {
    settings: Rc<Settings>,
    tcp: bool,
}

/// Config `hop`, else Istio node metadata `NAME.NAMESPACE`, else the node id.
fn hop_identity(config: &Config) -> String {
    if let Some(hop) = &config.hop {
        return hop.clone();
    }
    let name = host::property_string(b"xds\0node\0metadata\0NAME");
    let namespace = host::property_string(b"xds\0node\0metadata\0NAMESPACE");
    match (name, namespace) {
        (Some(n), Some(ns)) => format!("{n}.{ns}"),
        (Some(n), None) => n,
        _ => host::property_string(b"xds\0node\0id").unwrap_or_default(),
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        self.tcp = host::property_string(b"plugin_root_id").as_deref() == Some(TCP_ROOT_ID);
        metrics::define_static();
        let parsed = match host::plugin_configuration(size) {
            Some(bytes) => config::parse(&bytes),
            None => Err(config::ConfigError {
                field: "(document)".into(),
                reason: "the host did not return the configuration".into(),
            }),
        };
        let plugin = host::property_string(b"plugin_name").unwrap_or_default();
        let config = match parsed {
            Ok(c) => {
                remember(&plugin, &c);
                c
            }
            Err(e) => {
                let (config, kept) = match last_good(&plugin) {
                    Some(c) => (c, "keeping the last good configuration"),
                    None => (Config::default(), "using the defaults"),
                };
                // Named per plugin: one VM serves every listener's copy of the plugin.
                log::error!("{e}; {kept} (plugin `{plugin}`)");
                metrics::count(meshtriage_core::metrics::CONFIG_ERRORS.to_string());
                config
            }
        };
        let hop = sanitize_hop(hop_identity(&config));
        let window_key = format!("meshtriage.window.{plugin}");
        self.settings = Rc::new(Settings {
            config,
            hop,
            window_key,
        });
        if !self.tcp && !host::set_tick_period(TICK_MS) {
            metrics::internal_error("could not set the tick period");
        }
        // Never refuse: a refused configuration blocks the whole Envoy/Istio push.
        true
    }

    /// Once per second: flush this worker's window delta into shared data (HTTP role only).
    fn on_tick(&mut self) {
        metrics::flush_requests();
        window::flush(&self.settings);
        // The VM's linear memory: Envoy 1.40 has no stat for it, and a leak shows here first.
        metrics::gauge(
            meshtriage_core::metrics::VM_MEMORY.to_string(),
            host::vm_memory_bytes(),
        );
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(if self.tcp {
            ContextType::StreamContext
        } else {
            ContextType::HttpContext
        })
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(HttpFilter::new(self.settings.clone())))
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(TcpFilter::new(self.settings.clone())))
    }
}

/// Node ids and metadata are free text; the header needs printable ASCII.
fn sanitize_hop(hop: String) -> String {
    hop.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .take(253)
        .collect()
}
