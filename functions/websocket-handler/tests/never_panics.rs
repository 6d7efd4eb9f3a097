//! Property tests: whatever body a client sends and whatever JSON arrives as
//! the event, the handler answers with a status code and never panics.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use websocket_handler::handle;
use websocket_handler::messenger::MemoryMessenger;
use websocket_handler::registry::MemoryRegistry;

fn run(raw: Value) -> i64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime");
    runtime.block_on(async {
        let registry = MemoryRegistry::new();
        let messenger = MemoryMessenger::new();
        let handled = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            handle(raw, &registry, &messenger),
        );
        handled.await.expect("handler timed out").status_code
    })
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
    fn arbitrary_bodies_get_an_answer(route in route(), body in prop::option::of(body()), base64 in any::<bool>()) {
        let status = run(event(&route, body, base64));
        prop_assert!([200, 400, 500].contains(&status), "status {}", status);
    }

    #[test]
    fn arbitrary_event_json_gets_an_answer(raw in json_value()) {
        let status = run(raw);
        prop_assert!([200, 400, 500].contains(&status), "status {}", status);
    }

    /// A real event with one request-context field replaced by anything.
    #[test]
    fn a_corrupted_context_field_gets_an_answer(field in key(), value in json_value(), route in route()) {
        let mut raw = event(&route, Some(r#"{"action":"ping"}"#.into()), false);
        if let Some(context) = raw.get_mut("requestContext").and_then(Value::as_object_mut) {
            context.insert(field, value);
        }
        let status = run(raw);
        prop_assert!([200, 400, 500].contains(&status), "status {}", status);
    }
}
