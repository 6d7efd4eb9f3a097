//! The authorizer against real tokens from the local issuer, its keys
//! fetched over real loopback HTTP (no mock of the JWT library or of the
//! fetch): each accepted and each refused kind of token, the key cache's
//! refetch on an unknown `kid` and its rate bound, and a key server that is
//! down or never answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use authorizer::Authorizer;
use authorizer::authorize::MAX_CONTEXT_BYTES;
use authorizer::https::HttpsFetcher;
use authorizer::keys::{Fetcher, KeyCache, KeysError};
use authorizer::settings::Settings;
use authorizer::verify::{MAX_TOKEN_BYTES, Refusal, Verifier};
use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use local_issuer::{Issuer, LocalIssuer, MintRequest};
use serde_json::{Value, json};

const AUDIENCE: &str = "chat-app";
const METHOD_ARN: &str = "arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/$connect";

/// The HTTPS fetcher, counting its GETs.
#[derive(Default, Clone)]
struct Counting {
    inner: HttpsFetcher,
    gets: Arc<AtomicUsize>,
}

#[async_trait]
impl Fetcher for Counting {
    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(url).await
    }
}

struct Setup {
    local: LocalIssuer,
    authorizer: Authorizer<Counting>,
    gets: Arc<AtomicUsize>,
}

fn settings(issuer: &str, jwks_url: Option<String>) -> Settings {
    Settings {
        issuer: issuer.to_owned(),
        audiences: vec!["other-app".into(), AUDIENCE.into()],
        token_parameter: "token".into(),
        jwks_url,
    }
}

/// A local issuer and an authorizer that finds its keys by discovery.
async fn setup_with(tune: impl FnOnce(KeyCache<Counting>) -> KeyCache<Counting>) -> Setup {
    let local = LocalIssuer::start(AUDIENCE)
        .await
        .expect("start the local issuer");
    let settings = settings(local.url(), None);
    let fetcher = Counting::default();
    let gets = Arc::clone(&fetcher.gets);
    let authorizer = Authorizer::new(&settings, tune(KeyCache::new(fetcher, &settings)));
    Setup {
        local,
        authorizer,
        gets,
    }
}

async fn setup() -> Setup {
    setup_with(|cache| cache).await
}

impl Setup {
    fn mint(&self, request: MintRequest) -> String {
        self.local.issuer().mint(&request).expect("mint")
    }

    async fn answer(&self, token: Option<&str>) -> ApiGatewayCustomAuthorizerResponse {
        self.authorizer
            .authorize(&event(token))
            .await
            .expect("an answer, not a failed invocation")
    }

    async fn effect(&self, token: &str) -> String {
        effect(&self.answer(Some(token)).await)
    }
}

/// API Gateway's WebSocket REQUEST authorizer event, as AWS documents it.
fn event(token: Option<&str>) -> ApiGatewayCustomAuthorizerRequestTypeRequest {
    let query = match token {
        Some(t) => json!({ "token": t }),
        None => json!({}),
    };
    let multi = match token {
        Some(t) => json!({ "token": [t] }),
        None => json!({}),
    };
    serde_json::from_value(json!({
        "type": "REQUEST",
        "methodArn": METHOD_ARN,
        "headers": {"Host": "abc123.execute-api.eu-west-1.amazonaws.com", "Sec-WebSocket-Version": "13", "x-api-key": "k"},
        "multiValueHeaders": {"Host": ["abc123.execute-api.eu-west-1.amazonaws.com"]},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi,
        "stageVariables": {},
        "requestContext": {
            "routeKey": "$connect", "eventType": "CONNECT", "extendedRequestId": "e1",
            "requestTime": "06/Dec/2026:17:00:00 +0000", "messageDirection": "IN", "stage": "prod",
            "connectedAt": 1_796_576_400_000i64, "requestTimeEpoch": 1_796_576_400_001i64,
            "identity": {"sourceIp": "192.0.2.10", "userAgent": "wscat"},
            "requestId": "r1", "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "connectionId": "c1=", "apiId": "abc123"
        }
    }))
    .expect("the event parses")
}

