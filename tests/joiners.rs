//! No lost joiner: clients join while others broadcast in a loop, and every
//! joiner receives every broadcast sent after its handshake.
//!
//! API Gateway (and the local stack) answers 410 to posts for a connection
//! until its `$connect` returns, yet the record is written during `$connect`:
//! a broadcast that lists the table in that moment gets a 410 for the joiner.
//! If the function then deleted the record, the joiner would stay connected
//! and never hear another broadcast.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use e2e::{Client, Incoming, Stack, StackConfig, within};
use protocol::{ClientFrame, ServerFrame};
use serde_json::json;
use tokio::sync::watch;

const BROADCASTERS: usize = 3;
const JOINERS: usize = 30;
/// Broadcasts each broadcaster sends after the last joiner is in.
const AFTER_LAST_JOIN: u64 = 10;
/// Longest silence a joiner may see while broadcasts are still due to it.
const FRAME_TIMEOUT: Duration = Duration::from_secs(20);
const TEST_TIMEOUT: Duration = Duration::from_secs(300);
/// How often a quiet joiner looks again at whether the broadcasters stopped.
const POLL: Duration = Duration::from_millis(500);

/// Sends numbered broadcasts, one at a time (each awaits its `sent`), until
/// told to stop; `latest` holds the number of the broadcast being sent.
async fn broadcast_loop(
    index: usize,
    mut client: Client,
    latest: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    let mut seq = 0u64;
    loop {
        seq += 1;
        latest.store(seq, Ordering::SeqCst);
        client
            .send(&ClientFrame::send_message(json!({"b": index, "n": seq})))
            .await?;
        loop {
            match client
                .recv()
                .await
                .with_context(|| format!("broadcaster {index}, #{seq}"))?
            {
                Incoming::Server(ServerFrame::Sent { .. }) => break,
                Incoming::Server(ServerFrame::Message { .. }) => continue,
                other => bail!("broadcaster {index} expected sent, got {other:?}"),
            }
        }
        if *stop.borrow_and_update() {
            return Ok(seq);
        }
    }
}

/// Reads broadcasts until it has every one numbered above `after[b]` up to
/// the last of each broadcaster (known once they stop).
async fn joiner(
    index: usize,
    mut client: Client,
    after: Vec<u64>,
    mut last: watch::Receiver<Option<Vec<u64>>>,
) -> anyhow::Result<()> {
    let mut seen: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); BROADCASTERS];
    let mut heard = Instant::now();
    loop {
        let known = last.borrow_and_update().clone();
        if let Some(final_seqs) = known {
            let missing: Vec<(usize, u64)> = (0..BROADCASTERS)
                .flat_map(|b| ((after[b] + 1)..=final_seqs[b]).map(move |n| (b, n)))
                .filter(|(b, n)| !seen[*b].contains(n))
                .collect();
            if missing.is_empty() {
                return client.close().await;
            }
        }
        // Short reads, so that the loop sees `last` change while quiet.
        let frame = match client.recv_within(POLL).await {
            Ok(frame) => {
                heard = Instant::now();
                frame
            }
            Err(_) if heard.elapsed() < FRAME_TIMEOUT => continue,
            Err(error) => {
                let counts: Vec<usize> = seen.iter().map(BTreeSet::len).collect();
                return Err(error).with_context(|| {
                    format!(
                        "joiner {index} (joined after broadcasts {after:?}) heard nothing for \
                         {FRAME_TIMEOUT:?}; it has {counts:?} broadcasts per broadcaster, last are {:?}",
                        *last.borrow()
                    )
                });
            }
        };
        match frame {
            Incoming::Server(ServerFrame::Message { data, .. }) => {
                let (Some(b), Some(n)) = (data["b"].as_u64(), data["n"].as_u64()) else {
                    bail!("joiner {index}: unexpected data {data}");
                };
                let b = usize::try_from(b).unwrap_or(usize::MAX);
                ensure!(b < BROADCASTERS, "joiner {index}: unknown broadcaster {b}");
                ensure!(seen[b].insert(n), "joiner {index} got {b}/#{n} twice");
            }
            other => bail!("joiner {index} expected messages, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn clients_that_join_during_broadcasts_receive_every_later_broadcast() -> anyhow::Result<()> {
    let stack = Stack::start_with(StackConfig::new().generous_throttling()).await?;
    let connect = || async {
        Client::handshake(stack.api(), Some(stack.api_key()), None)
            .await?
            .accepted()
    };
    let run = async {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (last_tx, last_rx) = watch::channel(None);
        let latest: Vec<Arc<AtomicU64>> = (0..BROADCASTERS).map(|_| Arc::default()).collect();
        let mut broadcasters = Vec::new();
        for (index, latest) in latest.iter().enumerate() {
            let client = connect().await.context("a broadcaster")?;
            broadcasters.push(tokio::spawn(broadcast_loop(
                index,
                client,
                Arc::clone(latest),
                stop_rx.clone(),
            )));
        }
        let mut joiners = Vec::new();
        for index in 0..JOINERS {
            let client = connect().await.with_context(|| format!("joiner {index}"))?;
            // Broadcasts numbered above what is being sent now are sent
            // after this handshake.
            let after: Vec<u64> = latest.iter().map(|l| l.load(Ordering::SeqCst)).collect();
            joiners.push(tokio::spawn(joiner(index, client, after, last_rx.clone())));
        }
        // A few more rounds for everyone, then stop.
        let joined: Vec<u64> = latest.iter().map(|l| l.load(Ordering::SeqCst)).collect();
        while latest
            .iter()
            .zip(&joined)
            .any(|(l, j)| l.load(Ordering::SeqCst) < j + AFTER_LAST_JOIN)
        {
            ensure!(
                broadcasters.iter().all(|b| !b.is_finished()),
                "a broadcaster stopped early"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop_tx.send(true);
        let mut last = Vec::new();
        for broadcaster in broadcasters {
            last.push(broadcaster.await.context("broadcaster task")??);
        }
        let _ = last_tx.send(Some(last));
        for joiner in joiners {
            joiner.await.context("joiner task")??;
        }
        Ok::<(), anyhow::Error>(())
    };
    stack.explain(
        within(TEST_TIMEOUT, "the joiners test", run)
            .await
            .and_then(|result| result),
    )
}
