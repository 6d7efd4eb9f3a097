//! The parity table: one row per behaviour, as Markdown (what docs/verify.md
//! shows) or one JSON document.

use super::reference::Reference;
use super::*;

/// One behaviour and what this run found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub behaviour: &'static str,
    #[serde(serialize_with = "reference_url")]
    pub reference: Reference,
    /// `name` is the row's id; `Skip` is "not run", with the reason.
    pub outcome: Outcome,
}

fn reference_url<S: serde::Serializer>(reference: &Reference, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(reference.1)
}

impl Row {
    pub fn new(behaviour: &'static str, reference: Reference, outcome: Outcome) -> Self {
        Row {
            behaviour,
            reference,
            outcome,
        }
    }

    fn cell(&self) -> String {
        let detail = self.outcome.detail.replace('|', "/");
        match self.outcome.status {
            Status::Pass => format!("PASS: {detail}"),
            Status::Fail => format!("FAIL: {detail}"),
            Status::Skip => format!("— ({detail})"),
        }
    }

    /// `| behaviour | [doc](url) | local | deployed |`
    pub fn line(&self, local: bool) -> String {
        let (local_cell, deployed_cell) = if local {
            (self.cell(), "—".to_string())
        } else {
            ("—".to_string(), self.cell())
        };
        format!(
            "| {} | [{}]({}) | {local_cell} | {deployed_cell} |",
            self.behaviour, self.reference.0, self.reference.1
        )
    }
}

/// Every row of one run, against the local stack or a deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub local: bool,
    pub rows: Vec<Row>,
}

impl Table {
    pub const HEADER: &str =
        "| Behaviour | AWS documentation | Local | Deployed |\n|---|---|---|---|";

    fn count(&self, status: Status) -> usize {
        self.rows
            .iter()
            .filter(|r| r.outcome.status == status)
            .count()
    }

    /// No row failed and at least one passed (rows not run are allowed).
    pub fn ok(&self) -> bool {
        self.count(Status::Fail) == 0 && self.count(Status::Pass) > 0
    }

    pub fn summary(&self) -> String {
        let failed: Vec<&str> = self
            .rows
            .iter()
            .filter(|r| r.outcome.status == Status::Fail)
            .map(|r| r.outcome.name)
            .collect();
        let verdict = if failed.is_empty() {
            "every row run agrees with AWS's documentation".to_string()
        } else {
            format!("NOT CONFORMING: {}", failed.join(", "))
        };
        format!(
            "{} behaviours: {} passed, {} failed, {} not run; {verdict}",
            self.rows.len(),
            self.count(Status::Pass),
            self.count(Status::Fail),
            self.count(Status::Skip)
        )
    }

    pub fn to_json(&self) -> String {
        let document = json!({
            "ok": self.ok(),
            "target": if self.local { "local" } else { "deployed" },
            "rows": self.rows,
        });
        serde_json::to_string_pretty(&document).unwrap_or_else(|_| Value::Null.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::deploy_check::conformance::reference::QUOTAS;

    fn row(outcome: Outcome) -> Row {
        Row::new("A frame over 32 KB closes with 1009", QUOTAS, outcome)
    }

    #[test]
    fn a_row_fills_the_column_of_the_side_it_ran_against() {
        let passed = row(Outcome::pass("frame-limit", "closed with 1009"));
        assert_eq!(
            passed.line(true),
            format!(
                "| A frame over 32 KB closes with 1009 | [WebSocket quotas]({}) | PASS: closed with 1009 | — |",
                QUOTAS.1
            )
        );
        assert!(
            passed
                .line(false)
                .ends_with("| — | PASS: closed with 1009 |")
        );
        // A detail cannot break the table.
        let failed = row(Outcome::fail("frame-limit", "closed with 1000 | not 1009"));
        assert!(
            failed
                .line(true)
                .contains("| FAIL: closed with 1000 / not 1009 | — |")
        );
        let skipped = row(Outcome::skip("frame-limit", "needs --slow"));
        assert!(skipped.line(false).ends_with("| — | — (needs --slow) |"));
    }

    #[test]
    fn one_failed_row_fails_the_table_and_rows_not_run_do_not() {
        let mut table = Table {
            local: false,
            rows: vec![
                row(Outcome::pass("frame-limit", "closed with 1009")),
                row(Outcome::skip("idle-timeout", "--slow")),
            ],
        };
        assert!(table.ok(), "{}", table.summary());
        assert!(
            table
                .summary()
                .starts_with("2 behaviours: 1 passed, 0 failed, 1 not run")
        );
        table
            .rows
            .push(row(Outcome::fail("message-limit", "closed with 1000")));
        assert!(!table.ok());
        assert!(
            table.summary().ends_with("NOT CONFORMING: message-limit"),
            "{}",
            table.summary()
        );
        // Nothing run proves nothing.
        let empty = Table {
            local: true,
            rows: vec![row(Outcome::skip("idle-timeout", "--slow"))],
        };
        assert!(!empty.ok());
    }

    #[test]
    fn the_json_document_names_the_side_and_each_rows_reference() {
        let table = Table {
            local: true,
            rows: vec![row(Outcome::pass("frame-limit", "closed with 1009"))],
        };
        let document: Value = serde_json::from_str(&table.to_json()).expect("JSON");
        assert_eq!(document["ok"], true);
        assert_eq!(document["target"], "local");
        assert_eq!(document["rows"][0]["reference"], QUOTAS.1);
        assert_eq!(document["rows"][0]["outcome"]["status"], "pass");
    }
}
