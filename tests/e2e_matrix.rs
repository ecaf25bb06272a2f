//! The scenario matrix: every failure Envoy 1.40 produces on this machine, sent once with an
//! HTTP/1.1 client and once with an HTTP/2 (h2c) client, each checked for the client's status,
//! the verdict header (or its absence for late failures), the access-log verdict and the
//! failure metric. Envoy's own `Proxy-Status` for the same request is recorded next to the
//! verdict in `docs/scenarios.md` (`MESHTRIAGE_BLESS=1` rewrites it; otherwise it is checked).

use meshtriage_core::Class;
use meshtriage_envoy_test::bed::{Bed, BedOptions};
use meshtriage_envoy_test::client::{self, Response};
use meshtriage_envoy_test::scenario::{verify, Expect, Observed};
use std::fmt::Write;

const L4: &str = "l4";
const L7: &str = "l7";

/// How a scenario's request is sent.
#[derive(Clone, Copy)]
enum Send {
    /// A GET of the path.
    Get,
    /// A GET of the path after a first one that uses the policy up (rate limit).
    AfterOne,
    /// A GET while two slow requests hold the circuit breaker's connection and pending slot.
    Overflow,
    /// The client goes away once the request reached the upstream (HTTP/1.1: close;
    /// HTTP/2: `RST_STREAM(CANCEL)`).
    GiveUp,
    /// A request with both Content-Length and chunked framing, which Envoy's codec rejects
    /// (HTTP/1.1 only); found in the access log by its details.
    ClTeRequest,
}

struct Scenario {
    name: &'static str,
    path: &'static str,
    inbound: bool,
    send: Send,
    h1: Expect,
    /// `None`: not reachable with an HTTP/2 client.
    h2: Option<Expect>,
}

const fn s(name: &'static str, path: &'static str, e: Expect) -> Scenario {
    Scenario {
        name,
        path,
        inbound: false,
        send: Send::Get,
        h1: e,
        h2: Some(e),
    }
}

const fn up(status: u16, layer: &'static str, class: &'static str) -> Expect {
    Expect::new(status, layer, class, "proxy", "upstream")
}

const fn local(status: u16, class: &'static str) -> Expect {
    Expect::new(status, L7, class, "proxy", "local")
}

const fn app(status: u16, class: &'static str) -> Expect {
    Expect::new(status, L7, class, "app", "upstream")
}

