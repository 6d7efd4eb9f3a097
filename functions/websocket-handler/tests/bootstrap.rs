//! The built binary, run as Lambda runs it: a loopback Lambda Runtime API
//! hands it events, DynamoDB is a real local server (Dynoxide) and the management API a
//! loopback stand-in, reached through `AWS_ENDPOINT_URL_DYNAMODB` and
//! `MANAGEMENT_ENDPOINT` with dummy credentials — the variables the local
//! stack sets, and the same code path as in AWS.

mod support;

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use local_dynamodb::LocalDynamoDb;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::sync::{Notify, mpsc};

const LIMIT: Duration = Duration::from_secs(120);
const API_KEY: &str = "the-secret-api-key";

#[derive(Clone)]
struct RuntimeApi {
    queue: Arc<Mutex<VecDeque<(String, Value)>>>,
    ready: Arc<Notify>,
    results: mpsc::UnboundedSender<(String, String, Value)>,
}

async fn next(State(api): State<RuntimeApi>) -> Response {
    loop {
        let notified = api.ready.notified();
        let popped = api.queue.lock().pop_front();
        if let Some((id, event)) = popped {
            let deadline = (chrono::Utc::now().timestamp_millis() + 30_000).to_string();
            return (
                StatusCode::OK,
                [
                    ("lambda-runtime-aws-request-id", id.as_str()),
                    ("lambda-runtime-deadline-ms", deadline.as_str()),
                    (
                        "lambda-runtime-invoked-function-arn",
                        "arn:aws:lambda:us-east-1:000000000000:function:ws",
                    ),
                ],
                event.to_string(),
            )
                .into_response();
        }
        notified.await;
    }
}

async fn outcome(
    State(api): State<RuntimeApi>,
    Path((id, kind)): Path<(String, String)>,
    body: Bytes,
) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let _ = api.results.send((id, kind, value));
    StatusCode::ACCEPTED
}

impl RuntimeApi {
    fn push(&self, id: &str, event: Value) {
        self.queue.lock().push_back((id.to_string(), event));
        self.ready.notify_waiters();
        self.ready.notify_one();
    }
}

fn event(route: &str, connection_id: &str, body: Option<&str>) -> Value {
    json!({
        "requestContext": {
            "routeKey": route, "eventType": "MESSAGE", "messageId": "m", "stage": "local",
            "connectedAt": chrono::Utc::now().timestamp_millis(), "requestTimeEpoch": chrono::Utc::now().timestamp_millis(),
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "test"}, "requestId": "r",
            "domainName": "127.0.0.1", "connectionId": connection_id, "apiId": "local"
        },
        "headers": {"x-api-key": API_KEY},
        "body": body,
        "isBase64Encoded": false
    })
}

