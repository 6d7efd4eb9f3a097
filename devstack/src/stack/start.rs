//! The steps of starting the stack, in the order `Stack::start` takes them:
//! read the program, check the limits, bind every listener (so port 0 works
//! and the real ports are known before anything is configured), get the
//! function's first binary, start the local DynamoDB, then the pieces that
//! are configured from what came before (the console, the Invoke API, watch
//! mode).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use local_dynamodb::LocalDynamoDb;
use pulumi_program::Topology;
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::reload::program::ProgramFiles;
use super::reload::{Function, FunctionSource, LiveStack, Reloader, Watching};
use super::{Endpoints, UpOptions, random_api_key};
use crate::console::{self, Console, EventBus, SignInInfo, StackInfo};
use crate::lambda::LambdaPool;
use crate::lambda::invoke::Invoke;
use crate::lambda::invoke_api::{AsyncDelivery, LambdaApi};
use crate::reload::build::CargoFunction;

/// The banner's watch line without watch mode.
pub(super) const NO_WATCH: &str = "off (--no-watch): restart devstack to apply changes";

/// The program's topology for the stack `options` names.
pub(super) fn load_program(options: &UpOptions) -> anyhow::Result<Topology> {
    pulumi_program::load(&options.program_dir, &options.stack).with_context(|| {
        format!(
            "reading the Pulumi program in {} (stack {})",
            options.program_dir.display(),
            options.stack
        )
    })
}

/// Limits that would make the stack refuse everything.
pub(super) fn check_limits(options: &UpOptions) -> anyhow::Result<()> {
    if options.max_concurrency == 0 {
        bail!("--max-concurrency must be at least 1");
    }
    if options.max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    if options.account_rate_limit == 0 {
        bail!("--account-rate-limit must be at least 1 (requests per second)");
    }
    if options.account_connect_limit == 0 {
        bail!("--account-connect-limit must be at least 1 (new connections per second)");
    }
    // Shorter limits serve tests of reconnect logic; longer ones than AWS's
    // would let a client pass locally what AWS closes.
    for (flag, value, aws) in [
        (
            "--idle-timeout",
            options.idle_timeout,
            protocol::limits::IDLE_TIMEOUT,
        ),
        (
            "--max-connection-life",
            options.max_connection_life,
            protocol::limits::MAX_CONNECTION_LIFE,
        ),
    ] {
        if value.is_zero() || value > aws {
            bail!(
                "{flag} must be between 1 second and AWS's {} seconds",
                aws.as_secs()
            );
        }
    }
    Ok(())
}

/// Every listener of the stack, bound, with the address it got.
pub(super) struct Listeners {
    pub(super) api: (TcpListener, SocketAddr),
    pub(super) edge: (TcpListener, SocketAddr),
    pub(super) console: (TcpListener, SocketAddr),
    /// The Lambda service's Invoke API, for the function's own client: a
    /// broadcast continues in asynchronous invocations of the function.
    pub(super) lambda: (TcpListener, SocketAddr),
    /// The control room (time and faults on demand): always on 127.0.0.1.
    pub(super) control: (TcpListener, SocketAddr),
}

impl Listeners {
    pub(super) async fn bind(options: &UpOptions) -> anyhow::Result<Listeners> {
        let api = bind(options.api_addr, "API layer").await?;
        let edge = bind(options.edge_addr, "edge").await?;
        warn_if_exposed(edge.1, api.1);
        console::check_loopback(options.console_addr)?;
        let console = bind(options.console_addr, "console").await?;
        // Only the function processes call it: it stays on loopback even
        // when the API layer does not.
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let lambda = bind(loopback, "Lambda Invoke API").await?;
        let control = bind(loopback, "control").await?;
        Ok(Listeners {
            api,
            edge,
            console,
            lambda,
            control,
        })
    }

