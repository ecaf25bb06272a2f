#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code
//! Property tests ("fuzzing" without nightly): every parser and encoder the plugin runs on
//! input it does not control is total, and the verdict encoder's output always parses back as
//! RFC 8941. Native only (proptest needs a clock and randomness); `PROPTEST_CASES` sets the
//! number of cases per property: the default (256) in `make unit`, many more in `make fuzz`.
#![cfg(not(target_arch = "wasm32"))]

use meshtriage_core::config::{self, KEYS};
use meshtriage_core::flags::ResponseFlags;
use meshtriage_core::hop_by_hop::HopByHop;
use meshtriage_core::response::{parse_grpc_status, ResponseScan};
use meshtriage_core::sfv::{self, BareItem};
use meshtriage_core::taxonomy::Hints;
use meshtriage_core::upstream::{
    bound_entries, local_reply_class, parse_proxy_status, UpstreamEvidence, MAX_ENTRIES,
    MAX_HEADER_BYTES,
};
use meshtriage_core::wire::{serialize, HeaderPairs};
use meshtriage_core::{
    classify, is_failing, Class, Config, Direction, Layer, Origin, Phase, Side, Signals, Verdict,
};
use proptest::prelude::*;
use serde_json::Value;

fn layer() -> impl Strategy<Value = Layer> {
    proptest::sample::select(Layer::ALL.to_vec())
}
fn class() -> impl Strategy<Value = Class> {
    proptest::sample::select(Class::all().collect::<Vec<_>>())
}
fn origin() -> impl Strategy<Value = Origin> {
    proptest::sample::select(Origin::ALL.to_vec())
}
fn side() -> impl Strategy<Value = Side> {
    proptest::sample::select(Side::ALL.to_vec())
}
fn direction() -> impl Strategy<Value = Direction> {
    proptest::sample::select(Direction::ALL.to_vec())
}

/// Text that stresses the encoder: quotes, backslashes, controls, non-ASCII, long runs.
fn nasty_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\"\\\\ a-z;,=()\t\r\n\u{0}\u{7f}é€😀]{0,300}",
        Just("x".repeat(5000)),
    ]
}

/// Envoy-like code details: real prefixes with arbitrary tails.
fn details() -> impl Strategy<Value = Option<String>> {
    let known = proptest::sample::select(vec![
        "via_upstream",
        "direct_response",
        "route_not_found",
        "cluster_not_found",
        "rbac_access_denied_matched_policy[x]",
        "local_rate_limited",
        "fault_filter_abort",
        "upstream_reset_before_response_started{connection_termination}",
        "upstream_reset_before_response_started{remote_connection_failure|delayed connect error: 111}",
        "upstream_reset_after_response_started{protocol_error}",
        "upstream_response_timeout",
        "wasm_fail_stream",
        "http1.codec_error",
        "downstream_remote_disconnect",
    ]);
    prop_oneof![
        Just(None),
        known.clone().prop_map(|s| Some(s.to_string())),
        (known, nasty_text()).prop_map(|(a, b)| Some(format!("{a}{b}"))),
        nasty_text().prop_map(Some),
    ]
}

fn evidence() -> impl Strategy<Value = UpstreamEvidence> {
    prop_oneof![
        Just(UpstreamEvidence::None),
        // What `bound_entries` can hand over: `unknown` only with `unclassified`.
        (layer(), class())
            .prop_filter("consistent", |(l, c)| (*l == Layer::Unknown)
                == (*c == Class::Unclassified))
            .prop_map(|(layer, class)| UpstreamEvidence::Verdicts { layer, class }),
        (nasty_text(), details(), any::<u64>()).prop_map(|(error, details, f)| {
            UpstreamEvidence::ProxyStatus {
                error,
                details,
                flags: ResponseFlags(f),
            }
        }),
        (class(), any::<bool>())
            .prop_map(|(class, retried)| UpstreamEvidence::LocalReplyBody { class, retried }),
    ]
}

fn signals() -> impl Strategy<Value = Signals> {
    (
        (
            any::<bool>(),
            proptest::option::of(any::<u16>()),
            any::<u64>(),
            details(),
            proptest::option::of(nasty_text()),
            proptest::option::of(any::<u32>()),
            any::<u64>(),
            direction(),
        ),
        (
            any::<bool>(),
            any::<bool>(),
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            proptest::option::of(any::<u64>()),
            any::<bool>(),
            evidence(),
            proptest::option::of(any::<u64>()),
        ),
    )
        .prop_map(
            |(
                (log, status, flags, details, tfr, grpc, attempts, direction),
                (started, chunked, resp, req, mtls, connect, budget, upstream, declared),
            )| Signals {
                phase: if log {
                    Phase::Log
                } else {
                    Phase::ResponseHeaders
                },
                status,
                flags: ResponseFlags(flags),
                details,
                transport_failure: tfr,
                grpc_status: grpc,
                attempts,
                direction,
                response_started: started,
                chunked,
                response_body_bytes: resp,
                declared_response_bytes: declared,
                request_body_bytes: req,
                hop_by_hop: HopByHop::default(),
                upstream_mtls: mtls,
                upstream_tls13_no_client_cert: mtls && budget,
                grpc_deadline: started && budget,
                connect_nanos: connect,
                retry_budget_exceeded: budget,
                upstream,
            },
        )
}

