//! What the mutation tests share: the repository's program and dev stack,
//! ways to break one thing in a copy, and the assertion on the finding.
// Each test binary uses a part of these.
#![allow(dead_code)]

use pulumi_program::check::{Diagnostic, check_sources};

pub const PROGRAM: &str = include_str!("../../../../Pulumi.yaml");
pub const DEV: &str = include_str!("../../../../Pulumi.dev.yaml");

/// The program with `from` (which must occur exactly once) replaced by `to`.
pub fn mutated(from: &str, to: &str) -> String {
    assert_eq!(
        PROGRAM.matches(from).count(),
        1,
        "{from:?} must occur once in Pulumi.yaml"
    );
    PROGRAM.replacen(from, to, 1)
}

/// The program with the first `from` in the connections table's block
/// replaced by `to` (the claims table's block has the same lines).
pub fn mutated_table(from: &str, to: &str) -> String {
    mutated_in("connections", from, to)
}

/// The program with the first `from` in resource `name`'s block (up to the
/// next comment line at resource level) replaced by `to`: for lines that
/// several resources share (the handler's and the authorizer's, say).
pub fn mutated_in(name: &str, from: &str, to: &str) -> String {
    let start = PROGRAM
        .find(&format!("\n  {name}:\n"))
        .unwrap_or_else(|| panic!("no resource {name}"));
    let at = start
        + PROGRAM[start..]
            .find(from)
            .unwrap_or_else(|| panic!("{from:?} is not in {name}'s block"));
    let next = PROGRAM[start + 1..]
        .find("\n  # ")
        .map(|n| start + 1 + n)
        .into_iter()
        .chain(PROGRAM[start + 1..].find("\n\n  ").map(|n| start + 1 + n))
        .min();
    assert!(
        next.is_none_or(|n| at < n),
        "{from:?} is past {name}'s block"
    );
    format!("{}{to}{}", &PROGRAM[..at], &PROGRAM[at + from.len()..])
}

pub fn findings(program: &str) -> Vec<Diagnostic> {
    findings_with(program, DEV)
}

/// The findings on `program` with `stack_yaml` as the dev stack's file.
pub fn findings_with(program: &str, stack_yaml: &str) -> Vec<Diagnostic> {
    check_sources(program, Some(stack_yaml), "dev")
}

/// Asserts a finding at `path` whose message contains `needle`.
pub fn expect(program: &str, path: &str, needle: &str) {
    expect_with(program, DEV, path, needle);
}

/// [`expect`] with `stack_yaml` as the dev stack's file.
pub fn expect_with(program: &str, stack_yaml: &str, path: &str, needle: &str) {
    expect_among(&findings_with(program, stack_yaml), path, needle);
}

/// Asserts that `found` holds a finding at `path` whose message contains
/// `needle`, listing them all when not.
pub fn expect_among(found: &[pulumi_program::Diagnostic], path: &str, needle: &str) {
    assert!(
        found
            .iter()
            .any(|d| d.path == path && d.message.contains(needle)),
        "expected `{path}: ...{needle}...`, found:\n{}",
        found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
