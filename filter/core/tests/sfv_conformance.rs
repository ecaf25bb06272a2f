#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code
//! The official RFC 8941 conformance corpus (httpwg/structured-field-tests, its List cases,
//! vendored in tests/fixtures/structured-field-tests) against the hand-written parser in
//! `sfv.rs`: every case that must parse parses to the expected members and parameters, every
//! case that must fail is rejected.

use meshtriage_core::sfv::{parse_list, BareItem, Member};
use serde_json::Value;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!("fixtures/structured-field-tests/", $name)),
        )
    };
}

const FILES: [(&str, &str); 9] = [
    fixture!("examples.json"),
    fixture!("key-generated.json"),
    fixture!("large-generated.json"),
    fixture!("list.json"),
    fixture!("listlist.json"),
    fixture!("number.json"),
    fixture!("param-list.json"),
    fixture!("param-listlist.json"),
    fixture!("token.json"),
];

/// The suite's JSON form of a bare item equals ours.
fn same_bare(expected: &Value, got: &BareItem) -> bool {
    match (expected, got) {
        (Value::Bool(e), BareItem::Boolean(g)) => e == g,
        (Value::String(e), BareItem::String(g)) => e == g,
        (Value::Number(e), BareItem::Integer(g)) if !e.is_f64() => e.as_i64() == Some(*g),
        (Value::Number(e), BareItem::Decimal(g)) => {
            e.as_f64().is_some_and(|e| (e - g).abs() < 1e-9)
        }
        (Value::Object(o), BareItem::Token(g)) => {
            o.get("__type").and_then(Value::as_str) == Some("token")
                && o.get("value").and_then(Value::as_str) == Some(g)
        }
        _ => false,
    }
}

fn same_params(expected: &Value, got: &[(String, BareItem)]) -> bool {
    let Some(e) = expected.as_array() else {
        return false;
    };
    e.len() == got.len()
        && e.iter()
            .zip(got)
            .all(|(pair, (k, v))| pair[0].as_str() == Some(k.as_str()) && same_bare(&pair[1], v))
}

/// One expected member: `[bare, params]`, or an inner list `[[items], params]` (our parser
/// keeps an inner list's parameters, not its items).
fn same_member(expected: &Value, got: &Member) -> bool {
    let (value, params) = (&expected[0], &expected[1]);
    let item_ok = match (value, &got.item) {
        (Value::Array(_), None) => true,
        (v, Some(item)) => same_bare(v, item),
        _ => false,
    };
    item_ok && same_params(params, &got.params)
}

#[test]
fn rfc8941_list_corpus() {
    let mut cases = 0;
    let mut wrong = Vec::new();
    for (file, text) in FILES {
        let records: Value = serde_json::from_str(text).unwrap();
        for r in records.as_array().unwrap() {
            assert_eq!(r["header_type"], "list");
            cases += 1;
            let name = format!("{file}: {}", r["name"].as_str().unwrap_or("?"));
            // Several field lines combine into one value, joined by commas (RFC 9110 §5.3).
            let raw: Vec<&str> = r["raw"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let parsed = parse_list(raw.join(",").as_bytes());
            let must_fail = r["must_fail"].as_bool().unwrap_or(false);
            let can_fail = r["can_fail"].as_bool().unwrap_or(false);
            match (parsed, must_fail) {
                (Err(_), true) => {}
                (Ok(_), true) => wrong.push(format!("{name}: accepted, must fail")),
                (Err(_), false) if can_fail => {}
                (Err(_), false) => wrong.push(format!("{name}: rejected")),
                (Ok(members), false) => {
                    let expected = r["expected"].as_array().unwrap();
                    let same = expected.len() == members.len()
                        && expected
                            .iter()
                            .zip(&members)
                            .all(|(e, m)| same_member(e, m));
                    if !same {
                        wrong.push(format!("{name}: parsed as {members:?}"));
                    }
                }
            }
        }
    }
    assert_eq!(cases, 319, "the vendored corpus changed");
    assert!(
        wrong.is_empty(),
        "{} of {cases} cases:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
