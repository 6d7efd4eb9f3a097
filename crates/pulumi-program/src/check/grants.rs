//! Least privilege, checked exactly, and replacements that cannot fail.
//!
//! The function's role grants exactly what the function calls, on its own
//! resources; WAF writes its logs through a policy this program manages in
//! us-east-1; and every resource AWS names uniquely is either deleted before
//! it is replaced or named by Pulumi from a prefix.

use std::collections::BTreeSet;

use serde_yaml_ng::Value;

use super::Checker;
use super::invariants::{known, prop};
use crate::eval::{Evaluated, Evaluator, builtin};
use crate::program::Resource;
use crate::topology::{self, API, FUNCTION, STAGE, TABLE, WEB_ACL};
use crate::{Part, Template};

/// The DynamoDB calls the function makes (`functions/websocket-handler/src/registry.rs`):
/// PutItem on `$connect`, DeleteItem on `$disconnect` and for a gone peer, Scan to broadcast.
pub const FUNCTION_DYNAMODB_ACTIONS: &[&str] =
    &["dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Scan"];
/// The function's logs, on its own log group's streams (and WAF's, on its group).
pub const LOG_ACTIONS: &[&str] = &["logs:CreateLogStream", "logs:PutLogEvents"];
/// A broadcast's continuation invokes the function itself, asynchronously
/// (`functions/websocket-handler/src/relay.rs`): on the function's own ARN only.
pub const FUNCTION_SELF_ACTIONS: &[&str] = &["lambda:InvokeFunction"];
/// Each continuation is claimed with a conditional PutItem on the claims
/// table (`functions/websocket-handler/src/claims.rs`).
pub const CLAIMS_ACTIONS: &[&str] = &["dynamodb:PutItem"];
/// Lambda sends an asynchronous event it gives up on to the on-failure
/// destination with the function's role.
pub const DEAD_LETTER_ACTIONS: &[&str] = &["sqs:SendMessage"];
/// PostToConnection, on `POST @connections` of this API's stage only.
pub const MANAGEMENT_ACTIONS: &[&str] = &["execute-api:ManageConnections"];
/// Every action the sign-in authorizer's role is granted: its logs. It
/// verifies a token with keys fetched over HTTPS and calls nothing of AWS's.
pub const AUTHORIZER_ROLE_ACTIONS: &[&[&str]] = &[LOG_ACTIONS];
/// Every action the function's role is granted, and nothing else: what
/// docs/offline-check.md and docs/deploy.md list (tests/docs.rs compares).
pub const ROLE_ACTIONS: &[&[&str]] = &[
    LOG_ACTIONS,
    FUNCTION_DYNAMODB_ACTIONS,
    FUNCTION_SELF_ACTIONS,
    CLAIMS_ACTIONS,
    DEAD_LETTER_ACTIONS,
    MANAGEMENT_ACTIONS,
];
const ROLE: &str = "aws:iam/role:Role";
const ROLE_POLICY: &str = "aws:iam/rolePolicy:RolePolicy";
const LOG_GROUP: &str = "aws:cloudwatch/logGroup:LogGroup";
const LOG_POLICY: &str = "aws:cloudwatch/logResourcePolicy:LogResourcePolicy";
const WAF_LOGGING: &str = "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration";
pub(crate) const QUEUE: &str = "aws:sqs/queue:Queue";
/// Types whose name AWS keeps unique: replaced under a fixed name, the new
/// one could not be created while the old one exists.
const UNIQUELY_NAMED: &[&str] = &[TABLE, FUNCTION, LOG_GROUP, ROLE, WEB_ACL];

