//! gRPC failures: the status code in the verdict (header parameter `grpc`, metric label of
//! `meshtriage_grpc_failures_total`) and deadlines.
//!
//! A call that outlives its deadline ends one of two ways, whichever side's timer fires first:
//! the client cancels the stream (Envoy: `DR`, a client gone: `downstream_disconnect`), or the
//! server answers `DEADLINE_EXCEEDED` (status 4: an app's gRPC error). Both are the same event,
//! so both get one verdict, `grpc_deadline_exceeded`, when the request carried `grpc-timeout`
//! and the call lasted at least that long ([`DEADLINE_SLACK_PERMILLE`] allows for the timers
//! of both sides not starting at the same instant). Status 4 without a `grpc-timeout`, or well
//! before it ran out, stays the app's: its own call to a dependency timed out.
//!
//! Envoy answers the request's headers only at the log, not at response headers or trailers.
//! A status 4 seen there is therefore *presumed* the deadline, marked `inferred` in the verdict
//! header (the server's status 4 is usually the caller's deadline, which gRPC servers enforce
//! themselves); the log reads `grpc-timeout` and confirms it, or gives the verdict back to the
//! app. So a call that runs into its deadline reads `grpc_deadline_exceeded` in the header, the
//! log and the metrics, whichever side ends it.

use crate::flags::Flag;
use crate::signals::Signals;
use crate::taxonomy::Class;
use crate::verdict::Verdict;

/// The 17 gRPC status codes, by number: the only values of the metric label.
pub const CODES: [&str; 17] = [
    "ok",
    "cancelled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
];

pub const DEADLINE_EXCEEDED: u32 = 4;

/// The call counts as having reached its deadline from this share of it on.
pub const DEADLINE_SLACK_PERMILLE: u64 = 900;

/// The label of a failing code (1..=16); `None` for OK and anything outside the 17.
pub fn code_label(code: u32) -> Option<&'static str> {
    (code != 0)
        .then(|| CODES.get(code as usize).copied())
        .flatten()
}

