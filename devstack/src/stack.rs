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

use crate::edge::{Edge, EdgeConfig};
use crate::gateway::{Gateway, GatewayConfig};
use crate::invoke::Invoke;
use crate::lambda::{self, FunctionConfig, LambdaPool};

/// The API id the local API layer plays (API Gateway ids are 10 characters).
pub const LOCAL_API_ID: &str = "devstack01";
/// The account id in local ARNs.
const LOCAL_ACCOUNT_ID: &str = "000000000000";
/// How long shutdown waits for `$disconnect` of every connection.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long shutdown waits for each server task to finish.
const SERVER_STOP: Duration = Duration::from_secs(3);
/// Variables of the devstack's own environment handed to the function.
const PASSTHROUGH_ENV: &[&str] = &["RUST_LOG", "AWS_LAMBDA_LOG_LEVEL", "RUST_BACKTRACE"];

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

/// Maps an AWS execute-api URL the program gives the function
/// (`https://{apiId}.execute-api.{region}.amazonaws.com/{stage}`, or `wss://`)
/// to the local API layer; any other value is returned unchanged.
pub fn localize_url(value: &str, api_addr: SocketAddr) -> String {
    for (scheme, local_scheme) in [("https://", "http://"), ("wss://", "ws://")] {
        if let Some(rest) = value.strip_prefix(scheme) {
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            if host.contains(".execute-api.") && host.ends_with(".amazonaws.com") {
                return format!("{local_scheme}{api_addr}/{path}");
            }
        }
    }
    value.to_string()
}

/// The local value of a resource output the program's function environment
/// refers to.
fn local_output(
    topology: &Topology,
    endpoints: &Endpoints,
    api_addr: SocketAddr,
    resource_type: &str,
    property: &str,
) -> Option<String> {
    let region = &topology.region;
    let table = &topology.table.name;
    Some(match (resource_type, property) {
        ("aws:apigatewayv2/api:Api", "id") => LOCAL_API_ID.to_string(),
        ("aws:apigatewayv2/api:Api", "apiEndpoint") => format!("ws://{api_addr}"),
        ("aws:apigatewayv2/api:Api", "executionArn") => {
            format!("arn:aws:execute-api:{region}:{LOCAL_ACCOUNT_ID}:{LOCAL_API_ID}")
        }
        ("aws:apigatewayv2/stage:Stage", "name" | "id") => endpoints.stage.clone(),
        ("aws:apigatewayv2/stage:Stage", "invokeUrl") => endpoints.api.clone(),
        ("aws:dynamodb/table:Table", "name" | "id") => table.clone(),
        ("aws:dynamodb/table:Table", "arn") => {
            format!("arn:aws:dynamodb:{region}:{LOCAL_ACCOUNT_ID}:table/{table}")
        }
        ("aws:cloudfront/distribution:Distribution", "domainName") => endpoints
            .edge
            .trim_start_matches("ws://")
            .trim_end_matches('/')
            .to_string(),
        ("aws:apigateway/apiKey:ApiKey", "value") => endpoints.api_key.clone(),
        _ => return None,
    })
}