impl Checker<'_> {
    /// Each function's role: exactly the listed actions on exactly its
    /// resources. The handler's: [`ROLE_ACTIONS`]; the sign-in authorizer's:
    /// [`AUTHORIZER_ROLE_ACTIONS`] (its logs, and no DynamoDB or anything else).
    pub(super) fn role_grants(&mut self) {
        let program = self.program;
        let config = self.config.clone();
        let eval = Evaluator::new(program, &config);
        let resources = program.resources();
        if let Ok(handler) = topology::handler(&resources) {
            let expected = self.expected_grants(&eval, &resources, &handler);
            self.grants_of(&eval, &resources, &handler, &expected, "the function");
        }
        if let Some(authorizer) = topology::authorizer_function(&resources) {
            let mut expected = BTreeSet::new();
            if let Some(group) = self.log_group_of(&resources, &authorizer) {
                expect(&mut expected, LOG_ACTIONS, format!("${{{group}.arn}}:*"));
            }
            self.grants_of(&eval, &resources, &authorizer, &expected, "the authorizer");
        }
    }

    /// `function`'s role grants exactly `expected` through its RolePolicies,
    /// and has no other policy; `who` names it in findings.
    fn grants_of(
        &mut self,
        eval: &Evaluator<'_>,
        resources: &[Resource<'_>],
        function: &Resource<'_>,
        expected: &BTreeSet<(String, String)>,
        who: &str,
    ) {
        let fat = format!("resources.{}.properties", function.name);
        let Some(role) = resources.iter().find(|r| {
            r.token == ROLE && topology::refers_to(prop(function, "role"), r.name, "arn")
        }) else {
            self.report(
                format!("{fat}.role"),
                "must be ${<role>.arn} of this program's role",
            );
            return;
        };
        let shared = resources.iter().find(|f| {
            f.token == FUNCTION
                && f.name != function.name
                && topology::refers_to(prop(f, "role"), role.name, "arn")
        });
        if let Some(other) = shared {
            self.report(
                format!("{fat}.role"),
                format!(
                    "{} shares its role with {}: each function has a role of its own",
                    function.name, other.name
                ),
            );
        }
        for attached in ["managedPolicyArns", "inlinePolicies"] {
            if prop(role, attached).is_some() {
                self.report(
                    format!("resources.{}.properties.{attached}", role.name),
                    "the role's only grants are its RolePolicy, checked action by action",
                );
            }
        }
        let policies: Vec<&Resource<'_>> = resources
            .iter()
            .filter(|p| {
                p.token == ROLE_POLICY
                    && ["id", "name"]
                        .iter()
                        .any(|f| topology::refers_to(prop(p, "role"), role.name, f))
            })
            .collect();
        let granted = self.granted(eval, &policies);
        let at = policies
            .first()
            .map(|p| format!("resources.{}.properties.policy", p.name))
            .unwrap_or_else(|| format!("resources.{}", role.name));
        for (action, resource) in granted.difference(expected) {
            self.report(
                &at,
                format!("grants {action} on {resource}, which {who} does not need"),
            );
        }
        for (action, resource) in expected.difference(&granted) {
            self.report(&at, format!("must grant {action} on {resource}"));
        }
    }

    /// The log group `function` logs to (`loggingConfig.logGroup:
    /// ${<group>.name}`); none is reported.
    fn log_group_of(
        &mut self,
        resources: &[Resource<'_>],
        function: &Resource<'_>,
    ) -> Option<String> {
        let group = resources.iter().find(|g| {
            g.token == LOG_GROUP
                && topology::refers_to(
                    prop(function, "loggingConfig").and_then(|l| l.get("logGroup")),
                    g.name,
                    "name",
                )
        });
        if group.is_none() {
            self.report(
                format!(
                    "resources.{}.properties.loggingConfig.logGroup",
                    function.name
                ),
                "must be ${<log group>.name} of this program",
            );
        }
        group.map(|g| g.name.to_string())
    }

    /// What the function's code calls, on which resource: its log group,
    /// its table, itself (the fan-out's hand-over) and @connections of this
    /// API's stage. A function without this program's log group is reported.
    fn expected_grants(
        &mut self,
        eval: &Evaluator<'_>,
        resources: &[Resource<'_>],
        function: &Resource<'_>,
    ) -> BTreeSet<(String, String)> {
        let first = |token: &str| resources.iter().find(|r| r.token == token);
        let mut expected: BTreeSet<(String, String)> = BTreeSet::new();
        if let Some(group) = self.log_group_of(resources, function) {
            expect(&mut expected, LOG_ACTIONS, format!("${{{group}.arn}}:*"));
        }
        let variables = prop(function, "environment").and_then(|e| e.get("variables"));
        for (variable, actions) in [
            ("CONNECTIONS_TABLE", FUNCTION_DYNAMODB_ACTIONS),
            ("CLAIMS_TABLE", CLAIMS_ACTIONS),
        ] {
            if let Some(t) = resources.iter().find(|t| {
                t.token == TABLE
                    && topology::refers_to(variables.and_then(|v| v.get(variable)), t.name, "name")
            }) {
                expect(&mut expected, actions, format!("${{{}.arn}}", t.name));
            }
        }
        for config in resources.iter().filter(|c| {
            c.token == topology::EVENT_INVOKE_CONFIG
                && topology::refers_to(prop(c, "functionName"), function.name, "name")
        }) {
            let destination = prop(config, "destinationConfig")
                .and_then(|d| d.get("onFailure"))
                .and_then(|f| f.get("destination"));
            if let Some(queue) = resources
                .iter()
                .find(|q| q.token == QUEUE && topology::refers_to(destination, q.name, "arn"))
            {
                expect(
                    &mut expected,
                    DEAD_LETTER_ACTIONS,
                    format!("${{{}.arn}}", queue.name),
                );
            }
        }
        expect(
            &mut expected,
            FUNCTION_SELF_ACTIONS,
            format!("${{{}.arn}}", function.name),
        );
        if let (Some(api), Some(stage)) = (first(API), first(STAGE)) {
            let name = known(eval, prop(stage, "name"));
            let name = name.as_ref().and_then(Value::as_str).unwrap_or("<stage>");
            expect(
                &mut expected,
                MANAGEMENT_ACTIONS,
                format!("${{{}.executionArn}}/{name}/POST/@connections/*", api.name),
            );
        }

        expected
    }

    /// Every (action, resource) the role's policies allow; a policy that is
    /// not a policy document is reported.
    fn granted(
        &mut self,
        eval: &Evaluator<'_>,
        policies: &[&Resource<'_>],
    ) -> BTreeSet<(String, String)> {
        let mut granted: BTreeSet<(String, String)> = BTreeSet::new();
        for policy in policies {
            let at = format!("resources.{}.properties.policy", policy.name);
            let Some(statements) = statements(prop(policy, "policy")) else {
                self.report(at, "must be fn::toJSON of a policy document with Statement");
                continue;
            };
            for statement in statements {
                if statement.get("Effect").and_then(Value::as_str) != Some("Allow") {
                    continue;
                }
                for action in strings(statement.get("Action")) {
                    for resource in statement
                        .get("Resource")
                        .map(|r| texts(eval, r))
                        .unwrap_or_default()
                    {
                        granted.insert((action.clone(), resource));
                    }
                }
            }
        }
        granted
    }

    /// WAF's log delivery goes through a policy this program manages.
    pub(super) fn waf_log_policy(&mut self) {
        let program = self.program;
        let config = self.config.clone();
        let eval = Evaluator::new(program, &config);
        let resources = program.resources();
        for logging in resources.iter().filter(|r| r.token == WAF_LOGGING) {
            let destination = prop(logging, "logDestinationConfigs")
                .and_then(Value::as_sequence)
                .and_then(|d| d.first());
            let Some(group) = resources
                .iter()
                .find(|g| g.token == LOG_GROUP && topology::refers_to(destination, g.name, "arn"))
            else {
                continue; // reported by the WAF requirements
            };
            let group_streams = format!("${{{}.arn}}:*", group.name);
            let policy = resources.iter().find(|p| {
                p.token == LOG_POLICY
                    && statements(prop(p, "policyDocument")).is_some_and(|s| {
                        s.iter().any(|st| {
                            st.get("Resource")
                                .is_some_and(|r| texts(&eval, r).contains(&group_streams))
                        })
                    })
            });
            let Some(policy) = policy else {
                self.report(
                    format!("resources.{}", logging.name),
                    format!("no {LOG_POLICY} grants WAF's log delivery {group_streams}: WAF would add it to the account's shared AWSWAF-LOGS policy, which destroy leaves behind"),
                );
                continue;
            };
            let at = format!("resources.{}.properties", policy.name);
            if known(&eval, prop(policy, "region"))
                .as_ref()
                .and_then(Value::as_str)
                != Some("us-east-1")
            {
                self.report(
                    format!("{at}.region"),
                    "must be us-east-1, with the web ACL's log group",
                );
            }
            for (i, statement) in statements(prop(policy, "policyDocument"))
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let st = format!("{at}.policyDocument.fn::toJSON.Statement[{i}]");
                let service = statement
                    .get("Principal")
                    .and_then(|p| p.get("Service"))
                    .and_then(Value::as_str);
                if service != Some("delivery.logs.amazonaws.com") {
                    self.report(
                        format!("{st}.Principal"),
                        "must be the service delivery.logs.amazonaws.com",
                    );
                }
                let actions: BTreeSet<String> =
                    strings(statement.get("Action")).into_iter().collect();
                if actions != LOG_ACTIONS.iter().map(|a| a.to_string()).collect() {
                    self.report(
                        format!("{st}.Action"),
                        format!("must be exactly {}", LOG_ACTIONS.join(", ")),
                    );
                }
                let resources_ok = statement
                    .get("Resource")
                    .is_some_and(|r| texts(&eval, r).iter().all(|t| *t == group_streams));
                if !resources_ok {
                    self.report(
                        format!("{st}.Resource"),
                        format!("must be {group_streams}: this stack's log group only"),
                    );
                }
            }
            let waits = logging
                .options
                .and_then(|o| o.get("dependsOn"))
                .and_then(Value::as_sequence)
                .is_some_and(|d| {
                    d.iter()
                        .any(|v| v.as_str() == Some(format!("${{{}}}", policy.name).as_str()))
                });
            if !waits {
                self.report(
                    format!("resources.{}.options.dependsOn", logging.name),
                    format!(
                        "must include ${{{}}}: WAF adds its own policy when it finds no grant",
                        policy.name
                    ),
                );
            }
        }
    }

    /// A fixed name and create-before-delete cannot both hold.
    pub(super) fn replacements(&mut self) {
        let program = self.program;
        for resource in program
            .resources()
            .iter()
            .filter(|r| UNIQUELY_NAMED.contains(&r.token.as_str()))
        {
            let delete_first = resource.options.and_then(|o| o.get("deleteBeforeReplace"))
                == Some(&Value::Bool(true));
            if resource.token == WEB_ACL {
                if delete_first || prop(resource, "name").is_some() {
                    self.report(
                        format!("resources.{}.properties.namePrefix", resource.name),
                        "the web ACL needs a namePrefix and no deleteBeforeReplace: an ACL still associated with the distribution cannot be deleted first",
                    );
                }
            } else if prop(resource, "name").is_some() && !delete_first {
                self.report(
                    format!("resources.{}.options.deleteBeforeReplace", resource.name),
                    "must be true with a fixed name (or name it with namePrefix): the replacement cannot be created while the old one holds the name",
                );
            }
        }
    }
}

fn expect(set: &mut BTreeSet<(String, String)>, actions: &[&str], resource: String) {
    for action in actions {
        set.insert((action.to_string(), resource.clone()));
    }
}

/// The `Statement` list of an `fn::toJSON` policy document.
fn statements(document: Option<&Value>) -> Option<Vec<Value>> {
    let (name, body) = builtin(document?.as_mapping()?)?;
    if !name.eq_ignore_ascii_case("fn::toJSON") {
        return None;
    }
    match body.get("Statement")? {
        Value::Sequence(items) => Some(items.clone()),
        single @ Value::Mapping(_) => Some(vec![single.clone()]),
        _ => None,
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// Resource ARNs as text, config substituted and outputs kept as `${resource.property}`.
fn texts(eval: &Evaluator<'_>, value: &Value) -> Vec<String> {
    let items = match value {
        Value::Sequence(items) => items.clone(),
        other => vec![other.clone()],
    };
    items
        .iter()
        .map(|item| match eval.eval(item) {
            Evaluated::Known(Value::String(s)) => s,
            Evaluated::Template(parts) => render(&Template(parts)),
            _ => item.as_str().unwrap_or("?").to_string(),
        })
        .collect()
}

fn render(template: &Template) -> String {
    template
        .0
        .iter()
        .map(|part| match part {
            Part::Text(text) => text.clone(),
            Part::Ref {
                resource, property, ..
            } => format!("${{{resource}.{property}}}"),
        })
        .collect()
}
