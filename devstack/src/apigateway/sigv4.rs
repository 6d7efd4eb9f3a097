//! Who may call the @connections management API: requests to a loopback
//! name the stack answers on, signed with SigV4 for `execute-api` in the
//! stack's Region with the credentials devstack gives the function
//! ([`crate::sigv4`] checks them). Refusals are 403 with API Gateway's error
//! bodies; the body is read within [`BODY_READ_TIMEOUT`] and the post limit.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::warn;

use super::Shared;
use super::management::management_error;
use crate::listener::{BodyError, read_body};
use crate::sigv4::{Refusal, SECRET_ACCESS_KEY, Scope, check_host, verify};

/// The service the management API's requests are signed for.
const SERVICE: &str = "execute-api";
/// How long a management request's body may take to arrive.
pub(super) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

fn refused(refusal: &Refusal) -> Response {
    let (error_type, message) = refusal.error();
    management_error(StatusCode::FORBIDDEN, error_type, &message)
}

/// Middleware on the management routes: passes only correctly signed
/// requests on (with their body, which the signature covers).
pub(super) async fn require_signature(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(refusal) = check_host(request.headers()) {
        warn!(
            path = request.uri().path(),
            ?refusal,
            "management API request refused"
        );
        return refused(&refusal);
    }
    if !request.headers().contains_key(header::AUTHORIZATION) {
        return refused(&Refusal::Unsigned);
    }
    let (parts, body) = request.into_parts();
    // The post limit plus one byte: larger bodies reach the handler's 413 check.
    let limit = shared.config.limits.max_message_bytes + 1;
    let body = match read_body(body, limit, BODY_READ_TIMEOUT).await {
        Ok(body) => body,
        Err(BodyError::TooLarge(_)) => {
            return management_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLargeException",
                "Request Too Long",
            );
        }
        Err(error) => {
            return management_error(
                StatusCode::REQUEST_TIMEOUT,
                "BadRequestException",
                &error.to_string(),
            );
        }
    };
    let scope = Scope {
        region: shared.region.clone(),
        service: SERVICE,
    };
    if let Err(refusal) = verify(&parts, &body, &scope, SECRET_ACCESS_KEY, SystemTime::now()) {
        warn!(
            method = %parts.method,
            path = parts.uri.path(),
            ?refusal,
            "management API request refused"
        );
        return refused(&refusal);
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

#[cfg(test)]
mod tests;
