//! The function half: three functions under the same Lambda Runtime API
//! (the pool devstack runs), their cold start, warm invocation and memory.

use super::*;
use crate::console::EventBus;
use crate::stack::Endpoints;
use local_process::PythonVenv;
use pulumi_program::Topology;

/// A function to measure: how to start it and the event to give it.
pub(super) struct FunctionUnderTest {
    pub(super) label: &'static str,
    pub(super) config: FunctionConfig,
    pub(super) event: Value,
}

pub(super) async fn bench_functions(
    args: &BenchArgs,
    env: &BenchEnv,
) -> anyhow::Result<FunctionReport> {
    let sink = ManagementSink::start().await?;
    let topology = env.program()?;
    let python_bootstrap = python_bootstrap(env).await?;
    let functions = [
        FunctionUnderTest {
            label: "websocket-handler",
            config: function_config(
                "websocket-handler",
                env.binary("websocket-handler")?,
                handler_env(&topology, &sink)?,
            ),
            event: ping_event()?,
        },
        FunctionUnderTest {
            label: "hello-lambda",
            config: function_config("hello-lambda", env.binary("hello-lambda")?, Vec::new()),
            event: ping_event()?,
        },
        FunctionUnderTest {
            label: "python-handler",
            config: function_config(
                "python-handler",
                python_bootstrap,
                python_env(env, Some(&sink), &topology)?,
            ),
            event: ping_event()?,
        },
    ];
    let mut figures = Vec::new();
    // websocket-handler and the Python handler answer each ping through the
    // management API: each must have posted one pong per invocation, or it
    // did not do the work its figures claim.
    let expected = args.cold_starts + 1 + args.invocations;
    for function in &functions {
        let before = sink.posts();
        eprintln!(
            "bench: function {} ({} cold starts, {} warm invocations)",
            function.label, args.cold_starts, args.invocations
        );
        figures.push(
            measure_function(function, args)
                .await
                .with_context(|| format!("benchmarking {}", function.label))?,
        );
        let posted = sink.posts() - before;
        if function.label != "hello-lambda" && posted < expected {
            bail!(
                "{} posted {posted} replies to the management API for {expected} pings",
                function.label
            );
        }
    }
    let [mut handler, mut hello, mut python] = <[FunctionFigures; 3]>::try_from(figures)
        .map_err(|_| anyhow::anyhow!("expected figures for three functions"))?;
    handler.zip = lambda_zip(env, "websocket-handler");
    hello.zip = lambda_zip(env, "hello-lambda");
    python.zip = python_zip(env).await?;
    Ok(FunctionReport {
        handler,
        hello,
        python,
    })
}

pub(super) fn function_config(
    name: &str,
    binary: PathBuf,
    env: Vec<(String, String)>,
) -> FunctionConfig {
    FunctionConfig {
        binary,
        name: name.to_string(),
        env: env.into_iter().collect(),
        memory_mb: 128,
        timeout: Duration::from_secs(10),
        max_concurrency: 1,
    }
}

/// Cold starts (a new pool, so a new process, each), then one process kept
/// warm for `invocations` sequential invocations; its peak RSS at the end.
pub(super) async fn measure_function(
    function: &FunctionUnderTest,
    args: &BenchArgs,
) -> anyhow::Result<FunctionFigures> {
    let mut cold = Vec::new();
    for _ in 0..args.cold_starts.max(1) {
        let started = Instant::now();
        let pool = LambdaPool::start(function.config.clone(), EventBus::new())
            .await
            .context("starting the function")?;
        let response = invoke_once(&pool, &function.event).await;
        let elapsed = started.elapsed();
        pool.shutdown().await;
        response?;
        cold.push(elapsed);
    }
    let pool = LambdaPool::start(function.config.clone(), EventBus::new())
        .await
        .context("starting the function")?;
    let result = async {
        invoke_once(&pool, &function.event).await?;
        let mut warm = Vec::with_capacity(args.invocations);
        for _ in 0..args.invocations {
            let started = Instant::now();
            invoke_once(&pool, &function.event).await?;
            warm.push(started.elapsed());
        }
        let mut rss = None;
        for pid in pool.process_ids() {
            let peak = local_process::peak_rss_bytes(pid)
                .with_context(|| format!("the peak RSS of process {pid}"))?;
            rss = Some(rss.map_or(peak, |r: u64| r.max(peak)));
        }
        anyhow::Ok((warm, rss))
    }
    .await;
    pool.shutdown().await;
    let (warm, peak_rss) = result?;
    Ok(FunctionFigures {
        cold_start: Percentiles::of(&cold),
        warm: Percentiles::of(&warm),
        peak_rss: Some(peak_rss.context("the pool reported no function process")?),
        zip: ZipSize::Unknown,
    })
}

