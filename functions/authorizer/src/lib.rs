//! The `$connect` authorizer: API Gateway runs it before the handler for
//! every WebSocket handshake when the stack has sign-in on, and it answers
//! Allow for a valid OpenID Connect / OAuth 2.0 JWT in the query string and
//! Deny otherwise.
//!
//! It is a function of its own, not a route of the handler: the handler
//! keeps no JOSE or HTTPS-JWKS code (a smaller binary and a faster cold
//! start on the hot path), and the authorizer gets its own role (no
//! DynamoDB rights), timeout, log group and error alarm.
//!
//! [`settings`] (the environment) → [`authorize`] (event → policy) →
//! [`verify`] (the token checks) with [`keys`] (the cached JWKS) fetched by
//! [`https`].

pub mod authorize;
pub mod https;
pub mod keys;
pub mod settings;
pub mod verify;

pub use authorize::{AuthorizeError, Authorizer};