const SCENARIOS: &[Scenario] = &[
    // L4: the connection
    s(
        "connect refused (nothing listens)",
        "/uf",
        up(503, L4, "connect_refused"),
    ),
    s(
        "connect timeout (backlog-full listener)",
        "/uct",
        up(503, L4, "connect_timeout"),
    ),
    s(
        "upstream FIN before response",
        "/app/close",
        up(503, L4, "connection_terminated"),
    ),
    s(
        "upstream RST before response",
        "/app/rst",
        up(503, L4, "connection_terminated"),
    ),
    Scenario {
        inbound: true,
        ..s(
            "inbound: local app closes without answering",
            "/app/close",
            up(503, L4, "connection_terminated").hints(&["app_closed_connection"]),
        )
    },
    s(
        "retries exhausted on a refused port",
        "/retry-uf",
        up(503, L4, "connect_refused").hints(&["retries_exhausted"]),
    ),
    s(
        "no healthy upstream (no endpoints)",
        "/uh",
        up(503, L4, "no_healthy_upstream"),
    ),
    s(
        "TLS: certificate from an unknown CA",
        "/tls/badca",
        up(503, L4, "tls_certificate_error"),
    ),
    s(
        "TLS: SAN mismatch",
        "/tls/badsan",
        up(503, L4, "tls_certificate_error"),
    ),
    s(
        "TLS: server requires a client certificate (mTLS)",
        "/tls/nocert",
        up(503, L4, "tls_handshake_rejected"),
    ),
    s(
        "TLS cluster, plaintext server",
        "/tls/plain",
        up(503, L4, "tls_protocol_error"),
    ),
    Scenario {
        ..s(
            "RST mid-body with Content-Length",
            "/app/midbody-rst",
            Expect::new(200, L4, "response_truncated", "app", "upstream").late(),
        )
    },
    s(
        "response stalls mid-body until the route timeout",
        "/app/stall-body",
        Expect::new(200, L4, "transfer_stalled", "proxy", "upstream").late(),
    ),
    Scenario {
        send: Send::GiveUp,
        ..s(
            "client disconnects before the response",
            // The client gives up as soon as the request is at the upstream; the upstream
            // would answer after 4 s (the route allows 5 s): 4 s for a loaded machine to
            // schedule the give-up.
            "/cb/slow/4000",
            Expect::new(0, L4, "downstream_disconnect", "client", "downstream").no_response(),
        )
    },
    // L7: protocol
    s(
        "HTTP/2 upstream RST_STREAM before headers",
        "/h2rst/x",
        up(503, L7, "stream_reset"),
    ),
    s(
        "HTTP/2 upstream REFUSED_STREAM",
        "/h2refused/x",
        up(503, L7, "stream_reset"),
    ),
    s(
        "half a header section, then close",
        "/app/half-headers",
        up(502, L7, "upstream_protocol_error"),
    ),
    s(
        "Content-Length and chunked",
        "/app/cl-te",
        up(502, L7, "upstream_protocol_error"),
    ),
    s(
        "duplicate Content-Length",
        "/app/dup-cl",
        up(502, L7, "upstream_protocol_error"),
    ),
    s(
        "duplicate Transfer-Encoding",
        "/app/dup-te",
        up(502, L7, "upstream_protocol_error"),
    ),
    s(
        "HTTP/2 cluster, HTTP/1-only server",
        "/h2/ok",
        up(502, L7, "upstream_protocol_error"),
    ),
    Scenario {
        h2: Some(
            Expect::new(0, L7, "response_truncated", "app", "upstream")
                .no_response()
                .hints(&["broken_chunked_framing", "hop_by_hop_headers"]),
        ),
        ..s(
            "copied Transfer-Encoding: chunked, plain body",
            "/app/copied-te",
            Expect::new(200, L7, "response_truncated", "app", "upstream")
                .late()
                .hints(&["broken_chunked_framing", "hop_by_hop_headers"]),
        )
    },
    Scenario {
        send: Send::ClTeRequest,
        h2: None,
        ..s(
            "downstream codec error (request with CL + TE)",
            "/app/ok",
            Expect::new(400, L7, "downstream_protocol_error", "client", "downstream").late(),
        )
    },
    // L7: timeouts and limits. Each upstream answers at 3 s (2.5 s for per-try): at least 2 s
    // after the timer should fire, so a machine too loaded to run Envoy's timer for 2 s is
    // the only way the answer could win the race.
    s(
        "route timeout (1 s)",
        "/app/slow/3000",
        up(504, L7, "upstream_timeout"),
    ),
    s(
        "per-try timeout (0.3 s, 1 retry)",
        "/pertry/slow/2500",
        up(504, L7, "upstream_timeout").hints(&["retries_exhausted"]),
    ),
    s(
        "stream idle timeout (0.5 s)",
        "/si/slow/3000",
        up(504, L7, "idle_timeout"),
    ),
    s(
        "max stream duration (0.5 s)",
        "/umsdr/slow/3000",
        up(504, L7, "max_duration_reached"),
    ),
    Scenario {
        send: Send::Overflow,
        ..s(
            "circuit breaker overflow",
            "/cb/slow/10",
            up(503, L7, "circuit_breaker_open"),
        )
    },
    // L7: this proxy's configuration and policy
    s("cluster not found", "/nc", local(503, "cluster_not_found")),
    s(
        "route not found",
        "/no/route/here",
        local(404, "route_not_found"),
    ),
    s("RBAC deny", "/deny", local(403, "authz_denied")),
    s(
        "ext_authz deny (authz service answers 403)",
        "/extauthz/status/403",
        local(403, "authz_denied"),
    ),
    s(
        "JWT missing (jwt_authn)",
        "/jwt",
        local(401, "authn_failed"),
    ),
    Scenario {
        send: Send::AfterOne,
        ..s("local rate limit", "/rl", local(429, "rate_limited"))
    },
    s(
        "fault injection abort",
        "/fault",
        local(503, "fault_injected"),
    ),
    s("drop_overloads 100 %", "/drop", local(503, "load_shed")),
    Scenario {
        send: Send::AfterOne,
        ..s(
            "keep-alive race: upstream closes a reused connection (real nginx: see below)",
            "/race/close-reused",
            up(503, L4, "connection_terminated").hints(&["reused_connection?"]),
        )
    },
    // Another proxy's error page (captures replayed by the app; tests/e2e_real_software.rs
    // runs the real nginx, HAProxy, Apache httpd, Varnish and Squid)
    s(
        "nginx in front of a dead app: its 502 page",
        "/app/gateway-page/0",
        Expect::new(502, L7, "gateway_error", "upstream_proxy", "upstream"),
    ),
    s(
        "HAProxy with no server left: its 503 page",
        "/app/gateway-page/3",
        Expect::new(503, L4, "no_healthy_upstream", "upstream_proxy", "upstream"),
    ),
    s(
        "Squid in front of a hung app: its 504 page (X-Squid-Error)",
        "/app/gateway-page/8",
        Expect::new(504, L7, "upstream_timeout", "upstream_proxy", "upstream"),
    ),
    // L7: the application
    s("app answers 503", "/app/status/503", app(503, "app_error")),
    s(
        "retries exhausted on app 503s",
        "/retry/status/503",
        app(503, "app_error").hints(&["retries_exhausted"]),
    ),
    s(
        "gRPC UNAVAILABLE, trailers-only",
        "/app/grpc-only/14",
        app(200, "app_grpc_error"),
    ),
    s(
        "gRPC INTERNAL in trailers",
        "/grpc/grpc-trailers/13",
        app(200, "app_grpc_error").late(),
    ),
];

