//! The @connections management API, through the AWS SDK and raw.

use super::*;

#[tokio::test]
async fn management_api_works_with_the_aws_sdk() {
    let mut running = start().await;
    let (mut client, id) = running.connected().await;
    let sdk = running.management();

    sdk.post_to_connection()
        .connection_id(&id)
        .data(Blob::new(r#"{"type":"pong"}"#))
        .send()
        .await
        .expect("post to a live connection");
    assert_eq!(next_text(&mut client).await, r#"{"type":"pong"}"#);

    send_text(&mut client, r#"{"action":"ping"}"#).await;
    running.next_event().await;
    let info = sdk
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("get a live connection");
    let identity = info.identity().expect("identity");
    assert_eq!(identity.source_ip(), Some("127.0.0.1"));
    assert_eq!(identity.user_agent(), Some("gateway-test/1.0"));
    let connected_at = info.connected_at().expect("connectedAt");
    let last_active = info.last_active_at().expect("lastActiveAt");
    assert!(last_active >= connected_at);

    sdk.delete_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("delete a live connection");
    assert_eq!(close_code(&mut client).await, Some(CloseCode::Normal));
    let disconnect = running.next_event_of("DISCONNECT").await;
    assert_eq!(disconnect["requestContext"]["connectionId"], id.as_str());

    let gone = sdk
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new("x"))
        .send()
        .await;
    let error = gone.expect_err("the connection is gone");
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_gone_exception()),
        "{error:?}"
    );
    let gone = sdk
        .get_connection()
        .connection_id("L0SM9cOFvHcCIhw=")
        .send()
        .await;
    assert!(
        gone.expect_err("unknown")
            .as_service_error()
            .is_some_and(|e| e.is_gone_exception())
    );
    let gone = sdk.delete_connection().connection_id(&id).send().await;
    assert!(
        gone.expect_err("deleted")
            .as_service_error()
            .is_some_and(|e| e.is_gone_exception())
    );
}

#[tokio::test]
async fn gone_is_410_with_the_error_type_header() {
    let running = start().await;
    let error = running
        .management()
        .post_to_connection()
        .connection_id("L0SM9cOFvHcCIhw=")
        .data(Blob::new("x"))
        .send()
        .await
        .expect_err("no such connection");
    let response = error.raw_response().expect("an HTTP answer");
    assert_eq!(response.status().as_u16(), 410);
    assert_eq!(
        response.headers().get("x-amzn-errortype"),
        Some("GoneException")
    );
    let body = std::str::from_utf8(response.body().bytes().unwrap_or_default()).unwrap_or("");
    assert!(body.starts_with(r#"{"message":"#), "{body}");
}

#[tokio::test]
async fn posts_over_128_kb_are_payload_too_large() {
    let mut running = start().await;
    let (_client, id) = running.connected().await;
    let result = running
        .management()
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(vec![b'x'; 128 * 1024 + 1]))
        .send()
        .await;
    let error = result.expect_err("over the limit");
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_payload_too_large_exception()),
        "{error:?}"
    );
}
