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

use futures_util::{SinkExt, StreamExt};
use protocol::{ClientFrame, GatewayFrame, ServerFrame};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::USER_AGENT as USER_AGENT_HEADER;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

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
    #[arg(value_name = "DISTRIBUTION_URL")]
    pub url: String,
    /// The API's own endpoint, which must refuse clients that skip CloudFront
    /// (`pulumi stack output ApiEndpoint`, or the local `ws://127.0.0.1:8081/prod`).
    #[arg(long, value_name = "URL")]
    pub direct: String,
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
}

/// Runs every check, prints the report, and exits non-zero if any failed.
pub async fn run(args: CheckArgs) -> ExitCode {
    let report = if args.json {
        let report = check(&args, |_| {}).await;
        println!("{}", report.to_json());
        report
    } else {
        println!("{}", header_line(&args.url, &args.direct));
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
        distribution: args.url.clone(),
        direct: args.direct.clone(),
        checks: Vec::new(),
    };
    let mut record = |outcome: Outcome| {
        on_outcome(&outcome);
        report.checks.push(outcome);
    };
    let connector = Connector::new(limit);

    match Endpoint::parse(&args.url) {
        Ok(edge) => {
            through_distribution(&connector, &edge, args.messages, limit, &mut record).await
        }
        Err(error) => no_distribution(error.to_string(), &mut record),
    }

    let direct = Endpoint::parse(&args.direct);
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
        Err(error) => Outcome::fail(names::PING, error),
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
    let failures: Vec<String> = closed.into_iter().filter_map(Result::err).collect();
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

/// One ping → pong; the time from sending the ping to reading the pong.
async fn round_trip(ws: &mut Ws, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    send(ws, &ClientFrame::ping(), limit).await?;
    wait_for(ws, limit, "pong", |frame| {
        matches!(frame, ServerFrame::Pong).then_some(())
    })
    .await?;
    Ok(started.elapsed())
}

async fn round_trips(ws: &mut Ws, messages: u32, limit: Duration) -> Outcome {
    let mut samples = Vec::with_capacity(messages as usize);
    for done in 0..messages {
        match round_trip(ws, limit).await {
            Ok(took) => samples.push(took),
            Err(error) => {
                return Outcome::fail(
                    names::ROUND_TRIP,
                    format!("after {done} of {messages} round trips: {error}"),
                );
            }
        }
    }
    match Percentiles::of(&samples) {
        Some(p) => Outcome::pass(
            names::ROUND_TRIP,
            format!(
                "{} pings: p50 {}, p95 {}, p99 {} (max {})",
                p.samples,
                ms(p.p50),
                ms(p.p95),
                ms(p.p99),
                ms(p.max)
            ),
        )
        .figure("p50Ms", p.p50)
        .figure("p95Ms", p.p95)
        .figure("p99Ms", p.p99)
        .figure("maxMs", p.max),
        None => Outcome::fail(names::ROUND_TRIP, "no round trip was measured"),
    }
}

/// `sendmessage` from `sender` must reach `receiver`, and the sender must be
/// told it reached at least one connection.
async fn broadcast(sender: &mut Ws, receiver: &mut Ws, limit: Duration) -> Outcome {
    // A value no other client sends, so messages from other users of a live
    // deployment are told apart from ours.
    let nonce = json!({ "devstackCheck": uuid::Uuid::new_v4().to_string() });
    let started = Instant::now();
    if let Err(error) = send(sender, &ClientFrame::send_message(nonce.clone()), limit).await {
        return Outcome::fail(names::BROADCAST, error);
    }
    let received = wait_for(
        receiver,
        limit,
        "the message on the second client",
        |frame| match frame {
            ServerFrame::Message { data, from, .. } if *data == nonce => Some(from.clone()),
            _ => None,
        },
    )
    .await;
    let delivered = started.elapsed();
    let from = match received {
        Ok(from) => from,
        Err(error) => return Outcome::fail(names::BROADCAST, format!("second client: {error}")),
    };
    if from.is_empty() {
        return Outcome::fail(
            names::BROADCAST,
            "the message reached the second client without its sender's id",
        );
    }
    let recipients = wait_for(
        sender,
        limit,
        "\"sent\" on the sender",
        |frame| match frame {
            ServerFrame::Sent { recipients } => Some(*recipients),
            _ => None,
        },
    )
    .await;
    match recipients {
        Ok(0) => Outcome::fail(
            names::BROADCAST,
            "the second client got the message, but the sender was told it reached 0 connections",
        ),
        Ok(n) => Outcome::pass(
            names::BROADCAST,
            format!(
                "the second client received it in {}; the sender reached {n} connection(s)",
                ms(delivered)
            ),
        )
        .figure("deliveryMs", delivered),
        Err(error) => Outcome::fail(names::BROADCAST, format!("sender: {error}")),
    }
}

/// Closes with a close frame and waits for the server's.
async fn close(mut ws: Ws, limit: Duration) -> Result<(), String> {
    let closing = async {
        ws.close(None).await?;
        while let Some(message) = ws.next().await {
            message?;
        }
        Ok::<(), tungstenite::Error>(())
    };
    match tokio::time::timeout(limit, closing).await {
        Ok(Ok(())) | Ok(Err(tungstenite::Error::ConnectionClosed)) => Ok(()),
        Ok(Err(error)) => Err(format!("close did not complete cleanly: {error}")),
        Err(_) => Err(format!(
            "no close frame from the server within {}s",
            limit.as_secs()
        )),
    }
}

/// The direct endpoint must refuse the handshake with 403.
async fn expect_refusal(
    connector: &Connector,
    endpoint: &Endpoint,
    name: &'static str,
    key: Option<&str>,
) -> Outcome {
    let without = if key.is_some() {
        "with a wrong key"
    } else {
        "without a key"
    };
    match connector.connect(endpoint, key).await {
        Err(ConnectError::Refused { status: 403 }) => {
            Outcome::pass(name, format!("refused {without} with HTTP 403"))
        }
        Err(ConnectError::Refused { status }) => Outcome::fail(
            name,
            format!("refused {without} with HTTP {status}, but API Gateway refuses with 403"),
        ),
        Err(error) => Outcome::fail(name, format!("direct endpoint: {error}")),
        Ok(connected) => {
            let _ = close(connected.ws, Duration::from_secs(2)).await;
            Outcome::fail(
                name,
                format!(
                    "the direct endpoint ACCEPTED a client {without}: traffic can skip CloudFront and WAF \
                     (does $connect require the API key?)"
                ),
            )
        }
    }
}

/// With the stack's key the direct endpoint must accept the handshake.
/// Neither outcome quotes the key.
async fn expect_acceptance(connector: &Connector, endpoint: &Endpoint, key: &str) -> Outcome {
    let name = names::DIRECT_WITH_KEY;
    match connector.connect(endpoint, Some(key)).await {
        Ok(connected) => {
            let _ = close(connected.ws, Duration::from_secs(2)).await;
            Outcome::pass(name, "accepted with the API key")
        }
        Err(ConnectError::Refused { status }) => Outcome::fail(
            name,
            format!(
                "refused the given API key with HTTP {status}: is --direct the API's stage URL, \
                 and the key this stack's?"
            ),
        ),
        Err(error) => Outcome::fail(name, format!("direct endpoint: {error}")),
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn send(ws: &mut Ws, frame: &ClientFrame, limit: Duration) -> Result<(), String> {
    match tokio::time::timeout(limit, ws.send(Message::text(frame.to_text()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(format!("sending failed: {error}")),
        Err(_) => Err(format!("sending timed out after {}s", limit.as_secs())),
    }
}

/// Reads frames until `pick` accepts one. Messages broadcast by other clients
/// are skipped; an error frame, an API Gateway error or the end of the
/// connection fails.
async fn wait_for<T>(
    ws: &mut Ws,
    limit: Duration,
    what: &str,
    mut pick: impl FnMut(&ServerFrame) -> Option<T>,
) -> Result<T, String> {
    let reading = async {
        loop {
            let message = match ws.next().await {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    return Err(format!(
                        "connection failed while waiting for {what}: {error}"
                    ));
                }
                None => return Err(format!("connection ended while waiting for {what}")),
            };
            match message {
                Message::Text(text) => {
                    if let Some(frame) = ServerFrame::parse(&text) {
                        if let Some(found) = pick(&frame) {
                            return Ok(found);
                        }
                        if let ServerFrame::Error { code, message } = frame {
                            return Err(format!(
                                "error frame while waiting for {what}: {code:?}: {message}"
                            ));
                        }
                    } else if let Ok(gateway) = serde_json::from_str::<GatewayFrame>(&text) {
                        return Err(format!(
                            "API Gateway answered \"{}\" while waiting for {what}",
                            gateway.message
                        ));
                    } else {
                        return Err(format!(
                            "unexpected frame while waiting for {what} ({} bytes)",
                            text.len()
                        ));
                    }
                }
                Message::Close(frame) => {
                    let why = frame
                        .map(|f| format!(" (code {})", u16::from(f.code)))
                        .unwrap_or_default();
                    return Err(format!(
                        "server closed the connection{why} while waiting for {what}"
                    ));
                }
                Message::Binary(_) => {
                    return Err(format!("unexpected binary frame while waiting for {what}"));
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, reading)
        .await
        .unwrap_or_else(|_| Err(format!("no {what} within {}s", limit.as_secs())))
}

/// A `ws://` or `wss://` URL, checked before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub tls: bool,
    /// Host name or IP address, without IPv6 brackets.
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, ConnectError> {
        let malformed = |reason: String| ConnectError::MalformedUrl {
            url: url.to_string(),
            reason,
        };
        let uri: Uri = url.trim().parse().map_err(|e| malformed(format!("{e}")))?;
        let tls = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            Some(scheme @ ("https" | "http")) => {
                let hint = if scheme == "https" { "wss" } else { "ws" };
                return Err(malformed(format!(
                    "the scheme must be ws:// or wss:// (use {hint}://)"
                )));
            }
            Some(other) => {
                return Err(malformed(format!(
                    "unsupported scheme {other:?}; use ws:// or wss://"
                )));
            }
            None => {
                return Err(malformed(
                    "missing scheme; use wss://host/… or ws://host:port/…".into(),
                ));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| malformed("missing host".into()))?;
        if authority.as_str().contains('@') {
            return Err(malformed("credentials in the URL are not supported".into()));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(malformed("missing host".into()));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Endpoint {
            url: url.trim().to_string(),
            tls,
            host: host.to_string(),
            port,
        })
    }
}

/// The network step a connection attempt was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Dns,
    Tcp,
    Tls,
    Upgrade,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Dns => "the DNS lookup",
            Step::Tcp => "the TCP connection",
            Step::Tls => "the TLS handshake",
            Step::Upgrade => "the WebSocket handshake",
        })
    }
}

/// Why a WebSocket connection could not be opened; each cause its own message.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("malformed URL {url:?}: {reason}")]
    MalformedUrl { url: String, reason: String },
    #[error("DNS lookup of {host:?} failed: {detail}")]
    Dns { host: String, detail: String },
    #[error("TCP connection to {host} port {port} failed: {source}")]
    Tcp {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("TLS handshake with {host:?} failed: {detail}")]
    Tls { host: String, detail: String },
    #[error("timed out after {}s during {step}", after.as_secs_f64())]
    Timeout { step: Step, after: Duration },
    #[error("handshake refused with HTTP {status}")]
    Refused { status: u16 },
    #[error("WebSocket handshake failed: {0}")]
    Handshake(String),
}

/// How long each step of one handshake took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeTimings {
    pub dns: Duration,
    pub tcp: Duration,
    pub tls: Option<Duration>,
    pub upgrade: Duration,
}

