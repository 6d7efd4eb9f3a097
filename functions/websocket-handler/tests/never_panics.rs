//! Property tests: whatever body a client sends and whatever JSON arrives as
//! the event, the handler never panics and answers what the input deserves:
//! the response body names the error code the protocol gives that input
//! (worked out here from docs/protocol.md, independently of the handler).

use aws_lambda_events::encodings::Body;
use proptest::prelude::*;
use protocol::{ACTIONS, MAX_DATA_BYTES, routes};
use serde_json::{Map, Value, json};
use websocket_handler::deadline::Deadline;
use websocket_handler::fanout::memory::{MemoryClaims, MemoryQueue};
use websocket_handler::fanout::{Limits, Services};
use websocket_handler::handle;
use websocket_handler::messenger::MemoryMessenger;
use websocket_handler::metrics::MemoryReport;
use websocket_handler::registry::MemoryRegistry;

/// Every code a 400 may name.
const CODES: &[&str] = &[
    "invalid_json",
    "not_an_object",
    "missing_action",
    "unknown_action",
    "missing_data",
    "data_too_large",
    "binary_frame",
    "bad_request",
];

/// The status for an event the handler refuses to serve ([`handle`]'s
/// `Unserved`: the invocation fails with that message).
const UNSERVED: i64 = -1;

/// The status and body text the handler answers `raw` with ([`UNSERVED`]
/// and the error's message when it refuses it).
fn run(raw: Value) -> (i64, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime");
    runtime.block_on(async {
        let registry = MemoryRegistry::new();
        let messenger = MemoryMessenger::new();
        let limit = std::time::Duration::from_secs(10);
        let (claims, queue) = (MemoryClaims::default(), MemoryQueue::default());
        let losses = MemoryReport::default();
        let services = Services {
            pages: &registry,
            claims: &claims,
            relay: &queue,
            losses: &losses,
            limits: Limits::default(),
        };
        let handled = tokio::time::timeout(
            limit,
            handle(
                raw,
                &registry,
                &messenger,
                &services,
                Deadline::after(limit),
            ),
        );
        let response = match handled.await.expect("handler timed out") {
            Ok(response) => response,
            Err(unserved) => return (UNSERVED, unserved.to_string()),
        };
        let body = match response.body {
            Some(Body::Text(text)) => text,
            other => panic!("the response body is {other:?}"),
        };
        (response.status_code, body)
    })
}

/// What a message route owes the frame `body` of a well-formed event:
/// `None` for success, else the error code (docs/protocol.md, "Error codes").
fn deserved(route: &str, body: Option<&str>, base64: bool) -> Option<&'static str> {
    if route.is_empty() {
        return Some("bad_request");
    }
    if route == routes::CONNECT || route == routes::DISCONNECT {
        return None;
    }
    if base64 {
        return Some("binary_frame");
    }
    let Ok(frame) = serde_json::from_str::<Value>(body.unwrap_or_default()) else {
        return Some("invalid_json");
    };
    let Some(frame) = frame.as_object() else {
        return Some("not_an_object");
    };
    let Some(action) = frame.get("action").and_then(Value::as_str) else {
        return Some("missing_action");
    };
    if !ACTIONS.contains(&action) {
        return Some("unknown_action");
    }
    if action == routes::SEND_MESSAGE {
        match frame.get("data") {
            None => return Some("missing_data"),
            Some(data) if data.to_string().len() > MAX_DATA_BYTES => {
                return Some("data_too_large");
            }
            Some(_) => {}
        }
    }
    None
}

/// A 400 names one code of the protocol, a 200 says ok.
fn named_code(status: i64, body: &str) -> Option<&str> {
    match status {
        200 => {
            assert_eq!(body, "ok");
            None
        }
        400 => {
            let code = body
                .strip_prefix("bad request: ")
                .unwrap_or_else(|| panic!("a 400 whose body names no code: {body:?}"));
            assert!(CODES.contains(&code), "unknown code in {body:?}");
            Some(code)
        }
        other => panic!("status {other}, body {body:?}"),
    }
}

