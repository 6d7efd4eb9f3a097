//! `PostToConnection` without the SDK's orchestrator: SigV4 with `aws-sigv4`,
//! one pooled keep-alive HTTP/1.1 client (hyper, rustls with aws-lc trusting
//! AWS's roots only, as [`crate::https_client`]).
//!
//! A broadcast is thousands of this one call. Through
//! `aws-sdk-apigatewaymanagement` each cost the function ≈ 200 µs of CPU
//! (perf: config bag, interceptors, runtime components, endpoint resolution,
//! tracing instrumentation, then SigV4 and hyper), so one core posted at most
//! ≈ 5,000/s whatever the network allowed. Here a post is the request, its
//! signature and the HTTP exchange, with the SDK's semantics kept: 2xx is
//! delivered, 410 is [`PostError::Gone`], anything else names the status and
//! the service's message; a refused connection (nothing was sent) and a 429
//! are tried again shortly, and after the last attempt are
//! [`PostError::Refused`] (the fan-out tries them again in a later
//! invocation); a post without an answer within [`OPERATION_TIMEOUT`] is
//! [`PostError::Unconfirmed`] and never tried again, as it may have been
//! delivered.

use crate::backoff::backoff;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::SigningParams;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::time::Instant;

use crate::deadline::{CONNECT_TIMEOUT, OPERATION_TIMEOUT};
use crate::https_client::{AWS_ROOTS_PEM, HttpsClientError, root_store};
use crate::lazy_client::Lazy;
use crate::messenger::PostError;

/// The service the management API's requests are signed for.
const SERVICE: &str = "execute-api";
/// Everything but RFC 3986's unreserved characters, as the SDK encodes a
/// path label: `=`, `+` and `/` in an id become `%3D`, `%2B`, `%2F`.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Attempts of one post when the connection is refused or the API throttles.
const ATTEMPTS: u32 = 3;
/// The first wait before another attempt; doubled each time, plus jitter.
const BACKOFF: Duration = Duration::from_millis(50);
/// How long an unused connection stays in the pool: well under the minute
/// after which servers commonly close an idle keep-alive connection, so a
/// post rarely goes out on one the server has already closed (such a post
/// fails, as it may have been sent: the SDK retried it, risking a double).
const POOL_IDLE: Duration = Duration::from_secs(20);
/// The most of an error body read for its message.
const ERROR_BODY_LIMIT: usize = 16 * 1024;
/// The most of a body that is not JSON quoted in an error.
const QUOTED_BODY: usize = 200;

type Connector = HttpsConnector<HttpConnector>;

/// The process's one HTTP client for the management API: connections are
/// kept alive and reused across posts, endpoints and invocations. Built at
/// the first post ([`Lazy`]): its TLS set-up parses the compiled-in roots,
/// work a cold start that posts nothing need not do.
#[derive(Clone, Debug)]
pub struct HttpClient(Lazy<Result<Client<Connector, Full<Bytes>>, String>>);

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// HTTP/1.1 over TCP (connect timeout [`CONNECT_TIMEOUT`]) or over
    /// rustls (aws-lc) trusting [`AWS_ROOTS_PEM`] only.
    pub fn new() -> Self {
        HttpClient(Lazy::new(|| Self::build().map_err(|e| e.to_string())))
    }

    fn build() -> Result<Client<Connector, Full<Bytes>>, HttpsClientError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(HttpsClientError::Rustls)?
            .with_root_certificates(root_store(AWS_ROOTS_PEM)?)
            .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        Ok(Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build(connector))
    }

    /// The client, or why it cannot be built (the compiled-in roots are
    /// checked by `https_client`'s tests, so this does not happen).
    fn get(&self) -> Result<&Client<Connector, Full<Bytes>>, String> {
        self.0.get().as_ref().map_err(Clone::clone)
    }
}

