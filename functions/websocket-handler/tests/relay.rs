//! The hand-off's `Invoke` against a loopback stand-in for Lambda's Invoke
//! API: queued is 202, anything else an error naming it, and one call is one
//! request — the SDK does not retry it (the fan-out's `hand_on` does), and a
//! call that gets no answer ends at the attempt timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_runtime_api::client::behavior_version::BehaviorVersion;
use aws_types::SdkConfig;
use aws_types::region::Region;
use axum::http::StatusCode;
use axum::routing::post;
use websocket_handler::fanout::{Continuation, Relay, Remainder};
use websocket_handler::relay::{ATTEMPT_TIMEOUT, SelfInvoke};

mod support;

const LIMIT: Duration = Duration::from_secs(30);

/// Answers every Invoke of `function` with `status` after `delay`; counts them.
async fn invoke_api(status: StatusCode, delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = axum::Router::new().route(
        "/2015-03-31/functions/{name}/invocations",
        post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                (status, "{}")
            }
        }),
    );
    (support::serve(app).await, calls)
}

fn relay(addr: SocketAddr) -> SelfInvoke {
    let credentials = Credentials::new("local", "local", None, None, "test");
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .endpoint_url(format!("http://{addr}"))
        .build();
    SelfInvoke::new(&sdk, "websocket-handler")
}

fn continuation() -> Continuation {
    Continuation {
        id: "c1".into(),
        message_id: "m".into(),
        sender: "s".into(),
        frame: "{}".into(),
        hop: 1,
        attempt: 0,
        claim_token: None,
        remainder: Remainder::everyone(),
    }
}

#[tokio::test]
async fn a_queued_event_is_202_and_one_request() {
    let (addr, calls) = invoke_api(StatusCode::ACCEPTED, Duration::ZERO).await;
    let handed = tokio::time::timeout(LIMIT, relay(addr).hand_off(&continuation()))
        .await
        .expect("in time");
    assert_eq!(handed, Ok(()));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failed_invoke_is_an_error_and_not_retried_by_the_sdk() {
    let (addr, calls) = invoke_api(StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO).await;
    let error = tokio::time::timeout(LIMIT, relay(addr).hand_off(&continuation()))
        .await
        .expect("in time")
        .expect_err("a 503 is not queued");
    assert!(error.contains("Invoke websocket-handler"), "{error}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one request: hand_on retries, not the SDK"
    );
}

#[tokio::test]
async fn an_invoke_without_an_answer_ends_at_the_attempt_timeout() {
    let (addr, calls) = invoke_api(StatusCode::ACCEPTED, Duration::from_secs(20)).await;
    let started = tokio::time::Instant::now();
    let error = tokio::time::timeout(LIMIT, relay(addr).hand_off(&continuation()))
        .await
        .expect("in time")
        .expect_err("no answer");
    let took = started.elapsed();
    assert!(
        took >= ATTEMPT_TIMEOUT && took < ATTEMPT_TIMEOUT * 3,
        "{took:?}: {error}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
