//! What the control room does to this API layer (`apigateway/control.rs`
//! and the fault plan's hooks in routing and `@connections`), with the fake
//! function: expiry closes with 1001 and runs `$disconnect`, a drop ends the
//! socket with neither, armed posts answer 410 or 429, armed routes fail or
//! wait.

use std::time::Instant;

use super::account::once;
use super::*;
use crate::control::{Connections, Limit, PostFault, RouteFault};

/// No event of `event_type` reaches the function within `quiet`.
async fn no_event_of(running: &mut Running, event_type: &str, quiet: Duration) {
    let deadline = Instant::now() + quiet;
    while let Ok(Some(event)) =
        tokio::time::timeout_at(deadline.into(), running.events.recv()).await
    {
        assert_ne!(
            event["requestContext"]["eventType"], event_type,
            "unexpected {event_type}: {event}"
        );
    }
}

#[tokio::test]
async fn expiring_one_connection_closes_it_with_1001_and_runs_its_disconnect() {
    let mut running = start().await;
    let (mut a, a_id) = running.connected().await;
    let (mut b, b_id) = running.connected().await;

    assert_eq!(running.gateway.expire(Some(&a_id), Limit::Idle), 1);
    assert_eq!(close_code(&mut a).await, Some(CloseCode::Away));
    let disconnect = running.next_event_of("DISCONNECT").await;
    assert_eq!(disconnect["requestContext"]["connectionId"], a_id.as_str());
    // Already expired: nothing more to close.
    assert_eq!(running.gateway.expire(Some(&a_id), Limit::Idle), 0);
    assert_eq!(running.gateway.expire(Some("no-such-id"), Limit::Life), 0);

    // The other connection was untouched, until every connection reaches the 2-hour limit.
    running
        .management()
        .post_to_connection()
        .connection_id(&b_id)
        .data(Blob::new("still here"))
        .send()
        .await
        .expect("post to the connection left open");
    assert_eq!(next_text(&mut b).await, "still here");
    assert_eq!(running.gateway.expire(None, Limit::Life), 1);
    assert_eq!(close_code(&mut b).await, Some(CloseCode::Away));
    let disconnect = running.next_event_of("DISCONNECT").await;
    assert_eq!(disconnect["requestContext"]["connectionId"], b_id.as_str());
}

#[tokio::test]
async fn a_dropped_connection_ends_without_a_close_frame_or_disconnect() {
    let mut running = start().await;
    let (mut client, id) = running.connected().await;

    assert!(running.gateway.drop_without_disconnect(&id));
    let next = tokio::time::timeout(WAIT, client.next())
        .await
        .expect("the socket ends within the timeout");
    assert!(
        !matches!(next, Some(Ok(Message::Close(_)))),
        "a dropped client got a close frame: {next:?}"
    );
    no_event_of(&mut running, "DISCONNECT", Duration::from_millis(500)).await;
    let gone = running
        .management()
        .get_connection()
        .connection_id(&id)
        .send()
        .await;
    assert!(
        gone.expect_err("dropped")
            .as_service_error()
            .is_some_and(|e| e.is_gone_exception())
    );
    assert!(!running.gateway.drop_without_disconnect(&id));
}

#[tokio::test]
async fn armed_posts_answer_410_and_429_then_deliver_again() {
    let mut running = start().await;
    let (mut client, id) = running.connected().await;
    let plan = running.gateway.fault_plan();
    // Tried once each: the SDK would retry the 429 and be answered by the next post.
    let sdk = once(&running);
    let post = |data: &'static str| {
        sdk.post_to_connection()
            .connection_id(&id)
            .data(Blob::new(data))
            .send()
    };

    plan.arm_post(&id, PostFault::Gone, 1).expect("armed");
    let error = post("lost").await.expect_err("armed 410");
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_gone_exception()),
        "{error:?}"
    );
    plan.arm_post(&id, PostFault::Throttled, 1).expect("armed");
    let error = post("throttled").await.expect_err("armed 429");
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_limit_exceeded_exception()),
        "{error:?}"
    );
    // Each fault answered exactly one post, and the connection stayed open.
    post("delivered").await.expect("the next post");
    assert_eq!(next_text(&mut client).await, "delivered");
}

#[tokio::test]
async fn an_armed_route_fails_without_reaching_the_function_or_waits_then_runs() {
    let mut running = start().await;
    let (mut client, _) = running.connected().await;
    let plan = running.gateway.fault_plan();

    plan.arm_route("ping", RouteFault::Fail, 1).expect("armed");
    send_text(&mut client, r#"{"action":"ping"}"#).await;
    let frame: GatewayFrame =
        serde_json::from_str(&next_text(&mut client).await).expect("API Gateway's error frame");
    assert_eq!(frame.message, GatewayFrame::INTERNAL_SERVER_ERROR);
    no_event_of(&mut running, "MESSAGE", Duration::from_millis(300)).await;

    // A fault armed for another route leaves this one alone.
    plan.arm_route("sendmessage", RouteFault::Fail, 1)
        .expect("armed");
    plan.arm_route("ping", RouteFault::Delay { millis: 400 }, 1)
        .expect("armed");
    let sent = Instant::now();
    send_text(&mut client, r#"{"action":"ping"}"#).await;
    let event = running.next_event_of("MESSAGE").await;
    assert_eq!(event["requestContext"]["routeKey"], "ping");
    assert!(
        sent.elapsed() >= Duration::from_millis(400),
        "the delayed invocation ran after {:?}",
        sent.elapsed()
    );
    // Used up: the next ping runs at once.
    send_text(&mut client, r#"{"action":"ping"}"#).await;
    let event = running.next_event_of("MESSAGE").await;
    assert_eq!(event["requestContext"]["routeKey"], "ping");
}
