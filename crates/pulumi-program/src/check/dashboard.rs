//! The dashboard: what an operator looks at — the API's, the function's,
//! WAF's and CloudFront's metrics, WAF's blocks per rule — and the output
//! that links to it.

use serde_yaml_ng::Value;

use super::Checker;
use super::alarms::EDGE_REGION;
use super::invariants::{known, mentions, prop};
use crate::eval::{Evaluator, builtin};
use crate::program::Resource;
use crate::topology::WEB_ACL;

const DASHBOARD: &str = "aws:cloudwatch/dashboard:Dashboard";

/// What the dashboard must show, besides WAF's blocked requests per rule.
const DASHBOARD_METRICS: &[(&str, &str)] = &[
    ("AWS/ApiGateway", "ConnectCount"),
    ("AWS/ApiGateway", "MessageCount"),
    ("AWS/ApiGateway", "IntegrationError"),
    ("AWS/ApiGateway", "ExecutionError"),
    ("AWS/Lambda", "Errors"),
    ("AWS/Lambda", "Duration"),
    ("AWS/Lambda", "ConcurrentExecutions"),
    ("AWS/WAFV2", "AllowedRequests"),
    ("AWS/WAFV2", "BlockedRequests"),
    ("AWS/CloudFront", "Requests"),
    ("AWS/CloudFront", "5xxErrorRate"),
    (
        protocol::metrics::NAMESPACE,
        protocol::metrics::RECIPIENTS_NOT_REACHED,
    ),
    ("AWS/Lambda", "AsyncEventsDropped"),
];

/// One metric line of a widget: namespace, metric name, and the rest
/// (dimension names and values) as deployed where known offline.
struct Shown {
    namespace: String,
    metric: String,
    dimensions: Vec<String>,
}

impl Checker<'_> {
    /// The dashboard shows [`DASHBOARD_METRICS`] and WAF's blocks per rule,
    /// and `DashboardURL` links to it.
    pub(super) fn dashboard(
        &mut self,
        resources: &[Resource<'_>],
        eval: &Evaluator<'_>,
        acl_metric: Option<&str>,
    ) {
        let Some(dashboard) = resources.iter().find(|r| r.token == DASHBOARD) else {
            self.report("resources", format!("no {DASHBOARD}"));
            return;
        };
        let at = format!("resources.{}.properties.dashboardBody", dashboard.name);
        let body = prop(dashboard, "dashboardBody")
            .and_then(Value::as_mapping)
            .and_then(builtin)
            .filter(|(name, _)| name.eq_ignore_ascii_case("fn::toJSON"))
            .map(|(_, body)| body);
        let Some(body) = body else {
            self.report(&at, "must be fn::toJSON of the dashboard's widgets");
            return;
        };
        let shown = self.dashboard_lines(eval, &at, body);
        for (namespace, metric) in DASHBOARD_METRICS {
            if !shown
                .iter()
                .any(|s| s.namespace == *namespace && s.metric == *metric)
            {
                self.report(&at, format!("must show {namespace} {metric}"));
            }
        }
        self.dashboard_shows_waf_rules(resources, eval, &at, &shown, acl_metric);
        self.dashboard_url(dashboard);
    }

    /// Every metric line of the dashboard's widgets; an edge metric's widget
    /// must be in [`EDGE_REGION`].
    fn dashboard_lines(&mut self, eval: &Evaluator<'_>, at: &str, body: &Value) -> Vec<Shown> {
        let widgets = body
            .get("widgets")
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        let mut shown = Vec::new();
        for (i, widget) in widgets.iter().enumerate() {
            let properties = widget.get("properties");
            let metrics = properties
                .and_then(|p| p.get("metrics"))
                .and_then(Value::as_sequence);
            let region = properties
                .and_then(|p| p.get("region"))
                .and_then(Value::as_str);
            for line in metrics.into_iter().flatten().filter_map(Value::as_sequence) {
                // Dimension values as deployed where they are known offline.
                let texts: Vec<String> = line
                    .iter()
                    .filter(|v| v.is_string())
                    .map(|v| match known(eval, Some(v)) {
                        Some(Value::String(s)) => s,
                        _ => v.as_str().unwrap_or_default().to_string(),
                    })
                    .collect();
                let [namespace, metric, ..] = texts.as_slice() else {
                    continue;
                };
                if matches!(namespace.as_str(), "AWS/WAFV2" | "AWS/CloudFront")
                    && region != Some(EDGE_REGION)
                {
                    self.report(
                        format!("{at}.fn::toJSON.widgets[{i}].properties.region"),
                        format!("must be {EDGE_REGION}: {namespace} metrics exist only there"),
                    );
                }
                shown.push(Shown {
                    namespace: namespace.clone(),
                    metric: metric.clone(),
                    dimensions: texts[2..].to_vec(),
                });
            }
        }
        shown
    }

    /// WAF's blocked requests per rule: one line for each rule's metric name.
    fn dashboard_shows_waf_rules(
        &mut self,
        resources: &[Resource<'_>],
        eval: &Evaluator<'_>,
        at: &str,
        shown: &[Shown],
        acl_metric: Option<&str>,
    ) {
        let acl = resources.iter().find(|r| r.token == WEB_ACL);
        let rule_metrics: Vec<String> = acl
            .and_then(|a| prop(a, "rules"))
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let name = r.get("visibilityConfig")?.get("metricName")?;
                match known(eval, Some(name)) {
                    Some(Value::String(s)) => Some(s),
                    _ => name.as_str().map(String::from),
                }
            })
            .collect();
        for rule in rule_metrics {
            let per_rule = shown.iter().any(|s| {
                let dims = &s.dimensions;
                s.namespace == "AWS/WAFV2"
                    && s.metric == "BlockedRequests"
                    && dims.windows(2).any(|w| w[0] == "Rule" && w[1] == rule)
                    && dims
                        .windows(2)
                        .any(|w| w[0] == "WebACL" && Some(w[1].as_str()) == acl_metric)
            });
            if !per_rule {
                self.report(
                    at,
                    format!("must show WAF BlockedRequests for the rule {rule}"),
                );
            }
        }
    }

    /// `DashboardURL` is the console URL of the dashboard.
    fn dashboard_url(&mut self, dashboard: &Resource<'_>) {
        let url_ok = self
            .program
            .section("outputs")
            .and_then(|o| o.get("DashboardURL"))
            .and_then(Value::as_str)
            .is_some_and(|s| {
                s.starts_with("https://") && mentions(s, dashboard.name, "dashboardName")
            });
        if !url_ok {
            self.report(
                "outputs.DashboardURL",
                format!(
                    "must be the console URL of ${{{}.dashboardName}}",
                    dashboard.name
                ),
            );
        }
    }
}
