//! AWS's account limits and the WebSocket cap as the API layer plays them:
//! a management request over the account's request rate gets 429
//! `LimitExceededException`, a handshake over the new-connection rate or
//! over `--max-connections` WebSockets gets 429 without invoking, and a
//! message over the request rate gets the Too Many Requests frame.

use aws_sdk_apigatewaymanagement::error::ProvideErrorMetadata;

use super::*;
use crate::apigateway::account::AccountLimits;

fn with_account(request_rate: u32, connect_rate: u32) -> GatewayConfig {
    let mut config = config();
    config.limits.account = AccountLimits {
        request_rate,
        connect_rate,
    };
    config
}

/// A management client that tries each call once (the SDK retries a 429).
pub(super) fn once(running: &Running) -> aws_sdk_apigatewaymanagement::Client {
    let sdk = running.management();
    aws_sdk_apigatewaymanagement::Client::from_conf(
        sdk.config()
            .to_builder()
            .retry_config(aws_sdk_apigatewaymanagement::config::retry::RetryConfig::disabled())
            .build(),
    )
}

#[tokio::test]
async fn a_management_post_over_the_account_rate_gets_429_limit_exceeded() {
    // 20/s: a burst of 10, one request back every 50 ms.
    let mut running = start_with(with_account(20, 500), Box::new(ok)).await;
    let (mut client, id) = running.connected().await;
    let sdk = once(&running);
    let mut limited = None;
    for n in 0..40 {
        let sent = sdk
            .post_to_connection()
            .connection_id(&id)
            .data(Blob::new(format!("{n}")))
            .send()
            .await;
        if let Err(error) = sent {
            limited = Some(error);
            break;
        }
    }
    let error = limited.expect("a post over the account's rate is refused");
    assert_eq!(error.raw_response().map(|r| r.status().as_u16()), Some(429));
    let service = error.as_service_error().expect("a service error");
    assert!(service.is_limit_exceeded_exception(), "{error:?}");
    let message = service.message().unwrap_or_default();
    assert!(
        message.contains("20/s") && message.contains("--account-rate-limit"),
        "{message}"
    );
    // What was accepted was delivered.
    assert_eq!(next_text(&mut client).await, "0");
    // The bucket refills at the rate.
    tokio::time::sleep(Duration::from_millis(200)).await;
    sdk.post_to_connection()
        .connection_id(&id)
        .data(Blob::new("later"))
        .send()
        .await
        .expect("served again once the rate allows");
}

#[tokio::test]
async fn a_handshake_over_the_account_connect_rate_is_refused_with_429_without_invoking() {
    let mut running = start_with(with_account(10_000, 2), Box::new(ok)).await;
    let _first = running.connected().await;
    let _second = running.connected().await;
    let status = refused_status(running.connect(Some(KEY)).await);
    assert_eq!(status, 429);
    // Only the two accepted handshakes reached the function.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), running.events.recv())
            .await
            .is_err(),
        "the refused handshake invoked the function"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let _third = running.connected().await;
}

#[tokio::test]
async fn messages_over_the_account_rate_get_too_many_requests() {
    let mut running = start_with(with_account(4, 500), Box::new(ok)).await;
    // The handshake took one of the burst of 2.
    let (mut client, _id) = running.connected().await;
    for _ in 0..3 {
        send_text(&mut client, r#"{"action":"ping"}"#).await;
    }
    let frame = next_text(&mut client).await;
    let frame: Value = serde_json::from_str(&frame).expect("json");
    assert_eq!(frame["message"], GatewayFrame::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_websocket_cap_counts_websockets_only() {
    let mut config = config();
    config.limits.max_websockets = 1;
    let mut running = start_with(config, Box::new(ok)).await;
    let (first, id) = running.connected().await;
    assert_eq!(refused_status(running.connect(Some(KEY)).await), 429);
    // The management API is not a WebSocket: served at the cap.
    running
        .management()
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("a management request at the WebSocket cap is served");
    drop(first);
    running.next_event_of("DISCONNECT").await;
    let _again = running.connected().await;
}
