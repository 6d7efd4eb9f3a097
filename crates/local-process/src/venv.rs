//! A Python virtual environment installed once, under a file lock
//! ([`crate::once`]): awslambdaric for the benchmarks' Python sample.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::once::{self, StepError};

/// Why a venv could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum VenvError {
    #[error(
        "python3 was not found on PATH; installing {packages} needs python3 (3.9+) with the venv \
         module (Debian/Ubuntu: apt-get install python3 python3-venv)"
    )]
    PythonMissing { packages: String },
    #[error(
        "`{step}` failed ({status}); installing {packages} into {venv} needs python3 with the venv \
         module and pip access to PyPI.\n{output}"
    )]
    Install {
        step: String,
        packages: String,
        status: String,
        venv: PathBuf,
        output: String,
    },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

/// A venv at `dir` holding what `pip install <args>` installs.
#[derive(Debug, Clone)]
pub struct PythonVenv {
    dir: PathBuf,
    pip_args: Vec<String>,
    /// What a complete install holds, as written to the marker: the pip
    /// arguments, plus the content of a requirements file when given one.
    wanted: String,
}

impl PythonVenv {
    /// A venv at `dir` with `pip install <pip_args>` (e.g.
    /// `["awslambdaric==3.1.1"]`, or `["-r", "requirements.txt"]`).
    /// `fingerprint` is added to what the marker records (a requirements
    /// file's content), so a changed file reinstalls.
    pub fn new(dir: impl Into<PathBuf>, pip_args: &[&str], fingerprint: &str) -> Self {
        let pip_args: Vec<String> = pip_args.iter().map(|arg| arg.to_string()).collect();
        let wanted = format!("{}\n{fingerprint}", pip_args.join(" "));
        PythonVenv {
            dir: dir.into(),
            pip_args,
            wanted,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The venv's interpreter.
    pub fn python(&self) -> PathBuf {
        self.dir.join("bin").join("python")
    }

    /// Installs the venv unless a complete install of the same packages is
    /// there. Blocks (file lock, pip): call it from a blocking thread in async
    /// code. `progress` is called before an install starts, to say so.
    pub fn ensure(&self, progress: impl FnOnce(&Path)) -> Result<&Path, VenvError> {
        let io_err = |context, source| VenvError::Io { context, source };
        once::install_once(&self.dir, &self.wanted, io_err, progress, || {
            let mut create = Command::new("python3");
            create.arg("-m").arg("venv").arg(&self.dir);
            self.run_step(create, "python3 -m venv")?;
            let mut pip = Command::new(self.python());
            pip.args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--quiet",
            ])
            .args(&self.pip_args);
            self.run_step(pip, &format!("pip install {}", self.pip_args.join(" ")))
        })?;
        Ok(&self.dir)
    }

    fn run_step(&self, mut command: Command, step: &str) -> Result<(), VenvError> {
        let packages = self.pip_args.join(" ");
        once::run_step(&mut command).map_err(|error| match error {
            StepError::Missing => VenvError::PythonMissing { packages },
            StepError::Io(source) => VenvError::Io {
                context: format!("running {step}"),
                source,
            },
            StepError::Failed { status, output } => VenvError::Install {
                step: step.to_string(),
                packages,
                status,
                venv: self.dir.clone(),
                output,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_missing_python_is_named_as_the_prerequisite() {
        let venv = PythonVenv::new("/nonexistent/venv", &["awslambdaric"], "");
        let error = venv
            .run_step(
                Command::new("python3-that-does-not-exist"),
                "python3 -m venv",
            )
            .unwrap_err();
        assert!(matches!(error, VenvError::PythonMissing { .. }), "{error}");
        let text = error.to_string();
        assert!(text.contains("python3") && text.contains("venv") && text.contains("awslambdaric"));
    }

    #[test]
    fn a_failed_install_step_reports_its_output() {
        let venv = PythonVenv::new("/tmp/venv", &["awslambdaric"], "");
        let mut failing = Command::new("sh");
        failing.args([
            "-c",
            "echo 'No matching distribution found for awslambdaric' >&2; exit 1",
        ]);
        let text = venv
            .run_step(failing, "pip install")
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("No matching distribution") && text.contains("pip install"),
            "{text}"
        );
    }

    #[test]
    fn a_complete_install_is_kept_and_a_changed_one_is_not() {
        let scratch = tempfile::tempdir().expect("a temporary directory");
        let dir = scratch.path().join("venv");
        fs::create_dir_all(&dir).expect("the venv directory");
        let venv = PythonVenv::new(&dir, &["-r", "requirements.txt"], "awslambdaric==3.1.1");
        fs::write(dir.join(".installed"), &venv.wanted).expect("the marker");
        let mut asked = false;
        venv.ensure(|_| asked = true).expect("kept as it is");
        assert!(!asked, "a complete install is not redone");
        let changed = PythonVenv::new(&dir, &["-r", "requirements.txt"], "awslambdaric==4");
        assert!(
            !once::is_installed(&changed.dir, &changed.wanted),
            "another requirements file reinstalls"
        );
    }
}
