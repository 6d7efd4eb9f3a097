//! Which resources of the program the local stack plays, and which it does
//! not (alarms, dashboard, topics, IAM, log groups...), so the local stack
//! can say so instead of letting a reader assume it plays everything.

use std::collections::BTreeMap;

use crate::program::Program;
use crate::topology::{
    API, API_KEY, DISTRIBUTION, EVENT_INVOKE_CONFIG, FUNCTION, INTEGRATION, ROUTE, STAGE, TABLE,
    WEB_ACL,
};
use crate::{LocalPart, ProgramResource, Topology};

const DEPLOYMENT: &str = "aws:apigatewayv2/deployment:Deployment";

/// The part of the local stack that plays a resource type, if any.
fn played_by(token: &str) -> Option<LocalPart> {
    match token {
        DISTRIBUTION | WEB_ACL => Some(LocalPart::Edge),
        API | ROUTE | STAGE | INTEGRATION | DEPLOYMENT | API_KEY => Some(LocalPart::ApiLayer),
        FUNCTION | EVENT_INVOKE_CONFIG => Some(LocalPart::Lambda),
        TABLE => Some(LocalPart::DynamoDb),
        _ => None,
    }
}

/// Every resource of the program, in program order, with who plays it.
/// The sign-in authorizer's function is not played (yet): only the handler
/// runs locally.
pub(crate) fn resources(program: &Program) -> Vec<ProgramResource> {
    let resources = program.resources();
    let authorizer = crate::topology::authorizer_function(&resources).map(|f| f.name);
    resources
        .iter()
        .map(|r| ProgramResource {
            name: r.name.to_string(),
            resource_type: r.token.clone(),
            played_by: if Some(r.name) == authorizer {
                None
            } else {
                played_by(&r.token)
            },
        })
        .collect()
}

impl LocalPart {
    /// What the part plays, for people.
    pub fn label(self) -> &'static str {
        match self {
            LocalPart::Edge => "CloudFront + WAF (edge)",
            LocalPart::ApiLayer => "API Gateway WebSocket API (API layer)",
            LocalPart::Lambda => "Lambda",
            LocalPart::DynamoDb => "DynamoDB",
        }
    }
}

impl ProgramResource {
    /// The type's last segment: `MetricAlarm` for `aws:cloudwatch/metricAlarm:MetricAlarm`.
    pub fn short_type(&self) -> &str {
        self.resource_type
            .rsplit(':')
            .next()
            .unwrap_or(&self.resource_type)
    }
}

impl Topology {
    /// `(type, name)` of each resource the local stack plays, with the part playing it.
    pub fn played(&self) -> Vec<(&str, &str, LocalPart)> {
        self.resources
            .iter()
            .filter_map(|r| {
                r.played_by
                    .map(|part| (r.resource_type.as_str(), r.name.as_str(), part))
            })
            .collect()
    }

    /// `(type, name)` of each resource the local stack does not play: it
    /// ignores them (no warning), and only the deployed stack has them.
    pub fn not_played(&self) -> Vec<(&str, &str)> {
        self.resources
            .iter()
            .filter(|r| r.played_by.is_none())
            .map(|r| (r.resource_type.as_str(), r.name.as_str()))
            .collect()
    }

    /// One line for a banner, e.g. `plays 15 of 33 resources (CloudFront + WAF
    /// (edge), ...); not played: MetricAlarm ×7, Topic ×2, Dashboard, ...`.
    pub fn coverage_summary(&self) -> String {
        let mut parts: Vec<LocalPart> = self.resources.iter().filter_map(|r| r.played_by).collect();
        parts.sort();
        parts.dedup();
        let played = self.resources.len() - self.not_played().len();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        let mut order: Vec<&str> = Vec::new();
        for r in self.resources.iter().filter(|r| r.played_by.is_none()) {
            let short = r.short_type();
            let count = counts.entry(short).or_insert(0);
            if *count == 0 {
                order.push(short);
            }
            *count += 1;
        }
        let not_played: Vec<String> = order
            .iter()
            .map(|short| match counts[short] {
                1 => (*short).to_string(),
                n => format!("{short} ×{n}"),
            })
            .collect();
        let labels: Vec<&str> = parts.iter().map(|p| p.label()).collect();
        let mut line = format!(
            "plays {played} of {} resources ({})",
            self.resources.len(),
            labels.join(", ")
        );
        if !not_played.is_empty() {
            line.push_str(&format!("; not played: {}", not_played.join(", ")));
        }
        line
    }
}
