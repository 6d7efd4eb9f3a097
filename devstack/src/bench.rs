//! `devstack bench`: the figures behind "why Rust", measured in one run on
//! one machine and printed as one table.
//!
//! Two halves:
//! - **Function**: `websocket-handler`, a bare `lambda_runtime` function (the
//!   floor) and the AWS sample's Python handler run by awslambdaric, each
//!   started by the same [`LambdaPool`] (the local Lambda Runtime API): cold
//!   start, warm invocation, peak RSS and deployment zip size.
//! - **Local stack**: handshake and round trip through the edge against a
//!   plain tokio-tungstenite echo server (the floor), broadcast fan-out to
//!   100 and 1,000 connections, sustained messages per second.
//!
//! Every load loop is bounded and every await that waits on the network has
//! a timeout; everything listens and connects on loopback only. The pure
//! parts (`/proc` parsing, the table, the targets) are unit
//! tested below; the figures themselves are never asserted in tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt, StreamExt};
use protocol::{ClientFrame, ServerFrame};
use serde_json::Value;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::process::Command;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::check::Percentiles;
use crate::invoke::Invoke;
use crate::lambda::{FunctionConfig, LambdaPool};

/// How long any single network step of the benchmark may take before the
/// run fails instead of hanging.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Targets from the benchmark issue.
const ZIP_LIMIT_BYTES: u64 = 6_000_000;
const BROADCAST_LIMIT: Duration = Duration::from_secs(1);
/// The broadcast size the 1 s target applies to.
const BROADCAST_TARGET_SIZE: usize = 1000;

/// Options of `devstack bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Cold starts per function (a new process each); the median is reported.
    #[arg(long, default_value_t = 20)]
    pub cold_starts: usize,
    /// Warm invocations per function, after its cold start.
    #[arg(long, default_value_t = 300)]
    pub invocations: usize,
    /// Handshakes measured per WebSocket server (edge and echo floor).
    #[arg(long, default_value_t = 50)]
    pub handshakes: usize,
    /// Round trips measured per WebSocket server (ping → pong through the edge).
    #[arg(long, default_value_t = 500)]
    pub messages: usize,
    /// Broadcast fan-out sizes (receivers per broadcast).
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000])]
    pub fanout: Vec<usize>,
    /// Clients for the sustained-throughput row, each sending `--sustained-messages` pings.
    #[arg(long, default_value_t = 20)]
    pub sustained_clients: usize,
    #[arg(long, default_value_t = 100)]
    pub sustained_messages: usize,
    /// Build the arm64 deployment zips with cargo-lambda first (slow).
    #[arg(long)]
    pub build_zips: bool,
    /// Only the function half.
    #[arg(long, conflicts_with = "stack_only")]
    pub functions_only: bool,
    /// Only the local-stack half.
    #[arg(long)]
    pub stack_only: bool,
    /// The load mode: `--load 10000` holds that many connections open and broadcasts to them.
    #[command(flatten)]
    pub load: crate::load::LoadArgs,
    /// Posts per second of one `sendmessage` invocation against a
    /// @connections stand-in with a fixed latency: `--posts 10000`.
    #[command(flatten)]
    pub posts: crate::posts_bench::PostsArgs,
    /// Only the scale rows (`--load`, `--posts`), none of the others.
    #[arg(long)]
    pub scale_only: bool,
    /// The workspace root (Cargo.toml, Pulumi.yaml, bench/, target/).
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    /// Where the host builds of the functions are [default: the directory of
    /// this executable, i.e. target/release for `cargo run --release`, after
    /// building them there with cargo].
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

/// Runs the benchmark and prints the table and the targets to stdout.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let env = BenchEnv::new(&args)?;
    eprintln!(
        "bench: binaries from {}, scratch in {}",
        env.bin_dir.display(),
        env.scratch.display()
    );
    if cfg!(debug_assertions) {
        eprintln!(
            "bench: this is a debug build; the figures mean little (use `cargo run --release -p devstack -- bench`)"
        );
    }
    if args.bin_dir.is_none() {
        build_functions(&env).await?;
    }
    let mut report = Report::default();
    if args.posts.posts > 0 {
        report.posts = Some(
            crate::posts_bench::measure(&env.binary("websocket-handler")?, &args.posts)
                .await
                .context("the posts-per-second row")?,
        );
    }
    if args.scale_only {
        if args.load.load > 0 {
            report.stack = Some(bench_stack(&args, &env).await?);
        }
        println!("{}", report.render(&machine_line()));
        return Ok(());
    }
    if !args.stack_only {
        if args.build_zips {
            build_zips(&env).await?;
        }
        report.functions = Some(bench_functions(&args, &env).await?);
    }
    if !args.functions_only {
        report.stack = Some(bench_stack(&args, &env).await?);
    }
    println!("{}", report.render(&machine_line()));
    Ok(())
}

/// Paths the benchmark uses.
struct BenchEnv {
    root: PathBuf,
    bin_dir: PathBuf,
    target: PathBuf,
    /// `<target>/bench`: the Python venv, zips, the bench stack's config.
    scratch: PathBuf,
}

impl BenchEnv {
    fn new(args: &BenchArgs) -> anyhow::Result<Self> {
        let root = args.root.canonicalize().with_context(|| {
            format!("the workspace root {} does not exist", args.root.display())
        })?;
        if !root
            .join("bench")
            .join("python-handler")
            .join("app.py")
            .is_file()
        {
            bail!(
                "{} is not the project's workspace root (no bench/python-handler/app.py); pass --root",
                root.display()
            );
        }
        let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
            Some(dir) => root.join(dir),
            None => root.join("target"),
        };
        let bin_dir = match &args.bin_dir {
            Some(dir) => dir.canonicalize().with_context(|| {
                format!("the binary directory {} does not exist", dir.display())
            })?,
            None => std::env::current_exe()
                .context("locating the devstack executable")?
                .parent()
                .map(Path::to_path_buf)
                .context("the devstack executable has no parent directory")?,
        };
        let scratch = target.join("bench");
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("creating {}", scratch.display()))?;
        Ok(BenchEnv {
            root,
            bin_dir,
            target,
            scratch,
        })
    }

    fn binary(&self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.bin_dir.join(name);
        if !path.is_file() {
            bail!(
                "{} is missing: build it first with `cargo build --release -p devstack -p websocket-handler -p hello-lambda`",
                path.display()
            );
        }
        Ok(path)
    }
}

// ---------------------------------------------------------------------------
// Pure parts: statistics, /proc parsing, formatting, targets.
// ---------------------------------------------------------------------------

/// The peak resident set size (`VmHWM`) in bytes from the text of
/// `/proc/<pid>/status`.
pub fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut parts = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => value.checked_mul(1024),
        _ => None,
    }
}

/// Peak RSS of a live process, in bytes.
fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_hwm(&text).with_context(|| format!("no VmHWM line in {path}"))
}

pub fn format_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

pub fn format_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if bytes < 10_000 {
        format!("{bytes} B")
    } else if b < 10_000_000.0 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{:.1} MB", b / 1e6)
    }
}

