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
//! And the scale rows, each asked for by its option: thousands of
//! connections and one broadcast (`--load`, `load.rs`), posts per second of
//! one invocation (`--posts`, `posts.rs`), what a broadcast's Scan reads
//! after many broadcasts (`--scan-history`, `scan_history.rs`) and a
//! broadcast under a lowered account request rate (`--throttled`,
//! `throttled.rs`).
//!
//! Every load loop is bounded and every await that waits on the network has
//! a timeout; everything listens and connects on loopback only. The pure
//! parts (the table, the targets) are unit tested below; the figures themselves are never asserted in tests.

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
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio_tungstenite::tungstenite::Message;

mod build;
mod clients;
mod cpu;
mod format;
mod functions;
pub mod load;
pub mod peers;
pub mod posts;
pub mod registry_standin;
mod report;
mod scale_targets;
pub mod scan_history;
mod stack;
pub mod standin;
#[cfg(test)]
mod tests;
mod thread_server;
pub mod throttled;

use thread_server::ThreadServer;

use build::*;
use clients::*;
pub use format::*;
use functions::*;
pub use report::*;
pub use stack::*;

use crate::lambda::invoke::Invoke;
use crate::lambda::{FunctionConfig, LambdaPool};
use crate::tools::client::source_address;
use crate::tools::percentiles::Percentiles;

/// How long any single network step of the benchmark may take before the
/// run fails instead of hanging.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Targets from the benchmark issue.
const ZIP_LIMIT_BYTES: u64 = 6_000_000;
const BROADCAST_LIMIT: Duration = Duration::from_secs(1);
/// The broadcast size the 1 s target applies to.
const BROADCAST_TARGET_SIZE: usize = 1000;
/// The load row's target: 10,000 connections, the last recipient within 2 s.
const LOAD_TARGET_SIZE: usize = 10_000;
const LOAD_BROADCAST_LIMIT: Duration = Duration::from_secs(2);
/// Items a broadcast's Scan may read per registered connection, however
/// many broadcasts came before.
const SCAN_READ_LIMIT: f64 = 1.01;
/// The throttled row's target: this many recipients at this account rate.
const THROTTLED_RECIPIENTS: usize = 5_000;
const THROTTLED_RATE: u32 = 1_000;

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
    pub load: load::LoadArgs,
    /// Posts per second of one `sendmessage` invocation against a
    /// @connections stand-in with a fixed latency: `--posts 10000`.
    #[command(flatten)]
    pub posts: posts::PostsArgs,
    /// What one broadcast's Scan reads after many broadcasts: `--scan-history 1000`.
    #[command(flatten)]
    pub scan_history: scan_history::ScanHistoryArgs,
    /// One broadcast under a lowered account request rate: `--throttled 5001`.
    #[command(flatten)]
    pub throttled: throttled::ThrottledArgs,
    /// The client rows against serverless-offline too: `--peers`.
    #[command(flatten)]
    pub peers: peers::PeersArgs,
    /// Only the scale rows (`--load`, `--posts`, `--scan-history`, `--throttled`), none of the others.
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
            posts::measure(&env.binary("websocket-handler")?, &args.posts)
                .await
                .context("the posts-per-second row")?,
        );
    }
    if args.scan_history.scan_history > 0 {
        report.scan_history = Some(
            scan_history::measure(&env.binary("websocket-handler")?, &args.scan_history)
                .await
                .context("the scan-history row")?,
        );
    }
    if args.throttled.throttled > 0 {
        report.throttled = Some(
            throttled::measure(&env, &args.throttled)
                .await
                .context("the throttled-broadcast row")?,
        );
    }
    if args.peers.peers {
        report.peers = Some(
            peers::measure(&args, &env)
                .await
                .context("the peer comparison (--peers)")?,
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
    /// The repository's program as the dev stack configures it: the project
    /// name and the function's environment come from it, as for `devstack up`.
    fn program(&self) -> anyhow::Result<pulumi_program::Topology> {
        pulumi_program::load(&self.root, "dev").with_context(|| {
            format!(
                "reading the Pulumi program in {} (stack dev)",
                self.root.display()
            )
        })
    }

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