/// One invocation that must answer with an API Gateway proxy response 200.
pub(super) async fn invoke_once(pool: &LambdaPool, event: &Value) -> anyhow::Result<()> {
    let response = tokio::time::timeout(STEP_TIMEOUT, pool.invoke(event.clone()))
        .await
        .context("the invocation did not finish in time")??;
    match response.get("statusCode").and_then(Value::as_u64) {
        Some(200) => Ok(()),
        other => bail!("the function answered statusCode {other:?} instead of 200"),
    }
}

/// A `ping` from a connected client, as API Gateway sends it.
pub(super) fn ping_event() -> anyhow::Result<Value> {
    use aws_lambda_events::apigw::{
        ApiGatewayWebsocketProxyRequest, ApiGatewayWebsocketProxyRequestContext,
    };
    let now = chrono::Utc::now().timestamp_millis();
    let mut context = ApiGatewayWebsocketProxyRequestContext::default();
    context.route_key = Some(protocol::routes::PING.to_string());
    context.event_type = Some("MESSAGE".to_string());
    context.message_direction = Some("IN".to_string());
    context.connection_id = Some("YmVuY2gtY29ubmVjdGlvbg=".to_string());
    context.message_id = Some("YmVuY2gtbWVzc2FnZQ=".to_string());
    context.request_id = Some("YmVuY2gtcmVxdWVzdA=".to_string());
    context.connected_at = now;
    context.request_time_epoch = now;
    context.domain_name = Some("127.0.0.1".to_string());
    context.stage = Some(SINK_STAGE.to_string());
    context.apiid = Some("bench".to_string());
    context.identity.source_ip = Some("127.0.0.1".to_string());
    let mut event = ApiGatewayWebsocketProxyRequest::default();
    event.body = Some(ClientFrame::ping().to_text());
    event.request_context = context;
    serde_json::to_value(event).context("encoding the bench's ping event as JSON")
}

pub(super) const SINK_STAGE: &str = "bench";

/// A stand-in for the @connections management API that accepts every
/// PostToConnection and counts them: the function's reply path runs for real
/// (SDK, HTTP on loopback) without the rest of the stack in the figures.
pub(super) struct ManagementSink {
    pub(super) endpoint: String,
    pub(super) posts: Arc<AtomicUsize>,
    pub(super) task: tokio::task::JoinHandle<()>,
}

impl ManagementSink {
    pub(super) async fn start() -> anyhow::Result<Self> {
        use axum::routing::post;
        let posts = Arc::new(AtomicUsize::new(0));
        let counter = posts.clone();
        let app = axum::Router::new().route(
            "/{stage}/@connections/{id}",
            post(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding the management sink")?;
        let addr = listener
            .local_addr()
            .context("reading the management sink's address")?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("bench: management sink stopped: {e}");
            }
        });
        Ok(ManagementSink {
            endpoint: format!("http://{addr}/{SINK_STAGE}"),
            posts,
            task,
        })
    }

    pub(super) fn posts(&self) -> usize {
        self.posts.load(Ordering::Relaxed)
    }
}

