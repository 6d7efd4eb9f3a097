use super::*;
use crate::lambda::invoke::InvokeFuture;
use parking_lot::Mutex;

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
    fn invoke(&self, event: Value) -> InvokeFuture<'_> {
        Box::pin(async move {
            if take_one(&self.throttles) {
                return Err(InvokeError::Throttled { queued: 1000 });
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
    let api = LambdaApi::new("fn-handler", recorder.clone() as Arc<dyn Invoke>, delivery);
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
