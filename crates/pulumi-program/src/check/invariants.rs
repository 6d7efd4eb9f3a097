//! The invariants of the scheme and the requirements, checked on
//! the program's values: what makes the API reachable only through CloudFront
//! and WAF, and what the deployment promises (WAF rules and logs, the function
//! as cargo-lambda builds it, names scoped by project and stack).

use std::collections::BTreeSet;

use serde_yaml_ng::Value;

use super::Checker;
use crate::eval::{Evaluated, Evaluator, builtin};
use crate::interpolation::{self, Segment};
use crate::program::Resource;
use crate::topology::{self, API, API_KEY, DISTRIBUTION, FUNCTION, ROUTE, STAGE, TABLE, WEB_ACL};

const MANAGED_RULE_GROUPS: &[&str] = &[
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
    "AWSManagedRulesAmazonIpReputationList",
];

/// What `cargo lambda build --release --arm64 --output-format zip` writes.
const FUNCTION_ZIP: &str = "./target/lambda/websocket-handler/bootstrap.zip";
const LOG_GROUP: &str = "aws:cloudwatch/logGroup:LogGroup";

impl Checker<'_> {
    /// The invariants that make the scheme what it is.
    pub(super) fn invariants(&mut self) {
        let program = self.program;
        let config = self.config.clone();
        let eval = Evaluator::new(program, &config);
        let resources = program.resources();
        let of = |token: &str| -> Vec<&Resource<'_>> {
            resources.iter().filter(|r| r.token == token).collect()
        };

        // $connect requires the key, and the API reads it from x-api-key.
        let apis = of(API);
        let [api] = apis.as_slice() else {
            self.report(
                "resources",
                format!("expected exactly one {API}, found {}", apis.len()),
            );
            return;
        };
        let api_at = format!("resources.{}.properties", api.name);
        if known(&eval, prop(api, "protocolType")) != Some(Value::String("WEBSOCKET".into())) {
            self.report(format!("{api_at}.protocolType"), "must be WEBSOCKET");
        }
        if known(&eval, prop(api, "apiKeySelectionExpression"))
            != Some(Value::String("$request.header.x-api-key".into()))
        {
            self.report(
                format!("{api_at}.apiKeySelectionExpression"),
                "must be $request.header.x-api-key, the header CloudFront adds",
            );
        }
        let routes = of(ROUTE);
        let connect = routes.iter().find(|r| {
            topology::refers_to(prop(r, "apiId"), api.name, "id")
                && known(&eval, prop(r, "routeKey")) == Some(Value::String("$connect".into()))
        });
        match connect {
            None => self.report("resources", "no $connect route on the API"),
            Some(route) => {
                if known(&eval, prop(route, "apiKeyRequired")) != Some(Value::Bool(true)) {
                    self.report(
                        format!("resources.{}.properties.apiKeyRequired", route.name),
                        "$connect must require the API key (apiKeyRequired: true), or clients can skip CloudFront and WAF",
                    );
                }
            }
        }

        // The stage redeploys when the API's selection expressions change.
        let deployments = of("aws:apigatewayv2/deployment:Deployment");
        for deployment in deployments
            .iter()
            .filter(|d| topology::refers_to(prop(d, "apiId"), api.name, "id"))
        {
            let triggers = prop(deployment, "triggers").and_then(Value::as_mapping);
            for expression in ["routeSelectionExpression", "apiKeySelectionExpression"] {
                let redeploys = triggers.is_some_and(|t| {
                    t.values()
                        .filter_map(Value::as_str)
                        .any(|v| mentions(v, api.name, expression))
                });
                if !redeploys {
                    self.report(
                        format!("resources.{}.properties.triggers", deployment.name),
                        format!(
                            "must include ${{{}.{expression}}}, or changing it leaves the stage on the old deployment",
                            api.name
                        ),
                    );
                }
            }
        }

        // The function's environment is the contract with its code.
        if let [function] = of(FUNCTION).as_slice() {
            let at = format!(
                "resources.{}.properties.environment.variables",
                function.name
            );
            let variables = prop(function, "environment").and_then(|e| e.get("variables"));
            let tables = of(TABLE);
            let table_ok = tables.iter().any(|t| {
                topology::refers_to(
                    variables.and_then(|v| v.get("CONNECTIONS_TABLE")),
                    t.name,
                    "name",
                )
            });
            if !table_ok {
                self.report(
                    format!("{at}.CONNECTIONS_TABLE"),
                    "must be the connections table's ${table.name}",
                );
            }
            let endpoint_ok = variables
                .and_then(|v| v.get("MANAGEMENT_ENDPOINT"))
                .and_then(Value::as_str)
                .is_some_and(|s| s.starts_with("https://") && mentions(s, api.name, "id"));
            if !endpoint_ok {
                self.report(
                    format!("{at}.MANAGEMENT_ENDPOINT"),
                    format!(
                        "must be https://${{{}.id}}.execute-api.<region>.amazonaws.com/<stage>",
                        api.name
                    ),
                );
            }
        }

        // Only this API may invoke the function.
        let permissions: Vec<&Resource<'_>> = of("aws:lambda/permission:Permission")
            .into_iter()
            .filter(|p| {
                known(&eval, prop(p, "principal"))
                    == Some(Value::String("apigateway.amazonaws.com".into()))
            })
            .collect();
        if permissions.is_empty() {
            self.report(
                "resources",
                "no aws:lambda/permission:Permission lets API Gateway invoke the function",
            );
        }
        for permission in permissions {
            let scoped = prop(permission, "sourceArn")
                .and_then(Value::as_str)
                .and_then(|s| interpolation::parse(s).ok())
                .is_some_and(|segments| match segments.as_slice() {
                    [Segment::Access(a), Segment::Text(rest), ..] => {
                        a.root == api.name
                            && a.path_text() == "executionArn"
                            && rest.starts_with('/')
                    }
                    _ => false,
                });
            if !scoped {
                self.report(
                    format!("resources.{}.properties.sourceArn", permission.name),
                    format!(
                        "must be scoped to this API: ${{{}.executionArn}}/...",
                        api.name
                    ),
                );
            }
        }

        // CloudFront: the API origin, its key header, https both sides, the web ACL.
        let distributions = of(DISTRIBUTION);
        let [distribution] = distributions.as_slice() else {
            self.report(
                "resources",
                format!(
                    "expected exactly one {DISTRIBUTION}, found {}",
                    distributions.len()
                ),
            );
            return;
        };
        let at = format!("resources.{}.properties", distribution.name);
        let origins = prop(distribution, "origins")
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        let api_origin = origins.iter().enumerate().find(|(_, o)| {
            o.get("domainName")
                .and_then(Value::as_str)
                .is_some_and(|d| mentions(d, api.name, "id"))
        });
        match api_origin {
            None => self.report(
                format!("{at}.origins"),
                format!(
                    "no origin is the API (domainName with ${{{}.id}})",
                    api.name
                ),
            ),
            Some((i, origin)) => {
                let origin_at = format!("{at}.origins[{i}]");
                let headers = origin
                    .get("customHeaders")
                    .and_then(Value::as_sequence)
                    .cloned()
                    .unwrap_or_default();
                let key_header = headers.iter().any(|h| {
                    let name_ok = h
                        .get("name")
                        .and_then(|n| known(&eval, Some(n)))
                        .and_then(|n| n.as_str().map(str::to_ascii_lowercase))
                        .is_some_and(|n| n == "x-api-key");
                    let value_ok = resources
                        .iter()
                        .filter(|r| r.token == API_KEY)
                        .any(|k| topology::refers_to(h.get("value"), k.name, "value"));
                    name_ok && value_ok
                });
                if !key_header {
                    self.report(
                        format!("{origin_at}.customHeaders"),
                        "CloudFront must send the header x-api-key with the ApiKey's ${apiKey.value}",
                    );
                }
                let custom = origin.get("customOriginConfig");
                if known(&eval, custom.and_then(|c| c.get("originProtocolPolicy")))
                    != Some(Value::String("https-only".into()))
                {
                    self.report(
                        format!("{origin_at}.customOriginConfig.originProtocolPolicy"),
                        "must be https-only",
                    );
                }
                if known(&eval, custom.and_then(|c| c.get("originSslProtocols")))
                    != Some(Value::Sequence(vec![Value::String("TLSv1.2".into())]))
                {
                    self.report(
                        format!("{origin_at}.customOriginConfig.originSslProtocols"),
                        "must be [TLSv1.2]",
                    );
                }
            }
        }
        let mut behaviors = vec![(
            format!("{at}.defaultCacheBehavior"),
            prop(distribution, "defaultCacheBehavior").cloned(),
        )];
        if let Some(ordered) =
            prop(distribution, "orderedCacheBehaviors").and_then(Value::as_sequence)
        {
            for (i, b) in ordered.iter().enumerate() {
                behaviors.push((format!("{at}.orderedCacheBehaviors[{i}]"), Some(b.clone())));
            }
        }
        for (path, behavior) in behaviors {
            let policy = known(
                &eval,
                behavior
                    .as_ref()
                    .and_then(|b| b.get("viewerProtocolPolicy")),
            );
            if policy.as_ref().and_then(Value::as_str) != Some("https-only") {
                self.report(
                    format!("{path}.viewerProtocolPolicy"),
                    "must be https-only: WebSocket clients do not follow redirect-to-https's 301",
                );
            }
        }
        let acl = resources
            .iter()
            .filter(|r| r.token == WEB_ACL)
            .find(|a| topology::refers_to(prop(distribution, "webAclId"), a.name, "arn"));
        match acl {
            None => self.report(
                format!("{at}.webAclId"),
                "must be ${<web ACL>.arn} of this program's wafv2 WebAcl",
            ),
            Some(acl) => {
                let acl_at = format!("resources.{}.properties", acl.name);
                if known(&eval, prop(acl, "scope")) != Some(Value::String("CLOUDFRONT".into())) {
                    self.report(format!("{acl_at}.scope"), "must be CLOUDFRONT");
                }
                if known(&eval, prop(acl, "region")) != Some(Value::String("us-east-1".into())) {
                    self.report(format!("{acl_at}.region"), "must be us-east-1: CLOUDFRONT-scope web ACLs live there, whatever the stack's region");
                }
            }
        }

        // The URL users connect to.
        let url_ok = program
            .section("outputs")
            .and_then(|o| o.get("DistributionURL"))
            .and_then(Value::as_str)
            .and_then(|s| interpolation::parse(s).ok())
            .is_some_and(|segments| match segments.as_slice() {
                [Segment::Text(scheme), Segment::Access(a)] => {
                    scheme == "wss://"
                        && a.root == distribution.name
                        && a.path_text() == "domainName"
                }
                _ => false,
            });
        if !url_ok {
            self.report(
                "outputs.DistributionURL",
                format!("must be wss://${{{}.domainName}}", distribution.name),
            );
        }
    }
}

