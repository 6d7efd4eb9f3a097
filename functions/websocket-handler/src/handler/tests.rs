//! The handler over in-memory traits: every route, every bad input, a
//! broadcast and a reply near the invocation's deadline.

use super::*;
use crate::event::tests::event;
use crate::fanout::memory::{MemoryClaims, MemoryQueue};
use crate::fanout::{Limits, Page, RecipientPages};
use crate::messenger::MemoryMessenger;
use crate::messenger::{Messenger, PostError};
use crate::registry::{Connection, GoneRemoval, MemoryRegistry, RegistryError};
use async_trait::async_trait;
use protocol::{MAX_DATA_BYTES, ServerFrame};
use serde_json::json;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// [`super::handle_json`] (the function's entry, given the event's text)
/// for events that are not continuations, which are always served: the
/// response.
async fn handle(
    raw: Value,
    registry: &dyn ConnectionRegistry,
    messengers: &dyn Messengers,
    services: &Services<'_>,
    deadline: Deadline,
) -> ApiGatewayProxyResponse {
    super::handle_json(&raw.to_string(), registry, messengers, services, deadline)
        .await
        .expect("an API Gateway event is always served")
}

static LOSSES: std::sync::LazyLock<crate::metrics::MemoryReport> =
    std::sync::LazyLock::new(crate::metrics::MemoryReport::default);

/// A broadcast's services over `pages`, with in-memory claims and queue.
fn services<'a>(
    pages: &'a dyn RecipientPages,
    claims: &'a MemoryClaims,
    queue: &'a MemoryQueue,
) -> Services<'a> {
    Services {
        pages,
        claims,
        relay: queue,
        losses: &*LOSSES,
        limits: Limits::default(),
    }
}

/// [`services`] with a 1 s post timeout, so a slice fits in a short
/// deadline (its stop keeps the post timeout for posts in flight).
fn quick_services<'a>(
    pages: &'a dyn RecipientPages,
    claims: &'a MemoryClaims,
    queue: &'a MemoryQueue,
) -> Services<'a> {
    Services {
        limits: Limits {
            post_timeout: Duration::from_secs(1),
            ..Limits::default()
        },
        ..services(pages, claims, queue)
    }
}

struct Fixture {
    registry: MemoryRegistry,
    messenger: MemoryMessenger,
    claims: MemoryClaims,
    queue: MemoryQueue,
}

impl Fixture {
    async fn with(ids: &[&str]) -> Self {
        let fixture = Fixture {
            registry: MemoryRegistry::new(),
            messenger: MemoryMessenger::new(),
            claims: MemoryClaims::default(),
            queue: MemoryQueue::default(),
        };
        for id in ids {
            let status = fixture.run(event("$connect", id, None)).await.status_code;
            assert_eq!(status, 200);
        }
        fixture
    }

    async fn run(&self, raw: Value) -> ApiGatewayProxyResponse {
        let deadline = Deadline::after(LIMIT);
        tokio::time::timeout(
            LIMIT,
            handle(
                raw,
                &self.registry,
                &self.messenger,
                &services(&self.registry, &self.claims, &self.queue),
                deadline,
            ),
        )
        .await
        .expect("handler timed out")
    }

    async fn send(&self, route: &str, from: &str, body: &str) -> ApiGatewayProxyResponse {
        self.run(event(route, from, Some(body))).await
    }

    fn error_codes_to(&self, id: &str) -> Vec<ErrorCode> {
        self.messenger
            .frames_to(id)
            .into_iter()
            .filter_map(|f| match f {
                ServerFrame::Error { code, .. } => Some(code),
                _ => None,
            })
            .collect()
    }

    async fn ids(&self) -> Vec<String> {
        self.registry.list().await.expect("list")
    }
}

#[tokio::test]
async fn connect_registers_with_the_request_details() {
    let f = Fixture::with(&["a"]).await;
    let connection = f.registry.get("a").expect("registered");
    assert_eq!(
        connection.connected_at.timestamp_millis(),
        1_795_000_000_000
    );
    assert_eq!(connection.expires_at(), 1_795_000_000 + 2 * 60 * 60);
    assert_eq!(connection.source_ip.as_deref(), Some("192.0.2.10"));
    assert_eq!(connection.user_agent.as_deref(), Some("wscat/6"));
    assert!(
        f.messenger.posts().is_empty(),
        "nothing can be posted during $connect"
    );
}

