#!/usr/bin/env bash
# Mutation testing of the function (`websocket-handler`) and the `protocol`
# crate with cargo-mutants (issue 30): each mutant is a small change to the
# code (an operator flipped, a body replaced by a default); a mutant that every
# test still passes ("missed") is a line no test defends.
#
#   scripts/mutants.sh                     every mutant of both crates (~520; hours)
#   scripts/mutants.sh diff [BASE]         only mutants on lines changed since BASE
#                                          (default origin/main, else main): for a change before it lands
#   scripts/mutants.sh file GLOB...        only mutants in these files, e.g.
#                                          'functions/websocket-handler/src/claims.rs'
# Anything after `--` goes to cargo-mutants (e.g. `-- --list`, `-- -j 2`).
#
# Needs `cargo install cargo-mutants --locked` (27.1.0 measured). With
# cargo-nextest installed (`cargo install cargo-nextest --locked`, 0.9.151
# measured) the tests run under it: every test target at once (the suite
# mostly waits on sockets and timers, so NEXTEST_TEST_THREADS defaults to 12
# here) and the first failure ends the run (`--max-fail=1:immediate`), which
# cuts a caught mutant's test phase from ~20 s to under 1 s. Results land
# in $CARGO_TARGET_DIR/mutants/mutants.out (or $MUTANTS_OUT/mutants.out) (caught.txt, missed.txt,
# unviable.txt, timeout.txt, outcomes.json). cargo-mutants builds each mutant
# in a scratch copy of the source (no target directory copied); the copy is
# made under $CARGO_TARGET_DIR/mutants/tmp and builds into $CARGO_TARGET_DIR,
# so the dependencies already compiled there are reused and nothing is left
# outside the target directory. Cargo names a workspace crate's artifacts by
# its path inside the workspace, so the copy and the worktree share them: do
# not build or test the function in the worktree while this runs (cargo may
# take a mutant's build for fresh and run it).
#
# Scope: every test target of the mutated crate runs (`cargo test -p <crate>`,
# about 35 s for the function: unit tests, tables in the local DynamoDB, the loopback
# management API and Invoke API, the built binary). Offline-only: no file is
# excluded, since every test here runs on loopback. The e2e suite (`tests/`,
# the whole local stack) is not run per mutant: minutes each.
set -euo pipefail

root=$(git rev-parse --show-toplevel)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
export CARGO_TARGET_DIR=$target
scratch=$target/mutants/tmp
mkdir -p "$scratch"
export TMPDIR=$scratch

mode=${1:-full}
[ $# -gt 0 ] && shift
args=(
    --package websocket-handler --package protocol
    # A mutant whose tests run past this is counted "timeout" (a hang it
    # caused). The slowest test waits one post timeout (~5 s); the suite takes
    # ~35 s alone on two cores, more when they are shared.
    --timeout "${MUTANTS_TIMEOUT:-180}"
    --output "${MUTANTS_OUT:-$target/mutants}"
)
case $mode in
full) ;;
diff)
    base=${1:-$(git rev-parse --verify -q origin/main || echo main)}
    [ $# -gt 0 ] && shift
    diff_file=$target/mutants/changes.diff
    git diff "$base" -- functions/websocket-handler/src crates/protocol/src >"$diff_file"
    if [ ! -s "$diff_file" ]; then
        echo "no change to the function or protocol sources since $base"
        exit 0
    fi
    args+=(--in-diff "$diff_file")
    ;;
file)
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        args+=(--file "$1")
        shift
    done
    ;;
*)
    echo "usage: $0 [full | diff [BASE] | file GLOB...] [-- cargo-mutants args]" >&2
    exit 2
    ;;
esac
[ "${1:-}" = -- ] && shift
test_args=()
if cargo nextest --version >/dev/null 2>&1; then
    export NEXTEST_TEST_THREADS=${NEXTEST_TEST_THREADS:-12}
    args+=(--test-tool nextest)
    # cargo-mutants passes what follows its own `--` to the test tool.
    case " $* " in
    *" -- "*) test_args=(--max-fail=1:immediate) ;;
    *) test_args=(-- --max-fail=1:immediate) ;;
    esac
fi
status=0
cargo mutants "${args[@]}" "$@" "${test_args[@]}" || status=$?
rm -rf "$scratch"
# 0: all caught; 2: some missed; 3: some timed out (cargo-mutants' codes).
exit "$status"
