//! Where the function's binary comes from in watch mode, and which binary it is.
//!
//! [`CargoFunction`] builds the function crate with cargo in the profile
//! devstack itself was built with (so `cargo run -p devstack` runs a dev build
//! of the function, `--release` a release one), capturing the compiler's
//! output to show when the build fails. [`Snapshots`] copies each binary
//! the pool is to run into a directory of devstack's own and names it by a
//! short SHA-256 of its bytes ([`Identity`]): the next build (or the next
//! replacement of a `--function-bin` file) can never change the code of a
//! version that is still serving.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::process::Command;

/// The function the stack runs: its package and binary name.
pub const FUNCTION_PACKAGE: &str = "websocket-handler";
pub const FUNCTION_BINARY: &str = "websocket-handler";
/// The `$connect` authorizer's package and binary, run when sign-in is on.
pub const AUTHORIZER_PACKAGE: &str = "authorizer";

/// Hex digits of the SHA-256 shown as a binary's identity.
const SHORT_HASH: usize = 12;

/// A cargo build of the function.
#[derive(Debug, Clone)]
pub struct CargoFunction {
    /// The workspace's `Cargo.toml`.
    pub manifest_path: PathBuf,
    pub package: String,
    pub bin: String,
    /// `--release`: when devstack itself is a release build.
    pub release: bool,
}

/// Where cargo's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Show,
    Capture,
}

/// A successful build.
#[derive(Debug, Clone)]
pub struct Built {
    pub binary: PathBuf,
    pub duration: Duration,
}

/// Why a build produced no binary.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("could not run `{cargo} build`: {source} (is cargo installed and on PATH?)")]
    Spawn {
        cargo: String,
        source: std::io::Error,
    },
    /// The compiler's output is in `output` (empty when it was shown).
    #[error("`cargo build -p {package}` failed ({status}) after {:.1} s", .duration.as_secs_f64())]
    Failed {
        package: String,
        status: ExitStatus,
        duration: Duration,
        output: String,
    },
    #[error("`cargo build` succeeded but reported no `{0}` executable")]
    NoExecutable(String),
}

impl CargoFunction {
    /// The function package of the workspace whose manifest is `manifest_path`,
    /// in devstack's own profile.
    pub fn new(manifest_path: impl Into<PathBuf>) -> Self {
        CargoFunction::for_package(manifest_path, FUNCTION_PACKAGE)
    }

    /// Another function package of the workspace (its binary named like
    /// it), in devstack's own profile: the authorizer.
    pub fn for_package(manifest_path: impl Into<PathBuf>, package: &str) -> Self {
        CargoFunction {
            manifest_path: manifest_path.into(),
            package: package.to_string(),
            bin: package.to_string(),
            release: !cfg!(debug_assertions),
        }
    }

