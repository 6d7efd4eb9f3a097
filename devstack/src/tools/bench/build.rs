//! Building what the bench measures: the functions (release) and their
//! deployment zips.

use super::*;

/// Runs a setup command to completion; its output is shown only if it fails.
pub(super) async fn run_step(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Builds the host binaries of the two Rust functions into this
/// executable's profile (`cargo` does nothing when they are up to date), so
/// the command works on a fresh checkout.
pub(super) async fn build_functions(env: &BenchEnv) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(&env.root)
        .args(["build", "-p", "websocket-handler", "-p", "hello-lambda"])
        .stdin(Stdio::null());
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    eprintln!(
        "bench: building websocket-handler and hello-lambda (cargo build -p websocket-handler -p hello-lambda{})",
        if cfg!(debug_assertions) {
            ""
        } else {
            " --release"
        }
    );
    let status = command
        .status()
        .await
        .context("running cargo build (is cargo on PATH?)")?;
    if !status.success() {
        bail!("building the functions failed ({status}); cargo printed why above");
    }
    Ok(())
}

pub(super) const ZIP_COMMAND: &str =
    "cargo lambda build --release --arm64 --output-format zip -p websocket-handler -p hello-lambda";

/// The cargo-lambda zip of a Rust function, if it was built.
pub(super) fn lambda_zip(env: &BenchEnv, name: &str) -> ZipSize {
    let path = env.target.join("lambda").join(name).join("bootstrap.zip");
    match std::fs::metadata(&path) {
        Ok(meta) => ZipSize::Bytes(meta.len()),
        Err(_) => ZipSize::Missing(format!(
            "not built — run `{ZIP_COMMAND}` (or bench --build-zips)"
        )),
    }
}

/// The Python handler's deployment zip: app.py alone, deflated, as the
/// managed Python runtime takes it (the runtime ships the interpreter).
pub(super) async fn python_zip(env: &BenchEnv) -> anyhow::Result<ZipSize> {
    let out = env.scratch.join("python-handler.zip");
    let _ = std::fs::remove_file(&out);
    run_step(
        Command::new("python3")
            .current_dir(env.root.join("bench").join("python-handler"))
            .arg("-c")
            .arg("import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n    z.write('app.py')")
            .arg(&out),
        "zipping the Python handler",
    )
    .await?;
    let meta = std::fs::metadata(&out).with_context(|| format!("reading {}", out.display()))?;
    Ok(ZipSize::Bytes(meta.len()))
}

pub(super) async fn build_zips(env: &BenchEnv) -> anyhow::Result<()> {
    eprintln!("bench: {ZIP_COMMAND}");
    let status = Command::new("cargo")
        .current_dir(&env.root)
        .args(ZIP_COMMAND.split_whitespace().skip(1))
        .status()
        .await
        .context("running cargo lambda (install it: pip install cargo-lambda)")?;
    if !status.success() {
        bail!("`{ZIP_COMMAND}` failed ({status})");
    }
    Ok(())
}
