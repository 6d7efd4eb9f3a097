//! What the project promises beyond the security invariants, checked on the
//! program's values: WAF rules, metrics and logs; the function as
//! cargo-lambda builds it; names that let two stacks share an account.

use std::collections::BTreeSet;

use serde_yaml_ng::Value;

use super::Checker;
use super::invariants::{Scope, known, known_str, prop};
use crate::eval::{Evaluator, builtin};
use crate::interpolation::{self, Segment};
use crate::program::Resource;
use crate::topology::{self, FUNCTION, STAGE, WEB_ACL};

const MANAGED_RULE_GROUPS: &[&str] = &[
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
    "AWSManagedRulesAmazonIpReputationList",
];

/// What `cargo lambda build --release --arm64 --output-format zip -p
/// websocket-handler` writes.
const FUNCTION_ZIP: &str = "./target/lambda/websocket-handler/bootstrap.zip";
/// The same for `-p authorizer`, the sign-in authorizer.
const AUTHORIZER_ZIP: &str = "./target/lambda/authorizer/bootstrap.zip";
const LOG_GROUP: &str = "aws:cloudwatch/logGroup:LogGroup";

impl Checker<'_> {
    /// What the project promises beyond the security invariants: WAF rules,
    /// metrics and logs; the function as cargo-lambda builds it; names that
    /// let two stacks share an account.
    pub(super) fn requirements(&mut self) {
        let config = self.config.clone();
        let scope = Scope::new(self.program, &config);
        for acl in scope.of(WEB_ACL) {
            self.web_acl_rules(&scope, acl);
            self.web_acl_logging(&scope, acl);
        }
        let authorizer = scope.authorizer_function().map(|f| f.name);
        for function in scope.of(FUNCTION) {
            let zip = if Some(function.name) == authorizer {
                AUTHORIZER_ZIP
            } else {
                FUNCTION_ZIP
            };
            self.function_build(&scope, function, zip);
            self.function_logging(&scope, function);
        }
        self.names_carry_project_and_stack(&scope);
    }

    /// A blocking rate-based rule, the AWS managed rule groups, and metrics
    /// for every rule.
    fn web_acl_rules(&mut self, scope: &Scope<'_>, acl: &Resource<'_>) {
        let eval = &scope.eval;
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
            .filter(|g| known_str(eval, g.get("vendorName")).as_deref() == Some("AWS"))
            .filter_map(|g| known_str(eval, g.get("name")))
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
                eval,
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
    }

    /// The web ACL logs to an `aws-waf-logs-` group of this program, both in
    /// us-east-1.
    fn web_acl_logging(&mut self, scope: &Scope<'_>, acl: &Resource<'_>) {
        let eval = &scope.eval;
        let logging = scope.resources.iter().find(|l| {
            l.token == "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration"
                && topology::refers_to(prop(l, "resourceArn"), acl.name, "arn")
        });
        let Some(logging) = logging else {
            self.report(
                format!("resources.{}", acl.name),
                "the web ACL has no WebAclLoggingConfiguration",
            );
            return;
        };
        let logging_at = format!("resources.{}.properties", logging.name);
        if known_str(eval, prop(logging, "region")).as_deref() != Some("us-east-1") {
            self.report(
                format!("{logging_at}.region"),
                "must be us-east-1, with the web ACL",
            );
        }
        let destination = prop(logging, "logDestinationConfigs")
            .and_then(Value::as_sequence)
            .and_then(|d| d.first())
            .and_then(|d| {
                scope
                    .resources
                    .iter()
                    .find(|g| g.token == LOG_GROUP && topology::refers_to(Some(d), g.name, "arn"))
            });
        match destination {
            None => self.report(
                format!("{logging_at}.logDestinationConfigs"),
                "must be [${<log group>.arn}] of a CloudWatch log group of this program",
            ),
            Some(group) => self.waf_log_group(eval, group),
        }
    }

    /// The log group WAF logs to: named `aws-waf-logs-...`, in us-east-1, with
    /// a retention.
    fn waf_log_group(&mut self, eval: &Evaluator<'_>, group: &Resource<'_>) {
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
        if known_str(eval, prop(group, "region")).as_deref() != Some("us-east-1") {
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

    /// The function as `cargo lambda build --release --arm64` makes it: a
    /// Rust bootstrap for arm64, from its `zip` ([`FUNCTION_ZIP`] or
    /// [`AUTHORIZER_ZIP`]).
    fn function_build(&mut self, scope: &Scope<'_>, function: &Resource<'_>, zip: &str) {
        let eval = &scope.eval;
        let at = format!("resources.{}.properties", function.name);
        if known_str(eval, prop(function, "runtime")).as_deref() != Some("provided.al2023") {
            self.report(
                format!("{at}.runtime"),
                "must be provided.al2023 (a Rust bootstrap)",
            );
        }
        if known(eval, prop(function, "architectures"))
            != Some(Value::Sequence(vec![Value::String("arm64".into())]))
        {
            self.report(
                format!("{at}.architectures"),
                "must be [arm64], what cargo lambda build --arm64 produces",
            );
        }
        if known_str(eval, prop(function, "handler")).as_deref() != Some("bootstrap") {
            self.report(format!("{at}.handler"), "must be bootstrap");
        }
        let archive = prop(function, "code")
            .and_then(Value::as_mapping)
            .and_then(builtin)
            .and_then(|(name, path)| name.eq_ignore_ascii_case("fn::fileArchive").then_some(path))
            .and_then(Value::as_str);
        if archive != Some(zip) {
            self.report(
                format!("{at}.code"),
                format!("must be fn::fileArchive: {zip}"),
            );
        }
    }

    /// JSON logs, with Lambda's REPORT lines.
    fn function_logging(&mut self, scope: &Scope<'_>, function: &Resource<'_>) {
        let eval = &scope.eval;
        let at = format!("resources.{}.properties", function.name);
        let log_format = known(
            eval,
            prop(function, "loggingConfig").and_then(|l| l.get("logFormat")),
        );
        if log_format != Some(Value::String("JSON".into())) {
            self.report(format!("{at}.loggingConfig.logFormat"), "must be JSON");
        }
        let system_level = known_str(
            eval,
            prop(function, "loggingConfig").and_then(|l| l.get("systemLogLevel")),
        );
        if !matches!(system_level.as_deref(), Some("INFO" | "DEBUG")) {
            self.report(
                format!("{at}.loggingConfig.systemLogLevel"),
                "must be INFO (or DEBUG): WARN drops Lambda's REPORT lines (duration, memory, init)",
            );
        }
    }

    /// Account-unique names carry the project and the stack (a stage's name
    /// is unique within its API only).
    fn names_carry_project_and_stack(&mut self, scope: &Scope<'_>) {
        for resource in scope.resources.iter().filter(|r| r.token != STAGE) {
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
