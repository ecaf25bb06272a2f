//! Markdown generated from the tables, so the docs cannot drift from the code. The root
//! `build.rs` renders these and `tests/docs_sync.rs` checks the committed docs against them.

use crate::attributes::{Kind, ATTRIBUTES};
use crate::config::KEYS;
use crate::flags::FLAGS;
use crate::hop_by_hop::HOP_HEADERS;
use crate::metrics;
use crate::taxonomy::{Cond, CLASSES, HINTS, HINT_MEANINGS, RULES};
use crate::tcp::{TcpCond, TCP_RULES};
use std::fmt::Write;

fn signals_for(class: crate::taxonomy::Class) -> String {
    let http = http_signals_for(class);
    let tcp = TCP_RULES
        .iter()
        .filter(|r| r.class == class)
        .map(|r| tcp_when(r.when))
        .collect::<Vec<_>>()
        .join("; ");
    match (http.is_empty(), tcp.is_empty()) {
        (_, true) => http,
        (true, false) => format!("connections: {tcp}"),
        (false, false) => format!("{http}; connections: {tcp}"),
    }
}

fn tcp_when(when: &[TcpCond]) -> String {
    when.iter()
        .map(|c| c.describe())
        .collect::<Vec<_>>()
        .join(" + ")
}

/// The connection (network filter) rules in evaluation order.
pub fn tcp_rules_markdown() -> String {
    let mut out = String::from("| # | when | class | side |\n|---|---|---|---|\n");
    for (i, r) in TCP_RULES.iter().enumerate() {
        let side = r.side.unwrap_or(r.class.info().side);
        let _ = writeln!(
            out,
            "| {} | {} | `{}` | {} |",
            i + 1,
            tcp_when(r.when),
            r.class.as_str(),
            side.as_str()
        );
    }
    out
}

