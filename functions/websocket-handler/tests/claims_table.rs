//! `ClaimsTable` against a real DynamoDB-compatible server (Dynoxide, `local-dynamodb`): a
//! continuation is claimed once; a retry with the claim's own token is the
//! same claim, even when the first write was applied and its answer lost
//! (a stand-in in front of that server answers 500 after applying it); and
//! claims never grow the connections table, however many broadcasts ran.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::config::{Credentials, Region};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use local_dynamodb::LocalDynamoDb;
use serde_json::json;
use websocket_handler::claims::{CLAIM_ID, Claims, ClaimsTable};
use websocket_handler::deadline::Deadline;
use websocket_handler::fanout::memory::MemoryQueue;
use websocket_handler::fanout::{Limits, Services};
use websocket_handler::fanout_table::FanoutTable;
use websocket_handler::messenger::MemoryMessenger;
use websocket_handler::metrics::MemoryReport;

const LIMIT: Duration = Duration::from_secs(300);

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("timed out")
}

async fn started() -> LocalDynamoDb {
    let db = within(LocalDynamoDb::start())
        .await
        .expect("start the local DynamoDB");
    within(db.create_table("claims", CLAIM_ID))
        .await
        .expect("create the claims table");
    db
}

#[tokio::test]
async fn a_continuation_is_claimed_once_and_a_retry_with_its_token_is_the_same_claim() {
    let db = started().await;
    let claims = ClaimsTable::new(db.client(), "claims");
    assert!(within(claims.claim("m1#a", "t1")).await.expect("claim"));
    assert!(
        within(claims.claim("m1#a", "t1")).await.expect("retry"),
        "the same token again is the same claim"
    );
    assert!(
        !within(claims.claim("m1#a", "t2"))
            .await
            .expect("another delivery"),
        "another token finds it claimed"
    );
    assert!(
        within(claims.claim("m1#b", "t2"))
            .await
            .expect("another continuation")
    );
    let item = within(
        db.client()
            .get_item()
            .table_name("claims")
            .key(
                CLAIM_ID,
                aws_sdk_dynamodb::types::AttributeValue::S("m1#a".into()),
            )
            .send(),
    )
    .await
    .expect("get");
    let item = item.item().expect("stored");
    let expires: i64 = item["expiresAt"]
        .as_n()
        .expect("a number")
        .parse()
        .expect("epoch seconds");
    let life = expires - Utc::now().timestamp();
    assert!((890..=900).contains(&life), "expires in {life} s");
    assert_eq!(item["token"].as_s().map(String::as_str), Ok("t1"));
}

#[tokio::test]
async fn a_claim_that_fails_for_another_reason_is_an_error_not_a_duplicate() {
    // Only a failed condition means "claimed by another delivery"; any other
    // failure (here: no such table) must not skip the rest of the broadcast.
    let db = started().await;
    let claims = ClaimsTable::new(db.client(), "no-such-table");
    let error = within(claims.claim("m1#a", "t1"))
        .await
        .expect_err("no table is an error, not \"already claimed\"");
    assert_eq!(error.operation, "PutItem");
    assert!(
        error.to_string().contains("no-such-table")
            || error.to_string().contains("ResourceNotFound"),
        "{error}"
    );
}

/// Forwards every request to the local DynamoDB; the first PutItem is applied there
/// and then answered with a 500, as a lost answer.
#[derive(Clone)]
struct LosesFirstPut {
    upstream: String,
    lost: Arc<AtomicUsize>,
}

