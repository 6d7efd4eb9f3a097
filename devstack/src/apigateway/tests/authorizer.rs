//! The `$connect` authorizer step with a fake authorizer function: what it
//! is sent, what each answer does to the handshake, the policy cache, and
//! the identity the route integration receives.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::super::AuthorizerConfig;
use super::*;

const METHOD_ARN: &str = "arn:aws:execute-api:us-east-1:000000000000:localapi01/prod/$connect";

/// Records the events it is sent and answers with `respond`.
struct FakeAuthorizer {
    events: mpsc::UnboundedSender<Value>,
    calls: Arc<AtomicUsize>,
    respond: Box<Respond>,
}

impl Invoke for FakeAuthorizer {
    fn invoke_json(&self, event: axum::body::Bytes) -> InvokeFuture<'_> {
        let event: Value = serde_json::from_slice(&event).expect("the event is JSON");
        self.calls.fetch_add(1, Ordering::SeqCst);
        let result = (self.respond)(&event);
        let _ = self.events.send(event);
        Box::pin(async move { result })
    }
}

/// An authorizer answer with one statement.
fn policy(effect: &str, resource: &str) -> Value {
    json!({
        "principalId": "alice-sub",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}]
        },
        "context": {"sub": "alice-sub", "email": "alice@example.com"}
    })
}

/// Allows the token `good`, denies any other.
fn allow_good(event: &Value) -> Result<Value, InvokeError> {
    let effect = if event["queryStringParameters"]["token"] == "good" {
        "Allow"
    } else {
        "Deny"
    };
    Ok(policy(effect, METHOD_ARN))
}

struct Authorized {
    gateway: Running,
    calls: Arc<AtomicUsize>,
    sent: mpsc::UnboundedReceiver<Value>,
}

async fn start(ttl_secs: u64, respond: Box<Respond>) -> Authorized {
    let mut config = config();
    config.authorizer = Some(AuthorizerConfig {
        name: "connectAuthorizer".into(),
        identity_sources: vec!["route.request.querystring.token".into()],
        ttl: Duration::from_secs(ttl_secs),
    });
    let (events, sent) = mpsc::unbounded_channel();
    let calls = Arc::new(AtomicUsize::new(0));
    let authorizer = FakeAuthorizer {
        events,
        calls: calls.clone(),
        respond,
    };
    let gateway = start_authorized(config, Box::new(ok), Some(Arc::new(authorizer))).await;
    Authorized {
        gateway,
        calls,
        sent,
    }
}

impl Authorized {
    async fn connect(&self, query: &str) -> Result<Client, WsError> {
        connect(&format!("{}{query}", self.gateway.url()), Some(KEY)).await
    }
}

#[tokio::test]
async fn a_handshake_without_the_identity_source_gets_401_and_invokes_nothing() {
    let mut stack = start(300, Box::new(allow_good)).await;
    assert_eq!(refused_status(stack.connect("").await), 401);
    assert_eq!(refused_status(stack.connect("?token=").await), 401);
    assert_eq!(refused_status(stack.connect("?other=good").await), 401);
    assert_eq!(stack.calls.load(Ordering::SeqCst), 0);
    assert!(stack.gateway.events.try_recv().is_err(), "$connect ran");
}

#[tokio::test]
async fn the_authorizer_gets_the_websocket_request_event() {
    let mut stack = start(0, Box::new(allow_good)).await;
    let _client = stack.connect("?token=good&room=a").await.expect("allowed");
    let event = stack.sent.recv().await.expect("the authorizer's event");
    assert_eq!(event["type"], "REQUEST");
    assert_eq!(event["methodArn"], METHOD_ARN);
    assert_eq!(event["queryStringParameters"]["token"], "good");
    assert_eq!(
        event["multiValueQueryStringParameters"]["room"],
        json!(["a"])
    );
    assert_eq!(event["headers"]["x-api-key"], KEY);
    assert_eq!(
        event["multiValueHeaders"]["user-agent"],
        json!(["gateway-test/1.0"])
    );
    assert_eq!(event["stageVariables"], json!({}));
    let context = &event["requestContext"];
    assert_eq!(context["routeKey"], "$connect");
    assert_eq!(context["eventType"], "CONNECT");
    assert_eq!(context["stage"], "prod");
    assert_eq!(context["apiId"], "localapi01");
    assert!(context["identity"]["sourceIp"].is_string());
    // The connection the authorizer saw is the one `$connect` opens.
    let connect = stack.gateway.next_event_of("CONNECT").await;
    assert_eq!(
        context["connectionId"],
        connect["requestContext"]["connectionId"]
    );
}

