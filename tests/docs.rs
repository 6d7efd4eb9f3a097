//! The docs against the program: what README.md and docs/ quote from
//! `Pulumi.yaml`, the offline check, the toolchain and the rehearsal is read
//! from its one source and compared, so a doc that drifts fails here, naming
//! its file and line and how to fix it. What a command prints is regenerated
//! rather than edited: `UPDATE_DOCS=1 cargo test -p e2e --test docs` rewrites
//! the banner's `program` line (docs/local-stack.md), the rehearsal's
//! transcript (docs/rehearsal.md) and the local parity table
//! (docs/verify.md) from a fresh run.

#[path = "docs/benchmarks.rs"]
mod benchmarks;
#[path = "docs/conformance.rs"]
mod conformance;
#[path = "docs/deploy.rs"]
mod deploy;
#[path = "docs/markdown.rs"]
mod markdown;
#[path = "docs/transcript.rs"]
mod transcript;

use std::collections::BTreeSet;
use std::fs;

use devstack::tools::rehearse::toolchain::{GoVersion, go_minimum};
use e2e::stack::workspace_root;
use markdown::{Doc, Drift, code_spans, yaml};
use pulumi_program::check::ROLE_ACTIONS;
use serde_yaml_ng::Value;

/// The pages a newcomer follows: README.md and every page of docs/ but the
/// two that quote measurements rather than the program (benchmarks.md, and
/// scale.md, which the broadcast's work rewrites).
fn pages() -> Vec<String> {
    let dir = workspace_root().join("docs");
    let mut pages: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".md") && name != "benchmarks.md" && name != "scale.md")
        .map(|name| format!("docs/{name}"))
        .collect();
    pages.sort();
    pages.insert(0, "README.md".to_string());
    pages
}

const REGENERATE: &str = "UPDATE_DOCS=1 cargo test -p e2e --test docs";

fn updating() -> bool {
    std::env::var_os("UPDATE_DOCS").is_some_and(|v| v != "0")
}

/// A YAML scalar as the docs write it (`prod`, `2000`).
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

#[test]
fn the_banners_program_line_is_what_devstack_prints() {
    let topology = pulumi_program::load(&workspace_root(), "dev").expect("the dev stack loads");
    let summary = topology.coverage_summary();
    let mut doc = Doc::read("docs/local-stack.md");
    let banner: Vec<usize> = doc
        .find("  program  ")
        .filter(|(_, l)| l.trim_start().starts_with("program "))
        .map(|(line, _)| line)
        .collect();
    assert!(
        !banner.is_empty(),
        "docs/local-stack.md shows no banner `program` line"
    );
    let mut drift = Drift::default();
    for line in banner {
        let text = doc.lines[line - 1].clone();
        let quoted = text.trim_start().trim_start_matches("program").trim();
        if quoted != summary {
            if updating() {
                let at = text.find("program").unwrap_or(0) + "program".len();
                let pad = text[at..].len() - text[at..].trim_start().len();
                doc.lines[line - 1] = format!("{}{summary}", &text[..at + pad]);
            } else {
                drift.at(
                    &doc,
                    line,
                    format!("the banner says `{summary}`, the page `{quoted}`"),
                );
            }
        }
    }
    // Elsewhere a count alone would drift unseen: quote the banner, not the numbers.
    for page in pages() {
        let other = Doc::read(&page);
        for (line, text) in other.find(" resources (") {
            let banner_line = text.trim_start().starts_with("program ");
            if text.contains("plays ") && !banner_line && !text.contains(&summary) {
                drift.at(
                    &other,
                    line,
                    "quotes resource counts that are not the banner's line",
                );
            }
        }
    }
    if updating() {
        let path = workspace_root().join(&doc.path);
        fs::write(&path, doc.lines.join("\n") + "\n").expect("writing docs/local-stack.md");
    }
    drift.check(&format!("`{REGENERATE}` rewrites the banner line; elsewhere point to the banner instead of quoting counts"));
}

#[test]
fn the_role_grants_the_docs_list_are_the_checks() {
    let check: BTreeSet<&str> = ROLE_ACTIONS
        .iter()
        .flat_map(|a| a.iter().copied())
        .collect();
    let mut drift = Drift::default();
    // The program grants what the check requires (the check proves the
    // resources); a list the check does not carry would be missed here.
    let program = yaml("Pulumi.yaml");
    let mut granted = BTreeSet::new();
    for resource in program["resources"]
        .as_mapping()
        .into_iter()
        .flat_map(|r| r.values())
    {
        if resource["type"].as_str() != Some("aws:iam/rolePolicy:RolePolicy") {
            continue;
        }
        let statements = resource["properties"]["policy"]["fn::toJSON"]["Statement"].as_sequence();
        for statement in statements.into_iter().flatten() {
            match &statement["Action"] {
                Value::String(a) => drop(granted.insert(a.clone())),
                Value::Sequence(list) => granted.extend(list.iter().map(scalar)),
                _ => {}
            }
        }
    }
    let check_owned: BTreeSet<String> = check.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        granted, check_owned,
        "Pulumi.yaml's role policies grant other actions than pulumi_program::check::ROLE_ACTIONS lists: add the new list to ROLE_ACTIONS (crates/pulumi-program/src/check/grants.rs)"
    );
    for (page, heading) in [
        ("docs/offline-check.md", "## The role's grants"),
        ("docs/deploy.md", "## Security model"),
    ] {
        let doc = Doc::read(page);
        let Some(rows) = doc.table_after(heading) else {
            drift.page(
                &doc,
                format!("no table of the role's grants under `{heading}`"),
            );
            continue;
        };
        let mut listed = BTreeSet::new();
        for row in &rows {
            for action in row.cells.first().map(|c| code_spans(c)).unwrap_or_default() {
                if !check.contains(action) {
                    drift.at(
                        &doc,
                        row.line,
                        format!("`{action}` is not granted (pulumi_program::check::ROLE_ACTIONS)"),
                    );
                }
                listed.insert(action);
            }
        }
        for action in check.difference(&listed) {
            drift.page(
                &doc,
                format!(
                    "the role is granted `{action}`, which the table under `{heading}` leaves out"
                ),
            );
        }
    }
    drift.check("list exactly pulumi_program::check::ROLE_ACTIONS (crates/pulumi-program/src/check/grants.rs) in those tables' first column");
}

