//! The client protocol, defined once.
//!
//! Clients send JSON text frames `{"action": "...", "data": ...}`; API Gateway
//! picks the route with `$request.body.action`. Everything the function sends
//! back is a [`ServerFrame`]. The function, the local stack and the tests all
//! use these types, so the wire format has a single definition.

mod bad_frames;
pub mod metrics;

use serde::{Deserialize, Serialize};

pub use bad_frames::{BAD_FRAMES, BadFrame};
use serde_json::Value;

/// Route keys of the WebSocket API. A new route is one more constant here,
/// one handler in the function and one route block in `Pulumi.yaml`.
pub mod routes {
    pub const CONNECT: &str = "$connect";
    pub const DISCONNECT: &str = "$disconnect";
    pub const DEFAULT: &str = "$default";
    pub const SEND_MESSAGE: &str = "sendmessage";
    pub const PING: &str = "ping";
}

/// The actions a client may send, in the order the error frame lists them.
pub const ACTIONS: &[&str] = &[routes::SEND_MESSAGE, routes::PING];

/// Bytes kept, within API Gateway's 32 KB frame, for the `message` frame
/// around a `sendmessage`'s `data`: `{"type":"message","id":…,"from":…,
/// "data":…,"sentAt":…}` with ids of up to [`MAX_ID_CHARS`] characters
/// (API Gateway's are 16) and an RFC 3339 time (256 bytes), and the signed-in
/// sender's `,"userId":"…"` of up to [`MAX_USER_ID_BYTES`].
pub const MESSAGE_ENVELOPE_BYTES: usize = 256 + USER_ID_FIELD_BYTES;
/// The longest user id a `message` frame carries, in bytes of its JSON
/// string without the quotes (escapes counted): room for OpenID Connect's
/// `sub`, which is at most 255 ASCII characters.
pub const MAX_USER_ID_BYTES: usize = 256;
/// `,"userId":""` and the id itself.
const USER_ID_FIELD_BYTES: usize = r#","userId":"""#.len() + MAX_USER_ID_BYTES;
/// The longest message or connection id [`MESSAGE_ENVELOPE_BYTES`] has room for.
pub const MAX_ID_CHARS: usize = 64;
/// Largest `data` payload, in bytes of its JSON encoding, that `sendmessage`
/// accepts: what fits in one frame to each recipient, so data at the limit
/// is delivered and data over it is answered `data_too_large` (never a
/// recipient closed with 1009 for a frame over 32 KB).
pub const MAX_DATA_BYTES: usize = limits::MAX_FRAME_BYTES - MESSAGE_ENVELOPE_BYTES;

/// API Gateway WebSocket limits, which the local stack enforces as AWS does.
pub mod limits {
    use std::time::Duration;
    /// Largest WebSocket frame API Gateway accepts.
    pub const MAX_FRAME_BYTES: usize = 32 * 1024;
    /// Largest message (all frames of one message) API Gateway accepts.
    pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
    /// A connection with no traffic for this long is closed.
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
    /// No connection lives longer than this.
    pub const MAX_CONNECTION_LIFE: Duration = Duration::from_secs(2 * 60 * 60);
}

/// A frame a client sends. `data` is any JSON value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ClientFrame {
    pub fn ping() -> Self {
        ClientFrame {
            action: routes::PING.into(),
            data: None,
        }
    }

    pub fn send_message(data: Value) -> Self {
        ClientFrame {
            action: routes::SEND_MESSAGE.into(),
            data: Some(data),
        }
    }

    pub fn to_text(&self) -> String {
        // Serialising a struct of a String and a Value cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Every frame the function sends to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame {
    /// A message another connection sent with `sendmessage`. `id` is API
    /// Gateway's id of that `sendmessage` (`requestContext.messageId`), the
    /// same for every recipient: a client may drop a `message` whose id it
    /// has seen (a post is tried again only when nothing was delivered: a
    /// refused connection or a 429, never after no answer).
    Message {
        id: String,
        from: String,
        data: Value,
        #[serde(rename = "sentAt")]
        sent_at: String,
        /// The sender's user id (`sub` of its sign-in token), when it
        /// connected signed in; absent otherwise.
        #[serde(rename = "userId", default, skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    /// To the sender of `sendmessage`: how many connections it reached.
    Sent { recipients: usize },
    /// The answer to `ping`.
    Pong,
    /// The request could not be served; `code` says why.
    Error { code: ErrorCode, message: String },
}

impl ServerFrame {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error {
            code,
            message: message.into(),
        }
    }

    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a frame a client received; `None` when it is not one of ours
    /// (for instance an API Gateway error frame, see [`GatewayFrame`]).
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

/// Why a request was refused; sent as the `code` of an error frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON.
    InvalidJson,
    /// The frame is JSON but not an object.
    NotAnObject,
    /// The object has no `action`, or it is not a string.
    MissingAction,
    /// `action` names no route.
    UnknownAction,
    /// `sendmessage` without `data`.
    MissingData,
    /// `data` is larger than [`MAX_DATA_BYTES`].
    DataTooLarge,
    /// A binary (or base64-encoded) frame; the API speaks JSON text.
    BinaryFrame,
    /// The event is missing fields the route needs.
    BadRequest,
    /// The server failed; the request may be retried.
    Internal,
}

