//! `ManagementApiMessenger` (src/post_client.rs) against a loopback
//! management API: the request goes to `/{stage}/@connections/{id}` of the
//! configured endpoint with the id as one percent-encoded path segment and a
//! valid SigV4 signature for `execute-api`; 410 is `PostError::Gone`, other
//! errors name the status and the service's message; a refused connection
//! and a 429 are tried again, a post without an answer is not, and costs one
//! operation timeout, not the invocation.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::SigningParams;
use aws_smithy_runtime_api::client::behavior_version::BehaviorVersion;
use aws_types::SdkConfig;
use aws_types::region::Region;
use axum::http::StatusCode;
use websocket_handler::deadline::OPERATION_TIMEOUT;
use websocket_handler::event::ApiAddress;
use websocket_handler::messenger::{
    EndpointSource, ManagementApi, Messenger, Messengers, PostError,
};

const LIMIT: Duration = Duration::from_secs(60);
const SECRET: &str = "local-secret";

fn sdk() -> SdkConfig {
    let credentials = Credentials::new("local", SECRET, Some("session".into()), None, "test");
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build()
}

fn messenger(endpoint: &str) -> Arc<dyn Messenger> {
    ManagementApi::new(&sdk(), Some(endpoint))
        .expect("management api")
        .for_api(&ApiAddress::default())
        .expect("messenger")
}

async fn post(messenger: &Arc<dyn Messenger>, id: &str, data: &[u8]) -> Result<(), PostError> {
    tokio::time::timeout(LIMIT, messenger.post(id, data))
        .await
        .expect("the post has no deadline")
}

#[tokio::test]
async fn posts_reach_the_configured_endpoint_and_410_is_gone() {
    let (base, posts) = support::management_api().await;
    posts.mark_gone("left");
    let api = ManagementApi::new(&sdk(), Some(&format!("{base}/prod"))).expect("api");
    assert_eq!(
        api.source(),
        &EndpointSource::Configured(format!("{base}/prod"))
    );
    let messenger = api.for_api(&ApiAddress::default()).expect("messenger");

    post(&messenger, "conn-1", br#"{"type":"pong"}"#)
        .await
        .expect("post");
    assert_eq!(
        posts.delivered(),
        [(
            "prod".to_string(),
            "conn-1".to_string(),
            br#"{"type":"pong"}"#.to_vec()
        )]
    );
    assert_eq!(post(&messenger, "left", b"x").await, Err(PostError::Gone));
}

#[tokio::test]
async fn an_id_is_one_percent_encoded_path_segment() {
    let (base, posts) = support::management_api().await;
    let messenger = messenger(&format!("{base}/prod/"));
    for id in ["Ab1=", "a+b", "a/b", "x-y_z.~"] {
        post(&messenger, id, id.as_bytes()).await.expect("post");
    }
    let paths: Vec<String> = posts.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/prod/@connections/Ab1%3D",
            "/prod/@connections/a%2Bb",
            "/prod/@connections/a%2Fb",
            "/prod/@connections/x-y_z.~",
        ]
    );
    let ids: Vec<String> = posts.delivered().into_iter().map(|(_, id, _)| id).collect();
    assert_eq!(ids, ["Ab1=", "a+b", "a/b", "x-y_z.~"]);
}

/// Recomputes the request's signature from what arrived, as API Gateway
/// does: the headers it names, its body, its `x-amz-date`, the scope's region.
fn expected_signature(request: &support::Received, secret: &str) -> String {
    let authorization = request.headers["authorization"].to_str().expect("ascii");
    let signed: Vec<&str> = authorization
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .expect("SignedHeaders")
        .split(';')
        .collect();
    let headers: Vec<(&str, &str)> = signed
        .iter()
        .map(|name| (*name, request.headers[*name].to_str().expect("ascii")))
        .collect();
    let date = request.headers["x-amz-date"].to_str().expect("ascii");
    let time: SystemTime = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ")
        .expect("x-amz-date")
        .and_utc()
        .into();
    let host = request.headers["host"].to_str().expect("ascii");
    let identity = Credentials::new("local", secret, Some("session".into()), None, "t").into();
    let mut settings = SigningSettings::default();
    settings.excluded_headers = None;
    let params = SigningParams::builder()
        .identity(&identity)
        .region("eu-west-1")
        .name("execute-api")
        .time(time)
        .settings(settings)
        .build()
        .expect("params")
        .into();
    let signable = SignableRequest::new(
        "POST",
        format!("http://{host}{}", request.path),
        headers.into_iter(),
        SignableBody::Bytes(&request.body),
    )
    .expect("signable");
    sign(signable, &params)
        .expect("sign")
        .signature()
        .to_string()
}

