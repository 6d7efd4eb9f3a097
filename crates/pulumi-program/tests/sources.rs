//! One source for each name (crates/pulumi-program/src/check/sources.rs):
//! the web ACL's and its rules' metric names are variables that the WAF alarm
//! and the dashboard read as written; a name written out twice is caught.

mod support;

use support::{expect, mutated, mutated_in};

#[test]
fn the_acl_writes_its_metric_names_from_variables() {
    let program = mutated_in(
        "webAcl",
        "        metricName: ${wafMetrics.acl}\n",
        "        metricName: ${pulumi.project}-${pulumi.stack}\n",
    );
    expect(
        &program,
        "resources.webAcl.properties.visibilityConfig.metricName",
        "must be a ${variable} that the WAF alarm and the dashboard read too",
    );
    let program = mutated(
        "            metricName: ${wafMetrics.rateLimit}\n",
        "            metricName: rate-limit-per-ip\n",
    );
    expect(
        &program,
        "resources.webAcl.properties.rules[0].visibilityConfig.metricName",
        "must be a ${variable}",
    );
}

#[test]
fn the_alarm_and_the_dashboard_read_the_same_variables() {
    // The same value, written out: an edit of the variable would detach it.
    let program = mutated(
        "        WebACL: ${wafMetrics.acl}\n",
        "        WebACL: ${pulumi.project}-${pulumi.stack}\n",
    );
    expect(
        &program,
        "resources.wafBlockedAlarm.properties.dimensions.WebACL",
        "must be ${wafMetrics.acl}, the web ACL's metric name as it writes it",
    );
    let program = mutated(
        "Rule, '${wafMetrics.rateLimit}']",
        "Rule, rate-limit-per-ip]",
    );
    expect(
        &program,
        "resources.dashboard.properties.dashboardBody.fn::toJSON.widgets[4].properties.metrics[2]",
        "Rule `rate-limit-per-ip` must be ALL or a rule's metric name as the rule writes it",
    );
}