impl HandshakeTimings {
    pub fn total(&self) -> Duration {
        self.dns + self.tcp + self.tls.unwrap_or_default() + self.upgrade
    }
}

pub struct Connected {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub timings: HandshakeTimings,
}

/// Opens WebSocket connections step by step, so a failure names its step.
pub struct Connector {
    limit: Duration,
    tls: Result<Arc<rustls::ClientConfig>, String>,
}

impl Connector {
    /// `limit` bounds each step.
    pub fn new(limit: Duration) -> Self {
        let mozilla = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        Connector::with_roots(limit, mozilla)
    }

    /// A connector that trusts only `roots` (a private CA, a test certificate).
    pub fn with_roots(limit: Duration, roots: rustls::RootCertStore) -> Self {
        Connector {
            limit,
            tls: tls_config(roots).map(Arc::new).map_err(|e| e.to_string()),
        }
    }

    /// Connects to `endpoint`, sending `x-api-key: <api_key>` when given.
    pub async fn connect(
        &self,
        endpoint: &Endpoint,
        api_key: Option<&str>,
    ) -> Result<Connected, ConnectError> {
        let limit = self.limit;
        let timeout = |step| ConnectError::Timeout { step, after: limit };

        let started = Instant::now();
        let addrs: Vec<_> = tokio::time::timeout(
            limit,
            tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port)),
        )
        .await
        .map_err(|_| timeout(Step::Dns))?
        .map_err(|e| ConnectError::Dns {
            host: endpoint.host.clone(),
            detail: e.to_string(),
        })?
        .collect();
        if addrs.is_empty() {
            return Err(ConnectError::Dns {
                host: endpoint.host.clone(),
                detail: "no addresses".into(),
            });
        }
        let dns = started.elapsed();

        let started = Instant::now();
        let tcp = tokio::time::timeout(limit, TcpStream::connect(&addrs[..]))
            .await
            .map_err(|_| timeout(Step::Tcp))?
            .map_err(|source| ConnectError::Tcp {
                host: endpoint.host.clone(),
                port: endpoint.port,
                source,
            })?;
        // Small frames (pings) must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        let tcp_took = started.elapsed();

        let (stream, tls_took) = if endpoint.tls {
            let started = Instant::now();
            let config = self.tls.as_ref().map_err(|detail| ConnectError::Tls {
                host: endpoint.host.clone(),
                detail: detail.clone(),
            })?;
            let name =
                rustls::pki_types::ServerName::try_from(endpoint.host.clone()).map_err(|e| {
                    ConnectError::Tls {
                        host: endpoint.host.clone(),
                        detail: format!("not a valid TLS server name: {e}"),
                    }
                })?;
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            let stream = tokio::time::timeout(limit, connector.connect(name, tcp))
                .await
                .map_err(|_| timeout(Step::Tls))?
                .map_err(|e| ConnectError::Tls {
                    host: endpoint.host.clone(),
                    detail: e.to_string(),
                })?;
            (MaybeTlsStream::Rustls(stream), Some(started.elapsed()))
        } else {
            (MaybeTlsStream::Plain(tcp), None)
        };

        let started = Instant::now();
        let mut request = endpoint.url.as_str().into_client_request().map_err(|e| {
            ConnectError::MalformedUrl {
                url: endpoint.url.clone(),
                reason: e.to_string(),
            }
        })?;
        request
            .headers_mut()
            .insert(USER_AGENT_HEADER, HeaderValue::from_static(USER_AGENT));
        if let Some(key) = api_key {
            let value = HeaderValue::from_str(key).map_err(|_| {
                ConnectError::Handshake("the API key is not a valid header value".into())
            })?;
            request.headers_mut().insert(API_KEY_HEADER, value);
        }
        let (ws, _response) =
            tokio::time::timeout(limit, tokio_tungstenite::client_async(request, stream))
                .await
                .map_err(|_| timeout(Step::Upgrade))?
                .map_err(classify_handshake_error)?;
        let upgrade = started.elapsed();
        Ok(Connected {
            ws,
            timings: HandshakeTimings {
                dns,
                tcp: tcp_took,
                tls: tls_took,
                upgrade,
            },
        })
    }
}

