//! The checker's report: one outcome per check, as lines or one JSON
//! document.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// Measured figures, in milliseconds.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub figures: BTreeMap<&'static str, f64>,
}

impl Outcome {
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Outcome {
            name,
            status: Status::Pass,
            detail: detail.into(),
            figures: BTreeMap::new(),
        }
    }

    pub fn fail(name: &'static str, detail: impl Into<String>) -> Self {
        Outcome {
            name,
            status: Status::Fail,
            detail: detail.into(),
            figures: BTreeMap::new(),
        }
    }

    pub fn skip(name: &'static str, detail: impl Into<String>) -> Self {
        Outcome {
            name,
            status: Status::Skip,
            detail: detail.into(),
            figures: BTreeMap::new(),
        }
    }

    pub(super) fn figure(mut self, name: &'static str, value: Duration) -> Self {
        // Microsecond resolution is plenty, and keeps the JSON readable.
        self.figures
            .insert(name, (value.as_secs_f64() * 1e6).round() / 1e3);
        self
    }

    /// `PASS  ping                pong in 1.2 ms`
    pub fn line(&self) -> String {
        let status = match self.status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        };
        format!("{status}  {:<20} {}", self.name, self.detail)
    }
}

/// Every check's outcome, for one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub distribution: String,
    pub direct: String,
    pub checks: Vec<Outcome>,
}

impl Report {
    pub(super) fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// True when no check failed and none was skipped.
    pub fn ok(&self) -> bool {
        !self.checks.is_empty() && self.count(Status::Pass) == self.checks.len()
    }

    pub fn summary(&self) -> String {
        let (passed, failed, skipped) = (
            self.count(Status::Pass),
            self.count(Status::Fail),
            self.count(Status::Skip),
        );
        let verdict = if self.ok() {
            "the API works through the distribution and refuses clients that skip it"
        } else if self
            .checks
            .iter()
            .any(|c| c.name.starts_with("direct-") && c.status != Status::Pass)
        {
            "NOT PROVEN: the direct endpoint did not refuse clients without the key as it must"
        } else {
            "NOT PROVEN: see the failed checks above"
        };
        format!(
            "{} checks: {passed} passed, {failed} failed, {skipped} skipped; {verdict}",
            self.checks.len()
        )
    }

    /// The report as one JSON document, verdict first.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Document<'a> {
            ok: bool,
            passed: usize,
            failed: usize,
            skipped: usize,
            distribution: &'a str,
            direct: &'a str,
            checks: &'a [Outcome],
        }
        let document = Document {
            ok: self.ok(),
            passed: self.count(Status::Pass),
            failed: self.count(Status::Fail),
            skipped: self.count(Status::Skip),
            distribution: &self.distribution,
            direct: &self.direct,
            checks: &self.checks,
        };
        // Plain data (strings, numbers, a map with string keys) always serialises.
        serde_json::to_string_pretty(&document).unwrap_or_else(|_| Value::Null.to_string())
    }
}

pub(super) fn header_line(distribution: &str, direct: &str) -> String {
    format!("devstack check: distribution {distribution}, direct endpoint {direct}")
}

/// Milliseconds with one decimal: `12.3 ms`.
pub(super) fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}
