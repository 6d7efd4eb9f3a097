//! Node packages installed once, under a file lock ([`crate::once`]), from a
//! `package.json` and `package-lock.json` the caller carries: the
//! benchmark's peer (serverless-offline). `npm ci` installs exactly what the lock names,
//! with `--ignore-scripts` (the packages ship what they run; nothing is built
//! or fetched at install time beyond the tarballs).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::once::{self, StepError};

/// Why the packages could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum NpmError {
    #[error(
        "npm was not found on PATH; installing {packages} needs Node.js (20+) and npm \
         (Debian/Ubuntu: apt-get install nodejs npm)"
    )]
    NpmMissing { packages: String },
    #[error(
        "`npm ci` failed ({status}); installing {packages} into {dir} needs npm access to the \
         npm registry.\n{output}"
    )]
    Install {
        packages: String,
        status: String,
        dir: PathBuf,
        output: String,
    },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

/// `node_modules` at `dir`, holding what `package_lock` pins.
#[derive(Debug, Clone)]
pub struct NodePackages {
    dir: PathBuf,
    package_json: String,
    package_lock: String,
    /// What the error messages call the install, e.g. `serverless-offline@13.10.1`.
    packages: String,
}

impl NodePackages {
    /// Packages at `dir` as `package_json` and `package_lock` (their
    /// contents) name them; `packages` says what they are in messages.
    pub fn new(
        dir: impl Into<PathBuf>,
        package_json: &str,
        package_lock: &str,
        packages: &str,
    ) -> Self {
        NodePackages {
            dir: dir.into(),
            package_json: package_json.to_string(),
            package_lock: package_lock.to_string(),
            packages: packages.to_string(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file of an installed package, e.g. `("serverless", "bin/serverless.js")`.
    pub fn file(&self, package: &str, path: &str) -> PathBuf {
        self.dir.join("node_modules").join(package).join(path)
    }

    /// Installs the packages unless a complete install of the same lock is
    /// there. Blocks (file lock, npm): call it from a blocking thread in async
    /// code. `progress` is called before an install starts, to say so.
    pub fn ensure(&self, progress: impl FnOnce(&Path)) -> Result<&Path, NpmError> {
        let io_err = |context, source| NpmError::Io { context, source };
        let wanted = format!("{}\n{}", self.package_json, self.package_lock);
        once::install_once(&self.dir, &wanted, io_err, progress, || {
            let write = |name: &str, text: &str| {
                let path = self.dir.join(name);
                fs::write(&path, text).map_err(|e| io_err(format!("writing {}", path.display()), e))
            };
            fs::create_dir_all(&self.dir)
                .map_err(|e| io_err(format!("creating {}", self.dir.display()), e))?;
            write("package.json", &self.package_json)?;
            write("package-lock.json", &self.package_lock)?;
            let mut npm = Command::new("npm");
            npm.args([
                "ci",
                "--omit=dev",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
            ])
            .current_dir(&self.dir);
            self.run(npm)
        })?;
        Ok(&self.dir)
    }

    fn run(&self, mut command: Command) -> Result<(), NpmError> {
        let packages = self.packages.clone();
        once::run_step(&mut command).map_err(|error| match error {
            StepError::Missing => NpmError::NpmMissing { packages },
            StepError::Io(source) => NpmError::Io {
                context: "running npm ci".into(),
                source,
            },
            StepError::Failed { status, output } => NpmError::Install {
                packages,
                status,
                dir: self.dir.clone(),
                output,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packages() -> NodePackages {
        NodePackages::new("/nonexistent/pkgs", "{}", "{}", "dynalite@4.0.0")
    }

    #[test]
    fn a_missing_npm_is_named_as_the_prerequisite() {
        let error = packages()
            .run(Command::new("npm-that-does-not-exist"))
            .unwrap_err();
        assert!(matches!(error, NpmError::NpmMissing { .. }), "{error}");
        let text = error.to_string();
        assert!(text.contains("npm") && text.contains("nodejs") && text.contains("dynalite"));
    }

    #[test]
    fn a_failed_install_reports_npm_output() {
        let mut failing = Command::new("sh");
        failing.args([
            "-c",
            "echo 'npm error 404 Not Found - dynalite' >&2; exit 1",
        ]);
        let text = packages().run(failing).unwrap_err().to_string();
        assert!(
            text.contains("404 Not Found") && text.contains("npm ci"),
            "{text}"
        );
    }

    #[test]
    fn files_are_found_under_node_modules() {
        assert_eq!(
            packages().file("dynalite", "cli.js"),
            Path::new("/nonexistent/pkgs/node_modules/dynalite/cli.js")
        );
    }
}
