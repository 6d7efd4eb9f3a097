//! The `$connect` route's Lambda REQUEST authorizer, as API Gateway runs it.
//!
//! When the route's `authorizationType` is `CUSTOM`, a handshake goes
//! through these steps before the route's own integration is invoked:
//! - every identity source (`route.request.querystring.<name>`,
//!   `route.request.header.<name>`) must be present and non-empty, otherwise
//!   401 without invoking the authorizer;
//! - a policy cached for the same identity-source values within the
//!   authorizer's TTL (`authorizerResultTtlInSeconds`, 0 = no cache) is
//!   reused; otherwise the authorizer function is invoked with the REQUEST
//!   event AWS sends (`type`, `methodArn`, headers, query string, stage
//!   variables, the WebSocket `requestContext`);
//! - its IAM policy is evaluated against the `methodArn`: an explicit Deny or
//!   no Allow → 403; a function error, timeout or an answer that is not an
//!   authorizer response → 500;
//! - on Allow, `principalId` and the `context` go into
//!   `requestContext.authorizer` of the events of the connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
};
use aws_lambda_events::iam::IamPolicyEffect;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use parking_lot::Mutex;
use serde_json::{Map, Value};
use tracing::{info, warn};

use super::connect::Refusal;
use super::routing::error_kind;
use super::wire::{keep_last_values, to_wire_value};
use crate::lambda::invoke::Invoke;

/// Policies the cache holds at most; past it the entry closest to expiry
/// makes room (API Gateway does not publish its cache's size).
pub const POLICY_CACHE_ENTRIES: usize = 10_000;
/// API Gateway's largest `authorizerResultTtlInSeconds` (one hour).
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// The authorizer of the `$connect` route, as the program declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizerConfig {
    /// The authorizer's name, for log lines.
    pub name: String,
    /// `identitySources`: `route.request.querystring.<name>` or
    /// `route.request.header.<name>`.
    pub identity_sources: Vec<String>,
    /// `authorizerResultTtlInSeconds`; zero caches nothing.
    pub ttl: Duration,
}

/// Where an identity source is read from.
#[derive(Debug, Clone, PartialEq)]
enum IdentitySource {
    Query(String),
    Header(HeaderName),
}

impl IdentitySource {
    fn parse(expression: &str) -> Option<Self> {
        if let Some(name) = expression.strip_prefix("route.request.querystring.") {
            return (!name.is_empty()).then(|| IdentitySource::Query(name.to_string()));
        }
        let name = expression.strip_prefix("route.request.header.")?;
        HeaderName::from_bytes(name.as_bytes())
            .ok()
            .map(IdentitySource::Header)
    }
}

/// What the integration learns of an authorized client: the fields of
/// `requestContext.authorizer` (`principalId`, the `context` keys).
pub(super) type Identity = Map<String, Value>;

/// The policy an authorizer answered: the identity on Allow, or Deny.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Allow(Identity),
    Deny,
}

/// The authorizer step: its sources, its function and the policy cache.
pub(super) struct Authorizer {
    name: String,
    sources: Vec<IdentitySource>,
    ttl: Duration,
    function: Arc<dyn Invoke>,
    cache: Mutex<PolicyCache>,
}

/// What the request offers the authorizer.
pub(super) struct Request<'a> {
    pub(super) headers: &'a HeaderMap,
    pub(super) query: &'a HashMap<String, Vec<String>>,
    pub(super) method_arn: String,
    /// The WebSocket `requestContext` of the `$connect` event, as JSON.
    pub(super) request_context: Value,
}

impl Authorizer {
    /// The authorizer `config` describes, invoking `function`; an identity
    /// source it cannot read is an error naming it.
    pub(super) fn new(
        config: &AuthorizerConfig,
        function: Arc<dyn Invoke>,
    ) -> Result<Self, String> {
        let sources = config
            .identity_sources
            .iter()
            .map(|s| {
                IdentitySource::parse(s).ok_or_else(|| {
                    format!(
                        "authorizer {}: identity source {s:?} is not route.request.querystring.<name> \
                         or route.request.header.<name>",
                        config.name
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if sources.is_empty() {
            return Err(format!(
                "authorizer {}: no identity sources (API Gateway needs at least one for a cached REQUEST authorizer)",
                config.name
            ));
        }
        Ok(Authorizer {
            name: config.name.clone(),
            sources,
            ttl: config.ttl.min(MAX_TTL),
            function,
            cache: Mutex::new(PolicyCache::default()),
        })
    }

    /// Runs the step for one handshake: the identity to hand on, or the
    /// refusal.
    pub(super) async fn authorize(&self, request: Request<'_>) -> Result<Identity, Refusal> {
        let Some(key) = self.identity_key(request.headers, request.query) else {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "identity source missing (no authorizer invoked)",
            ));
        };
        let cached = (!self.ttl.is_zero())
            .then(|| self.cache.lock().get(&key))
            .flatten();
        let verdict = match cached {
            Some(verdict) => verdict,
            None => {
                let verdict = self.invoke(&request).await?;
                if !self.ttl.is_zero() {
                    self.cache
                        .lock()
                        .insert(key, verdict.clone(), Instant::now() + self.ttl);
                }
                verdict
            }
        };
        match verdict {
            Verdict::Allow(identity) => Ok(identity),
            Verdict::Deny => Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "the authorizer denied the $connect route",
            )),
        }
    }

    /// The identity sources' values joined (the cache key), or `None` when
    /// one is absent or empty.
    fn identity_key(
        &self,
        headers: &HeaderMap,
        query: &HashMap<String, Vec<String>>,
    ) -> Option<String> {
        let mut key = String::new();
        for source in &self.sources {
            let value = match source {
                IdentitySource::Query(name) => query.get(name).and_then(|v| v.last()).cloned(),
                IdentitySource::Header(name) => headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            }?;
            if value.is_empty() {
                return None;
            }
            key.push_str(&value);
            key.push('\0');
        }
        Some(key)
    }

    async fn invoke(&self, request: &Request<'_>) -> Result<Verdict, Refusal> {
        let failed = |reason| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, reason);
        let event = request_event(request).map_err(|error| {
            warn!(authorizer = %self.name, %error, "could not encode the authorizer event");
            failed("the authorizer event could not be encoded")
        })?;
        let started = Instant::now();
        let answer = self.function.invoke(event).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let answer = answer.map_err(|error| {
            warn!(authorizer = %self.name, error = error_kind(&error), latency_ms, "authorizer invocation failed");
            failed("the authorizer failed")
        })?;
        let verdict = verdict(&answer, &request.method_arn, latency_ms).map_err(|problem| {
            warn!(authorizer = %self.name, problem, "the authorizer's answer is not a valid authorizer response");
            failed("the authorizer's answer is not a valid authorizer response")
        })?;
        info!(authorizer = %self.name, latency_ms, allowed = matches!(verdict, Verdict::Allow(_)), "authorizer invoked");
        Ok(verdict)
    }
}

