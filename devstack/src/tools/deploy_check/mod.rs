//! `devstack check`: one command that says whether a deployment works and
//! really refuses traffic that skips CloudFront.
//!
//! Through the distribution (or the local edge) it connects, pings, shows a
//! `sendmessage` from one client reaching another, measures handshake time
//! and ping → pong round trips, and closes cleanly. Against the API's own
//! endpoint it expects the handshake to be refused with 403, with no key and
//! with a wrong one. Each network step is bounded by `--timeout`, and each
//! way of failing to connect (malformed URL, DNS, TCP, TLS, timeout, refusal)
//! has its own message.

use std::collections::BTreeMap;
use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use protocol::{ClientFrame, GatewayFrame, ServerFrame};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::USER_AGENT as USER_AGENT_HEADER;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod conformance;
mod connect;
mod probe;
mod report;
#[cfg(test)]
// tungstenite's handshake callbacks return its `ErrorResponse` by value.
#[allow(clippy::result_large_err)]
mod tests;

use super::percentiles::Percentiles;
use crate::stack::Endpoints;
pub use connect::*;
use probe::*;
pub use report::*;

/// The header API Gateway selects the API key from (`apiKeySelectionExpression`).
const API_KEY_HEADER: &str = "x-api-key";

/// Sent on every handshake: the web ACL's AWSManagedRulesCommonRuleSet
/// (rule NoUserAgent_HEADER) blocks requests without a User-Agent.
const USER_AGENT: &str = concat!("devstack-check/", env!("CARGO_PKG_VERSION"));

/// Arguments of `devstack check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The distribution URL (`pulumi stack output DistributionURL`), or the
    /// local edge (`ws://127.0.0.1:8080`).
    /// With `--ready-file`, the local stack's edge when absent.
    #[arg(
        value_name = "DISTRIBUTION_URL",
        required_unless_present = "ready_file"
    )]
    pub url: Option<String>,
    /// The API's own endpoint, which must refuse clients that skip CloudFront
    /// (`pulumi stack output ApiEndpoint`, or the local `ws://127.0.0.1:8081/prod`).
    /// With `--ready-file`, the local API layer when absent.
    #[arg(long, value_name = "URL", required_unless_present = "ready_file")]
    pub direct: Option<String>,
    /// How many ping → pong round trips to measure.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub messages: u32,
    /// Print one JSON document instead of lines.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for each network step (DNS, TCP, TLS, handshake, each reply).
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// The stack's API key, optional and never printed: with it,
    /// `direct-with-key` checks that the direct endpoint lets the key in, so
    /// the two refusals are about the key (not a wrong URL that refuses all).
    #[arg(
        long,
        value_name = "KEY",
        env = "DEVSTACK_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// A sign-in token for a deployment with sign-in on, never printed: the
    /// checks through the distribution send it (`?token=`), and
    /// `sign-in-no-token` expects a handshake without it refused with
    /// 401. Against a local edge that answers 401 without one, a token is
    /// minted by the local issuer (`--issuer`).
    #[arg(
        long,
        value_name = "JWT",
        env = "DEVSTACK_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// The query-string parameter that carries the token (config `tokenParameter`).
    #[arg(long, value_name = "NAME", default_value = "token")]
    pub token_parameter: String,
    /// The local stack's issuer, asked for a token when the distribution
    /// URL is on loopback and no --token is given.
    #[arg(long, value_name = "URL", default_value = crate::issuer::DEFAULT_URL)]
    pub issuer: String,
    /// Run the conformance suite instead: AWS's documented WebSocket
    /// behaviours, printed as a parity table (local / deployed).
    #[arg(long)]
    pub conformance: bool,
    /// A running local stack's ready file (`devstack up --ready-file`): its
    /// edge, API layer, key, issuer, `@connections` and control. The
    /// conformance table's local column needs it.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<std::path::PathBuf>,
    /// Against a deployment, also wait for the idle (10 minutes) and 2-hour
    /// closes (they run side by side: about 2 hours).
    #[arg(long)]
    pub slow: bool,
    /// Messages the conformance suite sends at once to go past the stage's
    /// throttling (more than its burst, `stageBurstLimit`, plus what its rate refills).
    #[arg(long, value_name = "N", default_value_t = 2000,
          value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub flood: u32,
}

impl CheckArgs {
    /// The distribution URL (given, or the ready file's edge).
    pub fn url(&self) -> &str {
        self.url.as_deref().unwrap_or_default()
    }

    /// The direct endpoint (given, or the ready file's API layer).
    pub fn direct(&self) -> &str {
        self.direct.as_deref().unwrap_or_default()
    }

