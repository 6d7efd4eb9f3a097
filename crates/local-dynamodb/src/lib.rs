//! A real DynamoDB-compatible server on loopback, for tests and the local stack.
//!
//! The function's connection registry must be tested against something that
//! speaks DynamoDB's wire protocol for real, not a hand-written fake. This
//! crate serves [Dynoxide] (an open-source DynamoDB emulator in Rust on an
//! in-memory SQLite, checked against real DynamoDB by a public conformance
//! suite) over HTTP on a loopback port, from a thread of the calling process:
//! the function and the SDK clients reach it as they reach DynamoDB, through
//! its JSON API with signed requests.
//!
//! Why Dynoxide: it answers a PutItem in a fraction of the CPU of the servers
//! this crate ran before, and the local stack makes one per `$connect`. moto
//! (Python) cost ≈ 0.24 ms of CPU per item a Scan read; dynalite (Node, on an
//! in-memory LevelDB) ≈ 0.2 ms per write under load and a Node process of its
//! own, which held the stack's handshakes per second to about half of
//! serverless-offline's (docs/benchmarks.md). Dynoxide needs nothing
//! installed (no Node, no npm), starts in microseconds, and validates requests
//! with DynamoDB's own messages. DynamoDB Local is not used: its licence is not
//! an open-source one. Time to Live is not turned on for the tables this crate
//! creates (DynamoDB deletes expired items within days, not on time; nothing
//! here relies on either).
//!
//! [Dynoxide]: https://github.com/nubo-db/dynoxide
//!
//! ```no_run
//! # async fn demo() -> Result<(), local_dynamodb::Error> {
//! let db = local_dynamodb::LocalDynamoDb::start().await?;
//! db.create_table("connections", "connectionId").await?;
//! println!("DynamoDB at {}", db.endpoint()); // AWS_ENDPOINT_URL_DYNAMODB for the function
//! # Ok(()) }
//! ```

use std::io;
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use tokio::sync::oneshot;

/// The emulator served, as `Cargo.toml` pins it (`=`): its behaviour moves
/// with its minor versions (its compatibility page lists each change).
pub const SERVER: &str = "Dynoxide 3.2.0";

/// The region the clients of this crate sign for. The server keeps one set of
/// tables whatever the region; the function is still given this one (through
/// `AWS_REGION`), as on AWS; see [`LocalDynamoDb::region`].
pub const DEFAULT_REGION: &str = "us-east-1";

/// Dummy credentials the clients sign with (the server checks no signature,
/// so any dummy key sees the same tables).
pub const ACCESS_KEY_ID: &str = "local";
pub const SECRET_ACCESS_KEY: &str = "local";

