//! The connections table as the fan-out uses it: read a page at a time
//! (Scan with `Limit` and `ExclusiveStartKey`, so a continuation carries
//! only the key where the next page starts), and the hop claims that make
//! a duplicate delivery of a continuation post nothing.
//!
//! Claims live in the same table (an item whose id starts with
//! [`CLAIM_PREFIX`], which no connection id has, expiring after
//! [`CLAIM_LIFE`]), so the function needs no other table and no other
//! permission than the PutItem it already has.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use crate::lazy_client::Lazy;

use crate::fanout::{CLAIM_PREFIX, Claims, Page, RecipientPages};
use crate::registry::{CONNECTION_ID, EXPIRES_AT, RegistryError};

/// How long a claim is kept: longer than Lambda keeps an asynchronous
/// event (the program sets the maximum event age to 60 s).
pub const CLAIM_LIFE: Duration = Duration::from_secs(15 * 60);

/// Items per Scan page: small enough that a page's unposted ids fit in a
/// continuation event (1,000 ids ≈ 20 KB of the 256 KB an asynchronous
/// invocation may carry), large enough that reading is a small part of a
/// slice.
pub const PAGE_SIZE: i32 = 1000;

#[derive(Debug, Clone)]
pub struct FanoutTable {
    client: Lazy<aws_sdk_dynamodb::Client>,
    table: String,
    page_size: i32,
}

impl FanoutTable {
    pub fn new(
        client: impl Into<Lazy<aws_sdk_dynamodb::Client>>,
        table: impl Into<String>,
    ) -> Self {
        FanoutTable {
            client: client.into(),
            table: table.into(),
            page_size: PAGE_SIZE,
        }
    }

    pub fn with_page_size(mut self, page_size: i32) -> Self {
        self.page_size = page_size.max(1);
        self
    }
}

fn sdk_error<E, R>(operation: &'static str, error: SdkError<E, R>) -> RegistryError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    RegistryError::new(operation, DisplayErrorContext(error).to_string())
}

/// The claim item's id for one hop of one broadcast.
pub fn claim_id(message_id: &str, hop: u32) -> String {
    format!("{CLAIM_PREFIX}{message_id}#{hop}")
}

#[async_trait]
impl RecipientPages for FanoutTable {
    async fn page(&self, after: Option<&str>) -> Result<Page, RegistryError> {
        let start = after.map(|key| {
            HashMap::from([(
                CONNECTION_ID.to_string(),
                AttributeValue::S(key.to_string()),
            )])
        });
        let output = self
            .client
            .get()
            .scan()
            .table_name(&self.table)
            .projection_expression("#id")
            .expression_attribute_names("#id", CONNECTION_ID)
            .limit(self.page_size)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| sdk_error("Scan", e))?;
        let ids = output
            .items()
            .iter()
            .filter_map(|item| match item.get(CONNECTION_ID) {
                Some(AttributeValue::S(id)) => Some(id.clone()),
                _ => None,
            })
            .collect();
        let next = output
            .last_evaluated_key()
            .and_then(|key| match key.get(CONNECTION_ID) {
                Some(AttributeValue::S(id)) => Some(id.clone()),
                _ => None,
            });
        Ok(Page { ids, next })
    }
}

#[async_trait]
impl Claims for FanoutTable {
    async fn claim(&self, message_id: &str, hop: u32) -> Result<bool, RegistryError> {
        let expires = chrono::Utc::now().timestamp()
            + i64::try_from(CLAIM_LIFE.as_secs()).unwrap_or(i64::MAX);
        let result = self
            .client
            .get()
            .put_item()
            .table_name(&self.table)
            .item(CONNECTION_ID, AttributeValue::S(claim_id(message_id, hop)))
            .item(EXPIRES_AT, AttributeValue::N(expires.to_string()))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", CONNECTION_ID)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(context))
                if context.err().is_conditional_check_failed_exception() =>
            {
                Ok(false)
            }
            Err(error) => Err(sdk_error("PutItem", error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_ids_are_never_connection_ids() {
        let id = claim_id("bWVzc2FnZQ=", 3);
        assert_eq!(id, "#fanout#bWVzc2FnZQ=#3");
        assert!(!crate::fanout::is_recipient(&id, "someone"));
    }
}
