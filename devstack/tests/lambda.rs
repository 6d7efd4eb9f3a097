//! The real function binary under the local Lambda: built the way the stack
//! builds it, started behind the Runtime API, invoked with events that need
//! no DynamoDB or management API (the pool's own mechanics are tested with a
//! scripted function beside the code, in `src/lambda.rs`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use devstack::console::EventBus;
use devstack::lambda::invoke::{Invoke, InvokeError};
use devstack::lambda::{FunctionConfig, LambdaPool};
use devstack::reload::build::{CargoFunction, Output};
use serde_json::{Value, json};

/// Every wait on the pool is bounded by this.
const WAIT: Duration = Duration::from_secs(60);

/// The function binary, built once for all tests of this file.
fn function_binary() -> PathBuf {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BINARY.get_or_init(build_function) {
        Ok(path) => path.clone(),
        Err(err) => panic!("building the function failed: {err}"),
    }
}

/// Builds the workspace's function as `devstack up` does, on a thread of
/// its own (the callers are inside a runtime).
fn build_function() -> Result<PathBuf, String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| format!("a runtime for the build: {err}"))?;
        runtime
            .block_on(CargoFunction::new(manifest).build(Output::Show))
            .map(|built| built.binary)
            .map_err(|err| format!("{err:#}"))
    })
    .join()
    .map_err(|_| "the build thread panicked".to_string())?
}

fn config(env: Vec<(&str, &str)>, max_concurrency: usize) -> FunctionConfig {
    FunctionConfig {
        binary: function_binary(),
        name: "websocket-handler".to_owned(),
        env: env
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect(),
        memory_mb: 128,
        timeout: Duration::from_secs(10),
        max_concurrency,
    }
}

/// What the stack gives the function, pointing at nothing: these events
/// never reach DynamoDB or the management API.
fn function_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_REGION", "eu-west-1"),
        ("CONNECTIONS_TABLE", "connections"),
        ("CLAIMS_TABLE", "claims"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9"),
    ]
}

async fn start(config: FunctionConfig) -> Arc<LambdaPool> {
    tokio::time::timeout(WAIT, LambdaPool::start(config, EventBus::new()))
        .await
        .expect("the function started in time")
        .expect("the function started")
}

async fn invoke(pool: &LambdaPool, event: Value) -> Result<Value, InvokeError> {
    tokio::time::timeout(WAIT, pool.invoke(event))
        .await
        .expect("the invocation ended in time")
}

#[test]
fn the_built_binary_is_the_function_in_this_profile() {
    let binary = function_binary();
    assert!(binary.is_file(), "{}", binary.display());
    assert_eq!(
        binary.file_name().and_then(|name| name.to_str()),
        Some("websocket-handler")
    );
    let profile_dir = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    assert_eq!(
        binary
            .parent()
            .and_then(|dir| dir.file_name())
            .and_then(|name| name.to_str()),
        Some(profile_dir)
    );
}

#[tokio::test]
async fn the_real_function_answers_under_the_runtime_api() {
    let pool = start(config(function_env(), 2)).await;
    // An event without a requestContext: the function answers 400 itself,
    // with no one to reply to and nothing to look up.
    let response = invoke(&pool, json!({ "body": "{\"action\":\"ping\"}" }))
        .await
        .expect("the function answered");
    assert_eq!(response["statusCode"], 400, "{response}");

    // Warm: the same process answers again.
    let pids = pool.process_ids();
    let again = invoke(&pool, json!({}))
        .await
        .expect("the function answered again");
    assert_eq!(again["statusCode"], 400, "{again}");
    assert_eq!(pool.process_ids(), pids);

    tokio::time::timeout(WAIT, pool.shutdown())
        .await
        .expect("shut down in time");
    assert!(pool.process_ids().is_empty());
}

#[tokio::test]
async fn concurrent_invocations_of_the_real_function_share_the_pool() {
    let pool = start(config(function_env(), 3)).await;
    let invocations: Vec<_> = (0..12)
        .map(|n| {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.invoke(json!({ "n": n })).await })
        })
        .collect();
    for invocation in invocations {
        let response = tokio::time::timeout(WAIT, invocation)
            .await
            .expect("the invocation ended in time")
            .expect("the invocation task ran")
            .expect("the function answered");
        assert_eq!(response["statusCode"], 400, "{response}");
    }
    let processes = pool.process_ids().len();
    assert!((1..=3).contains(&processes), "{processes} processes");
    tokio::time::timeout(WAIT, pool.shutdown())
        .await
        .expect("shut down in time");
}

#[tokio::test]
async fn the_real_function_without_its_table_fails_to_start_with_its_own_message() {
    let env = function_env()
        .into_iter()
        .filter(|(key, _)| *key != "CONNECTIONS_TABLE")
        .collect();
    let error = match tokio::time::timeout(WAIT, LambdaPool::start(config(env, 1), EventBus::new()))
        .await
    {
        Ok(Ok(_)) => panic!("the function should not start without CONNECTIONS_TABLE"),
        Ok(Err(err)) => format!("{err:#}"),
        Err(_) => panic!("the start did not end in time"),
    };
    assert!(error.contains("CONNECTIONS_TABLE"), "{error}");
    assert!(error.contains("websocket-handler"), "{error}");
}
