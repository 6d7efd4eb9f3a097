//! The transcript of `devstack rehearse` on docs/rehearsal.md, run afresh
//! and compared with the page once masked what differs from run to run: the
//! timings, the progress lines (`@ updating....`), whether each toolchain
//! binary was built or reused (and with which Go), whether a function zip was
//! built, a wait for another rehearsal, and the order of the steps the engine
//! runs in parallel (each `==>` section is compared as a set of lines). The
//! double's ids and ARNs are derived from each resource's URN, so they are
//! compared as they are.

use std::fs::{self, File};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use e2e::stack::{devstack_binary, workspace_root};

use super::markdown::Doc;

/// The page and the heading the transcript is under.
pub const PAGE: &str = "docs/rehearsal.md";
pub const HEADING: &str = "## A real run";
/// The command the transcript shows (what a user types).
const COMMAND_LINE: &str = "$ cargo run -q -p devstack -- rehearse";
/// The rehearsal's commands have 10 minutes each; a first toolchain build
/// on a loaded 2-core machine took 25.
const DEADLINE: Duration = Duration::from_secs(60 * 60);

/// Runs `devstack rehearse` as a user does, both streams in one file in the
/// order they were written, the checkout's path made relative.
pub fn rehearse() -> anyhow::Result<String> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let path = dir.path().join("transcript.txt");
    let out = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut command = Command::new(devstack_binary()?);
    command
        .arg("rehearse")
        .current_dir(workspace_root())
        // Captured for a page: no colour codes.
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(out.try_clone().context("sharing the transcript file")?)
        .stderr(out);
    local_process::die_with_parent(&mut command);
    let mut child = command.spawn().context("starting devstack rehearse")?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for devstack rehearse")? {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            bail!("devstack rehearse did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let text = fs::read_to_string(&path).context("reading the transcript")?;
    if !status.success() {
        bail!("devstack rehearse failed ({status}):\n{text}");
    }
    let root = format!("{}/", workspace_root().display());
    Ok(format!("{COMMAND_LINE}\n{}", text.replace(&root, "")))
}

/// The transcript on the page: the 1-based lines of its ```text fence and
/// the lines between them.
pub fn on_page(doc: &Doc) -> anyhow::Result<(usize, usize, String)> {
    let heading = doc
        .heading(HEADING)
        .with_context(|| format!("{} has no `{HEADING}` heading", doc.path))?;
    let open = (heading..doc.lines.len())
        .find(|&i| doc.lines[i].trim() == "```text")
        .with_context(|| format!("{}: no ```text block under `{HEADING}`", doc.path))?;
    let close = (open + 1..doc.lines.len())
        .find(|&i| doc.lines[i].trim() == "```")
        .with_context(|| format!("{}: the ```text block is not closed", doc.path))?;
    Ok((open + 1, close + 1, doc.lines[open + 1..close].join("\n")))
}

/// Writes `transcript` into the page's ```text block.
pub fn write_to_page(doc: &Doc, transcript: &str) -> anyhow::Result<()> {
    let (open, close, _) = on_page(doc)?;
    let mut lines: Vec<&str> = doc.lines[..open].iter().map(String::as_str).collect();
    lines.extend(transcript.lines().map(str::trim_end));
    lines.extend(doc.lines[close - 1..].iter().map(String::as_str));
    let path = workspace_root().join(&doc.path);
    fs::write(&path, lines.join("\n") + "\n").with_context(|| format!("writing {}", path.display()))
}

/// One `==>` section of a transcript: its masked lines, sorted, each once.
#[derive(Debug, PartialEq)]
pub struct Section {
    pub title: String,
    pub lines: Vec<String>,
}

/// The transcript as compared: sections in order, each a set of masked lines.
pub fn masked(transcript: &str) -> Vec<Section> {
    let mut sections = vec![Section {
        title: String::new(),
        lines: Vec::new(),
    }];
    for line in transcript.lines() {
        if let Some(title) = line.strip_prefix("==> ") {
            sections.push(Section {
                title: title.to_string(),
                lines: Vec::new(),
            });
        } else if let Some(line) = mask(line)
            && let Some(section) = sections.last_mut()
        {
            section.lines.push(line);
        }
    }
    for section in &mut sections {
        // A set: how often the engine reprints a line (the stack's own row)
        // depends on timing.
        section.lines.sort();
        section.lines.dedup();
    }
    sections
}

/// A line with its timings masked, or None for a line that varies from run
/// to run as a whole.
fn mask(line: &str) -> Option<String> {
    let line = line.trim_end();
    let volatile = [
        "rehearsal: building ",
        "rehearsal: built ",
        "rehearsal: reusing ",
        "rehearsal: waiting for another rehearsal",
        "@ ",
        // Go reports modules it fetches into a cold module cache; a warm
        // cache prints nothing.
        "go: downloading ",
        "go: extracting ",
        "go: finding ",
    ];
    if line.is_empty()
        || volatile.iter().any(|v| line.starts_with(v))
        || line.contains("bootstrap.zip is not built")
    {
        return None;
    }
    let words: Vec<String> = line.split(' ').map(mask_time).collect();
    Some(words.join(" "))
}

/// `(0.05s)`, `2s`, `1m3s` → `<time>`, keeping the parentheses.
fn mask_time(word: &str) -> String {
    let inner = word.trim_start_matches('(').trim_end_matches(')');
    let is_time = inner.ends_with('s')
        && inner.starts_with(|c: char| c.is_ascii_digit())
        && inner
            .chars()
            .all(|c| c.is_ascii_digit() || ".hms".contains(c));
    if is_time {
        word.replace(inner, "<time>")
    } else {
        word.to_string()
    }
}

#[test]
fn masking_keeps_what_a_change_of_the_program_changes() {
    let one = "==> pulumi up --yes\n +  aws:sns:Topic alarmTopic created (0.10s) \nResources:\n    + 34 created\n\nDuration: 2s\n@ updating....\n";
    let other = "==> pulumi up --yes\n@ updating.....\nResources:\n    + 34 created\nDuration: 1m3s\n +  aws:sns:Topic alarmTopic created (1s)\n";
    assert_eq!(masked(one), masked(other));
    let grown = one.replace("34 created", "35 created");
    assert_ne!(masked(one), masked(&grown));
    let renamed = one.replace("alarmTopic", "alarmsTopic");
    assert_ne!(masked(one), masked(&renamed));
}
