//! Broadcasts under API Gateway's account request quota: with the account
//! rate lowered to 1,000 requests/s (shared, as on AWS, by every
//! `@connections` post, handshake and message), two senders each broadcast
//! to 5,000 connections at once — 10,000 posts, so the quota answers 429
//! however fast this machine posts. A throttled post was never delivered:
//! the post client tries it again, and past its attempts the function hands
//! it to a later continuation after a backoff. Every connection gets each
//! broadcast it did not send exactly once.

use std::time::Duration;

use anyhow::{Context, ensure};
use e2e::crowd::{copies_of_each, open, raise_open_files};
use e2e::{Stack, StackConfig};
use protocol::ClientFrame;
use serde_json::json;

const CONNECTIONS: usize = 5000;
const ACCOUNT_RATE: u32 = 1_000;
const BROADCAST_TIMEOUT: Duration = Duration::from_secs(120);
const SETTLE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_to_5000_under_an_account_rate_of_1000_per_second_reach_everyone_once()
-> anyhow::Result<()> {
    raise_open_files(CONNECTIONS)?;
    let stack = Stack::start_with(
        StackConfig::new()
            .generous_throttling()
            .account_rate_limit(ACCOUNT_RATE)
            .account_connect_limit(100_000),
    )
    .await?;
    // Straight to the API layer with the key: one socket per client in the
    // stack (through the edge, three), well inside the open-file limit.
    let (api, key) = (stack.api().to_string(), stack.api_key().to_string());
    stack.explain(
        async {
            let mut clients = open(&api, Some(&key), CONNECTIONS).await?;
            let mut senders = [
                clients.pop().context("no sender")?,
                clients.pop().context("no second sender")?,
            ];
            let tags =
                [0, 1].map(|n| json!({"throttled": n, "run": uuid::Uuid::new_v4().to_string()}));
            for (sender, tag) in senders.iter_mut().zip(&tags) {
                sender.send(&ClientFrame::send_message(tag.clone())).await?;
            }
            let copies = copies_of_each(clients, &tags, BROADCAST_TIMEOUT, SETTLE).await?;
            let missed = copies.iter().flatten().filter(|&&c| c == 0).count();
            let twice = copies.iter().flatten().filter(|&&c| c > 1).count();
            ensure!(
                missed == 0 && twice == 0,
                "of {} deliveries {missed} never happened and {twice} happened more than once",
                copies.len() * tags.len()
            );
            // Each sender got the other's broadcast once too.
            let senders: Vec<_> = senders.into_iter().collect();
            let cross = copies_of_each(senders, &tags, Duration::from_secs(5), SETTLE).await?;
            ensure!(
                cross == [vec![0, 1], vec![1, 0]] || cross == [vec![1, 0], vec![0, 1]],
                "the senders got {cross:?} (each the other's broadcast once, never its own)"
            );
            ensure!(
                stack
                    .log()
                    .contains("management API request refused with 429"),
                "the account rate never refused a post: the test did not throttle"
            );
            anyhow::Ok(())
        }
        .await,
    )
}
