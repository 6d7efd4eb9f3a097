//! Thousands of clients at once: opened with their own loopback source
//! addresses (within the account's new-connection rate, waiting out its
//! 429s), and the copies of one broadcast each of them receives.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::ensure;
use devstack::tools::client::source_address;
use futures_util::StreamExt;
use protocol::ServerFrame;
use serde_json::Value;

use crate::{Client, Handshake, Incoming};

/// Handshakes in flight at once.
const OPENING: usize = 32;
/// Tries of one handshake that the account's rate refuses (429), 100 ms apart.
const CONNECT_TRIES: usize = 100;

/// Raises this process's open-file limit for `clients` sockets, the way the
/// stack raises its own.
pub fn raise_open_files(clients: usize) -> anyhow::Result<()> {
    let limit = devstack::stack::open_files::raise(clients as u64 + 512);
    ensure!(
        limit.now.is_none_or(|n| n >= clients as u64 + 256),
        "the open-file limit is too low for {clients} connections (`ulimit -n`): {}",
        limit.describe()
    );
    Ok(())
}

/// Opens `n` clients to `url` (with `api_key` when given), each from its own
/// loopback source address; a handshake refused with 429 (the account's
/// new-connection rate) is tried again after 100 ms, at most 100 times.
pub async fn open(url: &str, api_key: Option<&str>, n: usize) -> anyhow::Result<Vec<Client>> {
    futures_util::stream::iter(0..n)
        .map(|i| async move {
            for _ in 0..CONNECT_TRIES {
                match Client::handshake(url, api_key, Some(source_address(i).into())).await? {
                    Handshake::Refused(429) => tokio::time::sleep(Duration::from_millis(100)).await,
                    other => return other.accepted(),
                }
            }
            anyhow::bail!("client {i} was refused with 429 {CONNECT_TRIES} times")
        })
        .buffer_unordered(OPENING)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// How many copies of the `message` whose data is `tag` each client gets:
/// waits until every client has one (or `limit`), then `settle` more for a
/// second copy. Any other frame is an error.
pub async fn copies_of(
    clients: Vec<Client>,
    tag: &Value,
    limit: Duration,
    settle: Duration,
) -> anyhow::Result<Vec<usize>> {
    let copies = copies_of_each(clients, std::slice::from_ref(tag), limit, settle).await?;
    Ok(copies.into_iter().map(|per_tag| per_tag[0]).collect())
}

/// [`copies_of`] for several broadcasts at once: for each client, the
/// copies of each of `tags`, in order; waits until every client has one of
/// each (or `limit`).
pub async fn copies_of_each(
    clients: Vec<Client>,
    tags: &[Value],
    limit: Duration,
    settle: Duration,
) -> anyhow::Result<Vec<Vec<usize>>> {
    let complete = Arc::new(AtomicUsize::new(0));
    let (stop, _) = tokio::sync::watch::channel(false);
    let total = clients.len();
    let receivers: Vec<_> = clients
        .into_iter()
        .map(|client| {
            tokio::spawn(receive(
                client,
                tags.to_vec(),
                complete.clone(),
                stop.subscribe(),
                limit + settle * 2,
            ))
        })
        .collect();
    let _ = tokio::time::timeout(limit, async {
        while complete.load(Ordering::SeqCst) < total {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    tokio::time::sleep(settle).await;
    let _ = stop.send(true);
    let mut copies = Vec::with_capacity(total);
    for receiver in receivers {
        copies.push(receiver.await??);
    }
    Ok(copies)
}

/// Counts the copies of each frame whose data is one of `tags` until `stop`
/// or `limit`; counts the client in `complete` once it has one of each.
async fn receive(
    mut client: Client,
    tags: Vec<Value>,
    complete: Arc<AtomicUsize>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    limit: Duration,
) -> anyhow::Result<Vec<usize>> {
    let mut copies = vec![0; tags.len()];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::select! {
            _ = stop.changed() => break,
            frame = client.recv_within(left) => frame,
        };
        match frame {
            Ok(Incoming::Server(ServerFrame::Message { data, .. })) => {
                let Some(i) = tags.iter().position(|tag| *tag == data) else {
                    anyhow::bail!("a message that is none of the broadcasts: {data}");
                };
                copies[i] += 1;
                if copies[i] == 1 && copies.iter().all(|n| *n > 0) {
                    complete.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(Incoming::Server(ServerFrame::Sent { .. })) => {}
            Ok(other) => anyhow::bail!("unexpected {other:?}"),
            Err(_) if Instant::now() >= deadline => break,
            Err(error) => return Err(error),
        }
    }
    Ok(copies)
}
