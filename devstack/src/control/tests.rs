//! The control endpoint's door: only signed JSON requests to a loopback
//! name get in, and nothing a browser page can send does.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::client::ControlClient;
use super::{Connections, FaultPlan, Limit, server::ControlServer};
use crate::stack::Endpoints;

/// Records what the control asked of the connections.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Connections for Recorder {
    fn expire(&self, connection: Option<&str>, limit: Limit) -> usize {
        self.0
            .lock()
            .push(format!("expire {connection:?} {limit:?}"));
        usize::from(connection != Some("gone"))
    }
    fn drop_without_disconnect(&self, connection: &str) -> bool {
        self.0.lock().push(format!("drop {connection}"));
        true
    }
}

fn server() -> (ControlServer, Arc<FaultPlan>, Arc<Recorder>) {
    let plan = Arc::new(FaultPlan::default());
    let recorder = Arc::new(Recorder::default());
    let server = ControlServer::new("eu-west-1", plan.clone(), recorder.clone());
    (server, plan, recorder)
}

fn client() -> ControlClient {
    ControlClient::new(&Endpoints::example()).expect("the example's control endpoint")
}

async fn send(server: &ControlServer, request: Request<Body>) -> (StatusCode, Value, bool) {
    let response = server.router().oneshot(request).await.expect("infallible");
    let status = response.status();
    let cors = response
        .headers()
        .keys()
        .any(|name| name.as_str().starts_with("access-control-"));
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        cors,
    )
}

fn signed(method: &str, path: &str, body: &Value) -> Request<Body> {
    let body = Bytes::from(serde_json::to_vec(body).expect("json"));
    client()
        .signed(method, path, body)
        .expect("signed")
        .map(Body::new)
}

#[tokio::test]
async fn signed_json_requests_arm_faults_and_expire_connections() {
    let (server, plan, recorder) = server();
    let (status, body, _) = send(
        &server,
        signed("POST", "/faults/kill", &json!({"count": 2})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(plan.take_kill() && plan.take_kill() && !plan.take_kill());

    let (status, body, _) = send(
        &server,
        signed("POST", "/expire", &json!({"limit": "life"})),
    )
    .await;
    assert_eq!(
        (status, body["expired"].clone()),
        (StatusCode::OK, json!(1))
    );
    let (status, body, _) = send(
        &server,
        signed(
            "POST",
            "/expire",
            &json!({"connection": "gone", "limit": "idle"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"gone\"")),
        "{body}"
    );
    assert_eq!(
        *recorder.0.lock(),
        ["expire None Life", "expire Some(\"gone\") Idle"]
    );
}

#[tokio::test]
async fn bad_arguments_are_named() {
    let (server, _, _) = server();
    let (status, body, _) = send(
        &server,
        signed("POST", "/faults/kill", &json!({"count": 0})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("between 1 and 10000")),
        "{body}"
    );
    let (status, _, _) = send(
        &server,
        signed("POST", "/faults/kill", &json!({"count": 1, "extra": 1})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown fields are refused"
    );
}

#[tokio::test]
async fn what_a_web_page_can_send_is_refused_without_cors() {
    let (server, plan, recorder) = server();
    // A cross-site form or fetch without preflight: unsigned, text/plain.
    let simple = Request::post("/faults/kill")
        .header("host", "127.0.0.1:5")
        .header("content-type", "text/plain")
        .header("origin", "https://evil.example")
        .body(Body::from(r#"{"count":1}"#))
        .expect("request");
    let (status, body, cors) = send(&server, simple).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["message"], "Missing Authentication Token");
    assert!(!cors, "no CORS header may answer a page");
    // The preflight a signed request would need gets no CORS answer.
    let preflight = Request::options("/faults/kill")
        .header("host", "127.0.0.1:5")
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,x-amz-date,content-type",
        )
        .body(Body::empty())
        .expect("request");
    let (status, _, cors) = send(&server, preflight).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!cors);
    // A page on a rebound DNS name: refused by its Host before anything else.
    let mut rebound = signed("POST", "/faults/kill", &json!({"count": 1}));
    rebound
        .headers_mut()
        .insert("host", "evil.example:5".parse().expect("header"));
    let (status, body, _) = send(&server, rebound).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("evil.example")),
        "{body}"
    );
    assert!(
        !plan.take_kill() && recorder.0.lock().is_empty(),
        "nothing was armed"
    );
}
