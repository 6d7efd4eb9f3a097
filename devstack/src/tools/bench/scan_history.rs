//! The benchmark's "Scan after history" row: what one broadcast's Scan of
//! the connections table reads after many earlier broadcasts.
//!
//! A broadcast that continues past one invocation claims each continuation
//! once. Claims used to be items of the connections table, so every later
//! broadcast's Scan read them too, and the cost of a broadcast grew with the
//! number before it. This row runs `--scan-history` broadcasts through the
//! real function (a pool of processes, the local DynamoDB, the local Lambda
//! Invoke API for the continuations, a @connections stand-in that counts the
//! posts) with a per-invocation budget small enough that every broadcast
//! continues and claims, then Scans the connections table as a broadcast
//! does and reports the items it read per registered connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::StreamExt;
use local_dynamodb::LocalDynamoDb;
use serde_json::Value;
use tokio::net::TcpListener;

use super::posts::{CLAIMS, STAGE, TABLE, bench_tables, fill, send_message_event};
use super::standin::ConnectionsStandIn;
use crate::console::EventBus;
use crate::lambda::invoke::Invoke;
use crate::lambda::invoke_api::{AsyncDelivery, LambdaApi};
use crate::lambda::{FunctionConfig, LambdaPool};

/// Options of the row.
#[derive(Debug, Clone, clap::Args)]
pub struct ScanHistoryArgs {
    /// Broadcasts to run before the Scan is measured (0: no row).
    #[arg(long, default_value_t = 0)]
    pub scan_history: usize,
    /// Registered connections (one of them the sender of every broadcast, which gets it too).
    #[arg(long, default_value_t = 100)]
    pub scan_connections: usize,
    /// The function's `FANOUT_PER_INVOCATION` for these broadcasts: small,
    /// so that each continues (and claims) several times.
    #[arg(long, default_value_t = 25)]
    pub scan_per_invocation: usize,
    /// Broadcasts sent at once.
    #[arg(long, default_value_t = 4)]
    pub scan_concurrent: usize,
}

/// What one Scan of a table read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanCount {
    /// Items the Scan read (`ScannedCount`, summed over its pages).
    pub scanned: usize,
    /// Items it returned (`Count`).
    pub returned: usize,
    pub pages: usize,
}

/// The row's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanHistoryFigures {
    pub connections: usize,
    pub broadcasts: usize,
    pub per_invocation: usize,
    /// The connections table's Scan before the first broadcast and after the last.
    pub before: ScanCount,
    pub after: ScanCount,
    /// Items in the claims table after the broadcasts: the continuations claimed.
    pub claims: usize,
    /// Posts the stand-in answered, and the fewest and most any recipient got.
    pub posts: usize,
    pub per_recipient: Option<(u32, u32)>,
    /// From the first broadcast to the last post.
    pub took: Duration,
}

impl ScanHistoryFigures {
    /// Items one broadcast's Scan reads per registered connection, after the history.
    pub fn read_per_connection(&self) -> Option<f64> {
        (self.connections > 0).then(|| self.after.scanned as f64 / self.connections as f64)
    }

    /// Posts every recipient should have had: one per broadcast each (the
    /// sender is a recipient too, as in a chat room).
    pub fn expected_posts(&self) -> usize {
        self.broadcasts * self.connections
    }
}

const FUNCTION: &str = "scan-history-bench";
const REGION: &str = "us-east-1";
/// The stand-in's latency per post: a little, so posts overlap as on a network.
const POST_LATENCY: Duration = Duration::from_millis(2);
/// Longest wait for one broadcast's own invocation, and for the last
/// continuation's posts after the last broadcast.
const STEP: Duration = Duration::from_secs(120);

/// A full Scan of `table` in pages of 1 MB, as a broadcast's is: what it read.
pub async fn scan(db: &LocalDynamoDb, table: &str) -> anyhow::Result<ScanCount> {
    let mut pages = db.client().scan().table_name(table).into_paginator().send();
    let mut count = ScanCount::default();
    while let Some(page) = pages.next().await {
        let page = page.with_context(|| format!("Scan of {table}"))?;
        count.scanned += usize::try_from(page.scanned_count()).unwrap_or(0);
        count.returned += usize::try_from(page.count()).unwrap_or(0);
        count.pages += 1;
    }
    Ok(count)
}

/// The function as the stack runs it, with its continuations invoked
/// through the local Invoke API at `lambda`.
fn config(
    function: &std::path::Path,
    dynamodb: &str,
    standin: &ConnectionsStandIn,
    lambda: SocketAddr,
    per_invocation: usize,
) -> FunctionConfig {
    let env = [
        ("AWS_REGION", REGION.to_string()),
        ("AWS_DEFAULT_REGION", REGION.to_string()),
        ("AWS_ACCESS_KEY_ID", crate::sigv4::ACCESS_KEY_ID.into()),
        (
            "AWS_SECRET_ACCESS_KEY",
            crate::sigv4::SECRET_ACCESS_KEY.into(),
        ),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_LAMBDA_LOG_LEVEL", "WARN".into()),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("CONNECTIONS_TABLE", TABLE.into()),
        ("CLAIMS_TABLE", CLAIMS.into()),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb.to_string()),
        ("AWS_ENDPOINT_URL_LAMBDA", format!("http://{lambda}")),
        ("MANAGEMENT_ENDPOINT", standin.endpoint().to_string()),
        ("FANOUT_PER_INVOCATION", per_invocation.to_string()),
    ];
    FunctionConfig {
        binary: function.to_path_buf(),
        name: FUNCTION.into(),
        env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        memory_mb: 256,
        timeout: Duration::from_secs(30),
        max_concurrency: 4,
    }
}

