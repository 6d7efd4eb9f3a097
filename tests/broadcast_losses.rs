//! A broadcast that cannot reach everyone says so: with one post per
//! invocation (`fanoutPerInvocation: 1`), 20 connections and 3 broadcasts,
//! each broadcast reaches the sender's slice and 15 continuations — 16
//! recipients, each exactly once — and the other 3 are counted as not
//! reached (`hop_limit`) in the function's embedded-metric lines, which the
//! deployment turns into the `RecipientsNotReached` metric it alarms on.
//! Reached plus counted is every recipient of every broadcast.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use e2e::{Client, Incoming, Stack, StackConfig};
use protocol::metrics::RECIPIENTS_NOT_REACHED;
use protocol::{ClientFrame, ServerFrame};
use serde_json::{Value, json};

const CONNECTIONS: usize = 20;
const BROADCASTS: usize = 3;
/// The sender's slice and the 15 continuations, one post each.
const REACHED: usize = 16;
const LIMIT: Duration = Duration::from_secs(60);

/// `RecipientsNotReached` per message id and reason, from the function's
/// embedded-metric lines in the stack's log.
fn counted(log: &str) -> BTreeMap<(String, String), u64> {
    let mut counted = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains(RECIPIENTS_NOT_REACHED)) {
        let Some(start) = line.find('{') else {
            continue;
        };
        let Ok(document) = serde_json::from_str::<Value>(&line[start..]) else {
            continue;
        };
        let (Some(id), Some(reason), Some(n)) = (
            document["messageId"].as_str(),
            document["Reason"].as_str(),
            document[RECIPIENTS_NOT_REACHED].as_u64(),
        ) else {
            continue;
        };
        *counted
            .entry((id.to_string(), reason.to_string()))
            .or_default() += n;
    }
    counted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_past_the_hop_limit_are_counted_not_lost() -> anyhow::Result<()> {
    let stack = Stack::start_with(
        StackConfig::new()
            .generous_throttling()
            .set("fanoutPerInvocation", 1u64),
    )
    .await?;
    let edge = stack.edge().to_string();
    let result = async {
        let mut clients = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            clients.push(Client::connect(&edge).await?);
        }
        let mut sender = clients.remove(0);
        let mut received: Vec<BTreeMap<String, usize>> = vec![BTreeMap::new(); clients.len()];
        let mut ids = Vec::new();
        for n in 0..BROADCASTS {
            sender
                .send(&ClientFrame::send_message(json!({"broadcast": n})))
                .await?;
            match sender.recv_server().await? {
                ServerFrame::Sent { recipients } => {
                    ensure!(recipients == 1, "the sender's slice reached {recipients}, not 1")
                }
                other => anyhow::bail!("the sender got {other:?} instead of `sent`"),
            }
        }
        // Every client reads until a quiet second: what reached it, by message id.
        for (client, got) in clients.iter_mut().zip(received.iter_mut()) {
            let until = Instant::now() + LIMIT;
            while Instant::now() < until {
                match client.recv_within(Duration::from_secs(1)).await {
                    Ok(Incoming::Server(ServerFrame::Message { id, .. })) => {
                        *got.entry(id).or_default() += 1
                    }
                    Ok(other) => anyhow::bail!("unexpected {other:?}"),
                    Err(_) => break,
                }
            }
        }
        for got in &received {
            ensure!(got.values().all(|n| *n == 1), "a client got a message twice: {got:?}");
            ids.extend(got.keys().cloned());
        }
        ids.sort();
        ids.dedup();
        ensure!(ids.len() == BROADCASTS, "message ids seen: {ids:?}");
        // The counts are written when the last hop ends; give the log a moment.
        let deadline = Instant::now() + LIMIT;
        loop {
            let counted = counted(&stack.log());
            let complete = ids.iter().all(|id| {
                counted.get(&(id.clone(), "hop_limit".into())).copied().unwrap_or(0) > 0
            });
            if complete || Instant::now() > deadline {
                for id in &ids {
                    let reached = received.iter().filter(|got| got.contains_key(id)).count();
                    let lost = counted
                        .iter()
                        .filter(|((message, _), _)| message == id)
                        .map(|(_, n)| *n as usize)
                        .sum::<usize>();
                    ensure!(reached == REACHED, "message {id}: {reached} reached, not {REACHED}");
                    ensure!(
                        reached + lost == CONNECTIONS - 1,
                        "message {id}: {reached} reached and {lost} counted not reached ({counted:?}); every one of the {} recipients must be one or the other",
                        CONNECTIONS - 1
                    );
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    .await
    .context("a broadcast past the hop limit");
    stack.explain(result)
}
