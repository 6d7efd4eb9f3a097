//! The local stack: the deployed topology on one machine.
//!
//! client → [`edge`] (CloudFront + WAF) → [`gateway`] (API Gateway WebSocket
//! API and its @connections management API) → [`lambda`] (the Lambda Runtime
//! API, running the real function binary) → DynamoDB (a local server).
//! [`stack`] wires them from the Pulumi program.

pub mod bench;
pub mod check;
pub mod connections_standin;
pub mod edge;
pub mod gateway;
pub mod invoke;
pub mod lambda;
pub mod lambda_api;
pub mod load;
pub mod open_files;
pub mod posts_bench;
pub mod stack;
pub mod websocket;
