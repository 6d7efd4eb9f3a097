//! `$connect`: the key, the stage, the function's answer, and the ids.

use super::*;

#[tokio::test]
async fn connect_without_the_key_is_refused_without_invoking() {
    let mut running = start().await;
    assert_eq!(refused_status(running.connect(None).await), 403);
    assert_eq!(
        refused_status(running.connect(Some("wrong-key")).await),
        403
    );
    assert!(
        running.events.try_recv().is_err(),
        "the function must not be invoked"
    );
    running.connected().await;
}

#[tokio::test]
async fn connect_without_a_key_requirement_needs_no_key() {
    let mut config = config();
    config.routes[0].api_key_required = false;
    let running = start_with(config, Box::new(ok)).await;
    running.connect(None).await.expect("accepted without a key");
}

#[tokio::test]
async fn unknown_stage_is_forbidden() {
    let running = start().await;
    let url = format!("ws://{}/other", running.addr);
    assert_eq!(refused_status(connect(&url, Some(KEY)).await), 403);
}

#[tokio::test]
async fn connect_non_2xx_or_error_refuses_the_handshake() {
    let respond = |event: &Value| {
        let agent = event["headers"]["user-agent"].as_str().unwrap_or_default();
        let query = &event["queryStringParameters"];
        match query["answer"].as_str() {
            Some("401") => Ok(json!({"statusCode": 401})),
            Some("error") => Err(InvokeError::Function {
                error_type: "Boom".into(),
                message: "failed".into(),
            }),
            _ => Ok(json!({"statusCode": 200, "body": agent})),
        }
    };
    let mut running = start_with(config(), Box::new(respond)).await;
    let url = format!("{}?answer=401", running.url());
    assert_eq!(refused_status(connect(&url, Some(KEY)).await), 401);
    let url = format!("{}?answer=error", running.url());
    assert_eq!(refused_status(connect(&url, Some(KEY)).await), 500);
    // Refused connections are not registered and get no $disconnect.
    assert_eq!(running.gateway.connection_count(), 0);
    let connects = [running.next_event().await, running.next_event().await];
    assert!(
        connects
            .iter()
            .all(|e| e["requestContext"]["eventType"] == "CONNECT")
    );
    // Positive control, and a wait on events instead of a sleep: a client
    // accepted after the refusals connects and leaves; the first $disconnect
    // the function sees is that client's (a refused handshake's would have
    // come before it).
    let (client, id) = running.connected().await;
    drop(client);
    let disconnect = running.next_event_of("DISCONNECT").await;
    assert_eq!(
        disconnect["requestContext"]["connectionId"],
        id.as_str(),
        "no $disconnect for a refused handshake"
    );
}

#[test]
fn ids_look_like_api_gateways() {
    let id = new_id();
    assert_eq!(id.len(), 16);
    assert!(id.ends_with('='));
    assert_ne!(new_id(), new_id());
}

#[test]
fn connect_status_reads_the_proxy_response() {
    assert_eq!(connect_status(&json!({"statusCode": 200})), StatusCode::OK);
    assert_eq!(
        connect_status(&json!({"statusCode": "403"})),
        StatusCode::FORBIDDEN
    );
    assert_eq!(connect_status(&json!({})), StatusCode::OK);
    assert_eq!(
        connect_status(&json!({"statusCode": 99999})),
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        connect_status(&json!({"statusCode": [1]})),
        StatusCode::BAD_GATEWAY
    );
}
