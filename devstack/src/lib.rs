//! The local stack: the deployed topology on one machine, one module per AWS
//! service it plays.
//!
//! client → [`cloudfront`] (CloudFront + WAF) → [`apigateway`] (API Gateway
//! WebSocket API and its @connections management API) → [`lambda`] (the
//! Lambda Runtime API, running the real function binary) → DynamoDB (a local
//! server). [`stack`] is the wiring: the one module that reads the Pulumi
//! program and turns it into each service's plain config (and, in watch
//! mode, applies saved edits to the running services: [`stack::reload`]).
//! [`reload`] holds watch mode's tools that know nothing of the program (the
//! file watcher, the function's builds and versions). [`tools`] holds what
//! runs against a stack: the deployment checker and the benchmarks.
//! [`console`] is the browser page beside the stack, with a live view of the
//! events its services publish. [`listener`] serves the edge's and the API
//! layer's sockets within their limits (header-read timeout, open connections).
//! [`sigv4`] checks the signature, scope and Host of requests to the local
//! AWS APIs (`@connections`, the Lambda Invoke API). [`control`] is time
//! and faults on demand: a loopback, signed endpoint whose fault plan the
//! services consult (`devstack control …`).

pub mod apigateway;
pub mod cloudfront;
pub mod console;
pub mod control;
pub mod issuer;
pub mod lambda;
pub mod listener;
pub mod reload;
pub mod sigv4;
pub mod stack;
pub mod tools;
