//! Loopback servers for the tests (`serve`), and on one a stand-in for API
//! Gateway's management API, enough for `PostToConnection`: it records what it is sent (with the raw path and the
//! headers) and answers 410 `GoneException` (as API Gateway does) for
//! connections marked gone, or a given error for connections told to.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

#[derive(Debug, Clone, Default)]
pub struct Posts {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    delivered: Vec<(String, String, Vec<u8>)>,
    gone: HashSet<String>,
    /// Answers to give a connection's next posts, first first.
    answers: HashMap<String, Vec<(StatusCode, &'static str)>>,
    requests: Vec<Received>,
}

/// One request as it arrived, answered or not.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Posts {
    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    pub fn mark_gone(&self, id: &str) {
        self.lock().gone.insert(id.to_string());
    }

    /// The next posts to `id` get these answers (status, body), in order.
    pub fn answer(&self, id: &str, answers: Vec<(StatusCode, &'static str)>) {
        self.lock().answers.insert(id.to_string(), answers);
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Received> {
        self.lock().requests.clone()
    }

    /// (stage, connection id, body) of every accepted post.
    pub fn delivered(&self) -> Vec<(String, String, Vec<u8>)> {
        self.lock().delivered.clone()
    }

    pub fn texts_to(&self, id: &str) -> Vec<String> {
        self.delivered()
            .into_iter()
            .filter(|(_, to, _)| to == id)
            .map(|(_, _, body)| String::from_utf8_lossy(&body).into_owned())
            .collect()
    }
}

async fn post_to_connection(
    State(posts): State<Posts>,
    Path((stage, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = posts.lock();
    inner.requests.push(Received {
        path: uri.path().to_string(),
        headers,
        body: body.to_vec(),
    });
    if let Some(answers) = inner.answers.get_mut(&id).filter(|a| !a.is_empty()) {
        let (status, body) = answers.remove(0);
        return (status, body).into_response();
    }
    if inner.gone.contains(&id) {
        return (
            StatusCode::GONE,
            [("x-amzn-ErrorType", "GoneException")],
            r#"{"message":null}"#,
        )
            .into_response();
    }
    inner.delivered.push((stage, id, body.to_vec()));
    StatusCode::OK.into_response()
}

/// Serves `POST /{stage}/@connections/{id}` on a free loopback port; returns
/// the base URL (`http://127.0.0.1:PORT`) and the record of posts.
pub async fn management_api() -> (String, Posts) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    management_api_on(listener)
}

/// [`management_api`] on a listener the caller bound.
pub fn management_api_on(listener: tokio::net::TcpListener) -> (String, Posts) {
    let posts = Posts::default();
    let app = Router::new()
        .route("/{stage}/@connections/{id}", post(post_to_connection))
        .with_state(posts.clone());
    let addr = serve_on(listener, app);
    (format!("http://{addr}"), posts)
}

/// Serves `app` on a free loopback port for the rest of the test; its address.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    serve_on(listener, app)
}

/// Serves `app` on `listener` for the rest of the test; its address.
pub fn serve_on(listener: tokio::net::TcpListener, app: Router) -> SocketAddr {
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// An API Gateway `sendmessage` event from `connection_id`, with its own
/// message id, carrying `data`.
pub fn sendmessage_event(
    connection_id: &str,
    message_id: &str,
    data: serde_json::Value,
) -> serde_json::Value {
    let body = serde_json::json!({ "action": "sendmessage", "data": data }).to_string();
    serde_json::json!({
        "requestContext": {
            "routeKey": "sendmessage",
            "eventType": "MESSAGE",
            "messageId": message_id,
            "extendedRequestId": "ext-1",
            "requestTime": "25/Nov/2026:15:00:00 +0000",
            "messageDirection": "IN",
            "stage": "prod",
            "connectedAt": 1_795_000_000_000i64,
            "requestTimeEpoch": 1_795_000_000_500i64,
            "identity": { "sourceIp": "192.0.2.10" },
            "requestId": "req-1",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "connectionId": connection_id,
            "apiId": "abc123"
        },
        "body": body,
        "isBase64Encoded": false
    })
}

/// A connections table named `connections` in `db`, holding `ids`
/// (connected now), and its registry.
pub async fn connections_table<'a>(
    db: &local_dynamodb::LocalDynamoDb,
    ids: impl IntoIterator<Item = &'a String>,
) -> websocket_handler::registry::DynamoDbRegistry {
    use websocket_handler::registry::{CONNECTION_ID, Connection, ConnectionRegistry};
    let limit = std::time::Duration::from_secs(300);
    tokio::time::timeout(limit, db.create_table("connections", CONNECTION_ID))
        .await
        .expect("timed out")
        .expect("create the connections table");
    let registry = websocket_handler::registry::DynamoDbRegistry::new(db.client(), "connections");
    for id in ids {
        let connection = Connection {
            connection_id: id.clone(),
            connected_at: chrono::Utc::now(),
            source_ip: None,
            user_agent: None,
            user_id: None,
        };
        tokio::time::timeout(limit, registry.register(&connection))
            .await
            .expect("timed out")
            .expect("register");
    }
    registry
}
