//! Any runtime: `devstack up --function-cmd "python3 -m awslambdaric app.handler"`
//! runs a handler given as a command rather than a built binary. The command
//! becomes a custom runtime's `bootstrap` (a shell script that enters the
//! handler's directory and `exec`s it), which the local Lambda starts as it
//! starts any function: the same Runtime API, environment, freeze and limits.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// Writes `dir/bootstrap`, running `command` in `workdir` with `/bin/sh`
/// (so the command is written as at a shell prompt), and returns its path.
pub fn write_bootstrap(dir: &Path, command: &str, workdir: &Path) -> anyhow::Result<PathBuf> {
    if command.trim().is_empty() {
        bail!("--function-cmd is empty: give the command that starts the handler's runtime");
    }
    let workdir = std::path::absolute(workdir)
        .with_context(|| format!("resolving --function-dir {}", workdir.display()))?;
    if !workdir.is_dir() {
        bail!("--function-dir {} is not a directory", workdir.display());
    }
    if workdir.to_string_lossy().contains('\'') {
        bail!(
            "--function-dir {} contains a single quote, which the bootstrap script cannot quote",
            workdir.display()
        );
    }
    let bootstrap = dir.join("bootstrap");
    let script = format!(
        "#!/bin/sh\n# Written by `devstack up --function-cmd`: the handler's runtime, as a custom runtime's bootstrap.\ncd '{}' && exec {command}\n",
        workdir.display()
    );
    std::fs::write(&bootstrap, script)
        .with_context(|| format!("writing {}", bootstrap.display()))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", bootstrap.display()))?;
    Ok(bootstrap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootstrap_runs_the_command_in_the_handlers_directory() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let handler = tempfile::tempdir().expect("the handler's directory");
        std::fs::write(handler.path().join("marker"), "here").expect("a file");
        let bootstrap = write_bootstrap(dir.path(), "cat marker; echo \" $0\"", handler.path())
            .expect("written");
        let output = std::process::Command::new(&bootstrap)
            .output()
            .expect("runs");
        assert!(output.status.success(), "{output:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).split(' ').next(),
            Some("here")
        );
    }

    #[test]
    fn an_empty_command_or_a_missing_directory_is_named() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let error = write_bootstrap(dir.path(), " ", dir.path()).expect_err("empty");
        assert!(
            error.to_string().contains("--function-cmd is empty"),
            "{error}"
        );
        let error =
            write_bootstrap(dir.path(), "true", &dir.path().join("nope")).expect_err("missing");
        assert!(error.to_string().contains("is not a directory"), "{error}");
    }
}
