use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use axum::http::{HeaderMap, HeaderValue};
use serde_json::json;

use super::*;

/// A `$connect` event with what API Gateway fills in: headers, repeated
/// query parameters, an authorizer context with a `null` in it.
fn connect_event() -> ApiGatewayWebsocketProxyRequest {
    let mut event = ApiGatewayWebsocketProxyRequest::default();
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("abc.execute-api"));
    headers.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.7"));
    event.multi_value_headers = headers.clone();
    event.headers = headers;
    let query: std::collections::HashMap<String, Vec<String>> = [
        ("room".to_string(), vec!["a".to_string(), "b".to_string()]),
        ("token".to_string(), vec!["t".to_string()]),
    ]
    .into();
    event.query_string_parameters = query.clone().into();
    event.multi_value_query_string_parameters = query.into();
    let context = &mut event.request_context;
    context.route_key = Some("$connect".into());
    context.event_type = Some("CONNECT".into());
    context.connection_id = Some("abc=".into());
    context.connected_at = 1_700_000_000_000;
    context.identity.source_ip = Some("198.51.100.7".into());
    context.authorizer.fields = [
        ("principalId".to_string(), json!("alice")),
        ("email".to_string(), Value::Null),
        ("claims".to_string(), json!({"sub": "alice", "nick": null})),
    ]
    .into_iter()
    .collect();
    event
}

#[test]
fn absent_fields_are_left_out_at_every_depth() {
    let wire: Value =
        serde_json::from_slice(&to_wire(&connect_event()).expect("written")).expect("JSON text");
    let object = wire.as_object().expect("an object");
    for absent in [
        "body",
        "resource",
        "path",
        "pathParameters",
        "stageVariables",
    ] {
        assert!(!object.contains_key(absent), "{absent}: {wire}");
    }
    let context = &wire["requestContext"];
    assert_eq!(context["routeKey"], "$connect");
    assert!(context.get("messageId").is_none(), "{context}");
    assert!(context["identity"].get("userAgent").is_none(), "{context}");
    assert_eq!(context["identity"]["sourceIp"], "198.51.100.7");
    assert_eq!(context["authorizer"]["principalId"], "alice");
    assert!(context["authorizer"].get("email").is_none(), "{context}");
    assert_eq!(context["authorizer"]["claims"], json!({"sub": "alice"}));
    assert_eq!(wire["headers"]["x-forwarded-for"], "198.51.100.7");
    assert_eq!(wire["isBase64Encoded"], false);
}

#[test]
fn query_parameters_are_single_valued_where_api_gateway_sends_one() {
    let wire = to_wire_value(&connect_event()).expect("written");
    assert_eq!(
        wire["queryStringParameters"],
        json!({"room": "b", "token": "t"})
    );
    assert_eq!(
        wire["multiValueQueryStringParameters"],
        json!({"room": ["a", "b"], "token": ["t"]})
    );
}

#[test]
fn an_event_without_parameters_has_no_parameter_objects() {
    let mut event = connect_event();
    event.query_string_parameters = Default::default();
    event.multi_value_query_string_parameters = Default::default();
    event.body = Some("{\"action\":\"ping\"}".into());
    let wire = to_wire_value(&event).expect("written");
    assert!(wire.get("queryStringParameters").is_none(), "{wire}");
    assert!(
        wire.get("multiValueQueryStringParameters").is_none(),
        "{wire}"
    );
    assert_eq!(wire["body"], "{\"action\":\"ping\"}");
}

/// What the API layer did before, through a `Value`: the written text must
/// say exactly the same.
fn through_a_value(event: &ApiGatewayWebsocketProxyRequest) -> Value {
    fn prune_nulls(value: &mut Value) {
        match value {
            Value::Object(object) => {
                object.retain(|_, v| !v.is_null());
                object.values_mut().for_each(prune_nulls);
            }
            Value::Array(values) => values.iter_mut().for_each(prune_nulls),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(event).expect("a value");
    if let Some(object) = value.as_object_mut() {
        if let Some(Value::Object(params)) = object.get_mut("queryStringParameters") {
            for value in params.values_mut() {
                if let Value::Array(values) = value {
                    *value = values.pop().unwrap_or(Value::Null);
                }
            }
        }
        object.retain(|_, v| !(v.is_null() || v.as_object().is_some_and(|o| o.is_empty())));
    }
    prune_nulls(&mut value);
    value
}

#[test]
fn the_text_says_what_the_value_round_trip_said() {
    let mut message = connect_event();
    message.request_context.event_type = Some("MESSAGE".into());
    message.request_context.message_id = Some("m-1".into());
    message.body = Some("hello".into());
    for event in [
        connect_event(),
        message,
        ApiGatewayWebsocketProxyRequest::default(),
    ] {
        let text: Value =
            serde_json::from_slice(&to_wire(&event).expect("written")).expect("JSON text");
        assert_eq!(text, through_a_value(&event));
        assert_eq!(to_wire_value(&event).expect("a value"), text);
    }
}
