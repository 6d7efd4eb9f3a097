//! `devstack`: the deployed topology on one machine (`devstack up`, the
//! default), the deployment checker (`devstack check`) and the benchmarks
//! (`devstack bench`). Only wiring: the behaviour lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use devstack::stack::{self, UpOptions};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "devstack",
    version,
    about = "Run the CloudFront + WAF + WebSocket API + Lambda stack locally, from the same Pulumi files `pulumi up` deploys",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    up: UpArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the local stack (the default when no command is given).
    Up(UpArgs),
    /// Check that a deployment answers through CloudFront and refuses direct clients without the key.
    Check(devstack::tools::deploy_check::CheckArgs),
    /// Benchmark the function and the local stack against their peers (run with --release).
    Bench(devstack::tools::bench::BenchArgs),
    /// Print a token minted by the running stack's local OpenID issuer (sign-in on).
    Token(devstack::tools::token::TokenArgs),
    /// Run Pulumi.yaml with the real Pulumi CLI against a local aws provider double (no AWS).
    Rehearse(devstack::tools::rehearse::RehearseArgs),
    /// Time and faults on demand for a running `devstack up`: expire connections, 410/429 posts, failed or killed invocations.
    Control(devstack::control::client::ControlArgs),
}

#[derive(Args, Clone)]
struct UpArgs {
    /// The Pulumi stack whose config to use (Pulumi.<stack>.yaml).
    #[arg(long, default_value = "dev")]
    stack: String,
    /// The directory holding Pulumi.yaml [default: found walking up from the current directory].
    #[arg(long)]
    program_dir: Option<PathBuf>,
    /// Where the edge (CloudFront + WAF) listens; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    edge_addr: SocketAddr,
    /// Where the API layer (execute-api + @connections) listens; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8081")]
    api_addr: SocketAddr,
    /// Where the console (the browser page and its live view) listens, loopback only; port 0 picks a free port.
    #[arg(long, default_value = devstack::console::DEFAULT_ADDR)]
    console_addr: SocketAddr,
    /// A prebuilt function binary [default: built with cargo].
    #[arg(long)]
    function_bin: Option<PathBuf>,
    /// A handler given as a command in any runtime, run as a custom runtime's bootstrap
    /// (e.g. "python3 -m awslambdaric app.handler"), in --function-dir.
    #[arg(long, conflicts_with = "function_bin")]
    function_cmd: Option<String>,
    /// The directory --function-cmd runs in [default: the current directory].
    #[arg(long, requires = "function_cmd")]
    function_dir: Option<PathBuf>,
    /// The stack's API key [default: a random one].
    #[arg(long, env = "DEVSTACK_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Write the endpoints as JSON to this file once the stack accepts connections.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// The most function processes at once (Lambda concurrency).
    #[arg(long, default_value_t = 16)]
    max_concurrency: usize,
    /// Times the local Lambda delivers each asynchronous event (2 plays the
    /// duplicates Lambda's queue may deliver; the tests use it).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    async_deliveries: u8,
    /// Open WebSocket connections each of the edge and the API layer accepts at most; over it: 429.
    #[arg(long, default_value_t = devstack::listener::MAX_CONNECTIONS)]
    max_connections: usize,
    /// The account's request rate per second, shared by @connections and the API's own requests (AWS: 10,000); over it: 429 LimitExceededException.
    #[arg(long, default_value_t = devstack::apigateway::ACCOUNT_REQUEST_RATE)]
    account_rate_limit: u32,
    /// The account's new WebSocket connections per second (AWS: 500); over it a handshake gets 429.
    #[arg(long, default_value_t = devstack::apigateway::ACCOUNT_CONNECT_RATE)]
    account_connect_limit: u32,
    /// Seconds without traffic before a connection is closed with 1001 (AWS: 600); shorten it to test reconnect logic.
    #[arg(long, default_value_t = protocol::limits::IDLE_TIMEOUT.as_secs())]
    idle_timeout: u64,
    /// Seconds a connection may live at most before it is closed with 1001 (AWS: 7200); shorten it to test reconnect logic.
    #[arg(long, default_value_t = protocol::limits::MAX_CONNECTION_LIFE.as_secs())]
    max_connection_life: u64,
    /// Do not rebuild the function or re-read the Pulumi program on save.
    #[arg(long)]
    no_watch: bool,
    /// Where the local OpenID issuer listens when the program turns sign-in on (loopback only); port 0 picks a free port.
    #[arg(long, default_value = devstack::issuer::DEFAULT_ADDR)]
    issuer_addr: SocketAddr,
    /// A real OpenID issuer for the authorizer instead of the local one (exactly its tokens' `iss`; keys by OpenID discovery).
    #[arg(long, value_name = "URL")]
    issuer: Option<String>,
    /// A prebuilt authorizer binary [default: built with cargo].
    #[arg(long)]
    authorizer_bin: Option<PathBuf>,
    /// Do not freeze function processes between invocations (Lambda freezes the execution environment).
    #[arg(long)]
    no_freeze: bool,
}

