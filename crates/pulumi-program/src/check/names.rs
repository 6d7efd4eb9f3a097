//! Names AWS accepts (issue 23's review): every name the program builds from
//! the project and stack names must pass the owning service's rules, or the
//! stack fails half-created in AWS. The provider facts (`facts/`) hold the
//! rules the Terraform provider validates at plan time (the role's and the web
//! ACL's `namePrefix`, ...); these are the rules only the service itself
//! enforces, from each API's reference (`CreateFunction` `FunctionName`,
//! `CreateQueue` `QueueName`, ...), checked on the evaluated names.

use super::Checker;
use super::invariants::{Scope, known_str, prop};

/// One service's rule for a name: which property of which type, its length
/// bounds in characters, the characters it allows, and the rule in words.
struct Rule {
    token: &'static str,
    /// A top-level property, or `a.b` for a nested one.
    property: &'static str,
    min: usize,
    max: usize,
    allowed: fn(char) -> bool,
    what: &'static str,
}

fn word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn table(c: char) -> bool {
    word(c) || c == '.'
}

fn log_group(c: char) -> bool {
    table(c) || c == '/' || c == '#'
}

fn any(_: char) -> bool {
    true
}

const RULES: &[Rule] = &[
    Rule {
        token: "aws:lambda/function:Function",
        property: "name",
        min: 1,
        max: 64,
        allowed: word,
        what: "a Lambda function name (CreateFunction): 1–64 of A–Z a–z 0–9 - _",
    },
    Rule {
        token: "aws:dynamodb/table:Table",
        property: "name",
        min: 3,
        max: 255,
        allowed: table,
        what: "a DynamoDB table name (CreateTable): 3–255 of A–Z a–z 0–9 _ - .",
    },
    Rule {
        token: "aws:sqs/queue:Queue",
        property: "name",
        min: 1,
        max: 80,
        allowed: word,
        what: "an SQS queue name (CreateQueue): 1–80 of A–Z a–z 0–9 - _",
    },
    Rule {
        token: "aws:sns/topic:Topic",
        property: "name",
        min: 1,
        max: 256,
        allowed: word,
        what: "an SNS topic name (CreateTopic): 1–256 of A–Z a–z 0–9 - _",
    },
    Rule {
        token: "aws:cloudwatch/dashboard:Dashboard",
        property: "dashboardName",
        min: 1,
        max: 255,
        allowed: word,
        what: "a CloudWatch dashboard name (PutDashboard): 1–255 of A–Z a–z 0–9 - _",
    },
    Rule {
        token: "aws:cloudwatch/logGroup:LogGroup",
        property: "name",
        min: 1,
        max: 512,
        allowed: log_group,
        what: "a CloudWatch Logs group name (CreateLogGroup): 1–512 of A–Z a–z 0–9 _ - / . #",
    },
    Rule {
        token: "aws:cloudwatch/metricAlarm:MetricAlarm",
        property: "name",
        min: 1,
        max: 255,
        allowed: any,
        what: "a CloudWatch alarm name (PutMetricAlarm): 1–255 characters",
    },
    Rule {
        token: "aws:apigatewayv2/authorizer:Authorizer",
        property: "name",
        min: 1,
        max: 128,
        allowed: any,
        what: "an API Gateway authorizer name (CreateAuthorizer): 1–128 characters",
    },
    Rule {
        token: "aws:cloudfront/distribution:Distribution",
        property: "comment",
        min: 0,
        max: 128,
        allowed: any,
        what: "a CloudFront distribution comment (DistributionConfig): at most 128 characters",
    },
];

impl Checker<'_> {
    /// Each [`RULES`] name, as this stack evaluates it.
    pub(super) fn names_aws_accepts(&mut self) {
        let config = self.config.clone();
        let scope = Scope::new(self.program, &config);
        let (project, stack) = (&self.program.project, &self.program.stack);
        for rule in RULES {
            for resource in scope.of(rule.token) {
                let mut path = rule.property.split('.');
                let first = path.next().unwrap_or_default();
                let value = path.fold(prop(resource, first), |v, key| v.and_then(|v| v.get(key)));
                let Some(name) = known_str(&scope.eval, value) else {
                    continue;
                };
                let length = name.chars().count();
                let bad: Vec<char> = name.chars().filter(|c| !(rule.allowed)(*c)).collect();
                if length < rule.min || length > rule.max || !bad.is_empty() {
                    let why = if bad.is_empty() {
                        format!("{length} characters")
                    } else {
                        format!("it has {:?}", bad.iter().collect::<String>())
                    };
                    self.report(
                        format!("resources.{}.properties.{}", resource.name, rule.property),
                        format!(
                            "`{name}` is not {} ({why}); project `{project}` and stack `{stack}` make it",
                            rule.what
                        ),
                    );
                }
            }
        }
    }
}