#[test]
fn the_docs_name_the_go_the_toolchain_requires() {
    let minimum = go_minimum();
    let mut drift = Drift::default();
    let mut mentions = 0;
    for page in pages() {
        let doc = Doc::read(&page);
        for (line, text) in doc.find("Go ") {
            for (at, _) in text.match_indices("Go ") {
                let rest = text[at + 3..].trim_start_matches("≥ ");
                let version: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect();
                let Some(quoted) = GoVersion::parse(version.trim_end_matches('.')) else {
                    continue;
                };
                mentions += 1;
                if quoted != minimum {
                    drift.at(&doc, line, format!("says Go {version}; the toolchain needs Go {minimum} (`go` line of devstack/rehearsal/go.mod)"));
                }
            }
        }
    }
    assert!(
        mentions > 0,
        "no page names the Go version the rehearsal needs"
    );
    drift.check(&format!("write `Go ≥ {minimum}`: the toolchain check (devstack/src/tools/rehearse/toolchain.rs) refuses anything older"));
}

/// Runs the real rehearsal (the Pulumi toolchain is built on first use, as
/// for the pulumi_cli tests; without Go it fails naming it).
#[test]
fn rehearsal_md_shows_what_the_rehearsal_prints() {
    let doc = Doc::read(transcript::PAGE);
    let (open, _, page) = transcript::on_page(&doc).unwrap_or_else(|e| panic!("{e:#}"));
    let fresh = transcript::rehearse().unwrap_or_else(|e| panic!("{e:#}"));
    if updating() {
        transcript::write_to_page(&doc, &fresh).unwrap_or_else(|e| panic!("{e:#}"));
        return;
    }
    let (was, now) = (transcript::masked(&page), transcript::masked(&fresh));
    let mut drift = Drift::default();
    for section in &now {
        match was.iter().find(|s| s.title == section.title) {
            None => drift.at(
                &doc,
                open,
                format!("the rehearsal now runs `==> {}`", section.title),
            ),
            Some(old) => {
                for line in section.lines.iter().filter(|l| !old.lines.contains(l)) {
                    drift.at(
                        &doc,
                        open,
                        format!("`==> {}` now prints `{}`", section.title, line.trim()),
                    );
                }
                for line in old.lines.iter().filter(|l| !section.lines.contains(l)) {
                    drift.at(
                        &doc,
                        open,
                        format!("`==> {}` no longer prints `{}`", section.title, line.trim()),
                    );
                }
            }
        }
    }
    for section in was
        .iter()
        .filter(|s| !now.iter().any(|n| n.title == s.title))
    {
        drift.at(
            &doc,
            open,
            format!("the rehearsal no longer runs `==> {}`", section.title),
        );
    }
    drift.check(&format!(
        "`{REGENERATE}` rewrites the transcript from a fresh rehearsal (then read the diff)"
    ));
}

#[test]
fn verify_md_shows_the_local_parity_table_as_measured() {
    let doc = Doc::read(conformance::PAGE);
    let (begin, _, page) = conformance::on_page(&doc).unwrap_or_else(|e| panic!("{e:#}"));
    let output = conformance::measure().unwrap_or_else(|e| panic!("{e:#}"));
    let fresh = conformance::as_page(&output).unwrap_or_else(|e| panic!("{e:#}"));
    if updating() {
        conformance::write_to_page(&doc, &fresh).unwrap_or_else(|e| panic!("{e:#}"));
        return;
    }
    let (was, now) = (conformance::masked(&page), conformance::masked(&fresh));
    let mut drift = Drift::default();
    for line in now.iter().filter(|l| !was.contains(l)) {
        drift.at(&doc, begin, format!("the command now prints `{line}`"));
    }
    for line in was.iter().filter(|l| !now.contains(l)) {
        drift.at(
            &doc,
            begin,
            format!("the command no longer prints `{line}`"),
        );
    }
    drift.check(&format!(
        "`{REGENERATE}` rewrites the table from a fresh run (then read the diff)"
    ));
}
