//! The control room: time and faults on demand, one place for the whole
//! local stack. A loopback-only endpoint ([`server`]) and `devstack control …`
//! ([`client`]) arm a [`FaultPlan`] that the services consult (`@connections`,
//! the API layer's invocations, the local Lambda) and act on open connections
//! through [`Connections`] (expire one or all now, drop one without
//! `$disconnect`). The services grow no test hooks of their own.
//!
//! Who may use it: only requests to a loopback name (the Host is checked, so
//! a DNS-rebinding page is refused), signed with SigV4 for service
//! [`SERVICE`] in the stack's Region, with a JSON body. A web page cannot
//! send such a request: `Authorization`, `x-amz-date` and
//! `Content-Type: application/json` each make the browser ask first (a CORS
//! preflight), and the control answers no preflight and sends no
//! `Access-Control-*` header, so the request is never sent. (The signing key
//! is the stack's fixed local one, as for `@connections`: the signature keeps
//! browsers out, not local programs — which can already signal the stack.)

pub mod client;
pub mod plan;
pub mod server;
#[cfg(test)]
mod tests;

pub use plan::{ArmError, FaultPlan, PostFault, RouteFault};
pub use server::ControlServer;

/// The service control requests are signed for (the credential scope's service).
pub const SERVICE: &str = "devstack";

/// What the control does to open connections; the API layer implements it.
pub trait Connections: Send + Sync + 'static {
    /// Closes `connection` (or every open connection) now, as API Gateway
    /// does at `limit`; returns how many were closed.
    fn expire(&self, connection: Option<&str>, limit: Limit) -> usize;
    /// Drops `connection`'s socket without a close frame and without
    /// running `$disconnect`; false when no such connection is open.
    fn drop_without_disconnect(&self, connection: &str) -> bool;
}

/// Which of API Gateway's time limits a connection is made to reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Limit {
    /// The 10-minute idle timeout.
    Idle,
    /// The 2-hour maximum connection life.
    Life,
}
