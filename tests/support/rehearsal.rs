//! The real Pulumi CLI and YAML host against the provider double, for the
//! `pulumi_*` tests: a stack `dev` on its own backend with its own copy of the
//! program (edited as a test needs), and readers of the double's journal.

use std::collections::BTreeSet;
use std::fs;
use std::sync::OnceLock;

use anyhow::{Context, bail, ensure};
use devstack::tools::rehearse::{Run, Session, Toolchain, program, toolchain::repo_root};
use serde_json::Value;
use tempfile::TempDir;

/// The toolchain, built (or found up to date) once per test run.
pub fn toolchain() -> anyhow::Result<Toolchain> {
    static TOOLCHAIN: OnceLock<Result<Toolchain, String>> = OnceLock::new();
    TOOLCHAIN
        .get_or_init(|| Toolchain::ensure(&repo_root()).map_err(|err| format!("{err:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A stack `dev` on its own backend, with a copy of the program edited by `edit`.
pub struct Rehearsal {
    pub session: Session,
    _dir: TempDir,
}

impl Rehearsal {
    pub fn new(edit: impl FnOnce(&str) -> anyhow::Result<String>) -> anyhow::Result<Self> {
        let toolchain = toolchain()?;
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let copy = dir.path().join("program");
        program::copy_program(&repo_root(), &copy, "dev")?;
        let yaml = copy.join("Pulumi.yaml");
        let edited = edit(&fs::read_to_string(&yaml)?)?;
        fs::write(&yaml, edited)?;
        program::write_function_zips(&copy, b"first build")?;
        let session = Session::new(&toolchain, dir.path(), &copy)?;
        session.expect_ok(&["stack", "init", "dev"])?;
        Ok(Self { session, _dir: dir })
    }

    /// A stack `dev` of another program of the repository (`dir` holds its
    /// Pulumi.yaml; the stack's config is set with `pulumi config set`).
    pub fn of(dir: &str) -> anyhow::Result<Self> {
        let toolchain = toolchain()?;
        let work = tempfile::tempdir().context("creating a temporary directory")?;
        let copy = work.path().join("program");
        fs::create_dir_all(&copy)?;
        let source = repo_root().join(dir).join("Pulumi.yaml");
        fs::copy(&source, copy.join("Pulumi.yaml"))
            .with_context(|| format!("copying {}", source.display()))?;
        let session = Session::new(&toolchain, work.path(), &copy)?;
        session.expect_ok(&["stack", "init", "dev"])?;
        Ok(Self {
            session,
            _dir: work,
        })
    }

    pub fn unchanged() -> anyhow::Result<Self> {
        Self::new(|yaml| Ok(yaml.to_string()))
    }

    pub fn pulumi(&self, args: &[&str]) -> anyhow::Result<Run> {
        self.session.expect_ok(args)
    }

    /// Journal entries of one call that really ran (not a preview's).
    pub fn calls(&self, call: &str) -> anyhow::Result<Vec<Value>> {
        Ok(self
            .session
            .journal()?
            .into_iter()
            .filter(|e| e["call"] == call && e["preview"] != true)
            .collect())
    }

    pub fn journal_len(&self) -> anyhow::Result<usize> {
        Ok(self.session.journal()?.len())
    }
}

/// The program's resource names, from the repository's Pulumi.yaml.
pub fn resource_names() -> anyhow::Result<BTreeSet<String>> {
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&fs::read_to_string(repo_root().join("Pulumi.yaml"))?)?;
    let resources = yaml["resources"]
        .as_mapping()
        .context("Pulumi.yaml has resources")?;
    Ok(resources
        .keys()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect())
}

pub fn names(entries: &[Value]) -> BTreeSet<String> {
    entries
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect()
}

/// Output as the user reads it must carry no diagnostics: no `Diagnostics:`
/// section, no `warning:` or `error:` anywhere (resource names such as
/// `functionErrorsAlarm` may say "error", a diagnostic always has the colon).
pub fn no_warnings_or_errors(what: &str, run: &Run) -> anyhow::Result<()> {
    let text = run.text();
    let lower = text.to_lowercase();
    ensure!(
        !text.contains("Diagnostics:") && !lower.contains("warning:") && !lower.contains("error:"),
        "`{what}` reported a warning or an error:\n{text}"
    );
    Ok(())
}

/// `original` replaced by `replacement`, where it occurs exactly once.
pub fn replace_once(yaml: &str, original: &str, replacement: &str) -> anyhow::Result<String> {
    ensure!(
        yaml.matches(original).count() == 1,
        "Pulumi.yaml no longer holds exactly one `{original}`: update this test's mutation"
    );
    Ok(yaml.replacen(original, replacement, 1))
}

/// The one Create of `name` that really ran.
pub fn created<'a>(created: &'a [Value], name: &str) -> anyhow::Result<&'a Value> {
    created
        .iter()
        .find(|e| e["name"] == name)
        .with_context(|| format!("{name} was not created"))
}

/// A journal value as a string (an error naming `what` if it is not one).
pub fn text<'a>(value: &'a Value, what: &str) -> anyhow::Result<&'a str> {
    value
        .as_str()
        .with_context(|| format!("{what} is not a string: {value}"))
}

/// `pulumi preview` of a mutated program fails and says each of `needles`.
pub fn preview_fails(original: &str, replacement: &str, needles: &[&str]) -> anyhow::Result<()> {
    let stack = Rehearsal::new(|yaml| replace_once(yaml, original, replacement))?;
    let preview = stack.session.run(&["preview"])?;
    if preview.status.success() {
        bail!("preview of the mutated program passed:\n{}", preview.text());
    }
    for needle in needles {
        ensure!(
            preview.text().contains(needle),
            "preview failed without saying `{needle}`:\n{}",
            preview.text()
        );
    }
    ensure!(
        stack.calls("Create")?.is_empty(),
        "a failed preview created resources"
    );
    Ok(())
}