/// `a / b` as "0.12×", or "—" when either side is missing.
pub fn format_ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => {
            let r = a / b;
            if r < 0.01 {
                format!("{r:.4}×")
            } else {
                format!("{r:.2}×")
            }
        }
        _ => "—".to_string(),
    }
}

/// A Markdown table with aligned columns.
pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::from("|");
        for (i, width) in widths.iter().enumerate() {
            let cell = cells.next().unwrap_or("");
            let pad = width - cell.chars().count().min(*width);
            // Text left, figures right.
            if i == 0 {
                let _ = write!(out, " {cell}{} |", " ".repeat(pad));
            } else {
                let _ = write!(out, " {}{cell} |", " ".repeat(pad));
            }
        }
        out
    };
    let mut out = line(&mut header.iter().copied());
    out.push('\n');
    out.push('|');
    for (i, width) in widths.iter().enumerate() {
        if i == 0 {
            let _ = write!(out, ":{}|", "-".repeat(width + 1));
        } else {
            let _ = write!(out, "{}:|", "-".repeat(width + 1));
        }
    }
    for row in rows {
        out.push('\n');
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// One performance target: what was measured against its limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    /// "measured ≤ limit" in words, with the figures.
    pub detail: String,
    /// `None` when a figure it needs is missing.
    pub met: Option<bool>,
}

impl Target {
    /// `measured ≤ limit`, both in the same unit.
    fn at_most(
        name: &str,
        measured: Option<f64>,
        limit: Option<f64>,
        show: impl Fn(f64) -> String,
    ) -> Target {
        match (measured, limit) {
            (Some(m), Some(l)) => Target {
                name: name.to_string(),
                detail: format!("{} vs limit {}", show(m), show(l)),
                met: Some(m <= l),
            },
            _ => Target {
                name: name.to_string(),
                detail: "not measured".to_string(),
                met: None,
            },
        }
    }

    pub fn render(&self) -> String {
        let verdict = match self.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "n/a",
        };
        format!("- [{verdict}] {}: {}", self.name, self.detail)
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn show_secs(s: f64) -> String {
    format_duration(Duration::from_secs_f64(s.max(0.0)))
}

fn show_bytes(b: f64) -> String {
    format_bytes(b.max(0.0) as u64)
}

// ---------------------------------------------------------------------------
// The report.
// ---------------------------------------------------------------------------

/// Figures of one function under the Lambda Runtime API.
#[derive(Debug, Clone, Default)]
pub struct FunctionFigures {
    pub cold_start: Option<Percentiles>,
    pub warm: Option<Percentiles>,
    pub peak_rss: Option<u64>,
    pub zip: ZipSize,
}

/// A deployment zip, or why there is none.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ZipSize {
    Bytes(u64),
    Missing(String),
    #[default]
    Unknown,
}

