//! `ManagementApiMessenger` through the real SDK against a loopback
//! management API: the request goes to `/{stage}/@connections/{id}` of the
//! configured endpoint, a 410 `GoneException` becomes `PostError::Gone`, and
//! with the function's timeouts a server that never answers costs one
//! operation timeout, not the invocation.

mod support;

use std::time::Duration;

use aws_types::SdkConfig;
use aws_types::region::Region;
use websocket_handler::deadline::{OPERATION_TIMEOUT, sdk_timeouts};
use websocket_handler::event::ApiAddress;
use websocket_handler::messenger::{EndpointSource, ManagementApi, Messengers, PostError};

const LIMIT: Duration = Duration::from_secs(60);

fn sdk() -> SdkConfig {
    let credentials = aws_sdk_apigatewaymanagement::config::Credentials::new(
        "local", "local", None, None, "test",
    );
    SdkConfig::builder()
        .behavior_version(aws_sdk_apigatewaymanagement::config::BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(
            aws_sdk_apigatewaymanagement::config::SharedCredentialsProvider::new(credentials),
        )
        .build()
}

#[tokio::test]
async fn posts_reach_the_configured_endpoint_and_410_is_gone() {
    let (base, posts) = support::management_api().await;
    posts.mark_gone("left");
    let api = ManagementApi::new(&sdk(), Some(&format!("{base}/prod")));
    assert_eq!(
        api.source(),
        &EndpointSource::Configured(format!("{base}/prod"))
    );
    let messenger = api.for_api(&ApiAddress::default()).expect("messenger");

    tokio::time::timeout(LIMIT, messenger.post("conn-1", br#"{"type":"pong"}"#))
        .await
        .expect("timed out")
        .expect("post");
    assert_eq!(
        posts.delivered(),
        [(
            "prod".to_string(),
            "conn-1".to_string(),
            br#"{"type":"pong"}"#.to_vec()
        )]
    );

    let gone = tokio::time::timeout(LIMIT, messenger.post("left", b"x"))
        .await
        .expect("timed out");
    assert_eq!(gone, Err(PostError::Gone));
}

#[tokio::test]
async fn an_unreachable_endpoint_is_another_error() {
    // Bind and drop to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let api = ManagementApi::new(&sdk(), Some(&format!("http://127.0.0.1:{port}/prod")));
    let messenger = api.for_api(&ApiAddress::default()).expect("messenger");
    let result = tokio::time::timeout(LIMIT, messenger.post("conn-1", b"x"))
        .await
        .expect("timed out");
    assert!(matches!(result, Err(PostError::Other(_))), "{result:?}");
}

#[tokio::test]
async fn a_management_api_that_never_answers_fails_within_the_operation_timeout() {
    // Accepts connections, reads nothing, answers nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
        }
    });
    let mut config = sdk().into_builder();
    config.set_timeout_config(Some(sdk_timeouts()));
    let api = ManagementApi::new(&config.build(), Some(&format!("http://{addr}/prod")));
    let messenger = api.for_api(&ApiAddress::default()).expect("messenger");
    let started = tokio::time::Instant::now();
    let result = tokio::time::timeout(LIMIT, messenger.post("conn-1", b"x"))
        .await
        .expect("the SDK call has no deadline");
    let took = started.elapsed();
    held.abort();
    assert!(matches!(result, Err(PostError::Other(_))), "{result:?}");
    // The function's default timeout is 10 s; the call must end well before.
    assert!(
        took >= OPERATION_TIMEOUT / 2 && took < Duration::from_secs(8),
        "the call took {took:?}"
    );
}