#[tokio::test]
async fn the_request_is_signed_with_sigv4_for_execute_api() {
    let (base, posts) = support::management_api().await;
    let messenger = messenger(&format!("{base}/prod"));
    post(&messenger, "a=b", b"{\"hello\":1}")
        .await
        .expect("post");
    let requests = posts.requests();
    let request = &requests[0];
    let authorization = request.headers["authorization"].to_str().expect("ascii");
    let today = chrono::Utc::now().format("%Y%m%d");
    assert!(
        authorization.starts_with(&format!(
            "AWS4-HMAC-SHA256 Credential=local/{today}/eu-west-1/execute-api/aws4_request, "
        )),
        "{authorization}"
    );
    assert!(
        authorization.contains("SignedHeaders=host;x-amz-date;x-amz-security-token,"),
        "{authorization}"
    );
    assert_eq!(request.headers["x-amz-security-token"], "session");
    let signature = authorization
        .rsplit("Signature=")
        .next()
        .expect("signature");
    assert_eq!(signature, expected_signature(request, SECRET));
    assert_ne!(signature, expected_signature(request, "another secret"));
}

#[tokio::test]
async fn other_errors_name_the_status_and_the_message() {
    let (base, posts) = support::management_api().await;
    posts.answer(
        "a",
        vec![(
            StatusCode::FORBIDDEN,
            r#"{"message":"Missing Authentication Token"}"#,
        )],
    );
    posts.answer(
        "b",
        vec![(StatusCode::BAD_GATEWAY, "<html>upstream</html>")],
    );
    let messenger = messenger(&format!("{base}/prod"));
    let Err(PostError::Other(forbidden)) = post(&messenger, "a", b"x").await else {
        panic!("403 is not another error");
    };
    assert!(forbidden.contains("403"), "{forbidden}");
    assert!(
        forbidden.contains("Missing Authentication Token"),
        "{forbidden}"
    );
    let Err(PostError::Other(bad_gateway)) = post(&messenger, "b", b"x").await else {
        panic!("502 is not another error");
    };
    assert!(bad_gateway.contains("502"), "{bad_gateway}");
    assert!(
        bad_gateway.contains("<html>upstream</html>"),
        "{bad_gateway}"
    );
    assert_eq!(posts.requests().len(), 2, "neither is tried again");
}

#[tokio::test]
async fn a_throttled_post_is_tried_again() {
    let (base, posts) = support::management_api().await;
    let throttled = (
        StatusCode::TOO_MANY_REQUESTS,
        r#"{"message":"Too Many Requests"}"#,
    );
    posts.answer("slow", vec![throttled]);
    posts.answer("never", vec![throttled; 10]);
    let messenger = messenger(&format!("{base}/prod"));
    post(&messenger, "slow", b"x")
        .await
        .expect("second attempt");
    assert_eq!(posts.texts_to("slow"), ["x"]);
    let Err(PostError::Refused(error)) = post(&messenger, "never", b"x").await else {
        panic!("always throttled is refused: certainly not delivered, safe to try later");
    };
    assert!(
        error.contains("429") && error.contains("Too Many Requests"),
        "{error}"
    );
    let attempts = posts.requests().len() - 2;
    assert_eq!(attempts, 3, "three attempts, then the error: {error}");
}

