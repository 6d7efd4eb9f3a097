//! A Pulumi session against the double: an isolated `PULUMI_HOME` (never
//! `~/.pulumi`) with the double installed as the `aws` 7.51.1 plugin, a local
//! file backend, a passphrase for secrets, and a copy of the program to run
//! in. Commands run with a deadline and are killed with their plugins if it
//! passes.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

use super::toolchain::{AWS_VERSION, Toolchain};

/// The passphrase of the local backend's secrets (rehearsal state only).
pub const PASSPHRASE: &str = "rehearsal";

/// The longest any one pulumi command may take.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(600);

/// One isolated Pulumi home + backend + program copy.
#[derive(Debug)]
pub struct Session {
    toolchain: Toolchain,
    home: PathBuf,
    program: PathBuf,
    journal: PathBuf,
}

/// A finished pulumi command.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Both streams, as a user would see them.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl Session {
    /// Sets up `work` (created if missing) as the session's home, backend and
    /// journal, for the program already copied to `program`; installs the
    /// double and logs in to the file backend.
    pub fn new(toolchain: &Toolchain, work: &Path, program: &Path) -> anyhow::Result<Self> {
        let home = work.join("pulumi-home");
        let state = work.join("state");
        for dir in [&home, &state] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let session = Self {
            toolchain: toolchain.clone(),
            home,
            program: program.to_path_buf(),
            journal: work.join("journal.jsonl"),
        };
        let double = toolchain.aws_double.to_string_lossy().into_owned();
        session.expect_ok(&[
            "plugin",
            "install",
            "resource",
            "aws",
            AWS_VERSION,
            "--file",
            &double,
            "--reinstall",
        ])?;
        let backend = format!("file://{}", state.display());
        session.expect_ok(&["login", &backend])?;
        Ok(session)
    }

    pub fn program_dir(&self) -> &Path {
        &self.program
    }

    pub fn journal_path(&self) -> &Path {
        &self.journal
    }

    /// `pulumi <args>` in the program's directory with the session's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.toolchain.bin_dir.clone()];
        paths.extend(std::env::split_paths(&path));
        let mut cmd = Command::new(&self.toolchain.pulumi);
        cmd.args(args)
            .current_dir(&self.program)
            .env("PATH", std::env::join_paths(paths).unwrap_or(path))
            .env("PULUMI_HOME", &self.home)
            .env("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE)
            .env("PULUMI_SKIP_UPDATE_CHECK", "true")
            .env("PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION", "true")
            // pulumi-yaml 1.25.0's evaluator reads and writes a map from
            // several goroutines (run.go:2068, evaluatePropertyAccess): under
            // load the YAML host died with "concurrent map read and map
            // write" in 2 of 11 pulumi_cli tests. One thread for Go code (the
            // CLI, the host and the double inherit it) keeps those goroutines
            // from running in parallel.
            .env("GOMAXPROCS", "1")
            .env_remove("PULUMI_BACKEND_URL")
            .env_remove("PULUMI_ACCESS_TOKEN")
            .env("AWS_DOUBLE_SCHEMA", &self.toolchain.schema)
            .env("AWS_DOUBLE_FACTS", &self.toolchain.facts)
            .env("AWS_DOUBLE_JOURNAL", &self.journal)
            // Its own process group, so a command past its deadline is
            // killed together with the plugins it started.
            .process_group(0);
        // And it ends with us: a killed test or rehearsal leaves no engine behind.
        local_process::die_with_parent(&mut cmd);
        cmd
    }

    /// Runs a command, capturing its output.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<Run> {
        let mut cmd = self.command(args);
        // Captured output is read by programs: no colour codes.
        cmd.env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = wait_bounded(cmd, args)?;
        Ok(Run {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Runs a command with its output shown as it goes (the rehearsal).
    pub fn run_shown(&self, args: &[&str]) -> anyhow::Result<ExitStatus> {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::null());
        Ok(wait_bounded(cmd, args)?.status)
    }

    /// Runs a command that must succeed, returning its output.
    pub fn expect_ok(&self, args: &[&str]) -> anyhow::Result<Run> {
        let run = self.run(args)?;
        if !run.status.success() {
            bail!(
                "`pulumi {}` failed ({}):\n{}",
                args.join(" "),
                run.status,
                run.text()
            );
        }
        Ok(run)
    }

    /// Every provider call so far, in order.
    pub fn journal(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let text = match fs::read_to_string(&self.journal) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err).context("reading the journal"),
        };
        text.lines()
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str(line)
                    .with_context(|| format!("journal line {} is not JSON: {line}", i + 1))
            })
            .collect()
    }
}

/// Spawns `cmd` and waits for it at most COMMAND_DEADLINE.
fn wait_bounded(mut cmd: Command, args: &[&str]) -> anyhow::Result<Output> {
    let child = cmd
        .spawn()
        .with_context(|| format!("starting `pulumi {}`", args.join(" ")))?;
    let group = child.id();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(COMMAND_DEADLINE) {
        Ok(output) => output.with_context(|| format!("waiting for `pulumi {}`", args.join(" "))),
        Err(_) => {
            // The command runs in a process group of its own (see `command`).
            let _ = local_process::signal_group(group, local_process::Signal::KILL);
            bail!(
                "`pulumi {}` did not finish within {COMMAND_DEADLINE:?} and was killed",
                args.join(" ")
            )
        }
    }
}