fn http_signals_for(class: crate::taxonomy::Class) -> String {
    RULES
        .iter()
        .filter(|r| r.class == class)
        .map(|r| {
            let mut s = r
                .when
                .iter()
                .map(|c| Cond::describe(*c))
                .collect::<Vec<_>>()
                .join(" + ");
            if let Some(l) = r.layer {
                let _ = write!(s, " → {}", l.as_str());
            }
            if let Some(h) = r.hint {
                let _ = write!(s, " (hint `{}`)", h.as_str());
            }
            s
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The taxonomy: classes (in rule order of first appearance is not needed: enum order), hints.
pub fn taxonomy_markdown() -> String {
    let mut out = String::new();
    out.push_str("| class | layer | origin | side | signals (rules, first match wins in table order) | Proxy-Status | meaning | example verdict | next step |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for c in CLASSES {
        let signals = if c.token == "unclassified" {
            "anything else that is failing".to_string()
        } else {
            signals_for(c.class)
        };
        let example = format!(
            "`{}`{}",
            crate::examples::example_verdict(c.class),
            if crate::examples::only_late(c.class) {
                " (access log and metrics only)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.token,
            c.layer.as_str(),
            c.origin.as_str(),
            c.side.as_str(),
            signals,
            if c.proxy_status.is_empty() {
                "—"
            } else {
                c.proxy_status
            },
            c.class.docs().meaning,
            example,
            c.class.docs().next_step
        );
    }
    out.push_str("\n| hint | meaning |\n|---|---|\n");
    for ((_, token), meaning) in HINTS.iter().zip(HINT_MEANINGS) {
        let _ = writeln!(out, "| `{token}` | {meaning} |");
    }
    out
}

/// The rule table in evaluation order.
pub fn rules_markdown() -> String {
    let mut out = String::from("| # | when | class |\n|---|---|---|\n");
    for (i, r) in RULES.iter().enumerate() {
        let when = r
            .when
            .iter()
            .map(|c| c.describe())
            .collect::<Vec<_>>()
            .join(" + ");
        let _ = writeln!(out, "| {} | {} | `{}` |", i + 1, when, r.class.as_str());
    }
    out
}

pub fn config_markdown() -> String {
    let mut out = String::from("| key | default | meaning |\n|---|---|---|\n");
    for k in &KEYS {
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {} |",
            k.name,
            k.default_shown(),
            k.meaning
        );
    }
    out
}

pub fn metrics_markdown() -> String {
    let mut out = String::from("| metric | kind | labels | meaning |\n|---|---|---|---|\n");
    for m in metrics::METRICS {
        let labels = if m.labels.is_empty() {
            "—".to_string()
        } else {
            m.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {labels} | {} |",
            m.name,
            m.kind.as_str(),
            m.help
        );
    }
    let headers = HOP_HEADERS
        .iter()
        .map(|h| format!("`{}`", h.1))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(out, "\n`header` takes the values {headers}.\n");
    out.push_str("Envoy `stats_config.stats_tags` (Istio: `extraStatTags` with the same names):\n\n```yaml\nstats_tags:\n");
    for (name, regex) in metrics::stats_tags() {
        let _ = writeln!(out, "- tag_name: {name}\n  regex: '{regex}'");
    }
    out.push_str("```\n");
    out
}

/// What the plugin reads from Envoy (SECURITY.md), from `attributes::ATTRIBUTES`.
pub fn attributes_markdown() -> String {
    let mut out =
        String::from("| attribute | type | read at | cost | why |\n|---|---|---|---|---|\n");
    for a in ATTRIBUTES {
        let when = a
            .when
            .iter()
            .map(|w| w.describe())
            .collect::<Vec<_>>()
            .join(", ");
        let kind = match a.kind {
            Kind::Int => "integer",
            Kind::Text => "text",
        };
        let _ = writeln!(
            out,
            "| `{}` | {kind} | {when} | {} | {} |",
            a.name(),
            a.cost.describe(),
            a.why
        );
    }
    out
}

pub fn flags_markdown() -> String {
    let mut out = String::from("| bit | flag | long name |\n|---|---|---|\n");
    for (i, (_, short, long)) in FLAGS.iter().enumerate() {
        let _ = writeln!(out, "| {i} | `{short}` | {long} |");
    }
    out
}

/// docs/taxonomy.md, whole.
pub fn taxonomy_page() -> String {
    format!(
        "# meshtriage taxonomy\n\n<!-- Generated from filter/core/src/taxonomy.rs by build.rs; \
         `make docs` rewrites it, `make test` checks it. Do not edit by hand. -->\n\n\
         Every failing request gets exactly one class. The rules below are evaluated in order; \
         the first whose conditions all hold decides. Signals: Envoy response flags (short names), \
         `response.code_details` (\"details\"), `upstream.transport_failure_reason`, the response \
         headers and, at the end of the stream, what happened after the headers. The example \
         verdicts are generated from filter/core/src/examples.rs (one representative exchange per \
         class, `detail` omitted); docs/scenarios.md shows each class produced by a real Envoy.\n\n\
         ## Classes\n\n{}\n\
         ## Replies of other proxies (origin `upstream_proxy`)\n\n\
         An error page generated by a proxy or load balancer further upstream, not by the app \
         behind it. The headers make a row likely: the verdict header names the row's class \
         with origin `upstream_proxy` and the Boolean parameter `inferred` (an app behind that \
         gateway could send the same headers). The body, read as it passes, makes it certain in \
         the access log and the metrics, or gives the verdict back to the app. A 500, \
         nginx's 503 page (also what an app's `return 503` looks like) and Apache's generic 503 \
         page (mod_proxy's answer for a refused backend, but also what an app's 503 becomes \
         under `ProxyErrorOverride On`) never match. `Via` is not read: a proxy adds it to the \
         app's own replies too (Varnish: `Via: 1.1 varnish (Varnish/7.1)` on an app's 503), so \
         it names the proxies a reply passed, not the one that wrote it; `Server` tells them \
         apart. Squid's rows are certain from the headers (no `inferred`): Squid writes \
         `X-Squid-Error` on its own error pages only. Samples captured from nginx 1.22, \
         HAProxy 2.6, Apache httpd 2.4, Varnish 7.1 and Squid 5.7 (Debian 12) and Envoy 1.40 \
         (tests/e2e_real_software.rs).\n\n{}\n\
         ## Rules in evaluation order\n\n{}\n\
         ## Connection rules (network filter) in evaluation order\n\n\
         The network filter (root id `meshtriage-tcp`) classifies each connection when it ends, \
         from the connection's response flags, `upstream.transport_failure_reason`, \
         `connection.termination_details`, `connection.transport_failure_reason`, who closed the \
         downstream connection, whether the upstream sent FIN, and the time without data before \
         the close. Every connection failure is layer `l4` (`unclassified`: `unknown`). A \
         connection no rule matches ended normally. See docs/tcp.md.\n\n{}\n\
         ## Envoy 1.40 response flags\n\n{}",
        taxonomy_markdown(),
        crate::gateway_replies::markdown(),
        rules_markdown(),
        tcp_rules_markdown(),
        flags_markdown()
    )
}

/// docs/reference.md: configuration and metrics.
pub fn reference_page() -> String {
    format!(
        "# meshtriage configuration and metrics\n\n<!-- Generated from filter/core/src/config.rs and \
         metrics.rs by build.rs; `make docs` rewrites it, `make test` checks it. -->\n\n\
         ## Configuration (JSON, every key optional)\n\n{}\n\
         Unknown keys and wrong types are configuration errors: one error log line naming every \
         bad key (the first 16, then how many more), `meshtriage_config_errors_total` + 1, and the plugin keeps running on the last good \
         configuration (or the defaults). It never refuses a configuration.\n\n\
         ## Metrics\n\n{}",
        config_markdown(),
        metrics_markdown()
    )
}
