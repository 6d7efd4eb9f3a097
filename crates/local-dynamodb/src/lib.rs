//! A real DynamoDB-compatible server on loopback, for tests and the local stack.
//!
//! The function's connection registry must be tested against something that
//! speaks DynamoDB's wire protocol for real, not a hand-written fake. This
//! crate runs dynalite (an open-source implementation of DynamoDB's API on
//! LevelDB, from npm, in memory here) in a child process.
//!
//! Why dynalite and not moto (which this crate ran before): moto's Scan costs
//! ≈ 0.24 ms of CPU per item (its generic serializer and a deep copy of every
//! item), so reading 10,000 connections took 2.4 s of one core before a broadcast
//! could post once; dynalite reads them in ≈ 0.3 s, starts in a fraction of a
//! second instead of seconds, and validates requests with DynamoDB's own
//! messages. DynamoDB Local is not used: its licence is not an open-source one.
//! What dynalite does not play: Time to Live (neither did moto delete expired
//! items), so [`LocalDynamoDb::create_table`] sets none.
//!
//! On first use dynalite is installed with `npm ci` from the `package.json`
//! and `package-lock.json` in this crate's `server/` (compiled in) into
//! `<target>/dynalite`. The only prerequisites are Node.js (20+) with npm and
//! access to the npm registry. Many tests start servers at once, so the install
//! is guarded by a file lock.
//!
//! ```no_run
//! # async fn demo() -> Result<(), local_dynamodb::Error> {
//! let db = local_dynamodb::LocalDynamoDb::start().await?;
//! db.create_table("connections", "connectionId").await?;
//! println!("DynamoDB at {}", db.endpoint()); // AWS_ENDPOINT_URL_DYNAMODB for the function
//! # Ok(()) }
//! ```

use std::fs::{self, File};
use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use local_process::NodePackages;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};

/// What `server/package-lock.json` pins: bump both (`npm install
/// dynalite@<version>` in `server/`) and the next start reinstalls.
pub const DYNALITE: &str = "dynalite@4.0.0";
const PACKAGE_JSON: &str = include_str!("../server/package.json");
const PACKAGE_LOCK: &str = include_str!("../server/package-lock.json");

/// The region the clients of this crate sign for. dynalite keeps one set of
/// tables whatever the region; the function is still given this one (through
/// `AWS_REGION`), as on AWS; see [`LocalDynamoDb::region`].
pub const DEFAULT_REGION: &str = "us-east-1";

/// Dummy credentials the server accepts (dynalite wants a signed request but
/// checks no signature, so any dummy key sees the same tables).
pub const ACCESS_KEY_ID: &str = "local";
pub const SECRET_ACCESS_KEY: &str = "local";

/// How long a server may take to answer after it is spawned: well under a
/// second when idle, seconds on a two-core machine busy with parallel tests.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a new table may stay CREATING (milliseconds here; bounded so a
/// broken server fails the caller instead of hanging it).
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the server could not be installed, started or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("installing {DYNALITE}: {0}")]
    Install(#[from] local_process::NpmError),
    #[error("cannot find the cargo target directory: set CARGO_TARGET_DIR")]
    NoTargetDir,
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error(
        "the DynamoDB server ({DYNALITE}) exited before it answered ({status}); its log:\n{log}"
    )]
    Exited { status: String, log: String },
    #[error(
        "the DynamoDB server ({DYNALITE}) on {endpoint} did not answer within {timeout:?}; its log:\n{log}"
    )]
    StartTimeout {
        endpoint: String,
        timeout: Duration,
        log: String,
    },
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

/// A running dynalite server on a free loopback port. Dropping it kills the server.
#[derive(Debug)]
pub struct LocalDynamoDb {
    child: Child,
    endpoint: String,
    region: String,
    log_path: PathBuf,
    client: aws_sdk_dynamodb::Client,
}

impl LocalDynamoDb {
    /// Installs dynalite if needed, starts it on a free loopback port and
    /// waits until it answers DynamoDB requests. Clients sign for
    /// [`DEFAULT_REGION`].
    pub async fn start() -> Result<Self, Error> {
        Self::start_in_region(DEFAULT_REGION).await
    }

    /// Like [`LocalDynamoDb::start`], with clients signing for `region`.
    pub async fn start_in_region(region: &str) -> Result<Self, Error> {
        let packages = tokio::task::spawn_blocking(ensure_installed)
            .await
            .map_err(|e| Error::Io {
                context: "the DynamoDB server's install task".into(),
                source: io::Error::other(e),
            })??;
        // A free port can be taken by someone else between our probe and
        // the server's bind; try a few ports before giving up.
        let mut attempt = 1;
        loop {
            match Self::spawn(&packages, region).await {
                Err(Error::Exited { .. }) if attempt < 3 => attempt += 1,
                result => return result,
            }
        }
    }

