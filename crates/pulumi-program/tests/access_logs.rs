//! The stage's access log (crates/pulumi-program/src/check/access_logs.rs),
//! broken one thing at a time.

mod support;

use pulumi_program::check::ACCESS_LOG_FIELDS;
use support::{PROGRAM, expect, mutated, mutated_in};

#[test]
fn the_stage_logs_every_request_with_what_an_operator_needs() {
    for field in ACCESS_LOG_FIELDS {
        let line = PROGRAM
            .lines()
            .find(|l| l.trim_end().ends_with(&format!(": {field}")))
            .unwrap_or_else(|| panic!("the access log format has no {field}"));
        let program = mutated(&format!("{line}\n"), "");
        expect(
            &program,
            "resources.stage.properties.accessLogSettings.format",
            &format!("must log {field}"),
        );
    }
}

#[test]
fn the_access_log_goes_to_a_group_of_this_program_with_a_retention() {
    let program = mutated(
        "        destinationArn: ${stageAccessLogs.arn}\n",
        "        destinationArn: arn:aws:logs:eu-west-1:123456789012:log-group:elsewhere\n",
    );
    expect(
        &program,
        "resources.stage.properties.accessLogSettings.destinationArn",
        "must be ${<log group>.arn}",
    );
    let program = mutated_in(
        "stageAccessLogs",
        "      retentionInDays: ${logRetentionDays}\n",
        "",
    );
    expect(
        &program,
        "resources.stageAccessLogs.properties.retentionInDays",
        "logs need a retention",
    );
    let start = PROGRAM
        .find("      accessLogSettings:\n")
        .expect("the stage's access log");
    let end = start
        + PROGRAM[start..]
            .find("    options:")
            .expect("the stage's options");
    let program = format!("{}{}", &PROGRAM[..start], &PROGRAM[end..]);
    expect(
        &program,
        "resources.stage.properties.accessLogSettings",
        "the stage has no access log",
    );
}
