//! The event API Gateway sends, checked once.
//!
//! The function receives raw JSON so that an event of the wrong shape still
//! gets a response. This module turns it into the aws_lambda_events type and
//! pulls out the request-context fields the routes need, each missing field
//! becoming a clear [`EventError`] instead of a panic.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use serde_json::Value;

/// Why an event cannot be served. Messages name fields, never their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The JSON does not fit `ApiGatewayWebsocketProxyRequest`.
    #[error("event is not an API Gateway WebSocket event: {0}")]
    Shape(String),
    /// A request-context field the function needs is absent or empty.
    #[error("event has no requestContext.{0}")]
    MissingField(&'static str),
    /// `requestContext.authorizer.principalId` is not a user id a `message`
    /// frame can carry (not a string, or over `protocol::MAX_USER_ID_BYTES`).
    #[error("event's requestContext.authorizer.principalId is unusable: {0}")]
    UserId(String),
}

/// Where the management API of the API that sent the event lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiAddress {
    /// `requestContext.domainName`, e.g. `abc123.execute-api.eu-west-1.amazonaws.com`.
    pub domain_name: Option<String>,
    /// `requestContext.stage`, e.g. `prod`.
    pub stage: Option<String>,
}

impl ApiAddress {
    /// `https://{domainName}/{stage}`, the management endpoint API Gateway
    /// documents, when both parts are known.
    pub fn management_endpoint(&self) -> Option<String> {
        match (self.domain_name.as_deref(), self.stage.as_deref()) {
            (Some(domain), Some(stage)) if !domain.is_empty() && !stage.is_empty() => {
                Some(format!("https://{domain}/{stage}"))
            }
            _ => None,
        }
    }
}

/// A WebSocket event with the fields every route relies on checked.
#[derive(Debug, Clone)]
pub struct WebsocketEvent {
    pub route_key: String,
    pub connection_id: String,
    /// API Gateway's id of this incoming message (`messageId`); a fresh
    /// random one when the event has none (`$connect`, hand-made events).
    pub message_id: String,
    pub api: ApiAddress,
    /// When the connection was opened, epoch milliseconds (`connectedAt`).
    pub connected_at_ms: i64,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    /// Who signed in: `requestContext.authorizer.principalId`, which API
    /// Gateway sends on every route of a connection its authorizer allowed
    /// (the token's `sub`); `None` without sign-in.
    pub user_id: Option<String>,
    /// The frame text for message routes.
    pub body: Option<String>,
    /// True for a binary frame (API Gateway base64-encodes it).
    pub is_base64_encoded: bool,
}

impl WebsocketEvent {
    /// Checks a raw event. Never panics, whatever the JSON.
    pub fn parse(raw: Value) -> Result<Self, EventError> {
        let request: ApiGatewayWebsocketProxyRequest = serde_path_to_error::deserialize(raw)
            .map_err(|e| EventError::Shape(describe_shape_error(&e)))?;
        Self::from_request(request)
    }

    /// An API Gateway event read straight from its JSON text, when it is
    /// one and has every field the routes need; `None` otherwise (and for
    /// any text naming the continuation key, [`crate::fanout::EVENT_KEY`],
    /// which [`crate::handler::handle`] recognises first): the caller then
    /// takes [`WebsocketEvent::parse`]'s path, which says what is wrong.
    pub fn from_json(raw: &str) -> Option<Self> {
        if raw.contains(crate::fanout::EVENT_KEY) {
            return None;
        }
        let request: ApiGatewayWebsocketProxyRequest = serde_json::from_str(raw).ok()?;
        Self::from_request(request).ok()
    }

    /// Checks the request-context fields of an already typed event.
    pub fn from_request(request: ApiGatewayWebsocketProxyRequest) -> Result<Self, EventError> {
        let context = request.request_context;
        let route_key = non_empty(context.route_key).ok_or(EventError::MissingField("routeKey"))?;
        let connection_id =
            non_empty(context.connection_id).ok_or(EventError::MissingField("connectionId"))?;
        let message_id = non_empty(context.message_id)
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let user_id = match context.authorizer.fields.get("principalId") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) if id.is_empty() => None,
            Some(Value::String(id)) => {
                protocol::check_user_id(id).map_err(EventError::UserId)?;
                Some(id.clone())
            }
            Some(_) => return Err(EventError::UserId("not a string".into())),
        };
        Ok(WebsocketEvent {
            route_key,
            connection_id,
            message_id,
            api: ApiAddress {
                domain_name: non_empty(context.domain_name),
                stage: non_empty(context.stage),
            },
            connected_at_ms: context.connected_at,
            source_ip: non_empty(context.identity.source_ip),
            user_agent: non_empty(context.identity.user_agent),
            user_id,
            body: request.body,
            is_base64_encoded: request.is_base64_encoded,
        })
    }
}

