//! Who is connected: the connection registry.
//!
//! API Gateway does not tell a function which connections exist, so `$connect`
//! records each one and `$disconnect` (or a 410 from the management API)
//! removes it; broadcast reads the list. A 410 does not always mean gone:
//! API Gateway also answers 410 for a connection whose `$connect` is still
//! running, so a 410 removes only a record older than [`GONE_GRACE`]. [`ConnectionRegistry`] is the small
//! trait the routes use; [`DynamoDbRegistry`] is the deployed implementation
//! and [`MemoryRegistry`] the one the route tests use.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use crate::lazy_client::Lazy;
use chrono::{DateTime, SecondsFormat, Utc};

/// Partition key of the connections table.
pub const CONNECTION_ID: &str = "connectionId";
/// When the connection opened, RFC 3339.
pub const CONNECTED_AT: &str = "connectedAt";
pub const SOURCE_IP: &str = "sourceIp";
pub const USER_AGENT: &str = "userAgent";
/// The signed-in user (the authorizer's `principalId`, the token's `sub`);
/// absent for a connection made without sign-in.
pub const USER_ID: &str = "userId";
/// The table's TTL attribute: epoch seconds after which DynamoDB may delete
/// the item. API Gateway closes every connection after 2 hours, so a
/// connection whose `$disconnect` was lost still leaves the table.
pub const EXPIRES_AT: &str = "expiresAt";

/// How long after it opened a connection's record survives a 410. API
/// Gateway answers 410 to posts for a connection until its `$connect`
/// returns, and an integration may take up to 29 s; a joiner whose
/// `$connect` is still running must not be forgotten by a concurrent
/// broadcast. A connection that really left that young is removed by its
/// `$disconnect`, by the next 410 after the grace, or by the TTL.
pub const GONE_GRACE: Duration = Duration::from_secs(30);

/// `connectedAt` as stored: RFC 3339, UTC, milliseconds, so that the strings
/// order as the times do (the conditional delete compares them).
pub fn format_connected_at(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One open WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub connection_id: String,
    pub connected_at: DateTime<Utc>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    /// Who signed in on `$connect` (`requestContext.authorizer.principalId`).
    pub user_id: Option<String>,
}

impl Connection {
    /// When the registry may forget this connection: connect time plus API
    /// Gateway's maximum connection life, in epoch seconds.
    pub fn expires_at(&self) -> i64 {
        let life =
            i64::try_from(protocol::limits::MAX_CONNECTION_LIFE.as_secs()).unwrap_or(i64::MAX);
        self.connected_at.timestamp().saturating_add(life)
    }
}

/// A registry operation failed; the message says which and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connection registry: {operation} failed: {message}")]
pub struct RegistryError {
    pub operation: &'static str,
    pub message: String,
}

impl RegistryError {
    pub fn new(operation: &'static str, message: impl Into<String>) -> Self {
        RegistryError {
            operation,
            message: message.into(),
        }
    }
}

/// What [`ConnectionRegistry::remove_gone`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoneRemoval {
    /// The record was older than the cutoff and is deleted.
    Removed,
    /// No record older than the cutoff: a young one is kept (its `$connect`
    /// may still be running), or there was none.
    Kept,
}

/// The connections the function can reach.
#[async_trait]
pub trait ConnectionRegistry: Send + Sync {
    /// Records an open connection (replacing any record with the same id).
    async fn register(&self, connection: &Connection) -> Result<(), RegistryError>;
    /// Forgets a connection; forgetting an unknown one is not an error.
    async fn remove(&self, connection_id: &str) -> Result<(), RegistryError>;
    /// Forgets a connection the management API answered 410 for, but only
    /// if it connected before `connected_before`: one atomic conditional
    /// delete, so a record written meanwhile is never lost.
    async fn remove_gone(
        &self,
        connection_id: &str,
        connected_before: DateTime<Utc>,
    ) -> Result<GoneRemoval, RegistryError>;
    /// The ids of every registered connection.
    async fn list(&self) -> Result<Vec<String>, RegistryError>;
}