#[tokio::test]
async fn the_identity_reaches_connect_and_every_later_route() {
    let mut stack = start(300, Box::new(allow_good)).await;
    let mut client = stack.connect("?token=good").await.expect("allowed");
    let connect = stack.gateway.next_event_of("CONNECT").await;
    let authorizer = &connect["requestContext"]["authorizer"];
    assert_eq!(authorizer["principalId"], "alice-sub");
    assert_eq!(authorizer["email"], "alice@example.com");
    assert!(authorizer["integrationLatency"].is_u64());
    send_text(&mut client, r#"{"action":"ping"}"#).await;
    let message = stack.gateway.next_event_of("MESSAGE").await;
    assert_eq!(
        message["requestContext"]["authorizer"]["principalId"],
        "alice-sub"
    );
}

#[tokio::test]
async fn deny_and_a_policy_for_another_resource_get_403() {
    let stack = start(0, Box::new(allow_good)).await;
    assert_eq!(refused_status(stack.connect("?token=bad").await), 403);
    let other = start(
        0,
        Box::new(|_: &Value| {
            Ok(policy(
                "Allow",
                "arn:aws:execute-api:us-east-1:000000000000:otherapi01/prod/$connect",
            ))
        }),
    )
    .await;
    assert_eq!(refused_status(other.connect("?token=good").await), 403);
    // A wildcard covering the route allows; an explicit Deny beside it wins.
    let wildcard = start(
        0,
        Box::new(|_: &Value| Ok(policy("Allow", "arn:aws:execute-api:*:*:localapi01/*"))),
    )
    .await;
    assert!(wildcard.connect("?token=x").await.is_ok());
    let both = start(
        0,
        Box::new(|_: &Value| {
            let mut answer = policy("Allow", "*");
            answer["policyDocument"]["Statement"]
                .as_array_mut()
                .expect("statements")
                .push(json!({"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": METHOD_ARN}));
            Ok(answer)
        }),
    )
    .await;
    assert_eq!(refused_status(both.connect("?token=x").await), 403);
}

#[tokio::test]
async fn a_failing_or_malformed_authorizer_gets_500() {
    let failing = start(
        300,
        Box::new(|_: &Value| {
            Err(InvokeError::Function {
                error_type: "Runtime.Error".into(),
                message: "JWKS unreachable".into(),
            })
        }),
    )
    .await;
    assert_eq!(refused_status(failing.connect("?token=good").await), 500);
    // A failure is not cached: the next handshake asks again.
    assert_eq!(refused_status(failing.connect("?token=good").await), 500);
    assert_eq!(failing.calls.load(Ordering::SeqCst), 2);
    for answer in [
        json!({"principalId": "a"}),
        json!("Allow"),
        json!({"policyDocument": {"Statement": []}}),
        json!({"principalId": "a", "policyDocument": {"Statement": [
            {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"}]},
            "context": {"nested": {"no": 1}}}),
    ] {
        let stack = start(0, Box::new(move |_: &Value| Ok(answer.clone()))).await;
        assert_eq!(refused_status(stack.connect("?token=x").await), 500);
    }
}

#[tokio::test]
async fn the_policy_is_cached_per_token_for_the_ttl() {
    let stack = start(300, Box::new(allow_good)).await;
    let _a = stack.connect("?token=good").await.expect("allowed");
    let _b = stack
        .connect("?token=good")
        .await
        .expect("allowed from the cache");
    assert_eq!(stack.calls.load(Ordering::SeqCst), 1);
    // A Deny is cached too; another token is asked about.
    assert_eq!(refused_status(stack.connect("?token=bad").await), 403);
    assert_eq!(refused_status(stack.connect("?token=bad").await), 403);
    assert_eq!(stack.calls.load(Ordering::SeqCst), 2);

    let uncached = start(0, Box::new(allow_good)).await;
    let _c = uncached.connect("?token=good").await.expect("allowed");
    let _d = uncached.connect("?token=good").await.expect("allowed");
    assert_eq!(uncached.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_configured_authorizer_without_a_function_refuses_with_500() {
    let mut config = config();
    config.authorizer = Some(AuthorizerConfig {
        name: "connectAuthorizer".into(),
        identity_sources: vec!["route.request.querystring.token".into()],
        ttl: Duration::ZERO,
    });
    let stack = start_authorized(config, Box::new(ok), None).await;
    let url = format!("{}?token=good", stack.url());
    assert_eq!(refused_status(connect(&url, Some(KEY)).await), 500);
}