/// What can still be learnt from an event that did not parse: enough to send
/// its sender an error frame, when the event names the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTarget {
    pub route_key: Option<String>,
    pub connection_id: String,
    pub api: ApiAddress,
}

impl ReplyTarget {
    /// Reads `requestContext.{connectionId,routeKey,domainName,stage}` from
    /// raw JSON, ignoring everything else.
    pub fn from_raw(raw: &Value) -> Option<Self> {
        let context = raw.get("requestContext")?;
        let text = |field: &str| {
            context
                .get(field)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        Some(ReplyTarget {
            route_key: text("routeKey"),
            connection_id: text("connectionId")?,
            api: ApiAddress {
                domain_name: text("domainName"),
                stage: text("stage"),
            },
        })
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// Describes a deserialisation error by the path of the offending field and
/// the kind of problem, never with the input's text: serde's messages quote
/// the offending value (`invalid type: string "…", expected i64`), header
/// values carry the API key, and a value may itself contain `, expected `.
/// Only serde's fixed prefixes are read; the one name kept, a missing
/// field's, comes from the event type, and is kept only if it looks like one.
fn describe_shape_error(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let kind = error.inner().to_string();
    let missing = kind
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
        .filter(|name| is_plain_name(name));
    let problem = match missing {
        Some(name) => format!("missing field `{name}`"),
        // An event has no enum and no fixed-length sequence: every other
        // error is a value of the right type that is wrong (a method, a header).
        None if kind.starts_with("invalid type: ") => "wrong type".to_string(),
        None => "invalid value".to_string(),
    };
    let path: Vec<String> = error
        .path()
        .iter()
        // Only map keys name a place: no field of the event is a sequence of
        // typed elements (multi-value headers and query strings fail as a
        // whole, at their key).
        .map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } if is_plain_name(key) => key.clone(),
            _ => "?".to_string(),
        })
        .collect();
    if path.is_empty() {
        problem
    } else {
        format!("{problem} at `{}`", path.join("."))
    }
}