fn event(route: &str, body: Option<String>, base64: bool) -> Value {
    json!({
        "requestContext": {
            "routeKey": route, "eventType": "MESSAGE", "stage": "prod", "connectedAt": 1, "requestTimeEpoch": 2,
            "identity": {"sourceIp": "192.0.2.1"}, "domainName": "x.example", "connectionId": "c1", "apiId": "x"
        },
        "body": body,
        "isBase64Encoded": base64
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        ".{0,20}".prop_map(Value::String),
        prop_oneof![
            Just("routeKey"),
            Just("connectionId"),
            Just("requestContext"),
            Just("$connect"),
            Just("sendmessage"),
            Just("ping"),
            Just("$default"),
            Just("action"),
            Just("data"),
            Just("body")
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Keys that are real event and frame field names half of the time.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop_oneof![
            Just("requestContext"),
            Just("routeKey"),
            Just("connectionId"),
            Just("connectedAt"),
            Just("requestTimeEpoch"),
            Just("domainName"),
            Just("stage"),
            Just("identity"),
            Just("headers"),
            Just("body"),
            Just("isBase64Encoded"),
            Just("action"),
            Just("data")
        ]
        .prop_map(str::to_string),
        "[a-zA-Z$]{0,12}",
    ]
}

fn route() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("$connect".to_string()),
        Just("$disconnect".to_string()),
        Just("$default".to_string()),
        Just("sendmessage".to_string()),
        Just("ping".to_string()),
        ".{0,10}",
    ]
}

/// Bodies that are JSON frames (valid or not) as often as arbitrary text.
fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        json_value().prop_map(|v| v.to_string()),
        (route(), json_value())
            .prop_map(|(action, data)| json!({"action": action, "data": data}).to_string()),
        (json_value(), json_value())
            .prop_map(|(action, data)| json!({"action": action, "data": data}).to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bodies_get_the_code_they_deserve(route in route(), body in prop::option::of(body()), base64 in any::<bool>()) {
        let expected = deserved(&route, body.as_deref(), base64);
        let (status, text) = run(event(&route, body, base64));
        prop_assert_eq!(named_code(status, &text), expected, "route {:?}", route);
    }

    #[test]
    fn arbitrary_event_json_gets_an_answer(raw in json_value()) {
        // Random JSON is an event only by chance; whatever it is, a 400
        // names a code and anything else is 200 "ok".
        let (status, text) = run(raw);
        if status == UNSERVED {
            prop_assert!(text.starts_with("continuation event"), "{}", text);
        } else {
            named_code(status, &text);
        }
    }

    /// Anything under the continuation key: refused with a message naming
    /// what is wrong (the invocation fails, so Lambda's on-failure
    /// destination keeps the event), or served; never a panic.
    #[test]
    fn arbitrary_continuation_events_are_refused_or_served(inner in json_value()) {
        let (status, text) = run(json!({ "fanout": inner }));
        prop_assert!(
            (status == UNSERVED && text.starts_with("continuation event")) || status == 200,
            "{} {}", status, text
        );
    }

    /// A real event carrying a valid ping, with one request-context field
    /// replaced by anything: either the event still reads (pong, 200) or it
    /// does not, and then the code is `bad_request`, never a frame's code.
    #[test]
    fn a_corrupted_context_field_gets_an_answer(field in key(), value in json_value(), route in route()) {
        let mut raw = event(&route, Some(r#"{"action":"ping"}"#.into()), false);
        if let Some(context) = raw.get_mut("requestContext").and_then(Value::as_object_mut) {
            context.insert(field, value);
        }
        let (status, text) = run(raw);
        let code = named_code(status, &text);
        prop_assert!(code.is_none() || code == Some("bad_request"), "{}", text);
    }
}
