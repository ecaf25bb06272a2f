//! The verdict on trace spans: the filter-state keys the plugin writes for a failing request
//! and the tracing custom tags that read them (Envoy's `custom_tags[].value`, Istio's
//! Telemetry `customTags.<tag>.formatter.value`). One table drives the plugin, the test bed,
//! the Istio generator's check and docs/tracing.md, so a tag cannot name a key nobody writes.
//!
//! Only failing requests get the keys, so only failing spans get the tags: Envoy leaves out a
//! custom tag whose formatted value is empty, and an unset filter state formats as empty.

use crate::config::Config;
use crate::verdict::Verdict;

/// Filter-state key (Envoy prefixes `wasm.`) holding the whole verdict, as the header writes it.
pub const VERDICT_STATE: &str = "meshtriage";

/// One span tag and the filter-state key (without the `wasm.` prefix) it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceTag {
    pub tag: &'static str,
    pub state: &'static str,
    /// What the tag holds (docs/tracing.md).
    pub meaning: &'static str,
}

/// Every tag, the whole verdict first.
pub const TAGS: [TraceTag; 4] = [
    TraceTag {
        tag: "meshtriage.verdict",
        state: VERDICT_STATE,
        meaning: "the whole verdict, as the response header carries it (RFC 8941 list member)",
    },
    TraceTag {
        tag: "meshtriage.layer",
        state: "meshtriage.layer",
        meaning: "`l4`, `l7` or `unknown`",
    },
    TraceTag {
        tag: "meshtriage.class",
        state: "meshtriage.class",
        meaning: "the failure class (docs/taxonomy.md)",
    },
    TraceTag {
        tag: "meshtriage.origin",
        state: "meshtriage.origin",
        meaning: "`proxy`, `upstream_proxy`, `app` or `client`",
    },
];

impl TraceTag {
    /// The access-log formatter that reads the tag's filter state.
    pub fn formatter(&self) -> String {
        format!("%FILTER_STATE(wasm.{}:PLAIN)%", self.state)
    }
}

/// The separate-field keys and their values for `v` (the whole verdict is written apart: its
/// text is the header's). Tokens are static: no allocation.
pub fn field_states(v: &Verdict) -> [(&'static str, &'static str); 3] {
    let [_, layer, class, origin] = TAGS;
    [
        (layer.state, v.layer.as_str()),
        (class.state, v.class.as_str()),
        (origin.state, v.origin.as_str()),
    ]
}

/// Whether the end-of-stream stage (`stages::finish`) can run before `on_log`, while the span is
/// open, once the response has ended: its evidence is complete when a probed body ended (the
/// refinement) or a trailer carried a failing gRPC status (the late gRPC verdict). Every other
/// late failure is only known to Envoy at the end of the stream, after the span.
pub fn end_stage_before_log(probe_pending: bool, grpc_trailer: Option<u32>, cfg: &Config) -> bool {
    probe_pending || grpc_trailer.is_some_and(|g| cfg.grpc_failing(g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples::{example_signals, tcp_example};
    use crate::{classify, Class, Config};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn the_fields_are_the_verdicts_tokens() {
        let http = Class::all().filter(|c| tcp_example(*c).is_none());
        for class in http {
            let s = example_signals(class);
            let v = Verdict::new(classify(&s, &Config::default()), &s, "hop.ns");
            let fields = field_states(&v);
            assert_eq!(
                fields,
                [
                    ("meshtriage.layer", v.layer.as_str()),
                    ("meshtriage.class", v.class.as_str()),
                    ("meshtriage.origin", v.origin.as_str()),
                ]
            );
            // The separate tags agree with the whole verdict's member.
            let text = v.encode(true);
            assert!(text.starts_with(v.layer.as_str()), "{text}");
            assert!(
                text.contains(&format!(";class={}", v.class.as_str())),
                "{text}"
            );
            assert!(
                text.contains(&format!(";origin={}", v.origin.as_str())),
                "{text}"
            );
        }
    }

    #[test]
    fn the_end_stage_runs_early_only_on_complete_evidence() {
        let cfg = Config::default();
        assert!(end_stage_before_log(true, None, &cfg));
        assert!(end_stage_before_log(false, Some(14), &cfg));
        assert!(
            !end_stage_before_log(false, Some(0), &cfg),
            "OK is not failing"
        );
        assert!(
            !end_stage_before_log(false, None, &cfg),
            "a success: no reads"
        );
    }

    #[test]
    fn tags_and_keys_are_distinct_and_formatters_name_the_wasm_keys() {
        for (i, a) in TAGS.iter().enumerate() {
            assert!(a.tag.starts_with("meshtriage."));
            for b in TAGS.iter().skip(i + 1) {
                assert_ne!(a.tag, b.tag);
                assert_ne!(a.state, b.state);
            }
        }
        assert_eq!(TAGS[0].formatter(), "%FILTER_STATE(wasm.meshtriage:PLAIN)%");
        assert_eq!(
            TAGS[2].formatter(),
            "%FILTER_STATE(wasm.meshtriage.class:PLAIN)%"
        );
    }
}
