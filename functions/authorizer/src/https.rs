//! The deployed [`Fetcher`]: one pooled hyper client over rustls (aws-lc-rs)
//! trusting Mozilla's root CAs (webpki-roots, compiled in: nothing is read
//! from disk at cold start, and every public issuer — Cognito, Auth0, Okta,
//! Google, a Keycloak with a public certificate — chains to them). Plain
//! `http://` is only ever asked for loopback URLs ([`crate::settings::check_url`]).

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::keys::Fetcher;
use crate::settings::check_url;

/// The largest discovery document or JWKS read: 64 KiB (real ones are a
/// few KB; Google's JWKS is about 1.5 KB).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// GETs documents over HTTPS (or HTTP to loopback).
#[derive(Clone)]
pub struct HttpsFetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl Default for HttpsFetcher {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpsFetcher {
    pub fn new() -> Self {
        let connector = HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

#[async_trait]
impl Fetcher for HttpsFetcher {
    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        check_url(url)?;
        let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
        let request = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let response = self.client.request(request).await.map_err(|e| {
            // hyper-util's Display is terse ("client error (Connect)"); the
            // source says what failed (refused, DNS, certificate).
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        })?;
        let status = response.status();
        if status != http::StatusCode::OK {
            return Err(format!("the server answered {status}"));
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| {
                format!("reading the answer: {e} (the limit is {MAX_DOCUMENT_BYTES} bytes)")
            })?;
        Ok(body.to_bytes().to_vec())
    }
}
