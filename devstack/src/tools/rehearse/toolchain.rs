//! The real Pulumi toolchain, built from Go source at pinned versions: the
//! `pulumi` CLI, the `pulumi-language-yaml` host and the aws provider double,
//! into `target/pulumi/bin/`. The Go module `devstack/rehearsal` pins them
//! (go.mod + go.sum); a binary is rebuilt only when its inputs change.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

/// The Pulumi CLI version devstack/rehearsal/go.mod pins.
pub const PULUMI_VERSION: &str = "3.274.1";
/// The YAML language host version devstack/rehearsal/go.mod pins.
pub const YAML_VERSION: &str = "1.25.0";
/// The pulumi-aws version the double plays (the program's `options.version`).
pub const AWS_VERSION: &str = "7.51.1";

/// The Go modules the toolchain builds, as compiled in: each one's `go` line
/// is the oldest Go that builds it, and with `GOTOOLCHAIN=local` an older Go
/// refuses it inside `go build` ("go.mod requires go >= …").
const GO_MODS: [(&str, &str); 2] = [
    (
        "devstack/rehearsal/go.mod",
        include_str!("../../../rehearsal/go.mod"),
    ),
    (
        "devstack/rehearsal/yaml-host/go.mod",
        include_str!("../../../rehearsal/yaml-host/go.mod"),
    ),
];

/// A Go release, `1.26.6` (`1.26` is `1.26.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoVersion(pub [u32; 3]);

impl GoVersion {
    /// `1.26.6`, `1.26`, or the `go1.26.8` of `go version` (a pre-release
    /// such as `1.27rc1` counts as its release, `1.27.0`). None if it is not
    /// a version.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.strip_prefix("go").unwrap_or(text);
        let mut parts = [0; 3];
        for (i, part) in text.split('.').enumerate() {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            *parts.get_mut(i)? = digits.parse().ok()?;
            if digits.len() != part.len() {
                break; // "27rc1": the rest is a pre-release tag
            }
        }
        Some(Self(parts))
    }
}

impl std::fmt::Display for GoVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [major, minor, patch] = self.0;
        write!(f, "{major}.{minor}.{patch}")
    }
}

/// The `go` directive of a go.mod file.
fn go_directive(go_mod: &str) -> Option<GoVersion> {
    go_mod
        .lines()
        .find_map(|line| line.trim().strip_prefix("go "))
        .and_then(|v| GoVersion::parse(v.trim()))
}

/// The oldest Go that builds the whole toolchain: the highest `go` line of
/// its go.mod files (the CLI's: pkg/v3 v3.274.1 needs go 1.26.6). The docs
/// quote it; `tests/docs.rs` checks that they do.
pub fn go_minimum() -> GoVersion {
    GO_MODS
        .iter()
        .filter_map(|(_, text)| go_directive(text))
        .max()
        .unwrap_or(GoVersion([1, 0, 0]))
}

/// Where the built binaries are, and the files the double reads.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// `target/pulumi/bin`: put first on PATH so the CLI finds its language host.
    pub bin_dir: PathBuf,
    pub pulumi: PathBuf,
    pub language_yaml: PathBuf,
    /// The provider double, installed as the `aws` 7.51.1 plugin. It lives
    /// outside `bin_dir`: the CLI would take a `pulumi-resource-aws` on PATH
    /// over the installed plugin, with a warning.
    pub aws_double: PathBuf,
    /// The pulumi-aws schema subset the double serves (AWS_DOUBLE_SCHEMA).
    pub schema: PathBuf,
    /// The provider facts it checks values and plans replacements with
    /// (AWS_DOUBLE_FACTS, written by extract_facts.py).
    pub facts: PathBuf,
}

struct Binary {
    /// Where it is built.
    path: PathBuf,
    package: String,
    ldflags: String,
    /// The Go module that pins it.
    module: PathBuf,
    /// Source files beyond go.mod/go.sum whose change means a rebuild.
    sources: Vec<PathBuf>,
}

/// The repository root (this crate is `<root>/devstack`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

