//! How replies reach clients: the API Gateway Management API.
//!
//! A Lambda behind a WebSocket API cannot answer on the socket; it posts to
//! `POST /{stage}/@connections/{id}` on the API's management endpoint.
//! [`Messenger`] is that one operation as a small trait, so the routes can be
//! tested with [`MemoryMessenger`]. [`ManagementApi`] decides which endpoint
//! the deployed [`ManagementApiMessenger`] talks to; the HTTP and SigV4 of a
//! post are [`crate::post_client`]'s.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use async_trait::async_trait;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_types::SdkConfig;
use protocol::ServerFrame;

use crate::event::ApiAddress;
use crate::post_client::{BadEndpoint, HttpClient, PostClient};

/// Why a post did not reach its connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// The connection no longer exists (HTTP 410, `GoneException`).
    #[error("connection is gone")]
    Gone,
    /// Certainly not delivered, after every attempt: throttled (429, API
    /// Gateway's account request quota) or a connection refused. Safe to
    /// post again later.
    #[error("{0}")]
    Refused(String),
    /// No answer in time: it may or may not have been delivered, so it is
    /// never posted again (that could deliver it twice).
    #[error("{0}")]
    Unconfirmed(String),
    /// Anything else: an error answer, a network failure, a misconfiguration.
    #[error("{0}")]
    Other(String),
}

/// Sends one message to one connection.
#[async_trait]
pub trait Messenger: Send + Sync {
    async fn post(&self, connection_id: &str, data: &[u8]) -> Result<(), PostError>;
}

/// Picks the messenger for the API an event came from.
pub trait Messengers: Send + Sync {
    fn for_api(&self, api: &ApiAddress) -> Result<Arc<dyn Messenger>, PostError>;
}

/// Sends a frame as JSON text.
pub async fn send_frame(
    messenger: &dyn Messenger,
    connection_id: &str,
    frame: &ServerFrame,
) -> Result<(), PostError> {
    messenger
        .post(connection_id, frame.to_text().as_bytes())
        .await
}

/// Records every post; ids marked gone or failing answer like the real API.
/// Clones share their records.
#[derive(Debug, Clone, Default)]
pub struct MemoryMessenger {
    state: Arc<Mutex<MemoryState>>,
}

#[derive(Debug, Default)]
struct MemoryState {
    posts: Vec<(String, Vec<u8>)>,
    gone: HashSet<String>,
    failing: HashSet<String>,
    /// Posts still to refuse (as throttled) per connection.
    throttled: std::collections::HashMap<String, usize>,
    apis: Vec<ApiAddress>,
}

impl MemoryMessenger {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        self.state.lock()
    }

    /// Posts to `connection_id` fail with [`PostError::Gone`] from now on.
    pub fn mark_gone(&self, connection_id: &str) {
        self.lock().gone.insert(connection_id.to_string());
    }

    /// Posts to `connection_id` fail with [`PostError::Other`] from now on.
    pub fn mark_failing(&self, connection_id: &str) {
        self.lock().failing.insert(connection_id.to_string());
    }

    /// The next `times` posts to `connection_id` are refused as throttled
    /// ([`PostError::Refused`]), as API Gateway's 429 after every retry.
    pub fn throttle(&self, connection_id: &str, times: usize) {
        self.lock()
            .throttled
            .insert(connection_id.to_string(), times);
    }

    /// Every delivered post, in order.
    pub fn posts(&self) -> Vec<(String, Vec<u8>)> {
        self.lock().posts.clone()
    }

    /// The frames delivered to one connection, in order (unparseable posts are skipped).
    pub fn frames_to(&self, connection_id: &str) -> Vec<ServerFrame> {
        self.lock()
            .posts
            .iter()
            .filter(|(id, _)| id == connection_id)
            .filter_map(|(_, data)| std::str::from_utf8(data).ok().and_then(ServerFrame::parse))
            .collect()
    }

    /// The API addresses messengers were asked for.
    pub fn apis(&self) -> Vec<ApiAddress> {
        self.lock().apis.clone()
    }
}

#[async_trait]
impl Messenger for MemoryMessenger {
    async fn post(&self, connection_id: &str, data: &[u8]) -> Result<(), PostError> {
        let mut state = self.lock();
        if state.gone.contains(connection_id) {
            return Err(PostError::Gone);
        }
        if state.failing.contains(connection_id) {
            return Err(PostError::Other("injected failure".into()));
        }
        if let Some(left) = state.throttled.get_mut(connection_id)
            && *left > 0
        {
            *left -= 1;
            return Err(PostError::Refused(
                "429 Too Many Requests (injected)".into(),
            ));
        }
        state.posts.push((connection_id.to_string(), data.to_vec()));
        Ok(())
    }
}