    /// Where each listener answers, with the stage and the stack's API key.
    pub(super) fn endpoints(&self, topology: &Topology, options: &UpOptions) -> Endpoints {
        let api_key = options.api_key.clone().unwrap_or_else(random_api_key);
        let mut endpoints = Endpoints::new(
            self.edge.1,
            self.api.1,
            self.console.1,
            self.lambda.1,
            &topology.stage.name,
            api_key,
        );
        endpoints.control = format!("http://{}", self.control.1);
        endpoints.region = topology.region.clone();
        endpoints
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = crate::listener::bind(addr).with_context(|| {
        format!(
            "cannot listen on {addr} for the {what} (is another devstack running? try another port)"
        )
    })?;
    let local = listener
        .local_addr()
        .with_context(|| format!("the {what}'s local address"))?;
    Ok((listener, local))
}

/// Says what other machines can reach when a listener is not on loopback.
fn warn_if_exposed(edge_addr: SocketAddr, api_addr: SocketAddr) {
    let edge = "the edge (--edge-addr): anyone who reaches it is let into the API with the stack's key, \
                as CloudFront's clients are";
    let api = "the API layer (--api-addr): $connect with the key, and the @connections management API, \
               whose SigV4 credentials are the fixed local ones (local/local), so anyone who sends a \
               loopback Host can read any connection's sourceIp and userAgent, post to it or close it \
               (the Lambda Invoke API stays on 127.0.0.1)";
    for warning in [
        crate::listener::exposure_warning(edge_addr, edge),
        crate::listener::exposure_warning(api_addr, api),
    ]
    .into_iter()
    .flatten()
    {
        warn!("{warning}");
    }
}

impl Endpoints {
    fn new(
        edge_addr: SocketAddr,
        api_addr: SocketAddr,
        console_addr: SocketAddr,
        lambda_addr: SocketAddr,
        stage: &str,
        api_key: String,
    ) -> Self {
        Endpoints {
            console: format!("http://{console_addr}/"),
            lambda: format!("http://{lambda_addr}"),
            edge: format!("ws://{edge_addr}/"),
            api: format!("ws://{api_addr}/{stage}"),
            management: format!("http://{api_addr}/{stage}"),
            api_key,
            stage: stage.to_string(),
            issuer: None,
            control: String::new(),
            region: String::new(),
        }
    }
}

/// Where the function comes from: the prebuilt binary given, or its crate
/// in the workspace of the program directory when that is one (a copy of
/// the repository builds its own function), else in devstack's workspace.
pub(super) fn function_source(options: &UpOptions) -> FunctionSource {
    match &options.function_bin {
        Some(path) => FunctionSource::File(path.clone()),
        None => FunctionSource::Cargo(CargoFunction::new(workspace_manifest(options))),
    }
}

/// The `Cargo.toml` of the workspace the functions are built in: the
/// program directory's when it is one, else devstack's own.
pub(super) fn workspace_manifest(options: &UpOptions) -> std::path::PathBuf {
    let manifest = options.program_dir.join("Cargo.toml");
    if manifest.is_file() {
        return manifest;
    }
    let devstack = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = devstack.parent().unwrap_or(devstack);
    workspace.join("Cargo.toml")
}

/// The function's first binary, and in watch mode the [`Function`] that
/// keeps devstack's own copy of each version (the pool runs the copy).
pub(super) async fn first_function(
    options: &UpOptions,
    source: &FunctionSource,
) -> anyhow::Result<(std::path::PathBuf, Option<Function>)> {
    if options.watch {
        let function = Function::first(source.clone()).await?;
        Ok((function.current().binary.clone(), Some(function)))
    } else {
        Ok((source.first_binary().await?, None))
    }
}

/// The local DynamoDB server with the program's connections and claims tables.
pub(super) async fn start_dynamodb(topology: &Topology) -> anyhow::Result<LocalDynamoDb> {
    let dynamodb = LocalDynamoDb::start_in_region(&topology.region)
        .await
        .context("starting the local DynamoDB server")?;
    for (table, what) in [
        (&topology.table, "connections"),
        (&topology.claims_table, "claims"),
    ] {
        dynamodb
            .create_table(&table.name, &table.hash_key)
            .await
            .with_context(|| format!("creating the {what} table {}", table.name))?;
    }
    info!(endpoint = dynamodb.endpoint(), table = %topology.table.name,
        claims = %topology.claims_table.name, "local DynamoDB ready");
    Ok(dynamodb)
}

/// The browser console, told which stack it shows.
pub(super) fn console_of(topology: &Topology, endpoints: &Endpoints, events: EventBus) -> Console {
    Console::new(
        StackInfo {
            stack: topology.stack.clone(),
            project: topology.project.clone(),
            region: topology.region.clone(),
            edge: endpoints.edge.clone(),
            api: endpoints.api.clone(),
            sign_in: topology
                .sign_in
                .as_ref()
                .filter(|s| s.enabled)
                .map(|s| SignInInfo {
                    token_parameter: s.token_parameter.clone(),
                    local_issuer: endpoints.issuer.clone(),
                    mints: endpoints.issuer.is_some(),
                }),
        },
        events,
    )
}

/// The Invoke API, delivering asynchronous events with the program's
/// retries and maximum event age.
pub(super) fn lambda_api_of(
    topology: &Topology,
    pool: &Arc<LambdaPool>,
    options: &UpOptions,
) -> LambdaApi {
    let async_invoke = topology.function.async_invoke;
    LambdaApi::new(
        &topology.function.name,
        &topology.region,
        pool.clone() as Arc<dyn Invoke>,
        AsyncDelivery {
            max_retries: async_invoke.maximum_retry_attempts,
            max_event_age: Duration::from_secs(u64::from(async_invoke.maximum_event_age_secs)),
            deliveries: options.async_deliveries.max(1),
        },
    )
}

/// Watch mode over `live`: what it watches, and the banner's line for it.
pub(super) async fn start_watching(
    options: &UpOptions,
    source: &FunctionSource,
    live: LiveStack,
    topology: Topology,
    function: Function,
) -> anyhow::Result<(Watching, String)> {
    let program = ProgramFiles::new(&options.program_dir, &options.stack);
    let set = source.watch_set(&program).await;
    let line = format!(
        "on: {}; applies Pulumi.yaml, Pulumi.{}.yaml on save (--no-watch: off)",
        source.describe(),
        options.stack
    );
    let reloader = Reloader::new(live, program, topology, function);
    let watching = Watching::start(reloader, &set).context("starting watch mode")?;
    Ok((watching, line))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn options() -> UpOptions {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        UpOptions {
            program_dir: PathBuf::from("."),
            stack: "dev".into(),
            edge_addr: any,
            api_addr: any,
            console_addr: any,
            function_bin: None,
            api_key: None,
            ready_file: None,
            max_concurrency: 1,
            async_deliveries: 1,
            max_connections: 1,
            account_rate_limit: 1,
            account_connect_limit: 1,
            idle_timeout: protocol::limits::IDLE_TIMEOUT,
            max_connection_life: protocol::limits::MAX_CONNECTION_LIFE,
            issuer_addr: any,
            issuer: None,
            authorizer_bin: None,
            watch: false,
            freeze: true,
        }
    }

    #[test]
    fn aws_limits_may_be_shortened_but_not_lengthened_or_zeroed() {
        let mut shorter = options();
        shorter.idle_timeout = Duration::from_secs(2);
        shorter.max_connection_life = Duration::from_secs(5);
        assert!(check_limits(&shorter).is_ok());
        for (idle, life) in [(601, 7200), (0, 7200), (600, 7201), (600, 0)] {
            let mut bad = options();
            bad.idle_timeout = Duration::from_secs(idle);
            bad.max_connection_life = Duration::from_secs(life);
            let error = check_limits(&bad).expect_err("refused").to_string();
            let flag = if idle == 600 {
                "--max-connection-life"
            } else {
                "--idle-timeout"
            };
            assert!(error.contains(flag) && error.contains("AWS's"), "{error}");
        }
    }
}
