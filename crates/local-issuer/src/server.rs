//! The issuer over HTTP: the two documents a relying party reads
//! (`/.well-known/openid-configuration`, `/.well-known/jwks.json`) and
//! `POST /token`, which mints a token for the JSON body ([`MintRequest`]).
//!
//! Minting answers loopback peers only, and only a JSON body: a web page
//! cannot send `Content-Type: application/json` cross-origin without a CORS
//! preflight, which this server does not answer with CORS headers, so a
//! hostile page in the developer's browser cannot obtain a token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::{Issuer, IssuerError, MintRequest};

/// The largest `POST /token` body: 16 KiB, far more than any claims need.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The issuer's routes. Serve them with connect info ([`serve`] does):
/// without the peer's address every request is refused.
pub fn router(issuer: Arc<Issuer>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/token", post(token))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(loopback_only))
        .with_state(issuer)
}

/// Serves `issuer` on `listener` until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, issuer: Arc<Issuer>) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(issuer).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

async fn discovery(State(issuer): State<Arc<Issuer>>) -> Json<serde_json::Value> {
    Json(issuer.discovery())
}

async fn jwks(State(issuer): State<Arc<Issuer>>) -> Json<jsonwebtoken::jwk::JwkSet> {
    Json(issuer.jwks())
}

async fn token(State(issuer): State<Arc<Issuer>>, Json(request): Json<MintRequest>) -> Response {
    match issuer.mint(&request) {
        Ok(token) => Json(serde_json::json!({ "token": token })).into_response(),
        Err(e @ IssuerError::BadRequest(_)) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "the local issuer could not mint a token");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({ "error": e.to_string() })),
            )
                .into_response()
        }
    }
}

async fn loopback_only(request: Request, next: Next) -> Response {
    match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) if peer.ip().is_loopback() => next.run(request).await,
        Some(ConnectInfo(peer)) => (
            StatusCode::FORBIDDEN,
            format!(
                "the local issuer answers loopback peers only, not {}",
                peer.ip()
            ),
        )
            .into_response(),
        None => (
            StatusCode::FORBIDDEN,
            "the local issuer answers loopback peers only",
        )
            .into_response(),
    }
}

/// An issuer serving on a loopback port of its own, stopped when dropped:
/// what tests and the local stack start.
#[derive(Debug)]
pub struct LocalIssuer {
    issuer: Arc<Issuer>,
    addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl LocalIssuer {
    /// Binds `127.0.0.1:0`; the issuer URL is `http://127.0.0.1:{port}`.
    pub async fn start(audience: impl Into<String>) -> Result<Self, StartError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(StartError::Bind)?;
        Self::start_on(listener, audience)
    }

    /// Serves on `listener` (which must be bound to a loopback address); the
    /// issuer URL is `http://{its address}`.
    pub fn start_on(
        listener: TcpListener,
        audience: impl Into<String>,
    ) -> Result<Self, StartError> {
        let addr = listener.local_addr().map_err(StartError::Bind)?;
        let issuer = Arc::new(Issuer::generate(format!("http://{addr}"), audience)?);
        let task = tokio::spawn(serve(listener, Arc::clone(&issuer)));
        Ok(Self { issuer, addr, task })
    }

    pub fn issuer(&self) -> &Arc<Issuer> {
        &self.issuer
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The issuer URL (`iss`).
    pub fn url(&self) -> &str {
        self.issuer.url()
    }
}

impl Drop for LocalIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why [`LocalIssuer`] did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen for the local issuer on loopback: {0}")]
    Bind(#[source] std::io::Error),
    #[error(transparent)]
    Issuer(#[from] IssuerError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// One HTTP/1.1 request over a fresh connection; the status line and body.
    async fn http(addr: SocketAddr, request: &str) -> (String, String) {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut answer = String::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.read_to_string(&mut answer),
        )
        .await
        .expect("the issuer answers within 5 s")
        .expect("read");
        let status = answer.lines().next().unwrap_or_default().to_owned();
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    fn post(body: &str, content_type: &str) -> String {
        format!(
            "POST /token HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn serves_discovery_and_jwks_and_mints_for_a_json_body_only() {
        let local = LocalIssuer::start("local-app").await.expect("start");
        let (status, body) = http(
            local.addr(),
            "GET /.well-known/openid-configuration HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(status.contains("200"), "{status}");
        let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(doc["issuer"], local.url());
        assert_eq!(
            doc["jwks_uri"],
            format!("{}/.well-known/jwks.json", local.url())
        );

        let (status, body) = http(
            local.addr(),
            "GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(status.contains("200"), "{status}");
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&body).expect("a JWKS");
        assert_eq!(jwks.keys.len(), 2);

        let (status, body) = http(
            local.addr(),
            &post(r#"{"sub":"alice"}"#, "application/json"),
        )
        .await;
        assert!(status.contains("200"), "{status} {body}");
        let token: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let kid = jsonwebtoken::decode_header(token["token"].as_str().expect("token"))
            .expect("a JWT")
            .kid
            .expect("kid");
        assert!(jwks.find(&kid).is_some());

        // A form post (what a page can send without a preflight) is refused.
        let (status, _) = http(local.addr(), &post(r#"{"sub":"alice"}"#, "text/plain")).await;
        assert!(status.contains("415"), "{status}");
        let (status, body) = http(
            local.addr(),
            &post(r#"{"sub":"alice","alg":"none"}"#, "application/json"),
        )
        .await;
        assert!(
            status.contains("400") && body.contains("none"),
            "{status} {body}"
        );
        let (status, _) = http(
            local.addr(),
            &post(r#"{"sub":"alice","admin":true}"#, "application/json"),
        )
        .await;
        assert!(status.contains("422"), "{status}");
        let big = format!(r#"{{"sub":"{}"}}"#, "a".repeat(MAX_BODY_BYTES));
        let (status, _) = http(local.addr(), &post(&big, "application/json")).await;
        assert!(status.contains("413"), "{status}");
    }

    #[tokio::test]
    async fn refuses_a_peer_that_is_not_on_loopback() {
        use tower::ServiceExt;
        let issuer = Arc::new(Issuer::generate("http://127.0.0.1:1", "app").expect("issuer"));
        let mut request = Request::builder()
            .method("POST")
            .uri("/token")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(r#"{"sub":"alice"}"#))
            .expect("request");
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 4000))));
        let response = router(Arc::clone(&issuer))
            .oneshot(request)
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let without_peer = Request::builder()
            .uri("/.well-known/jwks.json")
            .body(axum::body::Body::empty())
            .expect("request");
        let response = router(issuer)
            .oneshot(without_peer)
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
}
