//! `devstack rehearse`: the real Pulumi CLI and YAML language host, built
//! from source at pinned versions, run against the program with a provider
//! double standing in for pulumi-aws 7.51.1 (nothing reaches AWS) on a local
//! file backend under `target/pulumi/`: `preview`, `up --yes`,
//! `stack output DistributionURL`, `destroy --yes`, with Pulumi's own output.
//! It is how an edit of `Pulumi.yaml` is checked before touching AWS. The
//! `pulumi_cli` tests use the same library.

pub mod program;
pub mod session;
pub mod toolchain;

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

pub use session::{Run, Session};
pub use toolchain::Toolchain;

#[derive(Args, Debug)]
pub struct RehearseArgs {
    /// The stack whose config to use (Pulumi.<stack>.yaml).
    #[arg(long, default_value = "dev")]
    stack: String,
    /// The directory holding Pulumi.yaml [default: the repository root].
    #[arg(long)]
    program_dir: Option<PathBuf>,
}

/// Runs the rehearsal, from a clean state each time.
pub fn run(args: RehearseArgs) -> anyhow::Result<()> {
    let root = toolchain::repo_root();
    let source = args.program_dir.unwrap_or_else(|| root.clone());
    step("toolchain (target/pulumi/bin)");
    let toolchain = Toolchain::ensure(&root)?;

    let work = root.join("target/pulumi/rehearsal");
    // One rehearsal at a time: each starts by clearing `work`, which would
    // pull the state from under another (a test and a user's run, say).
    let _turn = take_turn(&root.join("target/pulumi/rehearsal.lock"))?;
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("clearing {}", work.display()))?;
    }
    let program = work.join("program");
    program::copy_program(&source, &program, &args.stack)?;
    for (package, path) in program::ZIPS {
        let zip = program.join(path);
        let built = source.join(path);
        if built.is_file() {
            fs::create_dir_all(zip.parent().context("zip path")?)?;
            fs::copy(&built, &zip).with_context(|| format!("copying {}", built.display()))?;
        } else {
            eprintln!(
                "rehearsal: {} is not built (cargo lambda build --release --arm64 --output-format zip \
                 -p {package}); the double never runs the code, so a stand-in zip is deployed",
                built.display()
            );
            program::write_function_zip(&zip, b"#!/bin/sh\necho stand-in for the rehearsal\n")?;
        }
    }
    let session = Session::new(&toolchain, &work, &program)?;
    eprintln!(
        "rehearsal: PULUMI_HOME={}/pulumi-home, backend file://{}/state, program copy {}",
        work.display(),
        work.display(),
        program.display()
    );

    for command in [
        vec!["stack", "init", args.stack.as_str()],
        vec!["preview"],
        vec!["up", "--yes"],
        vec!["stack", "output", "DistributionURL"],
        vec!["destroy", "--yes"],
    ] {
        step(&format!("pulumi {}", command.join(" ")));
        let status = session.run_shown(&command)?;
        if !status.success() {
            bail!(
                "`pulumi {}` failed ({status}); Pulumi's output is above",
                command.join(" ")
            );
        }
    }
    step("done");
    eprintln!(
        "rehearsal: every provider call is in {}",
        session.journal_path().display()
    );
    Ok(())
}

/// Holds `lock` exclusively until dropped, saying so if another rehearsal
/// has it first.
fn take_turn(lock: &std::path::Path) -> anyhow::Result<fs::File> {
    let file = fs::File::create(lock).with_context(|| format!("creating {}", lock.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            eprintln!(
                "rehearsal: waiting for another rehearsal to finish ({})",
                lock.display()
            );
            file.lock()
                .with_context(|| format!("locking {}", lock.display()))?;
        }
        Err(fs::TryLockError::Error(err)) => {
            return Err(err).with_context(|| format!("locking {}", lock.display()));
        }
    }
    Ok(file)
}

fn step(what: &str) {
    eprintln!("\n==> {what}");
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_second_rehearsal_waits_for_the_first() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let lock = dir.path().join("rehearsal.lock");
        let first = take_turn(&lock).expect("the first turn");
        let (took, taken) = mpsc::channel();
        let second = std::thread::spawn({
            let lock = lock.clone();
            move || {
                let turn = take_turn(&lock);
                let _ = took.send(());
                turn.map(drop)
            }
        });
        assert!(
            taken.recv_timeout(Duration::from_millis(300)).is_err(),
            "the second rehearsal ran while the first held the lock"
        );
        drop(first);
        taken
            .recv_timeout(Duration::from_secs(10))
            .expect("the second rehearsal goes once the first is done");
        second
            .join()
            .expect("the second thread")
            .expect("the second turn");
    }
}
