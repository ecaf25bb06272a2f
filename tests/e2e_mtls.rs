//! The `mtls` hint against a real Envoy 1.40: the bed's TLS upstream presents a SPIFFE
//! identity, as a mesh workload does. The plugin reads the peer certificate only for
//! transport-layer verdicts: a stalled transfer over that connection gets the hint, an app's
//! 503 over the same connection does not (in a mesh every hop is mTLS; there it says nothing).

use meshtriage_envoy_test::bed::{Bed, BedOptions};
use meshtriage_envoy_test::request;
use meshtriage_envoy_test::verdict::{self, View};

/// The verdict the plugin's hop logged for `scn`: the TLS upstream is a second listener of the
/// same Envoy, without the plugin, and logs the same request too (with `verdict=-`).
fn logged(b: &Bed, scn: &str) -> View {
    let needle = format!("scn={scn} ");
    // Bounded like the harness's other waits (envoy::WAIT): the line is flushed within 50 ms
    // normally, a loaded machine may take seconds.
    let deadline = std::time::Instant::now() + meshtriage_envoy_test::envoy::WAIT;
    while std::time::Instant::now() < deadline {
        if let Some(v) = b
            .envoy
            .access_log_lines()
            .iter()
            .filter(|l| l.contains(&needle))
            .find_map(|l| verdict::from_access_log(l))
        {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no verdict logged for {scn}\n{}", b.envoy.diagnostics())
}

#[test]
fn transport_failures_over_mtls_carry_the_hint_and_app_errors_do_not() {
    let b = Bed::start("mtls-hint", BedOptions::default());

    // The app answers 503 through the TLS hop: an L7 verdict, no certificate read.
    let r = request(
        b.port,
        "GET",
        "/tls/ok/status/503",
        &[("x-scn", "app503")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 503);
    let header = verdict::parse(r.header("x-meshtriage").expect("a verdict header"));
    let v = header.first().unwrap();
    assert_eq!((v.layer.as_str(), v.class()), ("l7", "app_error"), "{v:?}");
    assert!(!v.hints().contains(&"mtls"), "{v:?}");
    assert!(!logged(&b, "app503").hints().contains(&"mtls"));

    // The body stalls after the headers until the route timeout: L4, over the SPIFFE peer.
    let _ = request(
        b.port,
        "GET",
        "/tls/ok/stall-body",
        &[("x-scn", "stall")],
        b"",
    );
    let v = logged(&b, "stall");
    assert_eq!(v.layer, "l4", "{v:?}");
    assert!(v.hints().contains(&"mtls"), "{v:?}");
}
