//! Values the provider refuses: the provider facts' enums, lengths, ranges
//! and patterns (`crate::facts`), applied to every value the program states
//! (literally or through config), worded as pulumi-aws's validators word it.

use super::*;
use crate::eval::Evaluator;
use crate::facts;

use invariants::known;

impl Checker<'_> {
    pub(super) fn provider_values(&mut self) {
        let facts = match facts::facts() {
            Ok(facts) => facts,
            Err(message) => {
                self.report("facts", message);
                return;
            }
        };
        let program = self.program;
        let config = self.config.clone();
        let eval = Evaluator::new(program, &config);
        for resource in program.resources() {
            let (Some(rules), Some(properties)) =
                (facts.resources.get(&resource.token), resource.properties)
            else {
                continue;
            };
            let base = format!("resources.{}.properties", resource.name);
            for (path, rule) in &rules.properties {
                let segments: Vec<&str> = path.split('.').collect();
                for (at, value) in values_at(&Value::Mapping(properties.clone()), &segments, "") {
                    let Some(text) = known(&eval, Some(&value)).and_then(|v| scalar(&v)) else {
                        continue;
                    };
                    if let Some(reason) = rule.refuse(&at, &text) {
                        self.report(format!("{base}.{at}"), reason);
                    }
                }
            }
        }
    }
}

/// The values at a facts path (`rules[].name`) with their concrete paths
/// (`rules[0].name`).
fn values_at(value: &Value, segments: &[&str], prefix: &str) -> Vec<(String, Value)> {
    let Some((first, rest)) = segments.split_first() else {
        return vec![(prefix.to_string(), value.clone())];
    };
    let (key, many) = match first.strip_suffix("[]") {
        Some(key) => (key, true),
        None => (*first, false),
    };
    let Some(child) = value.as_mapping().and_then(|m| m.get(key)) else {
        return Vec::new();
    };
    let path = if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    };
    if !many {
        return values_at(child, rest, &path);
    }
    child
        .as_sequence()
        .into_iter()
        .flatten()
        .enumerate()
        .flat_map(|(i, item)| values_at(item, rest, &format!("{path}[{i}]")))
        .collect()
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