fn effect(response: &ApiGatewayCustomAuthorizerResponse) -> String {
    let json = serde_json::to_value(response).expect("JSON");
    assert_eq!(
        json["policyDocument"]["Statement"][0]["Resource"][0],
        METHOD_ARN
    );
    json["policyDocument"]["Statement"][0]["Effect"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn user(sub: &str) -> MintRequest {
    MintRequest::for_user(sub)
}

#[tokio::test]
async fn valid_rs256_and_es256_tokens_are_allowed_with_the_users_context() {
    let s = setup().await;
    for alg in ["RS256", "ES256"] {
        let mut request = user("alice");
        request.email = Some("alice@example.com".into());
        request.name = Some("Alice".into());
        request.alg = Some(alg.into());
        let answer = s.answer(Some(&s.mint(request))).await;
        assert_eq!(effect(&answer), "Allow", "{alg}");
        assert_eq!(answer.principal_id.as_deref(), Some("alice"));
        assert_eq!(
            answer.context,
            json!({"sub": "alice", "email": "alice@example.com", "name": "Alice"})
        );
    }
    // Discovery, then the JWKS; the second token used the cached keys.
    assert_eq!(s.gets.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_denied_past_the_60_s_leeway() {
    let s = setup().await;
    let at = |expires_in: i64, not_before_in: i64| {
        let mut request = user("alice");
        request.expires_in = Some(expires_in);
        request.not_before_in = Some(not_before_in);
        s.mint(request)
    };
    assert_eq!(
        s.effect(&at(-120, -300)).await,
        "Deny",
        "expired two minutes ago"
    );
    assert_eq!(
        s.effect(&at(-30, -300)).await,
        "Allow",
        "expired within the leeway"
    );
    assert_eq!(
        s.effect(&at(600, 120)).await,
        "Deny",
        "valid in two minutes"
    );
    assert_eq!(
        s.effect(&at(600, 30)).await,
        "Allow",
        "valid within the leeway"
    );
}

#[tokio::test]
async fn a_token_of_another_issuer_or_for_another_audience_is_denied() {
    let s = setup().await;
    // An authorizer configured for another issuer, given this issuer's keys.
    let other = settings(
        "https://issuer.example.com",
        Some(s.local.issuer().jwks_uri()),
    );
    let strict = Authorizer::new(&other, KeyCache::new(Counting::default(), &other));
    let token = s.mint(user("alice"));
    assert_eq!(
        effect(
            &strict
                .authorize(&event(Some(&token)))
                .await
                .expect("answer")
        ),
        "Deny"
    );
    assert_eq!(s.effect(&token).await, "Allow");

    let mut request = user("alice");
    request.aud = Some("someone-elses-app".into());
    assert_eq!(s.effect(&s.mint(request)).await, "Deny");
    let mut request = user("alice");
    request.aud = Some("other-app".into());
    assert_eq!(
        s.effect(&s.mint(request)).await,
        "Allow",
        "any configured audience"
    );
}

#[tokio::test]
async fn a_cognito_style_access_token_is_matched_by_its_client_id() {
    let s = setup().await;
    let mut request = user("alice");
    request.client_id = Some(AUDIENCE.into());
    assert_eq!(s.effect(&s.mint(request)).await, "Allow");
    let mut request = user("alice");
    request.client_id = Some("another-client".into());
    assert_eq!(s.effect(&s.mint(request)).await, "Deny");
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_keys_once_then_is_denied_and_refetches_are_rate_bound() {
    let s = setup().await;
    assert_eq!(s.effect(&s.mint(user("alice"))).await, "Allow");
    assert_eq!(s.gets.load(Ordering::SeqCst), 2, "discovery and JWKS");
    // Same issuer URL, keys the JWKS has never listed.
    let impostor = Issuer::generate(s.local.url(), AUDIENCE).expect("issuer");
    let forged = impostor.mint(&user("alice")).expect("mint");
    // Within the 30 s bound of the first fetch: no fetch at all.
    assert_eq!(s.effect(&forged).await, "Deny");
    assert_eq!(s.gets.load(Ordering::SeqCst), 2, "the refetch bound holds");

    // Past the bound (here zero), the unknown kid refetches the JWKS once.
    let s = setup_with(|c| c.with_refetch_interval(Duration::ZERO)).await;
    assert_eq!(s.effect(&s.mint(user("alice"))).await, "Allow");
    let impostor = Issuer::generate(s.local.url(), AUDIENCE).expect("issuer");
    assert_eq!(
        s.effect(&impostor.mint(&user("alice")).expect("mint"))
            .await,
        "Deny"
    );
    assert_eq!(
        s.gets.load(Ordering::SeqCst),
        3,
        "one more JWKS fetch, no second discovery"
    );
}

#[tokio::test]
async fn a_rotated_key_is_accepted_after_the_refetch() {
    let s = setup_with(|c| c.with_refetch_interval(Duration::ZERO)).await;
    let before = s.mint(user("alice"));
    assert_eq!(s.effect(&before).await, "Allow");
    s.local.issuer().rotate().expect("rotate");
    assert_eq!(
        s.effect(&s.mint(user("alice"))).await,
        "Allow",
        "the new kid is fetched"
    );
    assert_eq!(s.gets.load(Ordering::SeqCst), 3);
    assert_eq!(
        s.effect(&before).await,
        "Deny",
        "the withdrawn key is gone with the refetch"
    );
}

/// The three parts of a JWT.
fn parts(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("JSON"))
}

fn claims_of(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts(token)[1]).expect("base64"))
        .expect("JSON")
}

#[tokio::test]
async fn a_tampered_payload_is_denied() {
    let s = setup().await;
    let token = s.mint(user("alice"));
    let mut claims = claims_of(&token);
    claims["sub"] = json!("mallory");
    let p = parts(&token);
    let tampered = format!("{}.{}.{}", p[0], b64(&claims), p[2]);
    assert_eq!(s.effect(&tampered).await, "Deny");
    assert_eq!(
        s.effect(&token).await,
        "Allow",
        "the untouched token still passes"
    );
}

#[tokio::test]
async fn alg_none_and_an_hmac_signed_with_the_public_key_are_denied() {
    let s = setup().await;
    let token = s.mint(user("alice"));
    let claims = claims_of(&token);
    let kid = jsonwebtoken::decode_header(&token)
        .expect("header")
        .kid
        .expect("kid");

    for alg in ["none", "None", "NONE"] {
        let unsigned = format!(
            "{}.{}.",
            b64(&json!({"alg": alg, "typ": "JWT", "kid": kid})),
            b64(&claims)
        );
        assert_eq!(s.effect(&unsigned).await, "Deny", "alg {alg}");
    }

    // Key confusion: HS256 with the RSA public key (as the JWKS serves it,
    // and its modulus) as the HMAC secret.
    let jwks: JwkSet = s.local.issuer().jwks();
    let public = jwks.find(&kid).expect("the RSA key");
    let modulus = match &public.algorithm {
        jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) => {
            URL_SAFE_NO_PAD.decode(&rsa.n).expect("n")
        }
        other => panic!("not RSA: {other:?}"),
    };
    for secret in [serde_json::to_vec(public).expect("JWK"), modulus] {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(kid.clone());
        let key = jsonwebtoken::EncodingKey::from_secret(&secret).expect("an HMAC key");
        let hmac = jsonwebtoken::encode(&header, &claims, &key).expect("sign");
        assert_eq!(s.effect(&hmac).await, "Deny");
    }
}

#[tokio::test]
async fn a_missing_or_oversized_token_is_denied_without_a_fetch() {
    let s = setup().await;
    assert_eq!(effect(&s.answer(None).await), "Deny");
    assert_eq!(effect(&s.answer(Some("")).await), "Deny");
    assert_eq!(s.gets.load(Ordering::SeqCst), 0, "no token, no fetch");

    let verifier = Verifier::new(s.local.url(), vec![AUDIENCE.into()]);
    let oversized = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(
        verifier.verify(&oversized, &JwkSet::default()),
        Err(Refusal::TooLong(MAX_TOKEN_BYTES + 1))
    );
    // Exactly at the bound it is parsed (and this one is no JWT).
    let at_the_bound = "a".repeat(MAX_TOKEN_BYTES);
    assert!(matches!(
        verifier.verify(&at_the_bound, &JwkSet::default()),
        Err(Refusal::Malformed(_))
    ));
    // A real token padded past the bound is refused too, not parsed.
    let token = s.mint(user("alice"));
    let padded = format!("{token}{}", "A".repeat(MAX_TOKEN_BYTES));
    assert_eq!(s.effect(&padded).await, "Deny");
}

#[tokio::test]
async fn context_values_are_cut_to_256_bytes_and_an_overlong_sub_is_denied() {
    let s = setup().await;
    let mut request = user("alice");
    request.name = Some("é".repeat(200));
    request.email = Some(format!("{}@example.com", "a".repeat(300)));
    let answer = s.answer(Some(&s.mint(request))).await;
    assert_eq!(effect(&answer), "Allow");
    let name = answer.context["name"].as_str().expect("name");
    assert_eq!(name, "é".repeat(MAX_CONTEXT_BYTES / 2));
    assert_eq!(
        answer.context["email"].as_str().expect("email"),
        "a".repeat(MAX_CONTEXT_BYTES)
    );

    assert_eq!(s.effect(&s.mint(user(&"u".repeat(255)))).await, "Allow");
    assert_eq!(
        s.effect(&s.mint(user(&"u".repeat(256)))).await,
        "Deny",
        "OIDC allows 255"
    );
}

#[tokio::test]
async fn a_key_server_that_is_down_fails_the_invocation_naming_the_url() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/.well-known/jwks.json",
        closed.local_addr().expect("addr")
    );
    drop(closed);
    let settings = settings("http://127.0.0.1:1", Some(url.clone()));
    let authorizer = Authorizer::new(&settings, KeyCache::new(HttpsFetcher::new(), &settings));
    let local = LocalIssuer::start(AUDIENCE).await.expect("issuer");
    let token = local.issuer().mint(&user("alice")).expect("mint");
    let err = authorizer
        .authorize(&event(Some(&token)))
        .await
        .expect_err("no keys, no answer");
    let text = err.to_string();
    assert!(text.contains(&url) && text.contains("refused"), "{text}");
}