impl ZipSize {
    fn bytes(&self) -> Option<u64> {
        match self {
            ZipSize::Bytes(b) => Some(*b),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct FunctionReport {
    pub handler: FunctionFigures,
    pub hello: FunctionFigures,
    pub python: FunctionFigures,
}

#[derive(Debug, Clone, Default)]
pub struct StackReport {
    pub edge_handshake: Option<Percentiles>,
    pub echo_handshake: Option<Percentiles>,
    pub edge_round_trip: Option<Percentiles>,
    pub echo_round_trip: Option<Percentiles>,
    /// Receivers → time until every receiver had the frame.
    pub broadcast: BTreeMap<usize, Duration>,
    /// Messages answered per second, with how many clients and messages.
    pub sustained: Option<(f64, usize, usize)>,
    /// The load mode's figures (`--load N`).
    pub load: Option<crate::load::LoadFigures>,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub functions: Option<FunctionReport>,
    pub stack: Option<StackReport>,
    /// The posts-per-second row (`--posts N`).
    pub posts: Option<crate::posts_bench::PostsFigures>,
}

const HEADER: [&str; 5] = [
    "Benchmark",
    "websocket-handler / devstack",
    "Floor",
    "Python (AWS sample)",
    "Rust ÷ Python",
];

fn cell_stats(s: &Option<Percentiles>, pick: fn(&Percentiles) -> Duration) -> String {
    s.as_ref()
        .map_or("—".to_string(), |s| format_duration(pick(s)))
}

fn stat_secs(s: &Option<Percentiles>, pick: fn(&Percentiles) -> Duration) -> Option<f64> {
    s.as_ref().map(|s| secs(pick(s)))
}

fn zip_cell(z: &ZipSize) -> String {
    match z {
        ZipSize::Bytes(b) => format_bytes(*b),
        ZipSize::Missing(_) => "not built".to_string(),
        ZipSize::Unknown => "—".to_string(),
    }
}

impl Report {
    pub fn rows(&self) -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        if let Some(f) = &self.functions {
            let (h, fl, py) = (&f.handler, &f.hello, &f.python);
            let p50 = |s: &Percentiles| s.p50;
            let p99 = |s: &Percentiles| s.p99;
            rows.push(vec![
                "Function cold start (spawn → first response), p50".into(),
                cell_stats(&h.cold_start, p50),
                cell_stats(&fl.cold_start, p50),
                cell_stats(&py.cold_start, p50),
                format_ratio(
                    stat_secs(&h.cold_start, p50),
                    stat_secs(&py.cold_start, p50),
                ),
            ]);
            for (label, pick) in [("p50", p50 as fn(&Percentiles) -> Duration), ("p99", p99)] {
                rows.push(vec![
                    format!("Function warm invocation, {label}"),
                    cell_stats(&h.warm, pick),
                    cell_stats(&fl.warm, pick),
                    cell_stats(&py.warm, pick),
                    format_ratio(stat_secs(&h.warm, pick), stat_secs(&py.warm, pick)),
                ]);
            }
            let rss = |x: &FunctionFigures| x.peak_rss.map_or("—".to_string(), format_bytes);
            rows.push(vec![
                "Function peak RSS (VmHWM)".into(),
                rss(h),
                rss(fl),
                rss(py),
                format_ratio(h.peak_rss.map(|b| b as f64), py.peak_rss.map(|b| b as f64)),
            ]);
            rows.push(vec![
                "Function deployment zip".into(),
                zip_cell(&h.zip),
                zip_cell(&fl.zip),
                zip_cell(&py.zip),
                format_ratio(
                    h.zip.bytes().map(|b| b as f64),
                    py.zip.bytes().map(|b| b as f64),
                ),
            ]);
        }
        if let Some(s) = &self.stack {
            for (label, edge, echo, pick) in [
                (
                    "WebSocket handshake, p50",
                    &s.edge_handshake,
                    &s.echo_handshake,
                    (|s: &Percentiles| s.p50) as fn(&Percentiles) -> Duration,
                ),
                (
                    "WebSocket handshake, p99",
                    &s.edge_handshake,
                    &s.echo_handshake,
                    |s: &Percentiles| s.p99,
                ),
                (
                    "Message round trip, p50",
                    &s.edge_round_trip,
                    &s.echo_round_trip,
                    |s: &Percentiles| s.p50,
                ),
                (
                    "Message round trip, p99",
                    &s.edge_round_trip,
                    &s.echo_round_trip,
                    |s: &Percentiles| s.p99,
                ),
            ] {
                rows.push(vec![
                    label.into(),
                    cell_stats(edge, pick),
                    cell_stats(echo, pick),
                    "—".into(),
                    "—".into(),
                ]);
            }
            for (n, d) in &s.broadcast {
                rows.push(vec![
                    format!("Broadcast to {n} connections (until all have it)"),
                    format_duration(*d),
                    "—".into(),
                    "—".into(),
                    "—".into(),
                ]);
            }
            if let Some((rate, clients, total)) = s.sustained {
                rows.push(vec![
                    format!("Sustained ping → pong ({clients} clients, {total} messages)"),
                    format!("{rate:.0} msg/s"),
                    "—".into(),
                    "—".into(),
                    "—".into(),
                ]);
            }
        }
        rows
    }

    pub fn targets(&self) -> Vec<Target> {
        let mut out = Vec::new();
        let f = self.functions.as_ref();
        let handler_cold = f.and_then(|f| stat_secs(&f.handler.cold_start, |s| s.p50));
        let hello_cold = f.and_then(|f| stat_secs(&f.hello.cold_start, |s| s.p50));
        let python_cold = f.and_then(|f| stat_secs(&f.python.cold_start, |s| s.p50));
        if f.is_some() {
            out.push(Target::at_most(
                "cold start ≤ 1/5 of the Python handler",
                handler_cold,
                python_cold.map(|p| p / 5.0),
                show_secs,
            ));
            out.push(Target::at_most(
                "cold start ≤ 2× the lambda_runtime floor",
                handler_cold,
                hello_cold.map(|h| h * 2.0),
                show_secs,
            ));
            let rss = |x: &FunctionFigures| x.peak_rss.map(|b| b as f64);
            out.push(Target::at_most(
                "peak RSS ≤ 1/2 of the Python handler",
                f.and_then(|f| rss(&f.handler)),
                f.and_then(|f| rss(&f.python)).map(|p| p / 2.0),
                show_bytes,
            ));
            let zip = f.and_then(|f| f.handler.zip.bytes()).map(|b| b as f64);
            out.push(Target::at_most(
                "deployment zip ≤ 6 MB",
                zip,
                Some(ZIP_LIMIT_BYTES as f64),
                show_bytes,
            ));
        }
        if let Some(s) = &self.stack {
            let edge = stat_secs(&s.edge_round_trip, |s| s.p50);
            let echo = stat_secs(&s.echo_round_trip, |s| s.p50);
            let function = f.and_then(|f| stat_secs(&f.handler.warm, |s| s.p50));
            let limit = match (echo, function) {
                (Some(e), Some(f)) => Some(3.0 * e + f),
                _ => None,
            };
            let mut t = Target::at_most(
                "round trip p50 ≤ 3× the echo floor + the function's warm p50",
                edge,
                limit,
                show_secs,
            );
            if function.is_none() && edge.is_some() {
                t.detail = "needs the function half (warm p50 of websocket-handler)".into();
            }
            out.push(t);
            out.push(Target::at_most(
                "broadcast to 1,000 connections under 1 s",
                s.broadcast.get(&BROADCAST_TARGET_SIZE).map(|d| secs(*d)),
                Some(secs(BROADCAST_LIMIT)),
                show_secs,
            ));
        }
        out
    }

    pub fn render(&self, machine: &str) -> String {
        let mut out = render_table(&HEADER, &self.rows());
        let mut notes: Vec<&str> = Vec::new();
        if let Some(f) = &self.functions {
            for zip in [&f.handler.zip, &f.hello.zip, &f.python.zip] {
                if let ZipSize::Missing(why) = zip
                    && !notes.contains(&why.as_str())
                {
                    notes.push(why);
                }
            }
        }
        for note in notes {
            out.push_str(&format!("\n\nZip {note}"));
        }
        let mut scale = Vec::new();
        if let Some(load) = self.stack.as_ref().and_then(|s| s.load.as_ref()) {
            scale.extend(crate::load::rows(load));
        }
        if let Some(posts) = &self.posts {
            scale.extend(crate::posts_bench::rows(posts));
        }
        if !scale.is_empty() {
            let rows: Vec<Vec<String>> = scale
                .into_iter()
                .map(|(label, value)| vec![label, value])
                .collect();
            out.push_str("\n\n");
            out.push_str(&render_table(
                &["Scale", "websocket-handler / devstack"],
                &rows,
            ));
        }
        out.push_str("\n\nTargets:\n");
        for t in self.targets() {
            out.push_str(&t.render());
            out.push('\n');
        }
        out.push_str(&format!("\nMachine: {machine}\n"));
        out
    }
}

/// "2 CPUs (model), 23.4 GiB RAM, Linux x.y, arch; load average …" from /proc; best effort.
fn machine_line() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |m| m.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    // Other work on the machine moves the figures; the load says how much.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "{cpus} CPUs ({model}), {:.1} GiB RAM, Linux {}, {}; load average at the end {}",
        mem_kib as f64 / (1024.0 * 1024.0),
        kernel.trim(),
        std::env::consts::ARCH,
        load.join(" ")
    )
}

// ---------------------------------------------------------------------------
// Function half: three functions under the same Lambda Runtime API.
// ---------------------------------------------------------------------------

/// A function to measure: how to start it and the event to give it.
struct FunctionUnderTest {
    label: &'static str,
    config: FunctionConfig,
    event: Value,
}

async fn bench_functions(args: &BenchArgs, env: &BenchEnv) -> anyhow::Result<FunctionReport> {
    let sink = ManagementSink::start().await?;
    let python_bootstrap = python_bootstrap(env).await?;
    let functions = [
        FunctionUnderTest {
            label: "websocket-handler",
            config: function_config(
                "websocket-handler",
                env.binary("websocket-handler")?,
                handler_env(&sink),
            ),
            event: ping_event(),
        },
        FunctionUnderTest {
            label: "hello-lambda",
            config: function_config("hello-lambda", env.binary("hello-lambda")?, Vec::new()),
            event: ping_event(),
        },
        FunctionUnderTest {
            label: "python-handler",
            config: function_config("python-handler", python_bootstrap, python_env(env)),
            event: ping_event(),
        },
    ];
    let mut figures = Vec::new();
    for function in &functions {
        eprintln!(
            "bench: function {} ({} cold starts, {} warm invocations)",
            function.label, args.cold_starts, args.invocations
        );
        figures.push(
            measure_function(function, args)
                .await
                .with_context(|| format!("benchmarking {}", function.label))?,
        );
    }
    // websocket-handler answers the ping through the management API: it
    // must have posted one pong per invocation, or it did not do its work.
    let expected = args.cold_starts + 1 + args.invocations;
    let posted = sink.posts();
    if posted < expected {
        bail!(
            "websocket-handler posted {posted} replies to the management API for {expected} pings"
        );
    }
    let [mut handler, mut hello, mut python] = <[FunctionFigures; 3]>::try_from(figures)
        .map_err(|_| anyhow::anyhow!("expected figures for three functions"))?;
    handler.zip = lambda_zip(env, "websocket-handler");
    hello.zip = lambda_zip(env, "hello-lambda");
    python.zip = python_zip(env).await?;
    Ok(FunctionReport {
        handler,
        hello,
        python,
    })
}

