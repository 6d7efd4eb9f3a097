//! `devstack bench --peers`: the same client rows against the local stack
//! and against serverless-offline (13, on serverless 3, `--useInProcess`)
//! running a Node handler that speaks this project's protocol
//! (`bench/serverless-offline/`), in one run, side by side with the ratio.
//! The peer is installed from its lock file into `target/bench/` with npm;
//! its output goes to a log file there, not into the report.

use super::cpu::{CpuSnapshot, CpuSpent};
use super::*;
use crate::tools::client::Ws;

/// Options of the peer comparison.
#[derive(Debug, Clone, clap::Args)]
pub struct PeersArgs {
    /// Run the client rows against serverless-offline too (installs it from npm into target/bench).
    #[arg(long)]
    pub peers: bool,
    /// Handshakes for the handshakes-per-second row (32 in flight).
    #[arg(long, default_value_t = 1_000)]
    pub peer_handshakes: usize,
    /// Receivers of the broadcast row.
    #[arg(long, default_value_t = 1_000)]
    pub peer_fanout: usize,
}

/// One target's figures for the peer table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerColumn {
    pub handshakes_per_sec: Option<f64>,
    /// The CPU the target's processes spent on the handshake row.
    pub handshake_cpu: Option<CpuSpent>,
    pub round_trip: Option<Percentiles>,
    pub broadcast: Option<Duration>,
    /// Pongs per second, clients × pings.
    pub sustained: Option<f64>,
}

/// Both columns and what was run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerFigures {
    pub devstack: PeerColumn,
    pub serverless_offline: PeerColumn,
    /// The handshake row only, on the same stack with `lambda_runtime`'s
    /// smallest function (`bench/hello-lambda`) answering `$connect`: what the
    /// process model costs before the function does any work (no registry
    /// write, no SDK, no SigV4). Where it sits against the peer says how much of
    /// the gap the function's own work can close.
    pub floor: PeerColumn,
    pub handshakes: usize,
    pub fanout: usize,
    pub sustained: (usize, usize),
}

const WS_READY_TIMEOUT: Duration = Duration::from_secs(90);
/// Handshakes (closed again) before the measured rows, in each column.
const WARM_UP_HANDSHAKES: usize = 500;
/// The function of the floor's handshake row: `lambda_runtime` and nothing else.
const FLOOR_FUNCTION: &str = "hello-lambda";

pub(super) async fn measure(args: &BenchArgs, env: &BenchEnv) -> anyhow::Result<PeerFigures> {
    let mut figures = PeerFigures {
        handshakes: args.peers.peer_handshakes,
        fanout: args.peers.peer_fanout,
        sustained: (args.sustained_clients, args.sustained_messages),
        ..PeerFigures::default()
    };
    // AWS's 500 new connections per second would cap the handshake row:
    // lifted, as the comparison is of the stacks, not of the quota.
    let lifted = super::stack::LIFTED_CONNECT_QUOTA.map(String::from);
    let stack = BenchStack::start(env, &lifted).await?;
    eprintln!("bench: peers, the local stack");
    let ours = column(args, &figures, stack.edge, &stack.path, stack.child.id()).await;
    stack.shutdown().await;
    figures.devstack = ours.context("the local stack's column")?;

    let floor = BenchStack::start_with_function(env, &lifted, FLOOR_FUNCTION).await?;
    eprintln!(
        "bench: peers, the local stack with {FLOOR_FUNCTION} as the function (handshakes only)"
    );
    let row = handshake_row(
        floor.edge,
        &floor.path,
        figures.handshakes,
        floor.child.id(),
    )
    .await;
    floor.shutdown().await;
    figures.floor = row.context("the floor's handshake row")?;

    let peer = Peer::start(env).await?;
    eprintln!(
        "bench: peers, serverless-offline (log: {})",
        peer.log.display()
    );
    let theirs = column(args, &figures, peer.addr, "/", peer.child.id()).await;
    drop(peer);
    figures.serverless_offline = theirs.context("serverless-offline's column")?;
    Ok(figures)
}

