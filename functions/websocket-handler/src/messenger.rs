//! How replies reach clients: the API Gateway Management API.
//!
//! A Lambda behind a WebSocket API cannot answer on the socket; it posts to
//! `POST /{stage}/@connections/{id}` on the API's management endpoint.
//! [`Messenger`] is that one operation as a small trait, so the routes can be
//! tested with [`MemoryMessenger`]. [`ManagementApi`] decides which endpoint
//! the deployed [`ManagementApiMessenger`] talks to.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::error::{DisplayErrorContext, SdkError};
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_types::SdkConfig;
use protocol::ServerFrame;

use crate::event::ApiAddress;

/// Why a post did not reach its connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// The connection no longer exists (HTTP 410, `GoneException`).
    #[error("connection is gone")]
    Gone,
    /// Anything else: throttling, a network failure, a misconfiguration.
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

/// Posts through `PostToConnection` with one management API client.
#[derive(Debug, Clone)]
pub struct ManagementApiMessenger {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl ManagementApiMessenger {
    pub fn new(client: aws_sdk_apigatewaymanagement::Client) -> Self {
        ManagementApiMessenger { client }
    }
}

#[async_trait]
impl Messenger for ManagementApiMessenger {
    async fn post(&self, connection_id: &str, data: &[u8]) -> Result<(), PostError> {
        let result = self
            .client
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(data))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(context))
                if context.err().is_gone_exception() || context.raw().status().as_u16() == 410 =>
            {
                Err(PostError::Gone)
            }
            Err(error) => Err(PostError::Other(DisplayErrorContext(error).to_string())),
        }
    }
}

/// Where the management endpoint came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSource {
    /// The `MANAGEMENT_ENDPOINT` variable, which the Pulumi program sets for
    /// the deployed function and devstack for the local one.
    Configured(String),
    /// `https://{domainName}/{stage}` of the first event, built once.
    FromEvents,
}

/// The management API clients of this process, built once: a fixed one when
/// `MANAGEMENT_ENDPOINT` is set, otherwise one derived from the first event's
/// domain and stage and cached. The endpoint is always given to the SDK
/// explicitly, so its own endpoint overrides
/// (`AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI`, `AWS_ENDPOINT_URL`) play no
/// part: local and deployed take the same path.
#[derive(Debug)]
pub struct ManagementApi {
    sdk: SdkConfig,
    source: EndpointSource,
    fixed: Option<Arc<ManagementApiMessenger>>,
    derived: Mutex<Option<(String, Arc<ManagementApiMessenger>)>>,
}

impl ManagementApi {
    /// `management_endpoint` is the `MANAGEMENT_ENDPOINT` variable.
    pub fn new(sdk: &SdkConfig, management_endpoint: Option<&str>) -> Self {
        let management_endpoint = management_endpoint.map(str::trim).filter(|e| !e.is_empty());
        let (source, fixed) = match management_endpoint {
            Some(endpoint) => (
                EndpointSource::Configured(endpoint.to_string()),
                Some(Arc::new(Self::messenger_at(sdk, endpoint))),
            ),
            None => (EndpointSource::FromEvents, None),
        };
        ManagementApi {
            sdk: sdk.clone(),
            source,
            fixed,
            derived: Mutex::new(None),
        }
    }

    pub fn source(&self) -> &EndpointSource {
        &self.source
    }

    fn messenger_at(sdk: &SdkConfig, endpoint: &str) -> ManagementApiMessenger {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
            .endpoint_url(endpoint)
            .build();
        ManagementApiMessenger::new(aws_sdk_apigatewaymanagement::Client::from_conf(config))
    }
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
        let messenger = Arc::new(Self::messenger_at(&self.sdk, &endpoint));
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
            .behavior_version(aws_sdk_apigatewaymanagement::config::BehaviorVersion::latest())
            .region(aws_types::region::Region::new("eu-west-1"))
            .service_config(Env::fixed(env));
        builder.set_endpoint_url(endpoint_url.map(str::to_string));
        builder.build()
    }

    #[test]
    fn the_sdks_own_endpoint_overrides_are_not_consulted() {
        let config = sdk(
            vec![(
                "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI",
                "http://127.0.0.1:9/prod",
            )],
            Some("http://127.0.0.1:9"),
        );
        assert_eq!(
            ManagementApi::new(&config, None).source(),
            &EndpointSource::FromEvents
        );
        assert_eq!(
            ManagementApi::new(&config, Some("https://configured.example/prod")).source(),
            &EndpointSource::Configured("https://configured.example/prod".into())
        );
    }

    #[test]
    fn management_endpoint_is_used_when_set() {
        let config = sdk(
            vec![("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")],
            None,
        );
        let api = ManagementApi::new(&config, Some(" https://configured.example/prod "));
        assert_eq!(
            api.source(),
            &EndpointSource::Configured("https://configured.example/prod".into())
        );
        assert!(api.for_api(&ApiAddress::default()).is_ok());
    }

    #[test]
    fn otherwise_the_endpoint_comes_from_the_event_and_is_cached() {
        let config = sdk(vec![], None);
        let api = ManagementApi::new(&config, Some(""));
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
