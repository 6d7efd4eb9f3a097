//! One source for each name (issue 23's review): WAF's metrics are named by
//! the web ACL's and its rules' `visibilityConfig.metricName`, and the WAF
//! alarm and the dashboard name them again. Written twice, an edit of one
//! silently detaches the other (the alarm watches a metric nobody writes). So
//! each is a `${variable}` the ACL, the alarm and the dashboard all read —
//! not the ACL's output, which the YAML host cannot reach into (an output
//! object is untyped in the rehearsal's schema).

use serde_yaml_ng::Value;

use super::Checker;
use super::alarms::{ALARM, watched};
use super::invariants::prop;
use crate::eval::builtin;
use crate::interpolation;
use crate::topology::WEB_ACL;

const DASHBOARD: &str = "aws:cloudwatch/dashboard:Dashboard";

impl Checker<'_> {
    /// The ACL's and rules' metric names are variables, and every WAF
    /// dimension of an alarm or dashboard line is written exactly as one.
    pub(super) fn one_source_per_name(&mut self) {
        let program = self.program;
        let resources = program.resources();
        let Some(acl) = resources.iter().find(|r| r.token == WEB_ACL) else {
            return;
        };
        let at = format!("resources.{}.properties", acl.name);
        let acl_source = self.variable_source(
            prop(acl, "visibilityConfig").and_then(|v| v.get("metricName")),
            &format!("{at}.visibilityConfig.metricName"),
        );
        let mut rule_sources = Vec::new();
        for (i, rule) in prop(acl, "rules")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(source) = self.variable_source(
                rule.get("visibilityConfig")
                    .and_then(|v| v.get("metricName")),
                &format!("{at}.rules[{i}].visibilityConfig.metricName"),
            ) {
                rule_sources.push(source);
            }
        }
        let Some(acl_source) = acl_source else {
            return;
        };
        let rule_ok = |raw: &str| raw == "ALL" || rule_sources.iter().any(|s| s == raw);
        for alarm in resources.iter().filter(|r| r.token == ALARM) {
            for metric in watched(alarm) {
                if metric.namespace.as_deref() != Some("AWS/WAFV2") {
                    continue;
                }
                let dimension = |name: &str| {
                    metric
                        .dimensions
                        .and_then(|d| d.get(name))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                if dimension("WebACL").as_deref() != Some(acl_source.as_str()) {
                    self.report(
                        format!("{}.dimensions.WebACL", metric.at),
                        format!("must be {acl_source}, the web ACL's metric name as it writes it"),
                    );
                }
                if let Some(rule) = dimension("Rule")
                    && !rule_ok(&rule)
                {
                    self.report(
                        format!("{}.dimensions.Rule", metric.at),
                        "must be ALL or a rule's metric name as the rule writes it",
                    );
                }
            }
        }
        for dashboard in resources.iter().filter(|r| r.token == DASHBOARD) {
            let body = prop(dashboard, "dashboardBody")
                .and_then(Value::as_mapping)
                .and_then(builtin)
                .map(|(_, body)| body);
            let widgets = body
                .and_then(|b| b.get("widgets"))
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten();
            for (i, widget) in widgets.enumerate() {
                let lines = widget
                    .get("properties")
                    .and_then(|p| p.get("metrics"))
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_sequence);
                for (j, line) in lines.enumerate() {
                    let texts: Vec<&str> = line.iter().filter_map(Value::as_str).collect();
                    if texts.first() != Some(&"AWS/WAFV2") {
                        continue;
                    }
                    let after = |name: &str| {
                        texts
                            .windows(2)
                            .find(|w| w[0] == name)
                            .map(|w| w[1].to_string())
                    };
                    let line_at = format!(
                        "resources.{}.properties.dashboardBody.fn::toJSON.widgets[{i}].properties.metrics[{j}]",
                        dashboard.name
                    );
                    if after("WebACL").as_deref() != Some(acl_source.as_str()) {
                        self.report(
                            &line_at,
                            format!("WebACL must be {acl_source}, the web ACL's metric name as it writes it"),
                        );
                    }
                    if let Some(rule) = after("Rule")
                        && !rule_ok(&rule)
                    {
                        self.report(
                            &line_at,
                            format!("Rule `{rule}` must be ALL or a rule's metric name as the rule writes it"),
                        );
                    }
                }
            }
        }
    }

    /// The text of a `${variable...}` reference at `at`; anything else is
    /// reported (a name written out here would be written again elsewhere).
    fn variable_source(&mut self, value: Option<&Value>, at: &str) -> Option<String> {
        let text = value.and_then(Value::as_str)?;
        let is_variable = interpolation::parse(text).is_ok_and(|segments| {
            interpolation::sole_access(&segments)
                .is_some_and(|a| self.program.variable(&a.root).is_some())
        });
        if is_variable {
            Some(text.to_string())
        } else {
            self.report(
                at,
                format!(
                    "`{text}` must be a ${{variable}} that the WAF alarm and the dashboard read too"
                ),
            );
            None
        }
    }
}
