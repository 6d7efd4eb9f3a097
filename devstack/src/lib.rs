//! The local stack: the deployed topology on one machine, one module per AWS
//! service it plays.
//!
//! client → [`cloudfront`] (CloudFront + WAF) → [`apigateway`] (API Gateway
//! WebSocket API and its @connections management API) → [`lambda`] (the
//! Lambda Runtime API, running the real function binary) → DynamoDB (a local
//! server). [`stack`] is the wiring: the one module that reads the Pulumi
//! program and turns it into each service's plain config. [`tools`] holds
//! what runs against a stack: the deployment checker and the benchmarks.

pub mod apigateway;
pub mod cloudfront;
pub mod lambda;
pub mod stack;
pub mod tools;
