//! Building the function's host binary with cargo, for the stack and the
//! tests.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::{FUNCTION_BINARY, FUNCTION_PACKAGE};

/// Builds the host binary of the function with cargo (`$CARGO`, else
/// `cargo`), in the profile devstack itself was built with, and returns its
/// path (`target/<profile>/websocket-handler`).
pub fn build_function_binary() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("devstack's manifest directory has no parent (the workspace root)")?;
    let release = !cfg!(debug_assertions);
    let mut command = std::process::Command::new(&cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .args(["--package", FUNCTION_PACKAGE, "--bin", FUNCTION_BINARY])
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if release {
        command.arg("--release");
    }
    let profile = if release { "release" } else { "dev" };
    eprintln!("devstack: building the function ({FUNCTION_PACKAGE}, {profile} profile)…");
    let output = command.output().with_context(|| {
        format!(
            "could not run `{} build` to build the function {FUNCTION_PACKAGE}: is cargo installed and on PATH?",
            cargo.to_string_lossy()
        )
    })?;
    if !output.status.success() {
        bail!(
            "building the function {FUNCTION_PACKAGE} failed ({}); cargo printed the errors above (`cargo build -p {FUNCTION_PACKAGE}` shows them again)",
            output.status
        );
    }
    function_executable(&output.stdout).with_context(|| {
        format!("`cargo build` succeeded but reported no `{FUNCTION_BINARY}` executable")
    })
}

/// The path of the function's executable, from `cargo build --message-format=json`.
pub(super) fn function_executable(messages: &[u8]) -> Option<PathBuf> {
    messages
        .split(|byte| *byte == b'\n')
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter(|message| message["target"]["name"] == FUNCTION_BINARY)
        .filter(|message| {
            message["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|kind| kind == "bin"))
        })
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
}