impl Toolchain {
    /// Builds what is missing or out of date, reusing the rest. Prints what it
    /// does on stderr: a first build takes minutes.
    pub fn ensure(root: &Path) -> anyhow::Result<Self> {
        let go_version = go_version()?;
        let module = root.join("devstack/rehearsal");
        let out = root.join("target/pulumi");
        let bin_dir = out.join("bin");
        let double_dir = out.join("double");
        for dir in [&bin_dir, &double_dir] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        // Tests run in parallel: one builder at a time, the others then reuse.
        let lock = File::create(out.join("build.lock")).context("creating the build lock")?;
        lock.lock().context("taking the build lock")?;

        let double_sources = go_files(&module.join("aws-double"))?;
        let binaries = [
            Binary {
                path: bin_dir.join("pulumi"),
                module: module.clone(),
                package: "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi".into(),
                ldflags: format!(
                    "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v{PULUMI_VERSION}"
                ),
                sources: vec![],
            },
            Binary {
                path: bin_dir.join("pulumi-language-yaml"),
                module: module.join("yaml-host"),
                package: "github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml".into(),
                ldflags: format!(
                    "-X github.com/pulumi/pulumi-yaml/pkg/version.Version=v{YAML_VERSION}"
                ),
                sources: vec![],
            },
            Binary {
                path: double_dir.join("pulumi-resource-aws"),
                module: module.clone(),
                package: "./aws-double".into(),
                ldflags: String::new(),
                sources: double_sources,
            },
        ];
        for binary in &binaries {
            build_if_stale(&out.join("gocache"), binary, &go_version)?;
        }
        let [pulumi, language_yaml, aws_double] = binaries.map(|b| b.path);
        Ok(Self {
            pulumi,
            language_yaml,
            aws_double,
            bin_dir,
            schema: root.join("crates/pulumi-program/schema/pulumi-aws-7.51.1.json"),
            facts: root.join("crates/pulumi-program/facts/pulumi-aws-7.51.1.facts.json"),
        })
    }
}