#[tokio::test]
async fn a_key_server_that_never_answers_fails_within_the_fetch_timeout() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/.well-known/jwks.json",
        silent.local_addr().expect("addr")
    );
    // Accepts and holds connections, never answering.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let settings = settings("http://127.0.0.1:1", Some(url));
    let timeout = Duration::from_millis(500);
    let authorizer = Authorizer::new(
        &settings,
        KeyCache::new(HttpsFetcher::new(), &settings).with_fetch_timeout(timeout),
    );
    let started = Instant::now();
    let err = authorizer
        .authorize(&event(Some("a.b.c")))
        .await
        .expect_err("no keys, no answer");
    assert!(
        matches!(err, authorizer::AuthorizeError::Keys(KeysError::Timeout(t)) if t == timeout),
        "{err}"
    );
    assert!(err.to_string().contains("500ms"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded: {:?}",
        started.elapsed()
    );
    holder.abort();
}

#[tokio::test]
async fn an_event_without_a_method_arn_fails_naming_it() {
    let s = setup().await;
    let mut event = event(None);
    event.method_arn = None;
    let err = s
        .authorizer
        .authorize(&event)
        .await
        .expect_err("no policy without a resource");
    assert!(err.to_string().contains("methodArn"), "{err}");
}

/// Each refused token is refused for its own reason (what the log says).
#[tokio::test]
async fn each_refusal_names_its_reason() {
    let local = LocalIssuer::start(AUDIENCE).await.expect("issuer");
    let issuer = local.issuer();
    let keys = issuer.jwks();
    let verifier = Verifier::new(local.url(), vec![AUDIENCE.into()]);
    let reason = |token: &str| verifier.verify(token, &keys).expect_err("refused");
    let mint = |request: MintRequest| issuer.mint(&request).expect("mint");
    let token = mint(user("alice"));
    assert_eq!(
        verifier.verify(&token, &keys).map(|i| i.sub),
        Ok("alice".to_owned())
    );

    let mut expired = user("alice");
    expired.expires_in = Some(-120);
    assert!(matches!(reason(&mint(expired)), Refusal::Invalid(e) if e.contains("Expired")));
    let mut early = user("alice");
    early.not_before_in = Some(120);
    assert!(matches!(reason(&mint(early)), Refusal::Invalid(e) if e.contains("Immature")));
    let mut elsewhere = user("alice");
    elsewhere.aud = Some("someone-elses-app".into());
    assert_eq!(reason(&mint(elsewhere)), Refusal::Audience);
    let impostor = Issuer::generate(local.url(), AUDIENCE).expect("issuer");
    assert_eq!(
        reason(&impostor.mint(&user("alice")).expect("mint")),
        Refusal::UnknownKid
    );
    let other_iss = Verifier::new("https://issuer.example.com", vec![AUDIENCE.into()]);
    assert!(
        matches!(other_iss.verify(&token, &keys), Err(Refusal::Invalid(e)) if e.contains("Issuer"))
    );

    let p = parts(&token);
    let mut claims = claims_of(&token);
    claims["sub"] = json!("mallory");
    assert!(
        matches!(reason(&format!("{}.{}.{}", p[0], b64(&claims), p[2])), Refusal::Invalid(e) if e.contains("Signature"))
    );
    let kid = jsonwebtoken::decode_header(&token).expect("header").kid;
    let none = format!("{}.{}.", b64(&json!({"alg": "none", "kid": kid})), p[1]);
    assert!(matches!(reason(&none), Refusal::Malformed(_)));
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = kid;
    let hmac = jsonwebtoken::encode(
        &header,
        &claims_of(&token),
        &jsonwebtoken::EncodingKey::from_secret(b"k").expect("key"),
    )
    .expect("sign");
    assert_eq!(reason(&hmac), Refusal::Algorithm("HS256".into()));
}