/// Handles a 410 for `connection_id`: removes its record unless it opened
/// less than [`GONE_GRACE`] ago. Logs what happened; never fails.
pub async fn forget_gone(registry: &dyn ConnectionRegistry, connection_id: &str) {
    let cutoff = Utc::now() - chrono::TimeDelta::from_std(GONE_GRACE).unwrap_or_default();
    match registry.remove_gone(connection_id, cutoff).await {
        Ok(GoneRemoval::Removed) => {
            tracing::info!(%connection_id, "connection is gone; removed");
        }
        Ok(GoneRemoval::Kept) => tracing::info!(
            %connection_id,
            "connection answered 410 but opened less than the grace period ago (its $connect may still be running); kept"
        ),
        Err(error) => {
            tracing::warn!(%connection_id, %error, "could not remove a gone connection");
        }
    }
}

/// An in-process registry, for tests and for running the routes without AWS.
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    connections: Mutex<BTreeMap<String, Connection>>,
}

impl MemoryRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The record for one connection, if registered.
    pub fn get(&self, connection_id: &str) -> Option<Connection> {
        self.lock().get(connection_id).cloned()
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, BTreeMap<String, Connection>> {
        // A poisoned map is still a consistent map: every write is one insert or remove.
        self.connections.lock()
    }
}

#[async_trait]
impl ConnectionRegistry for MemoryRegistry {
    async fn register(&self, connection: &Connection) -> Result<(), RegistryError> {
        self.lock()
            .insert(connection.connection_id.clone(), connection.clone());
        Ok(())
    }

    async fn remove(&self, connection_id: &str) -> Result<(), RegistryError> {
        self.lock().remove(connection_id);
        Ok(())
    }

    async fn remove_gone(
        &self,
        connection_id: &str,
        connected_before: DateTime<Utc>,
    ) -> Result<GoneRemoval, RegistryError> {
        let mut connections = self.lock();
        match connections.get(connection_id) {
            Some(connection) if connection.connected_at < connected_before => {
                connections.remove(connection_id);
                Ok(GoneRemoval::Removed)
            }
            _ => Ok(GoneRemoval::Kept),
        }
    }

    async fn list(&self) -> Result<Vec<String>, RegistryError> {
        Ok(self.lock().keys().cloned().collect())
    }
}

/// The registry in a DynamoDB table keyed by [`CONNECTION_ID`], with TTL on
/// [`EXPIRES_AT`].
#[derive(Debug, Clone)]
pub struct DynamoDbRegistry {
    client: Lazy<aws_sdk_dynamodb::Client>,
    table: String,
    page_size: Option<i32>,
}

impl DynamoDbRegistry {
    pub fn new(
        client: impl Into<Lazy<aws_sdk_dynamodb::Client>>,
        table: impl Into<String>,
    ) -> Self {
        DynamoDbRegistry {
            client: client.into(),
            table: table.into(),
            page_size: None,
        }
    }