/// Parses a `grpc-timeout` value (1 to 8 digits and a unit: H, M, S, m, u, n) into
/// nanoseconds.
pub fn parse_timeout(value: &[u8]) -> Option<u64> {
    let (unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let scale: u64 = match unit {
        b'H' => 3_600_000_000_000,
        b'M' => 60_000_000_000,
        b'S' => 1_000_000_000,
        b'm' => 1_000_000,
        b'u' => 1_000,
        b'n' => 1,
        _ => return None,
    };
    // 99999999H does not fit: a deadline that long never runs out.
    Some(n.saturating_mul(scale))
}

/// Did the call last (nearly) as long as its deadline?
pub fn deadline_ran_out(timeout_nanos: u64, elapsed_nanos: u64) -> bool {
    elapsed_nanos.saturating_mul(1000) >= timeout_nanos.saturating_mul(DEADLINE_SLACK_PERMILLE)
}

/// Is this failure one of the two ends of a deadline, so the request's `grpc-timeout` and the
/// call's duration are worth reading (two property reads, on this failure path only)?
pub fn may_be_deadline(s: &Signals, class: Class) -> bool {
    match class {
        Class::DownstreamDisconnect => s.flags.has(Flag::DR) || s.flags.has(Flag::DC),
        Class::AppGrpcError => s.grpc_status == Some(DEADLINE_EXCEEDED),
        _ => false,
    }
}

/// Before the log (response headers, a failing trailer) the request's `grpc-timeout` cannot be
/// read: a status 4 becomes the presumed deadline, `inferred` until the log settles it.
pub fn presume_deadline(v: &mut Verdict) {
    if v.class == Class::AppGrpcError && v.grpc == Some(DEADLINE_EXCEEDED) {
        set_class(v, Class::GrpcDeadlineExceeded);
        v.inferred = true;
    }
}

/// A deadline presumed before the log, still to be settled.
pub fn deadline_presumed(v: &Verdict) -> bool {
    v.class == Class::GrpcDeadlineExceeded && v.inferred
}

/// The log's answer to a presumed deadline: confirmed when the call ran out its
/// `grpc-timeout`, else the status 4 is the app's own (a dependency's deadline).
pub fn settle_deadline(v: &mut Verdict, ran_out: bool) {
    v.inferred = false;
    if !ran_out {
        set_class(v, Class::AppGrpcError);
    }
}

fn set_class(v: &mut Verdict, class: Class) {
    let info = class.info();
    v.class = info.class;
    v.layer = info.layer;
    v.origin = info.origin;
    v.side = info.side;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples::example_signals;
    use crate::{classify, Config, Layer, Origin, Side};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn labels_are_the_17_codes_and_only_failures() {
        assert_eq!(code_label(14), Some("unavailable"));
        assert_eq!(code_label(4), Some("deadline_exceeded"));
        assert_eq!(code_label(16), Some("unauthenticated"));
        assert_eq!(code_label(0), None);
        assert_eq!(code_label(17), None);
        assert_eq!(code_label(99), None);
    }

    #[test]
    fn parses_grpc_timeouts() {
        assert_eq!(parse_timeout(b"1S"), Some(1_000_000_000));
        assert_eq!(parse_timeout(b"500m"), Some(500_000_000));
        assert_eq!(parse_timeout(b"99999999H"), Some(u64::MAX));
        for bad in [&b""[..], b"S", b"1", b"1s", b"123456789S", b"-1S", b"1.5S"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn both_ends_of_a_deadline_get_one_verdict() {
        let cfg = Config::default();
        let client_first = Signals {
            grpc_deadline: true,
            ..example_signals(Class::DownstreamDisconnect)
        };
        let mut client_first = client_first;
        client_first.flags = client_first.flags.with(Flag::DR);
        let server_first = Signals {
            grpc_status: Some(DEADLINE_EXCEEDED),
            grpc_deadline: true,
            ..example_signals(Class::AppGrpcError)
        };
        let a = classify(&client_first, &cfg);
        let b = classify(&server_first, &cfg);
        assert_eq!(
            (a.class, a.layer, a.origin, a.side),
            (b.class, b.layer, b.origin, b.side)
        );
        assert_eq!(
            (a.class, a.layer, a.origin, a.side),
            (
                Class::GrpcDeadlineExceeded,
                Layer::L7,
                Origin::Client,
                Side::Upstream
            )
        );
        // Status 4 without the deadline running out: the app's own.
        let own = Signals {
            grpc_status: Some(DEADLINE_EXCEEDED),
            ..example_signals(Class::AppGrpcError)
        };
        assert_eq!(classify(&own, &cfg).class, Class::AppGrpcError);
        assert!(may_be_deadline(&own, Class::AppGrpcError));
        assert!(!may_be_deadline(
            &example_signals(Class::AppGrpcError),
            Class::AppGrpcError
        ));
        // Before the log: presumed the deadline, and the header says so is not certain.
        let mut v = Verdict::new(classify(&own, &cfg), &own, "h");
        presume_deadline(&mut v);
        assert!(deadline_presumed(&v));
        assert_eq!(
            (v.class, v.origin),
            (Class::GrpcDeadlineExceeded, Origin::Client)
        );
        assert!(v.encode(false).contains(";inferred;grpc=4"));
        // The log confirms it (the deadline ran out) ...
        let mut confirmed = v.clone();
        settle_deadline(&mut confirmed, true);
        assert_eq!(
            (confirmed.class, confirmed.inferred),
            (Class::GrpcDeadlineExceeded, false)
        );
        // ... or gives it back to the app (its own deadline on a dependency).
        settle_deadline(&mut v, false);
        assert_eq!(
            (v.class, v.origin, v.inferred),
            (Class::AppGrpcError, Origin::App, false)
        );
        // Other codes are never presumed a deadline.
        let unavailable = example_signals(Class::AppGrpcError);
        let mut u = Verdict::new(classify(&unavailable, &cfg), &unavailable, "h");
        presume_deadline(&mut u);
        assert_eq!((u.class, u.inferred), (Class::AppGrpcError, false));
        assert!(deadline_ran_out(1_000_000_000, 950_000_000));
        assert!(!deadline_ran_out(1_000_000_000, 500_000_000));
    }
}