/// How long a new table may stay CREATING (a moment here; bounded so a
/// broken server fails the caller instead of hanging it).
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long dropping the handle waits for requests still being answered.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the server could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("starting the DynamoDB server ({SERVER}): {0}")]
    Start(String),
    #[error("{operation} failed on the local DynamoDB server: {message}")]
    DynamoDb {
        operation: &'static str,
        message: String,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// A DynamoDB server on a loopback port, with its tables in memory. Dropping
/// it stops the server (the tables go with it).
#[derive(Debug)]
pub struct LocalDynamoDb {
    endpoint: String,
    region: String,
    client: aws_sdk_dynamodb::Client,
    stop: Option<oneshot::Sender<()>>,
    /// Sends (or hangs up) once the server has stopped.
    stopped: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl LocalDynamoDb {
    /// Starts a server with no tables on a free loopback port. Clients sign
    /// for [`DEFAULT_REGION`].
    pub async fn start() -> Result<Self, Error> {
        Self::start_in_region(DEFAULT_REGION).await
    }

    /// Like [`LocalDynamoDb::start`], with clients signing for `region`.
    pub async fn start_in_region(region: &str) -> Result<Self, Error> {
        // Bound here, before the server runs: connections made from now on
        // wait in the backlog, and no other process can take the port.
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(io_err("binding a loopback port"))?;
        let port = listener
            .local_addr()
            .map_err(io_err("reading the bound port"))?
            .port();
        listener
            .set_nonblocking(true)
            .map_err(io_err("making the listener non-blocking"))?;
        let db = dynoxide::Database::memory().map_err(|e| Error::Start(e.to_string()))?;
        let (stop, stop_requested) = oneshot::channel::<()>();
        let (serving_tx, serving) = oneshot::channel::<Result<(), String>>();
        let (stopped_tx, stopped) = mpsc::channel::<()>();
        // Its own thread and runtime: the server answers however busy the
        // caller's runtime is, and outlives none of it.
        let thread = std::thread::Builder::new()
            .name("local-dynamodb".into())
            .spawn(move || {
                serve(listener, db, serving_tx, stop_requested);
                let _ = stopped_tx.send(());
            })
            .map_err(io_err("starting the DynamoDB server's thread"))?;
        match serving.await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(Error::Start(reason)),
            Err(_) => return Err(Error::Start("its thread ended before serving".into())),
        }
        let endpoint = format!("http://127.0.0.1:{port}");
        tracing::debug!(%endpoint, "local DynamoDB server ready");
        Ok(LocalDynamoDb {
            client: client(&endpoint, region),
            endpoint,
            region: region.to_string(),
            stop: Some(stop),
            stopped,
            thread: Some(thread),
        })
    }

    /// The server's URL, `http://127.0.0.1:PORT`: give it to the function as
    /// `AWS_ENDPOINT_URL_DYNAMODB`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The region the tables live in: give it to the function as `AWS_REGION`.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// A DynamoDB client for this server, with dummy credentials.
    pub fn client(&self) -> aws_sdk_dynamodb::Client {
        self.client.clone()
    }

    /// Creates an on-demand table with a string hash key named `hash_key`,
    /// ACTIVE when this returns (without Time to Live, as the module says).
    pub async fn create_table(&self, name: &str, hash_key: &str) -> Result<(), Error> {
        let key = KeySchemaElement::builder()
            .attribute_name(hash_key)
            .key_type(KeyType::Hash)
            .build()
            .map_err(|e| Error::DynamoDb {
                operation: "CreateTable",
                message: e.to_string(),
            })?;
        let attribute = AttributeDefinition::builder()
            .attribute_name(hash_key)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| Error::DynamoDb {
                operation: "CreateTable",
                message: e.to_string(),
            })?;
        self.client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key)
            .attribute_definitions(attribute)
            .send()
            .await
            .map_err(|e| sdk_error("CreateTable", e))?;
        self.wait_until_active(name).await
    }

    /// Waits until `name` is ACTIVE. CreateTable answers CREATING, as on
    /// DynamoDB; here the next DescribeTable says ACTIVE, so this is one or
    /// two calls. (The SDK's waiter sleeps 20 s between polls.)
    async fn wait_until_active(&self, name: &str) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            let described = self
                .client
                .describe_table()
                .table_name(name)
                .send()
                .await
                .map_err(|e| sdk_error("DescribeTable", e))?;
            let status = described.table().and_then(|t| t.table_status());
            if status == Some(&TableStatus::Active) {
                return Ok(());
            }
            if started.elapsed() > TABLE_ACTIVE_TIMEOUT {
                return Err(Error::DynamoDb {
                    operation: "DescribeTable",
                    message: format!(
                        "table {name} is still {status:?} {TABLE_ACTIVE_TIMEOUT:?} after it was created"
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for LocalDynamoDb {
    /// Stops accepting, lets the requests being answered finish (for at
    /// most [`STOP_TIMEOUT`]) and ends the thread; the tables go with it.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.stopped.recv_timeout(STOP_TIMEOUT) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
            }
            // A client still sending half a request: the thread is left to
            // end with it (or with the process), rather than block the caller.
            Err(mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!(endpoint = %self.endpoint, "the local DynamoDB server did not stop within {STOP_TIMEOUT:?}");
            }
        }
    }
}

/// The server's thread: a runtime of its own serving `db` on `listener`
/// until `stop` (or the handle's drop). Says on `serving` whether it runs.
fn serve(
    listener: TcpListener,
    db: dynoxide::Database,
    serving: oneshot::Sender<Result<(), String>>,
    stop: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = serving.send(Err(format!("building its runtime: {error}")));
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => {
                let _ = serving.send(Err(format!("registering its listener: {error}")));
                return;
            }
        };
        let _ = serving.send(Ok(()));
        let stopped = async move {
            let _ = stop.await;
        };
        if let Err(error) = dynoxide::server::serve_with_shutdown(listener, db, stopped).await {
            tracing::error!(%error, "the local DynamoDB server failed");
        }
    });
}

fn client(endpoint: &str, region: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "local-dynamodb",
        ))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

fn sdk_error<E: std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
    error: aws_sdk_dynamodb::error::SdkError<E, R>,
) -> Error {
    Error::DynamoDb {
        operation,
        message: aws_sdk_dynamodb::error::DisplayErrorContext(error).to_string(),
    }
}
