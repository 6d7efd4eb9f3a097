//! Messages: the events' shape, route selection (also after a swap), a
//! message with no route, and an invoke error.

use super::*;

#[tokio::test]
async fn events_have_api_gateways_shape() {
    let mut running = start().await;
    let url = format!("{}?room=a&room=b&name=x", running.url());
    let mut client = connect(&url, Some(KEY)).await.expect("accepted");

    let raw = running.next_event().await;
    assert!(raw.get("body").is_none() && raw["requestContext"].get("messageId").is_none());
    assert_eq!(
        raw["queryStringParameters"],
        json!({"room": "b", "name": "x"})
    );
    assert_eq!(
        raw["multiValueQueryStringParameters"]["room"],
        json!(["a", "b"])
    );
    let connect: ApiGatewayWebsocketProxyRequest =
        serde_json::from_value(raw).expect("a websocket event");
    let ctx = &connect.request_context;
    assert_eq!(ctx.route_key.as_deref(), Some("$connect"));
    assert_eq!(ctx.event_type.as_deref(), Some("CONNECT"));
    assert_eq!(ctx.message_direction.as_deref(), Some("IN"));
    assert_eq!(ctx.stage.as_deref(), Some("prod"));
    assert_eq!(ctx.apiid.as_deref(), Some("localapi01"));
    assert_eq!(ctx.domain_name.as_deref(), Some("127.0.0.1:1"));
    assert_eq!(ctx.identity.source_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(ctx.identity.user_agent.as_deref(), Some("gateway-test/1.0"));
    assert!(ctx.connected_at > 0 && ctx.request_time_epoch >= ctx.connected_at);
    assert!(
        ctx.request_time
            .as_deref()
            .is_some_and(|t| t.ends_with("+0000"))
    );
    assert!(ctx.request_id.is_some() && ctx.extended_request_id.is_some());
    let id = ctx.connection_id.clone().expect("connection id");
    assert_eq!(id.len(), 16, "{id}");
    assert_eq!(
        connect.headers.get("x-api-key").map(|v| v.as_bytes()),
        Some(KEY.as_bytes())
    );
    assert_eq!(
        connect.headers.get("x-forwarded-for").map(|v| v.as_bytes()),
        Some(&b"127.0.0.1"[..])
    );
    assert!(connect.multi_value_headers.contains_key("host"));

    send_text(&mut client, r#"{"action":"ping"}"#).await;
    let message: ApiGatewayWebsocketProxyRequest =
        serde_json::from_value(running.next_event().await).expect("a websocket event");
    let ctx = &message.request_context;
    assert_eq!(ctx.route_key.as_deref(), Some("ping"));
    assert_eq!(ctx.event_type.as_deref(), Some("MESSAGE"));
    assert_eq!(ctx.connection_id.as_deref(), Some(id.as_str()));
    assert_eq!(ctx.connected_at, connect.request_context.connected_at);
    assert!(ctx.message_id.is_some());
    assert_eq!(message.body.as_deref(), Some(r#"{"action":"ping"}"#));
    assert!(!message.is_base64_encoded);
    assert!(message.headers.is_empty());

    client
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .await
        .expect("close");
    let disconnect: ApiGatewayWebsocketProxyRequest =
        serde_json::from_value(running.next_event().await).expect("a websocket event");
    let ctx = &disconnect.request_context;
    assert_eq!(ctx.route_key.as_deref(), Some("$disconnect"));
    assert_eq!(ctx.event_type.as_deref(), Some("DISCONNECT"));
    assert_eq!(ctx.connection_id.as_deref(), Some(id.as_str()));
    assert_eq!(ctx.disconnect_status_code, Some(1000));
    assert_eq!(ctx.disconnect_reason.as_deref(), Some("bye"));
}

/// API Gateway takes no binary frame from a client: the connection closes
/// with 1003 and no route is invoked; `$disconnect` runs with that status.
#[tokio::test]
async fn a_binary_frame_closes_with_1003_and_invokes_no_route() {
    let mut running = start().await;
    let mut client = connect(&running.url(), Some(KEY)).await.expect("accepted");
    let connect: ApiGatewayWebsocketProxyRequest =
        serde_json::from_value(running.next_event().await).expect("a websocket event");
    client
        .send(Message::binary(br#"{"action":"ping"}"#.to_vec()))
        .await
        .expect("send");
    assert_eq!(close_code(&mut client).await, Some(CloseCode::Unsupported));
    let next: ApiGatewayWebsocketProxyRequest =
        serde_json::from_value(running.next_event().await).expect("a websocket event");
    let ctx = &next.request_context;
    assert_eq!(ctx.route_key.as_deref(), Some("$disconnect"));
    assert_eq!(ctx.connection_id, connect.request_context.connection_id);
    assert_eq!(ctx.disconnect_status_code, Some(1003));
}

#[tokio::test]
async fn route_selection_follows_the_expression() {
    let gateway = Gateway::new(
        config(),
        REGION,
        Arc::new(FakeFunction {
            events: mpsc::unbounded_channel().0,
            respond: Box::new(ok),
        }),
        EventBus::new(),
    );
    let select = |body: &str| gateway.shared.select_route(body);
    assert_eq!(
        select(r#"{"action":"sendmessage","data":1}"#).as_deref(),
        Some("sendmessage")
    );
    assert_eq!(select(r#"{"action":"ping"}"#).as_deref(), Some("ping"));
    assert_eq!(select(r#"{"action":"nope"}"#).as_deref(), Some("$default"));
    assert_eq!(select(r#"{"action":7}"#).as_deref(), Some("$default"));
    assert_eq!(select(r#"{"data":1}"#).as_deref(), Some("$default"));
    assert_eq!(select(r#"["ping"]"#).as_deref(), Some("$default"));
    assert_eq!(select("not json").as_deref(), Some("$default"));
    // The special routes are never selected by a message.
    assert_eq!(
        select(r#"{"action":"$connect"}"#).as_deref(),
        Some("$default")
    );

    let mut nested = config();
    nested.route_selection_expression = "$request.body.meta.kind".into();
    nested.routes.retain(|r| r.key != "$default");
    let gateway = Gateway::new(
        nested,
        REGION,
        Arc::new(FakeFunction {
            events: mpsc::unbounded_channel().0,
            respond: Box::new(ok),
        }),
        EventBus::new(),
    );
    assert_eq!(
        gateway
            .shared
            .select_route(r#"{"meta":{"kind":"ping"}}"#)
            .as_deref(),
        Some("ping")
    );
    assert_eq!(gateway.shared.select_route(r#"{"action":"ping"}"#), None);
}

#[tokio::test]
async fn swapped_routing_applies_to_open_connections() {
    let mut running = start().await;
    let (mut client, _) = running.connected().await;
    let route_of = async |running: &mut Running, client: &mut Client, action: &str| {
        send_text(client, &format!(r#"{{"action":"{action}"}}"#)).await;
        running.next_event_of("MESSAGE").await["requestContext"]["routeKey"].clone()
    };
    assert_eq!(
        route_of(&mut running, &mut client, "echo").await,
        "$default"
    );

    let mut deployed = config();
    deployed.routes.retain(|r| r.key != "ping");
    deployed.routes.push(route("echo", false));
    deployed.throttle = Some(Throttle {
        rate_per_sec: 0.001,
        burst: 1,
    });
    running.gateway.swap_routing(&deployed);
    assert_eq!(route_of(&mut running, &mut client, "echo").await, "echo");
    assert_eq!(
        route_of(&mut running, &mut client, "ping").await,
        "$default"
    );
    // The new throttling: echo's bucket held one token.
    send_text(&mut client, r#"{"action":"echo"}"#).await;
    let frame: GatewayFrame =
        serde_json::from_str(&next_text(&mut client).await).expect("a gateway frame");
    assert_eq!(frame.message, GatewayFrame::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_message_with_no_route_gets_forbidden() {
    let mut config = config();
    config.routes.retain(|r| r.key != "$default");
    let mut running = start_with(config, Box::new(ok)).await;
    let (mut client, id) = running.connected().await;
    send_text(&mut client, r#"{"action":"nope"}"#).await;
    let frame: GatewayFrame =
        serde_json::from_str(&next_text(&mut client).await).expect("a gateway frame");
    assert_eq!(frame.message, "Forbidden");
    assert_eq!(frame.connection_id, id);
    send_text(&mut client, r#"{"action":"ping"}"#).await;
    assert_eq!(
        running.next_event().await["requestContext"]["routeKey"],
        "ping"
    );
}

#[tokio::test]
async fn an_invoke_error_sends_the_error_frame_and_keeps_the_connection() {
    let respond = |event: &Value| match event["body"].as_str() {
        Some(body) if body.contains("crash") => Err(InvokeError::Crashed("signal 9".into())),
        Some(body) if body.contains("throttle") => Err(InvokeError::Throttled(
            crate::lambda::invoke::Limit::Concurrency { at_once: 1000 },
        )),
        _ => Ok(json!({"statusCode": 200, "body": "not sent to the client"})),
    };
    let mut running = start_with(config(), Box::new(respond)).await;
    let (mut client, id) = running.connected().await;
    send_text(&mut client, r#"{"action":"sendmessage","data":"crash"}"#).await;
    let message_event = running.next_event().await;
    let frame: GatewayFrame =
        serde_json::from_str(&next_text(&mut client).await).expect("a gateway frame");
    assert_eq!(frame.message, GatewayFrame::INTERNAL_SERVER_ERROR);
    assert_eq!(frame.connection_id, id);
    assert_eq!(
        Some(frame.request_id.as_str()),
        message_event["requestContext"]["requestId"].as_str()
    );
    // Lambda's throttling error is an integration failure to API Gateway too.
    send_text(&mut client, r#"{"action":"sendmessage","data":"throttle"}"#).await;
    running.next_event().await;
    let frame: GatewayFrame =
        serde_json::from_str(&next_text(&mut client).await).expect("a gateway frame");
    assert_eq!(frame.message, GatewayFrame::INTERNAL_SERVER_ERROR);

    // Still open; a successful invocation's response body is not sent back.
    let (_, mut bus) = running.bus.subscribe();
    send_text(&mut client, r#"{"action":"ping"}"#).await;
    assert_eq!(
        running.next_event().await["requestContext"]["routeKey"],
        "ping"
    );
    // Once the ping's invocation has returned, a post queued after it is the
    // next frame: a route response would have been queued before it.
    tokio::time::timeout(WAIT, async {
        while let Ok(envelope) = bus.recv().await {
            if matches!(&envelope.event, crate::console::StackEvent::Invocation { route, .. } if route == "ping")
            {
                return;
            }
        }
    })
    .await
    .expect("the ping's invocation returned");
    running
        .management()
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new("marker"))
        .send()
        .await
        .expect("post");
    assert_eq!(
        next_message(&mut client).await,
        Message::text("marker"),
        "no frame for a successful route"
    );
}

/// The live view counts an invocation whose response has a non-2xx
/// `statusCode` (a `$default` that answered 400) as failed, not `ok`.
#[tokio::test]
async fn an_invocation_answering_400_is_not_counted_ok() {
    let respond = |event: &Value| {
        if event["requestContext"]["routeKey"] == "$default" {
            Ok(json!({"statusCode": 400, "body": "bad"}))
        } else {
            Ok(json!({"statusCode": 200}))
        }
    };
    let mut running = start_with(config(), Box::new(respond)).await;
    let (mut client, _id) = running.connected().await;
    send_text(&mut client, r#"{"action":"nothing-routes-this"}"#).await;
    assert_eq!(
        running.next_event().await["requestContext"]["routeKey"],
        "$default"
    );
    let counts = tokio::time::timeout(WAIT, async {
        loop {
            let seen = running.bus.snapshot();
            if let Some(counts) = seen.invocations_by_route.get("$default") {
                return counts.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the $default invocation is counted");
    assert_eq!((counts.ok, counts.failed), (0, 1));
    let outcome = running
        .bus
        .snapshot()
        .recent
        .iter()
        .find_map(|e| match &e.event {
            crate::console::StackEvent::Invocation { route, outcome, .. }
                if route == "$default" =>
            {
                Some(outcome.clone())
            }
            _ => None,
        });
    assert_eq!(outcome.as_deref(), Some("answered 400"));
}
