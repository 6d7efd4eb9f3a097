//! Recipients a broadcast did not reach, counted where an operator sees
//! them: CloudWatch metrics in embedded metric format (EMF).
//!
//! A lost recipient is never only a log line. Every invocation that serves
//! part of a broadcast tallies its [`Losses`] by reason and hands them to a
//! [`LossReport`]; the deployed one ([`EmfReport`]) writes one EMF line per
//! reason to stdout, which CloudWatch Logs turns into the metrics
//! `protocol::metrics` names and `Pulumi.yaml` alarms on. The lines carry
//! `"level":"ERROR"`, so Lambda's log-level filtering keeps them at every
//! application log level but FATAL.

use std::collections::BTreeMap;
use std::io::Write;

use protocol::metrics::{
    BROADCASTS_CUT_SHORT, FUNCTION_DIMENSION, LossReason, NAMESPACE, REASON_DIMENSION,
    RECIPIENTS_NOT_REACHED,
};
use serde_json::{Value, json};

/// What one invocation's share of a broadcast failed to reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Losses {
    by_reason: BTreeMap<LossReason, usize>,
    /// Continuations that ended with recipients left whose number could
    /// not be counted (their pages could not be read).
    cut_short: usize,
}

impl Losses {
    /// Counts `recipients` not reached for `reason`.
    pub fn add(&mut self, reason: LossReason, recipients: usize) {
        if recipients > 0 {
            *self.by_reason.entry(reason).or_default() += recipients;
        }
    }

    /// Counts a broadcast cut short with an unknown number left over.
    pub fn cut_short(&mut self) {
        self.cut_short += 1;
    }

    pub fn count(&self, reason: LossReason) -> usize {
        self.by_reason.get(&reason).copied().unwrap_or(0)
    }

    /// Recipients not reached, all reasons together.
    pub fn total(&self) -> usize {
        self.by_reason.values().sum()
    }

    pub fn cut_short_count(&self) -> usize {
        self.cut_short
    }

    pub fn is_empty(&self) -> bool {
        self.by_reason.is_empty() && self.cut_short == 0
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Losses) {
        for (reason, n) in &other.by_reason {
            self.add(*reason, *n);
        }
        self.cut_short += other.cut_short;
    }

    /// The EMF documents for these losses: one per reason (in the series
    /// by function and by function and reason), one for a cut-short count.
    pub fn emf(&self, function: &str, message_id: &str, timestamp_ms: i64) -> Vec<Value> {
        let document = |metric: &str, dimensions: Value, value: usize, reason: Option<&str>| {
            let mut document = json!({
                "_aws": {
                    "Timestamp": timestamp_ms,
                    "CloudWatchMetrics": [{
                        "Namespace": NAMESPACE,
                        "Dimensions": dimensions,
                        "Metrics": [{ "Name": metric, "Unit": "Count" }],
                    }],
                },
                "level": "ERROR",
                "message": "broadcast recipients not reached",
                FUNCTION_DIMENSION: function,
                metric: value,
                "messageId": message_id,
            });
            if let (Some(reason), Some(map)) = (reason, document.as_object_mut()) {
                map.insert(REASON_DIMENSION.into(), reason.into());
            }
            document
        };
        let mut documents: Vec<Value> = self
            .by_reason
            .iter()
            .map(|(reason, n)| {
                document(
                    RECIPIENTS_NOT_REACHED,
                    json!([[FUNCTION_DIMENSION], [FUNCTION_DIMENSION, REASON_DIMENSION]]),
                    *n,
                    Some(reason.as_str()),
                )
            })
            .collect();
        if self.cut_short > 0 {
            documents.push(document(
                BROADCASTS_CUT_SHORT,
                json!([[FUNCTION_DIMENSION]]),
                self.cut_short,
                None,
            ));
        }
        documents
    }
}

/// Where an invocation reports what its share of a broadcast lost.
pub trait LossReport: Send + Sync {
    fn report(&self, message_id: &str, losses: &Losses);
}

/// Writes EMF lines for the function `function` to stdout.
#[derive(Debug, Clone)]
pub struct EmfReport {
    pub function: String,
}

impl LossReport for EmfReport {
    fn report(&self, message_id: &str, losses: &Losses) {
        let now = chrono::Utc::now().timestamp_millis();
        let mut out = std::io::stdout().lock();
        for document in losses.emf(&self.function, message_id, now) {
            // stdout is the log: a line that cannot be written cannot be
            // reported anywhere else either.
            let _ = writeln!(out, "{document}");
        }
    }
}

/// Collects reports in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryReport {
    reports: parking_lot::Mutex<Vec<(String, Losses)>>,
}

impl MemoryReport {
    /// Every loss reported so far, all messages together.
    pub fn total(&self) -> Losses {
        let mut all = Losses::default();
        for (_, losses) in self.reports.lock().iter() {
            all.merge(losses);
        }
        all
    }

    pub fn reports(&self) -> Vec<(String, Losses)> {
        self.reports.lock().clone()
    }
}

impl LossReport for MemoryReport {
    fn report(&self, message_id: &str, losses: &Losses) {
        if !losses.is_empty() {
            self.reports
                .lock()
                .push((message_id.to_string(), losses.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_is_one_emf_document_in_both_series() {
        let mut losses = Losses::default();
        losses.add(LossReason::HopLimit, 7);
        losses.add(LossReason::Throttled, 0);
        losses.add(LossReason::HopLimit, 2);
        losses.cut_short();
        assert_eq!(losses.total(), 9);
        let documents = losses.emf("fn-1", "m1", 1_700_000_000_000);
        assert_eq!(documents.len(), 2, "{documents:?}");
        let first = &documents[0];
        assert_eq!(first["RecipientsNotReached"], 9);
        assert_eq!(first["Reason"], "hop_limit");
        assert_eq!(first["FunctionName"], "fn-1");
        assert_eq!(first["level"], "ERROR");
        let directive = &first["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(
            directive["Dimensions"],
            json!([["FunctionName"], ["FunctionName", "Reason"]])
        );
        assert_eq!(directive["Metrics"][0]["Name"], "RecipientsNotReached");
        assert_eq!(first["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        assert_eq!(documents[1]["BroadcastsCutShort"], 1);
        assert!(documents[1].get("Reason").is_none());
        assert!(Losses::default().emf("f", "m", 0).is_empty());
    }

    #[test]
    fn merged_losses_add_up() {
        let mut a = Losses::default();
        a.add(LossReason::PostFailed, 1);
        let mut b = Losses::default();
        b.add(LossReason::PostFailed, 2);
        b.add(LossReason::HandoffFailed, 3);
        b.cut_short();
        a.merge(&b);
        assert_eq!(a.count(LossReason::PostFailed), 3);
        assert_eq!(a.count(LossReason::HandoffFailed), 3);
        assert_eq!(a.cut_short_count(), 1);
        assert!(!a.is_empty());
    }

    /// A broadcast cut short with nobody counted is still a loss: reported,
    /// not dropped as empty.
    #[test]
    fn a_broadcast_cut_short_alone_is_reported() {
        let mut cut = Losses::default();
        cut.cut_short();
        assert!(!cut.is_empty());
        let mut counted = Losses::default();
        counted.add(LossReason::Throttled, 1);
        assert!(!counted.is_empty());
        let report = MemoryReport::default();
        report.report("m0", &Losses::default());
        report.report("m1", &cut);
        report.report("m2", &counted);
        let ids: Vec<String> = report.reports().into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["m1", "m2"]);
        assert_eq!(report.total().cut_short_count(), 1);
    }
}
