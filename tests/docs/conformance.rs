//! The local parity table on docs/verify.md, run afresh (`devstack check
//! --conformance` against a local stack with sign-in on) and compared line
//! by line with the page, the ports masked (each run picks free ones).

use std::fs;

use anyhow::{Context, bail};
use e2e::stack::{devstack_binary, workspace_root};
use e2e::{Stack, StackConfig};

use super::markdown::Doc;

pub const PAGE: &str = "docs/verify.md";
const BEGIN: &str = "<!-- conformance:begin -->";
const END: &str = "<!-- conformance:end -->";
const COMMAND_LINE: &str =
    "$ cargo run -q -p devstack -- check --conformance --ready-file /tmp/ready.json";

/// The page's block: the line numbers of its markers (1-based) and its lines.
pub fn on_page(doc: &Doc) -> anyhow::Result<(usize, usize, Vec<String>)> {
    let begin = doc
        .lines
        .iter()
        .position(|l| l.trim() == BEGIN)
        .with_context(|| format!("{} has no {BEGIN}", doc.path))?;
    let end = doc
        .lines
        .iter()
        .position(|l| l.trim() == END)
        .filter(|&end| end > begin)
        .with_context(|| format!("{} has no {END} after {BEGIN}", doc.path))?;
    Ok((begin + 1, end + 1, doc.lines[begin + 1..end].to_vec()))
}

/// What the command printed, as the page holds it: the header in a text
/// block, the table as Markdown (rendered), the summary in a text block.
pub fn as_page(output: &str) -> anyhow::Result<Vec<String>> {
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    let (Some(header), Some(summary)) = (lines.first(), lines.last()) else {
        bail!("the command printed nothing");
    };
    let table = &lines[1..lines.len() - 1];
    let mut page = vec![
        "```text".to_string(),
        COMMAND_LINE.to_string(),
        header.to_string(),
    ];
    page.push("```".into());
    page.push(String::new());
    page.extend(table.iter().map(|l| l.to_string()));
    page.push(String::new());
    page.extend([
        "```text".to_string(),
        summary.to_string(),
        "```".to_string(),
    ]);
    Ok(page)
}

/// The lines compared: blank lines dropped, `127.0.0.1:<port>` masked.
pub fn masked(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut out = String::new();
            let mut rest = line.as_str();
            while let Some(at) = rest.find("127.0.0.1:") {
                let (before, after) = rest.split_at(at + "127.0.0.1:".len());
                out.push_str(before);
                let digits = after.chars().take_while(char::is_ascii_digit).count();
                out.push_str("PORT");
                rest = &after[digits..];
            }
            out.push_str(rest);
            out
        })
        .collect()
}

/// Runs the suite against a fresh local stack with sign-in on.
pub fn measure() -> anyhow::Result<String> {
    let runtime = tokio::runtime::Runtime::new().context("a tokio runtime")?;
    runtime.block_on(async {
        let stack =
            Stack::start_with(StackConfig::new().sign_in().tight_stage_throttling()).await?;
        let output = tokio::process::Command::new(devstack_binary()?)
            .args(["check", "--conformance", "--ready-file"])
            .arg(stack.ready_file())
            .env_remove("DEVSTACK_TOKEN")
            .kill_on_drop(true)
            .output()
            .await
            .context("running devstack check --conformance")?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "devstack check --conformance failed ({}):\n{stdout}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(stdout)
    })
}

/// Writes a fresh table into the page's block.
pub fn write_to_page(doc: &Doc, fresh: &[String]) -> anyhow::Result<()> {
    let (begin, end, _) = on_page(doc)?;
    let mut lines: Vec<String> = doc.lines[..begin].to_vec();
    lines.extend(fresh.iter().cloned());
    lines.extend(doc.lines[end - 1..].iter().cloned());
    let path = workspace_root().join(&doc.path);
    fs::write(&path, lines.join("\n") + "\n").with_context(|| format!("writing {}", path.display()))
}
