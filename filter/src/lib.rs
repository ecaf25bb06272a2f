//! meshtriage: a proxy-wasm plugin that tells, for every failing request, at which layer it
//! failed (L4 transport or L7 application/policy), who answered, and on which side of the hop.
//! This crate is the thin host glue; the decisions live in `meshtriage-core`.

mod host;
mod http;
mod metrics;
mod root;
mod settings;
mod tcp;
mod window;

proxy_wasm::main! {{
    let _ = log::set_logger(&host::HostLogger);
    log::set_max_level(log::LevelFilter::Info);
    // Last resort: a panic traps the VM; say why before it goes.
    // One line (the message may hold newlines) so log collectors keep it whole.
    std::panic::set_hook(Box::new(|info| {
        host::log(log::Level::Error, &format!("meshtriage: panic: {info}").replace('\n', " "))
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> { Box::<root::Root>::default() });
}}