fn function_config(name: &str, binary: PathBuf, env: Vec<(String, String)>) -> FunctionConfig {
    FunctionConfig {
        binary,
        name: name.to_string(),
        env: env.into_iter().collect(),
        memory_mb: 128,
        timeout: Duration::from_secs(10),
        max_concurrency: 1,
    }
}

/// Cold starts (a new pool, so a new process, each), then one process kept
/// warm for `invocations` sequential invocations; its peak RSS at the end.
async fn measure_function(
    function: &FunctionUnderTest,
    args: &BenchArgs,
) -> anyhow::Result<FunctionFigures> {
    let mut cold = Vec::new();
    for _ in 0..args.cold_starts.max(1) {
        let started = Instant::now();
        let pool = LambdaPool::start(function.config.clone())
            .await
            .context("starting the function")?;
        let response = invoke_once(&pool, &function.event).await;
        let elapsed = started.elapsed();
        pool.shutdown().await;
        response?;
        cold.push(elapsed);
    }
    let pool = LambdaPool::start(function.config.clone())
        .await
        .context("starting the function")?;
    let result = async {
        invoke_once(&pool, &function.event).await?;
        let mut warm = Vec::with_capacity(args.invocations);
        for _ in 0..args.invocations {
            let started = Instant::now();
            invoke_once(&pool, &function.event).await?;
            warm.push(started.elapsed());
        }
        let mut rss = None;
        for pid in pool.process_ids() {
            let peak = peak_rss(pid)?;
            rss = Some(rss.map_or(peak, |r: u64| r.max(peak)));
        }
        anyhow::Ok((warm, rss))
    }
    .await;
    pool.shutdown().await;
    let (warm, peak_rss) = result?;
    Ok(FunctionFigures {
        cold_start: Percentiles::of(&cold),
        warm: Percentiles::of(&warm),
        peak_rss: Some(peak_rss.context("the pool reported no function process")?),
        zip: ZipSize::Unknown,
    })
}

/// One invocation that must answer with an API Gateway proxy response 200.
async fn invoke_once(pool: &LambdaPool, event: &Value) -> anyhow::Result<()> {
    let response = tokio::time::timeout(STEP_TIMEOUT, pool.invoke(event.clone()))
        .await
        .context("the invocation did not finish in time")??;
    match response.get("statusCode").and_then(Value::as_u64) {
        Some(200) => Ok(()),
        other => bail!("the function answered statusCode {other:?} instead of 200"),
    }
}

/// A `ping` from a connected client, as API Gateway sends it.
fn ping_event() -> Value {
    use aws_lambda_events::apigw::{
        ApiGatewayWebsocketProxyRequest, ApiGatewayWebsocketProxyRequestContext,
    };
    let now = chrono::Utc::now().timestamp_millis();
    let mut context = ApiGatewayWebsocketProxyRequestContext::default();
    context.route_key = Some(protocol::routes::PING.to_string());
    context.event_type = Some("MESSAGE".to_string());
    context.message_direction = Some("IN".to_string());
    context.connection_id = Some("YmVuY2gtY29ubmVjdGlvbg=".to_string());
    context.message_id = Some("YmVuY2gtbWVzc2FnZQ=".to_string());
    context.request_id = Some("YmVuY2gtcmVxdWVzdA=".to_string());
    context.connected_at = now;
    context.request_time_epoch = now;
    context.domain_name = Some("127.0.0.1".to_string());
    context.stage = Some(SINK_STAGE.to_string());
    context.apiid = Some("bench".to_string());
    context.identity.source_ip = Some("127.0.0.1".to_string());
    let mut event = ApiGatewayWebsocketProxyRequest::default();
    event.body = Some(ClientFrame::ping().to_text());
    event.request_context = context;
    serde_json::to_value(event).unwrap_or(Value::Null)
}

const SINK_STAGE: &str = "bench";

/// A stand-in for the @connections management API that accepts every
/// PostToConnection and counts them: the function's reply path runs for real
/// (SDK, HTTP on loopback) without the rest of the stack in the figures.
struct ManagementSink {
    endpoint: String,
    posts: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ManagementSink {
    async fn start() -> anyhow::Result<Self> {
        use axum::routing::post;
        let posts = Arc::new(AtomicUsize::new(0));
        let counter = posts.clone();
        let app = axum::Router::new().route(
            "/{stage}/@connections/{id}",
            post(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding the management sink")?;
        let addr = listener
            .local_addr()
            .context("reading the management sink's address")?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("bench: management sink stopped: {e}");
            }
        });
        Ok(ManagementSink {
            endpoint: format!("http://{addr}/{SINK_STAGE}"),
            posts,
            task,
        })
    }

    fn posts(&self) -> usize {
        self.posts.load(Ordering::Relaxed)
    }
}

