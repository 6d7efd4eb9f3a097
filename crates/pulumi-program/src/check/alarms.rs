//! The alarms, their topics and the dashboard: an operator is told when the
//! API fails or is under attack. Each required alarm watches its metric with
//! the dimensions AWS documents, pointing at this program's resources, in the
//! region the metric lives in, notifies a topic of that same region, and
//! takes its threshold and period from config.

use protocol::metrics;
use serde_yaml_ng::{Mapping, Value};

use super::Checker;
use super::invariants::{Scope, known, known_str, prop};
use crate::eval::Evaluator;
use crate::interpolation;
use crate::program::Resource;
use crate::topology::{self, API, DISTRIBUTION, STAGE, WEB_ACL};

pub(super) const ALARM: &str = "aws:cloudwatch/metricAlarm:MetricAlarm";
pub(super) const TOPIC: &str = "aws:sns/topic:Topic";
/// CloudFront's and WAF's (CLOUDFRONT scope) metrics exist only here.
pub(super) const EDGE_REGION: &str = "us-east-1";

/// What a dimension must be.
#[derive(Clone, Copy)]
enum Dim {
    /// `${<the resource of this type>.<property>}`.
    Ref(&'static str, &'static str),
    Literal(&'static str),
    /// The web ACL's `visibilityConfig.metricName`.
    AclMetricName,
    /// `${<function>.name}` of the handler (the function the API invokes).
    Handler,
    /// `${<function>.name}` of the `$connect` authorizer's function.
    Authorizer,
}

struct Required {
    namespace: &'static str,
    metric: &'static str,
    edge: bool,
    dimensions: &'static [(&'static str, Dim)],
}

const FUNCTION_NAME: &[(&str, Dim)] = &[("FunctionName", Dim::Handler)];
const AUTHORIZER_NAME: &[(&str, Dim)] = &[("FunctionName", Dim::Authorizer)];
const API_STAGE: &[(&str, Dim)] = &[
    ("ApiId", Dim::Ref(API, "id")),
    ("Stage", Dim::Ref(STAGE, "name")),
];
const WAF_ALL_RULES: &[(&str, Dim)] = &[
    ("WebACL", Dim::AclMetricName),
    ("Rule", Dim::Literal("ALL")),
];
const DEAD_LETTER_QUEUE: &[(&str, Dim)] = &[("QueueName", Dim::Ref(super::grants::QUEUE, "name"))];
const CLOUDFRONT: &[(&str, Dim)] = &[
    ("DistributionId", Dim::Ref(DISTRIBUTION, "id")),
    ("Region", Dim::Literal("Global")),
];

const REQUIRED: &[Required] = &[
    Required {
        namespace: "AWS/Lambda",
        metric: "Errors",
        edge: false,
        dimensions: FUNCTION_NAME,
    },
    // The sign-in authorizer failed: API Gateway answered those handshakes
    // 500 (required when the program has one).
    Required {
        namespace: "AWS/Lambda",
        metric: "Errors",
        edge: false,
        dimensions: AUTHORIZER_NAME,
    },
    Required {
        namespace: "AWS/Lambda",
        metric: "Throttles",
        edge: false,
        dimensions: FUNCTION_NAME,
    },
    Required {
        namespace: "AWS/Lambda",
        metric: "Duration",
        edge: false,
        dimensions: FUNCTION_NAME,
    },
    // The function's own count of broadcast recipients it could not reach,
    // and of broadcasts cut short (crates/protocol/src/metrics.rs).
    Required {
        namespace: metrics::NAMESPACE,
        metric: metrics::RECIPIENTS_NOT_REACHED,
        edge: false,
        dimensions: FUNCTION_NAME,
    },
    Required {
        namespace: metrics::NAMESPACE,
        metric: metrics::BROADCASTS_CUT_SHORT,
        edge: false,
        dimensions: FUNCTION_NAME,
    },
    // Continuation events Lambda dropped, or gave up on.
    Required {
        namespace: "AWS/Lambda",
        metric: "AsyncEventsDropped",
        edge: false,
        dimensions: FUNCTION_NAME,
    },
    Required {
        namespace: "AWS/SQS",
        metric: "ApproximateNumberOfMessagesVisible",
        edge: false,
        dimensions: DEAD_LETTER_QUEUE,
    },
    Required {
        namespace: "AWS/ApiGateway",
        metric: "ExecutionError",
        edge: false,
        dimensions: API_STAGE,
    },
    Required {
        namespace: "AWS/WAFV2",
        metric: "BlockedRequests",
        edge: true,
        dimensions: WAF_ALL_RULES,
    },
    Required {
        namespace: "AWS/CloudFront",
        metric: "5xxErrorRate",
        edge: true,
        dimensions: CLOUDFRONT,
    },
];

