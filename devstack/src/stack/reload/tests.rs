//! The reloader against a recording target: which swaps a save leads to,
//! and that a refused edit or a failed build or start changes nothing.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::*;

/// What the reloader asked of the stack.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    /// The binary's contents, and the function timeout it was started with.
    Function {
        contents: String,
        timeout_secs: u32,
    },
    Api {
        routes: Vec<String>,
    },
    Edge {
        rate_limit: u64,
    },
    AsyncInvoke {
        retries: u32,
    },
}

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<Call>>,
    fail_function: AtomicBool,
    /// Swaps running now, and the most ever at once.
    running: AtomicUsize,
    most_at_once: AtomicUsize,
    swap_delay: Mutex<Duration>,
}

impl Recorder {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }
}

impl Target for Arc<Recorder> {
    async fn swap_function(&self, topology: &Topology, binary: &Path) -> anyhow::Result<()> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        let delay = *self.swap_delay.lock().expect("delay");
        tokio::time::sleep(delay).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        if self.fail_function.load(Ordering::SeqCst) {
            anyhow::bail!("init failed on purpose");
        }
        self.calls.lock().expect("calls").push(Call::Function {
            contents: std::fs::read_to_string(binary)?,
            timeout_secs: topology.function.timeout_secs,
        });
        Ok(())
    }

    fn swap_api(&self, topology: &Topology) {
        let routes = topology
            .routes
            .iter()
            .map(|r| r.route_key.clone())
            .collect();
        self.calls.lock().expect("calls").push(Call::Api { routes });
    }

    fn swap_edge(&self, topology: &Topology) {
        self.calls.lock().expect("calls").push(Call::Edge {
            rate_limit: topology.waf.rate_limit,
        });
    }

    fn swap_async_invoke(&self, topology: &Topology) {
        self.calls.lock().expect("calls").push(Call::AsyncInvoke {
            retries: topology.function.async_invoke.maximum_retry_attempts,
        });
    }
}

/// A copy of the program and a function binary file in a temp directory.
struct Fixture {
    dir: tempfile::TempDir,
    recorder: Arc<Recorder>,
    reloader: Reloader<Arc<Recorder>>,
}

/// A temporary directory holding the workspace's `Pulumi.yaml` and
/// `Pulumi.dev.yaml`, for a test that edits the program.
pub(super) fn copy_of_the_dev_program() -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let dir = tempfile::tempdir().expect("temp dir");
    for name in ["Pulumi.yaml", "Pulumi.dev.yaml"] {
        std::fs::copy(root.join(name), dir.path().join(name)).expect("copy");
    }
    dir
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = copy_of_the_dev_program();
        let binary = dir.path().join("bootstrap");
        std::fs::write(&binary, "version 1").expect("write");
        let files = ProgramFiles::new(dir.path(), "dev");
        let running = files.read().expect("the program loads");
        let function = Function::first(FunctionSource::File(binary))
            .await
            .expect("the first version");
        let recorder = Arc::new(Recorder::default());
        let reloader = Reloader::new(Arc::clone(&recorder), files, running, function);
        Fixture {
            dir,
            recorder,
            reloader,
        }
    }

    fn replace_binary(&self, contents: &str) {
        let tmp = self.dir.path().join("bootstrap.new");
        std::fs::write(&tmp, contents).expect("write");
        std::fs::rename(&tmp, self.dir.path().join("bootstrap")).expect("rename");
    }

    fn edit_program(&self, from: &str, to: &str) {
        let path = self.dir.path().join("Pulumi.yaml");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains(from), "Pulumi.yaml has no {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).expect("write");
    }

    fn edit_stack(&self, line: &str) {
        let path = self.dir.path().join("Pulumi.dev.yaml");
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str(line);
        std::fs::write(&path, text).expect("write");
    }

    fn current_contents(&self) -> String {
        std::fs::read_to_string(&self.reloader.function().current().binary).expect("current")
    }
}

const FUNCTION: Changed = Changed {
    function: true,
    program: false,
};
const PROGRAM: Changed = Changed {
    function: false,
    program: true,
};

#[tokio::test]
async fn a_replaced_binary_is_swapped_in_and_the_old_copy_retired() {
    let mut f = Fixture::new().await;
    let first = f.reloader.function().current().clone();
    f.replace_binary("version 2");
    f.reloader.handle(FUNCTION).await;
    let timeout_secs = f.reloader.running().function.timeout_secs;
    assert_eq!(
        f.recorder.calls(),
        [Call::Function {
            contents: "version 2".into(),
            timeout_secs
        }]
    );
    assert_eq!(f.current_contents(), "version 2");
    assert_ne!(f.reloader.function().current().identity, first.identity);
    assert!(!first.binary.exists(), "the old copy is removed");

    // Saved again with the same bytes: nothing to swap.
    f.replace_binary("version 2");
    f.reloader.handle(FUNCTION).await;
    assert_eq!(f.recorder.calls().len(), 1);
}