    pub fn profile(&self) -> &'static str {
        if self.release { "release" } else { "dev" }
    }

    fn cargo() -> std::ffi::OsString {
        std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
    }

    /// Builds the function. With [`Output::Capture`] cargo's output (the
    /// compiler's diagnostics) is returned on failure; with
    /// [`Output::Show`] it goes to devstack's stderr as it comes (the first
    /// build, which may take a while). Dropping the future kills cargo.
    pub async fn build(&self, output: Output) -> Result<Built, BuildError> {
        let cargo = Self::cargo();
        let mut command = Command::new(&cargo);
        command
            .arg("build")
            .arg("--manifest-path")
            .arg(&self.manifest_path)
            .args(["--package", &self.package, "--bin", &self.bin])
            .arg("--message-format=json-render-diagnostics")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(match output {
                Output::Capture => Stdio::piped(),
                Output::Show => Stdio::inherit(),
            })
            .kill_on_drop(true);
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            command.arg("--color=always");
        }
        if self.release {
            command.arg("--release");
        }
        let started = Instant::now();
        let output = command.output().await.map_err(|source| BuildError::Spawn {
            cargo: cargo.to_string_lossy().into_owned(),
            source,
        })?;
        let duration = started.elapsed();
        if !output.status.success() {
            return Err(BuildError::Failed {
                package: self.package.clone(),
                status: output.status,
                duration,
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        let binary = executable(&output.stdout, &self.bin)
            .ok_or_else(|| BuildError::NoExecutable(self.bin.clone()))?;
        Ok(Built { binary, duration })
    }

    /// The directories whose files make up the function: its package's and
    /// those of the workspace packages it depends on by path (`cargo metadata`).
    pub async fn source_dirs(&self) -> anyhow::Result<Vec<PathBuf>> {
        let output = Command::new(Self::cargo())
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .arg("--manifest-path")
            .arg(&self.manifest_path)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .context("running `cargo metadata` to find the function's sources")?;
        if !output.status.success() {
            bail!(
                "`cargo metadata` failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let metadata: Value =
            serde_json::from_slice(&output.stdout).context("reading `cargo metadata`'s output")?;
        source_dirs(&metadata, &self.package)
    }
}

/// The function's package directory and those of its path dependencies,
/// transitively, from `cargo metadata --no-deps`.
fn source_dirs(metadata: &Value, package: &str) -> anyhow::Result<Vec<PathBuf>> {
    let packages = metadata["packages"]
        .as_array()
        .context("`cargo metadata` listed no packages")?;
    let dir_of = |name: &str| -> Option<PathBuf> {
        let package = packages.iter().find(|p| p["name"] == name)?;
        Path::new(package["manifest_path"].as_str()?)
            .parent()
            .map(Path::to_path_buf)
    };
    let mut dirs = Vec::new();
    let mut todo = vec![package.to_string()];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(dir) = dir_of(&name) else {
            if name == package {
                return Err(anyhow!("the workspace has no package {package}"));
            }
            continue;
        };
        dirs.push(dir);
        let Some(package) = packages.iter().find(|p| p["name"] == name.as_str()) else {
            continue;
        };
        for dependency in package["dependencies"].as_array().into_iter().flatten() {
            if dependency["path"].is_string()
                && let Some(name) = dependency["name"].as_str()
            {
                todo.push(name.to_string());
            }
        }
    }
    Ok(dirs)
}

/// The path of binary `bin`, from `cargo build --message-format=json`.
pub fn executable(messages: &[u8], bin: &str) -> Option<PathBuf> {
    messages
        .split(|byte| *byte == b'\n')
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter(|message| message["target"]["name"] == bin)
        .filter(|message| {
            message["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|kind| kind == "bin"))
        })
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
}

/// Which binary a version runs: a short SHA-256 of its bytes and when the
/// file it came from was last modified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub sha256: String,
    pub modified: Option<SystemTime>,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.sha256)?;
        if let Some(modified) = self.modified {
            let modified: chrono::DateTime<chrono::Utc> = modified.into();
            write!(
                f,
                " (modified {})",
                modified.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )?;
        }
        Ok(())
    }
}

/// The short SHA-256 of a file's bytes.
pub fn short_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    let digest = hex::encode(hasher.finalize());
    Ok(digest[..SHORT_HASH].to_string())
}

/// Private copies of the binaries the pool runs, removed with the stack.
#[derive(Debug)]
pub struct Snapshots {
    dir: tempfile::TempDir,
}