impl Messengers for MemoryMessenger {
    fn for_api(&self, api: &ApiAddress) -> Result<Arc<dyn Messenger>, PostError> {
        self.lock().apis.push(api.clone());
        Ok(Arc::new(self.clone()))
    }
}

/// Posts through `PostToConnection` to one management endpoint
/// ([`PostClient`]: SigV4 and a pooled HTTP client, not the SDK's
/// orchestrator, which cost ≈ 200 µs of CPU per post).
#[derive(Debug)]
pub struct ManagementApiMessenger {
    client: PostClient,
}

impl ManagementApiMessenger {
    pub fn new(client: PostClient) -> Self {
        ManagementApiMessenger { client }
    }
}

#[async_trait]
impl Messenger for ManagementApiMessenger {
    async fn post(&self, connection_id: &str, data: &[u8]) -> Result<(), PostError> {
        self.client.post(connection_id, data).await
    }
}

/// Why the management API cannot be used at all: the function cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ManagementApiError {
    #[error("MANAGEMENT_ENDPOINT: {0}")]
    Endpoint(#[from] BadEndpoint),
    #[error(
        "the SDK configuration has no {0}: PostToConnection is signed with the function's region and credentials"
    )]
    Missing(&'static str),
}

/// Where the management endpoint came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSource {
    /// The SDK's standard endpoint override for the service
    /// (`AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI`, then `AWS_ENDPOINT_URL`),
    /// as every AWS SDK honours it: it wins over the rest.
    SdkOverride(String),
    /// The `MANAGEMENT_ENDPOINT` variable, which the Pulumi program sets for
    /// the deployed function and devstack for the local one.
    Configured(String),
    /// `https://{domainName}/{stage}` of the first event, built once.
    FromEvents,
}

/// The management API messengers of this process, built once over one HTTP
/// client: a fixed one when the SDK's endpoint override
/// (`AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI`, then `AWS_ENDPOINT_URL`) or
/// `MANAGEMENT_ENDPOINT` is set, in that order, otherwise one derived from
/// the first event's domain and stage and cached. Region, credentials and
/// the override are the SDK configuration's ([`crate::sdk_env`]).
#[derive(Debug)]
pub struct ManagementApi {
    http: HttpClient,
    credentials: SharedCredentialsProvider,
    region: String,
    source: EndpointSource,
    fixed: Option<Arc<ManagementApiMessenger>>,
    derived: Mutex<Option<(String, Arc<ManagementApiMessenger>)>>,
}

impl ManagementApi {
    /// `management_endpoint` is the `MANAGEMENT_ENDPOINT` variable.
    pub fn new(
        sdk: &SdkConfig,
        management_endpoint: Option<&str>,
    ) -> Result<Self, ManagementApiError> {
        let management_endpoint = management_endpoint.map(str::trim).filter(|e| !e.is_empty());
        let mut api = ManagementApi {
            http: HttpClient::new(),
            credentials: sdk
                .credentials_provider()
                .ok_or(ManagementApiError::Missing("credentials"))?,
            region: sdk
                .region()
                .ok_or(ManagementApiError::Missing("region"))?
                .to_string(),
            source: EndpointSource::FromEvents,
            fixed: None,
            derived: Mutex::new(None),
        };
        if let Some(endpoint) = sdk_override(sdk) {
            api.fixed = Some(Arc::new(api.messenger_at(&endpoint)?));
            api.source = EndpointSource::SdkOverride(endpoint);
        } else if let Some(endpoint) = management_endpoint {
            api.fixed = Some(Arc::new(api.messenger_at(endpoint)?));
            api.source = EndpointSource::Configured(endpoint.to_string());
        }
        Ok(api)
    }

    pub fn source(&self) -> &EndpointSource {
        &self.source
    }

    fn messenger_at(&self, endpoint: &str) -> Result<ManagementApiMessenger, BadEndpoint> {
        let client = PostClient::new(
            self.http.clone(),
            self.credentials.clone(),
            self.region.clone(),
            endpoint,
        )?;
        Ok(ManagementApiMessenger::new(client))
    }
}

/// The endpoint the SDK's configuration names for the management API, as
/// aws-config reads it: `AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI`, then
/// `AWS_ENDPOINT_URL`.
fn sdk_override(sdk: &SdkConfig) -> Option<String> {
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id("ApiGatewayManagementApi")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok()?;
    sdk.service_config()
        .and_then(|config| config.load_config(key))
        .or_else(|| sdk.endpoint_url().map(str::to_string))
        .map(|endpoint| endpoint.trim().to_string())
        .filter(|endpoint| !endpoint.is_empty())
}

