//! The local stack: the deployed topology on one machine.
//!
//! client → [`edge`] (CloudFront + WAF) → [`gateway`] (API Gateway WebSocket
//! API and its @connections management API) → [`lambda`] (the Lambda Runtime
//! API, running the real function binary) → DynamoDB (a local server).
//! [`stack`] wires them from the Pulumi program.

pub mod bench;
pub mod check;
pub mod edge;
pub mod gateway;
pub mod invoke;
pub mod lambda;
pub mod stack;
pub mod websocket;

/// Tools around the stack.
pub mod tools {
    pub mod rehearse;
}