async fn forward(
    State(proxy): State<LosesFirstPut>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request =
        http::Request::builder()
            .method(method)
            .uri(format!("{}{}", proxy.upstream, uri.path()));
    for (name, value) in &headers {
        if name != "host" {
            request = request.header(name, value);
        }
    }
    let is_put = headers
        .get("x-amz-target")
        .is_some_and(|t| t.as_bytes().ends_with(b".PutItem"));
    let Ok(request) = request.body(Full::new(body)) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Ok(answer) = client.request(request).await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    if is_put && proxy.lost.fetch_add(1, Ordering::SeqCst) == 0 {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "application/x-amz-json-1.0")],
            json!({"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError", "message": "the answer was lost"}).to_string(),
        )
            .into_response();
    }
    let (parts, body) = answer.into_parts();
    let Ok(body) = body.collect().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    (parts.status, parts.headers, body.to_bytes()).into_response()
}

#[tokio::test]
async fn a_claim_applied_whose_answer_was_lost_is_still_the_claimants() {
    let db = started().await;
    let proxy = LosesFirstPut {
        upstream: db.endpoint().trim_end_matches('/').to_string(),
        lost: Arc::new(AtomicUsize::new(0)),
    };
    let lost = proxy.lost.clone();
    let addr = support::serve(Router::new().fallback(forward).with_state(proxy)).await;
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version_latest()
        .region(Region::new(db.region().to_string()))
        .credentials_provider(Credentials::new("local", "local", None, None, "test"))
        .endpoint_url(format!("http://{addr}"))
        .build();
    let claims = ClaimsTable::new(aws_sdk_dynamodb::Client::from_conf(config), "claims");
    assert!(
        within(claims.claim("m1#a", "t1"))
            .await
            .expect("claimed after the SDK's retry"),
        "the retry found its own token: claimed, not a duplicate"
    );
    assert_eq!(
        lost.load(Ordering::SeqCst),
        2,
        "the first answer was lost, the retry answered"
    );
    assert!(
        !within(claims.claim("m1#a", "t2"))
            .await
            .expect("another delivery")
    );
}

/// 1,000 broadcasts, each continued by one more invocation (two posts per
/// invocation, four recipients): the claims go to their own table, and the
/// connections table — what every broadcast's Scan reads — holds exactly the
/// five connections it held before.
#[tokio::test]
async fn a_thousand_broadcasts_leave_the_connections_table_as_it_was() {
    let db = started().await;
    let ids: Vec<String> = (0..5).map(|i| format!("conn-{i}")).collect();
    let registry = support::connections_table(&db, &ids).await;
    let count = |table: &'static str| {
        let client = db.client();
        async move {
            client
                .scan()
                .table_name(table)
                .select(aws_sdk_dynamodb::types::Select::Count)
                .send()
                .await
                .expect("count")
                .count()
        }
    };
    let before = within(count("connections")).await;
    let pages = FanoutTable::new(db.client(), "connections");
    let claims = ClaimsTable::new(db.client(), "claims");
    let (queue, messenger, losses) = (
        MemoryQueue::default(),
        MemoryMessenger::new(),
        MemoryReport::default(),
    );
    let services = Services {
        pages: &pages,
        claims: &claims,
        relay: &queue,
        losses: &losses,
        limits: Limits {
            per_invocation: Some(2),
            ..Limits::default()
        },
    };
    let run = |raw| {
        websocket_handler::handle(
            raw,
            &registry,
            &messenger,
            &services,
            Deadline::after(Duration::from_secs(10)),
        )
    };
    for n in 0..1_000 {
        let event = support::sendmessage_event("conn-0", &format!("m{n}"), json!(n));
        let answered = within(run(event)).await.expect("served");
        assert_eq!(answered.status_code, 200);
        while let Some(continuation) = queue.pop() {
            within(run(continuation)).await.expect("served");
        }
    }
    assert_eq!(within(count("connections")).await, before);
    assert_eq!(
        within(count("claims")).await,
        1_000,
        "one continuation a broadcast, claimed once"
    );
    assert_eq!(
        messenger.posts().len(),
        4_000 + 1_000,
        "four recipients and the sender's `sent`, each broadcast"
    );
    assert!(losses.total().is_empty(), "{:?}", losses.total());
}
