//! The AWS SDK's configuration from the process environment alone.
//!
//! In Lambda the region and the execution role's credentials are environment
//! variables (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`), so aws-config's whole provider chain — profile files,
//! SSO, STS web identity, ECS and IMDS — is code the function carries and
//! never runs. This builds the same [`SdkConfig`] from those variables, with
//! the standard endpoint overrides (`AWS_ENDPOINT_URL_<SERVICE>`, then
//! `AWS_ENDPOINT_URL`) looked up the way aws-config looks them up, so the
//! local stack and the tests keep pointing the clients where they want.

use std::collections::BTreeMap;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_runtime_api::client::behavior_version::BehaviorVersion;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_types::SdkConfig;
use aws_types::region::Region;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};

/// A variable the function needs is not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0} is not set: Lambda sets the region and the role's credentials in the environment (locally, the stack does)"
)]
pub struct Missing(pub &'static str);

/// Where settings are looked up: the process environment, or fixed
/// variables (tests). No `Default`: which of the two is meant is said.
#[derive(Debug, Clone)]
pub struct Env {
    fixed: Option<BTreeMap<String, String>>,
}

impl Env {
    pub fn process() -> Self {
        Env { fixed: None }
    }

    pub fn fixed<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Env {
            fixed: Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        }
    }

    /// A non-empty value, trimmed.
    fn get(&self, name: &str) -> Option<String> {
        let value = match &self.fixed {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        value
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }
}

/// Service settings: `{ENV}_{SERVICE_ID}` (the service id upper-cased,
/// spaces as `_`), then `{ENV}`, as aws-config reads them.
impl LoadServiceConfig for Env {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        let service = key.service_id().to_uppercase().replace(' ', "_");
        self.get(&format!("{}_{service}", key.env()))
            .or_else(|| self.get(key.env()))
    }
}

/// Builds the configuration from `env` over the given HTTP client.
pub fn sdk_config(env: Env, http_client: SharedHttpClient) -> Result<SdkConfig, Missing> {
    let region = env
        .get("AWS_REGION")
        .or_else(|| env.get("AWS_DEFAULT_REGION"))
        .ok_or(Missing("AWS_REGION"))?;
    let credentials = Credentials::new(
        env.get("AWS_ACCESS_KEY_ID")
            .ok_or(Missing("AWS_ACCESS_KEY_ID"))?,
        env.get("AWS_SECRET_ACCESS_KEY")
            .ok_or(Missing("AWS_SECRET_ACCESS_KEY"))?,
        env.get("AWS_SESSION_TOKEN"),
        None,
        "environment",
    );
    let endpoint_url = env.get("AWS_ENDPOINT_URL");
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(http_client)
        .service_config(env);
    builder.set_endpoint_url(endpoint_url);
    Ok(builder.build())
}

/// [`sdk_config`] from the process environment.
pub fn from_env(http_client: SharedHttpClient) -> Result<SdkConfig, Missing> {
    sdk_config(Env::process(), http_client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> SharedHttpClient {
        crate::https_client::https_client().expect("the HTTPS client")
    }

    #[test]
    fn region_credentials_and_overrides_come_from_the_environment() {
        let config = sdk_config(
            Env::fixed([
                ("AWS_REGION", "eu-west-1"),
                ("AWS_ACCESS_KEY_ID", "AKID"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
                ("AWS_SESSION_TOKEN", "token"),
                ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000"),
            ]),
            client(),
        )
        .expect("config");
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert!(config.credentials_provider().is_some());
        assert!(config.endpoint_url().is_none());
        let key = |service| {
            ServiceConfigKey::builder()
                .service_id(service)
                .env("AWS_ENDPOINT_URL")
                .profile("endpoint_url")
                .build()
                .expect("key")
        };
        let service = config.service_config().expect("service config");
        assert_eq!(
            service.load_config(key("DynamoDB")).as_deref(),
            Some("http://127.0.0.1:8000")
        );
        assert_eq!(service.load_config(key("Lambda")), None);
    }

    #[test]
    fn missing_variables_are_named() {
        assert_eq!(
            sdk_config(Env::fixed([]), client()).expect_err("no region"),
            Missing("AWS_REGION")
        );
        assert_eq!(
            sdk_config(Env::fixed([("AWS_REGION", "x")]), client()).expect_err("no key"),
            Missing("AWS_ACCESS_KEY_ID")
        );
    }
}