impl Drop for ManagementSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The environment websocket-handler gets: dummy credentials, the sink as
/// its management endpoint, the deployed log level. A ping reads no table
/// (the DynamoDB endpoint is never dialled) and posts one pong.
fn handler_env(sink: &ManagementSink) -> Vec<(String, String)> {
    [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        // What the Pulumi program's logging config gives the deployed function.
        ("AWS_LAMBDA_LOG_LEVEL", "INFO"),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ("CONNECTIONS_TABLE", "bench-connections"),
        ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9"),
        ("MANAGEMENT_ENDPOINT", sink.endpoint.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn python_env(env: &BenchEnv) -> Vec<(String, String)> {
    vec![
        // Keep bytecode out of the source tree, cached across cold starts as
        // in a warm Lambda sandbox image.
        (
            "PYTHONPYCACHEPREFIX".to_string(),
            env.scratch.join("pycache").display().to_string(),
        ),
        ("PYTHONUNBUFFERED".to_string(), "1".to_string()),
    ]
}

/// awslambdaric's pinned version, from bench/python-handler/requirements.txt.
fn python_requirements(env: &BenchEnv) -> PathBuf {
    env.root
        .join("bench")
        .join("python-handler")
        .join("requirements.txt")
}

/// Installs awslambdaric into `<target>/bench/python-venv` (once; a marker
/// names the requirements it holds) and writes the `bootstrap` that runs the
/// sample handler with it, as a custom runtime's bootstrap would.
async fn python_bootstrap(env: &BenchEnv) -> anyhow::Result<PathBuf> {
    let requirements = python_requirements(env);
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let venv = env.scratch.join("python-venv");
    let marker = venv.join(".bench-requirements");
    let installed = std::fs::read_to_string(&marker).unwrap_or_default();
    if installed != wanted {
        eprintln!(
            "bench: installing awslambdaric into {} (first run)",
            venv.display()
        );
        if venv.exists() {
            std::fs::remove_dir_all(&venv)
                .with_context(|| format!("removing the stale {}", venv.display()))?;
        }
        run_step(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "python3 -m venv (needs python3 with venv: apt-get install python3-venv)",
        )
        .await?;
        run_step(
            Command::new(venv.join("bin").join("python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--quiet",
                    "-r",
                ])
                .arg(&requirements),
            "pip install awslambdaric (needs PyPI)",
        )
        .await?;
        std::fs::write(&marker, &wanted)
            .with_context(|| format!("writing {}", marker.display()))?;
    }
    let handler_dir = env.root.join("bench").join("python-handler");
    let python = venv.join("bin").join("python");
    for path in [&handler_dir, &python] {
        if path.to_string_lossy().contains('\'') {
            bail!(
                "{} contains a single quote; move the checkout",
                path.display()
            );
        }
    }
    let bootstrap = env.scratch.join("python-bootstrap");
    let script = format!(
        "#!/bin/sh\n# Written by `devstack bench`: the AWS sample's handler under awslambdaric.\ncd '{}' && exec '{}' -m awslambdaric app.handler\n",
        handler_dir.display(),
        python.display()
    );
    std::fs::write(&bootstrap, script)
        .with_context(|| format!("writing {}", bootstrap.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", bootstrap.display()))?;
    }
    Ok(bootstrap)
}

/// Runs a setup command to completion; its output is shown only if it fails.
async fn run_step(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Builds the host binaries of the two Rust functions into this
/// executable's profile (`cargo` does nothing when they are up to date), so
/// the command works on a fresh checkout.
async fn build_functions(env: &BenchEnv) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(&env.root)
        .args(["build", "-p", "websocket-handler", "-p", "hello-lambda"])
        .stdin(Stdio::null());
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    eprintln!(
        "bench: building websocket-handler and hello-lambda (cargo build -p websocket-handler -p hello-lambda{})",
        if cfg!(debug_assertions) {
            ""
        } else {
            " --release"
        }
    );
    let status = command
        .status()
        .await
        .context("running cargo build (is cargo on PATH?)")?;
    if !status.success() {
        bail!("building the functions failed ({status}); cargo printed why above");
    }
    Ok(())
}

const ZIP_COMMAND: &str =
    "cargo lambda build --release --arm64 --output-format zip -p websocket-handler -p hello-lambda";

/// The cargo-lambda zip of a Rust function, if it was built.
fn lambda_zip(env: &BenchEnv, name: &str) -> ZipSize {
    let path = env.target.join("lambda").join(name).join("bootstrap.zip");
    match std::fs::metadata(&path) {
        Ok(meta) => ZipSize::Bytes(meta.len()),
        Err(_) => ZipSize::Missing(format!(
            "not built — run `{ZIP_COMMAND}` (or bench --build-zips)"
        )),
    }
}

/// The Python handler's deployment zip: app.py alone, deflated, as the
/// managed Python runtime takes it (the runtime ships the interpreter).
async fn python_zip(env: &BenchEnv) -> anyhow::Result<ZipSize> {
    let out = env.scratch.join("python-handler.zip");
    let _ = std::fs::remove_file(&out);
    run_step(
        Command::new("python3")
            .current_dir(env.root.join("bench").join("python-handler"))
            .arg("-c")
            .arg("import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n    z.write('app.py')")
            .arg(&out),
        "zipping the Python handler",
    )
    .await?;
    let meta = std::fs::metadata(&out).with_context(|| format!("reading {}", out.display()))?;
    Ok(ZipSize::Bytes(meta.len()))
}

async fn build_zips(env: &BenchEnv) -> anyhow::Result<()> {
    eprintln!("bench: {ZIP_COMMAND}");
    let status = Command::new("cargo")
        .current_dir(&env.root)
        .args(ZIP_COMMAND.split_whitespace().skip(1))
        .status()
        .await
        .context("running cargo lambda (install it: pip install cargo-lambda)")?;
    if !status.success() {
        bail!("`{ZIP_COMMAND}` failed ({status})");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Local-stack half: WebSocket clients against the edge and the echo floor.
// ---------------------------------------------------------------------------

type Ws = WebSocketStream<TcpStream>;

/// Clients connect from 127.0.0.2..=127.0.0.201 in turn, so per-IP limits
/// see many clients, as CloudFront sees many viewers.
fn source_address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (i % 200) as u8)
}

/// TCP connect from `source` plus the WebSocket handshake.
async fn connect(addr: SocketAddr, path: &str, source: Ipv4Addr) -> anyhow::Result<Ws> {
    let step = async {
        let socket = TcpSocket::new_v4().context("creating a socket")?;
        socket
            .bind(SocketAddr::from((source, 0)))
            .with_context(|| format!("binding {source}"))?;
        let stream = socket
            .connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let url = format!("ws://{addr}{path}");
        let (ws, _) = tokio_tungstenite::client_async(url.as_str(), stream)
            .await
            .with_context(|| format!("WebSocket handshake with {url}"))?;
        anyhow::Ok(ws)
    };
    tokio::time::timeout(STEP_TIMEOUT, step)
        .await
        .context("the handshake did not finish in time")?
}

async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    // Drain until the server's close frame, so the server sees a clean close.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while ws.next().await.is_some() {}
    })
    .await;
}

/// Handshake times of `n` sequential connections (each closed after).
async fn handshakes(addr: SocketAddr, path: &str, n: usize) -> anyhow::Result<Option<Percentiles>> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let ws = connect(addr, path, source_address(i)).await?;
        samples.push(started.elapsed());
        close(ws).await;
    }
    Ok(Percentiles::of(&samples))
}

/// Waits for the next text frame that `accept` picks, skipping others.
async fn next_text<T>(ws: &mut Ws, mut accept: impl FnMut(&str) -> Option<T>) -> anyhow::Result<T> {
    let step = async {
        while let Some(message) = ws.next().await {
            match message.context("reading a frame")? {
                Message::Text(text) => {
                    if let Some(found) = accept(text.as_str()) {
                        return Ok(found);
                    }
                }
                Message::Close(frame) => bail!("the server closed the connection: {frame:?}"),
                _ => {}
            }
        }
        bail!("the connection ended")
    };
    tokio::time::timeout(STEP_TIMEOUT, step)
        .await
        .context("no answer in time")?
}

fn is_pong(text: &str) -> Option<()> {
    matches!(
        serde_json::from_str::<ServerFrame>(text),
        Ok(ServerFrame::Pong)
    )
    .then_some(())
}

/// One ping → pong through the stack.
async fn ping(ws: &mut Ws) -> anyhow::Result<Duration> {
    let started = Instant::now();
    ws.send(Message::text(ClientFrame::ping().to_text()))
        .await
        .context("sending a ping")?;
    next_text(ws, is_pong).await?;
    Ok(started.elapsed())
}

/// One frame echoed by the floor server.
async fn echo(ws: &mut Ws, frame: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    ws.send(Message::text(frame))
        .await
        .context("sending a frame")?;
    next_text(ws, |t| (t == frame).then_some(())).await?;
    Ok(started.elapsed())
}

