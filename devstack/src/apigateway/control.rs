//! What the control room does to this API layer's connections
//! ([`crate::control::Connections`]): expire them now, or drop one without
//! `$disconnect`. The connection's own task does the closing, as it does at
//! the real limits, so an expired connection ends exactly as a timed-out one.

use std::time::Duration;

use tracing::info;

use super::Gateway;
use crate::control::{Connections, Limit, RouteFault};
use crate::lambda::invoke::InvokeError;

/// Why the control ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Forced {
    /// Closed as at the idle or 2-hour limit: 1001 Going away, `$disconnect` runs.
    Expire,
    /// The socket dropped without a close frame; `$disconnect` does not run.
    Drop,
}

impl Connections for Gateway {
    fn expire(&self, connection: Option<&str>, limit: Limit) -> usize {
        let connections = self.shared.connections.lock();
        let mut expired = 0;
        for (id, handle) in connections.iter() {
            if connection.is_none_or(|wanted| wanted == id)
                && handle.forced.send_if_modified(|forced| {
                    forced.is_none() && {
                        *forced = Some(Forced::Expire);
                        true
                    }
                })
            {
                info!(connection_id = %id, ?limit, "connection reaches its limit now (control)");
                expired += 1;
            }
        }
        expired
    }

    fn drop_without_disconnect(&self, connection: &str) -> bool {
        // Removed at once: @connections answers 410 from now on, as for a
        // connection API Gateway has lost.
        let Some(handle) = self.shared.connections.lock().remove(connection) else {
            return false;
        };
        handle.forced.send_replace(Some(Forced::Drop));
        true
    }
}

impl super::Shared {
    /// Applies the fault the control armed for this invocation of `route`:
    /// a delay is waited out here (then the invocation runs); a failure is
    /// the error the invocation returns instead of reaching the function.
    pub(super) async fn route_fault(&self, route: Option<&str>) -> Option<InvokeError> {
        match self.faults.take_route(route?)? {
            RouteFault::Delay { millis } => {
                info!(
                    route,
                    delay_ms = millis,
                    "invocation delayed (control fault)"
                );
                tokio::time::sleep(Duration::from_millis(millis)).await;
                None
            }
            RouteFault::Fail => {
                info!(route, "invocation failed (control fault)");
                Some(InvokeError::Function {
                    error_type: "Devstack.InjectedFault".to_owned(),
                    message: format!("the control failed this invocation of {route:?}"),
                })
            }
        }
    }
}
