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
//! function processes and DynamoDB end. In watch mode (the default) a
//! [`reload::Reloader`] applies saves of the function and the program to the
//! running services between the two.

mod banner;
pub mod command;
pub mod open_files;
mod program;
pub mod reload;
mod sign_in;
mod start;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use local_dynamodb::LocalDynamoDb;
use pulumi_program::Topology;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::apigateway::{AccountLimits, Gateway, REQUEST_CONNECTIONS};
use crate::cloudfront::Edge;
use crate::console::{Console, EventBus};
use crate::control::ControlServer;
use crate::lambda::LambdaPool;
use crate::lambda::invoke::Invoke;
use crate::lambda::invoke_api::LambdaApi;
use crate::listener::ListenerLimits;
pub use program::{
    IssuerTarget, LOCAL_API_ID, authorizer_config, authorizer_env, edge_config, function_config,
    function_env, gateway_config, localize_url,
};
use reload::{LiveStack, Watching};
use sign_in::SignIn;
use start::{
    Listeners, NO_WATCH, check_limits, console_of, first_function, function_source, lambda_api_of,
    load_program, start_dynamodb, start_watching,
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
    /// The console's address (loopback only).
    pub console_addr: SocketAddr,
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
    /// Open WebSocket connections each of the edge and the API layer
    /// accepts at most (the API layer's management requests have a budget
    /// of their own).
    pub max_connections: usize,
    /// The account's request rate (`@connections` and the API's own
    /// requests), per second.
    pub account_rate_limit: u32,
    /// The account's rate of new WebSocket connections, per second.
    pub account_connect_limit: u32,
    /// API Gateway's idle timeout (AWS: 10 minutes); shorter for a test run.
    pub idle_timeout: Duration,
    /// API Gateway's maximum connection life (AWS: 2 hours); shorter for a test run.
    pub max_connection_life: Duration,
    /// Watch mode: saves of the function or the program reload the stack.
    pub watch: bool,
    /// Where the local OpenID issuer listens when sign-in is on (loopback).
    pub issuer_addr: SocketAddr,
    /// A real issuer for the authorizer (`ISSUER`, keys by OpenID
    /// discovery) instead of the local one.
    pub issuer: Option<String>,
    /// A prebuilt authorizer binary; built with cargo when absent.
    pub authorizer_bin: Option<PathBuf>,
    /// Lambda's freeze: each function process is stopped between invocations.
    pub freeze: bool,
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
    /// `http://<console-addr>/`: the browser console and its live view.
    pub console: String,
    /// `http://<lambda-addr>`: the Lambda Invoke API (the function's
    /// asynchronous self-invocations).
    pub lambda: String,
    /// `http://<issuer-addr>`: the local OpenID issuer, when sign-in is on
    /// and no real issuer was named (`devstack token` mints there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// `http://127.0.0.1:<port>`: the control room (`devstack control`).
    pub control: String,
    /// The stack's Region: control requests are signed for it.
    pub region: String,
}

#[cfg(test)]
impl Endpoints {
    /// Endpoints of a stack that is not running, for tests of their readers.
    pub(crate) fn example() -> Endpoints {
        Endpoints {
            edge: "ws://127.0.0.1:1/".into(),
            api: "ws://127.0.0.1:2/prod".into(),
            management: "http://127.0.0.1:2/prod".into(),
            api_key: "k".into(),
            stage: "prod".into(),
            console: "http://127.0.0.1:3/".into(),
            lambda: "http://127.0.0.1:4".into(),
            issuer: None,
            control: "http://127.0.0.1:5".into(),
            region: "eu-west-1".into(),
        }
    }
}

