//! The Lambda bootstrap: reads the settings, builds the AWS clients once (over
//! [`https_client`], which trusts AWS's root CAs only, with the timeouts of
//! [`deadline::sdk_timeouts`]) and serves events with
//! [`websocket_handler::handle`] until the runtime stops.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use websocket_handler::deadline::{self, Deadline};
use websocket_handler::https_client::https_client;
use websocket_handler::logging;
use websocket_handler::messenger::ManagementApi;
use websocket_handler::registry::DynamoDbRegistry;
use websocket_handler::settings::Settings;

#[tokio::main]
async fn main() -> Result<(), Error> {
    logging::init();
    let settings =
        Settings::from_env().inspect_err(|error| tracing::error!(%error, "cannot start"))?;
    let http_client =
        https_client().inspect_err(|error| tracing::error!(%error, "cannot start"))?;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client)
        .timeout_config(deadline::sdk_timeouts())
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
        let deadline = Deadline::from_system_time(event.context.deadline());
        Ok::<_, Error>(
            websocket_handler::handle(event.payload, registry, messengers, deadline).await,
        )
    }))
    .await
}
