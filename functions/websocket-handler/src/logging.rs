//! What the function logs, and at which level.
//!
//! JSON lines on stdout (what CloudWatch and Lambda's JSON log format
//! expect), at the level of `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else
//! INFO. That level applies to this crate only: every other target
//! (lambda_runtime, the AWS SDK, hyper, rustls) stays at INFO or above
//! whatever the level, because at DEBUG and TRACE they log raw events (the
//! `x-api-key` header, `identity.apiKey`, message bodies) and request bodies.

use std::str::FromStr;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The function's own log target.
const OWN_TARGET: &str = env!("CARGO_CRATE_NAME");
/// The most any other crate may log.
pub const THIRD_PARTY_CAP: LevelFilter = LevelFilter::INFO;

/// The level a variable asks for: Lambda's names (`TRACE` … `ERROR`,
/// `FATAL`) or a plain level; anything else is INFO.
pub fn level(value: Option<&str>) -> LevelFilter {
    match value.map(str::trim) {
        Some(name) if name.eq_ignore_ascii_case("FATAL") => LevelFilter::ERROR,
        Some(name) => LevelFilter::from_str(name).unwrap_or(LevelFilter::INFO),
        None => LevelFilter::INFO,
    }
}

/// This crate at `level`, every other target at `level` capped at [`THIRD_PARTY_CAP`].
pub fn filter(level: LevelFilter) -> Targets {
    Targets::new()
        .with_target(OWN_TARGET, level)
        .with_default(level.min(THIRD_PARTY_CAP))
}

/// Installs the JSON subscriber with the level from the environment.
pub fn init() {
    let requested = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    let json = tracing_subscriber::fmt::layer().json().with_target(false);
    tracing_subscriber::registry()
        .with(json)
        .with(filter(level(requested.as_deref())))
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn lambda_level_names_are_understood() {
        assert_eq!(level(Some("TRACE")), LevelFilter::TRACE);
        assert_eq!(level(Some("debug")), LevelFilter::DEBUG);
        assert_eq!(level(Some("WARN")), LevelFilter::WARN);
        assert_eq!(level(Some("FATAL")), LevelFilter::ERROR);
        assert_eq!(level(Some("lambda_runtime=trace")), LevelFilter::INFO);
        assert_eq!(level(None), LevelFilter::INFO);
    }

    #[test]
    fn other_crates_stay_at_info_whatever_the_level() {
        let trace = filter(LevelFilter::TRACE);
        assert!(trace.would_enable(OWN_TARGET, &Level::TRACE));
        assert!(trace.would_enable("websocket_handler::routes", &Level::TRACE));
        for target in [
            "lambda_runtime::layers::api_response",
            "aws_smithy_runtime::client::orchestrator",
            "hyper_util",
            "rustls",
        ] {
            assert!(!trace.would_enable(target, &Level::DEBUG), "{target}");
            assert!(trace.would_enable(target, &Level::INFO), "{target}");
        }
        let warn = filter(LevelFilter::WARN);
        assert!(!warn.would_enable("lambda_runtime", &Level::INFO));
        assert!(!warn.would_enable(OWN_TARGET, &Level::INFO));
    }
}