/// The frame API Gateway itself sends when it cannot serve a message, for
/// instance when the integration fails: `{"message": "Internal server error",
/// "connectionId": "...", "requestId": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayFrame {
    pub message: String,
    pub connection_id: String,
    pub request_id: String,
}

impl GatewayFrame {
    pub const INTERNAL_SERVER_ERROR: &'static str = "Internal server error";
    pub const TOO_MANY_REQUESTS: &'static str = "Too Many Requests";

    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A client frame that could not be turned into a request, with the error
/// frame the sender gets for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtocolError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
        }
    }

    pub fn frame(&self) -> ServerFrame {
        ServerFrame::error(self.code, self.message.clone())
    }
}

fn valid_actions() -> String {
    ACTIONS.join(", ")
}

/// Parses a client text frame into its action and data, with a precise error
/// for each way it can be wrong. Never panics, whatever the input.
pub fn parse_client_frame(body: &str) -> Result<ClientFrame, ProtocolError> {
    let value: Value = serde_json::from_str(body).map_err(|e| {
        ProtocolError::new(
            ErrorCode::InvalidJson,
            format!(
                "frame is not valid JSON ({e}); send {{\"action\": \"<{}>\", \"data\": ...}}",
                ACTIONS.join("|")
            ),
        )
    })?;
    let Value::Object(mut object) = value else {
        return Err(ProtocolError::new(
            ErrorCode::NotAnObject,
            format!(
                "frame must be a JSON object with an \"action\" field; valid actions: {}",
                valid_actions()
            ),
        ));
    };
    let action = match object.remove("action") {
        Some(Value::String(action)) => action,
        Some(_) => {
            return Err(ProtocolError::new(
                ErrorCode::MissingAction,
                format!(
                    "\"action\" must be a string; valid actions: {}",
                    valid_actions()
                ),
            ));
        }
        None => {
            return Err(ProtocolError::new(
                ErrorCode::MissingAction,
                format!(
                    "frame has no \"action\"; valid actions: {}",
                    valid_actions()
                ),
            ));
        }
    };
    Ok(ClientFrame {
        action,
        data: object.remove("data"),
    })
}

/// The error for an action that names no route.
pub fn unknown_action(action: &str) -> ProtocolError {
    // The action is client input: it is quoted only when short, so a huge or
    // hostile value never ends up in a reply verbatim.
    let shown = if action.len() <= 64 && !action.chars().any(char::is_control) {
        format!("\"{action}\"")
    } else {
        "the given action".to_string()
    };
    ProtocolError::new(
        ErrorCode::UnknownAction,
        format!("unknown action {shown}; valid actions: {}", valid_actions()),
    )
}

/// Checks the `data` of a `sendmessage` frame: present and at most [`MAX_DATA_BYTES`].
pub fn check_message_data(data: Option<&Value>) -> Result<&Value, ProtocolError> {
    let data = data.ok_or_else(|| {
        ProtocolError::new(
            ErrorCode::MissingData,
            "sendmessage needs a \"data\" field (any JSON value)",
        )
    })?;
    let size = serde_json::to_string(data)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > MAX_DATA_BYTES {
        return Err(ProtocolError::new(
            ErrorCode::DataTooLarge,
            format!("\"data\" is {size} bytes; the limit is {MAX_DATA_BYTES} bytes"),
        ));
    }
    Ok(data)
}

