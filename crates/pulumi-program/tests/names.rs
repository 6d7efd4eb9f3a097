//! Names AWS accepts (crates/pulumi-program/src/check/names.rs): a stack name
//! that would break a resource's name rule is refused before AWS refuses it,
//! naming the resource and the rule.

mod support;

use pulumi_program::check::check_sources;
use support::{DEV, PROGRAM};

/// The findings of the repository's program for a stack named `stack` with
/// the dev stack's config.
fn findings(stack: &str) -> Vec<String> {
    check_sources(PROGRAM, Some(DEV), stack)
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn has(found: &[String], path: &str, needle: &str) {
    assert!(
        found
            .iter()
            .any(|f| f.starts_with(path) && f.contains(needle)),
        "expected `{path}: ...{needle}...`, found:\n{}",
        found.join("\n")
    );
}

#[test]
fn a_dot_in_the_stack_name_is_refused_where_aws_refuses_it() {
    let found = findings("my.stack");
    for (path, rule) in [
        (
            "resources.handler.properties.name",
            "is not a Lambda function name",
        ),
        (
            "resources.authorizer.properties.name",
            "is not a Lambda function name",
        ),
        (
            "resources.deadLetters.properties.name",
            "is not an SQS queue name",
        ),
        (
            "resources.alarmTopic.properties.name",
            "is not an SNS topic name",
        ),
        (
            "resources.dashboard.properties.dashboardName",
            "is not a CloudWatch dashboard name",
        ),
        ("resources.webAcl.properties.namePrefix", "must match"),
    ] {
        has(&found, path, rule);
    }
    has(&found, "resources.dashboard", "stack `my.stack` make it");
    // A dot is fine where AWS allows it: tables and log groups.
    assert!(
        !found
            .iter()
            .any(|f| f.starts_with("resources.connections.")
                || f.starts_with("resources.functionLogs.")),
        "{}",
        found.join("\n")
    );
}

#[test]
fn a_long_stack_name_is_refused_where_a_name_would_pass_its_limit() {
    // 14 + 40 + 8 = 62 characters for the handler: fine; the authorizer's 65 is not.
    let stack = "s".repeat(40);
    let found = findings(&stack);
    has(
        &found,
        "resources.authorizer.properties.name",
        "(65 characters)",
    );
    assert!(
        !found
            .iter()
            .any(|f| f.starts_with("resources.handler.properties.name")),
        "{}",
        found.join("\n")
    );
    // The roles' namePrefix (64 less the 26 characters Pulumi appends): the provider facts.
    has(&found, "resources.role.properties.namePrefix", "(1 - 38)");
    // A stack name AWS takes everywhere passes.
    assert_eq!(findings("prod"), Vec::<String>::new());
}
