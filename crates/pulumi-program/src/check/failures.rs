//! The alarms page on failures, not on what clients send (issue 23's review).
//!
//! AWS's definitions (API Gateway Developer Guide, "Monitor WebSocket API
//! execution with CloudWatch metrics"): `IntegrationError` is "the number of
//! requests that return a 4XX/5XX response from the integration", and the
//! function answers 400 to a client's malformed frame, so an alarm on it pages
//! on any client's mistakes and drowns real failures; `ExecutionError` is
//! "errors that occurred when calling the integration". Lambda's `Errors`
//! counts "invocations that result in a function error" — a request the
//! function answers 500 after logging why is not one. So: an alarm on the
//! function's own ERROR lines (a metric filter on its log group, leaving out
//! the broadcast-loss metric lines, which have alarms of their own), and
//! none on `IntegrationError`.

use serde_yaml_ng::Value;

use super::Checker;
use super::alarms::{ALARM, watched};
use super::invariants::{Scope, known_str, prop};
use crate::interpolation;
use crate::program::Resource;
use crate::topology;

const METRIC_FILTER: &str = "aws:cloudwatch/logMetricFilter:LogMetricFilter";
const LOG_GROUP: &str = "aws:cloudwatch/logGroup:LogGroup";
/// What the filter must match: the function's ERROR lines (its JSON logs'
/// `level`), and not the embedded-metric-format lines (`_aws`).
const PATTERN_TERMS: &[&str] = &["$.level = \"ERROR\"", "$._aws NOT EXISTS"];

impl Checker<'_> {
    /// No alarm on `IntegrationError`; an alarm on a metric filter of the
    /// function's ERROR lines, naming the filter's metric by reference.
    pub(super) fn failures_page(&mut self) {
        let config = self.config.clone();
        let scope = Scope::new(self.program, &config);
        for alarm in scope.of(ALARM) {
            for metric in watched(alarm) {
                if metric.namespace.as_deref() == Some("AWS/ApiGateway")
                    && metric.metric.as_deref() == Some("IntegrationError")
                {
                    self.report(
                        format!("{}.metricName", metric.at),
                        "IntegrationError counts the 400s the function answers to clients' malformed frames: \
                         alarm on ExecutionError, the function's Errors and its ERROR lines instead (show it on the dashboard)",
                    );
                }
            }
        }
        let Some(function) = scope.handler() else {
            return;
        };
        let Some(group) = scope.of(LOG_GROUP).into_iter().find(|g| {
            topology::refers_to(
                prop(function, "loggingConfig").and_then(|l| l.get("logGroup")),
                g.name,
                "name",
            )
        }) else {
            return; // reported with the role's grants
        };
        let filters: Vec<&Resource<'_>> = scope
            .of(METRIC_FILTER)
            .into_iter()
            .filter(|f| topology::refers_to(prop(f, "logGroupName"), group.name, "name"))
            .collect();
        let Some(filter) = filters.first() else {
            self.report(
                "resources",
                format!(
                    "no {METRIC_FILTER} on ${{{}.name}} counts the function's ERROR lines (the requests it answers 500)",
                    group.name
                ),
            );
            return;
        };
        let pattern = known_str(&scope.eval, prop(filter, "pattern")).unwrap_or_default();
        for term in PATTERN_TERMS {
            if !pattern.contains(term) {
                self.report(
                    format!("resources.{}.properties.pattern", filter.name),
                    format!("must match `{term}`: the function's ERROR lines, without the broadcast-loss metric lines"),
                );
            }
        }
        // The alarm reads the metric where the filter writes it, both naming
        // it from one variable (a typo in either would watch nothing).
        let transformation = prop(filter, "metricTransformation");
        let source = |value: Option<&Value>| {
            value
                .and_then(Value::as_str)
                .and_then(|s| interpolation::parse(s).ok())
                .and_then(|segments| interpolation::sole_access(&segments).cloned())
                .filter(|a| self.program.variable(&a.root).is_some())
                .map(|a| (a.root.clone(), a.path_text()))
        };
        let written = [
            source(transformation.and_then(|t| t.get("namespace"))),
            source(transformation.and_then(|t| t.get("name"))),
        ];
        let alarmed = written.iter().all(Option::is_some)
            && scope.of(ALARM).into_iter().any(|alarm| {
                [
                    source(prop(alarm, "namespace")),
                    source(prop(alarm, "metricName")),
                ] == written
            });
        if !alarmed {
            self.report(
                "resources",
                format!(
                    "no {ALARM} reads the metric {} writes (namespace and metricName from the same variable as its metricTransformation's): the function's ERROR lines page no one",
                    filter.name
                ),
            );
        }
    }
}