impl Snapshots {
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("devstack-function-")
            .tempdir()
            .context("creating a directory for the function's binaries")?;
        Ok(Snapshots { dir })
    }

    /// Copies `binary` (keeping its permissions) into a directory named by
    /// its hash, under its own name: the processes started from it show as the
    /// function in `ps`, `top` and the bench's CPU lines, not as a hash.
    /// Blocking: call from `spawn_blocking`.
    pub fn take(&self, binary: &Path) -> anyhow::Result<(PathBuf, Identity)> {
        let modified = std::fs::metadata(binary)
            .with_context(|| format!("the function binary {}", binary.display()))?
            .modified()
            .ok();
        let name = binary
            .file_name()
            .map_or_else(|| "function".into(), |n| n.to_string_lossy().into_owned());
        let partial = tempfile::Builder::new()
            .prefix(&format!("{name}.partial"))
            .tempfile_in(self.dir.path())
            .context("creating a copy of the function binary")?
            .into_temp_path();
        std::fs::copy(binary, &partial)
            .with_context(|| format!("copying the function binary {}", binary.display()))?;
        let sha256 = short_sha256(&partial)
            .with_context(|| format!("hashing the copy of {}", binary.display()))?;
        let version = self.dir.path().join(&sha256);
        std::fs::create_dir_all(&version)
            .with_context(|| format!("creating {}", version.display()))?;
        let path = version.join(&name);
        partial
            .persist(&path)
            .with_context(|| format!("naming the copy {}", path.display()))?;
        Ok((path, Identity { sha256, modified }))
    }

    /// Removes a copy no new process will start from (processes running it
    /// keep running: the file's data stays until they exit).
    pub fn retire(&self, path: &Path) {
        if path.starts_with(self.dir.path()) {
            let _ = std::fs::remove_file(path);
            if let Some(version) = path.parent().filter(|dir| *dir != self.dir.path()) {
                let _ = std::fs::remove_dir(version);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_is_read_from_cargo_messages() {
        let messages = br#"{"reason":"compiler-artifact","target":{"name":"protocol","kind":["lib"]},"executable":null}
{"reason":"compiler-artifact","target":{"name":"websocket-handler","kind":["bin"]},"executable":"/t/debug/websocket-handler"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable(messages, "websocket-handler"),
            Some(PathBuf::from("/t/debug/websocket-handler"))
        );
        assert_eq!(executable(messages, "other"), None);
    }

    #[test]
    fn the_source_dirs_follow_path_dependencies() {
        let metadata = serde_json::json!({"packages": [
            {"name": "fn", "manifest_path": "/w/functions/fn/Cargo.toml", "dependencies": [
                {"name": "protocol", "path": "/w/crates/protocol"},
                {"name": "serde"}
            ]},
            {"name": "protocol", "manifest_path": "/w/crates/protocol/Cargo.toml", "dependencies": [
                {"name": "fn", "path": "/w/functions/fn"}
            ]},
            {"name": "devstack", "manifest_path": "/w/devstack/Cargo.toml", "dependencies": []}
        ]});
        assert_eq!(
            source_dirs(&metadata, "fn").expect("dirs"),
            [
                PathBuf::from("/w/functions/fn"),
                PathBuf::from("/w/crates/protocol")
            ]
        );
        let error = source_dirs(&metadata, "missing").expect_err("no such package");
        assert!(error.to_string().contains("no package missing"), "{error}");
    }

    #[test]
    fn a_snapshot_is_an_executable_copy_under_its_own_name_in_a_directory_named_by_its_hash() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let original = dir.path().join("bootstrap");
        std::fs::write(&original, b"#!/bin/sh\necho one\n").expect("write");
        std::fs::set_permissions(&original, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let snapshots = Snapshots::new().expect("snapshots");

        let (first, identity) = snapshots.take(&original).expect("snapshot");
        assert_eq!(identity.sha256.len(), SHORT_HASH);
        assert!(
            first.ends_with(format!("{}/bootstrap", identity.sha256)),
            "{}",
            first.display()
        );
        assert!(identity.to_string().starts_with("sha256:"), "{identity}");
        let mode = std::fs::metadata(&first)
            .expect("copy")
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "the copy stays executable");

        std::fs::write(&original, b"#!/bin/sh\necho two\n").expect("rewrite");
        let (second, changed) = snapshots.take(&original).expect("snapshot");
        assert_ne!(changed.sha256, identity.sha256);
        assert_eq!(
            std::fs::read(&first).expect("the first copy"),
            b"#!/bin/sh\necho one\n",
            "a new version never changes the copy of the old one"
        );
        snapshots.retire(&first);
        assert!(!first.exists() && second.exists());
        assert!(
            first.parent().is_some_and(|dir| !dir.exists()),
            "the retired version's directory goes with it"
        );
    }

    /// A real cargo build of a one-file crate: the binary on success, the
    /// compiler's words on failure.
    #[tokio::test]
    async fn a_failed_build_returns_the_compilers_output() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
        )
        .expect("manifest");
        std::fs::create_dir(dir.path().join("src")).expect("src");
        let main = dir.path().join("src/main.rs");
        std::fs::write(&main, "fn main() { println!(\"one\"); }\n").expect("main.rs");
        let cargo = CargoFunction {
            manifest_path: dir.path().join("Cargo.toml"),
            package: "tiny".into(),
            bin: "tiny".into(),
            release: false,
        };
        assert_eq!(
            cargo.source_dirs().await.expect("cargo metadata"),
            [dir.path().to_path_buf()]
        );
        let built = cargo.build(Output::Capture).await.expect("the build");
        assert!(built.binary.is_file(), "{}", built.binary.display());

        std::fs::write(&main, "fn main() { let x: u8 = \"not a number\"; }\n").expect("main.rs");
        match cargo.build(Output::Capture).await {
            Err(BuildError::Failed { output, .. }) => {
                assert!(output.contains("mismatched types"), "{output}");
                assert!(output.contains("src/main.rs"), "{output}");
            }
            other => panic!("expected a failed build, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_binary_is_named() {
        let snapshots = Snapshots::new().expect("snapshots");
        let error = snapshots
            .take(Path::new("/nonexistent/websocket-handler"))
            .expect_err("missing");
        assert!(
            format!("{error:#}").contains("/nonexistent/websocket-handler"),
            "{error:#}"
        );
    }
}
