//! Exactly-once bookkeeping for a broadcast's continuations: each
//! continuation is claimed once, in a table of its own.
//!
//! Lambda's asynchronous queue may deliver one event more than once, so each
//! continuation first records a claim on its id with a conditional write; a
//! second delivery finds the claim and posts nothing.
//!
//! Why a table of its own (`CLAIMS_TABLE`): claims in the connections table
//! were read by every broadcast's Scan and counted against its `Limit`, so a
//! broadcast's cost grew with every earlier broadcast until TTL removed them
//! (days later). Here no Scan ever reads them, and TTL ([`CLAIM_LIFE`]) keeps
//! the table small.
//!
//! Why a token: the SDK retries a PutItem whose answer was lost (a 500, a
//! reset connection). If the first attempt was applied, a plain
//! `attribute_not_exists` condition fails the retry and the claimant would
//! take its own claim for a duplicate's, skipping the rest of the broadcast.
//! Each claim carries a token and the condition also accepts an item holding
//! that same token, so every retry of one claim succeeds and another
//! delivery (another token) still fails.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use crate::lazy_client::Lazy;
use crate::registry::{EXPIRES_AT, RegistryError};

/// Partition key of the claims table.
pub const CLAIM_ID: &str = "claimId";
/// The claimant's token.
pub const TOKEN: &str = "token";

/// How long a claim is kept: longer than Lambda keeps an asynchronous
/// event (the program sets the maximum event age to 60 s).
pub const CLAIM_LIFE: Duration = Duration::from_secs(15 * 60);

/// Records that a continuation is being served.
#[async_trait]
pub trait Claims: Send + Sync {
    /// True when `claim` is recorded with `token` (the first time, or a retry
    /// with the same token); false when another token holds it.
    async fn claim(&self, claim: &str, token: &str) -> Result<bool, RegistryError>;
}

/// The claim key of one continuation of one broadcast.
pub fn claim_id(message_id: &str, continuation_id: &str) -> String {
    format!("{message_id}#{continuation_id}")
}

/// When a claim made at `now` (epoch seconds) may be deleted by TTL.
pub fn expires_at(now: i64) -> i64 {
    now.saturating_add(i64::try_from(CLAIM_LIFE.as_secs()).unwrap_or(i64::MAX))
}

/// The claims in a DynamoDB table keyed by [`CLAIM_ID`], with TTL on
/// [`EXPIRES_AT`].
#[derive(Debug, Clone)]
pub struct ClaimsTable {
    client: Lazy<aws_sdk_dynamodb::Client>,
    table: String,
}

impl ClaimsTable {
    pub fn new(
        client: impl Into<Lazy<aws_sdk_dynamodb::Client>>,
        table: impl Into<String>,
    ) -> Self {
        ClaimsTable {
            client: client.into(),
            table: table.into(),
        }
    }
}

#[async_trait]
impl Claims for ClaimsTable {
    async fn claim(&self, claim: &str, token: &str) -> Result<bool, RegistryError> {
        let expires = expires_at(chrono::Utc::now().timestamp());
        let result = self
            .client
            .get()
            .put_item()
            .table_name(&self.table)
            .item(CLAIM_ID, AttributeValue::S(claim.to_string()))
            .item(TOKEN, AttributeValue::S(token.to_string()))
            .item(EXPIRES_AT, AttributeValue::N(expires.to_string()))
            .condition_expression("attribute_not_exists(#id) OR #token = :token")
            .expression_attribute_names("#id", CLAIM_ID)
            .expression_attribute_names("#token", TOKEN)
            .expression_attribute_values(":token", AttributeValue::S(token.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(context))
                if context.err().is_conditional_check_failed_exception() =>
            {
                Ok(false)
            }
            Err(error) => Err(RegistryError::new(
                "PutItem",
                DisplayErrorContext(error).to_string(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_lives_fifteen_minutes() {
        assert_eq!(expires_at(1_795_000_000), 1_795_000_000 + 900);
        assert_eq!(expires_at(i64::MAX), i64::MAX);
    }

    #[test]
    fn claim_ids_name_the_message_and_the_continuation() {
        assert_eq!(claim_id("bWVzc2FnZQ=", "7f3a"), "bWVzc2FnZQ=#7f3a");
    }
}