fn verdict() -> impl Strategy<Value = Verdict> {
    (
        (layer(), class(), origin(), side(), direction()),
        (
            nasty_text(),
            any::<u64>(),
            proptest::option::of(nasty_text()),
            any::<u64>(),
            any::<u16>(),
        ),
    )
        .prop_map(
            |((layer, class, origin, side, dir), (hop, flags, detail, attempts, hints))| Verdict {
                layer,
                class,
                origin,
                side,
                dir,
                hop,
                flags: ResponseFlags(flags),
                detail,
                attempts,
                hints: Hints(hints),
                inferred: false,
                grpc: None,
            },
        )
}

/// Arbitrary JSON, nested a few levels.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[0-9x]{1,4}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(("[a-z_]{1,12}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A configuration object whose keys are mostly the real ones, with arbitrary values.
fn config_object() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        4 => proptest::sample::select(KEYS.iter().map(|k| k.name).collect::<Vec<_>>())
            .prop_map(str::to_string),
        1 => "[a-z_]{1,16}",
        1 => Just("retry_budget".to_string()),
    ];
    proptest::collection::vec((key, json()), 0..6)
        .prop_map(|kv| Value::Object(kv.into_iter().collect()))
}

/// One verdict-like list member, sometimes huge.
fn member() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(vec!["l4", "l7", "unknown", "foreign"]),
        proptest::sample::select(vec!["connect_refused", "app_error", "bogus"]),
        "[a-z0-9. ]{0,40}",
        prop_oneof![20 => 0usize..300, 1 => 28_000usize..42_000],
    )
        .prop_map(|(l, c, hop, pad)| {
            format!(
                "{l};class={c};hop=\"{hop}\";pad=\"{}\"",
                "p".repeat(pad / 7)
            )
        })
}

