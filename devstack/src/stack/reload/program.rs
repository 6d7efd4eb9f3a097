//! Re-reading the Pulumi program after an edit, as `pulumi up` would: an
//! edit the offline check refuses is reported with the check's findings and
//! changes nothing; an edit it accepts becomes a new [`Topology`] and its
//! [`Diff`] from the one running.

use std::path::{Path, PathBuf};

use pulumi_program::Topology;

use super::diff::{Diff, diff};

/// Why an edit of the program cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// The offline check's findings, one per line.
    #[error("the offline check refuses the edited program:\n{}", .0.join("\n"))]
    Check(Vec<String>),
    #[error("the edited program cannot run locally: {0}")]
    Load(#[from] pulumi_program::Error),
}

/// The program files of one stack.
#[derive(Debug, Clone)]
pub struct ProgramFiles {
    pub dir: PathBuf,
    pub stack: String,
}

impl ProgramFiles {
    pub fn new(dir: impl Into<PathBuf>, stack: impl Into<String>) -> Self {
        ProgramFiles {
            dir: dir.into(),
            stack: stack.into(),
        }
    }

    /// `Pulumi.yaml` and `Pulumi.<stack>.yaml`: the files to watch.
    pub fn paths(&self) -> [PathBuf; 2] {
        [
            self.dir.join("Pulumi.yaml"),
            self.dir.join(format!("Pulumi.{}.yaml", self.stack)),
        ]
    }

    /// Checks and loads the program as it is on disk now.
    pub fn read(&self) -> Result<Topology, ProgramError> {
        read(&self.dir, &self.stack)
    }
}

/// The offline check, then the load: what `pulumi preview` and the stack's
/// start would each refuse is refused here.
pub fn read(dir: &Path, stack: &str) -> Result<Topology, ProgramError> {
    let findings = pulumi_program::check::check(dir, stack);
    if !findings.is_empty() {
        return Err(ProgramError::Check(
            findings.iter().map(ToString::to_string).collect(),
        ));
    }
    Ok(pulumi_program::load(dir, stack)?)
}

/// A program edit that the check accepts: the new topology and what changed.
#[derive(Debug, Clone)]
pub struct Edit {
    pub topology: Topology,
    pub diff: Diff,
}

/// Reads the program and compares it with `running`.
pub fn reread(files: &ProgramFiles, running: &Topology) -> Result<Edit, ProgramError> {
    let topology = files.read()?;
    let diff = diff(running, &topology);
    Ok(Edit { topology, diff })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::reload::diff::Setting;

    fn copy_of_the_program() -> (tempfile::TempDir, ProgramFiles) {
        let dir = crate::stack::reload::tests::copy_of_the_dev_program();
        let files = ProgramFiles::new(dir.path(), "dev");
        (dir, files)
    }

    fn edit(files: &ProgramFiles, from: &str, to: &str) {
        let path = files.dir.join("Pulumi.yaml");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains(from), "Pulumi.yaml has no {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).expect("write");
    }

    #[test]
    fn an_added_route_is_a_live_change() {
        let (_dir, files) = copy_of_the_program();
        let running = files.read().expect("the program loads");
        edit(
            &files,
            "  pingRoute:\n",
            "  echoRoute:\n    type: aws:apigatewayv2/route:Route\n    properties:\n      \
             apiId: ${api.id}\n      routeKey: echo\n      target: integrations/${integration.id}\n    \
             options:\n      version: 7.51.1\n  pingRoute:\n",
        );
        let edit = reread(&files, &running).expect("the edit passes the check");
        assert_eq!(edit.diff.changes.len(), 1, "{:?}", edit.diff);
        assert_eq!(edit.diff.changes[0].setting, Setting::Route);
        assert_eq!(edit.diff.changes[0].to_string(), "route echo added");
        assert!(edit.topology.routes.iter().any(|r| r.route_key == "echo"));
    }

    #[test]
    fn an_invalid_edit_is_refused_with_the_checks_message() {
        let (_dir, files) = copy_of_the_program();
        let running = files.read().expect("the program loads");
        edit(&files, "routeKey: ping", "routeKay: ping");
        let error = reread(&files, &running).expect_err("a misspelt property is refused");
        let message = error.to_string();
        assert!(matches!(error, ProgramError::Check(_)), "{message}");
        assert!(
            message.contains("offline check") && message.contains("routeKay"),
            "{message}"
        );
    }

    #[test]
    fn a_program_that_is_not_yaml_is_refused() {
        let (_dir, files) = copy_of_the_program();
        let running = files.read().expect("the program loads");
        std::fs::write(files.dir.join("Pulumi.yaml"), "name: [unclosed").expect("write");
        let message = reread(&files, &running).expect_err("not YAML").to_string();
        assert!(message.contains("Pulumi.yaml"), "{message}");
    }
}
