//! The root context: parses the configuration (never refusing it), keeps each plugin's last
//! good configuration, builds the [`Settings`] its streams share, and runs the per-second tick.

use crate::host;
use crate::http::HttpFilter;
use crate::metrics;
use crate::settings::{Role, Settings};
use crate::tcp::TcpFilter;
use crate::window;
use meshtriage_core::{config, Config};
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

#[derive(Default)]
pub struct Root {
    settings: Rc<Settings>,
}

impl Root {
    /// The configuration to run on: the new one if it is good, else the last good one (else
    /// the defaults), with one error line naming every bad key.
    fn configuration(size: usize, plugin: &str) -> Config {
        let parsed = match host::plugin_configuration(size) {
            Some(bytes) => config::parse(&bytes),
            None => Err(config::ConfigError::document(
                "the host did not return the configuration",
            )),
        };
        match parsed {
            Ok(c) => {
                remember(plugin, &c);
                c
            }
            Err(e) => {
                let (config, kept) = match last_good(plugin) {
                    Some(c) => (c, "keeping the last good configuration"),
                    None => (Config::default(), "using the defaults"),
                };
                // Named per plugin: one VM serves every listener's copy of the plugin.
                log::error!("{e}; {kept} (plugin `{plugin}`)");
                metrics::count(meshtriage_core::metrics::CONFIG_ERRORS.to_string());
                config
            }
        }
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let role = Role::from_root_id(host::plugin_root_id().as_deref());
        metrics::define_static();
        let plugin = host::plugin_name().unwrap_or_default();
        let config = Root::configuration(size, &plugin);
        self.settings = Rc::new(Settings::new(config, role, &plugin));
        if role == Role::Http && !host::set_tick_period(TICK_MS) {
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
        Some(match self.settings.role {
            Role::Http => ContextType::HttpContext,
            Role::Tcp => ContextType::StreamContext,
        })
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(HttpFilter::new(self.settings.clone())))
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(TcpFilter::new(self.settings.clone())))
    }
}
