//! The benchmark's posts-per-second row: one `sendmessage` invocation of the
//! real function against a registry of N connections (the local DynamoDB)
//! and a @connections stand-in that answers each post after a fixed
//! latency, so the figure says what the fan-out does when the network is
//! the cost. Also the parts of it: the registry Scan on its own, and the
//! read units a Scan of those items costs in DynamoDB.
//!
//! In-flight values are swept through the function's `FANOUT_IN_FLIGHT`
//! (a function that does not read it runs at its own fixed value, which the
//! stand-in's peak in flight shows), each against two registries: the local
//! DynamoDB (Dynoxide, in the bench's process, on the same cores as the function) and a registry
//! stand-in that serves each Scan page from memory after a fixed latency, as
//! DynamoDB would across a network ([`super::registry_standin`]).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use futures_util::StreamExt;
use local_dynamodb::LocalDynamoDb;
use serde_json::Value;

use super::registry_standin::RegistryStandIn;
use super::standin::{ConnectionsStandIn, Tally};
use crate::console::EventBus;
use crate::lambda::invoke::Invoke;
use crate::lambda::{FunctionConfig, LambdaPool};

/// Options of the posts row.
#[derive(Debug, Clone, clap::Args)]
pub struct PostsArgs {
    /// Registered connections for the posts-per-second row (0: no row).
    #[arg(long, default_value_t = 0)]
    pub posts: usize,
    /// The stand-in's latency per post, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub posts_latency_ms: u64,
    /// In-flight limits to run (`FANOUT_IN_FLIGHT`), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [50, 200, 500])]
    pub posts_in_flight: Vec<usize>,
    /// The registry stand-in's latency per Scan page, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub posts_scan_latency_ms: u64,
}

/// Where a run's recipients are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registry {
    /// The local DynamoDB (Dynoxide).
    LocalDynamoDb,
    /// [`RegistryStandIn`], each Scan page after this latency.
    StandIn(Duration),
}

impl std::fmt::Display for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Registry::LocalDynamoDb => write!(f, "local DynamoDB"),
            Registry::StandIn(latency) => write!(f, "registry stand-in, {latency:?} a page"),
        }
    }
}

