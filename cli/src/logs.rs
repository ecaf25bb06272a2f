//! `meshtriage logs`: reads access logs (files, gzip, stdin; `--follow`), judges every line
//! with the plugin's rules, and reports rows and a summary. A line it cannot read is counted
//! and shown, never fatal.

use crate::format::{self, Field, TextFormat, Values};
use crate::judge::{self, Key, LineFacts};
use crate::style::Style;
use crate::summary::{Row, Summary};
use meshtriage_core::{Config, Outcome};
use std::cell::Cell;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::rc::Rc;

/// Where the verdict of a line comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum VerdictFrom {
    /// The plugin's verdict when the line carries one, else the line's fields.
    Auto,
    /// Always the line's fields (the plugin's verdict is still shown, as `plugin`).
    Fields,
    /// Only the plugin's verdict; lines without one are not judged.
    Plugin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A summary for people.
    Text,
    /// One JSON object per failing request (JSON Lines).
    Json,
    /// One CSV row per failing request, with a header.
    Csv,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Bucket {
    Second,
    Minute,
    Hour,
    Day,
}

impl Bucket {
    /// Characters of an ISO-8601 `START_TIME` kept (`2026-12-07T15:50`).
    fn width(self) -> usize {
        match self {
            Bucket::Second => 19,
            Bucket::Minute => 16,
            Bucket::Hour => 13,
            Bucket::Day => 10,
        }
    }
}

pub struct Options {
    pub inputs: Vec<String>,
    pub format_string: Option<String>,
    pub output: Output,
    pub follow: bool,
    pub verdict_from: VerdictFrom,
    pub bucket: Bucket,
    pub examples: usize,
    pub top: usize,
    pub style: Style,
    pub progress: bool,
}

/// Remembers recent (status, flags, details, grpc) combinations that did not fail: most lines
/// repeat a handful of them, so the rules run once per combination, not once per line.
#[derive(Default)]
struct OkCache {
    keys: Vec<Vec<u8>>,
    next: usize,
    scratch: Vec<u8>,
}

const OK_CACHE: usize = 16;

impl OkCache {
    fn key(&mut self, v: &Values<'_>) {
        self.scratch.clear();
        for f in [
            Field::Status,
            Field::Flags,
            Field::Details,
            Field::GrpcStatus,
        ] {
            self.scratch.extend_from_slice(v.get(f).unwrap_or(b"-"));
            self.scratch.push(0);
        }
        self.scratch.push(u8::from(v.has_details));
        if !v.has_details {
            // Whether `via_upstream` is inferred depends on the upstream host.
            self.scratch
                .push(u8::from(v.get(Field::UpstreamHost).is_some()));
        }
    }

    fn plainly_ok(&mut self, v: &Values<'_>, cfg: &Config) -> bool {
        self.key(v);
        if self.keys.contains(&self.scratch) {
            return true;
        }
        let Some(facts) = facts(v) else { return false };
        if judge::judge(&facts, cfg).is_some() {
            return false;
        }
        if self.keys.len() < OK_CACHE {
            self.keys.push(self.scratch.clone());
        } else if let Some(slot) = self.keys.get_mut(self.next) {
            slot.clone_from(&self.scratch);
            self.next = (self.next + 1) % OK_CACHE;
        }
        true
    }
}

/// The facts of a line; `None` when its status is not a number (the wrong format).
fn facts(v: &Values<'_>) -> Option<LineFacts> {
    let status = match v.text(Field::Status) {
        None => None,
        Some(s) => Some(s.parse::<u16>().ok()?).filter(|c| *c != 0),
    };
    let flags = judge::parse_flags(v.text(Field::Flags).unwrap_or("-")).unwrap_or_else(|_| {
        meshtriage_core::flags::ResponseFlags::parse_short_names(v.text(Field::Flags).unwrap_or(""))
    });
    let mut details = v.text(Field::Details).map(str::to_string);
    if !v.has_details && !flags.any_failure() && v.get(Field::UpstreamHost).is_some() {
        // No details in the format (Envoy's default): no failure flag and an upstream host
        // means the upstream answered.
        details = Some("via_upstream".into());
    }
    Some(LineFacts {
        status,
        flags,
        details,
        transport_failure: v.text(Field::TransportFailure).map(str::to_string),
        grpc_status: v.text(Field::GrpcStatus).and_then(|g| g.parse().ok()),
        attempts: v
            .text(Field::Attempts)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0),
        direction: judge::direction_of_cluster(v.text(Field::Cluster).unwrap_or("")),
    })
}

