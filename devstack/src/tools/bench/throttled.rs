//! The benchmark's throttled-broadcast row: one broadcast to thousands of
//! connections under a lowered account request rate (`--throttled 5000
//! --throttled-rate 1000`: AWS's quota is 10,000/s; the local stack plays
//! it with `--account-rate-limit`). Most of the function's posts are
//! answered 429 at first; it hands them to later continuations until they
//! go through. Reports the time until the last receiver has the message,
//! how many never got it or got it twice, and from the stack's log how many
//! posts were refused and tried again and how many loss-metric lines the
//! function wrote (`RecipientsNotReached`).

use anyhow::Context as _;

use super::load::{self, LoadArgs, LoadFigures, Target, Via};
use super::{BenchEnv, BenchStack};

/// Options of the row.
#[derive(Debug, Clone, clap::Args)]
pub struct ThrottledArgs {
    /// Connections for the throttled broadcast, the sender among them (0: no row).
    #[arg(long, default_value_t = 0)]
    pub throttled: usize,
    /// The account's request rate for that row (`--account-rate-limit`), per second.
    #[arg(long, default_value_t = 1_000)]
    pub throttled_rate: u32,
    /// Longest wait for the broadcast to reach everyone, in seconds.
    #[arg(long, default_value_t = 120)]
    pub throttled_timeout: u64,
}

/// The row's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottledFigures {
    pub rate: u32,
    pub load: LoadFigures,
    /// What the stack's log shows of the function's side.
    pub log: LogCounts,
}

/// Lines of the stack's log that show the throttle and any loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogCounts {
    /// Posts answered 429 and handed on to be tried again.
    pub refused_posts: usize,
    /// The function's `RecipientsNotReached` metric lines (one per reason and invocation).
    pub not_reached_lines: usize,
}

/// Counts the lines of a stack log that name a refused post or a loss.
pub fn count_log(log: &str) -> LogCounts {
    let mut counts = LogCounts::default();
    for line in log.lines() {
        if line.contains("post refused; to be tried again") {
            counts.refused_posts += 1;
        }
        if line.contains("RecipientsNotReached") {
            counts.not_reached_lines += 1;
        }
    }
    counts
}

/// Starts a stack with the account rate lowered, broadcasts once across
/// `--throttled` connections (straight to the API layer), stops it.
pub(super) async fn measure(
    env: &BenchEnv,
    args: &ThrottledArgs,
) -> anyhow::Result<ThrottledFigures> {
    let flags = [
        "--account-rate-limit".to_string(),
        args.throttled_rate.to_string(),
    ];
    let stack = BenchStack::start(env, &flags).await?;
    eprintln!(
        "bench: throttled, {} connections under an account rate of {}/s",
        args.throttled, args.throttled_rate
    );
    let target = Target {
        addr: stack.api,
        path: stack.api_path.clone(),
        api_key: Some(stack.api_key.clone()),
    };
    let load_args = LoadArgs {
        load: args.throttled,
        load_handshakes: 32,
        load_timeout: args.throttled_timeout,
        load_via: Via::Api,
    };
    let measured = load::measure(&target, stack.child.id(), &load_args).await;
    let log_path = stack.log.clone();
    stack.shutdown().await;
    let figures = measured.with_context(|| {
        format!(
            "the throttled broadcast across {} connections",
            args.throttled
        )
    })?;
    let log = std::fs::read_to_string(&log_path)
        .with_context(|| format!("reading the stack's log {}", log_path.display()))?;
    Ok(ThrottledFigures {
        rate: args.throttled_rate,
        load: figures,
        log: count_log(&log),
    })
}

/// The figures as table rows: label, value.
pub fn rows(f: &ThrottledFigures) -> Vec<(String, String)> {
    let n = f.load.connections;
    let others = n.saturating_sub(1);
    let at = format!("under an account rate of {}/s", f.rate);
    vec![
        (
            format!("Broadcast across {n} connections {at}: until the last of {others} has it"),
            f.load
                .all_have_it
                .map_or("—".into(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3)),
        ),
        (
            format!("Broadcast across {n} connections {at}: missed / reached twice"),
            format!("{} / {}", f.load.missed, f.load.twice),
        ),
        (
            format!("Broadcast across {n} connections {at}: posts refused (429) and tried again"),
            f.log.refused_posts.to_string(),
        ),
        (
            format!("Broadcast across {n} connections {at}: `RecipientsNotReached` lines"),
            f.log.not_reached_lines.to_string(),
        ),
    ]
}