/// A field or header name: short, and letters, digits, `-` and `_` only.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A message event as API Gateway sends it.
    pub(crate) fn event(route_key: &str, connection_id: &str, body: Option<&str>) -> Value {
        json!({
            "requestContext": {
                "routeKey": route_key,
                "eventType": if route_key == "$connect" { "CONNECT" } else if route_key == "$disconnect" { "DISCONNECT" } else { "MESSAGE" },
                "messageId": "msg-1",
                "extendedRequestId": "ext-1",
                "requestTime": "25/Nov/2026:15:00:00 +0000",
                "messageDirection": "IN",
                "stage": "prod",
                "connectedAt": 1_795_000_000_000i64,
                "requestTimeEpoch": 1_795_000_000_500i64,
                "identity": { "sourceIp": "192.0.2.10", "userAgent": "wscat/6" },
                "requestId": "req-1",
                "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
                "connectionId": connection_id,
                "apiId": "abc123"
            },
            "headers": { "x-api-key": "secret-key", "Host": "abc123.execute-api.eu-west-1.amazonaws.com" },
            "body": body,
            "isBase64Encoded": false
        })
    }

    #[test]
    fn a_real_event_parses_with_its_context() {
        let parsed = WebsocketEvent::parse(event("sendmessage", "c1", Some("{}"))).expect("parse");
        assert_eq!(parsed.route_key, "sendmessage");
        assert_eq!(parsed.connection_id, "c1");
        assert_eq!(parsed.connected_at_ms, 1_795_000_000_000);
        assert_eq!(parsed.source_ip.as_deref(), Some("192.0.2.10"));
        assert_eq!(parsed.user_agent.as_deref(), Some("wscat/6"));
        assert_eq!(
            parsed.api.management_endpoint().as_deref(),
            Some("https://abc123.execute-api.eu-west-1.amazonaws.com/prod")
        );
    }

    /// The text path reads what the value path reads, and leaves to it
    /// every event it would refuse or that names the continuation key.
    #[test]
    fn an_event_read_from_its_text_is_the_one_parse_reads() {
        let mut signed_in = event("ping", "c2", Some(r#"{"action":"ping"}"#));
        signed_in["requestContext"]["authorizer"] = json!({ "principalId": "user-1" });
        for raw in [event("$connect", "c1", None), signed_in] {
            let fast = WebsocketEvent::from_json(&raw.to_string()).expect("read from the text");
            let slow = WebsocketEvent::parse(raw).expect("parsed");
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
        }
        let mut no_id = event("$connect", "c1", None);
        no_id["requestContext"]["connectionId"] = json!("");
        let mut wrong_type = event("$connect", "c1", None);
        wrong_type["requestContext"]["connectedAt"] = json!("soon");
        let continuation = event("ping", "c1", Some(r#"{"fanout":1}"#));
        for raw in [
            no_id,
            wrong_type,
            continuation,
            json!([1]),
            json!({ "fanout": {} }),
        ] {
            assert!(
                WebsocketEvent::from_json(&raw.to_string()).is_none(),
                "{raw}"
            );
        }
        assert!(WebsocketEvent::from_json("{").is_none());
    }

    #[test]
    fn the_signed_in_user_is_the_authorizers_principal_id() {
        assert_eq!(
            WebsocketEvent::parse(event("ping", "c1", None))
                .unwrap()
                .user_id,
            None
        );
        let mut raw = event("sendmessage", "c1", Some("{}"));
        raw["requestContext"]["authorizer"] =
            json!({"principalId": "alice", "sub": "alice", "integrationLatency": 12});
        assert_eq!(
            WebsocketEvent::parse(raw.clone())
                .unwrap()
                .user_id
                .as_deref(),
            Some("alice")
        );

        raw["requestContext"]["authorizer"]["principalId"] =
            json!("u".repeat(protocol::MAX_USER_ID_BYTES + 1));
        let err = WebsocketEvent::parse(raw.clone()).unwrap_err().to_string();
        assert!(
            err.contains("principalId") && err.contains("256 bytes"),
            "{err}"
        );
        assert!(
            !err.contains("uuuu"),
            "the error never quotes the id: {err}"
        );
        raw["requestContext"]["authorizer"]["principalId"] = json!(7);
        assert!(matches!(
            WebsocketEvent::parse(raw).unwrap_err(),
            EventError::UserId(_)
        ));
    }

    #[test]
    fn missing_context_fields_are_named() {
        let mut raw = event("ping", "c1", None);
        raw["requestContext"]
            .as_object_mut()
            .map(|c| c.remove("connectionId"));
        assert_eq!(
            WebsocketEvent::parse(raw).unwrap_err(),
            EventError::MissingField("connectionId")
        );

        let mut raw = event("ping", "c1", None);
        raw["requestContext"]["routeKey"] = json!("");
        assert_eq!(
            WebsocketEvent::parse(raw).unwrap_err(),
            EventError::MissingField("routeKey")
        );

        let raw = json!({"body": "x"});
        let err = WebsocketEvent::parse(raw).unwrap_err();
        assert_eq!(
            err,
            EventError::Shape("missing field `requestContext`".into())
        );
    }

    #[test]
    fn shape_errors_never_quote_the_input() {
        let mut raw = event("ping", "c1", None);
        raw["requestContext"]["connectedAt"] = json!("secret-key-in-a-wrong-place");
        let err = WebsocketEvent::parse(raw).unwrap_err().to_string();
        assert_eq!(
            err,
            "event is not an API Gateway WebSocket event: wrong type at `requestContext.connectedAt`"
        );
    }

    /// Where a wrong-typed value can sit in an event, and the path the
    /// error names for it.
    const PLACES: &[(&str, &str)] = &[
        ("/requestContext/connectedAt", "requestContext.connectedAt"),
        (
            "/requestContext/requestTimeEpoch",
            "requestContext.requestTimeEpoch",
        ),
        ("/isBase64Encoded", "isBase64Encoded"),
        ("/requestContext", "requestContext"),
        ("/requestContext/identity", "requestContext.identity"),
        ("/headers", "headers"),
    ];

    proptest::proptest! {
        /// Values that mimic serde's own message (`, expected `, quotes,
        /// backticks) still never reach the error text.
        #[test]
        fn shape_errors_never_quote_a_value(
            before in "[ -~]{0,20}",
            after in "[ -~]{0,20}",
            place in 0..PLACES.len(),
        ) {
            let marker = "S3CR3T";
            let value = format!("{marker}{before}{marker}, expected {marker}{after}{marker}");
            let (pointer, path) = PLACES[place];
            let mut raw = event("ping", "c1", None);
            let slot = raw.pointer_mut(pointer).expect("the fixture has the field");
            *slot = json!(value);
            let error = WebsocketEvent::parse(raw).expect_err("a string where it cannot be").to_string();
            proptest::prop_assert!(!error.contains(marker), "{}", error);
            proptest::prop_assert!(error.contains(path), "{}", error);
        }
    }

    /// A value of the right type that is still wrong is named for what it
    /// is, and a key that is not a plain name is never echoed.
    #[test]
    fn each_shape_error_names_its_kind_and_place_but_no_odd_key() {
        let shape = |pointer: &str, value: Value| {
            let mut raw = event("ping", "c1", None);
            *raw.pointer_mut(pointer).expect("the fixture has the field") = value;
            WebsocketEvent::parse(raw).unwrap_err()
        };
        assert_eq!(
            shape("/headers", json!({"x-ok": "v", "Host": 5})),
            EventError::Shape("invalid value at `headers.Host`".into())
        );
        let mut raw = event("ping", "c1", None);
        raw["multiValueHeaders"] = json!({"x-a": ["v", 5]});
        assert_eq!(
            WebsocketEvent::parse(raw).unwrap_err(),
            EventError::Shape("invalid value at `multiValueHeaders.x-a`".into())
        );
        let mut raw = event("ping", "c1", None);
        raw["httpMethod"] = json!("NOT A METHOD");
        assert_eq!(
            WebsocketEvent::parse(raw).unwrap_err(),
            EventError::Shape("invalid value at `httpMethod`".into())
        );
        assert_eq!(
            shape("/requestContext/identity", json!({"sourceIp": 5})),
            EventError::Shape("wrong type at `requestContext.identity.sourceIp`".into())
        );
        // A plain name (letters, digits, `-`, `_`, up to 40) is shown.
        let stage_variable = |key: &str| {
            let mut raw = event("ping", "c1", None);
            raw["stageVariables"] = json!({ key: 5 });
            let err = WebsocketEvent::parse(raw).unwrap_err().to_string();
            let shown = err.rsplit("stageVariables.").next().unwrap_or_default();
            shown.trim_end_matches('`').to_string()
        };
        assert_eq!(stage_variable("my_stage-var1"), "my_stage-var1");
        assert_eq!(stage_variable(&"k".repeat(40)), "k".repeat(40));
        for odd in ["S3CR3T key!", "", &"k".repeat(41), "a.b", "ü"] {
            assert_eq!(stage_variable(odd), "?", "{odd:?}");
        }
    }

    #[test]
    fn an_empty_principal_is_no_user() {
        let mut raw = event("ping", "c1", None);
        raw["requestContext"]["authorizer"] = json!({"principalId": ""});
        assert_eq!(WebsocketEvent::parse(raw).unwrap().user_id, None);
    }

    #[test]
    fn a_reply_target_survives_a_broken_event() {
        let mut raw = event("ping", "c9", None);
        raw["requestContext"]["connectedAt"] = json!("nope");
        assert!(WebsocketEvent::parse(raw.clone()).is_err());
        let target = ReplyTarget::from_raw(&raw).expect("target");
        assert_eq!(target.connection_id, "c9");
        assert_eq!(target.route_key.as_deref(), Some("ping"));
        assert!(ReplyTarget::from_raw(&json!([1, 2])).is_none());
        assert!(ReplyTarget::from_raw(&json!({"requestContext": {"connectionId": 5}})).is_none());
    }

    #[test]
    fn the_endpoint_needs_domain_and_stage() {
        let api = ApiAddress {
            domain_name: Some("d".into()),
            stage: None,
        };
        assert_eq!(api.management_endpoint(), None);
        for (domain, stage) in [("", "prod"), ("d", "")] {
            let api = ApiAddress {
                domain_name: Some(domain.into()),
                stage: Some(stage.into()),
            };
            assert_eq!(api.management_endpoint(), None, "{domain:?} {stage:?}");
        }
    }
}
