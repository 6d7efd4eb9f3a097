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
    tracing_subscriber::registry()
        .with(json_lines(std::io::stdout))
        .with(filter(level(requested.as_deref())))
        .init();
}

/// One JSON object per line, written to `writer`. The invocation's span
/// (its `requestId` and `xrayTraceId`) appears once, as `span`: the list of
/// enclosing spans would repeat that same one span on every line, doubling
/// each line (and what the log pipeline carries) for nothing.
fn json_lines<S, W>(writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .with_target(false)
        .with_span_list(false)
        .with_writer(writer)
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
    fn a_line_carries_the_invocation_span_once() {
        let written = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = written.clone();
        let make_writer = move || Sink(sink.clone());
        let subscriber = tracing_subscriber::registry().with(json_lines(make_writer));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("Lambda runtime invoke", requestId = "req-1");
            let _entered = span.enter();
            tracing::info!(route = "$connect", "handled");
        });
        let text = String::from_utf8(written.lock().map(|w| w.clone()).unwrap_or_default())
            .expect("UTF-8 log output");
        let line: serde_json::Value =
            serde_json::from_str(text.trim()).expect("one JSON object per line");
        assert_eq!(line["fields"]["message"], "handled");
        assert_eq!(line["fields"]["route"], "$connect");
        assert_eq!(line["span"]["requestId"], "req-1");
        assert!(line.get("spans").is_none(), "{line}");
        assert!(line.get("target").is_none(), "{line}");
    }

    /// A writer the test reads back.
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut written) = self.0.lock() {
                written.extend_from_slice(buf);
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
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