/// Counts bytes read (for the progress bar; of the compressed file for gzip).
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

const BUFFER: usize = 1 << 20;
/// Inputs at least this large get a progress bar (on a terminal).
const PROGRESS_FROM: u64 = 64 << 20;

pub struct Run<'a> {
    opts: &'a Options,
    cfg: Config,
    formats: Vec<TextFormat>,
    current: usize,
    cache: OkCache,
    pub summary: Summary,
    out: Box<dyn Write + 'a>,
}

impl<'a> Run<'a> {
    pub fn new(opts: &'a Options, out: Box<dyn Write + 'a>) -> Result<Run<'a>, String> {
        let formats = match &opts.format_string {
            Some(f) => vec![TextFormat::compile("custom", &f.replace("\\n", "\n"))
                .map_err(|e| format!("--format-string: {e}"))?],
            None => format::builtin(),
        };
        Ok(Run {
            opts,
            cfg: Config::default(),
            formats,
            current: 0,
            cache: OkCache::default(),
            summary: Summary {
                examples_per_class: opts.examples,
                ..Summary::default()
            },
            out,
        })
    }

    fn values<'l>(&mut self, line: &'l [u8]) -> Option<(Values<'l>, bool)> {
        if line.first() == Some(&b'{') {
            return format::parse_json(line).map(|v| (v, false));
        }
        let n = self.formats.len();
        let cfg = &self.cfg;
        let cache = &mut self.cache;
        for i in 0..n {
            let idx = (self.current + i) % n;
            let Some(f) = self.formats.get(idx) else {
                continue;
            };
            if let Ok((v, ok)) = f.parse(line, &mut |v| cache.plainly_ok(v, cfg)) {
                if v.get(Field::Status).is_some() && facts(&v).is_none() {
                    continue; // the status is not a number: not this format
                }
                self.current = idx;
                return Some((v, ok));
            }
        }
        if self.opts.format_string.is_none() {
            return format::find_verdict(line).map(|v| (v, false));
        }
        None
    }

    /// Judges one line (without its newline).
    pub fn line(&mut self, file: &str, line_no: u64, raw: &[u8]) -> std::io::Result<()> {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        self.summary.lines += 1;
        let Some((v, plainly_ok)) = self.values(line) else {
            self.summary.add_bad(file, line_no, line);
            return Ok(());
        };
        let width = self.opts.bucket.width();
        let bucket = v
            .text(Field::StartTime)
            .map(|t| t.get(..width.min(t.len())).unwrap_or(t));
        if plainly_ok {
            self.summary.bucket(bucket, false);
            return Ok(());
        }
        let facts = facts(&v);
        let from_fields: Option<Outcome> = if v.get(Field::Status).is_some() {
            facts.as_ref().and_then(|f| judge::judge(f, &self.cfg))
        } else {
            None
        };
        let plugin_text = v.text(Field::Verdict).map(str::to_string);
        let from_plugin = plugin_text.as_deref().and_then(judge::outcome_of_member);
        if let (Some(a), Some(b)) = (&from_fields, &from_plugin) {
            self.summary.compared += 1;
            self.summary.agreed += u64::from(Key::of(a) == Key::of(b));
        }
        let (chosen, source) = match self.opts.verdict_from {
            VerdictFrom::Fields => (from_fields, "fields"),
            VerdictFrom::Plugin => (from_plugin, "plugin"),
            VerdictFrom::Auto => match from_plugin {
                Some(p) => (Some(p), "plugin"),
                None => (from_fields, "fields"),
            },
        };
        self.summary.bucket(bucket, chosen.is_some());
        let Some(outcome) = chosen else {
            return Ok(());
        };
        let row = Row {
            file: file.to_string(),
            line: line_no,
            time: v.text(Field::StartTime).map(str::to_string),
            status: facts.as_ref().and_then(|f| f.status),
            flags: facts
                .as_ref()
                .map(|f| f.flags.short_names())
                .unwrap_or_default(),
            details: v.text(Field::Details).map(str::to_string),
            cluster: v.text(Field::Cluster).map(str::to_string),
            authority: v.text(Field::Authority).map(str::to_string),
            path: v.text(Field::Path).map(str::to_string),
            key: Some(Key::of(&outcome)),
            hints: outcome.hints.iter().map(|h| h.as_str()).collect(),
            source,
            plugin: plugin_text,
        };
        self.summary.add_failing(&row, line);
        match self.opts.output {
            Output::Json => {
                serde_json::to_writer(&mut self.out, &row.to_json())?;
                self.out.write_all(b"\n")?;
            }
            Output::Csv => writeln!(self.out, "{}", row.to_csv())?,
            Output::Text if self.opts.follow => {
                writeln!(self.out, "{}", row.to_text(&self.opts.style))?
            }
            Output::Text => {}
        }
        if self.opts.follow {
            self.out.flush()?;
        }
        Ok(())
    }

    fn reader(
        &self,
        input: &str,
        count: Rc<Cell<u64>>,
    ) -> std::io::Result<(Box<dyn BufRead>, Option<u64>)> {
        let (raw, size): (Box<dyn Read>, Option<u64>) = if input == "-" {
            (Box::new(std::io::stdin().lock()), None)
        } else {
            let f = std::fs::File::open(input)?;
            let size = f.metadata().ok().map(|m| m.len());
            (Box::new(f), size)
        };
        let mut buffered = BufReader::with_capacity(BUFFER, Counting { inner: raw, count });
        let gzip = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
        if gzip {
            let decoder = flate2::bufread::MultiGzDecoder::new(buffered);
            Ok((Box::new(BufReader::with_capacity(BUFFER, decoder)), size))
        } else {
            Ok((Box::new(buffered), size))
        }
    }

    /// Reads one input to its end (or forever with `--follow` on the last input).
    pub fn input(&mut self, input: &str, follow: bool) -> std::io::Result<()> {
        let count = Rc::new(Cell::new(0u64));
        let (mut reader, size) = self.reader(input, count.clone())?;
        let name = if input == "-" { "stdin" } else { input };
        let bar = match size {
            Some(total) if self.opts.progress && total >= PROGRESS_FROM && !follow => {
                let bar = indicatif::ProgressBar::new(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_message(name.to_string());
                Some(bar)
            }
            _ => None,
        };
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut line_no = 0u64;
        let mut last_tick = 0u64;
        loop {
            let n = reader.read_until(b'\n', &mut buf)?;
            if n == 0 || !buf.ends_with(b"\n") {
                if follow && input != "-" {
                    // Keep a partial line until its end is written.
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    continue;
                }
                if buf.is_empty() {
                    break;
                }
            }
            line_no += 1;
            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
            self.line(name, line_no, line)?;
            buf.clear();
            if let Some(bar) = &bar {
                let c = count.get();
                if c - last_tick >= 4 << 20 {
                    bar.set_position(c);
                    last_tick = c;
                }
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        Ok(())
    }

    pub fn finish(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Runs `meshtriage logs`: 0 all lines read, 1 some lines not parsed, 2 an input could not
/// be opened or the options are wrong.
pub fn run(opts: &Options) -> i32 {
    let stdout = std::io::stdout();
    let out: Box<dyn Write> = Box::new(std::io::BufWriter::with_capacity(BUFFER, stdout.lock()));
    let mut run = match Run::new(opts, out) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("meshtriage logs: {e}");
            return 2;
        }
    };
    if opts.output == Output::Csv {
        let _ = writeln!(run.out, "{}", Row::CSV_HEADER);
    }
    let inputs: Vec<String> = if opts.inputs.is_empty() {
        if std::io::stdin().is_terminal() {
            eprintln!("meshtriage logs: reading access-log lines from standard input (a terminal); give FILE or pipe lines in, see --help");
        }
        vec!["-".into()]
    } else {
        opts.inputs.clone()
    };
    let mut failed_open = false;
    let last = inputs.len().saturating_sub(1);
    for (i, input) in inputs.iter().enumerate() {
        run.summary.files += 1;
        if let Err(e) = run.input(input, opts.follow && i == last) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return 0;
            }
            eprintln!("meshtriage logs: {input}: {e}");
            failed_open = true;
        }
    }
    if run.finish().is_err() {
        return 0; // stdout closed (a pager quit): nothing more to say
    }
    let s = &run.summary;
    match opts.output {
        Output::Text => {
            let mut stdout = std::io::stdout().lock();
            let _ = write!(stdout, "{}", s.to_text(&opts.style, opts.top));
        }
        Output::Json | Output::Csv => {
            eprintln!("meshtriage logs: {}", s.totals());
            eprint!("{}", s.bad_report());
        }
    }
    if failed_open {
        2
    } else if s.unparsed > 0 {
        1
    } else {
        0
    }
}
