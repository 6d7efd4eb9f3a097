//! `ManagementApiMessenger` through the real SDK against a loopback
//! management API: the request goes to `/{stage}/@connections/{id}` of the
//! configured endpoint, and a 410 `GoneException` becomes `PostError::Gone`.

mod support;

use std::time::Duration;

use aws_types::SdkConfig;
use aws_types::region::Region;
use websocket_handler::event::ApiAddress;
use websocket_handler::messenger::{EndpointSource, ManagementApi, Messengers, PostError};

const LIMIT: Duration = Duration::from_secs(60);

fn sdk() -> SdkConfig {
    let credentials = aws_sdk_apigatewaymanagement::config::Credentials::new(
        "local", "local", None, None, "test",
    );
    SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
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
