//! What the API layer is told: the API's routes, keys, stage throttling and
//! WebSocket limits, as plain values (the wiring reads them from the program).

use std::time::Duration;

use super::throttle::Throttle;

/// API Gateway's WebSocket limits; tests shrink the timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_message_bytes: usize,
    pub idle_timeout: Duration,
    pub max_connection_life: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        use protocol::limits::*;
        Limits {
            max_frame_bytes: MAX_FRAME_BYTES,
            max_message_bytes: MAX_MESSAGE_BYTES,
            idle_timeout: IDLE_TIMEOUT,
            max_connection_life: MAX_CONNECTION_LIFE,
        }
    }
}

/// A route of the API: its key and whether `$connect` through it needs an
/// API key.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub key: String,
    pub api_key_required: bool,
}

/// Everything the API layer needs; built from the Pulumi program by
/// the wiring ([`crate::stack`]).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub api_id: String,
    pub stage: String,
    /// `requestContext.domainName` of the events (the API's host).
    pub domain_name: String,
    pub route_selection_expression: String,
    pub api_key_selection_expression: Option<String>,
    pub routes: Vec<Route>,
    /// The API keys `$connect` accepts when the route requires a key.
    pub api_keys: Vec<String>,
    pub throttle: Option<Throttle>,
    pub limits: Limits,
}
