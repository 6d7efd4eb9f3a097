//! The management API's signature check: unit tests of [`verify`] with
//! requests signed by `aws-sigv4`, and the API layer answering
//! unsigned, wrongly signed and SDK-signed requests.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::SigningParams;
use axum::http::Request;
use tokio::net::TcpStream;

use crate::apigateway::tests::{KEY, REGION, WAIT, connect, start};
use crate::sigv4::{ACCESS_KEY_ID, Refusal, SECRET_ACCESS_KEY, Scope, verify};

const URI: &str = "http://127.0.0.1:8081/prod/@connections/L0SM9cOFvHcCIhw%3D";

/// A POST to [`URI`] signed as the SDK signs it, for `service` with `secret`.
fn signed(service: &str, secret: &str, body: &str, at: SystemTime) -> Request<()> {
    signed_in(REGION, service, secret, body, at)
}

/// A POST to [`URI`] signed for `region`.
fn signed_in(region: &str, service: &str, secret: &str, body: &str, at: SystemTime) -> Request<()> {
    let mut request = Request::post(URI)
        .header("host", "127.0.0.1:8081")
        .header("content-type", "application/json")
        .body(())
        .expect("request");
    let identity = Credentials::new(ACCESS_KEY_ID, secret, None, None, "test").into();
    let params = SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .expect("params");
    let headers = request
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_str().expect("ascii")));
    let signable = SignableRequest::new("POST", URI, headers, SignableBody::Bytes(body.as_bytes()))
        .expect("signable");
    let (instructions, _) = sign(signable, &params.into()).expect("signs").into_parts();
    instructions.apply_to_request_http1x(&mut request);
    request
}

fn check(request: Request<()>, body: &str) -> Result<(), Refusal> {
    let (parts, ()) = request.into_parts();
    let scope = Scope {
        region: REGION.into(),
        service: "execute-api",
    };
    verify(
        &parts,
        body.as_bytes(),
        &scope,
        SECRET_ACCESS_KEY,
        SystemTime::now(),
    )
}

#[test]
fn a_request_signed_with_the_function_credentials_passes() {
    let request = signed("execute-api", SECRET_ACCESS_KEY, "hi", SystemTime::now());
    assert_eq!(check(request, "hi"), Ok(()));
}

#[test]
fn a_wrong_secret_a_wrong_service_or_a_changed_body_fail() {
    let now = SystemTime::now();
    let wrong_secret = signed("execute-api", "not-local", "hi", now);
    assert_eq!(check(wrong_secret, "hi"), Err(Refusal::Mismatch));
    let wrong_service = signed("dynamodb", SECRET_ACCESS_KEY, "hi", now);
    assert!(
        matches!(check(wrong_service, "hi"), Err(Refusal::Scope(m)) if m.contains("'execute-api'"))
    );
    let changed_body = signed("execute-api", SECRET_ACCESS_KEY, "hi", now);
    assert_eq!(check(changed_body, "bye"), Err(Refusal::Mismatch));
}

#[test]
fn an_old_signature_is_expired_and_garbage_is_malformed() {
    let old = SystemTime::now() - Duration::from_secs(600);
    let request = signed("execute-api", SECRET_ACCESS_KEY, "hi", old);
    assert_eq!(check(request, "hi"), Err(Refusal::Expired));
    let garbage = Request::post(URI)
        .header("authorization", "Basic bG9jYWw6bG9jYWw=")
        .body(())
        .expect("request");
    assert!(matches!(check(garbage, ""), Err(Refusal::Malformed(_))));
    let unsigned = Request::post(URI).body(()).expect("request");
    assert_eq!(check(unsigned, ""), Err(Refusal::Unsigned));
}

/// Sends `request` (raw HTTP/1.1) to `addr` and returns the whole response.
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .expect("write");
    let mut response = String::new();
    tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut response),
    )
    .await
    .expect("response within the timeout")
    .expect("read");
    response
}