/// The floor: a plain tokio-tungstenite server echoing text frames, on its
/// own thread and runtime. Like any server (the stack runs in its own
/// process) it is woken across threads; sharing the clients' runtime would
/// let an echo skip that wake-up and make the floor lower than any real
/// server can go.
struct EchoServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoServer {
    fn start() -> anyhow::Result<EchoServer> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("binding the echo server")?;
        listener
            .set_nonblocking(true)
            .context("making the echo listener non-blocking")?;
        let addr = listener
            .local_addr()
            .context("reading the echo server's address")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the echo server's runtime")?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("echo-floor".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = stopped => {}
                        _ = serve_echo(listener) => {}
                    }
                });
            })
            .context("starting the echo server's thread")?;
        Ok(EchoServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve_echo(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(message)) = ws.next().await {
                if message.is_close() {
                    return;
                }
                if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Opens `n` connections, at most 32 handshakes at a time.
async fn connect_many(
    addr: SocketAddr,
    path: &str,
    n: usize,
    first_source: usize,
) -> anyhow::Result<Vec<Ws>> {
    futures_util::stream::iter(0..n)
        .map(|i| connect(addr, path, source_address(first_source + i)))
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Time from the sender's `sendmessage` until each of `receivers` other
/// connections has the message frame; the slowest receiver counts.
async fn broadcast(addr: SocketAddr, path: &str, receivers: usize) -> anyhow::Result<Duration> {
    let clients = connect_many(addr, path, receivers, 0).await?;
    let mut sender = connect(addr, path, source_address(receivers)).await?;
    let tag = format!("bench-broadcast-{receivers}-{}", uuid::Uuid::new_v4());
    let expected = Value::String(tag.clone());
    let (go, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut tasks = Vec::with_capacity(receivers);
    for mut ws in clients {
        let expected = expected.clone();
        let mut ready = go.subscribe();
        tasks.push(tokio::spawn(async move {
            let _ = ready.recv().await;
            let got = next_text(&mut ws, |t| match serde_json::from_str::<ServerFrame>(t) {
                Ok(ServerFrame::Message { data, .. }) if data == expected => Some(Instant::now()),
                _ => None,
            })
            .await;
            close(ws).await;
            got
        }));
    }
    let started = Instant::now();
    let _ = go.send(());
    sender
        .send(Message::text(ClientFrame::send_message(expected).to_text()))
        .await
        .context("sending the broadcast")?;
    let recipients = next_text(&mut sender, |t| {
        match serde_json::from_str::<ServerFrame>(t) {
            Ok(ServerFrame::Sent { recipients }) => Some(recipients),
            _ => None,
        }
    })
    .await?;
    let mut last = started;
    for task in tasks {
        let received = task.await.context("a receiver task failed")??;
        last = last.max(received);
    }
    close(sender).await;
    if recipients < receivers {
        bail!("the function reported {recipients} recipients for {receivers} connected receivers");
    }
    Ok(last - started)
}

/// `clients` connections each sending `messages` pings back to back;
/// returns pongs per second over the whole run.
async fn sustained(
    addr: SocketAddr,
    path: &str,
    clients: usize,
    messages: usize,
) -> anyhow::Result<f64> {
    let sockets = connect_many(addr, path, clients, 0).await?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for mut ws in sockets {
        tasks.push(tokio::spawn(async move {
            for _ in 0..messages {
                ping(&mut ws).await?;
            }
            close(ws).await;
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("a client task failed")??;
    }
    let elapsed = started.elapsed();
    Ok((clients * messages) as f64 / elapsed.as_secs_f64())
}

async fn bench_stack(args: &BenchArgs, env: &BenchEnv) -> anyhow::Result<StackReport> {
    let mut report = StackReport::default();
    let echo_server = EchoServer::start()?;
    let echo_addr = echo_server.addr;
    eprintln!("bench: echo floor on {echo_addr}");
    let floor = async {
        report.echo_handshake = handshakes(echo_addr, "/", args.handshakes).await?;
        let mut ws = connect(echo_addr, "/", source_address(0)).await?;
        let frame = ClientFrame::ping().to_text();
        let mut samples = Vec::with_capacity(args.messages);
        for _ in 0..args.messages {
            samples.push(echo(&mut ws, &frame).await?);
        }
        close(ws).await;
        report.echo_round_trip = Percentiles::of(&samples);
        anyhow::Ok(())
    }
    .await;
    drop(echo_server);
    floor.context("measuring the echo floor")?;

    let stack = BenchStack::start(env).await?;
    let (addr, path) = (stack.edge, stack.path.as_str());
    eprintln!("bench: local stack edge on ws://{addr}{path}");
    let measured = async {
        if args.scale_only {
            return measure_load(&mut report, args, addr, path, stack.child.id()).await;
        }
        report.edge_handshake = handshakes(addr, path, args.handshakes)
            .await
            .context("handshakes through the edge")?;
        let mut ws = connect(addr, path, source_address(0)).await?;
        ping(&mut ws).await?;
        let mut samples = Vec::with_capacity(args.messages);
        for _ in 0..args.messages {
            samples.push(ping(&mut ws).await?);
        }
        close(ws).await;
        report.edge_round_trip = Percentiles::of(&samples);
        eprintln!(
            "bench: sustained, {} clients × {} pings",
            args.sustained_clients, args.sustained_messages
        );
        let rate = sustained(addr, path, args.sustained_clients, args.sustained_messages)
            .await
            .context("sustained pings")?;
        report.sustained = Some((
            rate,
            args.sustained_clients,
            args.sustained_clients * args.sustained_messages,
        ));
        for &n in &args.fanout {
            // Let the previous connections' $disconnect finish first.
            tokio::time::sleep(Duration::from_secs(1)).await;
            eprintln!("bench: broadcast to {n}");
            let took = broadcast(addr, path, n)
                .await
                .with_context(|| format!("broadcast to {n}"))?;
            report.broadcast.insert(n, took);
        }
        measure_load(&mut report, args, addr, path, stack.child.id()).await
    }
    .await;
    stack.shutdown().await;
    measured?;
    Ok(report)
}

/// The load row, when `--load N` asks for it.
async fn measure_load(
    report: &mut StackReport,
    args: &BenchArgs,
    addr: SocketAddr,
    path: &str,
    stack_pid: Option<u32>,
) -> anyhow::Result<()> {
    if args.load.load == 0 {
        return Ok(());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!("bench: load, {} connections", args.load.load);
    let figures = crate::load::measure(addr, path, stack_pid, &args.load)
        .await
        .with_context(|| format!("load with {} connections", args.load.load))?;
    report.load = Some(figures);
    Ok(())
}

/// Stack config for the bench: the repository's program with limits high
/// enough for 1,000 connections and thousands of messages a second, so the
/// figures measure the stack rather than its WAF rule and throttling.
const BENCH_STACK: &str = "bench";
const BENCH_CONFIG: &[(&str, u64)] = &[
    ("rateLimit", 2_000_000_000),
    ("stageBurstLimit", 100_000),
    ("stageRateLimit", 100_000),
    ("usagePlanBurstLimit", 100_000),
    ("usagePlanRateLimit", 100_000),
];

/// The project name: the top-level `name:` of Pulumi.yaml.
pub fn project_name(pulumi_yaml: &str) -> Option<String> {
    pulumi_yaml.lines().find_map(|line| {
        let value = line.strip_prefix("name:")?.trim();
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        (!value.is_empty()).then(|| value.to_string())
    })
}

/// `Pulumi.bench.yaml`: the bench's limits under the project's namespace
/// (JSON, which is YAML).
pub fn bench_stack_config(project: &str) -> String {
    let mut config = serde_json::Map::new();
    config.insert("aws:region".into(), Value::from("us-east-1"));
    for (key, value) in BENCH_CONFIG {
        config.insert(format!("{project}:{key}"), Value::from(*value));
    }
    serde_json::json!({ "config": config }).to_string()
}

/// The URLs `devstack up --ready-file` writes.
#[derive(Debug, serde::Deserialize)]
struct ReadyFile {
    edge: String,
}

/// `devstack up` as a child process (this same executable), configured
/// from a copy of the repository's Pulumi.yaml and a Pulumi.bench.yaml.
struct BenchStack {
    child: tokio::process::Child,
    edge: SocketAddr,
    path: String,
}

impl BenchStack {
    async fn start(env: &BenchEnv) -> anyhow::Result<BenchStack> {
        let dir = env.scratch.join("stack");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let source = env.root.join("Pulumi.yaml");
        let program = std::fs::read_to_string(&source)
            .with_context(|| format!("reading {}", source.display()))?;
        let project = project_name(&program)
            .with_context(|| format!("{} has no top-level name", source.display()))?;
        std::fs::write(dir.join("Pulumi.yaml"), &program).context("copying Pulumi.yaml")?;
        std::fs::write(
            dir.join(format!("Pulumi.{BENCH_STACK}.yaml")),
            bench_stack_config(&project),
        )
        .context("writing the bench stack's config")?;
        let ready = dir.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let log_path = dir.join("devstack.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let exe = std::env::current_exe().context("locating the devstack executable")?;
        let mut child = Command::new(exe)
            .arg("up")
            .arg("--program-dir")
            .arg(&dir)
            .arg("--function-bin")
            .arg(env.binary("websocket-handler")?)
            .args([
                "--stack",
                BENCH_STACK,
                "--edge-addr",
                "127.0.0.1:0",
                "--api-addr",
                "127.0.0.1:0",
            ])
            .arg("--ready-file")
            .arg(&ready)
            .current_dir(&env.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("opening the stack's log")?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting `devstack up`")?;
        eprintln!(
            "bench: starting the local stack (log: {})",
            log_path.display()
        );
        let deadline = Instant::now() + STACK_START_TIMEOUT;
        let edge = loop {
            if let Some(status) = child.try_wait().context("watching devstack up")? {
                bail!(
                    "`devstack up` exited with {status} before it was ready; see {}",
                    log_path.display()
                );
            }
            if let Some(edge) = std::fs::read_to_string(&ready)
                .ok()
                .and_then(|text| serde_json::from_str::<ReadyFile>(&text).ok())
            {
                break edge.edge;
            }
            if Instant::now() > deadline {
                let _ = child.kill().await;
                bail!(
                    "`devstack up` was not ready within {STACK_START_TIMEOUT:?}; see {}",
                    log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (edge, path) =
            parse_ws_url(&edge).with_context(|| format!("the stack's edge URL {edge:?}"))?;
        Ok(BenchStack { child, edge, path })
    }

    /// Ctrl-C, as a user stops it, then a bounded wait.
    async fn shutdown(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            eprintln!("bench: the local stack did not stop within 20 s; killing it");
            let _ = self.child.kill().await;
        }
    }
}

/// How long `devstack up` may take to start (it may build the function and
/// install the DynamoDB-compatible server on first use).
const STACK_START_TIMEOUT: Duration = Duration::from_secs(600);

/// `ws://127.0.0.1:8080/path` → (address, "/path"); loopback IPv4 only.
pub fn parse_ws_url(url: &str) -> Option<(SocketAddr, String)> {
    let rest = url.strip_prefix("ws://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority.parse().ok()?;
    addr.ip().is_loopback().then(|| (addr, path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tbootstrap\nVmPeak:\t   12345 kB\nVmSize:\t   12000 kB\nVmHWM:\t    4321 kB\nVmRSS:\t    4000 kB\n";

    #[test]
    fn vm_hwm_is_read_in_bytes() {
        assert_eq!(parse_vm_hwm(STATUS), Some(4321 * 1024));
    }

    #[test]
    fn vm_hwm_missing_or_malformed_is_none() {
        assert_eq!(parse_vm_hwm("Name:\tx\nVmRSS:\t 10 kB\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM:\t lots kB\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM:\t 10 MB\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM:\n"), None);
        assert_eq!(parse_vm_hwm(""), None);
    }

    #[test]
    fn this_process_has_a_peak_rss() {
        let rss = peak_rss(std::process::id()).map_err(|e| e.to_string());
        assert!(matches!(rss, Ok(b) if b > 0), "{rss:?}");
    }

    #[test]
    fn durations_bytes_and_ratios_are_formatted_for_people() {
        assert_eq!(format_duration(Duration::from_micros(250)), "250 µs");
        assert_eq!(format_duration(Duration::from_micros(1_500)), "1.50 ms");
        assert_eq!(format_duration(Duration::from_millis(2_340)), "2.34 s");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(123_456), "123.5 kB");
        assert_eq!(format_bytes(5_432_100), "5432.1 kB");
        assert_eq!(format_bytes(12_345_678), "12.3 MB");
        assert_eq!(format_ratio(Some(1.0), Some(4.0)), "0.25×");
        assert_eq!(format_ratio(Some(1.0), Some(1000.0)), "0.0010×");
        assert_eq!(format_ratio(Some(1.0), None), "—");
        assert_eq!(format_ratio(Some(1.0), Some(0.0)), "—");
    }

    #[test]
    fn the_table_is_aligned_markdown() {
        let table = render_table(
            &["Name", "Value"],
            &[
                vec!["a".into(), "1 ms".into()],
                vec!["longer name".into(), "22".into()],
            ],
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines,
            [
                "| Name        | Value |",
                "|:------------|------:|",
                "| a           |  1 ms |",
                "| longer name |    22 |",
            ]
        );
    }

    #[test]
    fn a_short_row_is_padded_and_extra_cells_are_dropped() {
        let table = render_table(
            &["A", "B"],
            &[
                vec!["x".into()],
                vec!["y".into(), "z".into(), "extra".into()],
            ],
        );
        assert_eq!(table.lines().nth(2), Some("| x |   |"));
        assert_eq!(table.lines().nth(3), Some("| y | z |"));
    }

    fn stats(ms: u64) -> Option<Percentiles> {
        Percentiles::of(&[Duration::from_millis(ms)])
    }

    fn figures(cold_ms: u64, warm_ms: u64, rss: u64, zip: ZipSize) -> FunctionFigures {
        FunctionFigures {
            cold_start: stats(cold_ms),
            warm: stats(warm_ms),
            peak_rss: Some(rss),
            zip,
        }
    }

    fn report() -> Report {
        Report {
            functions: Some(FunctionReport {
                handler: figures(30, 1, 10_000_000, ZipSize::Bytes(5_000_000)),
                hello: figures(
                    10,
                    1,
                    3_000_000,
                    ZipSize::Missing("not built — run `cargo lambda build`".into()),
                ),
                python: figures(200, 2, 30_000_000, ZipSize::Bytes(500)),
            }),
            stack: Some(StackReport {
                edge_handshake: stats(5),
                echo_handshake: stats(1),
                edge_round_trip: stats(3),
                echo_round_trip: stats(1),
                broadcast: BTreeMap::from([
                    (100, Duration::from_millis(50)),
                    (1000, Duration::from_millis(1500)),
                ]),
                sustained: Some((1234.4, 20, 2000)),
                load: None,
            }),
            posts: None,
        }
    }

    #[test]
    fn targets_compare_the_figures_with_their_limits() {
        let verdicts: Vec<(String, Option<bool>)> = report()
            .targets()
            .into_iter()
            .map(|t| (t.name, t.met))
            .collect();
        assert_eq!(
            verdicts,
            [
                // 30 ms ≤ 200/5 = 40 ms
                (
                    "cold start ≤ 1/5 of the Python handler".to_string(),
                    Some(true)
                ),
                // 30 ms > 2 × 10 ms
                (
                    "cold start ≤ 2× the lambda_runtime floor".to_string(),
                    Some(false)
                ),
                (
                    "peak RSS ≤ 1/2 of the Python handler".to_string(),
                    Some(true)
                ),
                ("deployment zip ≤ 6 MB".to_string(), Some(true)),
                // 3 ms ≤ 3 × 1 ms + 1 ms
                (
                    "round trip p50 ≤ 3× the echo floor + the function's warm p50".to_string(),
                    Some(true)
                ),
                (
                    "broadcast to 1,000 connections under 1 s".to_string(),
                    Some(false)
                ),
            ]
        );
    }

    #[test]
    fn a_missing_figure_makes_its_target_not_applicable() {
        let mut report = report();
        if let Some(f) = report.functions.as_mut() {
            f.handler.zip = ZipSize::Missing("not built".into());
        }
        if let Some(s) = report.stack.as_mut() {
            s.broadcast.remove(&1000);
        }
        let na: Vec<String> = report
            .targets()
            .into_iter()
            .filter(|t| t.met.is_none())
            .map(|t| t.name)
            .collect();
        assert_eq!(
            na,
            [
                "deployment zip ≤ 6 MB",
                "broadcast to 1,000 connections under 1 s"
            ]
        );
        let rendered = report.render("test machine");
        assert!(
            rendered.contains("- [n/a] deployment zip ≤ 6 MB: not measured"),
            "{rendered}"
        );
        assert!(
            rendered.contains("\n\nZip not built — run `cargo lambda build`\n"),
            "{rendered}"
        );
        assert!(
            rendered.contains("- [MISSED] cold start ≤ 2× the lambda_runtime floor"),
            "{rendered}"
        );
    }

    #[test]
    fn the_report_has_one_row_per_figure_with_ratios_against_python() {
        let rows = report().rows();
        let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(
            names,
            [
                "Function cold start (spawn → first response), p50",
                "Function warm invocation, p50",
                "Function warm invocation, p99",
                "Function peak RSS (VmHWM)",
                "Function deployment zip",
                "WebSocket handshake, p50",
                "WebSocket handshake, p99",
                "Message round trip, p50",
                "Message round trip, p99",
                "Broadcast to 100 connections (until all have it)",
                "Broadcast to 1000 connections (until all have it)",
                "Sustained ping → pong (20 clients, 2000 messages)",
            ]
        );
        assert_eq!(rows[0][1..], ["30.00 ms", "10.00 ms", "200.00 ms", "0.15×"]);
        assert_eq!(rows[3][4], "0.33×");
        assert_eq!(rows[4][2], "not built");
        assert_eq!(rows[11][1], "1234 msg/s");
    }

    #[test]
    fn the_ping_event_has_the_api_gateway_shape() {
        let event = ping_event();
        assert_eq!(event["requestContext"]["routeKey"], "ping");
        assert_eq!(event["requestContext"]["eventType"], "MESSAGE");
        assert_eq!(event["requestContext"]["stage"], SINK_STAGE);
        assert_eq!(event["body"], ClientFrame::ping().to_text());
    }

    #[test]
    fn source_addresses_stay_on_loopback() {
        for i in [0, 1, 199, 200, 1000, usize::MAX] {
            assert!(source_address(i).is_loopback());
            assert_ne!(source_address(i), Ipv4Addr::new(127, 0, 0, 0));
        }
    }

    #[test]
    fn the_project_name_is_the_top_level_name() {
        assert_eq!(
            project_name("name: websocket-waf\nruntime: yaml\n"),
            Some("websocket-waf".into())
        );
        assert_eq!(
            project_name("runtime: yaml\nname: \"quoted\"\n"),
            Some("quoted".into())
        );
        assert_eq!(project_name("runtime: yaml\n  name: nested\n"), None);
        assert_eq!(project_name("name:\n"), None);
    }

    #[test]
    fn the_bench_config_raises_every_limit_under_the_project_namespace() {
        let config: Value = serde_json::from_str(&bench_stack_config("p")).unwrap_or(Value::Null);
        assert_eq!(config["config"]["p:rateLimit"], 2_000_000_000u64);
        assert_eq!(config["config"]["p:stageBurstLimit"], 100_000);
        assert_eq!(config["config"]["p:usagePlanRateLimit"], 100_000);
        assert_eq!(config["config"]["aws:region"], "us-east-1");
    }

    #[test]
    fn edge_urls_are_parsed_and_must_be_loopback() {
        let addr: SocketAddr = "127.0.0.1:8080"
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        assert_eq!(
            parse_ws_url("ws://127.0.0.1:8080"),
            Some((addr, "/".into()))
        );
        assert_eq!(
            parse_ws_url("ws://127.0.0.1:8080/prod"),
            Some((addr, "/prod".into()))
        );
        assert_eq!(parse_ws_url("ws://10.0.0.1:8080"), None);
        assert_eq!(parse_ws_url("wss://127.0.0.1:8080"), None);
        assert_eq!(parse_ws_url("ws://localhost:8080"), None);
    }

    #[tokio::test]
    async fn the_echo_floor_echoes() {
        let test = async {
            let server = EchoServer::start()?;
            let mut ws = connect(server.addr, "/", source_address(0)).await?;
            let took = echo(&mut ws, "hello").await?;
            close(ws).await;
            drop(server);
            anyhow::Ok(took)
        };
        let result = tokio::time::timeout(Duration::from_secs(20), test).await;
        assert!(matches!(result, Ok(Ok(_))), "{result:?}");
    }
}
