//! The `mtls` hint against a real Envoy 1.40: the bed's TLS upstream presents a SPIFFE
//! identity, as a mesh workload does. The plugin reads the peer certificate only for
//! transport-layer verdicts: a stalled transfer over that connection gets the hint, an app's
//! 503 over the same connection does not (in a mesh every hop is mTLS; there it says nothing).

use meshtriage_envoy_test::bed::{Bed, BedOptions};
use meshtriage_envoy_test::request;
use meshtriage_envoy_test::verdict;

// The TLS upstream is a second listener of the same Envoy, without the plugin: it logs the same
// request too, with `verdict=-`, which verdict::logged passes over.
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
    assert!(!verdict::logged(&b.envoy, "app503")
        .hints()
        .contains(&"mtls"));

    // The body stalls after the headers until the route timeout: L4, over the SPIFFE peer.
    let _ = request(
        b.port,
        "GET",
        "/tls/ok/stall-body",
        &[("x-scn", "stall")],
        b"",
    );
    let v = verdict::logged(&b.envoy, "stall");
    assert_eq!(v.layer, "l4", "{v:?}");
    assert!(v.hints().contains(&"mtls"), "{v:?}");
}