#[tokio::test]
async fn unsigned_management_requests_get_403_missing_authentication_token() {
    let mut running = start().await;
    let _client = connect(&format!("ws://{}/prod", running.addr), Some(KEY))
        .await
        .expect("handshake");
    let id = running.next_event_of("CONNECT").await["requestContext"]["connectionId"]
        .as_str()
        .expect("connection id")
        .to_string();
    for method in ["GET", "POST", "DELETE"] {
        let request = format!(
            "{method} /prod/@connections/{id} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        let response = raw(running.addr, &request).await;
        assert!(response.starts_with("HTTP/1.1 403"), "{method}: {response}");
        assert!(
            response.ends_with(r#"{"message":"Missing Authentication Token"}"#),
            "{method}: {response}"
        );
        assert!(
            !response.contains("127.0.0.1"),
            "{method} leaked the connection's identity: {response}"
        );
    }
    // The SDK signs with the function's credentials: the same connection is there.
    let info = running
        .management()
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("a signed GET is answered");
    assert!(info.identity().is_some());
}

#[tokio::test]
async fn a_wrong_secret_gets_403_invalid_signature() {
    use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Region};
    let running = start().await;
    let config = aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(ACCESS_KEY_ID, "wrong", None, None, "test"))
        .endpoint_url(format!("http://{}/prod", running.addr))
        .build();
    let sdk = aws_sdk_apigatewaymanagement::Client::from_conf(config);
    let error = sdk
        .post_to_connection()
        .connection_id("L0SM9cOFvHcCIhw=")
        .data(Blob::new("x"))
        .send()
        .await
        .expect_err("a wrong secret is refused");
    let status = error.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(403), "{error:?}");
    let message = error
        .as_service_error()
        .and_then(|e| aws_sdk_apigatewaymanagement::error::ProvideErrorMetadata::message(e))
        .unwrap_or_default();
    assert!(
        message.starts_with("The request signature we calculated does not match"),
        "{error:?}"
    );
}

#[test]
fn a_signature_for_another_region_is_refused_naming_the_stacks() {
    let request = signed_in(
        "xx-fake-1",
        "execute-api",
        SECRET_ACCESS_KEY,
        "hi",
        SystemTime::now(),
    );
    let refusal = check(request, "hi").expect_err("another Region is refused");
    assert!(
        matches!(&refusal, Refusal::Scope(m) if m.contains("'xx-fake-1'") && m.contains(REGION)),
        "{refusal:?}"
    );
}

#[test]
fn a_scope_date_other_than_the_requests_is_refused() {
    let mut request = signed("execute-api", SECRET_ACCESS_KEY, "hi", SystemTime::now());
    let authorization = request.headers()["authorization"]
        .to_str()
        .expect("ascii")
        .to_string();
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    let forged = authorization.replacen(&format!("/{today}/"), "/20200101/", 1);
    assert_ne!(forged, authorization, "the scope holds today's date");
    request
        .headers_mut()
        .insert("authorization", forged.parse().expect("header"));
    let refusal = check(request, "hi").expect_err("another day is refused");
    assert!(
        matches!(&refusal, Refusal::Scope(m) if m.contains("20200101")),
        "{refusal:?}"
    );
}

#[test]
fn only_loopback_hosts_are_answered() {
    use crate::sigv4::check_host;
    use axum::http::HeaderMap;
    let host = |value: &str| {
        let mut headers = HeaderMap::new();
        headers.insert("host", value.parse().expect("header"));
        check_host(&headers)
    };
    for ok in [
        "127.0.0.1:8081",
        "localhost:8081",
        "[::1]:8081",
        "localhost",
        "[::1]",
    ] {
        assert_eq!(host(ok), Ok(()), "{ok}");
    }
    for refused in [
        "example.com",
        "evil.localhost:8081",
        "127.0.0.1.nip.io:8081",
        "[::2]:8081",
    ] {
        let refusal = host(refused).expect_err(refused);
        assert!(
            matches!(&refusal, Refusal::Host(m) if m.contains(refused) && m.contains("localhost")),
            "{refusal:?}"
        );
    }
    assert!(matches!(
        check_host(&HeaderMap::new()),
        Err(Refusal::Host(_))
    ));
}

/// A management client signing for `endpoint` with the stack's credentials.
fn sdk_at(endpoint: String, region: &str) -> aws_sdk_apigatewaymanagement::Client {
    use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Region};
    let config = aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "test",
        ))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

#[tokio::test]
async fn the_sdk_signing_for_localhost_is_served_and_another_host_or_region_is_refused() {
    let mut running = start().await;
    let _client = connect(&format!("ws://{}/prod", running.addr), Some(KEY))
        .await
        .expect("handshake");
    let id = running.next_event_of("CONNECT").await["requestContext"]["connectionId"]
        .as_str()
        .expect("connection id")
        .to_string();
    let port = running.addr.port();
    let localhost = sdk_at(format!("http://localhost:{port}/prod"), REGION);
    localhost
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("signed for http://localhost: served");

    let other_region = sdk_at(format!("http://127.0.0.1:{port}/prod"), "xx-fake-1");
    let error = other_region
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .expect_err("another Region is refused");
    assert_eq!(error.raw_response().map(|r| r.status().as_u16()), Some(403));
    let message = error
        .as_service_error()
        .and_then(|e| aws_sdk_apigatewaymanagement::error::ProvideErrorMetadata::message(e))
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("xx-fake-1"), "{error:?}");

    let request = format!(
        "GET /prod/@connections/{id} HTTP/1.1\r\nhost: attacker.example:{port}\r\nconnection: close\r\n\r\n"
    );
    let response = raw(running.addr, &request).await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(
        response.contains("attacker.example") && response.contains("localhost"),
        "{response}"
    );
}
