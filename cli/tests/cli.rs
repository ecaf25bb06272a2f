#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code
//! The `meshtriage` binary as a user runs it, on real Envoy 1.40 output recorded by
//! tests/e2e_logs.rs (tests/fixtures): exit codes, rows, the summary, bad lines, gzip,
//! custom formats, `--follow`.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_meshtriage");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_rows(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn explain_reads_every_local_reply_body_envoy_sent() {
    let text = std::fs::read_to_string(fixture("local-replies.tsv")).unwrap();
    let mut n = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let [path, class, body] = line.splitn(3, '\t').collect::<Vec<_>>()[..] else {
            panic!("bad fixture line {line:?}")
        };
        let o = run(&["explain", "--format", "json", body]);
        assert_eq!(o.status.code(), Some(0), "{path}: {}", stderr(&o));
        let e: Value = serde_json::from_str(&stdout(&o)).unwrap();
        let v = &e["verdicts"][0];
        let also: Vec<&str> = v["could_also_be"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["class"].as_str())
            .collect();
        assert!(
            v["class"] == class || also.contains(&class),
            "{path}: {body:?} → {v}, plugin said {class}"
        );
        n += 1;
    }
    assert!(n >= 20);
}

#[test]
fn explain_flags_details_proxy_status_verdicts_and_tls() {
    let class = |args: &[&str]| -> String {
        let mut all = vec!["explain", "--format", "json"];
        all.extend_from_slice(args);
        let o = run(&all);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        let e: Value = serde_json::from_str(&stdout(&o)).unwrap();
        let v = e["verdicts"].as_array().unwrap().last().unwrap().clone();
        format!(
            "{} {}",
            v["layer"].as_str().unwrap(),
            v["class"].as_str().unwrap()
        )
    };
    assert_eq!(class(&["UF,URX"]), "l4 connect_refused");
    assert_eq!(
        class(&["UpstreamRetryLimitExceeded,UpstreamConnectionFailure"]),
        "l4 connect_refused"
    );
    assert_eq!(class(&["UC"]), "l4 connection_terminated");
    assert_eq!(
        class(&["503", "UF", "upstream_reset_before_response_started{remote_connection_failure|TLS_error:|268436496:SSL_routines:OPENSSL_internal:SSLV3_ALERT_HANDSHAKE_FAILURE:TLS_error_end}"]),
        "l4 tls_handshake_rejected"
    );
    assert_eq!(
        class(&["TLS_error:|268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:TLS_error_end"]),
        "l4 tls_certificate_error"
    );
    assert_eq!(
        class(&[
            r#"out; error=connection_timeout; details="upstream_reset_before_response_started{connection_timeout}; UF""#
        ]),
        "l4 connect_timeout"
    );
    assert_eq!(
        class(&[
            r#"l7;class=app_error;origin=app;side=upstream;hop="pay.shop", l4;class=connection_terminated;origin=upstream_proxy;side=upstream"#
        ]),
        "l4 connection_terminated"
    );
    assert_eq!(
        class(&["jwt_authn_access_denied{Jwt_is_missing}"]),
        "l7 authn_failed"
    );
    assert_eq!(
        class(&["200", "UT", "response_timeout"]),
        "l4 transfer_stalled"
    );
    // An unquoted body: the words together.
    assert_eq!(
        class(&["no", "healthy", "upstream"]),
        "l4 no_healthy_upstream"
    );
}

/// An `inferred` verdict header is explained as likely, with where the settled one is.
#[test]
fn explain_says_an_inferred_verdict_is_not_certain() {
    let header = r#"l7;class=grpc_deadline_exceeded;origin=client;side=upstream;inferred;grpc=4;hop="pay.shop""#;
    let o = run(&["explain", header]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("l7 grpc_deadline_exceeded"), "{text}");
    assert!(
        text.contains("marked `inferred`: likely, not certain"),
        "{text}"
    );
    let certain = stdout(&run(&["explain", &header.replace(";inferred", "")]));
    assert!(!certain.contains("inferred"), "{certain}");
}

#[test]
fn explain_says_what_it_did_not_understand() {
    let o = run(&["explain", "UF", "bananas"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not understood: \"bananas\""),
        "{}",
        stderr(&o)
    );
    let o = run(&["explain", "via_upstream", "200"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("not failing"), "{}", stdout(&o));
    let help = stdout(&run(&["explain", "--help"]));
    assert!(help.contains("Examples:") && help.contains("meshtriage explain UF,URX"));
}

/// The plugin's verdict and the fields' verdict of every failing line, by line number.
fn verdicts(file: &Path, which: &str) -> Vec<(u64, String)> {
    let o = run(&[
        "logs",
        "--format",
        "json",
        "--verdict-from",
        which,
        file.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    json_rows(&o)
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                format!(
                    "{} {} {} {}",
                    r["layer"], r["class"], r["origin"], r["side"]
                ),
            )
        })
        .collect()
}

