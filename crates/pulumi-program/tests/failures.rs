//! The alarms page on failures, not on what clients send
//! (crates/pulumi-program/src/check/failures.rs), each broken in a copy.

mod support;

use support::{expect, mutated};

#[test]
fn an_alarm_on_integration_error_is_refused() {
    let program = mutated(
        "      metricName: ExecutionError\n",
        "      metricName: IntegrationError\n",
    );
    expect(
        &program,
        "resources.apiExecutionErrorsAlarm.properties.metricName",
        "IntegrationError counts the 400s the function answers to clients' malformed frames",
    );
    expect(
        &program,
        "resources",
        "no aws:cloudwatch/metricAlarm:MetricAlarm on AWS/ApiGateway ExecutionError",
    );
}

#[test]
fn the_functions_error_lines_are_counted_and_alarmed_on() {
    let program = mutated(
        "      logGroupName: ${functionLogs.name}\n",
        "      logGroupName: ${authorizerLogs.name}\n",
    );
    expect(
        &program,
        "resources",
        "no aws:cloudwatch/logMetricFilter:LogMetricFilter on ${functionLogs.name}",
    );
    let program = mutated(
        r#"      pattern: '{ $.level = "ERROR" && $._aws NOT EXISTS }'"#,
        r#"      pattern: '{ $.level = "ERROR" }'"#,
    );
    expect(
        &program,
        "resources.functionErrorLines.properties.pattern",
        "must match `$._aws NOT EXISTS`",
    );
    // The alarm reads the metric where the filter writes it.
    let program = mutated(
        "      metricName: ${functionErrorMetric.name}\n",
        "      metricName: ${pulumi.project}-${pulumi.stack}-handler-error-lines\n",
    );
    expect(
        &program,
        "resources",
        "no aws:cloudwatch/metricAlarm:MetricAlarm reads the metric functionErrorLines writes",
    );
}
