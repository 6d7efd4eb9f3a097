//! The report: the figures a run measured, the targets they are held to,
//! and the rows of its table (the formatting is in `format.rs`).

use super::*;

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
    /// A ratio in the local stack's favour that must be at least 1×.
    pub(super) fn ahead(name: &str, ratio: Option<f64>) -> Target {
        Target {
            name: name.to_string(),
            detail: ratio.map_or("not measured".into(), |r| format!("{r:.2}×")),
            met: ratio.map(|r| r >= 1.0),
        }
    }

    pub(super) fn at_most(
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
    pub(super) fn bytes(&self) -> Option<u64> {
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
    pub load: Option<super::load::LoadFigures>,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub functions: Option<FunctionReport>,
    pub stack: Option<StackReport>,
    /// The posts-per-second row (`--posts N`).
    pub posts: Option<super::posts::PostsFigures>,
    /// What a broadcast's Scan reads after many broadcasts (`--scan-history N`).
    pub scan_history: Option<super::scan_history::ScanHistoryFigures>,
    /// One broadcast under a lowered account rate (`--throttled N`).
    pub throttled: Option<super::throttled::ThrottledFigures>,
    /// The client rows against serverless-offline too (`--peers`).
    pub peers: Option<super::peers::PeerFigures>,
}

pub(super) const HEADER: [&str; 5] = [
    "Benchmark",
    "websocket-handler / devstack",
    "Floor",
    "Python (AWS sample, pong posted)",
    "Rust ÷ Python",
];

pub(super) fn cell_stats(s: &Option<Percentiles>, pick: fn(&Percentiles) -> Duration) -> String {
    s.as_ref()
        .map_or("—".to_string(), |s| format_duration(pick(s)))
}

pub(super) fn stat_secs(
    s: &Option<Percentiles>,
    pick: fn(&Percentiles) -> Duration,
) -> Option<f64> {
    s.as_ref().map(|s| secs(pick(s)))
}

pub(super) fn zip_cell(z: &ZipSize) -> String {
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
            rows.extend(function_rows(f));
        }
        if let Some(s) = &self.stack {
            rows.extend(stack_rows(s));
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
                "cold start ≤ 1.5× the lambda_runtime floor",
                handler_cold,
                hello_cold.map(|h| h * 1.5),
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
        out.extend(self.scale_targets());
        out
    }

    pub fn render(&self, machine: &str) -> String {
        // A scale-only run has none of the first table's rows: no empty table.
        let rows = self.rows();
        let mut out = if rows.is_empty() {
            String::new()
        } else {
            render_table(&HEADER, &rows)
        };
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
            scale.extend(super::load::rows(load));
        }
        if let Some(posts) = &self.posts {
            scale.extend(super::posts::rows(posts));
        }
        if let Some(history) = &self.scan_history {
            scale.extend(super::scan_history::rows(history));
        }
        if let Some(throttled) = &self.throttled {
            scale.extend(super::throttled::rows(throttled));
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
        if let Some(peers) = &self.peers {
            out.push_str("\n\n");
            out.push_str(&peers.render());
        }
        out.push_str("\n\nTargets:\n");
        let mut targets = self.targets();
        if let Some(peers) = &self.peers {
            targets.extend(peers.targets());
        }
        for t in targets {
            out.push_str(&t.render());
            out.push('\n');
        }
        out.push_str(&format!("\nMachine: {machine}\n"));
        out
    }
}

/// "2 CPUs (model), 23.4 GiB RAM, Linux x.y, arch; load average …" from /proc; best effort.
pub(super) fn machine_line() -> String {
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

/// The function half's rows: the handler, the floor and Python side by side.
fn function_rows(f: &FunctionReport) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
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
    rows
}

/// The local stack's rows: against the echo floor where it has one.
fn stack_rows(s: &StackReport) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
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
        // The scale-only stack measured none of these.
        if edge.is_none() && echo.is_none() {
            continue;
        }
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
    rows
}
