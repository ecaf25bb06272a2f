//! The keep-alive race: the upstream closes an idle pooled connection just as this proxy
//! reuses it for a request. The class (`connection_terminated`) is the same as for an app
//! that closes on purpose; the `reused_connection` hint says the request went out on a
//! connection that had already served one.
//!
//! The signal: `upstream.cx_pool_ready_duration`, which the failure path reads anyway (for
//! `slow_connect`), so the hint costs no host call and nothing on the success path. A request
//! given an idle pooled connection gets it synchronously, within microseconds; a new connection
//! waits at least one event-loop turn for the TCP connect. No attribute Envoy 1.40 exposes says
//! "reused" outright (the `upstream.*` ones are addresses, locality, TLS fields, the attempt
//! count and this duration); a per-connection request count would need a read on every success.
//!
//! Measured with Envoy 1.40 on a 2-core machine, partly under a parallel `cargo build`:
//! - real nginx in the L4 lab (tests/e2e_real_software.rs,
//!   `nginx_keep_alive_timeout_with_its_fin_lost_is_hinted_and_a_fresh_close_is_not`: nginx's
//!   keep-alive timeout closes the idle connection, its FIN is lost, Envoy reuses the connection
//!   and meets a RST, 503 `UC` `upstream_reset_before_response_started{connection_termination}`):
//!   reuse after a second idle 23–46 µs in 123 of 131 tries, new connections through the veth
//!   119 µs–7.8 ms (128);
//! - loopback (the racer of `the_keep_alive_race_is_hinted_and_a_fresh_close_is_not`): reuse
//!   6–31 µs in 238 of 240, new connections 67.8 µs–5.7 ms (480), a floor that barely moved
//!   under load; earlier, h2c clients reused in 22–32 µs.
//!
//! The rest (8 of 131, 2 of 240: 52–160 µs) were reuses where Envoy was preempted between the
//! pool's call and its callback, which no bound can separate from a fast new connection. The
//! bound stays below the fastest new connection seen (67.8 µs) with a margin for faster hosts:
//! precision first, so a slow reuse on a busy proxy only loses the hint, and a new connection
//! never gets it. Across hosts a new connection costs a round trip more, in a mesh also an
//! mTLS handshake, which widens the gap.

use crate::flags::Flag;
use crate::signals::Signals;
use crate::taxonomy::Class;

/// Pool-ready durations below this mean an already-open connection was handed over.
pub const REUSED_MAX_NANOS: u64 = 50_000;

/// Did this `class` of failure happen on a connection that had already served a request?
/// Only for a connection closed before any response byte (`UC`), never after a failed connect.
pub fn reused_connection(s: &Signals, class: Class) -> bool {
    class == Class::ConnectionTerminated
        && s.flags.has(Flag::UC)
        && !s.flags.has(Flag::UF)
        && s.connect_nanos.is_some_and(|n| n < REUSED_MAX_NANOS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples::example_signals;
    use crate::{classify, Config, Hint};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn terminated(connect_nanos: Option<u64>) -> Signals {
        Signals {
            connect_nanos,
            ..example_signals(Class::ConnectionTerminated)
        }
    }

    #[test]
    fn a_connection_handed_over_at_once_was_reused() {
        let cfg = Config::default();
        for (nanos, reused) in [
            (Some(6_129), true),
            (Some(19_729), true),
            (Some(31_998), true),
            (Some(68_482), false),
            (Some(3_312_372), false),
            (None, false),
        ] {
            let o = classify(&terminated(nanos), &cfg);
            assert_eq!(o.class, Class::ConnectionTerminated);
            assert_eq!(
                o.hints.contains(Hint::ReusedConnection),
                reused,
                "{nanos:?}"
            );
        }
    }

    #[test]
    fn only_for_connections_closed_before_the_response() {
        let cfg = Config::default();
        for class in [
            Class::ConnectRefused,
            Class::AppError,
            Class::UpstreamTimeout,
        ] {
            let s = Signals {
                connect_nanos: Some(1_000),
                ..example_signals(class)
            };
            assert!(
                !classify(&s, &cfg).hints.contains(Hint::ReusedConnection),
                "{class:?}"
            );
        }
    }
}
