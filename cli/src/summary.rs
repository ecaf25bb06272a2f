//! What `meshtriage logs` found: rows for failing requests and the summary counts, all bounded
//! (memory stays flat whatever the input size).

use crate::judge::Key;
use crate::style::Style;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

/// Distinct clusters, authorities and time buckets kept; the rest count as `(other)`.
const MAX_KEYS: usize = 10_000;
/// Unparsed lines shown (all are counted).
pub const MAX_BAD_SHOWN: usize = 10;
/// Bytes of a bad line shown.
const BAD_PREFIX: usize = 60;
/// Characters of an example line shown.
const EXAMPLE_CHARS: usize = 240;

/// One failing request.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub file: String,
    pub line: u64,
    pub time: Option<String>,
    pub status: Option<u16>,
    pub flags: String,
    pub details: Option<String>,
    pub cluster: Option<String>,
    pub authority: Option<String>,
    pub path: Option<String>,
    pub key: Option<Key>,
    pub hints: Vec<&'static str>,
    /// `fields` (the line's fields and the rules) or `plugin` (the verdict in the line).
    pub source: &'static str,
    /// The plugin's verdict in the line, if any.
    pub plugin: Option<String>,
}

impl Row {
    pub fn to_json(&self) -> serde_json::Value {
        let k = self.key.unwrap_or(Key {
            layer: "",
            class: "",
            origin: "",
            side: "",
        });
        json!({
            "file": self.file, "line": self.line, "time": self.time, "status": self.status,
            "flags": self.flags, "details": self.details, "cluster": self.cluster,
            "authority": self.authority, "path": self.path,
            "layer": k.layer, "class": k.class, "origin": k.origin, "side": k.side,
            "hints": self.hints, "source": self.source, "plugin": self.plugin,
        })
    }

    pub const CSV_HEADER: &'static str =
        "file,line,time,status,flags,details,cluster,authority,path,layer,class,origin,side,hints,source,plugin";

    pub fn to_csv(&self) -> String {
        let k = self.key;
        let cells = [
            self.file.clone(),
            self.line.to_string(),
            self.time.clone().unwrap_or_default(),
            self.status.map(|s| s.to_string()).unwrap_or_default(),
            self.flags.clone(),
            self.details.clone().unwrap_or_default(),
            self.cluster.clone().unwrap_or_default(),
            self.authority.clone().unwrap_or_default(),
            self.path.clone().unwrap_or_default(),
            k.map(|k| k.layer.to_string()).unwrap_or_default(),
            k.map(|k| k.class.to_string()).unwrap_or_default(),
            k.map(|k| k.origin.to_string()).unwrap_or_default(),
            k.map(|k| k.side.to_string()).unwrap_or_default(),
            self.hints.join(" "),
            self.source.to_string(),
            self.plugin.clone().unwrap_or_default(),
        ];
        cells
            .iter()
            .map(|c| csv_cell(c))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// One line for `--follow` in text mode.
    pub fn to_text(&self, st: &Style) -> String {
        let k = self.key.unwrap_or(Key {
            layer: "?",
            class: "?",
            origin: "?",
            side: "?",
        });
        let mut s = format!(
            "{}:{} {} {} origin={} side={}",
            self.file,
            self.line,
            st.layer(k.layer),
            st.bold(k.class),
            k.origin,
            k.side
        );
        if !self.hints.is_empty() {
            let _ = write!(s, " hints={}", self.hints.join(","));
        }
        let _ = write!(
            s,
            "  {} {} {}",
            self.status.map_or("-".to_string(), |c| c.to_string()),
            if self.flags.is_empty() {
                "-"
            } else {
                &self.flags
            },
            self.details.as_deref().unwrap_or("-")
        );
        if let Some(c) = &self.cluster {
            let _ = write!(s, " cluster={c}");
        }
        s
    }
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn bump(map: &mut HashMap<String, u64>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n += 1;
    } else if map.len() < MAX_KEYS {
        map.insert(key.to_string(), 1);
    } else {
        *map.entry("(other)".to_string()).or_insert(0) += 1;
    }
}

/// A line that could not be read.
#[derive(Clone, Debug)]
pub struct Bad {
    pub file: String,
    pub line: u64,
    pub start: String,
}

#[derive(Debug, Default)]
pub struct Summary {
    pub files: usize,
    pub lines: u64,
    pub failing: u64,
    pub by_key: BTreeMap<Key, u64>,
    pub by_cluster: HashMap<String, u64>,
    pub by_authority: HashMap<String, u64>,
    /// Time bucket → (requests, failing).
    pub buckets: BTreeMap<String, (u64, u64)>,
    pub examples: BTreeMap<&'static str, Vec<(String, u64, String)>>,
    pub examples_per_class: usize,
    pub unparsed: u64,
    pub bad: Vec<Bad>,
    /// Lines whose fields and plugin verdict were both read, and how many agreed.
    pub compared: u64,
    pub agreed: u64,
}

impl Summary {
    pub fn bucket(&mut self, bucket: Option<&str>, failing: bool) {
        let key = bucket.unwrap_or("(no time)");
        if let Some(b) = self.buckets.get_mut(key) {
            b.0 += 1;
            b.1 += u64::from(failing);
        } else {
            let key = if self.buckets.len() < MAX_KEYS {
                key
            } else {
                "(other)"
            };
            let b = self.buckets.entry(key.to_string()).or_insert((0, 0));
            b.0 += 1;
            b.1 += u64::from(failing);
        }
    }

