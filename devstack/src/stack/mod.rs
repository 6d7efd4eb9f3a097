//! The local stack, wired from the Pulumi program: the topology `pulumi up`
//! deploys, started on one machine.
//!
//! Start order: read the program; bind the edge and API ports (so port 0
//! works and the real ports are known); build the function; start the local
//! DynamoDB and create the connections table; start the Lambda pool with the
//! environment the program gives the function (resource outputs mapped to
//! their local values) plus the standard endpoint overrides; then the API
//! layer and the edge. Shutdown runs the other way round: the edge stops
//! accepting, every client gets 1001 and its `$disconnect` runs, then the
//! function processes and DynamoDB end.

mod banner;
pub mod open_files;
mod program;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use local_dynamodb::LocalDynamoDb;
use pulumi_program::Topology;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::apigateway::Gateway;
use crate::cloudfront::Edge;
use crate::lambda::invoke::Invoke;
use crate::lambda::invoke_api::{AsyncDelivery, LambdaApi};
use crate::lambda::{self, LambdaPool};
pub use program::{
    LOCAL_API_ID, edge_config, function_config, function_env, gateway_config, localize_url,
};

/// How long shutdown waits for `$disconnect` of every connection.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long shutdown waits for each server task to finish.
const SERVER_STOP: Duration = Duration::from_secs(3);

/// What `devstack up` is asked to run.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The directory holding `Pulumi.yaml`.
    pub program_dir: PathBuf,
    pub stack: String,
    pub edge_addr: SocketAddr,
    pub api_addr: SocketAddr,
    /// A prebuilt function binary; built with cargo when absent.
    pub function_bin: Option<PathBuf>,
    /// The stack's API key; random when absent.
    pub api_key: Option<String>,
    /// Where to write [`Endpoints`] as JSON once everything accepts connections.
    pub ready_file: Option<PathBuf>,
    /// The most function processes at once (Lambda concurrency).
    pub max_concurrency: usize,
    /// Times each asynchronous event is delivered (1; 2 plays duplicates).
    pub async_deliveries: usize,
}

/// Where the running stack answers; written to `--ready-file` as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// `ws://<edge-addr>/`: plays `DistributionURL`.
    pub edge: String,
    /// `ws://<api-addr>/<stage>`: plays `ApiEndpoint` (needs the key).
    pub api: String,
    /// `http://<api-addr>/<stage>`: the @connections management API endpoint.
    pub management: String,
    pub api_key: String,
    pub stage: String,
}

/// A running local stack.
pub struct Stack {
    endpoints: Endpoints,
    topology: Topology,
    dynamodb: LocalDynamoDb,
    pool: Arc<LambdaPool>,
    lambda_api: LambdaApi,
    lambda_server: JoinHandle<std::io::Result<()>>,
    gateway: Gateway,
    edge: Edge,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
    max_concurrency: usize,
}

/// The directory holding `Pulumi.yaml`, walking up from `start`.
pub fn find_program_dir(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| dir.join("Pulumi.yaml").is_file())
        .map(Path::to_path_buf)
}

/// A random key in API Gateway's format: 40 letters and digits.
pub fn random_api_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..40)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect()
}
async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr} for the {what} (is another devstack running? try another port)"
        )
    })?;
    let local = listener
        .local_addr()
        .with_context(|| format!("the {what}'s local address"))?;
    Ok((listener, local))
}

impl Endpoints {
    fn new(edge_addr: SocketAddr, api_addr: SocketAddr, stage: &str, api_key: String) -> Self {
        Endpoints {
            edge: format!("ws://{edge_addr}/"),
            api: format!("ws://{api_addr}/{stage}"),
            management: format!("http://{api_addr}/{stage}"),
            api_key,
            stage: stage.to_string(),
        }
    }
}

/// The program's topology for the stack `options` names.
fn load_program(options: &UpOptions) -> anyhow::Result<Topology> {
    pulumi_program::load(&options.program_dir, &options.stack).with_context(|| {
        format!(
            "reading the Pulumi program in {} (stack {})",
            options.program_dir.display(),
            options.stack
        )
    })
}

/// The prebuilt binary given, or the function built with cargo.
async fn function_binary(options: &UpOptions) -> anyhow::Result<PathBuf> {
    match &options.function_bin {
        Some(path) => Ok(path.clone()),
        None => tokio::task::spawn_blocking(lambda::build_function_binary)
            .await
            .context("the function build task failed")?,
    }
}

/// The local DynamoDB server with the program's connections table.
async fn start_dynamodb(topology: &Topology) -> anyhow::Result<LocalDynamoDb> {
    let dynamodb = LocalDynamoDb::start_in_region(&topology.region)
        .await
        .context("starting the local DynamoDB server (moto)")?;
    let table = &topology.table;
    dynamodb
        .create_table(&table.name, &table.hash_key, table.ttl_attribute.as_deref())
        .await
        .with_context(|| format!("creating the connections table {}", table.name))?;
    info!(endpoint = dynamodb.endpoint(), table = %table.name, "local DynamoDB ready");
    Ok(dynamodb)
}

