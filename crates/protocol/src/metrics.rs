//! The metrics the function writes and the program alarms on, named once.
//!
//! The function reports every broadcast recipient it could not reach as a
//! CloudWatch metric in embedded metric format (a JSON log line that
//! CloudWatch Logs turns into a metric); `Pulumi.yaml`'s alarms watch the
//! same namespace, names and dimension, and the offline check holds the two
//! to these constants.

/// The namespace of the function's own metrics.
pub const NAMESPACE: &str = "websocket-waf/Broadcast";
/// The dimension every metric carries: the function's name, so each stack's
/// function has its own series.
pub const FUNCTION_DIMENSION: &str = "FunctionName";
/// The second dimension of the per-reason series.
pub const REASON_DIMENSION: &str = "Reason";
/// Recipients of a broadcast that did not get it (or whose post was not
/// confirmed), each counted once, with the reason.
pub const RECIPIENTS_NOT_REACHED: &str = "RecipientsNotReached";
/// Continuations of a broadcast that ended with recipients left over whose
/// number could not be counted (its pages could not be read).
pub const BROADCASTS_CUT_SHORT: &str = "BroadcastsCutShort";

/// Why a recipient was not reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LossReason {
    /// The management API answered an error other than 410 or 429.
    PostFailed,
    /// The post had no answer within the post timeout: it may or may not
    /// have been delivered, and is never retried (a retry could deliver twice).
    PostUnconfirmed,
    /// Throttled (429) or refused connections after every retry, with no
    /// time or hop left to try again.
    Throttled,
    /// The broadcast needed more continuations than allowed.
    HopLimit,
    /// The rest of the broadcast could not be handed to a new invocation.
    HandoffFailed,
}

impl LossReason {
    /// Every reason, in a fixed order.
    pub const ALL: [LossReason; 5] = [
        LossReason::PostFailed,
        LossReason::PostUnconfirmed,
        LossReason::Throttled,
        LossReason::HopLimit,
        LossReason::HandoffFailed,
    ];

    /// The `Reason` dimension's value.
    pub fn as_str(self) -> &'static str {
        match self {
            LossReason::PostFailed => "post_failed",
            LossReason::PostUnconfirmed => "post_unconfirmed",
            LossReason::Throttled => "throttled",
            LossReason::HopLimit => "hop_limit",
            LossReason::HandoffFailed => "handoff_failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_have_distinct_dimension_values() {
        let names: std::collections::BTreeSet<_> =
            LossReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), LossReason::ALL.len());
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
    }
}