/// Classes no scenario here produces, and why.
const NOT_REPRODUCED: &[(&str, &str)] = &[
    ("dns_resolution_failed", "needs a resolver that fails; the machine has no DNS to break (STRICT_DNS to an unknown name gives UH, not DF)"),
    ("filter_failure", "needs a crashing wasm VM or a missing filter config; the plugin does not crash on purpose"),
    ("unclassified", "the fallback: every failure Envoy 1.40 produced here has a rule"),
    ("grpc_deadline_exceeded", "needs a gRPC client that sets a deadline: tests/e2e_real_software.rs runs a grpcio client and server through Envoy, in both orders (the client cancels first, the server answers DEADLINE_EXCEEDED first: the header presumes the deadline, `inferred`, and the log settles it against the request's `grpc-timeout`, giving a status 4 well before the deadline back to the app)"),
    ("downstream_tls_error", "a connection-level class of the network filter (HTTP never starts): see tests/e2e_tcp.rs"),
    ("connection_policy_closed", "a connection-level class of the network filter: see tests/e2e_tcp.rs"),
];

#[derive(Clone, Copy, PartialEq, Debug)]
enum Proto {
    H1,
    H2,
}

impl Proto {
    fn as_str(self) -> &'static str {
        match self {
            Proto::H1 => "h1",
            Proto::H2 => "h2",
        }
    }
}

fn get(proto: Proto, port: u16, path: &str, tag: &str) -> Option<Response> {
    match proto {
        Proto::H1 => client::request(port, "GET", path, &[("x-scn", tag)], b"").ok(),
        Proto::H2 => client::request_h2(port, path, &[("x-scn", tag)]),
    }
}

/// One run of one scenario with one protocol.
struct Run {
    index: usize,
    proto: Proto,
    observed: Observed,
}