    async fn spawn(packages: &NodePackages, region: &str) -> Result<Self, Error> {
        let port = free_port()?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let logs = packages.dir().with_file_name("local-dynamodb-logs");
        fs::create_dir_all(&logs).map_err(io_err(format!("creating {}", logs.display())))?;
        let log_path = logs.join(format!("dynalite-{port}.log"));
        let log =
            File::create(&log_path).map_err(io_err(format!("creating {}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(io_err("duplicating the log handle"))?;
        let mut command = Command::new("node");
        // Tables turn ACTIVE at once, not after dynalite's default 500 ms
        // (DynamoDB takes seconds; nobody here should wait for that).
        command
            .arg(packages.file("dynalite", "cli.js"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--createTableMs",
                "0",
                "--deleteTableMs",
                "0",
                "--updateTableMs",
                "0",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // Ends with its parent, even a SIGKILLed one; and leads its own
        // process group, so a terminal's Ctrl-C (sent to the foreground
        // group) does not reach it: the stack stops it last, after the
        // $disconnects it serves.
        local_process::die_with_parent(&mut command);
        command.process_group(0);
        let child = command.spawn().map_err(io_err(format!(
            "starting the DynamoDB server ({DYNALITE}) with node (Node.js 20+ must be on PATH; \
             Debian/Ubuntu: apt-get install nodejs)"
        )))?;
        let client = client(&endpoint, region);
        let mut db = LocalDynamoDb {
            child,
            endpoint,
            region: region.to_string(),
            log_path,
            client,
        };
        db.wait_until_ready().await?;
        tracing::debug!(endpoint = %db.endpoint, "local DynamoDB server ready");
        Ok(db)
    }

    async fn wait_until_ready(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::Exited {
                    status: status.to_string(),
                    log: self.log_tail(),
                });
            }
            let attempt =
                tokio::time::timeout(Duration::from_secs(5), self.client.list_tables().send())
                    .await;
            if let Ok(Ok(_)) = attempt {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(Error::StartTimeout {
                    endpoint: self.endpoint.clone(),
                    timeout: START_TIMEOUT,
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
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

    /// The server process id (to check it is gone after drop).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resolves when the server process exits (killed, crashed): what a
    /// stack watches to stop rather than answer 500 forever. Must be called
    /// within a tokio runtime, while this handle lives.
    pub fn exited(&self) -> io::Result<impl Future<Output = ()> + Send + 'static> {
        local_process::exit_of(self.child.id())
    }

    /// A DynamoDB client for this server, with dummy credentials.
    pub fn client(&self) -> aws_sdk_dynamodb::Client {
        self.client.clone()
    }

    /// Creates an on-demand table with a string hash key named `hash_key`,
    /// ACTIVE when this returns. (No Time to Live: dynalite does not play it.)
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

    /// Waits until `name` is ACTIVE. A new table is CREATING first, as on
    /// DynamoDB, and refuses item requests (ResourceNotFoundException) until
    /// then; dynalite flips it on its next event-loop turn, so this is one or
    /// two DescribeTable calls. (The SDK's waiter sleeps 20 s between polls.)
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
    fn drop(&mut self) {
        // SIGKILL its group (before the leader is reaped, so the id is still
        // ours) then reap, so no zombie or orphan outlives the handle.
        let _ = local_process::signal_group(self.child.id(), local_process::Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.log_path);
    }
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

fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io_err("binding a loopback port"))?;
    let port = listener
        .local_addr()
        .map_err(io_err("reading the bound port"))?
        .port();
    Ok(port)
}

/// The cargo target directory: `CARGO_TARGET_DIR`, else the nearest ancestor
/// of the running executable that cargo marked as a target dir
/// (`CACHEDIR.TAG`), else `target/` next to the workspace of
/// `CARGO_MANIFEST_DIR`.
pub fn target_dir() -> Result<PathBuf, Error> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return Ok(if dir.is_absolute() {
            dir
        } else {
            std::env::current_dir()
                .map_err(io_err("reading the current directory"))?
                .join(dir)
        });
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe
            .ancestors()
            .skip(1)
            .find(|d| d.join("CACHEDIR.TAG").is_file())
    {
        return Ok(dir.to_path_buf());
    }
    let manifest_dirs = [
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    for manifest in manifest_dirs.into_iter().flatten() {
        if let Some(dir) = manifest
            .ancestors()
            .map(|d| d.join("target"))
            .find(|t| t.join("CACHEDIR.TAG").is_file())
        {
            return Ok(dir);
        }
    }
    Err(Error::NoTargetDir)
}

/// Installs dynalite into `<target>/dynalite` once (under a file lock).
fn ensure_installed() -> Result<NodePackages, Error> {
    let packages = NodePackages::new(
        target_dir()?.join("dynalite"),
        PACKAGE_JSON,
        PACKAGE_LOCK,
        DYNALITE,
    );
    packages.ensure(|dir| {
        tracing::info!(dir = %dir.display(), "installing {DYNALITE} (first use)");
    })?;
    Ok(packages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_dir_is_found_from_the_test_executable() {
        let dir = target_dir().expect("target dir");
        assert!(dir.join("CACHEDIR.TAG").is_file(), "{}", dir.display());
    }
}
