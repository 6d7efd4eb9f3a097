//! The docs as a test reads them: a page's lines with their numbers, the
//! table under a heading, and the drift found, each naming `file:line` and
//! how to fix it.

use std::fmt::Write as _;
use std::fs;

use e2e::stack::workspace_root;

/// One page of the docs (`README.md`, `docs/deploy.md`...).
pub struct Doc {
    /// Relative to the repository root, as messages name it.
    pub path: String,
    pub lines: Vec<String>,
}

/// A table row: its 1-based line number and its cells, trimmed.
pub struct Row {
    pub line: usize,
    pub cells: Vec<String>,
}

impl Doc {
    pub fn read(path: &str) -> Self {
        let full = workspace_root().join(path);
        let text =
            fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()));
        Self {
            path: path.to_string(),
            lines: text.lines().map(str::to_string).collect(),
        }
    }

    /// `docs/deploy.md:12`, for messages.
    pub fn at(&self, line: usize) -> String {
        format!("{}:{line}", self.path)
    }

    /// The 1-based line of the first line equal to `heading`.
    pub fn heading(&self, heading: &str) -> Option<usize> {
        self.lines
            .iter()
            .position(|l| l.trim() == heading)
            .map(|i| i + 1)
    }

    /// The body rows of the first table after `heading` (its header and the
    /// `|---|` line skipped); None if the heading or the table is missing.
    pub fn table_after(&self, heading: &str) -> Option<Vec<Row>> {
        let start = self.heading(heading)?;
        let first = self.lines[start..]
            .iter()
            .position(|l| l.starts_with('|'))
            .map(|i| start + i)?;
        let rows = self.lines[first..]
            .iter()
            .enumerate()
            .take_while(|(_, l)| l.starts_with('|'))
            .skip(2)
            .map(|(i, l)| Row {
                line: first + i + 1,
                cells: cells(l),
            })
            .collect();
        Some(rows)
    }

    /// Every (1-based line, line) holding `needle`.
    pub fn find<'a>(&'a self, needle: &'a str) -> impl Iterator<Item = (usize, &'a str)> + 'a {
        self.lines
            .iter()
            .enumerate()
            .filter(move |(_, l)| l.contains(needle))
            .map(|(i, l)| (i + 1, l.as_str()))
    }
}

/// A table line's cells, without the outer pipes.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

/// The `code` spans of a cell or line, in order.
pub fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// What a test found wrong; fails the test with every finding at once.
#[derive(Default)]
pub struct Drift(Vec<String>);

impl Drift {
    /// A finding at `file:line`.
    pub fn at(&mut self, doc: &Doc, line: usize, what: impl AsRef<str>) {
        self.0.push(format!("{}: {}", doc.at(line), what.as_ref()));
    }

    /// A finding about a whole page (something missing from it).
    pub fn page(&mut self, doc: &Doc, what: impl AsRef<str>) {
        self.0.push(format!("{}: {}", doc.path, what.as_ref()));
    }

    /// Panics listing every finding, then how to fix them.
    pub fn check(self, fix: &str) {
        if self.0.is_empty() {
            return;
        }
        let mut message = String::from("the docs no longer say what the program does:\n");
        for finding in &self.0 {
            let _ = writeln!(message, "  {finding}");
        }
        let _ = write!(message, "fix: {fix}");
        panic!("{message}");
    }
}

/// Reads a YAML file of the repository.
pub fn yaml(path: &str) -> serde_yaml_ng::Value {
    let full = workspace_root().join(path);
    let text =
        fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}