/// A running local stack.
pub struct Stack {
    endpoints: Endpoints,
    topology: Topology,
    dynamodb: LocalDynamoDb,
    pool: Arc<LambdaPool>,
    lambda_api: LambdaApi,
    lambda_server: JoinHandle<std::io::Result<()>>,
    control_server: JoinHandle<std::io::Result<()>>,
    gateway: Gateway,
    edge: Edge,
    console: Console,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
    max_concurrency: usize,
    /// Watch mode, when on, and what it watches (for the banner).
    watching: Option<Watching>,
    watch_line: String,
    /// The authorizer's pool and the local issuer, when sign-in is on.
    sign_in: Option<SignIn>,
    sign_in_line: String,
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

impl Stack {
    /// Starts everything; on error, whatever was started is stopped (the
    /// DynamoDB server and function processes end when dropped).
    pub async fn start(options: &UpOptions) -> anyhow::Result<Stack> {
        let topology = load_program(options)?;
        check_limits(options)?;
        let listeners = Listeners::bind(options).await?;
        let mut endpoints = listeners.endpoints(&topology, options);
        // What happens inside the stack, for the console's live view.
        let events = EventBus::new();
        let edge = Edge::new(edge_config(&topology, &endpoints), events.clone())
            .context("configuring the edge")?;
        let source = function_source(options);
        let (binary, function) = first_function(options, &source).await?;
        let dynamodb = start_dynamodb(&topology).await?;

        let api_addr = listeners.api.1;
        let sign_in =
            SignIn::start(&topology, options, &mut endpoints, api_addr, events.clone()).await?;
        let sign_in_line = match &sign_in {
            Some(sign_in) => sign_in.banner_line(),
            None => sign_in::off_line(&topology),
        };
        let env = function_env(&topology, &endpoints, api_addr, dynamodb.endpoint())?;
        let pool = LambdaPool::start(
            function_config(&topology.function, binary, env, options.max_concurrency),
            events.clone(),
        )
        .await
        .context("starting the function")?;
        let mut api_config = gateway_config(
            &topology,
            LOCAL_API_ID,
            &api_addr.to_string(),
            &endpoints.api_key,
        );
        api_config.limits.max_websockets = options.max_connections;
        api_config.limits.account = AccountLimits {
            request_rate: options.account_rate_limit,
            connect_rate: options.account_connect_limit,
        };
        api_config.limits.idle_timeout = options.idle_timeout;
        api_config.limits.max_connection_life = options.max_connection_life;
        let gateway = Gateway::with_authorizer(
            api_config,
            &topology.region,
            pool.clone() as Arc<dyn Invoke>,
            sign_in.as_ref().map(|s| s.pool.clone() as Arc<dyn Invoke>),
            events.clone(),
        );
        let console = console_of(&topology, &endpoints, events);
        let lambda_api = lambda_api_of(&topology, &pool, options);
        info!(endpoint = %endpoints.lambda, async_invoke = ?topology.function.async_invoke, deliveries = options.async_deliveries, "local Lambda Invoke API ready");

        let limits = ListenerLimits {
            max_connections: options.max_connections,
            ..ListenerLimits::default()
        };
        // The API layer's sockets: the WebSockets, plus a budget of their
        // own for the management API (the function's posts) and handshakes
        // in progress, so a broadcast at the WebSocket cap still goes out.
        let api_limits = ListenerLimits {
            max_connections: options.max_connections + REQUEST_CONNECTIONS,
            ..limits
        };
        // CloudFront's hop to the origin, in process: no socket pair per
        // connection through the edge (crate::listener::local).
        let (origin_dialer, origin_door) = crate::listener::local_door();
        edge.reach_origin_through(origin_dialer);
        let servers = vec![
            tokio::spawn(gateway.clone().serve_with_door(
                listeners.api.0,
                Some(origin_door),
                api_limits,
            )),
            tokio::spawn(edge.clone().serve(listeners.edge.0, limits)),
            tokio::spawn(console.clone().serve(listeners.console.0)),
        ];
        let lambda_server = tokio::spawn(lambda_api.clone().serve(listeners.lambda.0));
        let faults = gateway.fault_plan();
        pool.set_fault_plan(Arc::clone(&faults));
        pool.set_freeze(options.freeze);
        let control = ControlServer::new(&topology.region, faults, Arc::new(gateway.clone()));
        let control_server = tokio::spawn(control.serve(listeners.control.0));
        let (watching, watch_line) = match function {
            Some(function) => {
                let live = LiveStack {
                    pool: Arc::clone(&pool),
                    gateway: gateway.clone(),
                    edge: edge.clone(),
                    lambda_api: lambda_api.clone(),
                    endpoints: endpoints.clone(),
                    api_addr,
                    dynamodb_endpoint: dynamodb.endpoint().to_string(),
                    max_concurrency: options.max_concurrency,
                };
                let (watching, line) =
                    start_watching(options, &source, live, topology.clone(), function).await?;
                (Some(watching), line)
            }
            None => (None, NO_WATCH.to_string()),
        };
        info!(edge = %endpoints.edge, api = %endpoints.api, watch = watching.is_some(), "local stack ready");
        Ok(Stack {
            endpoints,
            topology,
            dynamodb,
            pool,
            lambda_api,
            lambda_server,
            control_server,
            gateway,
            edge,
            console,
            servers,
            max_concurrency: options.max_concurrency,
            watching,
            watch_line,
            sign_in,
            sign_in_line,
        })
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The pids of the function processes (the authorizer's too). The
    /// local DynamoDB is a thread of this process.
    pub fn process_ids(&self) -> Vec<u32> {
        let mut pids = self.pool.process_ids();
        if let Some(sign_in) = &self.sign_in {
            pids.extend(sign_in.pool.process_ids());
        }
        pids
    }
    /// Clean shutdown: the edge stops accepting, every client gets a close
    /// frame (1001) and its `$disconnect` runs, then the function processes
    /// and the DynamoDB server end.
    pub async fn shutdown(self) {
        if let Some(watching) = self.watching {
            watching.stop().await;
        }
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
        self.control_server.abort();
        // Its event streams end, so its server can stop with the others.
        self.console.stop();
        for server in self.servers {
            let _ = tokio::time::timeout(SERVER_STOP, server).await;
        }
        self.pool.shutdown().await;
        if let Some(sign_in) = self.sign_in {
            sign_in.shutdown().await;
        }
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
        let endpoints = Endpoints::example();
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