/// The handshake row, warmed first, with the CPU `root`'s process tree spent
/// on it; the connections are closed again before it returns.
async fn handshake_row(
    addr: SocketAddr,
    path: &str,
    handshakes: usize,
    root: Option<u32>,
) -> anyhow::Result<PeerColumn> {
    // serverless-offline runs on Node, whose first second of load is spent
    // compiling JavaScript (as the local DynamoDB's was, when it was
    // dynalite): each column is warmed the same.
    let warm: Vec<Ws> = connect_many(addr, path, WARM_UP_HANDSHAKES, 0)
        .await
        .context("the warm-up handshakes")?;
    futures_util::stream::iter(warm)
        .for_each_concurrent(64, close)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu_before = root.map(CpuSnapshot::take);
    let started = Instant::now();
    let sockets: Vec<Ws> = connect_many(addr, path, handshakes, 0)
        .await
        .context("the handshakes")?;
    let column = PeerColumn {
        handshakes_per_sec: Some(handshakes as f64 / started.elapsed().as_secs_f64()),
        handshake_cpu: root
            .zip(cpu_before)
            .map(|(root, before)| CpuSnapshot::take(root).since(&before)),
        ..PeerColumn::default()
    };
    futures_util::stream::iter(sockets)
        .for_each_concurrent(64, close)
        .await;
    Ok(column)
}

async fn column(
    args: &BenchArgs,
    figures: &PeerFigures,
    addr: SocketAddr,
    path: &str,
    root: Option<u32>,
) -> anyhow::Result<PeerColumn> {
    let mut column = handshake_row(addr, path, figures.handshakes, root).await?;
    column.round_trip = round_trips(addr, path, args.messages).await?;
    // Let the handshake row's $disconnects finish first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    column.broadcast = Some(
        broadcast(addr, path, figures.fanout)
            .await
            .context("the broadcast")?,
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    column.sustained = Some(
        sustained(addr, path, figures.sustained.0, figures.sustained.1)
            .await
            .context("sustained pings")?,
    );
    Ok(column)
}

/// serverless-offline, running, killed when dropped.
struct Peer {
    child: tokio::process::Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Peer {
    async fn start(env: &BenchEnv) -> anyhow::Result<Peer> {
        let source = env.root.join("bench").join("serverless-offline");
        let read = |name: &str| {
            std::fs::read_to_string(source.join(name))
                .with_context(|| format!("reading {}", source.join(name).display()))
        };
        let packages = local_process::NodePackages::new(
            env.scratch.join("serverless-offline"),
            &read("package.json")?,
            &read("package-lock.json")?,
            "serverless@3.40.0 and serverless-offline@13.10.1",
        );
        let packages = tokio::task::spawn_blocking(move || {
            packages.ensure(|dir| {
                eprintln!(
                    "bench: installing serverless-offline into {} (first run)",
                    dir.display()
                )
            })?;
            Ok::<_, local_process::NpmError>(packages)
        })
        .await
        .context("the serverless-offline install task")??;
        let dir = packages.dir().to_path_buf();
        for name in ["serverless.yml", "handler.js"] {
            std::fs::write(dir.join(name), read(name)?)
                .with_context(|| format!("writing {name} into {}", dir.display()))?;
        }
        let ports = [free_port()?, free_port()?, free_port()?];
        let log = env.scratch.join("serverless-offline.log");
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new("node");
        command
            .arg(packages.file("serverless", "bin/serverless.js"))
            .args(["offline", "start"])
            .env("PEER_WS_PORT", ports[0].to_string())
            .env("PEER_HTTP_PORT", ports[1].to_string())
            .env("PEER_LAMBDA_PORT", ports[2].to_string())
            .env("SLS_TELEMETRY_DISABLED", "1")
            .env("SLS_NOTIFICATIONS_MODE", "off")
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().context("the log file")?)
            .stderr(out)
            .kill_on_drop(true);
        local_process::die_with_parent(command.as_std_mut());
        let mut child = command
            .spawn()
            .context("starting serverless-offline (node)")?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, ports[0]));
        let deadline = Instant::now() + WS_READY_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if let Some(status) = child.try_wait().context("watching serverless-offline")? {
                bail!(
                    "serverless-offline exited with {status} before it listened; see {}",
                    log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "serverless-offline did not listen on {addr} within {WS_READY_TIMEOUT:?}; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Peer { child, addr, log })
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr().context("reading a free port")?.port())
}