/// The function's environment: the program's variables with resource
/// outputs resolved to local values, then the region, dummy credentials, the
/// SDK's endpoint override for the local DynamoDB, and `MANAGEMENT_ENDPOINT`
/// (the variable the program sets) for the local management API.
fn function_env(
    topology: &Topology,
    endpoints: &Endpoints,
    api_addr: SocketAddr,
    dynamodb_endpoint: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut env = Vec::new();
    for (name, template) in &topology.function.environment {
        let value = template
            .resolve(|resource_type, property| {
                local_output(topology, endpoints, api_addr, resource_type, property)
            })
            .with_context(|| format!("the function's environment variable {name}"))?;
        env.push((name.clone(), localize_url(&value, api_addr)));
    }
    let fixed = [
        ("AWS_REGION", topology.region.clone()),
        ("AWS_DEFAULT_REGION", topology.region.clone()),
        ("AWS_ACCESS_KEY_ID", "local".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "local".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint.to_string()),
        ("MANAGEMENT_ENDPOINT", endpoints.management.clone()),
    ];
    env.extend(fixed.into_iter().map(|(k, v)| (k.to_string(), v)));
    for name in PASSTHROUGH_ENV {
        if let Ok(value) = std::env::var(name) {
            env.push((name.to_string(), value));
        }
    }
    Ok(env)
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

impl Stack {
    /// Starts everything; on error, whatever was started is stopped (the
    /// DynamoDB server and function processes end when dropped).
    pub async fn start(options: &UpOptions) -> anyhow::Result<Stack> {
        let topology =
            pulumi_program::load(&options.program_dir, &options.stack).with_context(|| {
                format!(
                    "reading the Pulumi program in {} (stack {})",
                    options.program_dir.display(),
                    options.stack
                )
            })?;
        if options.max_concurrency == 0 {
            bail!("--max-concurrency must be at least 1");
        }
        let (api_listener, api_addr) = bind(options.api_addr, "API layer").await?;
        let (edge_listener, edge_addr) = bind(options.edge_addr, "edge").await?;
        let stage = topology.stage.name.clone();
        let api_key = options.api_key.clone().unwrap_or_else(random_api_key);
        let endpoints = Endpoints {
            edge: format!("ws://{edge_addr}/"),
            api: format!("ws://{api_addr}/{stage}"),
            management: format!("http://{api_addr}/{stage}"),
            api_key: api_key.clone(),
            stage: stage.clone(),
        };
        let edge = Edge::new(EdgeConfig {
            origin: endpoints.api.clone(),
            origin_api_key_header: topology.origin_api_key_header.clone(),
            api_key: api_key.clone(),
            waf: topology.waf.clone(),
        })
        .context("configuring the edge")?;

        let binary = match &options.function_bin {
            Some(path) => path.clone(),
            None => tokio::task::spawn_blocking(lambda::build_function_binary)
                .await
                .context("the function build task failed")??,
        };

        let dynamodb = LocalDynamoDb::start_in_region(&topology.region)
            .await
            .context("starting the local DynamoDB server (moto)")?;
        let table = &topology.table;
        dynamodb
            .create_table(&table.name, &table.hash_key, table.ttl_attribute.as_deref())
            .await
            .with_context(|| format!("creating the connections table {}", table.name))?;
        info!(endpoint = dynamodb.endpoint(), table = %table.name, "local DynamoDB ready");

        let env = function_env(&topology, &endpoints, api_addr, dynamodb.endpoint())?;
        let pool = LambdaPool::start(FunctionConfig {
            binary,
            name: topology.function.name.clone(),
            env,
            memory_mb: topology.function.memory_mb,
            timeout: Duration::from_secs(u64::from(topology.function.timeout_secs)),
            max_concurrency: options.max_concurrency,
        })
        .await
        .context("starting the function")?;

        let gateway = Gateway::new(
            GatewayConfig::from_topology(&topology, LOCAL_API_ID, &api_addr.to_string(), &api_key),
            pool.clone() as Arc<dyn Invoke>,
        );
        let servers = vec![
            tokio::spawn(gateway.clone().serve(api_listener)),
            tokio::spawn(edge.clone().serve(edge_listener)),
        ];
        info!(edge = %endpoints.edge, api = %endpoints.api, "local stack ready");
        Ok(Stack {
            endpoints,
            topology,
            dynamodb,
            pool,
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

    /// The start-up banner: URLs, the local key, and commands to try.
    pub fn banner(&self) -> String {
        let e = &self.endpoints;
        let t = &self.topology;
        let key_header = &t.origin_api_key_header;
        format!(
            "\n\
             devstack: stack `{stack}` of {project} (region {region}), from the Pulumi program\n\
             \n\
             \x20 edge (CloudFront + WAF)      {edge}\n\
             \x20 API (execute-api, direct)    {api}   (needs the {key_header} header)\n\
             \x20 management (@connections)    {management}/@connections/{{connectionId}}\n\
             \x20 local API key                {key}\n\
             \x20 DynamoDB                     {dynamodb}   table {table}\n\
             \x20 function                     up to {concurrency} processes, timeout {timeout}s\n\
             \x20 WAF rule {rule:<20} {limit} requests per {window}s per client IP\n\
             \n\
             Try it (wscat: `npm install -g wscat`, or `npx wscat`):\n\
             \x20 npx wscat -c {edge}\n\
             \x20 > {{\"action\":\"ping\"}}\n\
             \x20 < {{\"type\":\"pong\"}}\n\
             \x20 npx wscat -c {api}                                  # refused: 403, no key\n\
             \x20 npx wscat -c {api} -H \"{key_header}: {key}\"\n\
             \n\
             Ctrl-C stops the stack.\n",
            stack = t.stack,
            project = t.project,
            region = t.region,
            edge = e.edge,
            api = e.api,
            management = e.management,
            key = e.api_key,
            dynamodb = self.dynamodb.endpoint(),
            table = t.table.name,
            concurrency = self.max_concurrency,
            timeout = t.function.timeout_secs,
            rule = t.waf.rate_rule_name,
            limit = t.waf.rate_limit,
            window = t.waf.evaluation_window_secs,
        )
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
    fn execute_api_urls_map_to_the_local_api() {
        let addr: SocketAddr = "127.0.0.1:8081".parse().expect("addr");
        assert_eq!(
            localize_url(
                "https://abc123defg.execute-api.eu-west-1.amazonaws.com/prod",
                addr
            ),
            "http://127.0.0.1:8081/prod"
        );
        assert_eq!(
            localize_url(
                "wss://abc123defg.execute-api.us-east-1.amazonaws.com/prod",
                addr
            ),
            "ws://127.0.0.1:8081/prod"
        );
        assert_eq!(localize_url("connections-table", addr), "connections-table");
        assert_eq!(
            localize_url("https://example.com/prod", addr),
            "https://example.com/prod"
        );
    }

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

    #[test]
    fn the_dev_stacks_function_environment_resolves_locally() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let topology = pulumi_program::load(root, "dev").expect("the dev stack loads");
        let addr: SocketAddr = "127.0.0.1:8081".parse().expect("addr");
        let endpoints = Endpoints {
            edge: "ws://127.0.0.1:8080/".into(),
            api: "ws://127.0.0.1:8081/prod".into(),
            management: format!("http://127.0.0.1:8081/{}", topology.stage.name),
            api_key: "k".into(),
            stage: topology.stage.name.clone(),
        };
        let env =
            function_env(&topology, &endpoints, addr, "http://127.0.0.1:9").expect("resolves");
        let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        assert_eq!(get("AWS_ENDPOINT_URL_DYNAMODB"), Some("http://127.0.0.1:9"));
        assert_eq!(
            get("MANAGEMENT_ENDPOINT"),
            Some(endpoints.management.as_str())
        );
        assert_eq!(get("AWS_REGION"), Some(topology.region.as_str()));
        for (name, value) in &env {
            assert!(
                !value.contains("amazonaws.com"),
                "{name} still points at AWS: {value}"
            );
        }
    }
}
