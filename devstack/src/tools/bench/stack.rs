//! The local stack the bench measures: `devstack up` as a child process
//! with limits raised, and the stack half of the report.

use super::load::{Target, Via};
use super::*;
use crate::tools::launch::{self, Launch};

pub(super) async fn bench_stack(args: &BenchArgs, env: &BenchEnv) -> anyhow::Result<StackReport> {
    let mut report = StackReport::default();
    if args.scale_only {
        let stack = BenchStack::start(env, &[]).await?;
        let measured = measure_load(&mut report, args, &stack).await;
        stack.shutdown().await;
        measured?;
        return Ok(report);
    }
    let echo_server = echo_server()?;
    let echo_addr = echo_server.addr;
    eprintln!("bench: echo floor on {echo_addr}");
    let floor = async {
        report.echo_handshake = handshakes(echo_addr, "/", args.handshakes).await?;
        let mut ws = connect(echo_addr, "/", source_address(0)).await?;
        let frame = ClientFrame::ping().to_text();
        let mut samples = Vec::with_capacity(args.messages);
        for _ in 0..args.messages {
            samples.push(echo(&mut ws, &frame).await?);
        }
        close(ws).await;
        report.echo_round_trip = Percentiles::of(&samples);
        anyhow::Ok(())
    }
    .await;
    drop(echo_server);
    floor.context("measuring the echo floor")?;

    // AWS's 500 new connections per second would refuse the broadcast's
    // 1,000 handshakes (the load row plays that quota, on its own stack).
    let stack = BenchStack::start(env, &LIFTED_CONNECT_QUOTA.map(String::from)).await?;
    let (addr, path) = (stack.edge, stack.path.as_str());
    eprintln!("bench: local stack edge on ws://{addr}{path}");
    let measured = async {
        report.edge_handshake = handshakes(addr, path, args.handshakes)
            .await
            .context("handshakes through the edge")?;
        report.edge_round_trip = round_trips(addr, path, args.messages).await?;
        eprintln!(
            "bench: sustained, {} clients × {} pings",
            args.sustained_clients, args.sustained_messages
        );
        let rate = sustained(addr, path, args.sustained_clients, args.sustained_messages)
            .await
            .context("sustained pings")?;
        report.sustained = Some((
            rate,
            args.sustained_clients,
            args.sustained_clients * args.sustained_messages,
        ));
        for &n in &args.fanout {
            // Let the previous connections' $disconnect finish first.
            tokio::time::sleep(Duration::from_secs(1)).await;
            eprintln!("bench: broadcast to {n}");
            let took = broadcast(addr, path, n)
                .await
                .with_context(|| format!("broadcast to {n}"))?;
            report.broadcast.insert(n, took);
        }
        anyhow::Ok(())
    }
    .await;
    stack.shutdown().await;
    measured?;
    if args.load.load > 0 {
        let stack = BenchStack::start(env, &[]).await?;
        let measured = measure_load(&mut report, args, &stack).await;
        stack.shutdown().await;
        measured?;
    }
    Ok(report)
}

/// `devstack up` flags that lift AWS's new-connection quota, for the rows
/// that compare the stack's speed rather than play the quota.
pub(super) const LIFTED_CONNECT_QUOTA: [&str; 2] = ["--account-connect-limit", "1000000"];