fn run(bed: &Bed, proto: Proto, index: usize, sc: &Scenario, e: &Expect) -> Run {
    let (port, dir) = if sc.inbound {
        (bed.inbound_port, "inbound")
    } else {
        (bed.port, "outbound")
    };
    let tag = format!(
        "{}#{}{}",
        sc.path,
        proto.as_str(),
        if sc.inbound { "-in" } else { "" }
    );
    let mut needle = format!("scn={tag} ");
    let send = || -> Option<Response> {
        match sc.send {
            Send::Get | Send::AfterOne => get(proto, port, sc.path, &tag),
            Send::Overflow => get(proto, port, sc.path, &tag),
            Send::GiveUp => {
                let active = || bed.envoy.stat("cluster.c_cb.upstream_rq_active") >= 1.0;
                let reached = match proto {
                    Proto::H1 => {
                        client::request_then_close(port, sc.path, &[("x-scn", &tag)], &active)
                    }
                    Proto::H2 => {
                        client::h2_request_then_cancel(port, sc.path, &[("x-scn", &tag)], &active)
                    }
                };
                assert!(
                    matches!(reached, Ok(true)),
                    "the request never reached the upstream: {reached:?}"
                );
                None
            }
            Send::ClTeRequest => {
                let raw = format!(
                    "POST {} HTTP/1.1\r\nhost: test.local\r\nx-scn: {tag}\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                    sc.path
                );
                client::send_raw(port, raw.as_bytes())
                    .ok()
                    .and_then(|b| client::parse(&b))
            }
        }
    };
    if let Send::ClTeRequest = sc.send {
        // The codec rejects the request before its headers exist: no x-scn in the access log.
        needle = "details=http1.content_length_and_chunked_not_allowed".into();
    }
    if let Send::AfterOne = sc.send {
        let _ = get(proto, port, sc.path, &format!("{tag}-first"));
        let _ = bed.envoy.wait_access_log(&format!("scn={tag}-first "));
    }
    let observed = if let Send::Overflow = sc.send {
        std::thread::scope(|scope| {
            let holders = hold_circuit_breaker(bed, port, scope);
            let o = verify(bed, dir, &needle, send, e);
            for h in holders {
                let _ = h.join();
            }
            o
        })
    } else {
        verify(bed, dir, &needle, send, e)
    };
    Run {
        index,
        proto,
        observed,
    }
}

/// Two slow requests on the circuit-breaker cluster (1 connection, 1 pending): the first holds
/// the connection, the second the pending slot (or overflows already). Returns once they do.
/// Each holds for 3 s: the overflowing request must be sent while the first is still at the
/// upstream, which leaves a loaded machine 3 s for the stats polls and the send.
fn hold_circuit_breaker<'s>(
    bed: &'s Bed,
    port: u16,
    scope: &'s std::thread::Scope<'s, '_>,
) -> Vec<std::thread::ScopedJoinHandle<'s, ()>> {
    let stat = |n: &str| bed.envoy.stat(&format!("cluster.c_cb.{n}"));
    let wait = |cond: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !cond() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let holder = move || {
        let _ = client::request(port, "GET", "/cb/slow/3000", &[("x-scn", "cb-holder")], b"");
    };
    let first = scope.spawn(holder);
    wait(&|| stat("upstream_rq_active") >= 1.0);
    let overflows = stat("upstream_rq_pending_overflow");
    let second = scope.spawn(holder);
    wait(&|| {
        stat("upstream_rq_pending_active") >= 1.0
            || stat("upstream_rq_pending_overflow") > overflows
    });
    vec![first, second]
}

fn run_all(proto: Proto) -> Vec<Run> {
    let bed = Bed::start(&format!("matrix-{}", proto.as_str()), BedOptions::default());
    let mut runs = Vec::new();
    let only = std::env::var("MATRIX_ONLY").unwrap_or_default();
    for (i, sc) in SCENARIOS.iter().enumerate() {
        if !sc.name.contains(&only) {
            continue;
        }
        let e = match proto {
            Proto::H1 => Some(&sc.h1),
            Proto::H2 => sc.h2.as_ref(),
        };
        if let Some(e) = e {
            let mut r = run(&bed, proto, i, sc, e);
            if !r.observed.problems.is_empty() {
                r.observed.problems.push(bed.envoy.diagnostics());
            }
            runs.push(r);
        }
    }
    runs
}