impl Messengers for ManagementApi {
    fn for_api(&self, api: &ApiAddress) -> Result<Arc<dyn Messenger>, PostError> {
        if let Some(fixed) = &self.fixed {
            return Ok(fixed.clone());
        }
        let endpoint = api.management_endpoint().ok_or_else(|| {
            PostError::Other(
                "no management endpoint: MANAGEMENT_ENDPOINT is not set and the event has no \
                 requestContext.domainName/stage"
                    .into(),
            )
        })?;
        let mut derived = self.derived.lock();
        if let Some((cached, messenger)) = derived.as_ref() {
            if *cached == endpoint {
                return Ok(messenger.clone());
            }
            tracing::warn!(%endpoint, previous = %cached, "event from a different API; switching management endpoint");
        }
        let messenger = Arc::new(
            self.messenger_at(&endpoint)
                .map_err(|e| PostError::Other(e.to_string()))?,
        );
        *derived = Some((endpoint, messenger.clone()));
        Ok(messenger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdk_env::Env;

    fn sdk(env: Vec<(&'static str, &'static str)>, endpoint_url: Option<&str>) -> SdkConfig {
        let mut builder = SdkConfig::builder()
            .behavior_version(
                aws_smithy_runtime_api::client::behavior_version::BehaviorVersion::latest(),
            )
            .region(aws_types::region::Region::new("eu-west-1"))
            .credentials_provider(SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("a", "b", None, None, "test"),
            ))
            .service_config(Env::fixed(env));
        builder.set_endpoint_url(endpoint_url.map(str::to_string));
        builder.build()
    }

    #[test]
    fn the_sdks_endpoint_override_wins() {
        let config = sdk(
            vec![(
                "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI",
                "http://127.0.0.1:9/prod",
            )],
            Some("http://127.0.0.1:8"),
        );
        let over = EndpointSource::SdkOverride("http://127.0.0.1:9/prod".into());
        assert_eq!(
            ManagementApi::new(&config, None).expect("api").source(),
            &over
        );
        let api =
            ManagementApi::new(&config, Some("https://configured.example/prod")).expect("api");
        assert_eq!(api.source(), &over);
        assert!(api.for_api(&ApiAddress::default()).is_ok());
        // The global override, when it is the only one.
        let config = sdk(vec![], Some("http://127.0.0.1:8/prod"));
        assert_eq!(
            ManagementApi::new(&config, Some("https://configured.example/prod"))
                .expect("api")
                .source(),
            &EndpointSource::SdkOverride("http://127.0.0.1:8/prod".into())
        );
    }

    #[test]
    fn management_endpoint_is_used_when_set() {
        let config = sdk(
            vec![("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")],
            None,
        );
        let api =
            ManagementApi::new(&config, Some(" https://configured.example/prod ")).expect("api");
        assert_eq!(
            api.source(),
            &EndpointSource::Configured("https://configured.example/prod".into())
        );
        assert!(api.for_api(&ApiAddress::default()).is_ok());
    }

    #[test]
    fn otherwise_the_endpoint_comes_from_the_event_and_is_cached() {
        let config = sdk(vec![], None);
        let api = ManagementApi::new(&config, Some("")).expect("api");
        assert_eq!(api.source(), &EndpointSource::FromEvents);
        assert!(matches!(
            api.for_api(&ApiAddress::default()),
            Err(PostError::Other(_))
        ));
        let address = ApiAddress {
            domain_name: Some("abc.execute-api.eu-west-1.amazonaws.com".into()),
            stage: Some("prod".into()),
        };
        let first = api.for_api(&address).expect("derived");
        let second = api.for_api(&address).expect("cached");
        assert!(
            Arc::ptr_eq(&first, &second),
            "the derived client is built once"
        );
    }

    #[tokio::test]
    async fn memory_messenger_records_and_fails_on_request() {
        let messenger = MemoryMessenger::new();
        messenger.mark_gone("gone");
        messenger.mark_failing("bad");
        send_frame(&messenger, "a", &ServerFrame::Pong)
            .await
            .expect("post");
        assert_eq!(messenger.post("gone", b"x").await, Err(PostError::Gone));
        assert!(matches!(
            messenger.post("bad", b"x").await,
            Err(PostError::Other(_))
        ));
        assert_eq!(messenger.frames_to("a"), [ServerFrame::Pong]);
        assert_eq!(messenger.posts().len(), 1);
    }
}