/// Checks a signed-in connection's user id against [`MAX_USER_ID_BYTES`]
/// (its JSON string, escapes counted), so every `message` frame it sends
/// fits the envelope. The error names the bound, never the id.
pub fn check_user_id(user_id: &str) -> Result<(), String> {
    let size = serde_json::to_string(user_id)
        .map(|s| s.len().saturating_sub(2))
        .unwrap_or(usize::MAX);
    if size > MAX_USER_ID_BYTES {
        return Err(format!(
            "the user id is {size} bytes as JSON; the limit is {MAX_USER_ID_BYTES} bytes"
        ));
    }
    Ok(())
}

/// The error for a binary frame.
pub fn binary_frame() -> ProtocolError {
    ProtocolError::new(
        ErrorCode::BinaryFrame,
        "binary frames are not supported; send JSON text frames",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_an_action_with_data() {
        let frame = parse_client_frame(r#"{"action":"sendmessage","data":{"a":1}}"#).unwrap();
        assert_eq!(frame, ClientFrame::send_message(json!({"a": 1})));
    }

    #[test]
    fn each_bad_frame_has_its_own_code() {
        let code = |body: &str| parse_client_frame(body).unwrap_err().code;
        assert_eq!(code("{not json"), ErrorCode::InvalidJson);
        assert_eq!(code("[1,2]"), ErrorCode::NotAnObject);
        assert_eq!(code("\"ping\""), ErrorCode::NotAnObject);
        assert_eq!(code(r#"{"data":1}"#), ErrorCode::MissingAction);
        assert_eq!(code(r#"{"action":7}"#), ErrorCode::MissingAction);
    }

    #[test]
    fn errors_name_the_valid_actions() {
        let err = unknown_action("nope");
        assert!(err.message.contains("sendmessage, ping"), "{}", err.message);
        assert!(err.message.contains("\"nope\""));
        let long = "x".repeat(1000);
        assert!(!unknown_action(&long).message.contains(&long));
    }

    #[test]
    fn data_is_required_and_bounded() {
        assert_eq!(
            check_message_data(None).unwrap_err().code,
            ErrorCode::MissingData
        );
        let big = json!("x".repeat(MAX_DATA_BYTES));
        assert_eq!(
            check_message_data(Some(&big)).unwrap_err().code,
            ErrorCode::DataTooLarge
        );
        let ok = json!("x".repeat(MAX_DATA_BYTES - 2));
        assert!(check_message_data(Some(&ok)).is_ok());
    }

    /// A `message` frame carrying `data` at the limit, with the longest ids
    /// and time, fits in one API Gateway frame; one byte more is refused.
    #[test]
    fn a_message_frame_with_data_at_the_limit_fits_one_frame() {
        let data = json!("x".repeat(MAX_DATA_BYTES - 2));
        assert_eq!(data.to_string().len(), MAX_DATA_BYTES);
        assert!(check_message_data(Some(&data)).is_ok());
        let frame = ServerFrame::Message {
            id: "i".repeat(MAX_ID_CHARS),
            from: "f".repeat(MAX_ID_CHARS),
            data: data.clone(),
            sent_at: "+262143-12-31T23:59:59.999999999+23:59".into(),
            user_id: Some("\\".repeat(MAX_USER_ID_BYTES / 2)),
        };
        assert!(check_user_id(&"\\".repeat(MAX_USER_ID_BYTES / 2)).is_ok());
        // One byte more, or escapes that grow past the bound, are refused.
        let err = check_user_id(&"u".repeat(MAX_USER_ID_BYTES + 1)).unwrap_err();
        assert!(err.contains("256 bytes"), "{err}");
        assert!(check_user_id(&"\\".repeat(MAX_USER_ID_BYTES / 2 + 1)).is_err());
        assert!(check_user_id(&"\u{1}".repeat(43)).is_err());
        let size = frame.to_text().len();
        assert!(
            size <= limits::MAX_FRAME_BYTES,
            "{size} bytes: over the {} byte frame limit",
            limits::MAX_FRAME_BYTES
        );
        // The room kept is what the longest frame needs, not much more: data
        // is never refused for envelope bytes no frame can use.
        assert!(
            limits::MAX_FRAME_BYTES - size < 64,
            "{size} bytes: the envelope keeps {} bytes nobody uses",
            limits::MAX_FRAME_BYTES - size
        );
        let over = json!("x".repeat(MAX_DATA_BYTES - 1));
        assert_eq!(
            check_message_data(Some(&over)).unwrap_err().code,
            ErrorCode::DataTooLarge
        );
    }

    /// API Gateway's numbers, from its quota page ("Amazon API Gateway quotas
    /// for configuring and running a WebSocket API"): the function refuses
    /// data and the local stack closes frames and connections by these.
    #[test]
    fn the_limits_are_api_gateways() {
        assert_eq!(limits::MAX_FRAME_BYTES, 32_768);
        assert_eq!(limits::MAX_MESSAGE_BYTES, 131_072);
        assert_eq!(limits::IDLE_TIMEOUT.as_secs(), 10 * 60);
        assert_eq!(limits::MAX_CONNECTION_LIFE.as_secs(), 2 * 60 * 60);
    }

    /// docs/protocol.md tells clients the data limit in bytes; it is this one.
    #[test]
    fn the_documented_data_limit_is_the_one_enforced() {
        let doc = include_str!("../../../docs/protocol.md");
        let digits = MAX_DATA_BYTES.to_string();
        let (thousands, rest) = digits.split_at(digits.len() - 3);
        let shown = format!("more than {thousands},{rest} bytes as JSON");
        assert!(
            doc.contains(&shown),
            "docs/protocol.md does not say {shown:?}"
        );
    }

    /// API Gateway's own error frame, as its clients receive it.
    #[test]
    fn the_gateway_frame_has_api_gateways_shape() {
        let frame = GatewayFrame {
            message: GatewayFrame::INTERNAL_SERVER_ERROR.into(),
            connection_id: "c1=".into(),
            request_id: "r1".into(),
        };
        assert_eq!(
            frame.to_text(),
            r#"{"message":"Internal server error","connectionId":"c1=","requestId":"r1"}"#
        );
        assert_eq!(ServerFrame::parse(&frame.to_text()), None);
    }

    #[test]
    fn client_frames_are_written_as_the_protocol_reads_them() {
        assert_eq!(ClientFrame::ping().to_text(), r#"{"action":"ping"}"#);
        let send = ClientFrame::send_message(json!({"text": "hi"}));
        assert_eq!(
            send.to_text(),
            r#"{"action":"sendmessage","data":{"text":"hi"}}"#
        );
        assert_eq!(parse_client_frame(&send.to_text()), Ok(send));
    }

    #[test]
    fn server_frames_have_the_documented_shape() {
        let sent = ServerFrame::Message {
            id: "Zx1=".into(),
            from: "abc".into(),
            data: json!([1]),
            sent_at: "2026-01-01T00:00:00Z".into(),
            user_id: None,
        };
        assert_eq!(
            serde_json::to_value(&sent).unwrap(),
            json!({"type":"message","id":"Zx1=","from":"abc","data":[1],"sentAt":"2026-01-01T00:00:00Z"})
        );
        let signed_in = ServerFrame::Message {
            id: "Zx1=".into(),
            from: "abc".into(),
            data: json!([1]),
            sent_at: "2026-01-01T00:00:00Z".into(),
            user_id: Some("alice".into()),
        };
        assert_eq!(
            serde_json::to_value(&signed_in).unwrap(),
            json!({"type":"message","id":"Zx1=","from":"abc","data":[1],"sentAt":"2026-01-01T00:00:00Z","userId":"alice"})
        );
        assert_eq!(ServerFrame::Pong.to_text(), r#"{"type":"pong"}"#);
        assert_eq!(
            ServerFrame::Sent { recipients: 3 }.to_text(),
            r#"{"type":"sent","recipients":3}"#
        );
        let err = ServerFrame::error(ErrorCode::UnknownAction, "m");
        assert_eq!(
            err.to_text(),
            r#"{"type":"error","code":"unknown_action","message":"m"}"#
        );
        assert_eq!(ServerFrame::parse(&err.to_text()), Some(err));
    }
}