/// Turns a failed WebSocket upgrade into its [`ConnectError`].
pub fn classify_handshake_error(error: tungstenite::Error) -> ConnectError {
    match error {
        tungstenite::Error::Http(response) => ConnectError::Refused {
            status: response.status().as_u16(),
        },
        other => ConnectError::Handshake(other.to_string()),
    }
}

/// TLS trusting `roots` (the Mozilla root certificates for [`Connector::new`],
/// so CloudFront's certificate is verified as a browser would); the crypto
/// provider is named explicitly so it does not depend on which rustls
/// features other crates enable.
fn tls_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    // The WebSocket upgrade is an HTTP/1.1 request.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Nearest-rank percentile of sorted samples: the smallest sample with at
/// least `p` percent of the samples at or below it.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() || !(0.0..=100.0).contains(&p) {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// p50/p95/p99 and the maximum of a set of durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    pub samples: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    pub fn of(samples: &[Duration]) -> Option<Self> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Some(Percentiles {
            samples: sorted.len(),
            p50: percentile(&sorted, 50.0)?,
            p95: percentile(&sorted, 95.0)?,
            p99: percentile(&sorted, 99.0)?,
            max: *sorted.last()?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// Measured figures, in milliseconds.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub figures: BTreeMap<&'static str, f64>,
}