/// The `error=` type of an Envoy `Proxy-Status` value.
fn ps_error(ps: Option<&str>) -> String {
    ps.and_then(|p| p.split("; ").find_map(|x| x.strip_prefix("error=")))
        .map_or_else(|| "—".to_string(), |e| format!("`{e}`"))
}

fn client_saw(r: Option<&Run>) -> String {
    match r {
        None => "n/a".into(),
        Some(r) => match &r.observed.response {
            None => "no response".into(),
            Some(resp) if resp.truncated => format!("{} (cut)", resp.status),
            Some(resp) => resp.status.to_string(),
        },
    }
}

fn page(runs: &[Run]) -> String {
    let mut out = String::from(
        "# Scenario matrix: meshtriage next to Envoy's own Proxy-Status\n\n\
         <!-- Generated by tests/e2e_matrix.rs from a run against Envoy 1.40 \
         (`MESHTRIAGE_BLESS=1 cargo test --test e2e_matrix` rewrites it; `make test` checks it). -->\n\n\
         Every row is a real request through Envoy 1.40 with the plugin, sent once with an HTTP/1.1 \
         client and once with an HTTP/2 (h2c) client. *Client saw* is the status each client got \
         (`cut`: headers, then the connection closed; `no response`: the client went away or the \
         stream was reset before any header). *Where* is where the verdict is visible: the \
         `x-meshtriage` response header, or only the access log (`%FILTER_STATE(wasm.meshtriage:PLAIN)%`) \
         and the `meshtriage_failures_total` metric for failures known after the headers. \
         *Envoy Proxy-Status* is the error type Envoy's HCM `proxy_status_config` wrote for the same \
         request (`—`: none).\n\n\
         | scenario | request | client saw (HTTP/1.1 / h2c) | meshtriage verdict | where | Envoy Proxy-Status | next step |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for (i, sc) in SCENARIOS.iter().enumerate() {
        let h1 = runs.iter().find(|r| r.index == i && r.proto == Proto::H1);
        let h2 = runs.iter().find(|r| r.index == i && r.proto == Proto::H2);
        let e = &sc.h1;
        let mut verdict = format!(
            "`{}` `{}` origin=`{}` side=`{}`",
            e.layer, e.class, e.origin, e.side
        );
        if !e.hints.is_empty() {
            let hints: Vec<&str> = e.hints.iter().map(|h| h.trim_end_matches('?')).collect();
            let _ = write!(verdict, " hints=`{}`", hints.join(" "));
        }
        let where_ = if e.in_header {
            "header"
        } else {
            "log + metric"
        };
        let ps = ps_error(h1.and_then(|r| r.observed.envoy_proxy_status()));
        let next = Class::parse(e.class).map_or("", |c| c.docs().next_step);
        let request = format!(
            "`{}`{}",
            sc.path,
            match sc.send {
                Send::Get => "",
                Send::AfterOne => " (2nd request)",
                Send::Overflow => " (while 2 requests hold the breaker)",
                Send::GiveUp => " (client leaves)",
                Send::ClTeRequest => " (POST with CL + TE)",
            }
        );
        let request = if sc.inbound {
            format!("{request} inbound")
        } else {
            request
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} / {} | {} | {} | {} | {} |",
            sc.name,
            request,
            client_saw(h1),
            client_saw(h2),
            verdict,
            where_,
            ps,
            next
        );
    }
    out.push_str("\nClasses no scenario produces on this machine:\n\n");
    for (class, why) in NOT_REPRODUCED {
        let _ = writeln!(out, "- `{class}`: {why}.");
    }
    out.push_str(
        "\nNot reachable with an h2c client: the HTTP/1.1 codec error. An HTTP/2 codec error \
         (a HEADERS frame with an upper-case header name) is logged by Envoy 1.40 as \
         `code=0 flags=DPE details=http2.invalid.header.field`, but that access-log line carries no \
         meshtriage filter state (whether the plugin saw that stream at all was not investigated) (observed with `client::h2_raw_request`).\n",
    );
    out.push_str(
        "\nWhere meshtriage is more precise than Envoy's Proxy-Status: connect timeouts and every \
         TLS failure are `connection_refused` for Envoy (one flag, UF) but distinct classes here; \
         ext_authz denials are `connection_refused` for Envoy; RBAC and JWT denials, app 5xx and \
         gRPC errors get no Proxy-Status at all; late failures (truncation, client gone) cannot \
         carry any header, and meshtriage still counts and logs them with their class.\n",
    );
    out.push_str(
        "\nAnother proxy's error page (the nginx, HAProxy and Squid rows replay pages captured \
         from the real software; tests/e2e_real_software.rs runs nginx, HAProxy, Apache httpd, \
         Varnish, Squid, a plain Envoy hop, \
         `openssl s_server` and grpcio for real): Envoy sees an app's answer and writes no \
         Proxy-Status. meshtriage's header verdict carries `inferred` (the headers make the \
         gateway's page likely); the access log and the metric carry the certain verdict (the \
         body matched the signature table in docs/taxonomy.md). Squid's `X-Squid-Error` makes \
         its page certain in the header already.\n\n\
         The keep-alive race row's upstream closes the reused connection on purpose; \
         tests/e2e_real_software.rs also runs it with real nginx (`keepalive_timeout 1s`) in the \
         L4 lab, which drops nginx's FIN as a lossy network would: Envoy reuses the connection \
         it still thinks idle and meets nginx's RST (503, `UC`, \
         `upstream_reset_before_response_started{connection_termination}`, Proxy-Status \
         `connection_terminated`), and meshtriage says `connection_terminated` with \
         `reused_connection`. The hint rests on how fast the pool handed the connection over (a \
         reuse is synchronous, mostly under 50 µs; a new connection took 68 µs or more): when a busy \
         machine preempts Envoy at that moment the hint is missing, and it is never added to a \
         new connection (filter/core/src/reused_connection.rs has the measurements).\n",
    );
    out
}