    /// Fills what is absent from the ready file; the endpoints it read.
    fn resolve(&mut self) -> Result<Option<Endpoints>, String> {
        let Some(path) = &self.ready_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "reading the ready file {} (is the stack running with --ready-file?): {e}",
                path.display()
            )
        })?;
        let endpoints: Endpoints = serde_json::from_str(&text)
            .map_err(|e| format!("reading {} as devstack's ready file: {e}", path.display()))?;
        self.url.get_or_insert_with(|| endpoints.edge.clone());
        self.direct.get_or_insert_with(|| endpoints.api.clone());
        if self.api_key.is_none() {
            self.api_key = Some(endpoints.api_key.clone());
        }
        if let Some(issuer) = &endpoints.issuer {
            self.issuer = issuer.clone();
        }
        Ok(Some(endpoints))
    }
}

/// Runs every check, prints the report, and exits non-zero if any failed.
pub async fn run(mut args: CheckArgs) -> ExitCode {
    let endpoints = match args.resolve() {
        Ok(endpoints) => endpoints,
        Err(why) => {
            eprintln!("devstack check: {why}");
            return ExitCode::FAILURE;
        }
    };
    if args.conformance {
        return run_conformance(&args, endpoints).await;
    }
    let report = if args.json {
        let report = check(&args, |_| {}).await;
        println!("{}", report.to_json());
        report
    } else {
        println!("{}", header_line(args.url(), args.direct()));
        let report = check(&args, |outcome| println!("{}", outcome.line())).await;
        println!("{}", report.summary());
        report
    };
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs every check; `on_outcome` sees each result as soon as it is known.
pub async fn check(args: &CheckArgs, mut on_outcome: impl FnMut(&Outcome)) -> Report {
    let limit = Duration::from_secs(args.timeout);
    let mut report = Report {
        distribution: args.url().to_string(),
        direct: args.direct().to_string(),
        checks: Vec::new(),
    };
    let mut record = |outcome: Outcome| {
        on_outcome(&outcome);
        report.checks.push(outcome);
    };
    let connector = Connector::new(limit);

    match Endpoint::parse(args.url()) {
        Ok(edge) => match sign_in_token(args, &connector, &edge).await {
            Ok(Some(token)) => {
                let signed_in = edge.with_query(&args.token_parameter, &token);
                through_distribution(&connector, &signed_in, args.messages, limit, &mut record)
                    .await;
                record(expect_sign_in_refusal(&connector, &edge).await);
            }
            Ok(None) => {
                through_distribution(&connector, &edge, args.messages, limit, &mut record).await
            }
            Err(error) => no_distribution(error, &mut record),
        },
        Err(error) => no_distribution(error.to_string(), &mut record),
    }

    let direct = Endpoint::parse(args.direct());
    let wrong_key = uuid::Uuid::new_v4().simple().to_string();
    for (name, key) in [
        (names::DIRECT_WITHOUT_KEY, None),
        (names::DIRECT_WRONG_KEY, Some(wrong_key.as_str())),
    ] {
        let outcome = match &direct {
            Ok(endpoint) => expect_refusal(&connector, endpoint, name, key).await,
            Err(error) => Outcome::fail(name, error.to_string()),
        };
        record(outcome);
    }
    if let Some(key) = args.api_key.as_deref() {
        record(match &direct {
            Ok(endpoint) => expect_acceptance(&connector, endpoint, key).await,
            Err(error) => Outcome::fail(names::DIRECT_WITH_KEY, error.to_string()),
        });
    }
    report
}

/// `devstack check --conformance`: the parity table, exit non-zero when a row failed.
async fn run_conformance(args: &CheckArgs, endpoints: Option<Endpoints>) -> ExitCode {
    let limit = Duration::from_secs(args.timeout);
    let connector = Connector::new(limit);
    let local = match endpoints.as_ref().map(conformance::Local::new).transpose() {
        Ok(local) => local,
        Err(error) => {
            eprintln!("devstack check: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let bare_edge = match Endpoint::parse(args.url()) {
        Ok(edge) => edge,
        Err(error) => {
            eprintln!("devstack check: {error}");
            return ExitCode::FAILURE;
        }
    };
    let token = match sign_in_token(args, &connector, &bare_edge).await {
        Ok(token) => token,
        Err(why) => {
            eprintln!("devstack check: {why}");
            return ExitCode::FAILURE;
        }
    };
    let edge = match &token {
        Some(token) => bare_edge.with_query(&args.token_parameter, token),
        None => bare_edge.clone(),
    };
    let target = conformance::Target {
        connector,
        edge,
        bare_edge,
        signed_in: token.is_some(),
        token_parameter: args.token_parameter.clone(),
        direct: Endpoint::parse(args.direct()).map_err(|e| e.to_string()),
        local,
        limit,
        slow: args.slow,
        flood: args.flood,
    };
    let table = if args.json {
        let table = conformance::run_suite(&target, |_| {}).await;
        println!("{}", table.to_json());
        table
    } else {
        let side = if target.local.is_some() {
            "the local stack"
        } else {
            "a deployment"
        };
        println!(
            "devstack check --conformance: {side}, distribution {}, direct endpoint {}\n",
            args.url(),
            args.direct()
        );
        println!("{}", conformance::Table::HEADER);
        let local = target.local.is_some();
        let table = conformance::run_suite(&target, |row| println!("{}", row.line(local))).await;
        println!("\n{}", table.summary());
        table
    };
    if table.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The check names, as printed and in the JSON document.
pub mod names {
    pub const HANDSHAKE: &str = "handshake";
    pub const PING: &str = "ping";
    pub const BROADCAST: &str = "broadcast";
    pub const ROUND_TRIP: &str = "round-trip";
    pub const CLOSE: &str = "close";
    pub const DIRECT_WITHOUT_KEY: &str = "direct-without-key";
    pub const DIRECT_WRONG_KEY: &str = "direct-wrong-key";
    /// Only with `--api-key`.
    pub const DIRECT_WITH_KEY: &str = "direct-with-key";
    /// Only with a token (`--token`, or minted by the local issuer).
    pub const SIGN_IN_WITHOUT_TOKEN: &str = "sign-in-no-token";
}

/// The token the checks through the distribution send: `--token`, or —
/// against a local edge that refuses a handshake without one with 401 —
/// one minted by the local issuer (`--issuer`). `None`: no sign-in.
async fn sign_in_token(
    args: &CheckArgs,
    connector: &Connector,
    edge: &Endpoint,
) -> Result<Option<String>, String> {
    if let Some(token) = &args.token {
        return Ok(Some(token.clone()));
    }
    let loopback = edge
        .host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
        || edge.host == "localhost";
    if !loopback {
        return Ok(None);
    }
    match connector.connect(edge, None).await {
        Err(ConnectError::Refused { status: 401 }) => {}
        Ok(connected) => {
            let _ = close(connected.ws, Duration::from_secs(2)).await;
            return Ok(None);
        }
        // The checks that follow say what is wrong with the distribution.
        Err(_) => return Ok(None),
    }
    let request = local_issuer::MintRequest::for_user("devstack-check");
    crate::issuer::mint(&args.issuer, &request)
        .await
        .map(Some)
        .map_err(|error| {
            format!(
                "the local edge asks for a token (401) and the local issuer gave none: {error:#}"
            )
        })
}

/// The handshake through the distribution failed: it fails, and the checks
/// that need that connection are skipped.
fn no_distribution(why: String, record: &mut impl FnMut(Outcome)) {
    record(Outcome::fail(names::HANDSHAKE, why));
    for name in [
        names::PING,
        names::BROADCAST,
        names::ROUND_TRIP,
        names::CLOSE,
    ] {
        record(Outcome::skip(
            name,
            "no connection through the distribution",
        ));
    }
}

async fn through_distribution(
    connector: &Connector,
    edge: &Endpoint,
    messages: u32,
    limit: Duration,
    record: &mut impl FnMut(Outcome),
) {
    let mut first = match connector.connect(edge, None).await {
        Ok(connected) => {
            record(handshake_outcome(&connected.timings));
            connected.ws
        }
        Err(error) => {
            no_distribution(format!("through the distribution: {error}"), record);
            return;
        }
    };

    record(match round_trip(&mut first, limit).await {
        Ok(took) => {
            Outcome::pass(names::PING, format!("pong in {}", ms(took))).figure("roundTripMs", took)
        }
        Err(error) => Outcome::fail(names::PING, error.to_string()),
    });

    let mut second = None;
    let broadcast = match connector.connect(edge, None).await {
        Ok(connected) => {
            let ws = second.insert(connected.ws);
            broadcast(&mut first, ws, limit).await
        }
        Err(error) => Outcome::fail(names::BROADCAST, format!("second client: {error}")),
    };
    record(broadcast);

    record(round_trips(&mut first, messages, limit).await);

    let mut closed = vec![close(first, limit).await];
    if let Some(ws) = second {
        closed.push(close(ws, limit).await);
    }
    let failures: Vec<String> = closed
        .into_iter()
        .filter_map(Result::err)
        .map(|error| error.to_string())
        .collect();
    record(if failures.is_empty() {
        Outcome::pass(names::CLOSE, "every client got the server's close frame")
    } else {
        Outcome::fail(names::CLOSE, failures.join("; "))
    });
}

fn handshake_outcome(timings: &HandshakeTimings) -> Outcome {
    let mut steps = vec![
        format!("dns {}", ms(timings.dns)),
        format!("tcp {}", ms(timings.tcp)),
    ];
    if let Some(tls) = timings.tls {
        steps.push(format!("tls {}", ms(tls)));
    }
    steps.push(format!("upgrade {}", ms(timings.upgrade)));
    let mut outcome = Outcome::pass(
        names::HANDSHAKE,
        format!(
            "connected through the distribution in {} ({})",
            ms(timings.total()),
            steps.join(", ")
        ),
    )
    .figure("handshakeMs", timings.total())
    .figure("dnsMs", timings.dns)
    .figure("tcpMs", timings.tcp)
    .figure("upgradeMs", timings.upgrade);
    if let Some(tls) = timings.tls {
        outcome = outcome.figure("tlsMs", tls);
    }
    outcome
}
