//! `meshtriage`: the plugin's rules on the command line.

use clap::{Parser, Subcommand};
use meshtriage_cli::explain;
use meshtriage_cli::logs::{self, Bucket, Output, VerdictFrom};
use meshtriage_cli::style::{ColorChoice, Style};
use std::io::IsTerminal;

#[derive(Parser)]
#[command(
    name = "meshtriage",
    version,
    about = "At which layer did it fail? Envoy/Istio error text and access logs, judged with the meshtriage plugin's rules (no deployment needed).",
    after_help = "Examples:\n  meshtriage explain 'upstream connect error or disconnect/reset before headers. reset reason: connection termination'\n  meshtriage explain UF,URX\n  meshtriage logs access.log.gz\n  kubectl logs -f deploy/checkout -c istio-proxy | meshtriage logs --follow -\n\nExit codes: 0 ok; 1 logs: some lines could not be parsed; 2 explain: input not understood, or a usage/input error."
)]
struct Cli {
    /// Colour: auto (only on a terminal, and not with NO_COLOR), always, never.
    #[arg(long, value_enum, default_value = "auto", global = true)]
    color: ColorChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Explain Envoy error text: a local-reply body, response flags (short or long names),
    /// response code details, a Proxy-Status value, an x-meshtriage value, a TLS failure
    /// reason, a status code, or several of these together.
    #[command(
        after_help = "Examples:\n  meshtriage explain 'upstream connect error or disconnect/reset before headers. reset reason: connection termination'\n  meshtriage explain UF,URX\n  meshtriage explain UpstreamRetryLimitExceeded,UpstreamConnectionFailure\n  meshtriage explain 503 UC 'upstream_reset_before_response_started{connection_termination}'\n  meshtriage explain 'envoy; error=connection_timeout; details=\"upstream_reset_before_response_started{connection_timeout}; UF\"'\n  meshtriage explain 'l4;class=connect_refused;origin=proxy;side=upstream;flags=\"UF\"'\n  meshtriage explain 'TLS_error:|268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:TLS_error_end'\n  meshtriage explain --format json UF\n\nExit code 2 when some of the text was not understood (the words are named on stderr)."
    )]
    Explain {
        /// The text (several arguments are read together, then one by one).
        #[arg(required = true, value_name = "TEXT")]
        text: Vec<String>,
        /// Output: text or json.
        #[arg(long, value_enum, default_value = "text")]
        format: ExplainFormat,
    },
    /// Judge every line of Envoy/Istio access logs and summarise the failures.
    #[command(
        after_help = "Formats read without options: Istio's default text format (Istio 1.9 and later), the same with the plugin's %FILTER_STATE(wasm.meshtriage:PLAIN)% appended, Istio's JSON encoding (keys as Istio writes them; the verdict under \"meshtriage\"), Envoy's default format, and any line carrying a plugin verdict (l4;class=...). Gzip input is read directly.\n\nExamples:\n  meshtriage logs istio-proxy.log\n  meshtriage logs --format json access.log.gz > failures.jsonl\n  meshtriage logs --format csv a.log b.log > failures.csv\n  kubectl logs -f deploy/checkout -c istio-proxy | meshtriage logs --follow -\n  meshtriage logs --format-string '%START_TIME% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %UPSTREAM_CLUSTER%' my.log\n\nExit codes: 0 every line read; 1 some lines could not be parsed (counted, the first shown with line number and first bytes); 2 an input could not be opened or a bad option."
    )]
    Logs {
        /// Access-log files (plain or gzip); `-` or nothing reads standard input.
        #[arg(value_name = "FILE")]
        files: Vec<String>,
        /// The Envoy format string the lines were written with (`\n` at the end optional).
        #[arg(long, value_name = "FORMAT")]
        format_string: Option<String>,
        /// Output: a text summary, or one JSON object / CSV row per failing request.
        #[arg(long, value_enum, default_value = "text")]
        format: Output,
        /// Keep reading: print each failing request as it arrives (stdin or the last FILE).
        #[arg(long, short = 'f')]
        follow: bool,
        /// Which verdict a line gets when it also carries the plugin's.
        #[arg(long, value_enum, default_value = "auto")]
        verdict_from: VerdictFrom,
        /// Time bucket of the summary.
        #[arg(long, value_enum, default_value = "minute")]
        bucket: Bucket,
        /// Example lines per class in the summary.
        #[arg(long, default_value_t = 1)]
        examples: usize,
        /// Clusters and authorities listed in the summary.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// No progress bar (shown on a terminal for inputs of 64 MiB and more).
        #[arg(long)]
        no_progress: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExplainFormat {
    Text,
    Json,
}

fn main() {
    let cli = Cli::parse();
    let style = Style::new(cli.color);
    let code = match cli.command {
        Command::Explain { text, format } => {
            let cfg = meshtriage_core::Config::default();
            let e = explain::explain(&text, &cfg);
            match format {
                ExplainFormat::Json => println!("{}", e.to_json()),
                ExplainFormat::Text => print!("{}", e.to_text(&style)),
            }
            if e.unknown.is_empty() && !e.findings.is_empty() {
                0
            } else {
                let words = if e.unknown.is_empty() {
                    text.clone()
                } else {
                    e.unknown.clone()
                };
                eprintln!(
                    "meshtriage explain: not understood: {}\n  (not an Envoy local-reply body, response flag, response code details, Proxy-Status, x-meshtriage value, TLS failure reason or status code)",
                    words
                        .iter()
                        .map(|w| format!("{w:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                2
            }
        }
        Command::Logs {
            files,
            format_string,
            format,
            follow,
            verdict_from,
            bucket,
            examples,
            top,
            no_progress,
        } => logs::run(&logs::Options {
            inputs: files,
            format_string,
            output: format,
            follow,
            verdict_from,
            bucket,
            examples,
            top,
            style,
            progress: !no_progress && std::io::stderr().is_terminal(),
        }),
    };
    std::process::exit(code);
}