/// `go version`, refusing a missing or too old Go with a message naming it.
fn go_version() -> anyhow::Result<String> {
    let output = match Command::new("go")
        .arg("version")
        .env("GOTOOLCHAIN", "local")
        .output()
    {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!(
            "Go is not installed (no `go` on PATH): the rehearsal and the pulumi_cli tests build \
             the real Pulumi CLI {PULUMI_VERSION} and YAML host {YAML_VERSION} from source and need \
             Go {} or newer (https://go.dev/doc/install)",
            go_minimum()
        ),
        Err(err) => return Err(err).context("running `go version`"),
    };
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() {
        bail!(
            "`go version` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    check_go_version(&text)?;
    Ok(text)
}

/// Refuses a `go version` line older than [`go_minimum`], naming both.
fn check_go_version(go_version: &str) -> anyhow::Result<()> {
    let minimum = go_minimum();
    // "go version go1.26.8 linux/amd64"
    match go_version
        .split_whitespace()
        .nth(2)
        .and_then(GoVersion::parse)
    {
        Some(found) if found >= minimum => Ok(()),
        _ => bail!(
            "Go {minimum} or newer is needed to build the Pulumi CLI {PULUMI_VERSION} (the `go` line of \
             devstack/rehearsal/go.mod; builds run with GOTOOLCHAIN=local, so no newer Go is \
             downloaded); `go version` says: {go_version}. Install a newer Go: https://go.dev/doc/install"
        ),
    }
}

fn go_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "go") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// A digest of everything a binary is built from: the pins, its sources, the
/// flags and the Go version.
fn stamp(binary: &Binary, go_version: &str) -> anyhow::Result<String> {
    let mut hash = Sha256::new();
    hash.update(go_version.as_bytes());
    hash.update(binary.package.as_bytes());
    hash.update(binary.ldflags.as_bytes());
    let pins = [binary.module.join("go.mod"), binary.module.join("go.sum")];
    for path in pins.iter().chain(&binary.sources) {
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .with_context(|| format!("reading {}", path.display()))?;
        hash.update(path.to_string_lossy().as_bytes());
        hash.update(&bytes);
    }
    Ok(hex::encode(hash.finalize()))
}

fn build_if_stale(gocache: &Path, binary: &Binary, go_version: &str) -> anyhow::Result<()> {
    let target = &binary.path;
    let stamp_file = target.with_extension("stamp");
    let wanted = stamp(binary, go_version)?;
    if target.is_file() && fs::read_to_string(&stamp_file).is_ok_and(|s| s == wanted) {
        eprintln!("rehearsal: reusing {}", target.display());
        return Ok(());
    }
    eprintln!(
        "rehearsal: building {} ({}) with {go_version}; a first build takes several minutes",
        target.display(),
        binary.package
    );
    let started = Instant::now();
    let mut go = Command::new("go");
    go.current_dir(&binary.module)
        .args(["build", "-o"])
        .arg(target);
    if !binary.ldflags.is_empty() {
        go.args(["-ldflags", &binary.ldflags]);
    }
    let status = go
        .arg(&binary.package)
        .env("GOTOOLCHAIN", "local")
        // The pins are go.mod + go.sum as committed, never edited by a build;
        // no VCS stamp, so a build does not depend on the checkout.
        .env("GOFLAGS", "-mod=readonly -buildvcs=false")
        // The compile cache lives with the other build outputs.
        .env("GOCACHE", gocache)
        .status()
        .context("running `go build`")?;
    if !status.success() {
        bail!(
            "`go build {}` failed ({status}); its errors are above",
            binary.package
        );
    }
    fs::write(&stamp_file, wanted).with_context(|| format!("writing {}", stamp_file.display()))?;
    eprintln!(
        "rehearsal: built {} in {:.0?}",
        target.display(),
        started.elapsed()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_mod_pins_the_versions_the_code_names() {
        let go_mod = fs::read_to_string(repo_root().join("devstack/rehearsal/go.mod"))
            .expect("devstack/rehearsal/go.mod is readable");
        let yaml_host = fs::read_to_string(repo_root().join("devstack/rehearsal/yaml-host/go.mod"))
            .expect("devstack/rehearsal/yaml-host/go.mod is readable");
        for (file, text, module, version) in [
            (
                "go.mod",
                &go_mod,
                "github.com/pulumi/pulumi/pkg/v3",
                PULUMI_VERSION,
            ),
            (
                "go.mod",
                &go_mod,
                "github.com/pulumi/pulumi/sdk/v3",
                PULUMI_VERSION,
            ),
            (
                "yaml-host/go.mod",
                &yaml_host,
                "github.com/pulumi/pulumi-yaml",
                YAML_VERSION,
            ),
        ] {
            let line = format!("{module} v{version}");
            assert!(text.contains(&line), "{file} lacks `{line}`");
        }
    }

    #[test]
    fn the_minimum_go_is_the_highest_go_line_of_the_modules() {
        let root = repo_root();
        let on_disk: Vec<GoVersion> = GO_MODS
            .iter()
            .map(|(path, _)| {
                let text = fs::read_to_string(root.join(path)).expect("go.mod is readable");
                go_directive(&text).unwrap_or_else(|| panic!("{path} has no `go` line"))
            })
            .collect();
        assert_eq!(Some(go_minimum()), on_disk.into_iter().max());
        // pkg/v3 v3.274.1 needs 1.26.6: a minor-version check let 1.26.0–1.26.5 through.
        assert!(go_minimum() >= GoVersion([1, 26, 6]), "{}", go_minimum());
    }

    #[test]
    fn an_older_patch_release_is_refused_naming_the_minimum() {
        let [major, minor, patch] = go_minimum().0;
        let older = if patch > 0 {
            format!("go{major}.{minor}.{}", patch - 1)
        } else {
            format!("go{major}.{}", minor - 1)
        };
        let err = check_go_version(&format!("go version {older} linux/amd64"))
            .expect_err("an older Go is refused")
            .to_string();
        assert!(
            err.contains(&format!("Go {} or newer", go_minimum())),
            "{err}"
        );
        assert!(err.contains(&older), "{err}");
        for newer in [
            format!("go{major}.{minor}.{patch}"),
            format!("go{major}.{minor}.{}", patch + 1),
            format!("go{major}.{}rc1", minor + 1),
        ] {
            check_go_version(&format!("go version {newer} linux/amd64"))
                .unwrap_or_else(|e| panic!("{newer} is refused: {e}"));
        }
        assert!(check_go_version("go version devel linux/amd64").is_err());
    }

    #[test]
    fn go_versions_parse() {
        assert_eq!(GoVersion::parse("1.26.6"), Some(GoVersion([1, 26, 6])));
        assert_eq!(GoVersion::parse("go1.26"), Some(GoVersion([1, 26, 0])));
        assert_eq!(GoVersion::parse("go1.27rc1"), Some(GoVersion([1, 27, 0])));
        assert_eq!(GoVersion::parse("devel"), None);
        assert_eq!(GoVersion::parse("1.2.3.4"), None);
        assert_eq!(GoVersion([1, 26, 6]).to_string(), "1.26.6");
    }
}
