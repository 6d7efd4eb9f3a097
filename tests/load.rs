//! Load: 100 concurrent clients each broadcasting 10 messages; every client
//! receives every other client's messages exactly once (some through the
//! broadcast's continuations). The stack runs with
//! throttling that allows this rate (set in its Pulumi stack config).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use e2e::{Client, Incoming, Stack, StackConfig, within};
use protocol::{ClientFrame, ServerFrame};
use serde_json::json;

const CLIENTS: usize = 100;
const MESSAGES: usize = 10;
/// Longest silence a client may see while broadcasts are in flight.
const FRAME_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on the whole exchange (99,000 deliveries on a two-core machine).
const LOAD_TIMEOUT: Duration = Duration::from_secs(600);

async fn run_client(
    index: usize,
    mut client: Client,
    start: Arc<tokio::sync::Barrier>,
) -> anyhow::Result<Client> {
    start.wait().await;
    for seq in 0..MESSAGES {
        client
            .send(&ClientFrame::send_message(
                json!({"client": index, "seq": seq}),
            ))
            .await?;
    }
    let expected = (CLIENTS - 1) * MESSAGES;
    let mut seen = HashSet::with_capacity(expected);
    let mut sent = Vec::with_capacity(MESSAGES);
    while seen.len() < expected || sent.len() < MESSAGES {
        let frame = client.recv_within(FRAME_TIMEOUT).await.with_context(|| {
            format!(
                "client {index} had {} of {expected} messages (missing: {}) and {} of {MESSAGES} \
                 sent frames (recipients: {sent:?})",
                seen.len(),
                missing(index, &seen),
                sent.len()
            )
        })?;
        match frame {
            Incoming::Server(ServerFrame::Message { data, .. }) => {
                let key = (data["client"].as_u64(), data["seq"].as_u64());
                let (Some(from), Some(seq)) = key else {
                    bail!("client {index}: message with unexpected data {data}")
                };
                ensure!(
                    from != index as u64,
                    "client {index} received its own message {seq}"
                );
                ensure!(
                    seen.insert((from, seq)),
                    "client {index} received message {seq} of client {from} twice"
                );
            }
            Incoming::Server(ServerFrame::Sent { recipients }) => sent.push(recipients),
            other => bail!("client {index}: unexpected {other:?}"),
        }
    }
    // `sent` counts what the sender's own invocation reached; under this load
    // a broadcast may continue in further invocations (docs/scale.md), so
    // every message arriving exactly once above is the proof of delivery.
    ensure!(
        sent.iter().all(|&r| r < CLIENTS),
        "client {index}: a broadcast cannot reach more than the {} others, sent frames said {sent:?}",
        CLIENTS - 1
    );
    Ok(client)
}

/// The messages `index` has not received, as `client/seq`, the first few.
fn missing(index: usize, seen: &HashSet<(u64, u64)>) -> String {
    let absent: Vec<String> = (0..CLIENTS as u64)
        .filter(|&from| from != index as u64)
        .flat_map(|from| (0..MESSAGES as u64).map(move |seq| (from, seq)))
        .filter(|key| !seen.contains(key))
        .map(|(from, seq)| format!("{from}/{seq}"))
        .collect();
    let shown = absent
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    match absent.len() {
        n if n > 10 => format!("{shown} and {} more", n - 10),
        _ => shown,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_receives_every_message_exactly_once() -> anyhow::Result<()> {
    let stack = Stack::start_with(StackConfig::new().generous_throttling()).await?;
    stack.explain(
        async {
            let mut clients = Vec::with_capacity(CLIENTS);
            for i in 0..CLIENTS {
                clients.push(
                    Client::connect(stack.edge())
                        .await
                        .with_context(|| format!("client {i}"))?,
                );
            }
            let start = Arc::new(tokio::sync::Barrier::new(CLIENTS));
            let tasks: Vec<_> = clients
                .into_iter()
                .enumerate()
                .map(|(i, client)| tokio::spawn(run_client(i, client, start.clone())))
                .collect();
            let mut done = Vec::with_capacity(CLIENTS);
            let results = within(
                LOAD_TIMEOUT,
                "every client to receive every message",
                futures_util::future::join_all(tasks),
            )
            .await?;
            // Every failing client is reported: which messages went missing
            // where is what tells a lost post from a slow one.
            let mut failures = Vec::new();
            for result in results {
                match result.context("a client task panicked")? {
                    Ok(client) => done.push(client),
                    Err(error) => failures.push(format!("{error:#}")),
                }
            }
            ensure!(
                failures.is_empty(),
                "{} of {CLIENTS} clients failed:\n{}",
                failures.len(),
                failures.join("\n")
            );
            // Every expected message has arrived; a duplicate still in flight
            // would arrive before the pong.
            for (i, client) in done.iter_mut().enumerate() {
                client
                    .ping()
                    .await
                    .with_context(|| format!("client {i} after the load (a late duplicate?)"))?;
            }
            for client in done {
                client.close().await?;
            }
            Ok(())
        }
        .await,
    )
}