impl Stack {
    /// Starts everything; on error, whatever was started is stopped (the
    /// DynamoDB server and function processes end when dropped).
    pub async fn start(options: &UpOptions) -> anyhow::Result<Stack> {
        let topology = load_program(options)?;
        if options.max_concurrency == 0 {
            bail!("--max-concurrency must be at least 1");
        }
        let (api_listener, api_addr) = bind(options.api_addr, "API layer").await?;
        let (edge_listener, edge_addr) = bind(options.edge_addr, "edge").await?;
        let api_key = options.api_key.clone().unwrap_or_else(random_api_key);
        let endpoints = Endpoints::new(edge_addr, api_addr, &topology.stage.name, api_key);
        let edge = Edge::new(edge_config(&topology, &endpoints)).context("configuring the edge")?;
        let binary = function_binary(options).await?;
        let dynamodb = start_dynamodb(&topology).await?;

        // The Lambda service's Invoke API, for the function's own client: a
        // broadcast continues in asynchronous invocations of the function.
        let (lambda_listener, lambda_addr) =
            bind(SocketAddr::new(api_addr.ip(), 0), "Lambda Invoke API").await?;
        let mut env = function_env(&topology, &endpoints, api_addr, dynamodb.endpoint())?;
        env.push((
            "AWS_ENDPOINT_URL_LAMBDA".to_string(),
            format!("http://{lambda_addr}"),
        ));
        let pool = LambdaPool::start(function_config(
            &topology,
            binary,
            env,
            options.max_concurrency,
        ))
        .await
        .context("starting the function")?;

        let gateway = Gateway::new(
            gateway_config(
                &topology,
                LOCAL_API_ID,
                &api_addr.to_string(),
                &endpoints.api_key,
            ),
            pool.clone() as Arc<dyn Invoke>,
        );
        let async_invoke = topology.function.async_invoke;
        let lambda_api = LambdaApi::new(
            &topology.function.name,
            pool.clone() as Arc<dyn Invoke>,
            AsyncDelivery {
                max_retries: async_invoke.maximum_retry_attempts,
                max_event_age: Duration::from_secs(u64::from(async_invoke.maximum_event_age_secs)),
                deliveries: options.async_deliveries.max(1),
            },
        );
        info!(endpoint = %format!("http://{lambda_addr}"), ?async_invoke, deliveries = options.async_deliveries, "local Lambda Invoke API ready");
        let servers = vec![
            tokio::spawn(gateway.clone().serve(api_listener)),
            tokio::spawn(edge.clone().serve(edge_listener)),
        ];
        let lambda_server = tokio::spawn(lambda_api.clone().serve(lambda_listener));
        info!(edge = %endpoints.edge, api = %endpoints.api, "local stack ready");
        Ok(Stack {
            endpoints,
            topology,
            dynamodb,
            pool,
            lambda_api,
            lambda_server,
            gateway,
            edge,
            servers,
            max_concurrency: options.max_concurrency,
        })
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The pids of the function processes and the DynamoDB server.
    pub fn process_ids(&self) -> Vec<u32> {
        let mut pids = self.pool.process_ids();
        pids.push(self.dynamodb.pid());
        pids
    }
    /// Clean shutdown: the edge stops accepting, every client gets a close
    /// frame (1001) and its `$disconnect` runs, then the function processes
    /// and the DynamoDB server end.
    pub async fn shutdown(self) {
        self.edge.stop_accepting();
        let open = self.gateway.connection_count();
        if !self.gateway.shutdown(SHUTDOWN_GRACE).await {
            warn!(
                grace_secs = SHUTDOWN_GRACE.as_secs(),
                "some connections did not finish $disconnect in time"
            );
        }
        // Queued asynchronous invocations (a broadcast's continuations) finish
        // before the function processes end; then nothing more is accepted.
        if !self.lambda_api.drain(SHUTDOWN_GRACE).await {
            warn!("some asynchronous invocations had not finished");
        }
        self.lambda_server.abort();
        for server in self.servers {
            let _ = tokio::time::timeout(SERVER_STOP, server).await;
        }
        self.pool.shutdown().await;
        drop(self.dynamodb);
        info!(connections_closed = open, "local stack stopped");
    }
}

/// Writes the endpoints as JSON, atomically (readers never see half a file).
pub fn write_ready_file(path: &Path, endpoints: &Endpoints) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(endpoints).context("serialising the endpoints")?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => {
            result.context("waiting for Ctrl-C")?;
            Ok("Ctrl-C")
        }
        _ = terminate.recv() => Ok("SIGTERM"),
    }
}

/// `devstack up`: starts the stack, prints the banner, writes the ready file,
/// runs until Ctrl-C/SIGTERM, then shuts down cleanly. A second signal
/// during shutdown stops at once (child processes still end with the stack).
pub async fn run(options: UpOptions) -> anyhow::Result<()> {
    let stack = Stack::start(&options).await?;
    println!("{}", stack.banner());
    if let Some(path) = &options.ready_file {
        write_ready_file(path, stack.endpoints())?;
    }
    let signal = shutdown_signal().await?;
    info!(signal, "shutting down");
    tokio::select! {
        () = stack.shutdown() => {}
        second = shutdown_signal() => {
            second?;
            warn!("second signal: stopping without waiting");
        }
    }
    if let Some(path) = &options.ready_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_look_like_api_gateways() {
        let key = random_api_key();
        assert_eq!(key.len(), 40);
        assert!(key.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(key, random_api_key());
    }

    #[test]
    fn endpoints_are_camel_case_json() {
        let endpoints = Endpoints {
            edge: "ws://127.0.0.1:1/".into(),
            api: "ws://127.0.0.1:2/prod".into(),
            management: "http://127.0.0.1:2/prod".into(),
            api_key: "k".into(),
            stage: "prod".into(),
        };
        let json = serde_json::to_value(&endpoints).expect("json");
        assert_eq!(json["apiKey"], "k");
        assert_eq!(json["management"], "http://127.0.0.1:2/prod");
    }

    #[test]
    fn the_program_dir_is_found_walking_up() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        assert_eq!(
            find_program_dir(&root.join("devstack/src")).as_deref(),
            Some(root)
        );
    }
}