/// The management endpoint (`MANAGEMENT_ENDPOINT`, or
/// `https://{domainName}/{stage}`) is not an `http(s)://host/…` URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("management endpoint {endpoint:?} is not an http:// or https:// URL with a host: {reason}")]
pub struct BadEndpoint {
    pub endpoint: String,
    pub reason: String,
}

/// Posts to the connections of one management endpoint.
#[derive(Debug)]
pub struct PostClient {
    http: HttpClient,
    credentials: SharedCredentialsProvider,
    region: String,
    /// `scheme://authority/stage`, no trailing `/`.
    base: String,
    /// The `Host` header: the authority without a default port, as signed.
    host: String,
}

impl PostClient {
    pub fn new(
        http: HttpClient,
        credentials: SharedCredentialsProvider,
        region: impl Into<String>,
        endpoint: &str,
    ) -> Result<Self, BadEndpoint> {
        let bad = |reason: &str| BadEndpoint {
            endpoint: endpoint.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = endpoint
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        let default_port = match uri.scheme_str() {
            Some("http") => 80,
            Some("https") => 443,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        if uri.query().is_some() {
            return Err(bad("a query has no place in it"));
        }
        let host = match uri.port_u16() {
            Some(port) if port != default_port => format!("{host}:{port}"),
            _ => host.to_string(),
        };
        Ok(PostClient {
            http,
            credentials,
            region: region.into(),
            base: endpoint.trim_end_matches('/').to_string(),
            host,
        })
    }

    /// `POST {endpoint}/@connections/{id}` with `data`, retried only where
    /// nothing can have been delivered twice; at most [`OPERATION_TIMEOUT`].
    pub async fn post(&self, connection_id: &str, data: &[u8]) -> Result<(), PostError> {
        let deadline = Instant::now() + OPERATION_TIMEOUT;
        let url = format!(
            "{}/@connections/{}",
            self.base,
            utf8_percent_encode(connection_id, PATH_SEGMENT)
        );
        let body = Bytes::copy_from_slice(data);
        let mut attempt = 1;
        loop {
            let request = self.signed(&url, body.clone()).await?;
            let outcome = tokio::time::timeout_at(deadline, self.exchange(request)).await;
            let retry = match outcome {
                Err(_) => {
                    return Err(PostError::Unconfirmed(format!(
                        "PostToConnection had no answer within {OPERATION_TIMEOUT:?} \
                         (not retried: it may have been delivered)"
                    )));
                }
                Ok(Exchange::Answered(status, _)) if status.is_success() => return Ok(()),
                Ok(Exchange::Answered(StatusCode::GONE, _)) => return Err(PostError::Gone),
                Ok(Exchange::Answered(status, message)) => {
                    let error = format!("PostToConnection answered HTTP {status}: {message}");
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        Ok(error)
                    } else {
                        Err(error)
                    }
                }
                Ok(Exchange::NotConnected(error)) => Ok(format!(
                    "PostToConnection could not connect to {}: {error}",
                    self.host
                )),
                Ok(Exchange::Failed(error)) => {
                    Err(format!("PostToConnection to {} failed: {error}", self.host))
                }
            };
            let error = retry.map_err(PostError::Other)?;
            let wait = backoff(BACKOFF, attempt, OPERATION_TIMEOUT);
            if attempt >= ATTEMPTS || Instant::now() + wait >= deadline {
                return Err(PostError::Refused(format!(
                    "{error} (after {attempt} attempts)"
                )));
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// The request with SigV4 headers for `execute-api` in the region.
    async fn signed(&self, url: &str, body: Bytes) -> Result<Request<Full<Bytes>>, PostError> {
        let credentials = self.credentials.provide_credentials().await.map_err(|e| {
            PostError::Other(format!("no credentials to sign PostToConnection: {e}"))
        })?;
        let identity = Identity::from(credentials);
        let unsigned = |e: &dyn std::fmt::Display| {
            PostError::Other(format!("cannot sign PostToConnection to {url}: {e}"))
        };
        let params = SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| unsigned(&e))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            url,
            [("host", self.host.as_str())].into_iter(),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| unsigned(&e))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| unsigned(&e))?
            .into_parts();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(header::HOST, &self.host)
            .body(Full::new(body))
            .map_err(|e| unsigned(&e))?;
        instructions.apply_to_request_http1x(&mut request);
        Ok(request)
    }

    /// Sends `request` and reads the answer (the body only of an error).
    async fn exchange(&self, request: Request<Full<Bytes>>) -> Exchange {
        let client = match self.http.get() {
            Ok(client) => client,
            Err(error) => return Exchange::NotConnected(format!("no HTTP client: {error}")),
        };
        let response = match client.request(request).await {
            Ok(response) => response,
            Err(error) if error.is_connect() => return Exchange::NotConnected(chain(&error)),
            Err(error) => return Exchange::Failed(chain(&error)),
        };
        let status = response.status();
        let body = Limited::new(response.into_body(), ERROR_BODY_LIMIT);
        // Read to its end even on success: only then is the connection reused.
        match body.collect().await {
            Ok(body) => Exchange::Answered(status, message(&body.to_bytes())),
            Err(error) if status.is_success() || status == StatusCode::GONE => {
                Exchange::Answered(status, error.to_string())
            }
            Err(error) => Exchange::Failed(format!("HTTP {status}, then its body failed: {error}")),
        }
    }
}

enum Exchange {
    /// The status and the error message of the body (empty when none).
    Answered(StatusCode, String),
    /// No connection was made: nothing was sent.
    NotConnected(String),
    /// The request may have been sent.
    Failed(String),
}

/// The `message` of a JSON error body (API Gateway's shape), or the body
/// itself, shortened.
fn message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Error {
        #[serde(alias = "Message")]
        message: Option<String>,
    }
    if let Ok(Error {
        message: Some(message),
    }) = serde_json::from_slice::<Error>(body)
    {
        return message;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(QUOTED_BODY) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None if text.is_empty() => "(no message)".to_string(),
        None => text.to_string(),
    }
}

