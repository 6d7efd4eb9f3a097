//! The pool's mechanics, with a small Python function speaking the
//! Runtime API (`tests/fixtures/runtime-api-function.py`: crash, timeout
//! and init failures on demand). The real
//! function under this Runtime API is tested in `tests/lambda.rs`.

use std::path::Path;
use std::process::Stdio;
use std::time::SystemTime;

use axum::http::HeaderMap;
use serde_json::json;

use super::runtime_api::{epoch_ms, error_report};
use super::*;

/// Every wait in these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(30);

/// A function speaking the Runtime API that crashes, hangs or fails on
/// demand: it tests the pool, not the function.
fn script_function() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runtime-api-function.py")
}

fn config(max_concurrency: usize, timeout: Duration) -> FunctionConfig {
    FunctionConfig {
        binary: script_function(),
        name: "test-function".to_owned(),
        env: vec![
            ("AWS_REGION".to_owned(), "eu-west-1".to_owned()),
            ("TEST_SETTING".to_owned(), "from the program".to_owned()),
        ],
        memory_mb: 256,
        timeout,
        max_concurrency,
    }
}

async fn start(config: FunctionConfig) -> Arc<LambdaPool> {
    tokio::time::timeout(WAIT, LambdaPool::start(config, EventBus::new()))
        .await
        .expect("the pool started in time")
        .expect("the pool started")
}

/// Starts `count` invocations that sleep for a minute, each in its own task.
fn sleep_in_background(
    pool: &Arc<LambdaPool>,
    count: usize,
) -> Vec<tokio::task::JoinHandle<Result<Value, InvokeError>>> {
    (0..count)
        .map(|_| {
            let pool = Arc::clone(pool);
            tokio::spawn(async move {
                pool.invoke(json!({ "action": "sleep", "seconds": 60 }))
                    .await
            })
        })
        .collect()
}

async fn invoke(pool: &LambdaPool, event: Value) -> Result<Value, InvokeError> {
    tokio::time::timeout(WAIT, pool.invoke(event))
        .await
        .expect("the invocation ended in time")
}

async fn shutdown(pool: &LambdaPool) {
    tokio::time::timeout(WAIT, pool.shutdown())
        .await
        .expect("the pool shut down in time");
}

fn pid_of(response: &Value) -> u32 {
    let pid = response["pid"]
        .as_u64()
        .expect("the response names its pid");
    u32::try_from(pid).expect("a pid fits u32")
}

fn process_exists(pid: u32) -> bool {
    local_process::exists(pid)
}

fn kill(pid: u32) {
    local_process::signal(pid, local_process::Signal::KILL)
        .unwrap_or_else(|error| panic!("kill {pid}: {error}"));
}

/// Polls until `condition` holds, failing the test after [`WAIT`].
pub(super) async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn invocation_returns_the_response_with_the_runtime_api_context() {
    let pool = start(config(2, Duration::from_secs(20))).await;
    let before = epoch_ms(SystemTime::now());
    let response = invoke(&pool, json!({ "action": "echo", "n": 1 }))
        .await
        .expect("the function answered");

    assert_eq!(response["event"], json!({ "action": "echo", "n": 1 }));
    let context = &response["context"];
    assert!(Uuid::parse_str(context["requestId"].as_str().unwrap_or_default()).is_ok());
    let deadline = context["deadlineMs"].as_u64().unwrap_or_default();
    assert!(deadline >= before + 19_000 && deadline <= before + 21_000 + WAIT.as_millis() as u64);
    assert_eq!(
        context["arn"],
        "arn:aws:lambda:eu-west-1:000000000000:function:test-function"
    );
    assert!(
        context["traceId"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Root=1-")
    );

    let env = &response["env"];
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "test-function");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");
    assert_eq!(
        env["AWS_LAMBDA_LOG_GROUP_NAME"],
        "/aws/lambda/test-function"
    );
    assert!(
        env["AWS_LAMBDA_LOG_STREAM_NAME"]
            .as_str()
            .unwrap_or_default()
            .contains("[$LATEST]")
    );
    assert!(
        env["AWS_LAMBDA_RUNTIME_API"]
            .as_str()
            .unwrap_or_default()
            .starts_with("127.0.0.1:")
    );
    assert_eq!(env["AWS_REGION"], "eu-west-1");
    assert_eq!(env["TEST_SETTING"], "from the program");
    assert_eq!(pool.process_ids(), vec![pid_of(&response)]);

    // A warm process serves the next invocation.
    let again = invoke(&pool, json!({ "action": "echo" }))
        .await
        .expect("second answer");
    assert_eq!(pid_of(&again), pid_of(&response));
    assert_ne!(again["context"]["requestId"], context["requestId"]);
    shutdown(&pool).await;
}

