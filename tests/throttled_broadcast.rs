//! A broadcast under API Gateway's account request quota: with the account
//! rate lowered to 1,000 requests/s (shared, as on AWS, by every
//! `@connections` post, handshake and message), one `sendmessage` to 5,000
//! connections is mostly answered 429 at first. Posts refused that way were
//! never delivered: the function hands them to later continuations, after a
//! backoff, until they go through. Every one of the 4,999 others gets the
//! message exactly once.

use std::time::Duration;

use anyhow::{Context, ensure};
use e2e::crowd::{copies_of, open, raise_open_files};
use e2e::{Stack, StackConfig};
use protocol::ClientFrame;
use serde_json::json;

const CONNECTIONS: usize = 5000;
const ACCOUNT_RATE: u32 = 1_000;
const BROADCAST_TIMEOUT: Duration = Duration::from_secs(120);
const SETTLE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_to_5000_under_an_account_rate_of_1000_per_second_reaches_everyone_once()
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
            let mut sender = clients.pop().context("no sender")?;
            let tag = json!({"throttled": uuid::Uuid::new_v4().to_string()});
            sender.send(&ClientFrame::send_message(tag.clone())).await?;
            let copies = copies_of(clients, &tag, BROADCAST_TIMEOUT, SETTLE).await?;
            let missed = copies.iter().filter(|&&c| c == 0).count();
            let twice = copies.iter().filter(|&&c| c > 1).count();
            ensure!(
                missed == 0 && twice == 0,
                "of {} receivers {missed} never got the message and {twice} got it more than once",
                copies.len()
            );
            ensure!(
                stack.log().contains("post refused; to be tried again"),
                "the account rate never refused a post: the test did not throttle"
            );
            anyhow::Ok(())
        }
        .await,
    )
}
