//! The event one invocation hands the next (`{"fanout": {...}}`): what is
//! left of a broadcast, and where the registry's next page starts. Checked
//! before use: it arrives as an event, and an event is outside input.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The top-level key that marks an event as a continuation. API Gateway's
/// events never have it (a client's frame is inside `body`), and only the
/// function itself may invoke the function asynchronously.
pub const EVENT_KEY: &str = "fanout";
/// The longest chain of continuations; past it the rest is counted as not
/// reached. Bounds the cost of a bug, and keeps a chain inside Lambda's
/// recursive-loop limit (16).
pub const MAX_HOPS: u32 = 15;
/// Most ids one continuation carries: a page of the registry
/// ([`crate::fanout_table::PAGE_SIZE`]) or a batch of posts to try again.
/// 4,000 ids of API Gateway's 16 characters and a 32 KB message make an
/// event of about 110 KB, under the 256 KB an asynchronous invocation takes.
pub const MAX_PENDING: usize = 4_000;
/// Longest id (connection, message, continuation) or cursor key accepted.
pub const MAX_ID_BYTES: usize = 128;
/// Largest `message` frame a continuation may carry: API Gateway's message limit.
pub const MAX_FRAME_BYTES: usize = protocol::limits::MAX_MESSAGE_BYTES;

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
    /// Ids read from the registry (or refused and to be tried again) and
    /// not posted to yet.
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

    /// Only these ids, no page after them.
    pub fn only(pending: Vec<String>) -> Self {
        Remainder {
            pending,
            cursor: Cursor::End,
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
    /// This continuation's own id (random, made when it is handed on): with
    /// the message id, its claim key ([`Continuation::claim_key`]), so a
    /// second delivery of the same event is claimed once. Empty in an event
    /// written before ids existed.
    #[serde(default)]
    pub id: String,
    /// The broadcast's id (the `message` frame's id).
    pub message_id: String,
    /// The sender's connection, never a recipient.
    pub sender: String,
    /// The `message` frame, exactly as the first invocation built it.
    pub frame: String,
    /// 1 for the first continuation; at most [`MAX_HOPS`].
    pub hop: u32,
    /// Rounds in a row that made no progress (throttled posts, an unreadable
    /// page, an unrecordable claim): the next one waits
    /// [`super::backoff`] of it first.
    #[serde(default)]
    pub attempt: u32,
    /// The token an earlier attempt to claim this continuation wrote, or may
    /// have written before its answer was lost: claimed again with it, that
    /// attempt's write counts as this one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_token: Option<String>,
    pub remainder: Remainder,
}

impl Continuation {
    /// The event JSON.
    pub fn to_event(&self) -> Value {
        serde_json::json!({ EVENT_KEY: self })
    }

    /// `None` for any event that is not a continuation; `Some(Err)` names
    /// what is wrong with one that is (a shape or a bound).
    pub fn from_event(raw: &Value) -> Option<Result<Continuation, String>> {
        let inner = raw.get(EVENT_KEY)?;
        Some(
            Continuation::deserialize(inner)
                .map_err(|e| format!("continuation event does not parse: {e}"))
                .and_then(|c| c.checked().map(|()| c)),
        )
    }

    /// What its claim is recorded under: the message id and the
    /// continuation's id (or, for an event written before ids existed, its
    /// hop, which was then the claim key).
    pub fn claim_key(&self) -> String {
        let id = match self.id.as_str() {
            "" => format!("hop-{}", self.hop),
            id => id.to_string(),
        };
        crate::claims::claim_id(&self.message_id, &id)
    }

    /// Every bound a continuation must keep, named when broken.
    pub fn checked(&self) -> Result<(), String> {
        let bad = |what: String| Err(format!("continuation event refused: {what}"));
        if !(1..=MAX_HOPS).contains(&self.hop) {
            return bad(format!("hop is {}, not 1 to {MAX_HOPS}", self.hop));
        }
        if self.attempt > MAX_HOPS {
            return bad(format!("attempt is {}, over {MAX_HOPS}", self.attempt));
        }
        if self.id.len() > MAX_ID_BYTES {
            return bad(format!(
                "id is {} bytes, over {MAX_ID_BYTES}",
                self.id.len()
            ));
        }
        let ids = [
            ("messageId", Some(self.message_id.as_str())),
            ("sender", Some(self.sender.as_str())),
            ("claimToken", self.claim_token.as_deref()),
        ];
        for (name, value) in ids {
            if let Some(value) = value
                && (value.is_empty() || value.len() > MAX_ID_BYTES)
            {
                return bad(format!(
                    "{name} is {} bytes, not 1 to {MAX_ID_BYTES}",
                    value.len()
                ));
            }
        }
        if self.frame.len() > MAX_FRAME_BYTES {
            return bad(format!(
                "frame is {} bytes, over {MAX_FRAME_BYTES}",
                self.frame.len()
            ));
        }
        let pending = &self.remainder.pending;
        if pending.len() > MAX_PENDING {
            return bad(format!("{} pending ids, over {MAX_PENDING}", pending.len()));
        }
        if let Some(id) = pending
            .iter()
            .find(|id| id.is_empty() || id.len() > MAX_ID_BYTES)
        {
            return bad(format!(
                "a pending id is {} bytes, not 1 to {MAX_ID_BYTES}",
                id.len()
            ));
        }
        if let Cursor::After(key) = &self.remainder.cursor
            && (key.is_empty() || key.len() > MAX_ID_BYTES)
        {
            return bad(format!(
                "the cursor's key is {} bytes, not 1 to {MAX_ID_BYTES}",
                key.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Continuation {
        Continuation {
            id: "c1".into(),
            message_id: "m1".into(),
            sender: "s".into(),
            frame: "{}".into(),
            hop: 1,
            attempt: 0,
            claim_token: None,
            remainder: Remainder::only(vec!["a".into()]),
        }
    }

    fn refusal(change: impl FnOnce(&mut Continuation)) -> String {
        let mut continuation = valid();
        change(&mut continuation);
        match Continuation::from_event(&continuation.to_event()) {
            Some(Err(error)) => error,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_valid_continuation_round_trips() {
        let event = valid().to_event();
        assert_eq!(Continuation::from_event(&event), Some(Ok(valid())));
        // Written before ids and attempts existed: still read, and claimed
        // under its hop as it was then.
        let mut old = event.clone();
        if let Some(inner) = old.get_mut(EVENT_KEY).and_then(Value::as_object_mut) {
            inner.remove("attempt");
            inner.remove("id");
        }
        let read = Continuation::from_event(&old).and_then(Result::ok);
        assert_eq!(read.map(|c| c.claim_key()), Some("m1#hop-1".to_string()));
        assert_eq!(valid().claim_key(), "m1#c1");
        assert_eq!(Continuation::from_event(&serde_json::json!({"a": 1})), None);
    }

    #[test]
    fn each_bound_is_refused_with_its_name() {
        assert!(refusal(|c| c.hop = u32::MAX).contains("hop is 4294967295"));
        assert!(refusal(|c| c.hop = 0).contains("hop is 0"));
        assert!(refusal(|c| c.hop = MAX_HOPS + 1).contains("not 1 to 15"));
        assert!(refusal(|c| c.attempt = MAX_HOPS + 1).contains("attempt"));
        assert!(refusal(|c| c.id = "i".repeat(129)).contains("id is 129 bytes"));
        assert!(refusal(|c| c.message_id = "m".repeat(129)).contains("messageId is 129 bytes"));
        assert!(refusal(|c| c.sender = String::new()).contains("sender"));
        assert!(refusal(|c| c.claim_token = Some("t".repeat(200))).contains("claimToken"));
        assert!(refusal(|c| c.frame = "x".repeat(MAX_FRAME_BYTES + 1)).contains("frame is"));
        assert!(
            refusal(|c| c.remainder.pending = vec!["a".into(); MAX_PENDING + 1])
                .contains("4001 pending ids")
        );
        assert!(refusal(|c| c.remainder.pending = vec![String::new()]).contains("a pending id"));
        assert!(
            refusal(|c| c.remainder.cursor = Cursor::After("k".repeat(129)))
                .contains("cursor's key")
        );
        // At the bounds: accepted.
        let mut at = valid();
        at.hop = MAX_HOPS;
        at.attempt = MAX_HOPS;
        at.id = "i".repeat(MAX_ID_BYTES);
        at.message_id = "m".repeat(MAX_ID_BYTES);
        at.frame = "x".repeat(MAX_FRAME_BYTES);
        at.remainder.cursor = Cursor::After("k".repeat(MAX_ID_BYTES));
        at.remainder.pending = vec!["a".repeat(MAX_ID_BYTES); MAX_PENDING];
        assert!(at.checked().is_ok());
    }
}