#[tokio::test]
async fn function_error_is_reported_and_the_process_stays() {
    let pool = start(config(1, Duration::from_secs(20))).await;
    let pids = pool.process_ids();
    match invoke(&pool, json!({ "action": "error" })).await {
        Err(InvokeError::Function {
            error_type,
            message,
        }) => {
            assert_eq!(error_type, "TestError");
            assert_eq!(message, "failed on purpose");
        }
        other => panic!("expected a function error, got {other:?}"),
    }
    let response = invoke(&pool, json!({ "action": "echo" }))
        .await
        .expect("answer after the error");
    assert_eq!(vec![pid_of(&response)], pids);
    shutdown(&pool).await;
}

#[tokio::test]
async fn a_response_that_is_not_json_is_a_function_error() {
    let pool = start(config(1, Duration::from_secs(20))).await;
    match invoke(&pool, json!({ "action": "not json" })).await {
        Err(InvokeError::Function { error_type, .. }) => {
            assert_eq!(error_type, "Runtime.InvalidResponse")
        }
        other => panic!("expected a function error, got {other:?}"),
    }
    invoke(&pool, json!({ "action": "echo" }))
        .await
        .expect("answer after the bad response");
    shutdown(&pool).await;
}

#[tokio::test]
async fn a_process_killed_mid_invocation_fails_that_invocation_and_is_replaced() {
    let pool = start(config(1, Duration::from_secs(60))).await;
    let [pid] = pool.process_ids()[..] else {
        panic!("one warm process expected")
    };
    let busy = {
        let pool = Arc::clone(&pool);
        tokio::spawn(async move {
            pool.invoke(json!({ "action": "sleep", "seconds": 60 }))
                .await
        })
    };
    // Let the process take the event before it is killed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill(pid);
    let outcome = tokio::time::timeout(WAIT, busy)
        .await
        .expect("the invocation ended in time")
        .expect("the invocation task ran");
    match outcome {
        Err(InvokeError::Crashed(reason)) => {
            assert!(reason.contains(&format!("pid {pid}")), "{reason}")
        }
        other => panic!("expected a crash, got {other:?}"),
    }
    eventually("the process is replaced", || {
        let pids = pool.process_ids();
        pids.len() == 1 && !pids.contains(&pid)
    })
    .await;
    let response = invoke(&pool, json!({ "action": "echo" }))
        .await
        .expect("answer after the crash");
    assert_ne!(pid_of(&response), pid);
    shutdown(&pool).await;
}

#[tokio::test]
async fn a_function_that_exits_mid_invocation_is_reported_as_crashed() {
    let pool = start(config(1, Duration::from_secs(20))).await;
    match invoke(&pool, json!({ "action": "crash" })).await {
        Err(InvokeError::Crashed(reason)) => {
            assert!(reason.contains("exited with status 3"), "{reason}")
        }
        other => panic!("expected a crash, got {other:?}"),
    }
    invoke(&pool, json!({ "action": "echo" }))
        .await
        .expect("answer after the crash");
    shutdown(&pool).await;
}

#[tokio::test]
async fn an_invocation_past_the_timeout_kills_and_replaces_the_process() {
    let timeout = Duration::from_millis(700);
    let pool = start(config(1, timeout)).await;
    let [pid] = pool.process_ids()[..] else {
        panic!("one warm process expected")
    };
    match invoke(&pool, json!({ "action": "sleep", "seconds": 60 })).await {
        Err(InvokeError::Timeout(after)) => assert_eq!(after, timeout),
        other => panic!("expected a timeout, got {other:?}"),
    }
    eventually("the timed-out process is gone", || !process_exists(pid)).await;
    let response = invoke(&pool, json!({ "action": "echo" }))
        .await
        .expect("answer after the timeout");
    assert_ne!(pid_of(&response), pid);
    eventually("one process is left", || pool.process_ids().len() == 1).await;
    shutdown(&pool).await;
}

