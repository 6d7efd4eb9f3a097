//! Who may call the @connections management API: as on AWS, only requests
//! signed with SigV4 for service `execute-api`, here with the credentials
//! devstack gives the function ([`ACCESS_KEY_ID`], [`SECRET_ACCESS_KEY`]).
//! The expected signature is computed by `aws-sigv4` from the request's
//! method, path, query, the headers named in `SignedHeaders`, its body and its
//! `x-amz-date`, and compared with the one sent in constant time. Refusals
//! are 403 with API Gateway's error bodies.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::SigningParams;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use chrono::NaiveDateTime;
use subtle::ConstantTimeEq;
use tracing::warn;

use super::Shared;
use super::management::management_error;

/// The access key id devstack gives the function (`AWS_ACCESS_KEY_ID`).
pub const ACCESS_KEY_ID: &str = "local";
/// The secret access key devstack gives the function (`AWS_SECRET_ACCESS_KEY`).
pub const SECRET_ACCESS_KEY: &str = "local";
/// The service the management API's requests are signed for.
const SERVICE: &str = "execute-api";
/// How far a request's `x-amz-date` may be from now (AWS allows 5 minutes).
const MAX_SKEW: Duration = Duration::from_secs(5 * 60);
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Why a management request was refused.
#[derive(Debug, PartialEq)]
pub(super) enum Refusal {
    /// No `Authorization` header.
    Unsigned,
    /// An `Authorization` header that is not SigV4 or lacks a part.
    Malformed(&'static str),
    /// An access key devstack did not give out.
    UnknownKey,
    /// A signature that does not match (wrong secret, service or request).
    Mismatch,
    /// `x-amz-date` too far from now.
    Expired,
}

impl Refusal {
    fn response(&self) -> Response {
        let (error_type, message) = match self {
            Refusal::Unsigned => (
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            ),
            Refusal::Malformed(what) => ("IncompleteSignatureException", *what),
            Refusal::UnknownKey => (
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ),
            Refusal::Mismatch => (
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. \
                 Check your AWS Secret Access Key and signing method. \
                 Consult the service documentation for details.",
            ),
            Refusal::Expired => ("InvalidSignatureException", "Signature expired."),
        };
        management_error(StatusCode::FORBIDDEN, error_type, message)
    }
}

/// Middleware on the management routes: passes only correctly signed
/// requests on (with their body, which the signature covers).
pub(super) async fn require_signature(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if !request.headers().contains_key(header::AUTHORIZATION) {
        return Refusal::Unsigned.response();
    }
    let (parts, body) = request.into_parts();
    // The post limit plus one byte: larger bodies reach the handler's 413 check.
    let limit = shared.config.limits.max_message_bytes + 1;
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        return management_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            "Request Too Long",
        );
    };
    if let Err(refusal) = verify(&parts, &body, SECRET_ACCESS_KEY, SystemTime::now()) {
        warn!(
            method = %parts.method,
            path = parts.uri.path(),
            ?refusal,
            "management API request refused"
        );
        return refusal.response();
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=.., SignedHeaders=.., Signature=..`.
struct Authorization<'a> {
    access_key: &'a str,
    /// `date/region/service/aws4_request`.
    scope: Vec<&'a str>,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, Refusal> {
    let rest = value.strip_prefix(ALGORITHM).ok_or(Refusal::Malformed(
        "Authorization header must use AWS4-HMAC-SHA256.",
    ))?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let missing = |what| Refusal::Malformed(what);
    let credential = credential.ok_or(missing(
        "Authorization header requires 'Credential' parameter.",
    ))?;
    let signed_headers = signed_headers.ok_or(missing(
        "Authorization header requires 'SignedHeaders' parameter.",
    ))?;
    let signature = signature.ok_or(missing(
        "Authorization header requires 'Signature' parameter.",
    ))?;
    let mut fields = credential.split('/');
    let access_key = fields.next().unwrap_or_default();
    let scope: Vec<&str> = fields.collect();
    if scope.len() != 4 || scope[3] != "aws4_request" {
        return Err(missing(
            "Credential should be scoped to a valid region, service and date.",
        ));
    }
    Ok(Authorization {
        access_key,
        scope,
        signed_headers: signed_headers.split(';').collect(),
        signature,
    })
}

/// Checks the request's SigV4 signature against `secret` at time `now`.
pub(super) fn verify(
    parts: &Parts,
    body: &[u8],
    secret: &str,
    now: SystemTime,
) -> Result<(), Refusal> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or(Refusal::Unsigned)?
        .to_str()
        .map_err(|_| Refusal::Malformed("Authorization header is not ASCII."))?;
    let auth = parse_authorization(value)?;
    if auth.access_key != ACCESS_KEY_ID {
        return Err(Refusal::UnknownKey);
    }
    let region = auth.scope[1];
    if auth.scope[2] != SERVICE {
        return Err(Refusal::Mismatch);
    }
    let time = amz_date(&parts.headers)?;
    let skew = match now.duration_since(time) {
        Ok(behind) => behind,
        Err(ahead) => ahead.duration(),
    };
    if skew > MAX_SKEW {
        return Err(Refusal::Expired);
    }
    let headers = signed_headers(&parts.headers, &auth.signed_headers)?;
    let host = headers
        .iter()
        .find(|(name, _)| *name == "host")
        .map(|(_, value)| *value)
        .ok_or(Refusal::Malformed("'Host' must be a signed header."))?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = format!("http://{host}{path}");
    let signable = SignableRequest::new(
        parts.method.as_str(),
        uri,
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|_| Refusal::Mismatch)?;
    let identity = Credentials::new(ACCESS_KEY_ID, secret, None, None, "devstack").into();
    let mut settings = SigningSettings::default();
    // Only the headers the client named are passed in; sign all of them.
    settings.excluded_headers = None;
    let params = SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|_| Refusal::Mismatch)?;
    let expected = sign(signable, &params.into()).map_err(|_| Refusal::Mismatch)?;
    let matches: bool = expected
        .signature()
        .as_bytes()
        .ct_eq(auth.signature.as_bytes())
        .into();
    if matches {
        Ok(())
    } else {
        Err(Refusal::Mismatch)
    }
}

fn amz_date(headers: &HeaderMap) -> Result<SystemTime, Refusal> {
    let value = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or(Refusal::Malformed(
            "Authorization header requires existence of a valid 'X-Amz-Date' header.",
        ))?;
    let date = NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%SZ")
        .map_err(|_| Refusal::Malformed("'X-Amz-Date' must be in the ISO8601 basic format."))?;
    Ok(date.and_utc().into())
}

/// The request's values of the headers named in `SignedHeaders`, which must
/// include `host` and `x-amz-date`.
fn signed_headers<'a>(
    headers: &'a HeaderMap,
    names: &[&str],
) -> Result<Vec<(&'a str, &'a str)>, Refusal> {
    let mut signed = Vec::new();
    for name in names {
        let before = signed.len();
        for (key, value) in headers.iter().filter(|(key, _)| key.as_str() == *name) {
            let value = value.to_str().map_err(|_| Refusal::Mismatch)?;
            signed.push((key.as_str(), value));
        }
        if signed.len() == before {
            return Err(Refusal::Mismatch);
        }
    }
    if !names.contains(&"x-amz-date") {
        return Err(Refusal::Malformed("'X-Amz-Date' must be a signed header."));
    }
    Ok(signed)
}

#[cfg(test)]
mod tests;
