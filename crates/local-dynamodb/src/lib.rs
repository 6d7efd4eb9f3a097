//! A real DynamoDB-compatible server on loopback, for tests and the local stack.
//!
//! The function's connection registry must be tested against something that
//! speaks DynamoDB's wire protocol for real, not a hand-written fake. This
//! crate runs moto's server (`moto[server]` from PyPI) in a child process.
//!
//! On first use moto is installed into a virtual environment under the cargo
//! target directory (`<target>/moto-venv`), with `python3 -m venv` and pip. The
//! only prerequisite is `python3` with its `venv` module (Debian:
//! `apt-get install python3 python3-venv`) and access to PyPI. Many tests
//! start servers at once, so the install is guarded by a file lock.
//!
//! ```no_run
//! # async fn demo() -> Result<(), local_dynamodb::Error> {
//! let db = local_dynamodb::LocalDynamoDb::start().await?;
//! db.create_table("connections", "connectionId", Some("expiresAt")).await?;
//! println!("DynamoDB at {}", db.endpoint()); // AWS_ENDPOINT_URL_DYNAMODB for the function
//! # Ok(()) }
//! ```

use std::fs::{self, File};
use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use local_process::PythonVenv;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};

/// The moto release this crate installs. Bump it here and the next start
/// installs it into a fresh virtual environment.
pub const MOTO_VERSION: &str = "5.2.1";

/// The region the server's tables live in. moto keeps tables per region, so
/// whoever talks to the server (the function, through `AWS_REGION`) must use
/// the region the table was created in; see [`LocalDynamoDb::region`].
pub const DEFAULT_REGION: &str = "us-east-1";

/// Dummy credentials the server accepts (moto checks no signatures). An access
/// key that is not 12 digits maps to moto's default account, so any dummy key
/// sees the same tables.
pub const ACCESS_KEY_ID: &str = "local";
pub const SECRET_ACCESS_KEY: &str = "local";

/// How long a server may take to answer after it is spawned. moto imports a
/// lot of Python on start; on a loaded two-core machine that takes seconds.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Why the server could not be installed, started or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("installing moto[server]=={version}: {0}", version = MOTO_VERSION)]
    Venv(#[from] local_process::VenvError),
    #[error("cannot find the cargo target directory: set CARGO_TARGET_DIR")]
    NoTargetDir,
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("moto server exited before it answered ({status}); its log:\n{log}")]
    Exited { status: String, log: String },
    #[error("moto server on {endpoint} did not answer within {timeout:?}; its log:\n{log}")]
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

/// A running moto server on a free loopback port. Dropping it kills the server.
#[derive(Debug)]
pub struct LocalDynamoDb {
    child: Child,
    endpoint: String,
    region: String,
    log_path: PathBuf,
    client: aws_sdk_dynamodb::Client,
}

impl LocalDynamoDb {
    /// Installs moto if needed, starts it on a free loopback port and waits
    /// until it answers DynamoDB requests. Tables live in [`DEFAULT_REGION`].
    pub async fn start() -> Result<Self, Error> {
        Self::start_in_region(DEFAULT_REGION).await
    }

    /// Like [`LocalDynamoDb::start`], with tables in `region`.
    pub async fn start_in_region(region: &str) -> Result<Self, Error> {
        let venv = tokio::task::spawn_blocking(ensure_installed)
            .await
            .map_err(|e| Error::Io {
                context: "moto install task".into(),
                source: io::Error::other(e),
            })??;
        // A free port can be taken by someone else between our probe and
        // moto's bind; try a few ports before giving up.
        let mut attempt = 1;
        loop {
            match Self::spawn(&venv, region).await {
                Err(Error::Exited { .. }) if attempt < 3 => attempt += 1,
                result => return result,
            }
        }
    }

    async fn spawn(venv: &PythonVenv, region: &str) -> Result<Self, Error> {
        let port = free_port()?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let logs = venv.dir().with_file_name("local-dynamodb-logs");
        fs::create_dir_all(&logs).map_err(io_err(format!("creating {}", logs.display())))?;
        let log_path = logs.join(format!("moto-{port}.log"));
        let log =
            File::create(&log_path).map_err(io_err(format!("creating {}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(io_err("duplicating the log handle"))?;
        let mut command = Command::new(venv.python());
        command
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
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
        let child = command.spawn().map_err(io_err("starting moto server"))?;
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
    /// and enables TTL on `ttl_attribute` when given.
    pub async fn create_table(
        &self,
        name: &str,
        hash_key: &str,
        ttl_attribute: Option<&str>,
    ) -> Result<(), Error> {
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
        if let Some(ttl_attribute) = ttl_attribute {
            let spec = TimeToLiveSpecification::builder()
                .attribute_name(ttl_attribute)
                .enabled(true)
                .build()
                .map_err(|e| Error::DynamoDb {
                    operation: "UpdateTimeToLive",
                    message: e.to_string(),
                })?;
            self.client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(spec)
                .send()
                .await
                .map_err(|e| sdk_error("UpdateTimeToLive", e))?;
        }
        Ok(())
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

/// Installs moto into `<target>/moto-venv` once (under a file lock) and
/// returns the venv.
fn ensure_installed() -> Result<PythonVenv, Error> {
    let venv = PythonVenv::new(
        target_dir()?.join("moto-venv"),
        &[&format!("moto[server]=={MOTO_VERSION}")],
        "",
    );
    venv.ensure(|dir| {
        tracing::info!(venv = %dir.display(), "installing moto[server]=={MOTO_VERSION} (first use)");
    })?;
    Ok(venv)
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
