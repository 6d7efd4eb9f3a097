//! A working copy of the Pulumi program to run the real CLI in: `Pulumi.yaml`,
//! the stack's `Pulumi.<stack>.yaml` (which `pulumi stack init` then edits, so
//! never the user's own) and each function's zip at the path the program
//! names (`target/lambda/<package>/bootstrap.zip`: the handler, and the
//! sign-in authorizer).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Where `Pulumi.yaml` reads the function's code (its `fn::fileArchive`).
pub const FUNCTION_ZIP: &str = "target/lambda/websocket-handler/bootstrap.zip";
/// Where it reads the sign-in authorizer's.
pub const AUTHORIZER_ZIP: &str = "target/lambda/authorizer/bootstrap.zip";
/// Every function's zip, with the cargo package that builds it.
pub const ZIPS: &[(&str, &str)] = &[
    ("websocket-handler", FUNCTION_ZIP),
    ("authorizer", AUTHORIZER_ZIP),
];

/// Copies `Pulumi.yaml` and `Pulumi.<stack>.yaml` from `source` to `dest`.
pub fn copy_program(source: &Path, dest: &Path, stack: &str) -> anyhow::Result<()> {
    fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    for name in ["Pulumi.yaml".to_string(), format!("Pulumi.{stack}.yaml")] {
        let from = source.join(&name);
        fs::copy(&from, dest.join(&name)).with_context(|| {
            format!("copying {} (is the stack `{stack}` right?)", from.display())
        })?;
    }
    Ok(())
}

/// The zip's path inside a program copy.
pub fn function_zip(program: &Path) -> PathBuf {
    program.join(FUNCTION_ZIP)
}

/// Writes every function's zip ([`ZIPS`]) into a program copy, each holding
/// `bootstrap` with these contents: the double never runs the code.
pub fn write_function_zips(program: &Path, bootstrap: &[u8]) -> anyhow::Result<()> {
    for (_, zip) in ZIPS {
        write_function_zip(&program.join(zip), bootstrap)?;
    }
    Ok(())
}

/// Writes a zip holding one file, `bootstrap`, with these contents (with
/// python3's zipfile, already a prerequisite of the workspace).
pub fn write_function_zip(zip: &Path, bootstrap: &[u8]) -> anyhow::Result<()> {
    let dir = zip.parent().context("the zip path has no directory")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let staged = dir.join("bootstrap");
    fs::write(&staged, bootstrap).with_context(|| format!("writing {}", staged.display()))?;
    let status = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\n\
             with zipfile.ZipFile(sys.argv[1], 'w') as z:\n    z.write(sys.argv[2], 'bootstrap')",
        ])
        .arg(zip)
        .arg(&staged)
        .status()
        .context("running python3 to write the function zip (python3 is a prerequisite)")?;
    fs::remove_file(&staged).with_context(|| format!("removing {}", staged.display()))?;
    if !status.success() {
        bail!("python3 could not write {} ({status})", zip.display());
    }
    Ok(())
}
