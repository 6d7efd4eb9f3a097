//! The Lambda function behind the WebSocket API.
//!
//! API Gateway invokes it for `$connect`, `$disconnect`, `$default` and the
//! message routes (`sendmessage`, `ping`); [`handler::handle`] serves one
//! event over two small traits, [`registry::ConnectionRegistry`] (who is
//! connected) and [`messenger::Messenger`] (how replies reach clients), so
//! the same code runs in AWS, in the local stack and in the tests.

pub mod backoff;
pub mod broadcast;
pub mod claims;
pub mod deadline;
pub mod event;
pub mod fanout;
pub mod fanout_table;
pub mod handler;
pub mod https_client;
pub mod lazy_client;
pub mod logging;
pub mod messenger;
pub mod metrics;
pub mod post_client;
pub mod registry;
pub mod relay;
pub mod routes;
pub mod sdk_env;
pub mod settings;

pub use handler::{handle, handle_json};