#[tokio::test]
async fn an_idle_process_that_dies_is_replaced() {
    let pool = start(config(1, Duration::from_secs(20))).await;
    let [pid] = pool.process_ids()[..] else {
        panic!("one warm process expected")
    };
    kill(pid);
    eventually("the idle process is replaced", || {
        let pids = pool.process_ids();
        pids.len() == 1 && !pids.contains(&pid)
    })
    .await;
    let replacement = pool.process_ids();
    let response = invoke(&pool, json!({ "action": "echo" }))
        .await
        .expect("answer after the death");
    assert_eq!(vec![pid_of(&response)], replacement);
    shutdown(&pool).await;
}

#[tokio::test]
async fn concurrent_invocations_use_up_to_max_concurrency_processes_then_queue() {
    let pool = start(config(3, Duration::from_secs(20))).await;
    let started = Instant::now();
    let invocations: Vec<_> = (0..7)
        .map(|_| {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move {
                pool.invoke(json!({ "action": "sleep", "seconds": 0.5 }))
                    .await
            })
        })
        .collect();
    let mut pids = std::collections::BTreeSet::new();
    for invocation in invocations {
        let response = tokio::time::timeout(WAIT, invocation)
            .await
            .expect("the invocation ended in time")
            .expect("the invocation task ran")
            .expect("the function answered");
        pids.insert(pid_of(&response));
    }
    // Seven half-second invocations on three processes take three rounds.
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert_eq!(pool.process_ids(), pids.iter().copied().collect::<Vec<_>>());

    shutdown(&pool).await;
    assert!(pool.process_ids().is_empty());
    for pid in pids {
        assert!(!process_exists(pid), "process {pid} outlived the shutdown");
    }
    match invoke(&pool, json!({ "action": "echo" })).await {
        Err(InvokeError::Unavailable(_)) => {}
        other => panic!("expected unavailable after shutdown, got {other:?}"),
    }
}

/// A pool throttling at `account` executions at once and `waiting`
/// invocations waiting for a process.
async fn start_with_limits(
    config: FunctionConfig,
    account: usize,
    waiting: usize,
) -> Arc<LambdaPool> {
    let pool = LambdaPool::with_limits(
        checked(config).expect("a runnable function"),
        EventBus::new(),
        account,
        waiting,
    );
    tokio::time::timeout(WAIT, LambdaPool::launch(pool))
        .await
        .expect("the pool started in time")
        .expect("the pool started")
}

/// One process, throttling at `account` executions at once, that has run
/// one quick invocation (a positive control, and a duration measured).
async fn measured_pool(account: usize) -> Arc<LambdaPool> {
    let pool = start_with_limits(config(1, Duration::from_secs(60)), account, 1000).await;
    invoke(&pool, json!({ "action": "echo" }))
        .await
        .expect("an invocation with room");
    pool
}

#[tokio::test]
async fn over_the_account_concurrency_an_invocation_is_throttled_at_once() {
    // A quick execution measured: alone it would let the slow ones below
    // age out of the estimate.
    let pool = measured_pool(20).await;
    let busy = sleep_in_background(&pool, 20);
    // One sleeps on the process, 19 wait; on AWS all 20 would be running,
    // which the estimate sees once the running one is older than the burst.
    eventually("twenty executions at once", || {
        pool.concurrency
            .lock()
            .at_once(Instant::now(), pool.in_flight())
            == 20
    })
    .await;
    match invoke(&pool, json!({ "action": "echo" })).await {
        Err(InvokeError::Throttled(Limit::Concurrency { at_once })) => assert_eq!(at_once, 20),
        other => panic!("expected TooManyRequestsException, got {other:?}"),
    }
    shutdown(&pool).await;
    for invocation in busy {
        let _ = invocation.await;
    }
}

