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

/// The oldest Go that builds the pinned CLI (pkg/v3's go.mod says go 1.26.6).
const GO_MINIMUM: (u32, u32) = (1, 26);

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
             Go {}.{} or newer (https://go.dev/doc/install)",
            GO_MINIMUM.0,
            GO_MINIMUM.1
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
    // "go version go1.26.8 linux/amd64"
    let numbers: Vec<u32> = text
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.strip_prefix("go"))
        .map(|v| v.split('.').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    match numbers.as_slice() {
        [major, minor, ..] if (*major, *minor) >= GO_MINIMUM => Ok(text),
        _ => bail!(
            "Go {}.{} or newer is needed to build the Pulumi CLI {PULUMI_VERSION}; `go version` says: {text}",
            GO_MINIMUM.0,
            GO_MINIMUM.1
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
}