struct BrokenRegistry;

#[async_trait]
impl ConnectionRegistry for BrokenRegistry {
    async fn register(&self, _: &Connection) -> Result<(), RegistryError> {
        Err(RegistryError::new("PutItem", "table is unavailable"))
    }
    async fn remove(&self, _: &str) -> Result<(), RegistryError> {
        Err(RegistryError::new("DeleteItem", "table is unavailable"))
    }
    async fn remove_gone(
        &self,
        _: &str,
        _: chrono::DateTime<chrono::Utc>,
    ) -> Result<GoneRemoval, RegistryError> {
        Err(RegistryError::new("DeleteItem", "table is unavailable"))
    }
    async fn list(&self) -> Result<Vec<String>, RegistryError> {
        Err(RegistryError::new("Scan", "table is unavailable"))
    }
}

#[async_trait]
impl RecipientPages for BrokenRegistry {
    async fn page(&self, _: Option<&str>) -> Result<Page, RegistryError> {
        Err(RegistryError::new("Scan", "table is unavailable"))
    }
}

#[tokio::test]
async fn a_registry_failure_refuses_the_handshake_and_fails_loudly_elsewhere() {
    let messenger = MemoryMessenger::new();
    let run = |raw| async {
        let deadline = Deadline::after(LIMIT);
        let (claims, queue) = (MemoryClaims::default(), MemoryQueue::default());
        let services = services(&BrokenRegistry, &claims, &queue);
        tokio::time::timeout(
            LIMIT,
            handle(raw, &BrokenRegistry, &messenger, &services, deadline),
        )
        .await
        .expect("timed out")
    };
    assert_eq!(run(event("$connect", "a", None)).await.status_code, 500);
    assert_eq!(run(event("$disconnect", "a", None)).await.status_code, 500);
    let sent = run(event(
        "sendmessage",
        "a",
        Some(r#"{"action":"sendmessage","data":1}"#),
    ))
    .await;
    assert_eq!(sent.status_code, 500);
    assert!(matches!(
        messenger.frames_to("a").as_slice(),
        [ServerFrame::Error {
            code: ErrorCode::Internal,
            ..
        }]
    ));
}

#[tokio::test]
async fn disconnect_removes_the_connection() {
    let f = Fixture::with(&["a", "b"]).await;
    assert_eq!(
        f.run(event("$disconnect", "a", None)).await.status_code,
        200
    );
    assert_eq!(f.ids().await, ["b"]);
}

#[tokio::test]
async fn sendmessage_reaches_every_other_connection_and_counts_them() {
    let f = Fixture::with(&["a", "b", "c"]).await;
    let result = f
        .send(
            "sendmessage",
            "a",
            r#"{"action":"sendmessage","data":{"text":"hi"}}"#,
        )
        .await;
    assert_eq!(result.status_code, 200);
    for other in ["b", "c"] {
        let frames = f.messenger.frames_to(other);
        let [
            ServerFrame::Message {
                id,
                from,
                data,
                sent_at,
                user_id,
            },
        ] = frames.as_slice()
        else {
            panic!("{other} got {frames:?}");
        };
        assert_eq!(id, "msg-1", "the id is API Gateway's messageId");
        assert_eq!(from, "a");
        assert_eq!(user_id, &None, "a sender without sign-in has no userId");
        assert_eq!(data, &json!({"text": "hi"}));
        assert!(
            chrono::DateTime::parse_from_rfc3339(sent_at).is_ok(),
            "{sent_at}"
        );
    }
    assert_eq!(
        f.messenger.frames_to("a"),
        [ServerFrame::Sent { recipients: 2 }]
    );
    // The management endpoint is asked for the API the event came from.
    let api = f.messenger.apis().pop().expect("asked");
    assert_eq!(
        api.management_endpoint().as_deref(),
        Some("https://abc123.execute-api.eu-west-1.amazonaws.com/prod")
    );
}

/// A connection its authorizer allowed: `$connect` stores the user with the
/// connection, and its messages carry `userId` beside `from`.
#[tokio::test]
async fn a_signed_in_sender_is_named_in_its_messages() {
    let f = Fixture::with(&["b"]).await;
    let signed_in = |route: &str, body: Option<&str>| {
        let mut raw = event(route, "a", body);
        raw["requestContext"]["authorizer"] =
            json!({"principalId": "alice", "sub": "alice", "email": "a@example.com"});
        raw
    };
    assert_eq!(f.run(signed_in("$connect", None)).await.status_code, 200);
    let stored = f.registry.get("a").expect("registered");
    assert_eq!(stored.user_id.as_deref(), Some("alice"));

    let body = r#"{"action":"sendmessage","data":"hi"}"#;
    assert_eq!(
        f.run(signed_in("sendmessage", Some(body)))
            .await
            .status_code,
        200
    );
    match f.messenger.frames_to("b").as_slice() {
        [ServerFrame::Message { from, user_id, .. }] => {
            assert_eq!(from, "a");
            assert_eq!(user_id.as_deref(), Some("alice"));
        }
        other => panic!("b got {other:?}"),
    }
}

#[tokio::test]
async fn the_count_is_what_was_delivered_and_gone_connections_are_dropped() {
    let f = Fixture::with(&["a", "b", "c", "d"]).await;
    f.messenger.mark_gone("b");
    f.messenger.mark_failing("c");
    f.send("sendmessage", "a", r#"{"action":"sendmessage","data":"x"}"#)
        .await;
    assert_eq!(
        f.messenger.frames_to("a"),
        [ServerFrame::Sent { recipients: 1 }]
    );
    assert_eq!(f.ids().await, ["a", "c", "d"]);
}

#[tokio::test]
async fn a_lone_sender_reaches_nobody() {
    let f = Fixture::with(&["a"]).await;
    f.send(
        "sendmessage",
        "a",
        r#"{"action":"sendmessage","data":null}"#,
    )
    .await;
    assert_eq!(
        f.messenger.frames_to("a"),
        [ServerFrame::Sent { recipients: 0 }]
    );
}

#[tokio::test]
async fn ping_answers_pong_to_the_sender_only() {
    let f = Fixture::with(&["a", "b"]).await;
    assert_eq!(
        f.send("ping", "a", r#"{"action":"ping"}"#)
            .await
            .status_code,
        200
    );
    assert_eq!(f.messenger.frames_to("a"), [ServerFrame::Pong]);
    assert!(f.messenger.frames_to("b").is_empty());
}

#[tokio::test]
async fn a_gone_sender_is_removed() {
    let f = Fixture::with(&["a", "b"]).await;
    f.messenger.mark_gone("a");
    assert_eq!(
        f.send("ping", "a", r#"{"action":"ping"}"#)
            .await
            .status_code,
        200
    );
    assert_eq!(f.ids().await, ["b"]);
}

#[tokio::test]
async fn a_reply_that_cannot_be_posted_is_a_500() {
    let f = Fixture::with(&["a"]).await;
    f.messenger.mark_failing("a");
    assert_eq!(
        f.send("ping", "a", r#"{"action":"ping"}"#)
            .await
            .status_code,
        500
    );
}

#[tokio::test]
async fn default_serves_known_actions_and_names_the_valid_ones_otherwise() {
    let f = Fixture::with(&["a"]).await;
    assert_eq!(
        f.send("$default", "a", r#"{"action":"ping"}"#)
            .await
            .status_code,
        200
    );
    assert_eq!(f.messenger.frames_to("a"), [ServerFrame::Pong]);

    assert_eq!(
        f.send("$default", "a", r#"{"action":"dance"}"#)
            .await
            .status_code,
        400
    );
    let frames = f.messenger.frames_to("a");
    let Some(ServerFrame::Error { code, message }) = frames.last() else {
        panic!("{frames:?}")
    };
    assert_eq!(*code, ErrorCode::UnknownAction);
    assert!(
        message.contains("sendmessage") && message.contains("ping"),
        "{message}"
    );
}

/// Every bad frame from the issue: the sender gets its error code, the
/// function answers 400, and nobody else hears anything.
#[tokio::test]
async fn every_bad_input_gets_its_error_frame_and_a_400() {
    let oversize = format!(
        r#"{{"action":"sendmessage","data":"{}"}}"#,
        "x".repeat(MAX_DATA_BYTES)
    );
    // The shared table, plus two cases only the function sees: data over
    // the limit (too large for one frame end to end) and a route the
    // gateway selected that the function has no handler for.
    let mut cases: Vec<(&str, String, ErrorCode)> = protocol::BAD_FRAMES
        .iter()
        .map(|frame| (frame.route, frame.text.to_string(), frame.code))
        .collect();
    cases.push(("sendmessage", oversize, ErrorCode::DataTooLarge));
    cases.push((
        "some-route-without-a-handler",
        r#"{"action":"some-route-without-a-handler"}"#.into(),
        ErrorCode::UnknownAction,
    ));
    for (route, body, expected) in cases {
        let f = Fixture::with(&["a", "b"]).await;
        let result = f.send(route, "a", &body).await;
        assert_eq!(result.status_code, 400, "{route} {expected:?}");
        assert_eq!(f.error_codes_to("a"), [expected], "{route} {expected:?}");
        assert!(
            f.messenger.frames_to("b").is_empty(),
            "{expected:?} leaked to another client"
        );
    }
}

#[tokio::test]
async fn a_binary_frame_is_refused() {
    let f = Fixture::with(&["a"]).await;
    let mut raw = event("$default", "a", Some("AAEC"));
    raw["isBase64Encoded"] = json!(true);
    assert_eq!(f.run(raw).await.status_code, 400);
    assert_eq!(f.error_codes_to("a"), [ErrorCode::BinaryFrame]);
}

/// A `$connect` whose `connectedAt` is 0 is stored as opened now, not in
/// 1970 (whose 2-hour expiry passed long ago).
#[tokio::test]
async fn a_connect_at_the_epoch_is_stored_as_opened_now() {
    let f = Fixture::with(&["a"]).await;
    let mut raw = event("$connect", "z", None);
    raw["requestContext"]["connectedAt"] = json!(0);
    assert_eq!(f.run(raw).await.status_code, 200);
    let stored = f.registry.get("z").expect("registered");
    let age = chrono::Utc::now() - stored.connected_at;
    assert!(age.num_seconds().abs() < 60, "stored as opened {age} ago");
}

#[tokio::test]
async fn an_event_missing_context_fields_still_gets_an_answer() {
    let f = Fixture::with(&["a"]).await;
    // Unparseable, but names the connection: the sender is told.
    let mut raw = event("ping", "a", Some(r#"{"action":"ping"}"#));
    raw["requestContext"]
        .as_object_mut()
        .map(|c| c.remove("connectedAt"));
    assert_eq!(f.run(raw).await.status_code, 400);
    assert_eq!(f.error_codes_to("a"), [ErrorCode::BadRequest]);

    // No connection id: nobody to tell, still a response.
    let mut raw = event("ping", "a", Some(r#"{"action":"ping"}"#));
    raw["requestContext"]
        .as_object_mut()
        .map(|c| c.remove("connectionId"));
    assert_eq!(f.run(raw).await.status_code, 400);
    let mut raw = event("ping", "a", None);
    raw["requestContext"]
        .as_object_mut()
        .map(|c| c.remove("routeKey"));
    assert_eq!(f.run(raw).await.status_code, 400);

    for raw in [
        json!(null),
        json!(7),
        json!("x"),
        json!([]),
        json!({}),
        json!({"requestContext": 1}),
    ] {
        assert_eq!(f.run(raw).await.status_code, 400);
    }
    // A bad $connect is refused, not answered.
    let mut raw = event("$connect", "z", None);
    raw["requestContext"]["connectedAt"] = json!("soon");
    assert_eq!(f.run(raw).await.status_code, 400);
    assert!(f.messenger.frames_to("z").is_empty());
    assert_eq!(f.ids().await, ["a"]);
}

/// Posts to ids starting with "slow" take `delay`; posts to ids starting
/// with "stuck" never finish; the rest are immediate. (Real time: the
/// deadlines below are seconds away.)
#[derive(Clone)]
struct Scripted {
    inner: MemoryMessenger,
    delay: Duration,
}

#[async_trait]
impl Messenger for Scripted {
    async fn post(&self, connection_id: &str, data: &[u8]) -> Result<(), PostError> {
        if connection_id.starts_with("stuck") {
            std::future::pending::<()>().await;
        }
        if connection_id.starts_with("slow") {
            tokio::time::sleep(self.delay).await;
        }
        self.inner.post(connection_id, data).await
    }
}

impl Messengers for Scripted {
    fn for_api(
        &self,
        _: &crate::event::ApiAddress,
    ) -> Result<std::sync::Arc<dyn Messenger>, PostError> {
        Ok(std::sync::Arc::new(self.clone()))
    }
}

async fn registered(ids: &[&str]) -> MemoryRegistry {
    let registry = MemoryRegistry::new();
    for id in ids {
        let status = routes_connect(&registry, id).await;
        assert_eq!(status, 200);
    }
    registry
}

async fn routes_connect(registry: &MemoryRegistry, id: &str) -> i64 {
    let messenger = MemoryMessenger::new();
    let (claims, queue) = (MemoryClaims::default(), MemoryQueue::default());
    handle(
        event("$connect", id, None),
        registry,
        &messenger,
        &services(registry, &claims, &queue),
        Deadline::after(LIMIT),
    )
    .await
    .status_code
}

/// Recipients slower than the post timeout: their posts count as failed
/// (never as sent, never handed on), the sender is told how many were
/// reached, and the response comes before the deadline.
#[tokio::test]
async fn a_broadcast_with_slow_recipients_counts_them_failed_and_answers_in_time() {
    let registry = registered(&["a", "b", "c", "slow1", "slow2", "slow3"]).await;
    let messenger = Scripted {
        inner: MemoryMessenger::new(),
        delay: Duration::from_secs(60),
    };
    // A slice of 2.75 s: the reserves are the longer of the post timeout
    // (1 s, for the posts in flight at the stop) and the hand-over (2 s),
    // which run together, then the reply and the response (3.25 s).
    let deadline = Deadline::after(Duration::from_secs(6));
    let (claims, queue) = (MemoryClaims::default(), MemoryQueue::default());
    let services = quick_services(&registry, &claims, &queue);
    let result = handle(
        event(
            "sendmessage",
            "a",
            Some(r#"{"action":"sendmessage","data":"x"}"#),
        ),
        &registry,
        &messenger,
        &services,
        deadline,
    )
    .await;
    assert!(
        tokio::time::Instant::now() < deadline.instant(),
        "answered after the deadline"
    );
    assert!(
        queue.is_empty(),
        "recipients whose posts timed out are not handed on (they may have the message)"
    );
    assert_eq!(result.status_code, 200);
    assert_eq!(
        messenger.inner.frames_to("a"),
        [ServerFrame::Sent { recipients: 2 }],
        "timed-out posts are not counted as sent"
    );
    assert_eq!(messenger.inner.frames_to("b").len(), 1);
    assert!(messenger.inner.frames_to("slow1").is_empty());
}

/// A reply that cannot be posted fails the invocation before its
/// deadline, instead of running it into Lambda's timeout.
#[tokio::test]
async fn a_reply_that_hangs_gives_up_before_the_deadline() {
    let registry = registered(&["stuck", "b"]).await;
    let messenger = Scripted {
        inner: MemoryMessenger::new(),
        delay: Duration::ZERO,
    };
    let (claims, queue) = (MemoryClaims::default(), MemoryQueue::default());
    let deadline = Deadline::after(Duration::from_secs(2));
    let ping = handle(
        event("ping", "stuck", Some(r#"{"action":"ping"}"#)),
        &registry,
        &messenger,
        &services(&registry, &claims, &queue),
        deadline,
    )
    .await;
    assert_eq!(ping.status_code, 500);
    assert!(tokio::time::Instant::now() < deadline.instant());

    let deadline = Deadline::after(Duration::from_secs(6));
    let sent = handle(
        event(
            "sendmessage",
            "stuck",
            Some(r#"{"action":"sendmessage","data":1}"#),
        ),
        &registry,
        &messenger,
        &quick_services(&registry, &claims, &queue),
        deadline,
    )
    .await;
    assert_eq!(sent.status_code, 500);
    assert!(tokio::time::Instant::now() < deadline.instant());
    assert_eq!(messenger.inner.frames_to("b").len(), 1, "b still got it");
}

/// No management endpoint to post through.
struct NoEndpoint;

impl Messengers for NoEndpoint {
    fn for_api(
        &self,
        _: &crate::event::ApiAddress,
    ) -> Result<std::sync::Arc<dyn Messenger>, PostError> {
        Err(PostError::Other(
            "no management endpoint is configured".into(),
        ))
    }
}

/// A continuation that cannot post (no management endpoint) is not handed
/// on: its invocation fails, naming why, so Lambda counts an error and the
/// dead-letter queue keeps the event to send again once the configuration
/// is fixed.
#[tokio::test]
async fn a_continuation_without_a_management_endpoint_fails_its_invocation() {
    let registry = registered(&["a", "b"]).await;
    let (claims, queue) = (MemoryClaims::default(), MemoryQueue::default());
    let continuation = json!({"fanout": {"id": "c1", "messageId": "m", "sender": "a",
        "frame": "{}", "hop": 1, "remainder": {"pending": ["b"], "cursor": {"at": "end"}}}});
    let result = super::handle(
        continuation,
        &registry,
        &NoEndpoint,
        &services(&registry, &claims, &queue),
        Deadline::after(LIMIT),
    )
    .await;
    let Err(Unserved(error)) = result else {
        panic!("{result:?}");
    };
    assert!(error.contains("no management endpoint"), "{error}");
    assert!(queue.is_empty(), "nothing handed on");
    assert!(claims.is_empty(), "nothing claimed");
}

/// A Lambda Invoke that never answers.
struct HangingRelay;

#[async_trait]
impl crate::fanout::Relay for HangingRelay {
    async fn hand_off(&self, _: &Continuation) -> Result<(), String> {
        std::future::pending().await
    }
}

/// A broadcast that used its time to the end (a hand-off that never
/// answers) still leaves the sender's `sent` reply its whole reserve
/// (`REPLY_RESERVE`, 1 s, before the response's): a reply of 0.75 s arrives.
#[tokio::test]
async fn after_a_broadcast_that_ran_to_its_end_the_sender_still_gets_sent() {
    let registry = registered(&["slow-sender", "b", "c"]).await;
    let messenger = Scripted {
        inner: MemoryMessenger::new(),
        delay: Duration::from_millis(750),
    };
    let (claims, queue) = (MemoryClaims::default(), MemoryQueue::default());
    let services = Services {
        relay: &HangingRelay,
        limits: Limits {
            post_timeout: Duration::from_secs(1),
            per_invocation: Some(1),
            ..Limits::default()
        },
        ..services(&registry, &claims, &queue)
    };
    // The slice posts to one recipient and hands the other on until it must
    // give up (3 s − 1 s − 0.25 s); the reply then takes 0.75 s of its 1 s.
    let deadline = Deadline::after(Duration::from_secs(3));
    let result = handle(
        event(
            "sendmessage",
            "slow-sender",
            Some(r#"{"action":"sendmessage","data":"x"}"#),
        ),
        &registry,
        &messenger,
        &services,
        deadline,
    )
    .await;
    assert!(tokio::time::Instant::now() < deadline.instant());
    assert_eq!(result.status_code, 200);
    assert_eq!(
        messenger.inner.frames_to("slow-sender"),
        [ServerFrame::Sent { recipients: 1 }]
    );
}
