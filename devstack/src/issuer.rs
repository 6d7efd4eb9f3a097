//! The local OpenID issuer as a room of the stack, and the one client that
//! asks a running issuer for a token.
//!
//! When the program turns sign-in on and no real issuer is named
//! (`--issuer`), the stack serves `crates/local-issuer` on a loopback port
//! (`--issuer-addr`) and points the authorizer function's `ISSUER` and
//! `JWKS_URL` at it. [`mint`] is how `devstack token`, `devstack check` and
//! the console obtain a token from it: `POST /token` with a JSON body, the
//! only way the issuer mints.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use axum::body::Body;
use http_body_util::{BodyExt as _, Limited};
use hyper_util::rt::TokioIo;
use local_issuer::{LocalIssuer, MintRequest};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

/// Where the stack's issuer listens unless `--issuer-addr` says otherwise,
/// and where `devstack token` looks for it.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8083";
/// The issuer URL at [`DEFAULT_ADDR`].
pub const DEFAULT_URL: &str = "http://127.0.0.1:8083";
/// The audience the local issuer's tokens name when the program names none.
pub const DEFAULT_AUDIENCE: &str = "devstack-local";
/// How long one mint may take, connection included.
const MINT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read from the issuer.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Serves the local issuer on `listener` (a loopback address), naming
/// `audience` in its tokens.
pub fn serve(listener: TcpListener, audience: &str) -> anyhow::Result<LocalIssuer> {
    let addr = listener.local_addr().context("the issuer's address")?;
    if !addr.ip().is_loopback() {
        bail!("the local issuer listens on loopback only, not {addr} (--issuer-addr)");
    }
    LocalIssuer::start_on(listener, audience).context("starting the local OpenID issuer")
}

/// A token from the issuer at `issuer_url` (`http://127.0.0.1:port`):
/// `POST /token` with `request` as JSON. Errors say whether nothing answers
/// there (no stack running) or what the issuer refused.
pub async fn mint(issuer_url: &str, request: &MintRequest) -> anyhow::Result<String> {
    let addr = loopback_addr(issuer_url)?;
    tokio::time::timeout(MINT_TIMEOUT, post_token(addr, request))
        .await
        .map_err(|_| {
            anyhow!(
                "the issuer at {issuer_url} did not answer within {}s",
                MINT_TIMEOUT.as_secs()
            )
        })?
        .with_context(|| format!("minting a token at {issuer_url}"))
}

/// The socket address of an `http://` URL on a loopback host.
fn loopback_addr(issuer_url: &str) -> anyhow::Result<SocketAddr> {
    let url = url::Url::parse(issuer_url)
        .with_context(|| format!("the issuer URL {issuer_url:?} is not a URL"))?;
    if url.scheme() != "http" {
        bail!("tokens are minted by the local issuer only (http:// on loopback), not {issuer_url}");
    }
    let addrs = url
        .socket_addrs(|| Some(80))
        .with_context(|| format!("resolving {issuer_url}"))?;
    addrs
        .into_iter()
        .find(|a| a.ip().is_loopback())
        .ok_or_else(|| anyhow!("the issuer URL {issuer_url} is not on a loopback address"))
}

async fn post_token(addr: SocketAddr, request: &MintRequest) -> anyhow::Result<String> {
    let stream = TcpStream::connect(addr).await.map_err(|error| {
        anyhow!(
            "nothing answers at {addr} ({error}): is `devstack up` running with sign-in on? \
             (another --issuer-addr: pass --issuer http://HOST:PORT)"
        )
    })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake with the issuer")?;
    let connection = tokio::spawn(connection);
    let body = serde_json::to_vec(request).context("encoding the token request")?;
    let http = axum::http::Request::post("/token")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Body::from(body))
        .context("building the token request")?;
    let response = sender
        .send_request(http)
        .await
        .context("sending POST /token")?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|error| anyhow!("reading the issuer's answer: {error}"))?
        .to_bytes();
    connection.abort();
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        let why = answer["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        bail!("the issuer refused with {status}: {why}");
    }
    answer["token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the issuer's answer has no token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_url_is_the_default_address() {
        assert_eq!(DEFAULT_URL, format!("http://{DEFAULT_ADDR}"));
    }

    #[tokio::test]
    async fn a_token_is_minted_over_http_by_the_served_issuer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let issuer = serve(listener, "aud-1").expect("serves");
        let token = mint(issuer.url(), &MintRequest::for_user("alice"))
            .await
            .expect("minted");
        assert_eq!(token.split('.').count(), 3, "a JWS: {token}");
    }

    #[tokio::test]
    async fn no_issuer_and_a_bad_request_are_clear_errors() {
        let free = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", free.local_addr().expect("addr"));
        drop(free);
        let error = mint(&url, &MintRequest::for_user("alice"))
            .await
            .expect_err("no issuer");
        assert!(
            format!("{error:#}").contains("is `devstack up` running"),
            "{error:#}"
        );

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let issuer = serve(listener, "aud-1").expect("serves");
        let mut request = MintRequest::for_user("alice");
        request.alg = Some("HS256".into());
        let error = mint(issuer.url(), &request).await.expect_err("refused");
        assert!(format!("{error:#}").contains("400"), "{error:#}");

        let error = mint("https://issuer.example.com", &MintRequest::for_user("a"))
            .await
            .expect_err("not local");
        assert!(format!("{error:#}").contains("loopback"), "{error:#}");
    }
}
