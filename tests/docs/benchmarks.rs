//! docs/benchmarks.md keeps its figures honest: every table says when, at
//! which commit and on which machine it was measured (in a paragraph holding
//! `**Measured**` before it, in the same section), and no page sends a reader
//! to a bare issue number they cannot follow.

use super::markdown::{Doc, Drift};
use super::pages;

const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A date written as `2 December 2026`.
fn has_date(text: &str) -> bool {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || ",;:()".contains(c))
        .filter(|w| !w.is_empty())
        .collect();
    words.windows(3).any(|w| {
        w[0].parse::<u8>().is_ok_and(|d| (1..=31).contains(&d))
            && MONTHS.contains(&w[1])
            && w[2].len() == 4
            && w[2].parse::<u16>().is_ok()
    })
}

/// A commit: 7 to 40 hex digits with at least one letter and one digit.
fn has_commit(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| {
        (7..=40).contains(&w.len())
            && w.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            && w.chars().any(|c| c.is_ascii_digit())
            && w.chars().any(|c| c.is_ascii_alphabetic())
    })
}

#[test]
fn every_benchmark_table_says_when_where_and_at_which_commit() {
    let doc = Doc::read("docs/benchmarks.md");
    let mut drift = Drift::default();
    let mut measured: Option<String> = None;
    let mut in_table = false;
    let mut in_code = false;
    for (i, line) in doc.lines.iter().enumerate() {
        if line.starts_with("```") {
            in_code = !in_code;
        }
        if in_code {
            continue;
        }
        if line.starts_with('#') {
            measured = None;
        }
        if let Some(at) = line.find("**Measured**") {
            let rest: Vec<&str> = doc.lines[i + 1..]
                .iter()
                .take_while(|l| !l.trim().is_empty())
                .map(String::as_str)
                .collect();
            measured = Some(format!("{} {}", &line[at..], rest.join(" ")));
        }
        let starts_table = line.starts_with('|') && !in_table;
        in_table = line.starts_with('|');
        if !starts_table {
            continue;
        }
        match &measured {
            None => drift.at(
                &doc,
                i + 1,
                "a table with no `**Measured**` paragraph before it in its section",
            ),
            Some(text) => {
                for (ok, what) in [
                    (has_date(text), "a date (`2 December 2026`)"),
                    (has_commit(text), "a commit"),
                    (text.contains("machine"), "the machine"),
                ] {
                    if !ok {
                        drift.at(
                            &doc,
                            i + 1,
                            format!("the table's `**Measured**` paragraph names no {what}"),
                        );
                    }
                }
            }
        }
    }
    drift.check("before each table of docs/benchmarks.md, in its section, a paragraph starting `**Measured**` says the date, the commit and the machine of the run");
}

#[test]
fn no_page_cites_a_bare_issue_number() {
    let mut drift = Drift::default();
    for page in pages()
        .into_iter()
        .chain(["docs/benchmarks.md".to_string()])
    {
        let doc = Doc::read(&page);
        for (line, text) in doc.find("issue") {
            let lower = text.to_lowercase();
            for (at, _) in lower.match_indices("issue ") {
                let next = lower[at + 6..].trim_start_matches('#');
                if next.starts_with(|c: char| c.is_ascii_digit()) {
                    drift.at(
                        &doc,
                        line,
                        "cites an issue by its number only: say what it was instead",
                    );
                }
            }
        }
    }
    drift.check("readers cannot follow an issue number: replace it with a summary of what the issue was about");
}