impl Checker<'_> {
    /// What the project promises beyond the security invariants: WAF rules,
    /// metrics and logs; the function as cargo-lambda builds it; names that
    /// let two stacks share an account.
    pub(super) fn requirements(&mut self) {
        let program = self.program;
        let config = self.config.clone();
        let eval = Evaluator::new(program, &config);
        let resources = program.resources();
        let string =
            |v: Option<&Value>| known(&eval, v).and_then(|v| v.as_str().map(str::to_string));

        for acl in resources.iter().filter(|r| r.token == WEB_ACL) {
            let at = format!("resources.{}.properties", acl.name);
            let rules = prop(acl, "rules")
                .and_then(Value::as_sequence)
                .cloned()
                .unwrap_or_default();
            let blocks_rate = rules.iter().any(|r| {
                r.get("statement")
                    .and_then(|s| s.get("rateBasedStatement"))
                    .is_some()
                    && r.get("action").and_then(|a| a.get("block")).is_some()
            });
            if !blocks_rate {
                self.report(
                    format!("{at}.rules"),
                    "needs a rate-based rule whose action is block",
                );
            }
            let groups: BTreeSet<String> = rules
                .iter()
                .filter_map(|r| r.get("statement")?.get("managedRuleGroupStatement"))
                .filter(|g| string(g.get("vendorName")).as_deref() == Some("AWS"))
                .filter_map(|g| string(g.get("name")))
                .collect();
            for group in MANAGED_RULE_GROUPS {
                if !groups.contains(*group) {
                    self.report(
                        format!("{at}.rules"),
                        format!("the AWS managed rule group {group} is missing"),
                    );
                }
            }
            for (i, rule) in rules.iter().enumerate() {
                let metrics = known(
                    &eval,
                    rule.get("visibilityConfig")
                        .and_then(|v| v.get("cloudwatchMetricsEnabled")),
                );
                if metrics != Some(Value::Bool(true)) {
                    self.report(
                        format!("{at}.rules[{i}].visibilityConfig.cloudwatchMetricsEnabled"),
                        "every rule has metrics",
                    );
                }
            }
            let logging = resources.iter().find(|l| {
                l.token == "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration"
                    && topology::refers_to(prop(l, "resourceArn"), acl.name, "arn")
            });
            let Some(logging) = logging else {
                self.report(
                    format!("resources.{}", acl.name),
                    "the web ACL has no WebAclLoggingConfiguration",
                );
                continue;
            };
            let logging_at = format!("resources.{}.properties", logging.name);
            if string(prop(logging, "region")).as_deref() != Some("us-east-1") {
                self.report(
                    format!("{logging_at}.region"),
                    "must be us-east-1, with the web ACL",
                );
            }
            let destination = prop(logging, "logDestinationConfigs")
                .and_then(Value::as_sequence)
                .and_then(|d| d.first())
                .and_then(|d| {
                    resources.iter().find(|g| {
                        g.token == LOG_GROUP && topology::refers_to(Some(d), g.name, "arn")
                    })
                });
            match destination {
                None => self.report(
                    format!("{logging_at}.logDestinationConfigs"),
                    "must be [${<log group>.arn}] of a CloudWatch log group of this program",
                ),
                Some(group) => {
                    let group_at = format!("resources.{}.properties", group.name);
                    let name_ok = prop(group, "name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.starts_with("aws-waf-logs-"));
                    if !name_ok {
                        self.report(
                            format!("{group_at}.name"),
                            "WAF logs only to groups named aws-waf-logs-...",
                        );
                    }
                    if string(prop(group, "region")).as_deref() != Some("us-east-1") {
                        self.report(
                            format!("{group_at}.region"),
                            "must be us-east-1, with the web ACL",
                        );
                    }
                    if prop(group, "retentionInDays").is_none() {
                        self.report(
                            format!("{group_at}.retentionInDays"),
                            "logs need a retention",
                        );
                    }
                }
            }
        }

        for function in resources.iter().filter(|r| r.token == FUNCTION) {
            let at = format!("resources.{}.properties", function.name);
            if string(prop(function, "runtime")).as_deref() != Some("provided.al2023") {
                self.report(
                    format!("{at}.runtime"),
                    "must be provided.al2023 (a Rust bootstrap)",
                );
            }
            if known(&eval, prop(function, "architectures"))
                != Some(Value::Sequence(vec![Value::String("arm64".into())]))
            {
                self.report(
                    format!("{at}.architectures"),
                    "must be [arm64], what cargo lambda build --arm64 produces",
                );
            }
            if string(prop(function, "handler")).as_deref() != Some("bootstrap") {
                self.report(format!("{at}.handler"), "must be bootstrap");
            }
            let archive = prop(function, "code")
                .and_then(Value::as_mapping)
                .and_then(builtin)
                .and_then(|(name, path)| {
                    name.eq_ignore_ascii_case("fn::fileArchive").then_some(path)
                })
                .and_then(Value::as_str);
            if archive != Some(FUNCTION_ZIP) {
                self.report(
                    format!("{at}.code"),
                    format!("must be fn::fileArchive: {FUNCTION_ZIP}"),
                );
            }
            let log_format = known(
                &eval,
                prop(function, "loggingConfig").and_then(|l| l.get("logFormat")),
            );
            if log_format != Some(Value::String("JSON".into())) {
                self.report(format!("{at}.loggingConfig.logFormat"), "must be JSON");
            }
            let system_level =
                string(prop(function, "loggingConfig").and_then(|l| l.get("systemLogLevel")));
            if !matches!(system_level.as_deref(), Some("INFO" | "DEBUG")) {
                self.report(
                    format!("{at}.loggingConfig.systemLogLevel"),
                    "must be INFO (or DEBUG): WARN drops Lambda's REPORT lines (duration, memory, init)",
                );
            }
        }

        // Account-unique names carry the project and the stack (a stage's name
        // is unique within its API only).
        for resource in resources.iter().filter(|r| r.token != STAGE) {
            let (key, name) = match (prop(resource, "name"), prop(resource, "namePrefix")) {
                (Some(name), _) => ("name", name),
                (None, Some(prefix)) => ("namePrefix", prefix),
                (None, None) => continue,
            };
            let scoped = name.as_str().and_then(|n| interpolation::parse(n).ok()).is_some_and(|segments| {
                ["project", "stack"].iter().all(|field| {
                    segments.iter().any(|s| {
                        matches!(s, Segment::Access(a) if a.root == "pulumi" && a.first_property() == Some(field))
                    })
                })
            });
            if !scoped {
                self.report(
                    format!("resources.{}.properties.{key}", resource.name),
                    "must include ${pulumi.project} and ${pulumi.stack}, so stacks can share an account",
                );
            }
        }
    }
}

pub(super) fn prop<'a>(resource: &'a Resource<'_>, name: &str) -> Option<&'a Value> {
    resource.properties.and_then(|p| p.get(name))
}

pub(super) fn known(eval: &Evaluator<'_>, value: Option<&Value>) -> Option<Value> {
    match eval.eval(value?) {
        Evaluated::Known(v) => Some(v),
        _ => None,
    }
}

/// Whether a string interpolates `${resource.property}` somewhere.
pub(super) fn mentions(s: &str, resource: &str, property: &str) -> bool {
    interpolation::parse(s).is_ok_and(|segments| {
        segments.iter().any(|segment| {
            matches!(segment, Segment::Access(a) if a.root == resource && a.path.len() == 1 && a.first_property() == Some(property))
        })
    })
}
