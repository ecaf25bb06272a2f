//! One representative exchange per class, as Envoy 1.40 reports it (the scenario matrix in
//! `tests/e2e_matrix.rs` produces each of them for real), and the verdict header it gets. The
//! docs' "example" column is generated from here, and the tests prove every example really
//! classifies as its class.

use crate::flags::{Flag, ResponseFlags};
use crate::hop_by_hop::HopHeader;
use crate::signals::{Phase, Signals};
use crate::taxonomy::{Class, Direction};
use crate::tcp::{classify_tcp, tcp_verdict, Closer, TcpSignals};
use crate::upstream::UpstreamEvidence;
use crate::{classify, Config, Verdict};

/// The hop identity used in examples.
pub const EXAMPLE_HOP: &str = "checkout.shop";

const URBRS: &str = "upstream_reset_before_response_started";

fn failed(status: u16, flags: &[Flag], details: &str) -> Signals {
    Signals {
        status: Some(status),
        flags: flags
            .iter()
            .fold(ResponseFlags::default(), |f, flag| f.with(*flag)),
        details: Some(details.to_string()),
        attempts: 1,
        direction: Direction::Outbound,
        ..Signals::default()
    }
}

fn late(mut s: Signals) -> Signals {
    s.phase = Phase::Log;
    s
}

/// Representative connection signals for the classes only the network filter produces.
pub fn tcp_example(class: Class) -> Option<TcpSignals> {
    let base = TcpSignals {
        direction: Direction::Inbound,
        proxied: true,
        ..TcpSignals::default()
    };
    match class {
        Class::DownstreamTlsError => Some(TcpSignals {
            downstream_failure: Some(
                "TLS_error:|268435612:SSL_routines:OPENSSL_internal:HTTP_REQUEST:TLS_error_end"
                    .into(),
            ),
            downstream_closed: Some(Closer::Remote),
            ..base
        }),
        Class::ConnectionPolicyClosed => Some(TcpSignals {
            termination: Some("ext_proc_closed".into()),
            downstream_closed: Some(Closer::Local),
            ..base
        }),
        _ => None,
    }
}