    /// Caps the items each Scan page returns (DynamoDB's `Limit`); the scan
    /// still reads every page. Without it a page is up to 1 MB.
    pub fn with_page_size(mut self, page_size: i32) -> Self {
        self.page_size = Some(page_size);
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
impl ConnectionRegistry for DynamoDbRegistry {
    async fn register(&self, connection: &Connection) -> Result<(), RegistryError> {
        let mut put = self
            .client
            .get()
            .put_item()
            .table_name(&self.table)
            .item(
                CONNECTION_ID,
                AttributeValue::S(connection.connection_id.clone()),
            )
            .item(
                CONNECTED_AT,
                AttributeValue::S(format_connected_at(connection.connected_at)),
            )
            .item(
                EXPIRES_AT,
                AttributeValue::N(connection.expires_at().to_string()),
            );
        if let Some(ip) = &connection.source_ip {
            put = put.item(SOURCE_IP, AttributeValue::S(ip.clone()));
        }
        if let Some(agent) = &connection.user_agent {
            put = put.item(USER_AGENT, AttributeValue::S(agent.clone()));
        }
        if let Some(user) = &connection.user_id {
            put = put.item(USER_ID, AttributeValue::S(user.clone()));
        }
        put.send().await.map_err(|e| sdk_error("PutItem", e))?;
        Ok(())
    }

    async fn remove(&self, connection_id: &str) -> Result<(), RegistryError> {
        self.client
            .get()
            .delete_item()
            .table_name(&self.table)
            .key(CONNECTION_ID, AttributeValue::S(connection_id.to_string()))
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", e))?;
        Ok(())
    }

    async fn remove_gone(
        &self,
        connection_id: &str,
        connected_before: DateTime<Utc>,
    ) -> Result<GoneRemoval, RegistryError> {
        let deleted = self
            .client
            .get()
            .delete_item()
            .table_name(&self.table)
            .key(CONNECTION_ID, AttributeValue::S(connection_id.to_string()))
            .condition_expression("#at < :cutoff")
            .expression_attribute_names("#at", CONNECTED_AT)
            .expression_attribute_values(
                ":cutoff",
                AttributeValue::S(format_connected_at(connected_before)),
            )
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(GoneRemoval::Removed),
            Err(SdkError::ServiceError(context))
                if context.err().is_conditional_check_failed_exception() =>
            {
                Ok(GoneRemoval::Kept)
            }
            Err(error) => Err(sdk_error("DeleteItem", error)),
        }
    }

    async fn list(&self) -> Result<Vec<String>, RegistryError> {
        let mut ids = Vec::new();
        let mut pages = self
            .client
            .get()
            .scan()
            .table_name(&self.table)
            .projection_expression("#id")
            .expression_attribute_names("#id", CONNECTION_ID)
            .set_limit(self.page_size)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error("Scan", e))?;
            for item in page.items() {
                // Claims an earlier version kept in this table (ids that
                // start with `#`, which no connection id has) are not connections.
                if let Some(AttributeValue::S(id)) = item.get(CONNECTION_ID)
                    && !id.starts_with('#')
                {
                    ids.push(id.clone());
                }
            }
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn connection(id: &str) -> Connection {
        Connection {
            connection_id: id.to_string(),
            connected_at: Utc
                .timestamp_opt(1_795_000_000, 0)
                .single()
                .unwrap_or_default(),
            source_ip: Some("192.0.2.1".into()),
            user_agent: Some("test".into()),
            user_id: None,
        }
    }

    #[test]
    fn a_connection_expires_two_hours_after_it_opened() {
        assert_eq!(connection("a").expires_at(), 1_795_000_000 + 7200);
    }

    #[tokio::test]
    async fn memory_registry_registers_lists_and_removes() {
        let registry = MemoryRegistry::new();
        registry.register(&connection("b")).await.unwrap();
        registry.register(&connection("a")).await.unwrap();
        assert_eq!(registry.list().await.unwrap(), ["a", "b"]);
        registry.remove("a").await.unwrap();
        registry.remove("never-there").await.unwrap();
        assert_eq!(registry.list().await.unwrap(), ["b"]);
        assert_eq!(registry.get("b"), Some(connection("b")));
    }

    #[tokio::test]
    async fn a_410_removes_only_a_record_older_than_the_cutoff() {
        let registry = MemoryRegistry::new();
        let old = connection("old");
        let mut young = connection("young");
        young.connected_at = old.connected_at + chrono::Duration::seconds(60);
        registry.register(&old).await.unwrap();
        registry.register(&young).await.unwrap();
        let cutoff = old.connected_at + chrono::Duration::seconds(30);
        assert_eq!(
            registry.remove_gone("young", cutoff).await,
            Ok(GoneRemoval::Kept)
        );
        assert_eq!(
            registry.remove_gone("old", cutoff).await,
            Ok(GoneRemoval::Removed)
        );
        assert_eq!(
            registry.remove_gone("never-there", cutoff).await,
            Ok(GoneRemoval::Kept)
        );
        assert_eq!(registry.list().await.unwrap(), ["young"]);
    }

    #[tokio::test]
    async fn a_410_keeps_a_record_opened_exactly_at_the_cutoff() {
        // As DynamoDbRegistry's `#at < :cutoff`: only strictly older records go.
        let registry = MemoryRegistry::new();
        let at_cutoff = connection("at-cutoff");
        registry.register(&at_cutoff).await.unwrap();
        assert_eq!(
            registry
                .remove_gone("at-cutoff", at_cutoff.connected_at)
                .await,
            Ok(GoneRemoval::Kept)
        );
        assert_eq!(registry.list().await.unwrap(), ["at-cutoff"]);
    }

    #[test]
    fn stored_times_order_as_the_times_do() {
        let base = connection("a").connected_at;
        let times = [
            base,
            base + chrono::Duration::milliseconds(1),
            base + chrono::Duration::milliseconds(999),
            base + chrono::Duration::seconds(1),
            base + chrono::Duration::days(400),
        ];
        for pair in times.windows(2) {
            assert!(format_connected_at(pair[0]) < format_connected_at(pair[1]));
        }
        assert_eq!(format_connected_at(base), "2026-11-18T11:06:40.000Z");
    }
}
