use std::sync::atomic::AtomicUsize;

use super::*;
use crate::lambda::invoke::{InvokeFuture, Limit};
use parking_lot::Mutex;
use serde_json::Value;

/// Records events; throttles the first `throttles` invocations, then fails
/// the next `failures` with a function error.
struct Recorder {
    events: Mutex<Vec<Value>>,
    throttles: AtomicUsize,
    failures: AtomicUsize,
}

fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl Invoke for Recorder {
    fn invoke_json(&self, event: axum::body::Bytes) -> InvokeFuture<'_> {
        let event: Value = serde_json::from_slice(&event).expect("the event is JSON");
        Box::pin(async move {
            if take_one(&self.throttles) {
                return Err(InvokeError::Throttled(Limit::Concurrency { at_once: 1000 }));
            }
            if take_one(&self.failures) {
                return Err(InvokeError::Function {
                    error_type: "Unhandled".into(),
                    message: "boom".into(),
                });
            }
            self.events.lock().push(event.clone());
            Ok(serde_json::json!({"statusCode": 200, "echo": event}))
        })
    }
}

async fn start(failures: usize, delivery: AsyncDelivery) -> (LambdaApi, Arc<Recorder>, String) {
    start_throttled(0, failures, delivery).await
}

async fn start_throttled(
    throttles: usize,
    failures: usize,
    delivery: AsyncDelivery,
) -> (LambdaApi, Arc<Recorder>, String) {
    let recorder = Arc::new(Recorder {
        events: Mutex::new(Vec::new()),
        throttles: AtomicUsize::new(throttles),
        failures: AtomicUsize::new(failures),
    });
    let api = LambdaApi::new(
        "fn-handler",
        "us-east-1",
        recorder.clone() as Arc<dyn Invoke>,
        delivery,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(api.clone().serve(listener));
    (api, recorder, url)
}

/// The function's own SDK client, pointed at the local API as
/// `AWS_ENDPOINT_URL_LAMBDA` points it.
fn client(url: &str) -> aws_sdk_lambda::Client {
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
        .region(aws_sdk_lambda::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_lambda::config::Credentials::new(
            "local", "local", None, None, "test",
        ))
        .endpoint_url(url)
        .build();
    aws_sdk_lambda::Client::from_conf(config)
}

const LIMIT: Duration = Duration::from_secs(30);

/// An asynchronous (`Event`) invocation of `function` with `payload`,
/// bounded by [`LIMIT`].
async fn invoke_event(
    sdk: &aws_sdk_lambda::Client,
    function: &str,
    payload: impl Into<Vec<u8>>,
) -> Result<
    aws_sdk_lambda::operation::invoke::InvokeOutput,
    aws_sdk_lambda::error::SdkError<aws_sdk_lambda::operation::invoke::InvokeError>,
> {
    tokio::time::timeout(
        LIMIT,
        sdk.invoke()
            .function_name(function)
            .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload.into()))
            .send(),
    )
    .await
    .expect("the invocation answered in time")
}