fn init_tracing(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: CI logs and the tests' log tails stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    // Three descriptors per connection through the edge: raise the limit
    // before anything listens, and say what it allows.
    let open_files = devstack::stack::open_files::raise(devstack::stack::open_files::WANTED);
    tracing::info!("{}", open_files.describe());
    let program_dir = match args.program_dir {
        Some(dir) => dir,
        None => {
            let cwd = std::env::current_dir()?;
            stack::find_program_dir(&cwd).ok_or_else(|| {
                anyhow::anyhow!(
                    "no Pulumi.yaml in {} or any parent directory; run from the repository or pass --program-dir",
                    cwd.display()
                )
            })?
        }
    };
    // A handler given as a command runs as the bootstrap written here,
    // which lives as long as the stack.
    let bootstrap_dir = tempfile::tempdir()?;
    let function_bin = match &args.function_cmd {
        Some(command) => {
            let workdir = match args.function_dir {
                Some(dir) => dir,
                None => std::env::current_dir()?,
            };
            Some(stack::command::write_bootstrap(
                bootstrap_dir.path(),
                command,
                &workdir,
            )?)
        }
        None => args.function_bin,
    };
    stack::run(UpOptions {
        program_dir,
        stack: args.stack,
        edge_addr: args.edge_addr,
        api_addr: args.api_addr,
        console_addr: args.console_addr,
        function_bin,
        api_key: args.api_key,
        ready_file: args.ready_file,
        max_concurrency: args.max_concurrency,
        async_deliveries: usize::from(args.async_deliveries),
        max_connections: args.max_connections,
        account_rate_limit: args.account_rate_limit,
        account_connect_limit: args.account_connect_limit,
        idle_timeout: std::time::Duration::from_secs(args.idle_timeout),
        max_connection_life: std::time::Duration::from_secs(args.max_connection_life),
        watch: !args.no_watch,
        issuer_addr: args.issuer_addr,
        issuer: args.issuer,
        authorizer_bin: args.authorizer_bin,
        freeze: !args.no_freeze,
    })
    .await
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The bench's own Lambda pools would log every invocation it times.
    init_tracing(if matches!(cli.command, Some(Command::Bench(_))) {
        "warn"
    } else {
        "info"
    });
    match cli.command {
        Some(Command::Check(args)) => devstack::tools::deploy_check::run(args).await,
        Some(Command::Bench(args)) => report(devstack::tools::bench::run(args).await),
        Some(Command::Up(args)) => report(up(args).await),
        Some(Command::Rehearse(args)) => report(devstack::tools::rehearse::run(args)),
        Some(Command::Token(args)) => report(devstack::tools::token::run(args).await),
        Some(Command::Control(args)) => report(devstack::control::client::run(args).await),
        None => report(up(cli.up).await),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("devstack: {error:#}");
            ExitCode::FAILURE
        }
    }
}
