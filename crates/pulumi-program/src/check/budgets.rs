//! Settings a broadcast cannot work with are refused before AWS (or the
//! function at its start) sees them: a timeout too short to post anything,
//! fan-out limits the function would refuse to start with.
//!
//! The function fits its slice to its time (`Limits::schedule` in
//! `functions/websocket-handler/src/fanout/limits.rs`): 1.25 s are kept for
//! the sender's reply and the response, and at least a third of the rest is
//! for starting posts. Below [`MIN_TIMEOUT_SECS`] that third is too short to
//! post to anyone before a hand-off.

use serde_yaml_ng::Value;

use super::Checker;
use super::invariants::{Scope, known, prop};

/// The shortest function timeout a broadcast works with: Lambda's default.
pub const MIN_TIMEOUT_SECS: u64 = 3;

impl Checker<'_> {
    /// The function's timeout and fan-out settings.
    pub(super) fn broadcast_budgets(&mut self) {
        let config = self.config.clone();
        let scope = Scope::new(self.program, &config);
        let Some(function) = scope.handler() else {
            return;
        };
        let at = format!("resources.{}.properties", function.name);
        let named = |raw: Option<&Value>| match raw.and_then(Value::as_str) {
            Some(text) if text.starts_with("${") && text.ends_with('}') => {
                format!(" (config {})", &text[2..text.len() - 1])
            }
            _ => String::new(),
        };
        let timeout = prop(function, "timeout");
        if let Some(secs) = known(&scope.eval, timeout).and_then(|v| v.as_u64())
            && secs < MIN_TIMEOUT_SECS
        {
            self.report(
                format!("{at}.timeout"),
                format!(
                    "is {secs} s{}: a broadcast needs at least {MIN_TIMEOUT_SECS} s (1.25 s are kept for the reply and the response, a third of the rest at least for posting)",
                    named(timeout)
                ),
            );
        }
        let variables = prop(function, "environment").and_then(|e| e.get("variables"));
        for (variable, min, expected) in [
            ("FANOUT_IN_FLIGHT", 1, "a whole number of at least 1"),
            ("FANOUT_PER_INVOCATION", 0, "a whole number (0: no cap)"),
        ] {
            let Some(raw) = variables.and_then(|v| v.get(variable)) else {
                continue;
            };
            let Some(value) = known(&scope.eval, Some(raw)) else {
                continue;
            };
            let text = match &value {
                Value::String(s) => s.trim().to_string(),
                Value::Number(n) => n.to_string(),
                other => format!("{other:?}"),
            };
            if !text.parse::<u64>().is_ok_and(|n| n >= min) {
                self.report(
                    format!("{at}.environment.variables.{variable}"),
                    format!("is {text:?}: it must be {expected}, or the function refuses to start"),
                );
            }
        }
    }
}
