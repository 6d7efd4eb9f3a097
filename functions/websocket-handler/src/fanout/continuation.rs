//! The event one invocation hands the next (`{"fanout": {...}}`): what is
//! left of a broadcast, and where the registry's next page starts.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The top-level key that marks an event as a continuation. API Gateway's
/// events never have it (a client's frame is inside `body`), and only the
/// function itself may invoke the function asynchronously.
pub const EVENT_KEY: &str = "fanout";
/// The longest chain of continuations; past it the rest is abandoned and
/// logged. Bounds the cost of a bug, and keeps a chain inside Lambda's
/// recursive-loop limit (16).
pub const MAX_HOPS: u32 = 15;
/// Registry ids that are continuation claims, not connections. API Gateway
/// connection ids never contain `#`.
pub const CLAIM_PREFIX: &str = "#fanout#";

/// Where the next page of the registry starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "at", content = "key")]
pub enum Cursor {
    /// The first page has not been read.
    Start,
    /// The next page starts after this connection id (Scan's `LastEvaluatedKey`).
    After(String),
    /// Every page has been read.
    End,
}

/// What is left of a broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remainder {
    /// Ids read from the registry and not posted to yet.
    pub pending: Vec<String>,
    pub cursor: Cursor,
}

impl Remainder {
    /// A whole broadcast: every page, from the first.
    pub fn everyone() -> Self {
        Remainder {
            pending: Vec::new(),
            cursor: Cursor::Start,
        }
    }

    pub fn is_done(&self) -> bool {
        self.pending.is_empty() && self.cursor == Cursor::End
    }
}

/// The event one invocation hands the next: `{"fanout": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Continuation {
    /// The broadcast's id (the `message` frame's id): the claim key.
    pub message_id: String,
    /// The sender's connection, never a recipient.
    pub sender: String,
    /// The `message` frame, exactly as the first invocation built it.
    pub frame: String,
    /// 1 for the first continuation.
    pub hop: u32,
    pub remainder: Remainder,
}

impl Continuation {
    /// The event JSON.
    pub fn to_event(&self) -> Value {
        serde_json::json!({ EVENT_KEY: self })
    }

    /// `None` for any event that is not a continuation; `Some(Err)` names
    /// what is wrong with one that is.
    pub fn from_event(raw: &Value) -> Option<Result<Continuation, String>> {
        let inner = raw.get(EVENT_KEY)?;
        Some(
            Continuation::deserialize(inner)
                .map_err(|e| format!("continuation event does not parse: {e}")),
        )
    }
}
