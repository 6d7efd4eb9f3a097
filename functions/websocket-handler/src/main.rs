//! The Lambda bootstrap: reads the settings, builds the AWS clients once (over
//! [`https_client`], which trusts AWS's root CAs only) and serves events with
//! [`websocket_handler::handle`] until the runtime stops.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use websocket_handler::https_client::https_client;
use websocket_handler::messenger::ManagementApi;
use websocket_handler::registry::DynamoDbRegistry;
use websocket_handler::settings::Settings;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let settings =
        Settings::from_env().inspect_err(|error| tracing::error!(%error, "cannot start"))?;
    let http_client =
        https_client().inspect_err(|error| tracing::error!(%error, "cannot start"))?;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client)
        .load()
        .await;
    let registry = DynamoDbRegistry::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &settings.connections_table,
    );
    let messengers = ManagementApi::new(&sdk, settings.management_endpoint.as_deref());
    tracing::info!(table = %settings.connections_table, management_endpoint = ?messengers.source(), "initialised");
    let (registry, messengers) = (&registry, &messengers);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(websocket_handler::handle(event.payload, registry, messengers).await)
    }))
    .await
}

/// JSON lines on stdout (what CloudWatch and Lambda's JSON log format expect),
/// at the level of `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else INFO — the
/// same precedence as lambda_runtime's default subscriber, which would only
/// write JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`.
fn init_tracing() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|level| level.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    tracing_subscriber::fmt()
        .json()
        .with_target(false)
        .with_env_filter(
            EnvFilter::builder()
                .with_default_directive(level.into())
                .from_env_lossy(),
        )
        .init();
}
