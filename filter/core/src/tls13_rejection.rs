//! The TLS 1.3 client-certificate rejection. Under TLS 1.2 a server that requires a client
//! certificate aborts the handshake with an alert, and Envoy reports a transport failure
//! (`tls_handshake_rejected`). Under TLS 1.3, which Istio negotiates, the client's handshake is
//! complete before the server has checked its certificate: the server's alert 116
//! (certificate required) arrives after Envoy has sent the request, and Envoy reports a plain
//! termination (`UC`, `connection_termination`, no transport failure reason).
//!
//! What is known then cannot prove the rejection (an app closing a new TLS 1.3 connection
//! unanswered looks the same), so the class stays `connection_terminated`, with the hint
//! `tls13_no_client_cert` when every signal fits: the connection was new (not handed over from
//! the pool at once, see [`crate::reused_connection`]), it negotiated TLS 1.3, and this proxy
//! presented no certificate. The two properties are read only for such a failure: never on the
//! success path, never for other failures.

use crate::classify::Outcome;
use crate::flags::Flag;
use crate::reused_connection::reused_connection;
use crate::signals::Signals;
use crate::taxonomy::Class;

/// Is this failure worth reading `upstream.tls_version` (and then the local certificate) for?
pub fn worth_reading(outcome: &Outcome, s: &Signals) -> bool {
    outcome.class == Class::ConnectionTerminated
        && s.flags.has(Flag::UC)
        && !s.flags.has(Flag::UF)
        && s.connect_nanos.is_some()
        && !reused_connection(s, outcome.class)
}

/// The connection negotiated TLS 1.3 (`upstream.tls_version`) and this proxy presented no
/// certificate (`upstream.subject_local_certificate` empty or absent).
pub fn tls13_without_client_cert(tls_version: Option<&str>, local_subject: Option<&str>) -> bool {
    tls_version == Some("TLSv1.3") && local_subject.is_none_or(str::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples::example_signals;
    use crate::{classify, Config, Hint};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn only_a_new_connection_closed_before_the_response_is_worth_the_reads() {
        let cfg = Config::default();
        let fresh = Signals {
            connect_nanos: Some(2_000_000),
            ..example_signals(Class::ConnectionTerminated)
        };
        assert!(worth_reading(&classify(&fresh, &cfg), &fresh));
        let reused = Signals {
            connect_nanos: Some(9_000),
            ..fresh.clone()
        };
        assert!(!worth_reading(&classify(&reused, &cfg), &reused));
        for class in [
            Class::ConnectRefused,
            Class::AppError,
            Class::TlsHandshakeRejected,
        ] {
            let s = Signals {
                connect_nanos: Some(2_000_000),
                ..example_signals(class)
            };
            assert!(!worth_reading(&classify(&s, &cfg), &s), "{class:?}");
        }
    }

    #[test]
    fn the_hint_needs_tls13_and_no_certificate_of_ours() {
        assert!(tls13_without_client_cert(Some("TLSv1.3"), None));
        assert!(tls13_without_client_cert(Some("TLSv1.3"), Some("")));
        assert!(!tls13_without_client_cert(
            Some("TLSv1.3"),
            Some("CN=client")
        ));
        assert!(!tls13_without_client_cert(Some("TLSv1.2"), None));
        assert!(!tls13_without_client_cert(None, None));
        let cfg = Config::default();
        let s = Signals {
            connect_nanos: Some(2_000_000),
            upstream_tls13_no_client_cert: true,
            ..example_signals(Class::ConnectionTerminated)
        };
        let o = classify(&s, &cfg);
        assert_eq!(o.class, Class::ConnectionTerminated);
        assert!(o.hints.contains(Hint::Tls13NoClientCert));
    }
}
