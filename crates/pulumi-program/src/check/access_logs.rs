//! The stage's access log (issue 23's review): without it a refused handshake
//! (403 without the key, 401/403 from sign-in, 429 from the usage plan) is
//! visible only as a count. The stage logs every request as one JSON line to
//! a log group of this program with a retention, with the fields an operator
//! needs to follow one connection: who (source IP), which route and
//! connection, what was answered, and why it failed (API Gateway's error, the
//! authorizer's, the integration's).

use serde_yaml_ng::Value;

use super::Checker;
use super::invariants::{Scope, prop};
use crate::eval::builtin;
use crate::topology::{self, API, STAGE};

const LOG_GROUP: &str = "aws:cloudwatch/logGroup:LogGroup";

/// The `$context` variables every line must carry (API Gateway Developer
/// Guide, "Customize WebSocket API access logs": the variables of `$context`).
pub const ACCESS_LOG_FIELDS: &[&str] = &[
    "$context.requestId",
    "$context.identity.sourceIp",
    "$context.routeKey",
    "$context.status",
    "$context.connectionId",
    "$context.error.message",
    "$context.authorizer.error",
];

impl Checker<'_> {
    /// The API's stage logs access to this program's log group, as JSON
    /// with [`ACCESS_LOG_FIELDS`].
    pub(super) fn stage_access_logs(&mut self) {
        let config = self.config.clone();
        let scope = Scope::new(self.program, &config);
        let Some(api) = scope.first(API) else {
            return;
        };
        for stage in scope
            .of(STAGE)
            .into_iter()
            .filter(|s| topology::refers_to(prop(s, "apiId"), api.name, "id"))
        {
            let at = format!("resources.{}.properties.accessLogSettings", stage.name);
            let Some(settings) = prop(stage, "accessLogSettings") else {
                self.report(
                    at,
                    "the stage has no access log: a refused handshake (403, 401, 429) would be only a count",
                );
                continue;
            };
            let group = scope
                .of(LOG_GROUP)
                .into_iter()
                .find(|g| topology::refers_to(settings.get("destinationArn"), g.name, "arn"));
            match group {
                None => self.report(
                    format!("{at}.destinationArn"),
                    format!("must be ${{<log group>.arn}} of a {LOG_GROUP} of this program"),
                ),
                Some(group) if prop(group, "retentionInDays").is_none() => self.report(
                    format!("resources.{}.properties.retentionInDays", group.name),
                    "logs need a retention",
                ),
                Some(_) => {}
            }
            let fields = settings
                .get("format")
                .and_then(Value::as_mapping)
                .and_then(builtin)
                .filter(|(name, _)| name.eq_ignore_ascii_case("fn::toJSON"))
                .and_then(|(_, body)| body.as_mapping());
            let Some(fields) = fields else {
                self.report(
                    format!("{at}.format"),
                    "must be fn::toJSON of a mapping of $context variables: one JSON line per request",
                );
                continue;
            };
            let logged: Vec<&str> = fields.values().filter_map(Value::as_str).collect();
            for field in ACCESS_LOG_FIELDS {
                if !logged.contains(field) {
                    self.report(format!("{at}.format"), format!("must log {field}"));
                }
            }
        }
    }
}