#[tokio::test]
async fn the_binary_serves_events_with_no_aws_account() {
    let db = tokio::time::timeout(LIMIT, LocalDynamoDb::start())
        .await
        .expect("timed out")
        .expect("the local DynamoDB");
    tokio::time::timeout(LIMIT, db.create_table("connections", "connectionId"))
        .await
        .expect("timed out")
        .expect("table");
    tokio::time::timeout(LIMIT, db.create_table("claims", "claimId"))
        .await
        .expect("timed out")
        .expect("claims table");
    let (management, posts) = support::management_api().await;

    let (results_tx, mut results) = mpsc::unbounded_channel();
    let runtime = RuntimeApi {
        queue: Default::default(),
        ready: Arc::new(Notify::new()),
        results: results_tx,
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(outcome))
        .with_state(runtime.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let runtime_addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let home = std::env::temp_dir().join(format!("websocket-handler-test-{}", std::process::id()));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_websocket-handler"))
        .env_clear()
        .env("HOME", &home)
        .env("AWS_LAMBDA_RUNTIME_API", runtime_addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "websocket-handler")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_REGION", db.region())
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL_DYNAMODB", db.endpoint())
        .env("MANAGEMENT_ENDPOINT", format!("{management}/local"))
        .env("CONNECTIONS_TABLE", "connections")
        .env("CLAIMS_TABLE", "claims")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the function");

    let mut invoke = async |id: &str, event: Value| -> Value {
        runtime.push(id, event);
        let (got, kind, body) = tokio::time::timeout(LIMIT, results.recv())
            .await
            .expect("no answer")
            .expect("channel");
        assert_eq!(got.as_str(), id, "{body}");
        // A failed invocation (the runtime's /error) as its own shape, which
        // has no statusCode.
        match kind.as_str() {
            "response" => body,
            _ => json!({ "invocationError": body }),
        }
    };

    assert_eq!(
        invoke("1", event("$connect", "a", None)).await["statusCode"],
        200
    );
    // b connected an hour ago: old enough for a 410 to remove it.
    let mut connect_b = event("$connect", "b", None);
    connect_b["requestContext"]["connectedAt"] =
        json!(chrono::Utc::now().timestamp_millis() - 3_600_000);
    assert_eq!(invoke("2", connect_b).await["statusCode"], 200);
    let sent = invoke(
        "3",
        event(
            "sendmessage",
            "a",
            Some(r#"{"action":"sendmessage","data":{"n":1}}"#),
        ),
    )
    .await;
    assert_eq!(sent["statusCode"], 200);
    let to_b: Vec<Value> = posts
        .texts_to("b")
        .iter()
        .map(|t| serde_json::from_str(t).expect("json"))
        .collect();
    assert_eq!(to_b.len(), 1);
    assert_eq!(
        (to_b[0]["type"].as_str(), to_b[0]["from"].as_str()),
        (Some("message"), Some("a"))
    );
    assert_eq!(to_b[0]["data"], json!({"n": 1}));
    assert_eq!(posts.texts_to("a"), [r#"{"type":"sent","recipients":1}"#]);

    assert_eq!(
        invoke("4", event("ping", "b", Some(r#"{"action":"ping"}"#))).await["statusCode"],
        200
    );
    assert_eq!(
        posts.texts_to("b").last().map(String::as_str),
        Some(r#"{"type":"pong"}"#)
    );

    assert_eq!(
        invoke("5", event("$default", "a", Some("{nope"))).await["statusCode"],
        400
    );
    let last = posts.texts_to("a").pop().expect("error frame");
    assert!(last.contains(r#""code":"invalid_json""#), "{last}");

    // A connection the management API calls gone is dropped from the table,
    // unless it opened moments ago (its $connect may still be running): c.
    assert_eq!(
        invoke("5c", event("$connect", "c", None)).await["statusCode"],
        200
    );
    posts.mark_gone("b");
    posts.mark_gone("c");
    invoke(
        "6",
        event(
            "sendmessage",
            "a",
            Some(r#"{"action":"sendmessage","data":2}"#),
        ),
    )
    .await;
    assert_eq!(
        posts.texts_to("a").pop().as_deref(),
        Some(r#"{"type":"sent","recipients":0}"#)
    );
    let scan = db
        .client()
        .scan()
        .table_name("connections")
        .send()
        .await
        .expect("scan");
    let mut left: Vec<String> = scan
        .items()
        .iter()
        .filter_map(|item| item.get("connectionId")?.as_s().ok().cloned())
        .collect();
    left.sort();
    assert_eq!(left, ["a", "c"], "b should have been removed, c kept");

    // A recipient whose post is refused (403) is a loss: an EMF line on
    // stdout, which CloudWatch turns into the alarmed metric.
    assert_eq!(
        invoke("6d", event("$connect", "d", None)).await["statusCode"],
        200
    );
    posts.answer(
        "d",
        vec![(StatusCode::FORBIDDEN, r#"{"message":"Forbidden"}"#)],
    );
    invoke(
        "6e",
        event(
            "sendmessage",
            "a",
            Some(r#"{"action":"sendmessage","data":3}"#),
        ),
    )
    .await;

    assert_eq!(
        invoke("7", json!({"not": "an event"})).await["statusCode"],
        400
    );
    // A forged continuation whose hop would overflow: the invocation fails
    // with a message naming the bound (Lambda's on-failure destination keeps
    // such an event), and the process goes on serving.
    let forged = invoke(
        "7f",
        json!({"fanout": {"id": "x", "messageId": "m", "sender": "a", "frame": "{}",
            "hop": 4294967295u32, "remainder": {"pending": [], "cursor": {"at": "start"}}}}),
    )
    .await;
    let error = &forged["invocationError"];
    assert!(error.to_string().contains("hop is 4294967295"), "{forged}");
    assert_eq!(
        invoke("8", event("$disconnect", "a", None)).await["statusCode"],
        200
    );
    // All posts went to the stage of the override URL.
    assert!(
        posts
            .delivered()
            .iter()
            .all(|(stage, _, _)| stage == "local")
    );

    let _ = child.start_kill();
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = tokio::time::timeout(LIMIT, out.read_to_string(&mut stdout)).await;
    }
    let _ = tokio::time::timeout(LIMIT, child.wait()).await;
    let _ = std::fs::remove_dir_all(&home);
    // JSON lines, a warning for each piece of bad input, and never the key
    // or a message body.
    let lines: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(
        lines.len(),
        stdout.lines().count(),
        "non-JSON log lines:\n{stdout}"
    );
    assert!(
        lines.iter().filter(|l| l["level"] == "WARN").count() >= 2,
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.get("_aws").is_some()
            && l["RecipientsNotReached"] == 1
            && l["Reason"] == "post_failed"),
        "no EMF line for the refused post:\n{stdout}"
    );
    // The start-up line names the function hand-offs invoke (itself).
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "initialised"
            && l["fields"]["function"] == "websocket-handler"),
        "no start-up line naming the function:\n{stdout}"
    );
    assert!(!stdout.contains(API_KEY), "the API key was logged");
    assert!(!stdout.contains("{nope"), "a message body was logged");
}

#[tokio::test]
async fn a_missing_table_setting_stops_the_function_with_a_clear_error() {
    let output = tokio::time::timeout(
        LIMIT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_websocket-handler"))
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
            .env("AWS_REGION", "us-east-1")
            .output(),
    )
    .await
    .expect("timed out")
    .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CONNECTIONS_TABLE"), "{stderr}");
}