#[tokio::test]
async fn a_version_that_fails_to_start_leaves_the_old_one_serving() {
    let mut f = Fixture::new().await;
    f.recorder.fail_function.store(true, Ordering::SeqCst);
    f.replace_binary("version 2");
    f.reloader.handle(FUNCTION).await;
    assert_eq!(f.current_contents(), "version 1");

    // A removed file is no new version either.
    std::fs::remove_file(f.dir.path().join("bootstrap")).expect("rm");
    f.recorder.fail_function.store(false, Ordering::SeqCst);
    f.reloader.handle(FUNCTION).await;
    assert_eq!(f.current_contents(), "version 1");
    assert!(f.recorder.calls().is_empty());
}

#[tokio::test]
async fn an_added_route_is_applied_to_the_api_only() {
    let mut f = Fixture::new().await;
    f.edit_program(
        "  pingRoute:\n",
        "  echoRoute:\n    type: aws:apigatewayv2/route:Route\n    properties:\n      \
         apiId: ${api.id}\n      routeKey: echo\n      target: integrations/${integration.id}\n    \
         options:\n      version: 7.51.1\n  pingRoute:\n",
    );
    f.reloader.handle(PROGRAM).await;
    let calls = f.recorder.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let Call::Api { routes } = &calls[0] else {
        panic!("expected the API swap: {calls:?}");
    };
    assert!(routes.iter().any(|r| r == "echo"), "{routes:?}");
    assert!(
        f.reloader
            .running()
            .routes
            .iter()
            .any(|r| r.route_key == "echo")
    );
}

#[tokio::test]
async fn stack_config_edits_reach_the_edge_and_the_function() {
    let mut f = Fixture::new().await;
    let project = f.reloader.running().project.clone();
    f.edit_stack(&format!(
        "  {project}:rateLimit: 10\n  {project}:functionTimeout: 7\n"
    ));
    f.reloader.handle(PROGRAM).await;
    assert_eq!(
        f.recorder.calls(),
        [
            Call::Function {
                contents: "version 1".into(),
                timeout_secs: 7
            },
            Call::Edge { rate_limit: 10 }
        ]
    );
    assert_eq!(f.reloader.running().function.timeout_secs, 7);
}

#[tokio::test]
async fn a_stage_rename_or_an_invalid_edit_changes_nothing() {
    let mut f = Fixture::new().await;
    let before = f.reloader.running().clone();
    let project = before.project.clone();
    f.edit_stack(&format!("  {project}:stageName: v1\n"));
    f.reloader.handle(PROGRAM).await;
    assert!(f.recorder.calls().is_empty());
    assert_eq!(f.reloader.running(), &before);

    let mut f = Fixture::new().await;
    f.edit_program("routeKey: ping", "routeKay: ping");
    f.reloader.handle(PROGRAM).await;
    assert!(f.recorder.calls().is_empty());
    assert_eq!(f.reloader.running(), &before);
}

#[tokio::test]
async fn a_config_change_the_function_refuses_is_not_applied() {
    let mut f = Fixture::new().await;
    let before = f.reloader.running().clone();
    let project = before.project.clone();
    f.recorder.fail_function.store(true, Ordering::SeqCst);
    f.edit_stack(&format!(
        "  {project}:functionTimeout: 7\n  {project}:rateLimit: 10\n"
    ));
    f.reloader.handle(PROGRAM).await;
    assert!(f.recorder.calls().is_empty(), "{:?}", f.recorder.calls());
    assert_eq!(f.reloader.running(), &before);
}

#[tokio::test]
async fn saves_during_a_swap_make_one_more_swap_never_two_at_once() {
    let f = Fixture::new().await;
    *f.recorder.swap_delay.lock().expect("delay") = Duration::from_millis(300);
    let (changes, receiver) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let run = tokio::spawn(f.reloader.run(receiver, stop.clone()));

    let tmp = f.dir.path().join("bootstrap.new");
    let target = f.dir.path().join("bootstrap");
    std::fs::write(&tmp, "version 2").expect("write");
    std::fs::rename(&tmp, &target).expect("rename");
    changes.send(FUNCTION).expect("send");
    // Wait for the first swap to be under way, then save five times.
    for _ in 0..100 {
        if f.recorder.running.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        f.recorder.running.load(Ordering::SeqCst),
        1,
        "the swap started"
    );
    for i in 3..8 {
        std::fs::write(&tmp, format!("version {i}")).expect("write");
        std::fs::rename(&tmp, &target).expect("rename");
        changes.send(FUNCTION).expect("send");
    }
    for _ in 0..300 {
        if f.recorder.calls().len() >= 2 && f.recorder.running.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Give a (wrong) third swap the time to show itself.
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the reloader stops")
        .expect("the reloader task");

    let contents: Vec<String> = f
        .recorder
        .calls()
        .into_iter()
        .map(|call| match call {
            Call::Function { contents, .. } => contents,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(contents, ["version 2", "version 7"]);
    assert_eq!(f.recorder.most_at_once.load(Ordering::SeqCst), 1);
}