impl Outcome {
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Outcome {
            name,
            status: Status::Pass,
            detail: detail.into(),
            figures: BTreeMap::new(),
        }
    }

    pub fn fail(name: &'static str, detail: impl Into<String>) -> Self {
        Outcome {
            name,
            status: Status::Fail,
            detail: detail.into(),
            figures: BTreeMap::new(),
        }
    }

    pub fn skip(name: &'static str, detail: impl Into<String>) -> Self {
        Outcome {
            name,
            status: Status::Skip,
            detail: detail.into(),
            figures: BTreeMap::new(),
        }
    }

    fn figure(mut self, name: &'static str, value: Duration) -> Self {
        // Microsecond resolution is plenty, and keeps the JSON readable.
        self.figures
            .insert(name, (value.as_secs_f64() * 1e6).round() / 1e3);
        self
    }

    /// `PASS  ping                pong in 1.2 ms`
    pub fn line(&self) -> String {
        let status = match self.status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        };
        format!("{status}  {:<20} {}", self.name, self.detail)
    }
}

/// Every check's outcome, for one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub distribution: String,
    pub direct: String,
    pub checks: Vec<Outcome>,
}

impl Report {
    fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// True when no check failed and none was skipped.
    pub fn ok(&self) -> bool {
        !self.checks.is_empty() && self.count(Status::Pass) == self.checks.len()
    }