#[test]
fn istio_text_and_json_lines_give_the_same_rows() {
    for which in ["fields", "plugin"] {
        let text = verdicts(&fixture("istio-text.log"), which);
        let json = verdicts(&fixture("istio-json.log"), which);
        assert_eq!(text, json, "{which}");
        assert!(text.len() >= 36, "{which}: {}", text.len());
    }
    let o = run(&[
        "logs",
        "--color",
        "never",
        fixture("istio-text.log").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    let s = stdout(&o);
    for want in [
        "47 line(s) read, 40 failing request(s)",
        "by layer:",
        "by upstream cluster",
        "by authority",
        "by time",
        "l4 connect_refused",
        "examples:",
    ] {
        assert!(s.contains(want), "no {want:?} in\n{s}");
    }
    assert!(!s.contains('\x1b'), "colour when not on a terminal");
}

#[test]
fn bad_lines_are_counted_shown_and_the_run_goes_on() {
    let dir = scratch("bad-lines");
    let good = std::fs::read_to_string(fixture("istio-text.log")).unwrap();
    let mut mixed = String::new();
    for (i, l) in good.lines().enumerate() {
        mixed.push_str(l);
        mixed.push('\n');
        if i == 2 {
            mixed.push_str("this is not an access log line\n");
        }
    }
    mixed.push_str("[2026-12-07T16:02:31.400Z] \"GET /cut HTTP/1.1\" 5");
    let file = dir.join("mixed.log");
    std::fs::write(&file, mixed).unwrap();
    let o = run(&["logs", "--color", "never", file.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "exit 1 when lines were not parsed"
    );
    let s = stdout(&o);
    assert!(s.contains("40 failing request(s)"), "{s}");
    assert!(s.contains("not parsed: 2 line(s)"), "{s}");
    assert!(
        s.contains("mixed.log:4: \"this is not an access log line\""),
        "{s}"
    );
    assert!(
        s.contains("mixed.log:49: \"[2026-12-07T16:02:31.400Z] \\\"GET /cut HTTP/1.1\\\" 5\""),
        "{s}"
    );
    let o = run(&["logs", "--format", "json", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json_rows(&o).len(), 40);
    assert!(stderr(&o).contains("mixed.log:4:"), "{}", stderr(&o));
    let o = run(&["logs", "/no/such/file"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn gzip_csv_and_a_custom_format() {
    let dir = scratch("gzip");
    let gz = dir.join("istio.log.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(&std::fs::read(fixture("istio-text.log")).unwrap())
        .unwrap();
    enc.finish().unwrap();
    assert_eq!(
        verdicts(&gz, "fields"),
        verdicts(&fixture("istio-text.log"), "fields")
    );
    let o = run(&["logs", "--format", "csv", gz.to_str().unwrap()]);
    let csv = stdout(&o);
    assert!(csv.starts_with(
        "file,line,time,status,flags,details,cluster,authority,path,layer,class,origin,side"
    ));
    assert_eq!(csv.lines().count(), 41);

    // A custom format: fields in another order, no details; Envoy's default format too.
    let custom = dir.join("custom.log");
    std::fs::write(
        &custom,
        "2026-12-07T16:00:00Z c_refused 503 UF\n2026-12-07T16:00:01Z c_app 200 -\n",
    )
    .unwrap();
    let o = run(&[
        "logs",
        "--format",
        "json",
        "--format-string",
        "%START_TIME% %UPSTREAM_CLUSTER% %RESPONSE_CODE% %RESPONSE_FLAGS%\\n",
        custom.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows = json_rows(&o);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["class"], "connect_refused");
    assert_eq!(rows[0]["cluster"], "c_refused");
    let envoy = dir.join("envoy.log");
    std::fs::write(
        &envoy,
        "[2026-12-07T16:00:00.000Z] \"GET /x HTTP/1.1\" 503 UC 0 95 1 - \"-\" \"curl/8\" \"id-1\" \"shop.local\" \"10.0.0.1:80\"\n\
         [2026-12-07T16:00:00.000Z] \"GET /y HTTP/1.1\" 503 - 0 11 1 1 \"-\" \"curl/8\" \"id-2\" \"shop.local\" \"10.0.0.1:80\"\n\
         [2026-12-07T16:00:00.000Z] \"GET /z HTTP/1.1\" 200 - 0 11 1 1 \"-\" \"curl/8\" \"id-3\" \"shop.local\" \"10.0.0.1:80\"\n",
    )
    .unwrap();
    let o = run(&["logs", "--format", "json", envoy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let classes: Vec<String> = json_rows(&o)
        .iter()
        .map(|r| r["class"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(classes, ["connection_terminated", "app_error"]);
}

#[test]
fn follow_prints_each_failure_as_it_arrives() {
    let mut child = Command::new(BIN)
        .args(["logs", "--follow", "--color", "never", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let lines = std::fs::read_to_string(fixture("istio-text.log")).unwrap();
    let uf = lines.lines().find(|l| l.contains("\"GET /uf ")).unwrap();
    writeln!(stdin, "{uf}").unwrap();
    stdin.flush().unwrap();
    // The row comes while stdin is still open.
    let mut row = String::new();
    out.read_line(&mut row).unwrap();
    assert!(row.contains("l4 connect_refused"), "{row}");
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(rest.contains("1 failing request(s)"), "{rest}");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