async fn until(what: &str, check: impl Fn() -> bool) {
    tokio::time::timeout(LIMIT, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test]
async fn an_event_invocation_is_queued_then_delivered_by_the_sdk_client() {
    let delivery = AsyncDelivery {
        max_retries: 0,
        ..AsyncDelivery::default()
    };
    let (api, recorder, url) = start(0, delivery).await;
    let output = invoke_event(
        &client(&url),
        "arn:aws:lambda:us-east-1:000000000000:function:fn-handler",
        br#"{"fanout":{"hop":1}}"#.to_vec(),
    )
    .await
    .expect("invoke");
    assert_eq!(output.status_code(), 202);
    until("the delivery", || recorder.events.lock().len() == 1).await;
    assert_eq!(recorder.events.lock()[0]["fanout"]["hop"], 1);
    assert!(api.drain(LIMIT).await);
    assert_eq!(api.counts().delivered.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn function_errors_are_retried_as_configured_then_dropped() {
    let (api, recorder, url) = start(
        5,
        AsyncDelivery {
            max_retries: 2,
            ..AsyncDelivery::default()
        },
    )
    .await;
    let sdk = client(&url);
    let status = invoke_event(&sdk, "fn-handler", b"{}".to_vec())
        .await
        .expect("invoke")
        .status_code();
    assert_eq!(status, 202);
    assert!(api.drain(LIMIT).await);
    assert_eq!(api.counts().dropped.load(Ordering::SeqCst), 1);
    assert!(recorder.events.lock().is_empty());
    assert_eq!(
        recorder.failures.load(Ordering::SeqCst),
        2,
        "one attempt and two retries"
    );
}

/// A full pool throttles; Lambda keeps a throttled asynchronous event and
/// retries it (not counted against the retries), so it is delivered, not
/// dropped — even with no retries for function errors. A synchronous call
/// that is throttled gets Lambda's 429.
#[tokio::test]
async fn a_throttled_event_waits_and_is_delivered_and_a_throttled_call_is_429() {
    let delivery = AsyncDelivery {
        max_retries: 0,
        ..AsyncDelivery::default()
    };
    let (api, recorder, url) = start_throttled(3, 0, delivery).await;
    let sdk = client(&url);
    let status = invoke_event(&sdk, "fn-handler", b"{\"n\":7}".to_vec())
        .await
        .expect("invoke")
        .status_code();
    assert_eq!(status, 202);
    assert!(api.drain(LIMIT).await);
    assert_eq!(api.counts().dropped.load(Ordering::SeqCst), 0);
    assert_eq!(api.counts().delivered.load(Ordering::SeqCst), 1);
    assert_eq!(recorder.events.lock()[0]["n"], 7);
    assert_eq!(recorder.throttles.load(Ordering::SeqCst), 0);

    recorder.throttles.store(1, Ordering::SeqCst);
    // One attempt: the SDK would retry a throttle.
    let once = aws_sdk_lambda::Client::from_conf(
        sdk.config()
            .to_builder()
            .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
            .build(),
    );
    let error = once
        .invoke()
        .function_name("fn-handler")
        .payload(aws_sdk_lambda::primitives::Blob::new(b"{}".to_vec()))
        .send()
        .await
        .expect_err("throttled");
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_too_many_requests_exception()),
        "{error:?}"
    );
}

#[tokio::test]
async fn duplicates_are_played_when_asked_and_unknown_functions_are_404() {
    let (api, recorder, url) = start(
        0,
        AsyncDelivery {
            deliveries: 2,
            ..AsyncDelivery::default()
        },
    )
    .await;
    let sdk = client(&url);
    invoke_event(&sdk, "fn-handler", b"{\"n\":1}".to_vec())
        .await
        .expect("invoke");
    assert!(api.drain(LIMIT).await);
    assert_eq!(recorder.events.lock().len(), 2);

    let error = sdk
        .invoke()
        .function_name("someone-else")
        .send()
        .await
        .expect_err("unknown function");
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{error:?}"
    );
    let big = vec![b' '; MAX_ASYNC_PAYLOAD + 1];
    let error = invoke_event(&sdk, "fn-handler", big)
        .await
        .expect_err("too large");
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_request_too_large_exception()),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_request_response_invocation_answers_with_the_function_response() {
    let (_api, _recorder, url) = start(0, AsyncDelivery::default()).await;
    let output = client(&url)
        .invoke()
        .function_name("fn-handler")
        .payload(aws_sdk_lambda::primitives::Blob::new(
            b"{\"ping\":true}".to_vec(),
        ))
        .send()
        .await
        .expect("invoke");
    assert_eq!(output.status_code(), 200);
    let body: Value =
        serde_json::from_slice(output.payload().expect("payload").as_ref()).expect("json");
    assert_eq!(body["echo"]["ping"], true);
}

#[test]
fn names_and_arns_name_the_function() {
    assert!(names_function("fn-handler", "fn-handler"));
    assert!(names_function("fn-handler:$LATEST", "fn-handler"));
    assert!(names_function(
        "arn:aws:lambda:us-east-1:000000000000:function:fn-handler",
        "fn-handler"
    ));
    assert!(!names_function("fn-other", "fn-handler"));
}

/// Sends `request` (raw HTTP/1.1) to the API at `url` and returns the whole
/// response, within [`LIMIT`].
async fn raw(url: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(LIMIT, stream.read_to_end(&mut response))
        .await
        .expect("answered in time")
        .expect("read");
    String::from_utf8_lossy(&response).into_owned()
}