/// A key the JWKS marks for encryption (`use: enc`), or for another
/// algorithm than the token's header names, never verifies a token — even
/// one its own private half signed.
#[tokio::test]
async fn a_key_for_encryption_or_for_another_algorithm_is_refused() {
    use jsonwebtoken::Algorithm;
    use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};

    let s = setup().await;
    let token = s.mint(user("alice"));
    let kid = jsonwebtoken::decode_header(&token)
        .expect("header")
        .kid
        .expect("kid");
    let verifier = Verifier::new(s.local.url(), vec![AUDIENCE.into()]);
    let jwks: JwkSet = s.local.issuer().jwks();
    assert!(
        verifier.verify(&token, &jwks).is_ok(),
        "the served keys verify it"
    );

    let edited = |edit: &dyn Fn(&mut Jwk)| {
        let mut keys = jwks.clone();
        for key in &mut keys.keys {
            if key.common.key_id.as_deref() == Some(kid.as_str()) {
                edit(key);
            }
        }
        keys
    };
    let for_encryption = edited(&|k| k.common.public_key_use = Some(PublicKeyUse::Encryption));
    assert_eq!(
        verifier.verify(&token, &for_encryption),
        Err(Refusal::KeyMismatch(Algorithm::RS256))
    );
    let for_rs512 = edited(&|k| k.common.key_algorithm = Some(KeyAlgorithm::RS512));
    assert_eq!(
        verifier.verify(&token, &for_rs512),
        Err(Refusal::KeyMismatch(Algorithm::RS256))
    );
    // A key that names neither is taken by its type, which fits.
    let unnamed = edited(&|k| {
        k.common.public_key_use = None;
        k.common.key_algorithm = None;
    });
    assert!(verifier.verify(&token, &unnamed).is_ok());
}