/// Representative signals of `class` (what the plugin reads from Envoy for that failure).
/// The connection-only classes have none: see [`tcp_example`].
pub fn example_signals(class: Class) -> Signals {
    use Flag::*;
    match class {
        Class::DownstreamTlsError | Class::ConnectionPolicyClosed => Signals::default(),
        Class::ConnectRefused => failed(503, &[UF], &format!("{URBRS}{{remote_connection_failure|delayed_connect_error:_Connection_refused}}")),
        Class::ConnectTimeout => failed(503, &[UF], &format!("{URBRS}{{connection_timeout}}")),
        Class::TlsCertificateError => Signals {
            transport_failure: Some("TLS_error:|268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:TLS_error_end".into()),
            ..failed(503, &[UF], &format!("{URBRS}{{remote_connection_failure|TLS_error:|268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:TLS_error_end}}"))
        },
        Class::TlsHandshakeRejected => Signals {
            transport_failure: Some("TLS_error:|268436566:SSL_routines:OPENSSL_internal:SSLV3_ALERT_HANDSHAKE_FAILURE:TLS_error_end".into()),
            ..failed(503, &[UF], &format!("{URBRS}{{remote_connection_failure|TLS_error:|268436566:SSL_routines:OPENSSL_internal:SSLV3_ALERT_HANDSHAKE_FAILURE:TLS_error_end}}"))
        },
        Class::TlsProtocolError => Signals {
            transport_failure: Some("TLS_error:|268435703:SSL_routines:OPENSSL_internal:WRONG_VERSION_NUMBER:TLS_error_end".into()),
            ..failed(503, &[UF], &format!("{URBRS}{{remote_connection_failure|TLS_error:|268435703:SSL_routines:OPENSSL_internal:WRONG_VERSION_NUMBER:TLS_error_end}}"))
        },
        Class::ConnectionTerminated => failed(503, &[UC], &format!("{URBRS}{{connection_termination}}")),
        Class::NoHealthyUpstream => failed(503, &[UH], "no_healthy_upstream"),
        Class::DnsResolutionFailed => failed(503, &[DF], "dns_resolution_failure"),
        Class::DownstreamDisconnect => Signals {
            status: None,
            ..late(failed(0, &[DC], "downstream_remote_disconnect"))
        },
        Class::ResponseTruncated => Signals {
            response_started: true,
            chunked: true,
            hop_by_hop: [HopHeader::Connection]
                .into_iter()
                .fold(Default::default(), |mut h, x| {
                    h.insert(x);
                    h
                }),
            ..late(failed(200, &[UPE], "upstream_reset_after_response_started{protocol_error}"))
        },
        Class::TransferStalled => Signals {
            response_started: true,
            response_body_bytes: 10,
            ..late(failed(200, &[UT], "response_timeout"))
        },
        Class::UpstreamProtocolError => failed(502, &[UPE], &format!("{URBRS}{{protocol_error}}")),
        Class::StreamReset => failed(503, &[UR], &format!("{URBRS}{{remote_refused_stream_reset}}")),
        Class::UpstreamTimeout => Signals {
            attempts: 2,
            ..failed(504, &[UT, URX], "upstream_per_try_timeout")
        },
        Class::IdleTimeout => failed(504, &[SI], "stream_idle_timeout"),
        Class::MaxDurationReached => failed(504, &[UMSDR], "upstream_max_stream_duration_reached"),
        Class::CircuitBreakerOpen => failed(503, &[UO], &format!("{URBRS}{{overflow}}")),
        Class::ClusterNotFound => failed(503, &[NC], "cluster_not_found"),
        Class::RouteNotFound => failed(404, &[NR], "route_not_found"),
        Class::AuthzDenied => failed(403, &[], "rbac_access_denied_matched_policy[deny-all]"),
        Class::AuthnFailed => failed(401, &[], "jwt_authn_access_denied{Jwt_is_missing}"),
        Class::RateLimited => failed(429, &[RL], "local_rate_limited"),
        Class::LoadShed => failed(503, &[UDO], "unconditional_drop_overload"),
        Class::FaultInjected => failed(503, &[FI], "fault_filter_abort"),
        Class::DownstreamProtocolError => {
            late(failed(400, &[DPE], "http1.content_length_and_chunked_not_allowed"))
        }
        Class::FilterFailure => failed(503, &[], "wasm_fail_stream"),
        Class::AppError => failed(503, &[], "via_upstream"),
        Class::AppGrpcError => Signals {
            grpc_status: Some(14),
            ..failed(200, &[], "via_upstream")
        },
        Class::GatewayError => Signals {
            upstream: UpstreamEvidence::LocalReplyBody {
                class: Class::GatewayError,
                retried: false,
            },
            ..failed(502, &[], "via_upstream")
        },
        Class::GrpcDeadlineExceeded => Signals {
            grpc_status: Some(4),
            grpc_deadline: true,
            ..late(failed(200, &[], "via_upstream"))
        },
        Class::Unclassified => failed(500, &[], "some_future_detail"),
    }
}

/// Late classes: known only after the response headers went out (access log and metrics).
pub fn only_late(class: Class) -> bool {
    matches!(
        class,
        Class::DownstreamDisconnect
            | Class::ResponseTruncated
            | Class::TransferStalled
            | Class::DownstreamProtocolError
            | Class::DownstreamTlsError
            | Class::ConnectionPolicyClosed
    )
}

/// The verdict (header member syntax, without `detail`) the example gets with the defaults.
pub fn example_verdict(class: Class) -> String {
    if let Some(t) = tcp_example(class) {
        return classify_tcp(&t).map_or_else(String::new, |o| {
            tcp_verdict(o, &t, EXAMPLE_HOP).encode(false)
        });
    }
    let s = example_signals(class);
    let outcome = classify(&s, &Config::default());
    Verdict::new(outcome, &s, EXAMPLE_HOP).encode(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn every_example_is_failing_and_classifies_as_its_class() {
        for class in Class::all() {
            if let Some(t) = tcp_example(class) {
                assert_eq!(classify_tcp(&t).map(|o| o.class), Some(class));
                assert!(example_verdict(class).contains(&format!(";class={};", class.as_str())));
                continue;
            }
            let s = example_signals(class);
            assert!(
                crate::is_failing(&s, &Config::default()),
                "{}",
                class.as_str()
            );
            assert_eq!(
                classify(&s, &Config::default()).class,
                class,
                "{}",
                class.as_str()
            );
            let v = example_verdict(class);
            assert!(v.contains(&format!(";class={};", class.as_str())), "{v}");
            assert!(crate::sfv::parse_list(v.as_bytes()).is_ok(), "{v}");
        }
    }
}