#[tokio::test]
async fn quick_invocations_waiting_here_past_the_account_concurrency_all_run() {
    // 300 invocations of 10 ms, ten every 20 ms, on one process: AWS would run
    // about ten at once, while most of the 300 wait here. Counting those
    // (as the pool once did) would throttle at 50.
    let pool = measured_pool(50).await;
    let mut invocations = Vec::new();
    let mut most_held = 0;
    for _ in 0..30 {
        for _ in 0..10 {
            let pool = Arc::clone(&pool);
            invocations.push(tokio::spawn(async move {
                pool.invoke(json!({ "action": "sleep", "seconds": 0.01 }))
                    .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        most_held = most_held.max(pool.in_flight());
    }
    for invocation in invocations {
        tokio::time::timeout(WAIT, invocation)
            .await
            .expect("the invocation ended in time")
            .expect("the invocation task ran")
            .expect("not throttled: AWS would have run it");
    }
    // Positive control: the scenario did hold more than the account's 50.
    assert!(most_held > 50, "at most {most_held} held at once");
    shutdown(&pool).await;
}

#[tokio::test]
async fn past_the_local_bound_of_waiting_invocations_the_throttle_says_it_is_local() {
    let pool = start_with_limits(config(1, Duration::from_secs(60)), 1000, 5).await;
    let busy = sleep_in_background(&pool, 1 + 5);
    eventually("every invocation is admitted", || {
        pool.admitted.available_permits() == 0
    })
    .await;
    let throttled = invoke(&pool, json!({ "action": "echo" })).await;
    match &throttled {
        Err(InvokeError::Throttled(Limit::LocalWaiting { waiting })) => assert_eq!(*waiting, 5),
        other => panic!("expected the local bound's throttle, got {other:?}"),
    }
    let message = throttled.expect_err("throttled").to_string();
    assert!(message.contains("not AWS's"), "{message}");
    shutdown(&pool).await;
    for invocation in busy {
        let _ = invocation.await;
    }
}

#[tokio::test]
async fn shutdown_ends_busy_processes_too() {
    let pool = start(config(2, Duration::from_secs(60))).await;
    let busy = sleep_in_background(&pool, 2);
    eventually("two processes run", || pool.process_ids().len() == 2).await;
    let pids = pool.process_ids();
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown(&pool).await;
    for pid in pids {
        assert!(!process_exists(pid), "process {pid} outlived the shutdown");
    }
    for invocation in busy {
        let outcome = tokio::time::timeout(WAIT, invocation)
            .await
            .expect("the invocation ended in time")
            .expect("the invocation task ran");
        assert!(outcome.is_err(), "{outcome:?}");
    }
}

#[tokio::test]
async fn dropping_the_pool_kills_its_processes() {
    let pool = start(config(1, Duration::from_secs(20))).await;
    let pids = pool.process_ids();
    drop(pool);
    eventually("the processes are gone", || {
        pids.iter().all(|pid| !process_exists(*pid))
    })
    .await;
}

/// Set in the copy of this test binary that plays a devstack to be SIGKILLed.
const ORPHAN_PARENT: &str = "DEVSTACK_LAMBDA_TEST_ORPHAN_PARENT";

#[tokio::test]
async fn function_processes_die_with_a_sigkilled_parent() {
    if std::env::var_os(ORPHAN_PARENT).is_some() {
        // The parent: start two processes, name them, wait to be killed.
        let pool = start(config(2, Duration::from_secs(60))).await;
        let _busy = sleep_in_background(&pool, 2);
        eventually("two processes run", || pool.process_ids().len() == 2).await;
        let pids: Vec<String> = pool.process_ids().iter().map(u32::to_string).collect();
        println!("FUNCTION-PIDS {}", pids.join(" "));
        tokio::time::sleep(WAIT).await;
        return;
    }
    use std::io::BufRead as _;
    let mut parent =
        std::process::Command::new(std::env::current_exe().expect("the test binary's path"))
            .args([
                "--exact",
                "lambda::tests::function_processes_die_with_a_sigkilled_parent",
                "--nocapture",
            ])
            .env(ORPHAN_PARENT, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the parent");
    let stdout = parent.stdout.take().expect("the parent's stdout");
    let (pids_tx, pids_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(pids) = line.strip_prefix("FUNCTION-PIDS ") {
                let pids: Vec<u32> = pids.split(' ').filter_map(|pid| pid.parse().ok()).collect();
                let _ = pids_tx.send(pids);
            }
        }
    });
    let pids = pids_rx
        .recv_timeout(WAIT)
        .expect("the parent named its function processes");
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(pids.iter().all(|pid| process_exists(*pid)));
    parent.kill().expect("SIGKILL the parent");
    parent.wait().expect("reap the parent");
    // Orphans are reparented and reaped by init (or a subreaper), so a
    // killed one leaves no process behind, only possibly a brief zombie.
    eventually("the function processes died with their parent", || {
        pids.iter()
            .all(|pid| !process_exists(*pid) || local_process::is_zombie(*pid))
    })
    .await;
}

async fn start_error(config: FunctionConfig) -> String {
    match tokio::time::timeout(WAIT, LambdaPool::start(config, EventBus::new())).await {
        Ok(Ok(_)) => panic!("the pool should not start"),
        Ok(Err(err)) => format!("{err:#}"),
        Err(_) => panic!("the start did not end in time"),
    }
}

#[tokio::test]
async fn a_relative_binary_path_runs_from_the_task_root() {
    let mut config = config(1, Duration::from_secs(20));
    // Tests run in the package's directory.
    config.binary = PathBuf::from("tests/fixtures/runtime-api-function.py");
    let pool = start(config).await;
    let response = invoke(&pool, json!({ "action": "echo" }))
        .await
        .expect("the function answered");
    assert_eq!(
        response["env"]["LAMBDA_TASK_ROOT"],
        script_function()
            .parent()
            .map(|dir| dir.display().to_string())
            .unwrap_or_default()
    );
    shutdown(&pool).await;
}

#[tokio::test]
async fn a_missing_binary_is_a_clear_start_error() {
    let mut config = config(1, Duration::from_secs(5));
    config.binary = PathBuf::from("/nonexistent/websocket-handler");
    let error = start_error(config).await;
    assert!(error.contains("/nonexistent/websocket-handler"), "{error}");
    assert!(error.contains("not found"), "{error}");
}

#[tokio::test]
async fn an_init_error_is_a_clear_start_error() {
    let mut config = config(1, Duration::from_secs(5));
    config
        .env
        .push(("TEST_INIT".to_owned(), "error".to_owned()));
    let error = start_error(config).await;
    assert!(
        error.contains("Runtime.TestInitError: init failed on purpose"),
        "{error}"
    );
    assert!(error.contains("test-function"), "{error}");
}

#[tokio::test]
async fn an_exit_during_init_is_a_clear_start_error_with_the_output() {
    let mut config = config(1, Duration::from_secs(5));
    config.env.push(("TEST_INIT".to_owned(), "exit".to_owned()));
    let error = start_error(config).await;
    assert!(error.contains("exited with status 7"), "{error}");
    assert!(error.contains("giving up during init"), "{error}");
}

#[tokio::test]
async fn a_function_that_never_asks_for_an_event_fails_init_after_lambdas_limit() {
    let mut config = config(1, Duration::from_secs(5));
    config.env.push(("TEST_INIT".to_owned(), "hang".to_owned()));
    let started = Instant::now();
    let error = start_error(config).await;
    assert!(started.elapsed() >= INIT_TIMEOUT, "{:?}", started.elapsed());
    assert!(error.contains("did not finish init"), "{error}");
    assert!(error.contains("function starting"), "{error}");
}

#[test]
fn error_reports_prefer_the_body_then_the_header() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "Lambda-Runtime-Function-Error-Type",
        "Unhandled".parse().expect("header value"),
    );
    assert_eq!(
        error_report(&headers, br#"{"errorType":"Oops","errorMessage":"bad"}"#),
        ("Oops".to_owned(), "bad".to_owned())
    );
    assert_eq!(
        error_report(&headers, b"garbage"),
        ("Unhandled".to_owned(), String::new())
    );
    assert_eq!(
        error_report(&HeaderMap::new(), b""),
        ("Unhandled".to_owned(), String::new())
    );
}