    pub fn add_failing(&mut self, row: &Row, line: &[u8]) {
        self.failing += 1;
        if let Some(k) = row.key {
            *self.by_key.entry(k).or_insert(0) += 1;
            let ex = self.examples.entry(k.class).or_default();
            if ex.len() < self.examples_per_class {
                let text = String::from_utf8_lossy(line);
                ex.push((
                    row.file.clone(),
                    row.line,
                    text.chars().take(EXAMPLE_CHARS).collect(),
                ));
            }
        }
        bump(&mut self.by_cluster, row.cluster.as_deref().unwrap_or("-"));
        bump(
            &mut self.by_authority,
            row.authority.as_deref().unwrap_or("-"),
        );
    }

    pub fn add_bad(&mut self, file: &str, line_no: u64, line: &[u8]) {
        self.unparsed += 1;
        if self.bad.len() < MAX_BAD_SHOWN {
            let cut = line.get(..BAD_PREFIX.min(line.len())).unwrap_or(line);
            self.bad.push(Bad {
                file: file.to_string(),
                line: line_no,
                start: String::from_utf8_lossy(cut).into_owned(),
            });
        }
    }

    fn tally<F: Fn(&Key) -> &'static str>(&self, f: F) -> Vec<(&'static str, u64)> {
        let mut m: BTreeMap<&'static str, u64> = BTreeMap::new();
        for (k, n) in &self.by_key {
            *m.entry(f(k)).or_insert(0) += n;
        }
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }

    fn top(map: &HashMap<String, u64>, n: usize) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = map.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v.truncate(n);
        v
    }

    /// The unparsed-lines report (also printed in json/csv mode, on stderr).
    pub fn bad_report(&self) -> String {
        let mut out = String::new();
        if self.unparsed == 0 {
            return out;
        }
        let _ = writeln!(
            out,
            "not parsed: {} line(s){}",
            self.unparsed,
            if self.unparsed as usize > self.bad.len() {
                format!(" (first {} shown)", self.bad.len())
            } else {
                String::new()
            }
        );
        for b in &self.bad {
            let _ = writeln!(out, "  {}:{}: {:?}", b.file, b.line, b.start);
        }
        out
    }

    pub fn totals(&self) -> String {
        let pct = if self.lines > self.unparsed {
            100.0 * self.failing as f64 / (self.lines - self.unparsed) as f64
        } else {
            0.0
        };
        format!(
            "{} line(s) read, {} failing request(s) ({pct:.2} %), {} not parsed",
            self.lines, self.failing, self.unparsed
        )
    }

    pub fn to_text(&self, st: &Style, top: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{} {}", st.bold("meshtriage logs:"), self.totals());
        if self.failing > 0 {
            let join = |v: Vec<(&'static str, u64)>, color: bool| -> String {
                v.iter()
                    .map(|(k, n)| {
                        if color {
                            format!("{} {n}", st.layer(k))
                        } else {
                            format!("{k} {n}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            let _ = writeln!(out, "\nby layer:   {}", join(self.tally(|k| k.layer), true));
            let _ = writeln!(out, "by origin:  {}", join(self.tally(|k| k.origin), false));
            let _ = writeln!(out, "by side:    {}", join(self.tally(|k| k.side), false));
            let _ = writeln!(
                out,
                "\n{}",
                st.bold("by verdict (count, layer, class, origin, side, next step):")
            );
            let mut keys: Vec<(&Key, &u64)> = self.by_key.iter().collect();
            keys.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (k, n) in keys {
                let next =
                    meshtriage_core::Class::parse(k.class).map_or("", |c| c.docs().next_step);
                let _ = writeln!(
                    out,
                    "  {n:>9}  {} {:<26} {:<15} {:<10} {}",
                    st.layer(k.layer),
                    k.class,
                    k.origin,
                    k.side,
                    st.dim(next)
                );
            }
            for (title, map) in [
                ("by upstream cluster (failing requests):", &self.by_cluster),
                ("by authority (failing requests):", &self.by_authority),
            ] {
                let _ = writeln!(out, "\n{}", st.bold(title));
                for (k, n) in Self::top(map, top) {
                    let _ = writeln!(out, "  {n:>9}  {k}");
                }
                if map.len() > top {
                    let _ = writeln!(out, "  ... {} more", map.len() - top);
                }
            }
        }
        if !self.buckets.is_empty() {
            let _ = writeln!(out, "\n{}", st.bold("by time (failing / requests):"));
            for (b, (total, failing)) in &self.buckets {
                let _ = writeln!(out, "  {b:<20} {failing:>9} / {total}");
            }
        }
        if !self.examples.is_empty() {
            let _ = writeln!(out, "\n{}", st.bold("examples:"));
            for (class, ex) in &self.examples {
                for (file, line, text) in ex {
                    let _ = writeln!(out, "  {class} {file}:{line}\n    {text}");
                }
            }
        }
        if self.compared > 0 {
            let _ = writeln!(
                out,
                "\nplugin verdicts in the lines: {} compared with the fields' verdict, {} agree",
                self.compared, self.agreed
            );
        }
        let bad = self.bad_report();
        if !bad.is_empty() {
            let _ = write!(out, "\n{bad}");
        }
        out
    }
}