/// The REQUEST event API Gateway sends a WebSocket authorizer.
fn request_event(request: &Request<'_>) -> serde_json::Result<Value> {
    let mut event = ApiGatewayCustomAuthorizerRequestTypeRequest::default();
    event.type_ = Some("REQUEST".to_string());
    event.method_arn = Some(request.method_arn.clone());
    event.headers = request.headers.clone();
    event.multi_value_headers = request.headers.clone();
    event.query_string_parameters = request.query.clone().into();
    event.multi_value_query_string_parameters = request.query.clone().into();
    let mut value = serde_json::to_value(&event)?;
    if let Some(object) = value.as_object_mut() {
        // The WebSocket request context (connectionId, routeKey, eventType…)
        // is the `$connect` event's, not the REST API's.
        object.insert("requestContext".into(), request.request_context.clone());
        object.insert("stageVariables".into(), Value::Object(Map::new()));
        // Single values the way API Gateway sends them (the last one).
        if let Some(params) = object.get_mut("queryStringParameters") {
            keep_last_values(params);
        }
        object.remove("pathParameters");
    }
    Ok(value)
}

/// The authorizer's answer evaluated against `method_arn`.
fn verdict(answer: &Value, method_arn: &str, latency_ms: u64) -> Result<Verdict, &'static str> {
    let response: ApiGatewayCustomAuthorizerResponse =
        serde_json::from_value(answer.clone()).map_err(|_| "no policyDocument with Statement")?;
    let principal = response
        .principal_id
        .filter(|p| !p.is_empty())
        .ok_or("no principalId")?;
    let context = match response.context {
        Value::Null => Map::new(),
        Value::Object(context) => context,
        _ => return Err("context is not an object"),
    };
    if context
        .values()
        .any(|v| !(v.is_string() || v.is_number() || v.is_boolean()))
    {
        return Err("a context value is not a string, number or boolean");
    }
    let mut allowed = false;
    for statement in &response.policy_document.statement {
        let covers = statement.action.iter().any(|a| action_matches(a))
            && statement.resource.iter().any(|r| glob(r, method_arn));
        if !covers {
            continue;
        }
        match statement.effect {
            IamPolicyEffect::Deny => return Ok(Verdict::Deny),
            _ => allowed = true,
        }
    }
    if !allowed {
        return Ok(Verdict::Deny);
    }
    let mut identity = context;
    identity.insert("principalId".into(), Value::String(principal));
    identity.insert("integrationLatency".into(), Value::from(latency_ms));
    Ok(Verdict::Allow(identity))
}

fn action_matches(action: &str) -> bool {
    ["execute-api:Invoke", "execute-api:*", "*"]
        .iter()
        .any(|a| a.eq_ignore_ascii_case(action))
}

/// IAM's resource matching: `*` any run of characters, `?` any one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Policies by identity-source values, each until its expiry; at most
/// [`POLICY_CACHE_ENTRIES`].
#[derive(Default)]
struct PolicyCache {
    entries: HashMap<String, (Verdict, Instant)>,
}

impl PolicyCache {
    fn get(&mut self, key: &str) -> Option<Verdict> {
        match self.entries.get(key) {
            Some((verdict, expires)) if *expires > Instant::now() => Some(verdict.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&mut self, key: String, verdict: Verdict, expires: Instant) {
        if self.entries.len() >= POLICY_CACHE_ENTRIES && !self.entries.contains_key(&key) {
            let now = Instant::now();
            self.entries.retain(|_, (_, at)| *at > now);
            if self.entries.len() >= POLICY_CACHE_ENTRIES {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone());
                if let Some(soonest) = soonest {
                    self.entries.remove(&soonest);
                }
            }
        }
        self.entries.insert(key, (verdict, expires));
    }
}

/// The `$connect` event's request context as JSON, for the authorizer event.
pub(super) fn context_json(
    event: &aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest,
) -> serde_json::Result<Value> {
    Ok(to_wire_value(event)?
        .get("requestContext")
        .cloned()
        .unwrap_or(Value::Null))
}