/// One run: the registry, the in-flight limit asked for, and what happened.
#[derive(Debug, Clone, PartialEq)]
pub struct PostsRun {
    pub registry: Registry,
    pub in_flight: usize,
    pub invocation: Duration,
    pub tally: Tally,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PostsFigures {
    pub connections: usize,
    pub latency: Duration,
    pub runs: Vec<PostsRun>,
    /// A full Scan (projection `connectionId`, pages of 1 MB) of the registry.
    pub scan: Duration,
    /// The items' size by DynamoDB's rules, and the read units an
    /// eventually consistent Scan of them costs.
    pub table_bytes: u64,
    pub scan_read_units: f64,
}

pub(super) const TABLE: &str = "bench-connections";
/// The claims table the function needs to start (one invocation posts the
/// whole broadcast here, so nothing is claimed; the scan-history row's
/// continuations claim in it).
pub(super) const CLAIMS: &str = "bench-claims";
pub(super) const STAGE: &str = "bench";
const STEP: Duration = Duration::from_secs(120);

/// The `i`th registered connection's id.
fn id(i: usize) -> String {
    format!("Bench{i:010}Cc=")
}

/// An item as `$connect` writes it, with a browser-sized user agent.
fn item(i: usize) -> std::collections::HashMap<String, AttributeValue> {
    let now = chrono::Utc::now();
    let s = |v: String| AttributeValue::S(v);
    std::collections::HashMap::from([
        ("connectionId".to_string(), s(id(i))),
        ("connectedAt".to_string(), s(now.to_rfc3339())),
        (
            "expiresAt".to_string(),
            AttributeValue::N((now.timestamp() + 7200).to_string()),
        ),
        ("sourceIp".to_string(), s(format!("198.51.{}.{}", i / 250 % 250, i % 250))),
        (
            "userAgent".to_string(),
            s("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36".into()),
        ),
    ])
}

/// An item's size as DynamoDB counts it: names plus values (strings in
/// UTF-8 bytes, numbers about one byte per two digits plus one).
pub fn item_bytes(item: &std::collections::HashMap<String, AttributeValue>) -> u64 {
    item.iter()
        .map(|(name, value)| {
            name.len() as u64
                + match value {
                    AttributeValue::S(s) => s.len() as u64,
                    AttributeValue::N(n) => n.len().div_ceil(2) as u64 + 1,
                    _ => 0,
                }
        })
        .sum()
}

/// Read units of an eventually consistent Scan over `bytes` of items in
/// pages of at most 1 MB: half a unit per 4 KB, rounded up per page.
pub fn scan_read_units(bytes: u64) -> f64 {
    const PAGE: u64 = 1024 * 1024;
    let pages = bytes / PAGE;
    let rest = bytes % PAGE;
    let per = |b: u64| b.div_ceil(4096) as f64 * 0.5;
    pages as f64 * per(PAGE) + per(rest)
}

pub(super) async fn fill(db: &LocalDynamoDb, n: usize) -> anyhow::Result<u64> {
    let client = db.client();
    let bytes: u64 = (0..n).map(|i| item_bytes(&item(i))).sum();
    let batches: Vec<Vec<usize>> = (0..n)
        .collect::<Vec<_>>()
        .chunks(25)
        .map(<[usize]>::to_vec)
        .collect();
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(batches)
        .map(|batch| {
            let client = client.clone();
            async move {
                let requests = batch
                    .iter()
                    .map(|&i| {
                        let put = PutRequest::builder().set_item(Some(item(i))).build()?;
                        Ok(WriteRequest::builder().put_request(put).build())
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let out = client
                    .batch_write_item()
                    .request_items(TABLE, requests)
                    .send()
                    .await
                    .context("BatchWriteItem")?;
                if out.unprocessed_items().is_some_and(|u| !u.is_empty()) {
                    bail!("the local DynamoDB left items unprocessed");
                }
                Ok(())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<()>>()?;
    Ok(bytes)
}

async fn full_scan(db: &LocalDynamoDb) -> anyhow::Result<(usize, Duration)> {
    let started = Instant::now();
    let mut pages = db
        .client()
        .scan()
        .table_name(TABLE)
        .projection_expression("#id")
        .expression_attribute_names("#id", "connectionId")
        .into_paginator()
        .send();
    let mut count = 0;
    while let Some(page) = pages.next().await {
        count += page.context("Scan")?.items().len();
    }
    Ok((count, started.elapsed()))
}

/// A `sendmessage` from the registry's first connection, as API Gateway sends it.
pub(super) fn send_message_event(standin: &ConnectionsStandIn) -> anyhow::Result<Value> {
    use aws_lambda_events::apigw::{
        ApiGatewayWebsocketProxyRequest, ApiGatewayWebsocketProxyRequestContext,
    };
    let now = chrono::Utc::now().timestamp_millis();
    let mut context = ApiGatewayWebsocketProxyRequestContext::default();
    context.route_key = Some(protocol::routes::SEND_MESSAGE.to_string());
    context.event_type = Some("MESSAGE".to_string());
    context.message_direction = Some("IN".to_string());
    context.connection_id = Some("Bench0000000000Cc=".to_string());
    context.message_id = Some(format!("bench-{}", uuid::Uuid::new_v4()));
    context.request_id = Some("YmVuY2gtcmVxdWVzdA=".to_string());
    context.connected_at = now;
    context.request_time_epoch = now;
    context.domain_name = Some(
        standin
            .endpoint()
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string(),
    );
    context.stage = Some(STAGE.to_string());
    context.apiid = Some("bench".to_string());
    context.identity.source_ip = Some("127.0.0.1".to_string());
    let mut event = ApiGatewayWebsocketProxyRequest::default();
    event.body = Some(protocol::ClientFrame::send_message(Value::from("bench")).to_text());
    event.request_context = context;
    serde_json::to_value(event).context("encoding the bench's sendmessage event as JSON")
}

/// One `sendmessage` invocation with its recipients in the registry at
/// `dynamodb`: how long it took, and what the stand-in saw.
async fn run(
    function: &Path,
    dynamodb: &str,
    standin: &ConnectionsStandIn,
    in_flight: usize,
) -> anyhow::Result<(Duration, Tally)> {
    let env = [
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "local".into()),
        ("AWS_SECRET_ACCESS_KEY", "local".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_LAMBDA_LOG_LEVEL", "WARN".into()),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("CONNECTIONS_TABLE", TABLE.into()),
        ("CLAIMS_TABLE", CLAIMS.into()),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb.to_string()),
        ("MANAGEMENT_ENDPOINT", standin.endpoint().to_string()),
        ("FANOUT_IN_FLIGHT", in_flight.to_string()),
    ];
    let config = FunctionConfig {
        binary: function.to_path_buf(),
        name: "posts-bench".into(),
        env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        memory_mb: 256,
        timeout: Duration::from_secs(60),
        max_concurrency: 1,
    };
    let pool = LambdaPool::start(config, EventBus::new())
        .await
        .context("starting the function")?;
    let started = Instant::now();
    let response = tokio::time::timeout(STEP, pool.invoke(send_message_event(standin)?)).await;
    let invocation = started.elapsed();
    pool.shutdown().await;
    let response = response
        .context("the sendmessage invocation did not finish in time")?
        .context("the sendmessage invocation failed")?;
    if response.get("statusCode").and_then(Value::as_u64) != Some(200) {
        bail!("sendmessage answered {response}");
    }
    Ok((invocation, standin.tally()))
}

/// A local DynamoDB in `region` with the bench's connections and claims tables.
pub(super) async fn bench_tables(region: &str) -> anyhow::Result<LocalDynamoDb> {
    let db = LocalDynamoDb::start_in_region(region)
        .await
        .context("starting the local DynamoDB")?;
    db.create_table(TABLE, "connectionId")
        .await
        .context("creating the bench table")?;
    db.create_table(CLAIMS, "claimId")
        .await
        .context("creating the bench's claims table")?;
    Ok(db)
}

/// Runs the row: fills the registry, then one invocation per in-flight value.
pub async fn measure(function: &Path, args: &PostsArgs) -> anyhow::Result<PostsFigures> {
    let n = args.posts;
    let latency = Duration::from_millis(args.posts_latency_ms);
    let db = bench_tables("us-east-1").await?;
    eprintln!("bench: posts, filling the registry with {n} connections");
    let table_bytes = tokio::time::timeout(STEP * 5, fill(&db, n))
        .await
        .context("filling the registry took too long")??;
    let (count, scan) = tokio::time::timeout(STEP, full_scan(&db))
        .await
        .context("the Scan took too long")??;
    if count != n {
        bail!("the registry holds {count} items, not {n}");
    }
    let standin = ConnectionsStandIn::start(latency, STAGE)?;
    let scan_latency = Duration::from_millis(args.posts_scan_latency_ms);
    let registry_standin = RegistryStandIn::start((0..n).map(id).collect(), scan_latency)?;
    let mut runs = Vec::new();
    for (registry, endpoint) in [
        (Registry::LocalDynamoDb, db.endpoint()),
        (Registry::StandIn(scan_latency), registry_standin.endpoint()),
    ] {
        for &in_flight in &args.posts_in_flight {
            standin.reset();
            eprintln!(
                "bench: posts, {n} recipients from the {registry}, {in_flight} in flight, {latency:?} each"
            );
            let (invocation, tally) = run(function, endpoint, &standin, in_flight).await?;
            runs.push(PostsRun {
                registry,
                in_flight,
                invocation,
                tally,
            });
        }
    }
    Ok(PostsFigures {
        connections: n,
        latency,
        runs,
        scan,
        table_bytes,
        scan_read_units: scan_read_units(table_bytes),
    })
}

/// The figures as table rows: label, value.
pub fn rows(f: &PostsFigures) -> Vec<(String, String)> {
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let mut rows = vec![
        (
            format!(
                "Registry Scan of {} connections (local DynamoDB)",
                f.connections
            ),
            ms(f.scan),
        ),
        (
            format!(
                "Scan read units per broadcast ({} bytes of items)",
                f.table_bytes
            ),
            format!("{:.1} RRU", f.scan_read_units),
        ),
    ];
    for run in &f.runs {
        rows.push((
            format!(
                "Posts/s, one invocation, {} in flight asked, {:?} stand-in, {}",
                run.in_flight, f.latency, run.registry
            ),
            format!(
                "{} ({} posts, {} distinct, peak {} in flight, invocation {})",
                run.tally
                    .rate()
                    .map_or("—".into(), |r| format!("{r:.0} /s")),
                run.tally.posts,
                run.tally.distinct,
                run.tally.peak_in_flight,
                ms(run.invocation)
            ),
        ));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_sizes_follow_dynamodbs_rules() {
        let item = std::collections::HashMap::from([
            ("ab".to_string(), AttributeValue::S("xyz".into())),
            ("n".to_string(), AttributeValue::N("1234567".into())),
        ]);
        assert_eq!(item_bytes(&item), 2 + 3 + 1 + 5);
    }

    #[test]
    fn read_units_are_half_a_unit_per_4_kb_per_page() {
        assert_eq!(scan_read_units(0), 0.0);
        assert_eq!(scan_read_units(1), 0.5);
        assert_eq!(scan_read_units(4096 * 3), 1.5);
        assert_eq!(scan_read_units(1024 * 1024 * 2 + 1), 128.0 * 2.0 + 0.5);
    }
}