/// A web page's cross-site `text/plain` POST (no CORS preflight) carrying a
/// forged continuation, and a request to another Host: refused with
/// Lambda's 403 before the function sees anything.
#[tokio::test]
async fn a_cross_site_post_and_another_host_are_refused_before_the_function() {
    let (api, recorder, url) = start(0, AsyncDelivery::default()).await;
    let forged = r#"{"continuation":{"hop":1},"data":"forged"}"#;
    let host = url.trim_start_matches("http://");
    let cross_site = format!(
        "POST /2015-03-31/functions/fn-handler/invocations HTTP/1.1\r\nhost: {host}\r\n\
         origin: http://evil.example\r\ncontent-type: text/plain;charset=UTF-8\r\n\
         x-amz-invocation-type: Event\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{forged}",
        forged.len()
    );
    let response = raw(&url, cross_site.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(
        response.contains("x-amzn-errortype: MissingAuthenticationTokenException"),
        "{response}"
    );
    let rebinding = format!(
        "POST /2015-03-31/functions/fn-handler/invocations HTTP/1.1\r\nhost: evil.example\r\n\
         content-type: application/json\r\nauthorization: AWS4-HMAC-SHA256 x\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{forged}",
        forged.len()
    );
    let response = raw(&url, rebinding.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(
        response.contains("evil.example") && response.contains("localhost"),
        "{response}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(recorder.events.lock().is_empty());
    assert_eq!(api.counts().queued.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_signed_call_with_another_content_type_or_region_is_refused() {
    let (_api, recorder, url) = start(0, AsyncDelivery::default()).await;
    let sdk = client(&url);
    let error = sdk
        .invoke()
        .function_name("fn-handler")
        .payload(aws_sdk_lambda::primitives::Blob::new(b"{}".to_vec()))
        .customize()
        .mutate_request(|request| {
            request.headers_mut().insert("content-type", "text/plain");
        })
        .send()
        .await
        .expect_err("text/plain is refused");
    assert_eq!(error.raw_response().map(|r| r.status().as_u16()), Some(415));
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_unsupported_media_type_exception()),
        "{error:?}"
    );
    let elsewhere = aws_sdk_lambda::Client::from_conf(
        sdk.config()
            .to_builder()
            .region(aws_sdk_lambda::config::Region::new("xx-fake-1"))
            .build(),
    );
    let error = elsewhere
        .invoke()
        .function_name("fn-handler")
        .send()
        .await
        .expect_err("another Region is refused");
    assert_eq!(error.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert!(format!("{error:?}").contains("xx-fake-1"), "{error:?}");
    assert!(recorder.events.lock().is_empty());
}

/// A flood of `Event` invocations that cannot be delivered (the function is
/// always throttled): the queue stops at its byte bound with 429 naming it.
#[tokio::test]
async fn a_flood_of_event_invocations_is_bounded() {
    let (api, _recorder, url) = start_throttled(usize::MAX, 0, AsyncDelivery::default()).await;
    let sdk = client(&url);
    let payload = format!("\"{}\"", "x".repeat(MAX_ASYNC_PAYLOAD - 16));
    let most = MAX_QUEUED_BYTES / payload.len() + 1;
    let mut refused = None;
    for _ in 0..=most {
        match invoke_event(&sdk, "fn-handler", payload.clone()).await {
            Ok(_) => {}
            Err(error) => {
                refused = Some(error);
                break;
            }
        }
    }
    let error = refused.expect("the queue's bound is reached");
    assert_eq!(error.raw_response().map(|r| r.status().as_u16()), Some(429));
    let message = format!("{error:?}");
    assert!(message.contains(&MAX_QUEUED_BYTES.to_string()), "{message}");
    let pending = api.counts().pending_bytes.load(Ordering::SeqCst);
    assert!(pending <= MAX_QUEUED_BYTES, "{pending} bytes queued");
}

/// A body that never finishes arriving is cut at the read timeout (408),
/// naming it, instead of holding its task.
#[tokio::test]
async fn a_slow_body_is_cut_at_the_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_api, _recorder, url) = start(0, AsyncDelivery::default()).await;
    let host = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let head = format!(
        "POST /2015-03-31/functions/fn-handler/invocations HTTP/1.1\r\nhost: {host}\r\n\
         content-type: application/json\r\nauthorization: AWS4-HMAC-SHA256 x\r\n\
         content-length: 100\r\nconnection: close\r\n\r\n{{\"a\":"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(BODY_READ_TIMEOUT + LIMIT, stream.read_to_end(&mut response))
        .await
        .expect("answered after the read timeout")
        .expect("read");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("10s"), "{response}");
}

/// An edited event invoke config (watch mode) applies to the next event:
/// with no retries an event failing once is dropped; after the swap to two
/// retries the next one failing once is delivered.
#[tokio::test]
async fn swapped_retries_apply_to_the_next_event() {
    let delivery = AsyncDelivery {
        max_retries: 0,
        ..AsyncDelivery::default()
    };
    let (api, recorder, url) = start(1, delivery).await;
    let sdk = client(&url);
    invoke_event(&sdk, "fn-handler", b"{\"n\":1}".to_vec())
        .await
        .expect("queued");
    until("the first event is dropped", || {
        api.counts().dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    api.swap_retries(2, Duration::from_secs(60));
    recorder.failures.store(1, Ordering::SeqCst);
    invoke_event(&sdk, "fn-handler", b"{\"n\":2}".to_vec())
        .await
        .expect("queued");
    until("the second event is delivered", || {
        api.counts().delivered.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(recorder.events.lock()[0]["n"], 2);
}
