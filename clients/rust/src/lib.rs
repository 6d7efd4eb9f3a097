//! A client of the WebSocket API for backend services and bots, with the
//! behaviour every client of API Gateway needs (the JavaScript library in
//! `clients/js` has the same, see docs/clients.md): reconnect on every close
//! but a deliberate one, with capped full-jitter backoff and a give-up
//! policy; a keepalive `ping` inside the 10-minute idle limit; a bounded queue
//! for what is sent while reconnecting, flushed in order; `message` frames
//! de-duplicated by id. Frames are the `protocol` crate's.
//!
//! ```no_run
//! # async fn run() -> Result<(), websocket_waf_client::ClientError> {
//! use websocket_waf_client::{Client, Event, Options};
//! let mut chat = Client::connect(Options::new("wss://d111111abcdef8.cloudfront.net/")?);
//! chat.send(serde_json::json!({"text": "hello"})).await?;
//! while let Some(event) = chat.next_event().await {
//!     if let Event::Message(message) = event {
//!         println!("{message:?}");
//!     }
//! }
//! # Ok(()) }
//! ```

mod backoff;
mod options;
mod recent;
mod session;

pub use backoff::{CloseAdvice, backoff_delay, close_advice};
pub use options::Options;
pub use recent::RecentIds;
pub use session::{Client, Delivery, Event, State};

/// Why the client refused a call.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientError {
    /// The queue of frames sent while reconnecting is full; this one was not queued.
    #[error("the send queue holds {0} frames while reconnecting; this one was not queued")]
    QueueFull(usize),
    /// The client has closed (by `close`, a 1000 from the server, or giving up).
    #[error("the client is closed; connect again")]
    Closed,
    /// The URL is not a ws:// or wss:// URL.
    #[error("not a WebSocket URL ({0}): use ws:// or wss://")]
    BadUrl(String),
}