/// An error and its sources, `: `-separated (hyper's top error says little).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_body_gives_its_message_or_a_short_quote() {
        assert_eq!(message(br#"{"message":"Forbidden"}"#), "Forbidden");
        assert_eq!(
            message(br#"{"Message":"Too Many Requests"}"#),
            "Too Many Requests"
        );
        assert_eq!(message(b"  plain text "), "plain text");
        assert_eq!(message(b""), "(no message)");
        let long = "é".repeat(500);
        let quoted = message(long.as_bytes());
        assert_eq!(quoted.chars().count(), QUOTED_BODY + 1);
    }

    #[test]
    fn endpoints_are_checked_once() {
        let http = HttpClient::new();
        let credentials = SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
            "a", "b", None, None, "test",
        ));
        let client = |endpoint: &str| {
            PostClient::new(http.clone(), credentials.clone(), "eu-west-1", endpoint)
        };
        assert_eq!(
            client("https://abc.example/prod/").expect("https").host,
            "abc.example"
        );
        assert_eq!(
            client("https://abc.example:443/prod").expect("443").host,
            "abc.example"
        );
        assert_eq!(
            client("http://127.0.0.1:8081/prod").expect("http").host,
            "127.0.0.1:8081"
        );
        for bad in [
            "",
            "abc.example/prod",
            "ftp://abc.example/prod",
            "http://x/prod?q=1",
        ] {
            assert!(client(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_backoff_grows_and_stays_short() {
        for attempt in 1..=ATTEMPTS {
            let wait = backoff(BACKOFF, attempt, OPERATION_TIMEOUT);
            let base = BACKOFF * 2u32.pow(attempt - 1);
            assert!(wait >= base && wait < base * 2, "{attempt}: {wait:?}");
        }
    }
}