impl PeerFigures {
    /// Issue 27's targets: ahead of the peer on every row, in the same run.
    pub fn targets(&self) -> Vec<Target> {
        let (ours, theirs) = (&self.devstack, &self.serverless_offline);
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let p50 = |p: &Option<Percentiles>| p.as_ref().map(|p| p.p50.as_secs_f64());
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        vec![
            Target::ahead(
                "handshakes/s ≥ 1.0× serverless-offline's",
                ratio(ours.handshakes_per_sec, theirs.handshakes_per_sec),
            ),
            Target::ahead(
                "round trip p50 at or ahead of serverless-offline's",
                ratio(p50(&theirs.round_trip), p50(&ours.round_trip)),
            ),
            Target::ahead(
                "broadcast at or ahead of serverless-offline's",
                ratio(secs(theirs.broadcast), secs(ours.broadcast)),
            ),
            Target::ahead(
                "sustained at or ahead of serverless-offline's",
                ratio(ours.sustained, theirs.sustained),
            ),
        ]
    }

    /// The side-by-side table: each row, both columns and how far ahead the
    /// local stack is (> 1× ahead; for times the peer's ÷ ours, for rates ours ÷ the peer's).
    pub fn render(&self) -> String {
        let (ours, theirs) = (&self.devstack, &self.serverless_offline);
        let rate =
            |v: Option<f64>, unit: &str| v.map_or("—".into(), |v| format!("{v:.0} {unit}"));
        let ahead_rate = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
            _ => "—".into(),
        };
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        let p50 = |p: &Option<Percentiles>| p.as_ref().map(|p| p.p50);
        let cpu_per = |column: &PeerColumn| {
            column
                .handshake_cpu
                .as_ref()
                .map(|cpu| cpu.per(self.handshakes))
        };
        let rows = vec![
            vec![
                format!(
                    "Handshakes per second ({} handshakes, 32 in flight)",
                    self.handshakes
                ),
                rate(ours.handshakes_per_sec, "/s"),
                rate(theirs.handshakes_per_sec, "/s"),
                ahead_rate(ours.handshakes_per_sec, theirs.handshakes_per_sec),
            ],
            vec![
                "CPU per handshake (all of the target's processes)".into(),
                cpu_per(ours).map_or("—".into(), format_duration),
                cpu_per(theirs).map_or("—".into(), format_duration),
                ahead_rate(
                    cpu_per(theirs).map(|d| d.as_secs_f64()),
                    cpu_per(ours).map(|d| d.as_secs_f64()),
                ),
            ],
            vec![
                "Round trip ping → pong, p50".into(),
                p50(&ours.round_trip).map_or("—".into(), format_duration),
                p50(&theirs.round_trip).map_or("—".into(), format_duration),
                ahead_rate(secs(p50(&theirs.round_trip)), secs(p50(&ours.round_trip))),
            ],
            vec![
                format!("Broadcast to {} (until the last has it)", self.fanout),
                ours.broadcast.map_or("—".into(), format_duration),
                theirs.broadcast.map_or("—".into(), format_duration),
                ahead_rate(secs(theirs.broadcast), secs(ours.broadcast)),
            ],
            vec![
                format!(
                    "Sustained ping → pong ({} clients × {})",
                    self.sustained.0, self.sustained.1
                ),
                rate(ours.sustained, "msg/s"),
                rate(theirs.sustained, "msg/s"),
                ahead_rate(ours.sustained, theirs.sustained),
            ],
        ];
        let mut out = render_table(
            &[
                "Client row",
                "devstack",
                "serverless-offline 13",
                "devstack ahead by",
            ],
            &rows,
        );
        if !out.ends_with('\n') {
            out.push('\n');
        }
        for (name, column) in [("devstack", ours), ("serverless-offline", theirs)] {
            if let Some(cpu) = &column.handshake_cpu {
                let _ = writeln!(
                    out,
                    "CPU per handshake, {name}, by process: {}",
                    cpu.split_per(self.handshakes)
                );
            }
        }
        if let Some(rate_floor) = self.floor.handshakes_per_sec {
            let cpu = self
                .floor
                .handshake_cpu
                .as_ref()
                .map_or(String::new(), |cpu| {
                    format!(
                        "; CPU per handshake {} ({})",
                        format_duration(cpu.per(self.handshakes)),
                        cpu.split_per(self.handshakes)
                    )
                });
            let _ = writeln!(
                out,
                "Floor: the same stack with {FLOOR_FUNCTION} (lambda_runtime alone, no registry write) \
                 answering $connect: {rate_floor:.0} handshakes/s = {} serverless-offline's{cpu}",
                ahead_rate(Some(rate_floor), theirs.handshakes_per_sec)
            );
        }
        out
    }
}
