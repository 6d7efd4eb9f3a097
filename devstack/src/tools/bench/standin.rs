//! A loopback stand-in for the @connections management API that answers
//! every PostToConnection after a fixed latency (e.g. 20 ms, a real
//! network's round trip) and counts posts per connection id.
//!
//! It lets the benchmark say what the function's fan-out does when the
//! network, not the CPU, is the cost: posts per second per invocation, how
//! many posts were really in flight at once, and whether any id was posted
//! to twice. It runs on its own thread and runtime, as a remote service
//! would, so its work does not share the measuring code's scheduler.

use std::collections::HashMap;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::thread_server::ThreadServer;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;

/// What the stand-in saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Every post.
    pub posts: usize,
    /// Different connection ids posted to.
    pub distinct: usize,
    /// Ids posted to more than once.
    pub repeated: usize,
    /// Most posts waiting on the latency at once.
    pub peak_in_flight: usize,
    /// From the first post's arrival to the last post's answer.
    pub span: Option<Duration>,
}

impl Tally {
    /// Posts per second over [`Tally::span`].
    pub fn rate(&self) -> Option<f64> {
        let secs = self.span?.as_secs_f64();
        (secs > 0.0).then(|| self.posts as f64 / secs)
    }
}

#[derive(Default)]
struct Counts {
    per_id: HashMap<String, u32>,
    first: Option<Instant>,
    last: Option<Instant>,
}

struct Shared {
    latency: Duration,
    counts: Mutex<Counts>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

impl Shared {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock()
    }
}

/// The running stand-in; stops when dropped.
pub struct ConnectionsStandIn {
    endpoint: String,
    shared: Arc<Shared>,
    /// Stops when the stand-in is dropped.
    _server: ThreadServer,
}

async fn post_to_connection(
    State(shared): State<Arc<Shared>>,
    Path((_stage, id)): Path<(String, String)>,
) -> StatusCode {
    let arrived = Instant::now();
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.peak.fetch_max(now, Ordering::SeqCst);
    {
        let mut counts = shared.counts();
        *counts.per_id.entry(id).or_insert(0) += 1;
        counts.first.get_or_insert(arrived);
    }
    tokio::time::sleep(shared.latency).await;
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    shared.counts().last = Some(Instant::now());
    StatusCode::OK
}

impl ConnectionsStandIn {
    /// Listens on 127.0.0.1 (a free port) and answers
    /// `POST /{stage}/@connections/{id}` with 200 after `latency`.
    pub fn start(latency: Duration, stage: &str) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            latency,
            counts: Mutex::new(Counts::default()),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/{stage}/@connections/{id}", post(post_to_connection))
            .with_state(shared.clone());
        let server = ThreadServer::axum("@connections stand-in", app)?;
        Ok(ConnectionsStandIn {
            endpoint: format!("http://{}/{stage}", server.addr),
            shared,
            _server: server,
        })
    }

    /// `http://127.0.0.1:<port>/<stage>`: the management endpoint to give the function.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn tally(&self) -> Tally {
        let counts = self.shared.counts();
        Tally {
            posts: counts.per_id.values().map(|&n| n as usize).sum(),
            distinct: counts.per_id.len(),
            repeated: counts.per_id.values().filter(|&&n| n > 1).count(),
            peak_in_flight: self.shared.peak.load(Ordering::SeqCst),
            span: counts.first.zip(counts.last).map(|(f, l)| l - f),
        }
    }

    /// The fewest and the most posts any one id got (none: no posts).
    pub fn per_id_range(&self) -> Option<(u32, u32)> {
        let counts = self.shared.counts();
        let fewest = counts.per_id.values().min().copied()?;
        let most = counts.per_id.values().max().copied()?;
        Some((fewest, most))
    }

    /// Forgets every count (between runs).
    pub fn reset(&self) {
        *self.shared.counts() = Counts::default();
        self.shared.peak.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn posts_wait_the_latency_and_are_counted_per_id() {
        let standin =
            ConnectionsStandIn::start(Duration::from_millis(20), "prod").expect("stand-in");
        assert!(standin.endpoint().starts_with("http://127.0.0.1:"));
        let url = |id: &str| format!("{}/@connections/{id}", standin.endpoint());
        let started = Instant::now();
        let post = |id: &'static str| {
            let url = url(id);
            async move {
                tokio::time::timeout(Duration::from_secs(10), raw_post(&url))
                    .await
                    .expect("post timed out")
            }
        };
        let (a, b, c) = tokio::join!(post("a"), post("b"), post("a"));
        assert_eq!((a, b, c), (200, 200, 200));
        assert!(started.elapsed() >= Duration::from_millis(20));
        let tally = standin.tally();
        assert_eq!(
            (tally.posts, tally.distinct, tally.repeated),
            (3, 2, 1),
            "{tally:?}"
        );
        assert!(tally.peak_in_flight >= 1 && tally.rate().is_some());
        assert_eq!(standin.per_id_range(), Some((1, 2)));
        standin.reset();
        assert_eq!(standin.tally(), Tally::default());
        assert_eq!(standin.per_id_range(), None);
    }

    /// One HTTP/1.1 POST with an empty body; the status code.
    async fn raw_post(url: &str) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rest = url.strip_prefix("http://").expect("http url");
        let (host, path) = rest.split_once('/').expect("a path");
        let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
        let request = format!(
            "POST /{path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        response
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0)
    }
}
