//! The Lambda bootstrap: reads the settings, sets up the AWS clients (from
//! the environment alone, [`sdk_env`], over [`https_client`], which trusts
//! AWS's root CAs only, with the timeouts of [`deadline::sdk_timeouts`];
//! each built at its first use, [`Lazy`]) and serves events with
//! [`websocket_handler::handle`] until the runtime stops.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::value::RawValue;
use websocket_handler::claims::ClaimsTable;
use websocket_handler::deadline::{self, Deadline};
use websocket_handler::fanout::{Limits, Services};
use websocket_handler::fanout_table::FanoutTable;
use websocket_handler::https_client::https_client;
use websocket_handler::lazy_client::Lazy;
use websocket_handler::logging;
use websocket_handler::messenger::ManagementApi;
use websocket_handler::metrics::EmfReport;
use websocket_handler::registry::DynamoDbRegistry;
use websocket_handler::relay::{self, SelfInvoke};
use websocket_handler::sdk_env;
use websocket_handler::settings::Settings;

// One thread: at the program's 256 MB Lambda gives a fraction of one vCPU,
// and a handler waits on the network; a profile of `$connect` put thread
// hand-offs (context switches, wakeups) at the top of its CPU, and the
// multi-threaded runtime's workers cost their start at every cold start.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logging::init();
    let settings =
        Settings::from_env().inspect_err(|error| tracing::error!(%error, "cannot start"))?;
    let http_client =
        https_client().inspect_err(|error| tracing::error!(%error, "cannot start"))?;
    // Region and credentials from the environment alone (sdk_env): Lambda
    // sets them there, and aws-config's provider chain is code never run.
    let sdk = sdk_env::from_env(http_client)
        .inspect_err(|error| tracing::error!(%error, "cannot start"))?
        .into_builder()
        .timeout_config(deadline::sdk_timeouts())
        .build();
    let limits = Limits::from_lookup(|name| std::env::var(name).ok())
        .inspect_err(|error| tracing::error!(%error, "cannot start"))?;
    let function = std::env::var(relay::FUNCTION_NAME).map_err(|_| {
        let error = format!(
            "{} is not set: Lambda sets it (locally, the stack does); a broadcast hands its rest to the function by that name",
            relay::FUNCTION_NAME
        );
        tracing::error!(%error, "cannot start");
        error
    })?;
    let dynamodb = {
        let sdk = sdk.clone();
        Lazy::new(move || aws_sdk_dynamodb::Client::new(&sdk))
    };
    let registry = DynamoDbRegistry::new(dynamodb.clone(), &settings.connections_table);
    let table = FanoutTable::new(dynamodb.clone(), &settings.connections_table);
    let claims = ClaimsTable::new(dynamodb, &settings.claims_table);
    let losses = EmfReport {
        function: function.clone(),
    };
    let relay = SelfInvoke::new(&sdk, function);
    let services = Services {
        pages: &table,
        claims: &claims,
        relay: &relay,
        losses: &losses,
        limits,
    };
    let messengers = ManagementApi::new(&sdk, settings.management_endpoint.as_deref())
        .inspect_err(|error| tracing::error!(%error, "cannot start"))?;
    tracing::info!(table = %settings.connections_table, claims = %settings.claims_table, management_endpoint = ?messengers.source(),
        function = relay.function(), in_flight = limits.in_flight, per_invocation = ?limits.per_invocation, "initialised");
    let (registry, messengers, services) = (&registry, &messengers, &services);
    // The event as JSON text: the handler reads it once, into its type.
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Box<RawValue>>| async move {
            let deadline = Deadline::from_system_time(event.context.deadline());
            let raw = event.payload.get();
            websocket_handler::handle_json(raw, registry, messengers, services, deadline)
                .await
                .map_err(Error::from)
        },
    ))
    .await
}