impl Drop for ManagementSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The environment websocket-handler gets: the dev stack's, through the same
/// wiring `devstack up` uses (the program's variables resolved to local
/// values, the region, dummy credentials), with the sink as its management
/// endpoint, plus the log settings the program's `loggingConfig` gives the
/// deployed function. A ping reads no table and invokes nothing: the
/// DynamoDB and Lambda endpoints (port 9, discard) are never dialled.
pub(super) fn handler_env(
    topology: &Topology,
    sink: &ManagementSink,
) -> anyhow::Result<Vec<(String, String)>> {
    let unused = SocketAddr::from((Ipv4Addr::LOCALHOST, 9));
    let stage = topology.stage.name.clone();
    let endpoints = Endpoints {
        edge: format!("ws://{unused}/"),
        api: format!("ws://{unused}/{stage}"),
        management: sink.endpoint.clone(),
        api_key: "bench".to_string(),
        stage,
        console: format!("http://{unused}/"),
        lambda: format!("http://{unused}"),
        issuer: None,
        control: format!("http://{unused}"),
        region: topology.region.clone(),
    };
    let mut env =
        crate::stack::function_env(topology, &endpoints, unused, &format!("http://{unused}"))
            .context("the function's environment from the program")?;
    env.extend(
        [
            ("AWS_LAMBDA_LOG_LEVEL", "INFO"),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    Ok(env)
}

/// The Python handler's environment: its bytecode cache, and — when it is
/// to answer pings as websocket-handler does — the management endpoint, the
/// Region and the credentials websocket-handler gets.
pub(super) fn python_env(
    env: &BenchEnv,
    sink: Option<&ManagementSink>,
    topology: &Topology,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut vars = Vec::new();
    if let Some(sink) = sink {
        let wanted = [
            "MANAGEMENT_ENDPOINT",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ];
        vars.extend(
            handler_env(topology, sink)?
                .into_iter()
                .filter(|(k, _)| wanted.contains(&k.as_str())),
        );
    }
    vars.extend([
        // Keep bytecode out of the source tree, cached across cold starts as
        // in a warm Lambda sandbox image.
        (
            "PYTHONPYCACHEPREFIX".to_string(),
            env.scratch.join("pycache").display().to_string(),
        ),
        ("PYTHONUNBUFFERED".to_string(), "1".to_string()),
    ]);
    Ok(vars)
}

/// awslambdaric's pinned version, from bench/python-handler/requirements.txt.
pub(super) fn python_requirements(env: &BenchEnv) -> PathBuf {
    env.root
        .join("bench")
        .join("python-handler")
        .join("requirements.txt")
}

/// Installs awslambdaric into `<target>/bench/python-venv` (once, under a
/// file lock; the venv records the requirements it holds) and writes the
/// `bootstrap` that runs the sample handler with it, as a custom runtime's
/// bootstrap would.
pub(super) async fn python_bootstrap(env: &BenchEnv) -> anyhow::Result<PathBuf> {
    let requirements = python_requirements(env);
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let requirements_arg = requirements.display().to_string();
    let venv = PythonVenv::new(
        env.scratch.join("python-venv"),
        &["-r", &requirements_arg],
        &wanted,
    );
    let venv = tokio::task::spawn_blocking(move || {
        venv.ensure(|dir| {
            eprintln!(
                "bench: installing awslambdaric into {} (first run)",
                dir.display()
            )
        })?;
        Ok::<_, local_process::VenvError>(venv)
    })
    .await
    .context("the awslambdaric install task")??;
    let handler_dir = env.root.join("bench").join("python-handler");
    let python = venv.python();
    for path in [&handler_dir, &python] {
        if path.to_string_lossy().contains('\'') {
            bail!(
                "{} contains a single quote; move the checkout",
                path.display()
            );
        }
    }
    let bootstrap = env.scratch.join("python-bootstrap");
    let script = format!(
        "#!/bin/sh\n# Written by `devstack bench`: the AWS sample's handler under awslambdaric.\ncd '{}' && exec '{}' -m awslambdaric app.handler\n",
        handler_dir.display(),
        python.display()
    );
    std::fs::write(&bootstrap, script)
        .with_context(|| format!("writing {}", bootstrap.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", bootstrap.display()))?;
    }
    Ok(bootstrap)
}
