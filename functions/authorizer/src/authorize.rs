//! The authorizer's answer to one `$connect`: API Gateway's REQUEST
//! authorizer event in, an IAM policy out.
//!
//! A valid token → Allow `execute-api:Invoke` on the event's `methodArn`,
//! `principalId` = `sub`, context `sub`, `email`, `name` (strings, each cut
//! to [`MAX_CONTEXT_BYTES`]). No token, or a token [`Verifier`] refuses
//! (after one refetch of the keys for an unknown `kid`) → Deny, which API
//! Gateway answers with 403. Keys that cannot be fetched → an error: the
//! invocation fails and API Gateway answers 500.

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequestTypeRequest,
    ApiGatewayCustomAuthorizerResponse,
};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use serde_json::{Map, Value};

use crate::keys::{Fetcher, KeyCache, KeysError};
use crate::settings::Settings;
use crate::verify::{Identity, Refusal, Verifier};

/// The most bytes of each context value (`sub`, `email`, `name`).
pub const MAX_CONTEXT_BYTES: usize = 256;
/// `principalId` of a Deny (API Gateway wants one in every answer).
pub const DENIED_PRINCIPAL: &str = "anonymous";

/// Why the invocation fails (API Gateway answers 500).
#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    #[error("the event has no methodArn: it is not an API Gateway REQUEST authorizer event")]
    NoMethodArn,
    #[error(transparent)]
    Keys(#[from] KeysError),
}

/// The authorizer: settings, the token checks and the issuer's cached keys.
pub struct Authorizer<F> {
    token_parameter: String,
    verifier: Verifier,
    keys: KeyCache<F>,
}

impl<F: Fetcher> Authorizer<F> {
    pub fn new(settings: &Settings, keys: KeyCache<F>) -> Self {
        Self {
            token_parameter: settings.token_parameter.clone(),
            verifier: Verifier::new(settings.issuer.clone(), settings.audiences.clone()),
            keys,
        }
    }

    /// The answer to one authorizer event.
    pub async fn authorize(
        &self,
        event: &ApiGatewayCustomAuthorizerRequestTypeRequest,
    ) -> Result<ApiGatewayCustomAuthorizerResponse, AuthorizeError> {
        let method_arn = event
            .method_arn
            .as_deref()
            .filter(|a| !a.is_empty())
            .ok_or(AuthorizeError::NoMethodArn)?;
        let request_id = event.request_context.request_id.as_deref().unwrap_or("-");
        let Some(token) = event
            .query_string_parameters
            .first(&self.token_parameter)
            .filter(|t| !t.is_empty())
        else {
            tracing::info!(request_id, parameter = %self.token_parameter, "deny: no token in the query string");
            return Ok(deny(method_arn));
        };
        match self.check(token).await? {
            Ok(identity) => {
                tracing::info!(request_id, sub = %identity.sub, "allow");
                Ok(allow(method_arn, &identity))
            }
            Err(refusal) => {
                tracing::info!(request_id, reason = %refusal, "deny");
                Ok(deny(method_arn))
            }
        }
    }

    /// The token's identity or why it is refused; an unknown `kid` fetches
    /// the keys again (within the cache's rate bound) and tries once more.
    async fn check(&self, token: &str) -> Result<Result<Identity, Refusal>, KeysError> {
        let keys = self.keys.keys().await?;
        match self.verifier.verify(token, &keys) {
            Err(Refusal::UnknownKid) => match self.keys.refetch_for_unknown_kid(&keys).await? {
                Some(fresh) => Ok(self.verifier.verify(token, &fresh)),
                None => Ok(Err(Refusal::UnknownKid)),
            },
            checked => Ok(checked),
        }
    }
}

fn policy(effect: IamPolicyEffect, method_arn: &str) -> ApiGatewayCustomAuthorizerPolicy {
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".into()];
    statement.effect = effect;
    statement.resource = vec![method_arn.to_owned()];
    let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
    policy.version = Some("2012-10-17".into());
    policy.statement = vec![statement];
    policy
}

fn allow(method_arn: &str, identity: &Identity) -> ApiGatewayCustomAuthorizerResponse {
    let mut context = Map::new();
    context.insert("sub".into(), Value::String(cut(&identity.sub).to_owned()));
    for (key, value) in [("email", &identity.email), ("name", &identity.name)] {
        if let Some(value) = value {
            context.insert(key.into(), Value::String(cut(value).to_owned()));
        }
    }
    let mut response = ApiGatewayCustomAuthorizerResponse::default();
    response.principal_id = Some(identity.sub.clone());
    response.policy_document = policy(IamPolicyEffect::Allow, method_arn);
    response.context = Value::Object(context);
    response
}

fn deny(method_arn: &str) -> ApiGatewayCustomAuthorizerResponse {
    let mut response = ApiGatewayCustomAuthorizerResponse::default();
    response.principal_id = Some(DENIED_PRINCIPAL.into());
    response.policy_document = policy(IamPolicyEffect::Deny, method_arn);
    response.context = Value::Object(Map::new());
    response
}

/// `value` cut to at most [`MAX_CONTEXT_BYTES`], on a char boundary.
pub fn cut(value: &str) -> &str {
    if value.len() <= MAX_CONTEXT_BYTES {
        return value;
    }
    let mut end = MAX_CONTEXT_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_values_are_cut_on_a_char_boundary() {
        assert_eq!(cut("alice"), "alice");
        let ascii = "a".repeat(MAX_CONTEXT_BYTES + 10);
        assert_eq!(cut(&ascii).len(), MAX_CONTEXT_BYTES);
        // 'é' is two bytes: 255 bytes of 'a' then 'é' would straddle 256.
        let straddling = format!("{}é", "a".repeat(MAX_CONTEXT_BYTES - 1));
        assert_eq!(cut(&straddling), "a".repeat(MAX_CONTEXT_BYTES - 1));
        let emoji = "😀".repeat(100);
        assert_eq!(cut(&emoji).len(), 256);
        assert!(cut(&emoji).chars().all(|c| c == '😀'));
    }

    #[test]
    fn the_policy_names_the_method_arn_and_the_effect() {
        let arn = "arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/$connect";
        let identity = Identity {
            sub: "alice".into(),
            email: Some("a@example.com".into()),
            name: None,
        };
        let json = serde_json::to_value(allow(arn, &identity)).expect("JSON");
        assert_eq!(json["principalId"], "alice");
        assert_eq!(json["policyDocument"]["Statement"][0]["Effect"], "Allow");
        assert_eq!(
            json["policyDocument"]["Statement"][0]["Action"][0],
            "execute-api:Invoke"
        );
        assert_eq!(json["policyDocument"]["Statement"][0]["Resource"][0], arn);
        assert_eq!(
            json["context"],
            serde_json::json!({"sub": "alice", "email": "a@example.com"})
        );
        let json = serde_json::to_value(deny(arn)).expect("JSON");
        assert_eq!(json["policyDocument"]["Statement"][0]["Effect"], "Deny");
        assert_eq!(json["context"], serde_json::json!({}));
    }
}
