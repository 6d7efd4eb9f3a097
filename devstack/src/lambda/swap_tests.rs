//! [`LambdaPool::swap`]: a new version serves new invocations, in-flight
//! ones finish on the old processes, which are then stopped; a version that
//! cannot start leaves the old one serving.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::tests::eventually;
use super::*;
use crate::console::EventBus;

const WAIT: Duration = Duration::from_secs(30);

fn config(version: &str, max_concurrency: usize) -> FunctionConfig {
    FunctionConfig {
        binary: Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/runtime-api-function.py"),
        name: "test-function".to_owned(),
        env: vec![("TEST_VERSION".to_owned(), version.to_owned())],
        memory_mb: 256,
        timeout: Duration::from_secs(20),
        max_concurrency,
    }
}

async fn invoke(pool: &LambdaPool, event: Value) -> Value {
    tokio::time::timeout(WAIT, pool.invoke(event))
        .await
        .expect("the invocation ended in time")
        .expect("the function answered")
}

fn version_and_pid(response: &Value) -> (String, u64) {
    (
        response["env"]["TEST_VERSION"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        response["pid"].as_u64().expect("a pid"),
    )
}

fn process_exists(pid: u64) -> bool {
    u32::try_from(pid).is_ok_and(local_process::exists)
}

#[tokio::test]
async fn a_swap_serves_new_invocations_and_lets_in_flight_ones_finish() {
    let pool = LambdaPool::start(config("1", 4), EventBus::new())
        .await
        .expect("the pool");
    let (version, idle_pid) = version_and_pid(&invoke(&pool, json!({"action": "echo"})).await);
    assert_eq!(version, "1");
    let slow = {
        let pool = Arc::clone(&pool);
        tokio::spawn(async move {
            pool.invoke(json!({"action": "sleep", "seconds": 1.5}))
                .await
        })
    };
    // The slow invocation holds one process; wait until it has been handed out.
    eventually("the slow invocation runs", || {
        pool.idle.lock().parked() == 0
    })
    .await;

    tokio::time::timeout(WAIT, pool.swap(config("2", 4)))
        .await
        .expect("the swap ended in time")
        .expect("version 2 started");
    let (version, pid) = version_and_pid(&invoke(&pool, json!({"action": "echo"})).await);
    assert_eq!(version, "2");
    assert_ne!(pid, idle_pid);

    let slow = tokio::time::timeout(WAIT, slow)
        .await
        .expect("the slow invocation ended")
        .expect("its task")
        .expect("it finished on the old process");
    let (version, slow_pid) = version_and_pid(&slow);
    assert_eq!(
        version, "1",
        "the in-flight invocation finished on version 1"
    );
    eventually("the old processes are stopped", || {
        !process_exists(slow_pid) && !process_exists(idle_pid)
    })
    .await;
    // Retired processes are not replaced: only version 2 runs.
    for _ in 0..3 {
        let (version, _) = version_and_pid(&invoke(&pool, json!({"action": "echo"})).await);
        assert_eq!(version, "2");
    }
    pool.shutdown().await;
}

#[tokio::test]
async fn a_version_that_fails_init_leaves_the_old_one_serving() {
    let pool = LambdaPool::start(config("1", 2), EventBus::new())
        .await
        .expect("the pool");
    let mut broken = config("2", 2);
    broken.env.push(("TEST_INIT".to_owned(), "exit".to_owned()));
    let error = pool
        .swap(broken)
        .await
        .expect_err("version 2 exits during init");
    assert!(
        format!("{error:#}").contains("giving up during init"),
        "{error:#}"
    );
    let missing = FunctionConfig {
        binary: PathBuf::from("/nonexistent/bootstrap"),
        ..config("3", 2)
    };
    let error = pool.swap(missing).await.expect_err("no binary");
    assert!(
        error.to_string().contains("/nonexistent/bootstrap"),
        "{error}"
    );
    let (version, _) = version_and_pid(&invoke(&pool, json!({"action": "echo"})).await);
    assert_eq!(version, "1");
    pool.shutdown().await;
}

#[tokio::test]
async fn a_full_pool_stops_an_idle_old_process_to_make_room() {
    let pool = LambdaPool::start(config("1", 1), EventBus::new())
        .await
        .expect("the pool");
    let (_, old_pid) = version_and_pid(&invoke(&pool, json!({"action": "echo"})).await);
    tokio::time::timeout(WAIT, pool.swap(config("2", 1)))
        .await
        .expect("the swap ended in time")
        .expect("version 2 started in the freed slot");
    let (version, _) = version_and_pid(&invoke(&pool, json!({"action": "echo"})).await);
    assert_eq!(version, "2");
    // Its slot was freed only once it had exited and been reaped.
    assert!(
        !process_exists(old_pid),
        "the old process {old_pid} was stopped"
    );
    assert_eq!(pool.process_ids().len(), 1);
    pool.shutdown().await;
}
