//! The Lambda bootstrap: reads the settings, builds the HTTPS fetcher and
//! the key cache, and answers authorizer events with [`Authorizer`].
//!
//! Logs are JSON lines at `AWS_LAMBDA_LOG_LEVEL` (else `RUST_LOG`, else
//! INFO) for this crate; every other crate stays at INFO or above, since at
//! DEBUG lambda_runtime logs raw events, and the event holds the token.

use authorizer::Authorizer;
use authorizer::https::HttpsFetcher;
use authorizer::keys::KeyCache;
use authorizer::settings::Settings;
use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    // As a String, so the error `main` returns prints as its message.
    let settings = Settings::from_lookup(|name| std::env::var(name).ok())
        .inspect_err(|error| tracing::error!(%error, "cannot start"))
        .map_err(|error| error.to_string())?;
    tracing::info!(issuer = %settings.issuer, audiences = ?settings.audiences,
        token_parameter = %settings.token_parameter, jwks_url = ?settings.jwks_url, "initialised");
    let authorizer = Authorizer::new(&settings, KeyCache::new(HttpsFetcher::new(), &settings));
    let authorizer = &authorizer;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayCustomAuthorizerRequestTypeRequest>| async move {
            authorizer.authorize(&event.payload).await.map_err(|error| {
                tracing::error!(%error, "the handshake cannot be authorized");
                Error::from(error)
            })
        },
    ))
    .await
}

fn init_logging() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|v| match v.trim() {
            name if name.eq_ignore_ascii_case("FATAL") => Some(LevelFilter::ERROR),
            name => name.parse().ok(),
        })
        .unwrap_or(LevelFilter::INFO);
    let filter = Targets::new()
        .with_target(env!("CARGO_CRATE_NAME"), level)
        .with_default(level.min(LevelFilter::INFO));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().json().with_target(false))
        .with(filter)
        .init();
}