    pub fn summary(&self) -> String {
        let (passed, failed, skipped) = (
            self.count(Status::Pass),
            self.count(Status::Fail),
            self.count(Status::Skip),
        );
        let verdict = if self.ok() {
            "the API works through the distribution and refuses clients that skip it"
        } else if self
            .checks
            .iter()
            .any(|c| c.name.starts_with("direct-") && c.status != Status::Pass)
        {
            "NOT PROVEN: the direct endpoint did not refuse clients without the key as it must"
        } else {
            "NOT PROVEN: see the failed checks above"
        };
        format!(
            "{} checks: {passed} passed, {failed} failed, {skipped} skipped; {verdict}",
            self.checks.len()
        )
    }

    /// The report as one JSON document, verdict first.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Document<'a> {
            ok: bool,
            passed: usize,
            failed: usize,
            skipped: usize,
            distribution: &'a str,
            direct: &'a str,
            checks: &'a [Outcome],
        }
        let document = Document {
            ok: self.ok(),
            passed: self.count(Status::Pass),
            failed: self.count(Status::Fail),
            skipped: self.count(Status::Skip),
            distribution: &self.distribution,
            direct: &self.direct,
            checks: &self.checks,
        };
        // Plain data (strings, numbers, a map with string keys) always serialises.
        serde_json::to_string_pretty(&document).unwrap_or_else(|_| Value::Null.to_string())
    }
}

fn header_line(distribution: &str, direct: &str) -> String {
    format!("devstack check: distribution {distribution}, direct endpoint {direct}")
}

/// Milliseconds with one decimal: `12.3 ms`.
fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