#[test]
fn every_class_has_a_scenario_or_a_reason() {
    for class in Class::all().map(Class::as_str) {
        let covered = SCENARIOS.iter().any(|s| s.h1.class == class);
        let excused = NOT_REPRODUCED.iter().any(|(c, _)| *c == class);
        assert!(
            covered != excused,
            "{class}: covered={covered} excused={excused}"
        );
    }
}

#[test]
fn every_reproducible_failure_gets_its_verdict_over_http1_and_http2() {
    let (h1, h2) = std::thread::scope(|scope| {
        let h1 = scope.spawn(|| run_all(Proto::H1));
        let h2 = scope.spawn(|| run_all(Proto::H2));
        (h1.join().unwrap(), h2.join().unwrap())
    });
    let runs: Vec<Run> = h1.into_iter().chain(h2).collect();
    let failures: Vec<String> = runs
        .iter()
        .filter(|r| !r.observed.problems.is_empty())
        .map(|r| {
            format!(
                "== {} [{}] {}\n  {}",
                SCENARIOS[r.index].name,
                r.proto.as_str(),
                SCENARIOS[r.index].path,
                r.observed.problems.join("\n  ")
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} scenario run(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let doc = page(&runs);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/scenarios.md");
    if std::env::var_os("MESHTRIAGE_BLESS").is_some() {
        std::fs::write(&path, &doc).unwrap();
    } else {
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == doc,
            "docs/scenarios.md is stale: run `MESHTRIAGE_BLESS=1 cargo test --test e2e_matrix`\n---- generated ----\n{doc}"
        );
    }
}
