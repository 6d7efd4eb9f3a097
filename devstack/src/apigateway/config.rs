//! What the API layer is told: the API's routes, keys, stage throttling and
//! WebSocket limits, as plain values (the wiring reads them from the program).

use std::time::Duration;

use super::account::AccountLimits;
use super::authorizer::AuthorizerConfig;
use super::throttle::Throttle;

/// Frames queued for one connection before it counts as not reading. A
/// client that reads, only slowly, must not trip it in a burst: in the e2e
/// load test 1,000 broadcasts queue up to 990 frames for each client on two
/// busy cores, and at 256 a reading client was closed and its record
/// removed. The send deadline is what catches a client that reads nothing.
const OUTBOUND_QUEUE: usize = 4096;
/// Sockets the API layer's listener holds beside its WebSocket connections
/// (`--max-connections`): the management API's callers (16 function
/// processes keep up to 50 pooled connections each) and handshakes not yet
/// upgraded. Over it a socket gets 429 at once.
pub const REQUEST_CONNECTIONS: usize = 4_096;
/// Bytes of management API posts queued for one connection before it
/// counts as not reading: 512 frames of 32 KB. With only the frame count,
/// one slow reader of large frames could hold 4,096 × 128 KB = 512 MB.
const OUTBOUND_QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// How long one frame may take to reach the client's socket.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// API Gateway's WebSocket limits; tests shrink the timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_message_bytes: usize,
    pub idle_timeout: Duration,
    pub max_connection_life: Duration,
    /// Frames queued for one connection (management API posts, error
    /// frames); a post that finds the queue full closes the connection.
    pub outbound_queue: usize,
    /// Bytes of posts queued for one connection; a post over it closes the
    /// connection as the full queue does.
    pub outbound_queue_bytes: usize,
    /// How long writing one frame to the client may take; a client that reads
    /// nothing for that long is closed.
    pub send_timeout: Duration,
    /// Open WebSocket connections at most (`--max-connections`); a handshake
    /// over it gets 429. Management API requests do not count against it.
    pub max_websockets: usize,
    /// The account's request and new-connection rates.
    pub account: AccountLimits,
}

impl Default for Limits {
    fn default() -> Self {
        use protocol::limits::*;
        Limits {
            max_frame_bytes: MAX_FRAME_BYTES,
            max_message_bytes: MAX_MESSAGE_BYTES,
            idle_timeout: IDLE_TIMEOUT,
            max_connection_life: MAX_CONNECTION_LIFE,
            outbound_queue: OUTBOUND_QUEUE,
            outbound_queue_bytes: OUTBOUND_QUEUE_BYTES,
            send_timeout: SEND_TIMEOUT,
            max_websockets: crate::listener::MAX_CONNECTIONS,
            account: AccountLimits::default(),
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
    /// The `$connect` route's Lambda authorizer (`authorizationType: CUSTOM`);
    /// `None` when the route has none.
    pub authorizer: Option<AuthorizerConfig>,
}