#[cfg(test)]
// tungstenite's handshake callbacks return its `ErrorResponse` by value.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
    use tokio_tungstenite::tungstenite::http::StatusCode;

    const LIMIT: Duration = Duration::from_secs(5);

    fn millis(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let p = Percentiles::of(&samples).unwrap();
        assert_eq!(p.samples, 100);
        assert_eq!(p.p50, Duration::from_millis(50));
        assert_eq!(p.p95, Duration::from_millis(95));
        assert_eq!(p.p99, Duration::from_millis(99));
        assert_eq!(p.max, Duration::from_millis(100));

        let few = millis(&[30, 10, 20]);
        let p = Percentiles::of(&few).unwrap();
        assert_eq!(
            (p.p50, p.p95, p.p99),
            (
                Duration::from_millis(20),
                Duration::from_millis(30),
                Duration::from_millis(30)
            )
        );
        let one = Percentiles::of(&millis(&[7])).unwrap();
        assert_eq!(
            (one.p50, one.p99, one.max),
            (
                Duration::from_millis(7),
                Duration::from_millis(7),
                Duration::from_millis(7)
            )
        );
    }

    #[test]
    fn percentiles_of_nothing_are_none() {
        assert_eq!(Percentiles::of(&[]), None);
        assert_eq!(percentile(&millis(&[1, 2]), 101.0), None);
        assert_eq!(
            percentile(&millis(&[1, 2]), 0.0),
            Some(Duration::from_millis(1))
        );
        assert_eq!(percentile(&millis(&[1, 2]), f64::NAN), None);
    }

    #[test]
    fn urls_are_validated_before_connecting() {
        let edge = Endpoint::parse("wss://d111111abcdef8.cloudfront.net").unwrap();
        assert_eq!(
            (edge.tls, edge.host.as_str(), edge.port),
            (true, "d111111abcdef8.cloudfront.net", 443)
        );
        let local = Endpoint::parse(" ws://127.0.0.1:8081/prod ").unwrap();
        assert_eq!(
            (
                local.tls,
                local.host.as_str(),
                local.port,
                local.url.as_str()
            ),
            (false, "127.0.0.1", 8081, "ws://127.0.0.1:8081/prod")
        );
        let v6 = Endpoint::parse("ws://[::1]:9000/").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 9000));

        let reason = |url: &str| match Endpoint::parse(url) {
            Err(ConnectError::MalformedUrl { reason, .. }) => reason,
            other => panic!("{url}: expected a malformed URL, got {other:?}"),
        };
        assert!(reason("https://d111.cloudfront.net").contains("use wss://"));
        assert!(reason("http://127.0.0.1:8080").contains("use ws://"));
        assert!(reason("ftp://host/").contains("unsupported scheme"));
        assert!(reason("d111.cloudfront.net").contains("missing scheme"));
        assert!(reason("wss://user:pw@host/").contains("credentials"));
        assert!(!reason("wss://exa mple.com/").is_empty());
        assert!(!reason("").is_empty());
    }

    #[test]
    fn each_connection_failure_has_its_own_message() {
        let messages = [
            ConnectError::MalformedUrl {
                url: "x".into(),
                reason: "missing scheme".into(),
            }
            .to_string(),
            ConnectError::Dns {
                host: "nowhere.invalid".into(),
                detail: "not found".into(),
            }
            .to_string(),
            ConnectError::Tcp {
                host: "127.0.0.1".into(),
                port: 1,
                source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            }
            .to_string(),
            ConnectError::Tls {
                host: "h".into(),
                detail: "bad certificate".into(),
            }
            .to_string(),
            ConnectError::Timeout {
                step: Step::Tls,
                after: Duration::from_secs(3),
            }
            .to_string(),
            ConnectError::Refused { status: 403 }.to_string(),
        ];
        let starts: Vec<&str> = messages
            .iter()
            .map(|m| m.split_whitespace().next().unwrap_or(""))
            .collect();
        assert_eq!(
            starts,
            ["malformed", "DNS", "TCP", "TLS", "timed", "handshake"]
        );
        assert_eq!(messages[4], "timed out after 3s during the TLS handshake");
        assert_eq!(messages[5], "handshake refused with HTTP 403");
    }

    #[test]
    fn http_refusals_keep_their_status() {
        let response = tungstenite::http::Response::builder()
            .status(403)
            .body(None)
            .unwrap();
        let error = classify_handshake_error(tungstenite::Error::Http(Box::new(response)));
        assert!(
            matches!(error, ConnectError::Refused { status: 403 }),
            "{error:?}"
        );
        let error = classify_handshake_error(tungstenite::Error::ConnectionClosed);
        assert!(matches!(error, ConnectError::Handshake(_)), "{error:?}");
    }

    fn sample_report() -> Report {
        Report {
            distribution: "wss://d1.cloudfront.net".into(),
            direct: "wss://a.execute-api.eu-west-1.amazonaws.com/prod".into(),
            checks: vec![
                Outcome::pass(names::PING, "pong in 1.5 ms")
                    .figure("roundTripMs", Duration::from_micros(1500)),
                Outcome::fail(
                    names::DIRECT_WITHOUT_KEY,
                    "the direct endpoint ACCEPTED a client without a key",
                ),
                Outcome::skip(names::CLOSE, "no connection"),
            ],
        }
    }

    #[test]
    fn lines_say_pass_fail_or_skip() {
        let report = sample_report();
        let lines: Vec<String> = report.checks.iter().map(Outcome::line).collect();
        assert!(lines[0].starts_with("PASS  ping "), "{}", lines[0]);
        assert!(lines[0].ends_with("pong in 1.5 ms"));
        assert!(lines[1].starts_with("FAIL  direct-without-key "));
        assert!(lines[2].starts_with("SKIP  close "));
        assert!(!report.ok());
        let summary = report.summary();
        assert!(
            summary.starts_with("3 checks: 1 passed, 1 failed, 1 skipped;"),
            "{summary}"
        );
        assert!(summary.contains("direct endpoint"), "{summary}");
    }

    #[test]
    fn the_json_report_is_one_parseable_document() {
        let report = sample_report();
        let document: Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(document["ok"], json!(false));
        assert_eq!(
            (
                document["passed"].clone(),
                document["failed"].clone(),
                document["skipped"].clone()
            ),
            (json!(1), json!(1), json!(1))
        );
        assert_eq!(document["checks"][0]["name"], json!("ping"));
        assert_eq!(document["checks"][0]["status"], json!("pass"));
        assert_eq!(document["checks"][0]["figures"]["roundTripMs"], json!(1.5));
        assert_eq!(document["checks"][1]["status"], json!("fail"));
        assert!(document["checks"][2].get("figures").is_none());
    }

    #[test]
    fn a_report_passes_only_when_every_check_passed() {
        let mut report = sample_report();
        report.checks.retain(|c| c.status == Status::Pass);
        assert!(report.ok());
        assert!(report.summary().contains("refuses clients that skip it"));
        report.checks.clear();
        assert!(!report.ok(), "a report with no checks proves nothing");
    }

    async fn listener() -> (TcpListener, Endpoint, Endpoint) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let ws = Endpoint::parse(&format!("ws://127.0.0.1:{port}/prod")).unwrap();
        let wss = Endpoint::parse(&format!("wss://127.0.0.1:{port}/prod")).unwrap();
        (listener, ws, wss)
    }

    #[tokio::test]
    async fn a_refused_handshake_reports_its_status() {
        let (listener, endpoint, _) = listener().await;
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let refuse = |_: &Request, _: Response| -> Result<Response, ErrorResponse> {
                let mut response = ErrorResponse::new(Some("Forbidden".into()));
                *response.status_mut() = StatusCode::FORBIDDEN;
                Err(response)
            };
            let _ = tokio_tungstenite::accept_hdr_async(stream, refuse).await;
        });
        let result = Connector::new(LIMIT)
            .connect(&endpoint, Some("wrong"))
            .await;
        assert!(
            matches!(result, Err(ConnectError::Refused { status: 403 })),
            "{:?}",
            result.err()
        );
        tokio::time::timeout(LIMIT, server).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn an_accepted_handshake_sends_the_key_and_times_each_step() {
        let (listener, endpoint, _) = listener().await;
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut seen = (None, None);
            let record =
                |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
                    let header = |name| {
                        request
                            .headers()
                            .get(name)
                            .map(|v: &HeaderValue| v.as_bytes().to_vec())
                    };
                    seen = (header(API_KEY_HEADER), header(USER_AGENT_HEADER.as_str()));
                    Ok(response)
                };
            let ws = tokio_tungstenite::accept_hdr_async(stream, record)
                .await
                .unwrap();
            drop(ws);
            seen
        });
        let connected = Connector::new(LIMIT)
            .connect(&endpoint, Some("k3y"))
            .await
            .unwrap();
        assert!(connected.timings.tls.is_none());
        assert!(connected.timings.total() >= connected.timings.upgrade);
        let (key, agent) = tokio::time::timeout(LIMIT, server).await.unwrap().unwrap();
        assert_eq!(key.as_deref(), Some(&b"k3y"[..]));
        let agent =
            String::from_utf8(agent.expect("no User-Agent: WAF's common rule set would block it"))
                .unwrap();
        assert!(agent.starts_with("devstack-check/"), "{agent}");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out_in_the_upgrade() {
        let (listener, endpoint, _) = listener().await;
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buffer = [0u8; 1024];
            // Read the request, answer nothing, hold the connection open.
            let _ = stream.read(&mut buffer).await;
            tokio::time::sleep(Duration::from_secs(3)).await;
        });
        let result = Connector::new(Duration::from_millis(300))
            .connect(&endpoint, None)
            .await;
        assert!(
            matches!(
                result,
                Err(ConnectError::Timeout {
                    step: Step::Upgrade,
                    ..
                })
            ),
            "{:?}",
            result.err()
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_server_that_does_not_speak_tls_is_a_tls_failure() {
        let (listener, _, endpoint) = listener().await;
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
            let _ = stream.shutdown().await;
        });
        let result = Connector::new(LIMIT).connect(&endpoint, None).await;
        match result {
            Err(ConnectError::Tls { host, .. }) => assert_eq!(host, "127.0.0.1"),
            other => panic!("expected a TLS failure, got {:?}", other.err()),
        }
        tokio::time::timeout(LIMIT, server).await.unwrap().unwrap();
    }

    /// A loopback wss:// server with a self-signed certificate for
    /// `localhost`: accepts one WebSocket, answers one text frame with "ok".
    async fn tls_server() -> (
        Endpoint,
        rustls::pki_types::CertificateDer<'static>,
        tokio::task::JoinHandle<()>,
    ) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = certified.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(tls) = acceptor.accept(stream).await else {
                    continue;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    continue;
                };
                if let Some(Ok(Message::Text(_))) = ws.next().await {
                    let _ = ws.send(Message::text("ok")).await;
                }
            }
        });
        let endpoint = Endpoint::parse(&format!("wss://localhost:{port}/prod")).unwrap();
        (endpoint, cert, server)
    }

    #[tokio::test]
    async fn a_wss_handshake_is_encrypted_and_verified() {
        let (endpoint, cert, server) = tls_server().await;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let mut connected = Connector::with_roots(LIMIT, roots)
            .connect(&endpoint, None)
            .await
            .unwrap();
        assert!(
            connected.timings.tls.is_some(),
            "wss:// must time a TLS step"
        );
        connected.ws.send(Message::text("hello")).await.unwrap();
        let reply = tokio::time::timeout(LIMIT, connected.ws.next())
            .await
            .unwrap();
        assert!(
            matches!(reply, Some(Ok(Message::Text(ref t))) if t.as_str() == "ok"),
            "{reply:?}"
        );

        // Not signed by a CA it trusts: a TLS failure, not a handshake one.
        match Connector::new(LIMIT).connect(&endpoint, None).await {
            Err(ConnectError::Tls { host, detail }) => {
                assert_eq!(host, "localhost");
                assert!(detail.contains("certificate"), "{detail}");
            }
            other => panic!("expected a TLS failure, got {:?}", other.err()),
        }
        server.abort();
    }

    #[tokio::test]
    async fn a_closed_port_is_a_tcp_failure() {
        let (listener, endpoint, _) = listener().await;
        drop(listener);
        let result = Connector::new(LIMIT).connect(&endpoint, None).await;
        assert!(
            matches!(result, Err(ConnectError::Tcp { port, .. }) if port == endpoint.port),
            "{:?}",
            result.err()
        );
    }

    #[tokio::test]
    async fn a_malformed_url_fails_every_check_that_needs_it_without_connecting() {
        let args = CheckArgs {
            url: "https://d1.cloudfront.net".into(),
            direct: "not a url".into(),
            messages: 3,
            json: true,
            timeout: 1,
            api_key: None,
        };
        let mut seen = Vec::new();
        let report = tokio::time::timeout(LIMIT, check(&args, |o| seen.push(o.name)))
            .await
            .unwrap();
        assert_eq!(
            seen,
            report.checks.iter().map(|c| c.name).collect::<Vec<_>>()
        );
        let statuses: Vec<(&str, Status)> =
            report.checks.iter().map(|c| (c.name, c.status)).collect();
        assert_eq!(
            statuses,
            [
                (names::HANDSHAKE, Status::Fail),
                (names::PING, Status::Skip),
                (names::BROADCAST, Status::Skip),
                (names::ROUND_TRIP, Status::Skip),
                (names::CLOSE, Status::Skip),
                (names::DIRECT_WITHOUT_KEY, Status::Fail),
                (names::DIRECT_WRONG_KEY, Status::Fail),
            ]
        );
        assert!(
            report.checks[0].detail.starts_with("malformed URL"),
            "{}",
            report.checks[0].detail
        );
        assert!(!report.ok());
    }
}