/// The load row, when `--load N` asks for it.
async fn measure_load(
    report: &mut StackReport,
    args: &BenchArgs,
    stack: &BenchStack,
) -> anyhow::Result<()> {
    if args.load.load == 0 {
        return Ok(());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!("bench: load, {} connections", args.load.load);
    let target = match args.load.load_via {
        Via::Edge => Target {
            addr: stack.edge,
            path: stack.path.clone(),
            api_key: None,
        },
        Via::Api => Target {
            addr: stack.api,
            path: stack.api_path.clone(),
            api_key: Some(stack.api_key.clone()),
        },
    };
    let figures = super::load::measure(&target, stack.child.id(), &args.load)
        .await
        .with_context(|| format!("load with {} connections", args.load.load))?;
    report.load = Some(figures);
    Ok(())
}

/// Stack config for the bench: the repository's program with limits high
/// enough for 1,000 connections and thousands of messages a second, so the
/// figures measure the stack rather than its WAF rule and throttling, and
/// with sign-in off.
pub(super) const BENCH_STACK: &str = "bench";
pub(super) const BENCH_CONFIG: &[(&str, u64)] = &[
    ("rateLimit", 2_000_000_000),
    ("stageBurstLimit", 100_000),
    ("stageRateLimit", 100_000),
    ("usagePlanBurstLimit", 100_000),
    ("usagePlanRateLimit", 100_000),
];

/// `Pulumi.bench.yaml`: the bench's limits under the project's namespace
/// (JSON, which is YAML).
pub fn bench_stack_config(project: &str) -> String {
    let mut config = serde_json::Map::new();
    config.insert("aws:region".into(), Value::from("us-east-1"));
    for (key, value) in BENCH_CONFIG {
        config.insert(format!("{project}:{key}"), Value::from(*value));
    }
    // The clients carry no token: the bench measures the stack's own path,
    // as serverless-offline's (no authorizer) is measured beside it.
    config.insert(format!("{project}:signIn"), Value::from("off"));
    serde_json::json!({ "config": config }).to_string()
}

/// `devstack up` as a child process (this same executable), configured
/// from a copy of the repository's Pulumi.yaml and a Pulumi.bench.yaml,
/// with the stack's default flags: its connection cap (10,000 WebSockets)
/// and AWS's account limits (10,000 requests/s, 500 new connections/s).
pub(super) struct BenchStack {
    pub(super) child: tokio::process::Child,
    pub(super) edge: SocketAddr,
    pub(super) path: String,
    /// The API layer (`ApiEndpoint`) and the key it wants.
    pub(super) api: SocketAddr,
    pub(super) api_path: String,
    pub(super) api_key: String,
    /// The stack's log (its own lines and the function's).
    pub(super) log: PathBuf,
}

impl BenchStack {
    /// `flags` are added to `devstack up`'s (the throttled row lowers the
    /// account's request rate with them).
    pub(super) async fn start(env: &BenchEnv, flags: &[String]) -> anyhow::Result<BenchStack> {
        Self::start_with_function(env, flags, "websocket-handler").await
    }

    /// Like [`BenchStack::start`], with `function` (a binary in the bench's
    /// `--bin-dir`) as the Lambda function.
    pub(super) async fn start_with_function(
        env: &BenchEnv,
        flags: &[String],
        function: &str,
    ) -> anyhow::Result<BenchStack> {
        let dir = env.scratch.join("stack");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let source = env.root.join("Pulumi.yaml");
        let program = std::fs::read_to_string(&source)
            .with_context(|| format!("reading {}", source.display()))?;
        let project = env.program()?.project;
        std::fs::write(dir.join("Pulumi.yaml"), &program).context("copying Pulumi.yaml")?;
        std::fs::write(
            dir.join(format!("Pulumi.{BENCH_STACK}.yaml")),
            bench_stack_config(&project),
        )
        .context("writing the bench stack's config")?;
        let ready_file = dir.join("ready.json");
        // Beside the program's directory, not in it: the stack watches that
        // directory for saves, and every line written there would be a file
        // event for it to sort out (7 % of its CPU in the handshake row).
        let log_path = env.scratch.join("devstack.log");
        let launch = Launch {
            program_dir: &dir,
            stack: BENCH_STACK,
            ready_file: &ready_file,
            log: &log_path,
            edge_addr: None,
        };
        let exe = std::env::current_exe().context("locating the devstack executable")?;
        let mut command =
            Command::from(launch.command(&exe).with_context(|| {
                format!("preparing `devstack up` (log: {})", log_path.display())
            })?);
        // An interrupted bench leaves no stack behind.
        local_process::die_with_parent(command.as_std_mut());
        let mut child = command
            .arg("--function-bin")
            .arg(env.binary(function)?)
            .args(flags)
            .current_dir(&env.root)
            .kill_on_drop(true)
            .spawn()
            .context("starting `devstack up`")?;
        eprintln!(
            "bench: starting the local stack (log: {})",
            log_path.display()
        );
        let ready =
            match launch::wait_ready(&ready_file, STACK_START_TIMEOUT, || child.try_wait()).await {
                Ok(endpoints) => endpoints,
                Err(error) => {
                    let _ = child.kill().await;
                    bail!("{error}; see {}", log_path.display());
                }
            };
        let (edge, path) = parse_ws_url(&ready.edge)
            .with_context(|| format!("the stack's edge URL {:?}", ready.edge))?;
        let (api, api_path) = parse_ws_url(&ready.api)
            .with_context(|| format!("the stack's API URL {:?}", ready.api))?;
        Ok(BenchStack {
            child,
            edge,
            path,
            api,
            api_path,
            api_key: ready.api_key,
            log: log_path,
        })
    }

    /// Ctrl-C, as a user stops it, then a bounded wait.
    pub(super) async fn shutdown(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            eprintln!("bench: the local stack did not stop within 20 s; killing it");
            let _ = self.child.kill().await;
        }
    }
}

/// How long `devstack up` may take to start (it may build the function and
/// install the DynamoDB-compatible server on first use).
pub(super) const STACK_START_TIMEOUT: Duration = Duration::from_secs(600);

/// `ws://127.0.0.1:8080/path` → (address, "/path"); loopback IPv4 only.
pub fn parse_ws_url(url: &str) -> Option<(SocketAddr, String)> {
    let url = url::Url::parse(url).ok()?;
    if url.scheme() != "ws" {
        return None;
    }
    let ip = match url.host()? {
        url::Host::Ipv4(ip) => std::net::IpAddr::V4(ip),
        url::Host::Ipv6(ip) => std::net::IpAddr::V6(ip),
        url::Host::Domain(_) => return None,
    };
    let addr = SocketAddr::new(ip, url.port_or_known_default()?);
    let path = url[url::Position::BeforePath..].to_string();
    (addr.ip().is_loopback() && addr.is_ipv4()).then_some((addr, path))
}
