//! The calling side of [`super`]: one SigV4-signed HTTP/1 request to a local
//! AWS API of a running stack, signed with the local credentials for the
//! stack's Region and the API's service. The control client
//! (`devstack control`, service `devstack`) and the conformance check's
//! `@connections` calls (service `execute-api`) both send through it.

use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::SigningParams;
use axum::body::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

use super::{ACCESS_KEY_ID, SECRET_ACCESS_KEY};

/// How long one request may take, connection to last byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A local AWS API at `http://<authority>`, signed for `service` in `region`.
#[derive(Debug, Clone)]
pub struct SignedClient {
    /// `127.0.0.1:<port>`.
    authority: String,
    region: String,
    service: &'static str,
}

impl SignedClient {
    /// The API at `url` (`http://host:port`, any path ignored).
    pub fn new(url: &str, region: &str, service: &'static str) -> anyhow::Result<Self> {
        let authority = url
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .filter(|authority| !authority.is_empty())
            .with_context(|| format!("endpoint {url:?} is not http://host:port"))?;
        Ok(SignedClient {
            authority: authority.to_owned(),
            region: region.to_owned(),
            service,
        })
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The request, signed; `content_type` is sent and signed when given.
    pub fn signed(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
        content_type: Option<&str>,
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        let url = format!("http://{}{path}", self.authority);
        let identity =
            Credentials::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None, None, "devstack").into();
        let params = SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()?
            .into();
        let mut headers = vec![("host", self.authority.as_str())];
        if let Some(content_type) = content_type {
            headers.push(("content-type", content_type));
        }
        let signable = SignableRequest::new(
            method,
            &url,
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )?;
        let (instructions, _) = sign(signable, &params)?.into_parts();
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers.into_iter().chain(instructions.headers()) {
            request = request.header(name, value);
        }
        Ok(request.body(Full::new(body))?)
    }

    /// Sends one signed request; the answer's status and body, within
    /// [`REQUEST_TIMEOUT`].
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
        content_type: Option<&str>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let request = self.signed(method, path, body, content_type)?;
        let exchange = async {
            let stream = tokio::net::TcpStream::connect(&self.authority)
                .await
                .with_context(|| {
                    format!("connecting to {} (is the stack running?)", self.authority)
                })?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let response = sender.send_request(request).await?;
            let status = response.status();
            let bytes = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, bytes))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(answer) => answer,
            Err(_) => bail!(
                "{method} {path} at {} did not answer within {REQUEST_TIMEOUT:?}",
                self.authority
            ),
        }
    }
}