/// One metric an alarm reads: where it is written, and its fields.
pub(super) struct Watched<'v> {
    pub at: String,
    pub namespace: Option<String>,
    pub metric: Option<String>,
    pub dimensions: Option<&'v Value>,
    period: Option<&'v Value>,
}

impl Checker<'_> {
    /// Every [`REQUIRED`] alarm, the settings of every alarm, and the
    /// dashboard.
    pub(super) fn alarms(&mut self) {
        let config = self.config.clone();
        let scope = Scope::new(self.program, &config);
        let acl_metric = scope.first(WEB_ACL).and_then(|acl| {
            known_str(
                &scope.eval,
                prop(acl, "visibilityConfig").and_then(|v| v.get("metricName")),
            )
        });
        let alarms = scope.of(ALARM);
        for required in REQUIRED {
            self.required_alarm(&scope, &alarms, required, acl_metric.as_deref());
        }
        for alarm in &alarms {
            self.alarm_actions(alarm, &scope.resources, &scope.eval);
            self.tunable(alarm, "threshold");
            self.tunable(alarm, "evaluationPeriods");
            for metric in watched(alarm) {
                if !self.is_config_ref(metric.period) {
                    self.report(
                        format!("{}.period", metric.at),
                        "must come from config (${alarmPeriodSec})",
                    );
                }
            }
        }
        self.dashboard(&scope.resources, &scope.eval, acl_metric.as_deref());
    }

    /// An alarm on `required`'s metric, with its dimensions, in its region.
    fn required_alarm(
        &mut self,
        scope: &Scope<'_>,
        alarms: &[&Resource<'_>],
        required: &Required,
        acl_metric: Option<&str>,
    ) {
        let function = match required.dimensions {
            [(_, Dim::Authorizer)] => match scope.authorizer_function() {
                Some(function) => Some(function),
                None => return,
            },
            [(_, Dim::Handler)] => scope.handler(),
            _ => None,
        };
        let candidates: Vec<(&Resource<'_>, Watched<'_>)> = alarms
            .iter()
            .flat_map(|alarm| watched(alarm).into_iter().map(move |w| (*alarm, w)))
            .filter(|(_, w)| {
                w.namespace.as_deref() == Some(required.namespace)
                    && w.metric.as_deref() == Some(required.metric)
            })
            .collect();
        // Two functions share Lambda's metrics: the alarm on this one is the
        // one whose FunctionName names it.
        let of_function = |w: &Watched<'_>| {
            function.is_some_and(|f| {
                topology::refers_to(
                    w.dimensions
                        .and_then(Value::as_mapping)
                        .and_then(|d| d.get("FunctionName")),
                    f.name,
                    "name",
                )
            })
        };
        let found = match candidates.iter().position(|(_, w)| of_function(w)) {
            Some(i) => candidates.into_iter().nth(i),
            None if function.is_some() && candidates.len() > 1 => None,
            None => candidates.into_iter().next(),
        };
        let Some((alarm, metric)) = found else {
            let of = function
                .map(|f| format!(" of {}", f.name))
                .unwrap_or_default();
            self.report(
                "resources",
                format!(
                    "no {ALARM} on {} {}{of}",
                    required.namespace, required.metric
                ),
            );
            return;
        };
        self.alarm_dimensions(scope, required, &metric, acl_metric);
        self.alarm_region(&scope.eval, required, alarm);
        if required.metric == "Duration" {
            self.duration_follows_timeout(alarm, scope.handler());
        }
    }

    /// Exactly `required`'s dimensions, each with the value AWS documents.
    fn alarm_dimensions(
        &mut self,
        scope: &Scope<'_>,
        required: &Required,
        metric: &Watched<'_>,
        acl_metric: Option<&str>,
    ) {
        let string = |v: Option<&Value>| known_str(&scope.eval, v);
        let dimensions = metric.dimensions.and_then(Value::as_mapping);
        let names: Vec<&str> = dimensions
            .map(|d| d.keys().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let expected: Vec<&str> = required.dimensions.iter().map(|(n, _)| *n).collect();
        if names.len() != expected.len() || !expected.iter().all(|n| names.contains(n)) {
            self.report(
                format!("{}.dimensions", metric.at),
                format!(
                    "{} {} needs exactly the dimensions {}",
                    required.namespace,
                    required.metric,
                    expected.join(", ")
                ),
            );
        }
        for (name, dim) in required.dimensions {
            let value = dimensions.and_then(|d| d.get(*name));
            let (ok, want) = match dim {
                Dim::Ref(token, property) => match scope.first(token) {
                    Some(r) => (
                        topology::refers_to(value, r.name, property),
                        format!("${{{}.{property}}}", r.name),
                    ),
                    None => (false, format!("a {token}'s {property}")),
                },
                Dim::Literal(text) => {
                    (string(value).as_deref() == Some(*text), (*text).to_string())
                }
                Dim::Handler | Dim::Authorizer => {
                    let function = match dim {
                        Dim::Handler => scope.handler(),
                        _ => scope.authorizer_function(),
                    };
                    match function {
                        Some(f) => (
                            topology::refers_to(value, f.name, "name"),
                            format!("${{{}.name}}", f.name),
                        ),
                        None => (false, "a function's name".to_string()),
                    }
                }
                Dim::AclMetricName => (
                    acl_metric.is_some() && string(value).as_deref() == acl_metric,
                    format!("the web ACL's metric name ({})", acl_metric.unwrap_or("?")),
                ),
            };
            if !ok {
                self.report(
                    format!("{}.dimensions.{name}", metric.at),
                    format!("must be {want}"),
                );
            }
        }
    }

    /// Edge metrics are alarmed on in [`EDGE_REGION`], the others in the
    /// stack's region.
    fn alarm_region(&mut self, eval: &Evaluator<'_>, required: &Required, alarm: &Resource<'_>) {
        let region = known_str(eval, prop(alarm, "region"));
        let at = format!("resources.{}.properties.region", alarm.name);
        match (required.edge, region.as_deref()) {
            (true, Some(EDGE_REGION)) | (false, None) => {}
            (true, _) => self.report(
                at,
                format!(
                    "must be {EDGE_REGION}: {} metrics exist only there",
                    required.namespace
                ),
            ),
            (false, Some(_)) => {
                self.report(at, "must be left out: the metric is in the stack's region")
            }
        }
    }

    /// Alarm actions must be topics of this program in the alarm's region:
    /// CloudWatch refuses a topic in another region.
    fn alarm_actions(
        &mut self,
        alarm: &Resource<'_>,
        resources: &[Resource<'_>],
        eval: &Evaluator<'_>,
    ) {
        let region = known(eval, prop(alarm, "region"));
        let actions = prop(alarm, "alarmActions").and_then(Value::as_sequence);
        let ok = actions.is_some_and(|items| {
            !items.is_empty()
                && items.iter().all(|action| {
                    resources.iter().any(|t| {
                        t.token == TOPIC
                            && topology::refers_to(Some(action), t.name, "arn")
                            && known(eval, prop(t, "region")) == region
                    })
                })
        });
        if !ok {
            self.report(
                format!("resources.{}.properties.alarmActions", alarm.name),
                "must be [${<topic>.arn}] of an SNS topic of this program in the alarm's own region (CloudWatch cannot notify a topic elsewhere)",
            );
        }
    }

    fn tunable(&mut self, alarm: &Resource<'_>, property: &str) {
        if !self.is_config_ref(prop(alarm, property)) {
            self.report(
                format!("resources.{}.properties.{property}", alarm.name),
                "must come from a typed config key, so operators can tune it",
            );
        }
    }

    fn is_config_ref(&self, value: Option<&Value>) -> bool {
        value
            .and_then(Value::as_str)
            .and_then(|s| interpolation::parse(s).ok())
            .and_then(|segments| interpolation::sole_access(&segments).map(|a| a.root.clone()))
            .is_some_and(|root| {
                self.config
                    .declared
                    .get(&root)
                    .is_some_and(|t| t == "integer")
            })
    }

    /// The duration alarm compares with the function's timeout, whatever it is set to.
    fn duration_follows_timeout(&mut self, alarm: &Resource<'_>, function: Option<&Resource<'_>>) {
        let timeout_key = function
            .and_then(|f| prop(f, "timeout"))
            .and_then(Value::as_str)
            .and_then(|s| interpolation::parse(s).ok())
            .and_then(|segments| interpolation::sole_access(&segments).map(|a| a.root.clone()));
        let follows = timeout_key.as_deref().is_some_and(|key| {
            prop(alarm, "metricQueries").and_then(Value::as_sequence).is_some_and(|queries| {
                queries.iter().any(|q| {
                    q.get("expression").and_then(Value::as_str).is_some_and(|e| {
                        interpolation::parse(e).is_ok_and(|segments| {
                            segments.iter().any(|s| matches!(s, interpolation::Segment::Access(a) if a.root == key))
                        })
                    })
                })
            })
        });
        if !follows {
            self.report(
                format!("resources.{}.properties.metricQueries", alarm.name),
                format!(
                    "must compare Duration with the function's timeout (an expression using ${{{}}})",
                    timeout_key.as_deref().unwrap_or("functionTimeout")
                ),
            );
        }
    }

    /// `AlarmTopicArn` (the stack's region) and `EdgeAlarmTopicArn` (us-east-1)
    /// are the topics operators subscribe to.
    pub(super) fn alarm_outputs(&mut self) {
        let program = self.program;
        let config = self.config.clone();
        let eval = Evaluator::new(program, &config);
        let resources = program.resources();
        for (output, region) in [
            ("AlarmTopicArn", None),
            ("EdgeAlarmTopicArn", Some(EDGE_REGION)),
        ] {
            let value = program.section("outputs").and_then(|o| o.get(output));
            let ok = resources.iter().any(|t| {
                t.token == TOPIC
                    && topology::refers_to(value, t.name, "arn")
                    && known(&eval, prop(t, "region"))
                        .as_ref()
                        .and_then(Value::as_str)
                        == region
            });
            if !ok {
                self.report(
                    format!("outputs.{output}"),
                    format!(
                        "must be ${{<topic>.arn}} of the SNS topic in {}",
                        region.unwrap_or("the stack's region")
                    ),
                );
            }
        }
    }
}

/// The metrics an alarm reads: its own, or its metric queries'.
pub(super) fn watched<'v>(alarm: &'v Resource<'_>) -> Vec<Watched<'v>> {
    let text = |m: Option<&Mapping>, key: &str| {
        m.and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let mut out = Vec::new();
    if prop(alarm, "metricName").is_some() {
        out.push(Watched {
            at: format!("resources.{}.properties", alarm.name),
            namespace: text(alarm.properties, "namespace"),
            metric: text(alarm.properties, "metricName"),
            dimensions: prop(alarm, "dimensions"),
            period: prop(alarm, "period"),
        });
    }
    for (i, query) in prop(alarm, "metricQueries")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let metric = query.get("metric").and_then(Value::as_mapping);
        if metric.is_some() {
            out.push(Watched {
                at: format!(
                    "resources.{}.properties.metricQueries[{i}].metric",
                    alarm.name
                ),
                namespace: text(metric, "namespace"),
                metric: text(metric, "metricName"),
                dimensions: metric.and_then(|m| m.get("dimensions")),
                period: metric.and_then(|m| m.get("period")),
            });
        }
    }
    out
}
