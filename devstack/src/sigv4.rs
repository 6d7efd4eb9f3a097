//! Who may call the local AWS APIs (the `@connections` management API, the
//! Lambda Invoke API): as on AWS, only requests signed with SigV4 for the
//! stack's Region and the API's service, here with the credentials devstack
//! gives the function ([`ACCESS_KEY_ID`], [`SECRET_ACCESS_KEY`]), sent to a
//! loopback name the stack answers on. The expected signature is computed by
//! `aws-sigv4` from the request's method, path, query, the headers named in
//! `SignedHeaders` (the Host the client sent among them), its body and its
//! `x-amz-date`, and compared with the one sent in constant time; the
//! credential scope must name the Region, the service and the day of
//! `x-amz-date`, which must be within [`MAX_SKEW`] of now. Each API answers
//! a [`Refusal`] in its own error shape.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::SigningParams;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use chrono::NaiveDateTime;
use subtle::ConstantTimeEq;

/// The access key id devstack gives the function (`AWS_ACCESS_KEY_ID`).
pub const ACCESS_KEY_ID: &str = "local";
/// The secret access key devstack gives the function (`AWS_SECRET_ACCESS_KEY`).
pub const SECRET_ACCESS_KEY: &str = "local";
/// How far a request's `x-amz-date` may be from now (AWS allows 5 minutes).
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

pub mod client;

/// Why a request was refused.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// A `Host` that is not a loopback name the stack answers on.
    Host(String),
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
    /// A credential scope for another Region, service or day.
    Scope(String),
}

impl Refusal {
    /// The error type (`x-amzn-errortype`) and message AWS answers with
    /// (403 for each).
    pub fn error(&self) -> (&'static str, String) {
        match self {
            Refusal::Host(message) => ("ForbiddenException", message.clone()),
            Refusal::Unsigned => (
                "MissingAuthenticationTokenException",
                "Missing Authentication Token".into(),
            ),
            Refusal::Malformed(what) => ("IncompleteSignatureException", (*what).into()),
            Refusal::UnknownKey => (
                "UnrecognizedClientException",
                "The security token included in the request is invalid.".into(),
            ),
            Refusal::Mismatch => (
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. \
                 Check your AWS Secret Access Key and signing method. \
                 Consult the service documentation for details."
                    .into(),
            ),
            Refusal::Expired => ("InvalidSignatureException", "Signature expired.".into()),
            Refusal::Scope(message) => ("InvalidSignatureException", message.clone()),
        }
    }
}

/// What a request must be signed for: the stack's Region and the API's
/// service (`execute-api`, `lambda`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub region: String,
    pub service: &'static str,
}

/// The `Host` names the stack answers on: `127.0.0.1`, `localhost` and
/// `[::1]`, with or without a port. Another name is refused with a message
/// naming them (a page on another site, DNS rebinding, a typo).
pub fn check_host(headers: &HeaderMap) -> Result<(), Refusal> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().map(|n| format!("[{n}]")),
        None => host.split(':').next().map(str::to_string),
    }
    .unwrap_or_default();
    if matches!(name.as_str(), "127.0.0.1" | "localhost" | "[::1]") {
        Ok(())
    } else {
        Err(Refusal::Host(format!(
            "Host {host:?} is not one this local API answers on: use 127.0.0.1, localhost or [::1] \
             (with the port)"
        )))
    }
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

/// Checks the request's SigV4 signature for `scope` against `secret` at
/// time `now`.
pub fn verify(
    parts: &Parts,
    body: &[u8],
    scope: &Scope,
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
    let [day, region, service, _] = auth.scope[..] else {
        return Err(Refusal::Malformed(
            "Credential should be scoped to a valid region, service and date.",
        ));
    };
    if service != scope.service {
        return Err(Refusal::Scope(format!(
            "Credential should be scoped to correct service: '{}'.",
            scope.service
        )));
    }
    if region != scope.region {
        return Err(Refusal::Scope(format!(
            "Credential should be scoped to a valid region, not '{region}'. \
             The local stack's Region is '{}'.",
            scope.region
        )));
    }
    let time = amz_date(&parts.headers)?;
    let date = chrono::DateTime::<chrono::Utc>::from(time)
        .format("%Y%m%d")
        .to_string();
    if day != date {
        return Err(Refusal::Scope(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP: '{day}' != '{date}'"
        )));
    }
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
        .name(scope.service)
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