#[tokio::test]
async fn answers_with_bodies_over_the_read_limit_keep_their_meaning() {
    // The function reads at most 16 KB of an answer's body. Past that, a 2xx is
    // still delivered and a 410 still gone; any other status is an error that
    // is not tried again (not even a 429: what was sent is unknown).
    let (base, posts) = support::management_api().await;
    let long: &'static str = "y".repeat(20 * 1024).leak();
    posts.answer("ok", vec![(StatusCode::OK, long)]);
    posts.answer("gone", vec![(StatusCode::GONE, long)]);
    posts.answer("busy", vec![(StatusCode::TOO_MANY_REQUESTS, long); 3]);
    let messenger = messenger(&format!("{base}/prod"));
    assert_eq!(post(&messenger, "ok", b"x").await, Ok(()));
    assert_eq!(post(&messenger, "gone", b"x").await, Err(PostError::Gone));
    let result = post(&messenger, "busy", b"x").await;
    let Err(PostError::Other(error)) = &result else {
        panic!("a 429 whose body failed is another error: {result:?}");
    };
    assert!(error.contains("429"), "{error}");
    assert_eq!(posts.requests().len(), 3, "one request each");

    // Within the 16 KB, a long body is read whole: a 403's message after
    // 10 KB of other fields is named, and a 429 is still tried again.
    let padded: &'static str = format!(
        r#"{{"detail":"{}","message":"Forbidden for this stage"}}"#,
        "p".repeat(10 * 1024)
    )
    .leak();
    posts.answer("denied", vec![(StatusCode::FORBIDDEN, padded)]);
    posts.answer("throttled", vec![(StatusCode::TOO_MANY_REQUESTS, padded)]);
    let Err(PostError::Other(denied)) = post(&messenger, "denied", b"x").await else {
        panic!("a 403 is another error");
    };
    assert!(denied.contains("Forbidden for this stage"), "{denied}");
    assert_eq!(post(&messenger, "throttled", b"x").await, Ok(()));
    assert_eq!(posts.texts_to("throttled"), ["x"]);
}

#[tokio::test]
async fn a_refused_connection_is_tried_again() {
    let port = free_port();
    let messenger = messenger(&format!("http://127.0.0.1:{port}/prod"));
    // Nobody listens at the first attempt; the stand-in starts during the backoff.
    let posting = tokio::spawn(async move { post(&messenger, "conn-1", b"x").await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the freed port");
    let (_, posts) = support::management_api_on(listener);
    posting.await.expect("task").expect("posted after a retry");
    assert_eq!(posts.texts_to("conn-1"), ["x"]);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_refused_after_three_attempts() {
    let messenger = messenger(&format!("http://127.0.0.1:{}/prod", free_port()));
    let result = post(&messenger, "conn-1", b"x").await;
    let Err(PostError::Refused(error)) = result else {
        panic!("{result:?}");
    };
    assert!(error.contains("after 3 attempts"), "{error}");
    assert!(
        error.contains("Connection refused"),
        "the cause is named: {error}"
    );
}

/// What a server that never answers does with each connection.
#[derive(Clone, Copy)]
enum Silence {
    /// Reads the request, then closes the connection.
    ReadThenClose,
    /// Keeps the connection open and reads nothing.
    Hold,
}

/// A loopback server that never answers: its address, how many
/// connections it accepted, and its task (abort it when done).
async fn never_answers(
    silence: Silence,
) -> (
    std::net::SocketAddr,
    Arc<AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            match silence {
                Silence::ReadThenClose => {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                }
                Silence::Hold => held.push(socket),
            }
        }
    });
    (addr, accepted, task)
}

#[tokio::test]
async fn a_connection_closed_without_an_answer_is_not_tried_again() {
    // Reads the request, then closes: the post may have been delivered.
    let (addr, accepted, closing) = never_answers(Silence::ReadThenClose).await;
    let messenger = messenger(&format!("http://{addr}/prod"));
    let result = post(&messenger, "conn-1", b"x").await;
    closing.abort();
    let Err(PostError::Other(error)) = &result else {
        panic!("a closed connection is another error: {result:?}");
    };
    assert!(error.contains("failed"), "{error}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "not sent again");
}

#[tokio::test]
async fn a_post_without_an_answer_fails_within_the_operation_timeout_and_is_not_retried() {
    // Accepts connections, reads nothing, answers nothing.
    let (addr, accepted, held) = never_answers(Silence::Hold).await;
    let messenger = messenger(&format!("http://{addr}/prod"));
    let started = tokio::time::Instant::now();
    let result = post(&messenger, "conn-1", b"x").await;
    let took = started.elapsed();
    held.abort();
    assert!(
        matches!(result, Err(PostError::Unconfirmed(_))),
        "{result:?}"
    );
    // The function's default timeout is 10 s; the call must end well before.
    assert!(
        took >= OPERATION_TIMEOUT / 2 && took < Duration::from_secs(8),
        "the call took {took:?}"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "a timed-out post is not sent again"
    );
}

#[test]
fn a_bad_management_endpoint_stops_the_start() {
    let error = ManagementApi::new(&sdk(), Some("127.0.0.1:8081/prod")).expect_err("no scheme");
    assert!(error.to_string().contains("MANAGEMENT_ENDPOINT"), "{error}");
}

/// A loopback port nobody listens on (bound, then dropped).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}
