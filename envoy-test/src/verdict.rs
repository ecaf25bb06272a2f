//! Reading verdicts back as a user would: from the response header and from access-log lines.

use meshtriage_core::sfv::{self, BareItem};
use std::collections::BTreeMap;

/// One verdict member, with its parameters as text.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub layer: String,
    pub params: BTreeMap<String, String>,
}

impl View {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    pub fn class(&self) -> &str {
        self.get("class").unwrap_or("")
    }

    /// A Boolean parameter (`inferred`): present means true (RFC 8941 writes `;inferred`).
    pub fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| v != "Boolean(false)")
    }

    pub fn hints(&self) -> Vec<&str> {
        self.get("hints")
            .map(|h| h.split(' ').collect())
            .unwrap_or_default()
    }
}

/// Parses a verdict header value (an RFC 8941 List) into its members; panics on bad syntax,
/// which in a test means the plugin wrote an invalid header.
pub fn parse(value: &str) -> Vec<View> {
    let members =
        sfv::parse_list(value.as_bytes()).unwrap_or_else(|_| panic!("not RFC 8941: {value}"));
    members
        .into_iter()
        .map(|m| View {
            layer: m
                .item
                .as_ref()
                .and_then(BareItem::as_token)
                .unwrap_or("")
                .to_string(),
            params: m
                .params
                .iter()
                .map(|(k, v)| {
                    let text = match v {
                        BareItem::Token(t) | BareItem::String(t) => t.clone(),
                        BareItem::Integer(i) => i.to_string(),
                        other => format!("{other:?}"),
                    };
                    (k.clone(), text)
                })
                .collect(),
        })
        .collect()
}

/// The verdict an access-log line carries (`verdict=<member>` at the end), if any.
pub fn from_access_log(line: &str) -> Option<View> {
    let v = line.rsplit_once(" verdict=")?.1.trim();
    (v != "-").then(|| parse(v).into_iter().next()).flatten()
}

/// The verdict Envoy logged for the request tagged `scn` (a format with `scn=%REQ(x-scn)% `
/// and `verdict=` last), waiting (bounded, [`crate::envoy::WAIT`]) for the line; panics with
/// Envoy's diagnostics when none comes.
pub fn logged(envoy: &crate::envoy::Envoy, scn: &str) -> View {
    let needle = format!("scn={scn} ");
    let deadline = std::time::Instant::now() + crate::envoy::WAIT;
    while std::time::Instant::now() < deadline {
        if let Some(v) = envoy
            .access_log_lines()
            .iter()
            .filter(|l| l.contains(&needle))
            .find_map(|l| from_access_log(l))
        {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no verdict logged for {scn}\n{}", envoy.diagnostics())
}
