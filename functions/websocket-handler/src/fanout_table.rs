//! The connections table as the fan-out reads it: a page at a time (Scan
//! with `Limit` and `ExclusiveStartKey`, so a continuation carries only the
//! key where the next page starts). The Scan reads connection records only:
//! the continuations' claims are in a table of their own ([`crate::claims`]).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use crate::lazy_client::Lazy;

use crate::fanout::{Page, RecipientPages};
use crate::registry::{CONNECTION_ID, RegistryError};

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