/// Runs the row: fills the registry, Scans it, runs the broadcasts, waits
/// for every post, Scans again.
pub async fn measure(
    function: &std::path::Path,
    args: &ScanHistoryArgs,
) -> anyhow::Result<ScanHistoryFigures> {
    let (c, broadcasts) = (args.scan_connections, args.scan_history);
    if c < 2 || args.scan_per_invocation == 0 {
        bail!(
            "--scan-connections must be at least 2 and --scan-per-invocation at least 1 (got {c} and {})",
            args.scan_per_invocation
        );
    }
    let db = bench_tables(REGION).await?;
    tokio::time::timeout(STEP, fill(&db, c))
        .await
        .context("filling the registry took too long")??;
    let before = scan(&db, TABLE).await?;
    let standin = ConnectionsStandIn::start(POST_LATENCY, STAGE)?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the bench's Lambda Invoke API")?;
    let lambda = listener.local_addr().context("the Invoke API's address")?;
    let pool = LambdaPool::start(
        config(
            function,
            db.endpoint(),
            &standin,
            lambda,
            args.scan_per_invocation,
        ),
        EventBus::new(),
    )
    .await
    .context("starting the function")?;
    let api = LambdaApi::new(
        FUNCTION,
        REGION,
        pool.clone() as Arc<dyn Invoke>,
        AsyncDelivery::default(),
    );
    let server = tokio::spawn(api.clone().serve(listener));
    eprintln!(
        "bench: scan history, {broadcasts} broadcasts to {c} connections, {} posts per invocation",
        args.scan_per_invocation
    );
    let started = Instant::now();
    let run = broadcast_all(&pool, &standin, broadcasts, args.scan_concurrent).await;
    let expected = broadcasts * c;
    let deadline = Instant::now() + STEP;
    while run.is_ok() && standin.tally().posts < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    let drained = api.drain(Duration::from_secs(10)).await;
    server.abort();
    pool.shutdown().await;
    run?;
    if !drained {
        eprintln!("bench: scan history, continuations still queued after the last post");
    }
    let after = scan(&db, TABLE).await?;
    let claims = scan(&db, CLAIMS).await?.returned;
    let tally = standin.tally();
    Ok(ScanHistoryFigures {
        connections: c,
        broadcasts,
        per_invocation: args.scan_per_invocation,
        before,
        after,
        claims,
        posts: tally.posts,
        per_recipient: standin.per_id_range(),
        took,
    })
}

/// `n` `sendmessage` invocations, `at_once` at a time, each answered 200.
async fn broadcast_all(
    pool: &Arc<LambdaPool>,
    standin: &ConnectionsStandIn,
    n: usize,
    at_once: usize,
) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(0..n)
        .map(|i| async move {
            let event = send_message_event(standin)?;
            let response = tokio::time::timeout(STEP, pool.invoke(event))
                .await
                .with_context(|| format!("broadcast {i} did not finish in time"))?
                .with_context(|| format!("broadcast {i} failed"))?;
            if response.get("statusCode").and_then(Value::as_u64) != Some(200) {
                bail!("broadcast {i}: sendmessage answered {response}");
            }
            Ok(())
        })
        .buffer_unordered(at_once.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// The figures as table rows: label, value.
pub fn rows(f: &ScanHistoryFigures) -> Vec<(String, String)> {
    let (c, b) = (f.connections, f.broadcasts);
    let per = |s: &ScanCount| format!("{:.3}", s.scanned as f64 / c.max(1) as f64);
    vec![
        (
            format!("Scan of {c} connections before any broadcast: items read (÷ connections)"),
            format!("{} ({})", f.before.scanned, per(&f.before)),
        ),
        (
            format!(
                "Scan after {b} broadcasts ({} posts per invocation): items read (÷ connections)",
                f.per_invocation
            ),
            format!("{} ({})", f.after.scanned, per(&f.after)),
        ),
        (
            format!("Continuations claimed in those {b} broadcasts (claims table)"),
            f.claims.to_string(),
        ),
        (
            format!("Posts in those {b} broadcasts: made / expected (fewest–most per recipient)"),
            format!(
                "{} / {} ({})",
                f.posts,
                f.expected_posts(),
                f.per_recipient
                    .map_or("—".into(), |(lo, hi)| format!("{lo}–{hi}"))
            ),
        ),
        (
            format!("{b} broadcasts, first sent to last post"),
            format!("{:.1} s", f.took.as_secs_f64()),
        ),
    ]
}