proptest! {
    #[test]
    fn sfv_parse_list_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = sfv::parse_list(&bytes);
    }

    #[test]
    fn sfv_parse_list_is_total_on_sfv_like_text(
        text in "[a-z0-9 ;=,\"\\\\():?*.\\-+/\t_]{0,200}",
    ) {
        if let Ok(members) = sfv::parse_list(text.as_bytes()) {
            // A member's text is what was parsed: it parses again as exactly that member.
            for m in members {
                let again = sfv::parse_list(m.text.as_bytes()).unwrap();
                prop_assert_eq!(again.len(), 1);
                prop_assert_eq!(&again[0].item, &m.item);
            }
        }
    }

    #[test]
    fn every_encoded_verdict_parses_back(v in verdict(), detail in any::<bool>()) {
        let text = v.encode(detail);
        let list = sfv::parse_list(text.as_bytes())
            .map_err(|_| TestCaseError::fail(format!("not RFC 8941: {text}")))?;
        prop_assert_eq!(list.len(), 1, "{}", text);
        let m = &list[0];
        prop_assert_eq!(m.item.as_ref().and_then(BareItem::as_token), Some(v.layer.as_str()));
        prop_assert_eq!(m.param("class").and_then(BareItem::as_token), Some(v.class.as_str()));
        prop_assert_eq!(m.param("origin").and_then(BareItem::as_token), Some(v.origin.as_str()));
        prop_assert_eq!(m.param("side").and_then(BareItem::as_token), Some(v.side.as_str()));
        // Bounded whatever the inputs: hop 253, flags/detail 200 characters, plus fixed parts.
        prop_assert!(text.len() <= 1400, "{} bytes", text.len());
        prop_assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)));
        if let Some(ps) = v.proxy_status() {
            prop_assert!(sfv::parse_list(ps.as_bytes()).is_ok(), "{}", ps);
        }
    }

    #[test]
    fn classification_is_total_and_encodes(s in signals(), cfg_json in config_object()) {
        let cfg = config::parse(cfg_json.to_string().as_bytes()).unwrap_or_default();
        for cfg in [Config::default(), cfg] {
            let failing = is_failing(&s, &cfg);
            let o = classify(&s, &cfg);
            if o.layer == Layer::Unknown {
                prop_assert_eq!(o.class, Class::Unclassified);
            }
            if failing {
                let text = Verdict::new(o, &s, "hop").encode(true);
                prop_assert!(sfv::parse_list(text.as_bytes()).is_ok(), "{}", text);
            }
        }
    }

    #[test]
    fn config_parse_is_total_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Err(e) = config::parse(&bytes) {
            prop_assert!(!e.problems.is_empty());
            for field in e.fields() {
                prop_assert!(!field.is_empty() && !field.contains('?'), "{}", e);
            }
            prop_assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn truncated_configs_name_a_key_or_the_document(doc in config_object(), cut in any::<prop::sample::Index>()) {
        let text = doc.to_string();
        let cut = cut.index(text.len().max(1));
        let Some(prefix) = text.get(..cut) else { return Ok(()) };
        if let Err(e) = config::parse(prefix.as_bytes()) {
            for field in e.fields() {
                let top = field.split(['.', '[']).next().unwrap_or("");
                prop_assert!(!field.contains('?'), "{}: {}", prefix, e);
                prop_assert!(field == "(document)" || prefix.contains(&format!("\"{top}\"")), "{}: {}", prefix, e);
            }
        }
    }

    #[test]
    fn config_errors_name_a_field(doc in prop_oneof![config_object(), json()]) {
        if let Err(e) = config::parse(doc.to_string().as_bytes()) {
            let text = e.to_string();
            prop_assert!(!text.contains('\n'), "{}", text);
            for field in e.fields() {
                let top = field.split(['.', '[']).next().unwrap_or("");
                let named = field == "(document)"
                    || KEYS.iter().any(|k| k.name == top)
                    || doc.as_object().is_some_and(|o| o.contains_key(top));
                prop_assert!(named, "error names no field of {}: {}", doc, text);
                if field == "(document)" {
                    prop_assert!(!doc.is_object() || text.contains("trailing"), "{}: {}", doc, text);
                }
            }
        }
    }

    #[test]
    fn header_pairs_are_total(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let n = HeaderPairs::new(&bytes).count();
        prop_assert!(n <= bytes.len() / 8 + 1);
    }

    #[test]
    fn header_pairs_round_trip(
        pairs in proptest::collection::vec(("[!-~]{0,20}", proptest::collection::vec(any::<u8>(), 0..64)), 0..40),
    ) {
        let borrowed: Vec<(&str, &[u8])> = pairs.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
        let buf = serialize(&borrowed);
        let got: Vec<(&str, &[u8])> = HeaderPairs::new(&buf).collect();
        prop_assert_eq!(got, borrowed.clone());
        // Any cut of a valid buffer ends the iteration early, never panics.
        for cut in [buf.len() / 3, buf.len() / 2, buf.len().saturating_sub(1)] {
            let _ = HeaderPairs::new(&buf[..cut]).count();
        }
        let _ = ResponseScan::scan(borrowed.iter().copied(), Some("x-meshtriage"));
    }

    #[test]
    fn response_scan_is_total_on_hostile_values(
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 9),
    ) {
        let names = [":status", "grpc-status", "transfer-encoding", "content-length",
                     "content-type", "proxy-status", "x-meshtriage", "connection", "upgrade"];
        let pairs: Vec<(&str, &[u8])> = names.iter().copied().zip(values.iter().map(Vec::as_slice)).collect();
        let scan = ResponseScan::scan(pairs.iter().copied(), Some("x-meshtriage"));
        prop_assert!(scan.grpc_status.is_none_or(|g| g <= 99));
        let _ = scan.may_fail(&Config::default());
        if let Some(ps) = &scan.proxy_status {
            let _ = parse_proxy_status(ps);
        }
        for v in &values {
            let _ = local_reply_class(v);
            prop_assert!(parse_grpc_status(v).is_none_or(|g| g <= 99));
        }
    }

    #[test]
    fn upstream_entries_are_always_bounded(
        members in proptest::collection::vec(member(), 0..120),
        lines in 1usize..4,
    ) {
        let per_line = members.len().div_ceil(lines).max(1);
        let joined: Vec<String> = members.chunks(per_line).map(|c| c.join(", ")).collect();
        let refs: Vec<&[u8]> = joined.iter().map(|l| l.as_bytes()).collect();
        match bound_entries(&refs) {
            Ok(Some(e)) => {
                prop_assert_eq!(e.layer == Layer::Unknown, e.class == Class::Unclassified);
                prop_assert!(e.header.len() <= MAX_HEADER_BYTES, "{} bytes", e.header.len());
                let kept = sfv::parse_list(e.header.as_bytes()).unwrap();
                prop_assert!(!kept.is_empty() && kept.len() <= MAX_ENTRIES);
                prop_assert_eq!(e.cut, kept.len() < members.len());
            }
            Ok(None) => prop_assert!(members.is_empty()),
            // Only when no member fits the size bound.
            Err(_) => prop_assert!(members.last().is_some_and(|m| m.len() > MAX_HEADER_BYTES)),
        }
    }

    #[test]
    fn upstream_entries_are_total_on_bytes(
        lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..4),
    ) {
        let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        if let Ok(Some(e)) = bound_entries(&refs) {
            prop_assert!(e.header.len() <= MAX_HEADER_BYTES);
        }
        let _ = parse_proxy_status(refs.first().copied().unwrap_or_default());
    }
}
