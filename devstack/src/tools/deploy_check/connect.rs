//! Opening a WebSocket step by step (DNS, TCP, TLS, upgrade), so a failure
//! names its step and each step is timed.

use std::net::SocketAddr;

use super::*;

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
        let parsed = match url::Url::parse(url.trim()) {
            Ok(parsed) => parsed,
            Err(url::ParseError::RelativeUrlWithoutBase) => {
                return Err(malformed(
                    "missing scheme; use wss://host/… or ws://host:port/…".into(),
                ));
            }
            Err(e) => return Err(malformed(format!("{e}"))),
        };
        let tls = match parsed.scheme() {
            "wss" => true,
            "ws" => false,
            scheme @ ("https" | "http") => {
                let hint = if scheme == "https" { "wss" } else { "ws" };
                return Err(malformed(format!(
                    "the scheme must be ws:// or wss:// (use {hint}://)"
                )));
            }
            other => {
                return Err(malformed(format!(
                    "unsupported scheme {other:?}; use ws:// or wss://"
                )));
            }
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(malformed("credentials in the URL are not supported".into()));
        }
        let host = match parsed.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => return Err(malformed("missing host".into())),
        };
        if host.is_empty() {
            return Err(malformed("missing host".into()));
        }
        let port = parsed
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        Ok(Endpoint {
            url: url.trim().to_string(),
            tls,
            host: host.to_string(),
            port,
        })
    }
}

impl Endpoint {
    /// The same endpoint with `name=value` added to its query string (the
    /// sign-in token); `url` is what is sent, never printed.
    pub fn with_query(&self, name: &str, value: &str) -> Endpoint {
        let mut url = match url::Url::parse(&self.url) {
            Ok(url) => url,
            Err(_) => return self.clone(),
        };
        url.query_pairs_mut().append_pair(name, value);
        Endpoint {
            url: url.to_string(),
            ..self.clone()
        }
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
    pub(super) limit: Duration,
    pub(super) tls: Result<Arc<rustls::ClientConfig>, String>,
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
        let started = Instant::now();
        let addrs = self.resolve(endpoint).await?;
        let dns = started.elapsed();

        let started = Instant::now();
        let tcp = self.open_tcp(endpoint, &addrs).await?;
        let tcp_took = started.elapsed();

        let (stream, tls_took) = if endpoint.tls {
            let started = Instant::now();
            let stream = self.start_tls(endpoint, tcp).await?;
            (MaybeTlsStream::Rustls(stream), Some(started.elapsed()))
        } else {
            (MaybeTlsStream::Plain(tcp), None)
        };

        let started = Instant::now();
        let ws = self.upgrade(endpoint, api_key, stream).await?;
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

    /// `step` ran out of [`Connector::limit`].
    fn timed_out(&self, step: Step) -> ConnectError {
        ConnectError::Timeout {
            step,
            after: self.limit,
        }
    }

    /// The DNS step: the endpoint's addresses, at least one.
    async fn resolve(&self, endpoint: &Endpoint) -> Result<Vec<SocketAddr>, ConnectError> {
        let addrs: Vec<_> = tokio::time::timeout(
            self.limit,
            tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port)),
        )
        .await
        .map_err(|_| self.timed_out(Step::Dns))?
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
        Ok(addrs)
    }

    /// The TCP step, through [`connect_any`]: a timeout only if every address
    /// timed out, else each address with its error.
    async fn open_tcp(
        &self,
        endpoint: &Endpoint,
        addrs: &[SocketAddr],
    ) -> Result<TcpStream, ConnectError> {
        let limit = self.limit;
        let tcp = connect_any(addrs, limit).await.map_err(|failures| {
            if failures.iter().all(|(_, error)| error.is_none()) {
                return self.timed_out(Step::Tcp);
            }
            let detail = failures
                .iter()
                .map(|(addr, error)| match error {
                    Some(error) => format!("{addr}: {error}"),
                    None => format!("{addr}: timed out after {}s", limit.as_secs_f64()),
                })
                .collect::<Vec<_>>()
                .join("; ");
            ConnectError::Tcp {
                host: endpoint.host.clone(),
                port: endpoint.port,
                source: std::io::Error::other(detail),
            }
        })?;
        // Small frames (pings) must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// The TLS step, verifying the server's certificate for the endpoint's
    /// host name.
    async fn start_tls(
        &self,
        endpoint: &Endpoint,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnectError> {
        let tls_error = |detail: String| ConnectError::Tls {
            host: endpoint.host.clone(),
            detail,
        };
        let config = self
            .tls
            .as_ref()
            .map_err(|detail| tls_error(detail.clone()))?;
        let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone())
            .map_err(|e| tls_error(format!("not a valid TLS server name: {e}")))?;
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        tokio::time::timeout(self.limit, connector.connect(name, tcp))
            .await
            .map_err(|_| self.timed_out(Step::Tls))?
            .map_err(|e| tls_error(e.to_string()))
    }

    /// The WebSocket upgrade, with devstack's user agent and the API key.
    async fn upgrade(
        &self,
        endpoint: &Endpoint,
        api_key: Option<&str>,
        stream: MaybeTlsStream<TcpStream>,
    ) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, ConnectError> {
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
            tokio::time::timeout(self.limit, tokio_tungstenite::client_async(request, stream))
                .await
                .map_err(|_| self.timed_out(Step::Upgrade))?
                .map_err(classify_handshake_error)?;
        Ok(ws)
    }
}

/// Connects to the first of `addrs` that answers, trying each in turn (as
/// resolved: IPv6 and IPv4) with its own `limit`, so an address family the
/// network black-holes costs one `limit` rather than the whole check. On
/// failure, each address with its error (`None`: it timed out).
pub async fn connect_any(
    addrs: &[SocketAddr],
    limit: Duration,
) -> Result<TcpStream, Vec<(SocketAddr, Option<std::io::Error>)>> {
    let mut failures = Vec::new();
    for &addr in addrs {
        match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) => failures.push((addr, Some(error))),
            Err(_) => failures.push((addr, None)),
        }
    }
    Err(failures)
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
pub(super) fn tls_config(
    roots: rustls::RootCertStore,
) -> Result<rustls::ClientConfig, rustls::Error> {
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
