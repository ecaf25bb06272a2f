//! Keeps `istio/tests/vocabulary.json` (the metric names, labels and label values the Istio
//! dashboard and alert tests accept) equal to what meshtriage-core emits. The Istio manifests
//! themselves are checked by `istio/tests/run.sh`.

#[cfg(test)]
mod istio_vocabulary {
    use meshtriage_core::hop_by_hop::HOP_HEADERS;
    use meshtriage_core::metrics as names;
    use meshtriage_core::{Class, Direction, Layer, Origin, Side};
    use serde_json::{json, Value};
    use std::collections::BTreeSet;
    use std::path::Path;

    fn vocabulary() -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("istio/tests/vocabulary.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The tag names a stat name carries, in order (`name.tag=.=value;.;…`).
    fn tags_of(stat: &str) -> Vec<String> {
        stat.split(";.;")
            .filter_map(|part| part.split_once("=.="))
            .map(|(k, _)| k.rsplit('.').next().unwrap_or(k).to_string())
            .collect()
    }

    fn strings(v: &Value) -> BTreeSet<String> {
        v.as_array()
            .expect("a list")
            .iter()
            .map(|s| s.as_str().expect("a string").to_string())
            .collect()
    }

    #[test]
    fn istio_vocabulary_lists_every_metric_with_its_labels() {
        let vocab = vocabulary();
        let (d, l, c, o, s) = (
            Direction::Inbound,
            Layer::L4,
            Class::ConnectRefused,
            Origin::Proxy,
            Side::Upstream,
        );
        let (hh, _) = HOP_HEADERS[0];
        let emitted = json!({
            names::REQUESTS: tags_of(&names::requests(d)),
            names::FAILURES: tags_of(&names::failures(d, l, c, o, s)),
            names::HOP_BY_HOP: tags_of(&names::hop_by_hop(d, hh)),
            names::TCP_CONNECTIONS: tags_of(&names::tcp_connections(d)),
            names::TCP_FAILURES: tags_of(&names::tcp_failures(d, l, c)),
            names::CONFIG_ERRORS: [],
            names::INTERNAL_ERRORS: [],
            names::MALFORMED_UPSTREAM: [],
        });
        assert_eq!(vocab["metrics"], emitted);
        assert_eq!(vocab["tags"], json!(names::TAGS));
    }

    #[test]
    fn istio_vocabulary_lists_every_label_value() {
        let vocab = vocabulary();
        let values = &vocab["values"];
        let set = |it: &mut dyn Iterator<Item = &'static str>| {
            it.map(str::to_string).collect::<BTreeSet<_>>()
        };
        assert_eq!(
            strings(&values["dir"]),
            set(&mut Direction::ALL.iter().map(|x| x.as_str()))
        );
        assert_eq!(
            strings(&values["layer"]),
            set(&mut Layer::ALL.iter().map(|x| x.as_str()))
        );
        assert_eq!(
            strings(&values["class"]),
            set(&mut Class::all().map(Class::as_str))
        );
        assert_eq!(
            strings(&values["origin"]),
            set(&mut Origin::ALL.iter().map(|x| x.as_str()))
        );
        assert_eq!(
            strings(&values["side"]),
            set(&mut Side::ALL.iter().map(|x| x.as_str()))
        );
        assert_eq!(
            strings(&values["header"]),
            set(&mut HOP_HEADERS.iter().map(|h| h.1))
        );
    }
}
