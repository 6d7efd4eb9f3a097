//! `DynamoDbRegistry` against a real DynamoDB-compatible server (Dynoxide, started
//! by `local-dynamodb`): the item layout the Pulumi table expects (its TTL
//! attribute among them), a Scan that really spans several pages, and the conditional delete a 410
//! makes.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{TimeZone, Utc};
use local_dynamodb::LocalDynamoDb;
use websocket_handler::registry::{
    CONNECTED_AT, CONNECTION_ID, Connection, ConnectionRegistry, DynamoDbRegistry, EXPIRES_AT,
    GoneRemoval, SOURCE_IP, USER_AGENT, USER_ID,
};

const LIMIT: Duration = Duration::from_secs(300);

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("timed out")
}

fn connection(id: &str) -> Connection {
    Connection {
        connection_id: id.to_string(),
        connected_at: Utc
            .timestamp_opt(1_795_000_000, 0)
            .single()
            .expect("valid time"),
        source_ip: Some("192.0.2.7".into()),
        user_agent: Some("wscat/6".into()),
        user_id: Some(format!("user-of-{id}")),
    }
}

#[tokio::test]
async fn registers_lists_across_pages_and_removes() {
    let db = within(LocalDynamoDb::start())
        .await
        .expect("start the local DynamoDB");
    within(db.create_table("connections", CONNECTION_ID))
        .await
        .expect("create table");
    let client = db.client();
    let registry = DynamoDbRegistry::new(client.clone(), "connections").with_page_size(2);

    let ids: Vec<String> = (0..7).map(|i| format!("conn-{i}")).collect();
    for id in &ids {
        within(registry.register(&connection(id)))
            .await
            .expect("register");
    }

    // The item has the attributes the table and its TTL expect.
    let item = within(
        client
            .get_item()
            .table_name("connections")
            .key(CONNECTION_ID, AttributeValue::S("conn-3".into()))
            .send(),
    )
    .await
    .expect("get item");
    let item = item.item().expect("item exists");
    assert_eq!(
        item.get(EXPIRES_AT),
        Some(&AttributeValue::N((1_795_000_000 + 7200).to_string()))
    );
    assert_eq!(
        item.get(SOURCE_IP),
        Some(&AttributeValue::S("192.0.2.7".into()))
    );
    assert_eq!(
        item.get(USER_AGENT),
        Some(&AttributeValue::S("wscat/6".into()))
    );
    assert_eq!(
        item.get(USER_ID),
        Some(&AttributeValue::S("user-of-conn-3".into()))
    );
    let connected_at = match item.get(CONNECTED_AT) {
        Some(AttributeValue::S(text)) => text.clone(),
        other => panic!("connectedAt is {other:?}"),
    };
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(&connected_at)
            .expect("rfc3339")
            .timestamp(),
        1_795_000_000
    );
    // The server honours Limit, so listing 7 items with a page size of 2
    // really follows LastEvaluatedKey across 4 pages.
    let first_page = within(client.scan().table_name("connections").limit(2).send())
        .await
        .expect("scan");
    assert_eq!(first_page.items().len(), 2);
    assert!(
        first_page.last_evaluated_key().is_some(),
        "the server did not paginate"
    );

    let mut listed = within(registry.list()).await.expect("list");
    listed.sort();
    assert_eq!(listed, ids);

    within(registry.remove("conn-0")).await.expect("remove");
    within(registry.remove("never-registered"))
        .await
        .expect("removing an unknown id is fine");
    let listed = within(registry.list()).await.expect("list");
    assert_eq!(listed.len(), 6);
    assert!(!listed.contains(&"conn-0".to_string()));

    // Registering again replaces the record rather than duplicating it.
    within(registry.register(&connection("conn-1")))
        .await
        .expect("re-register");
    assert_eq!(within(registry.list()).await.expect("list").len(), 6);
}

#[tokio::test]
async fn a_missing_table_is_an_error_naming_the_operation() {
    let db = within(LocalDynamoDb::start())
        .await
        .expect("start the local DynamoDB");
    let registry = DynamoDbRegistry::new(db.client(), "no-such-table");
    let error = within(registry.register(&connection("a")))
        .await
        .expect_err("no table");
    assert_eq!(error.operation, "PutItem");
    let error = within(registry.list()).await.expect_err("no table");
    assert_eq!(error.operation, "Scan");
}

/// A 410 deletes a record only if it is older than the cutoff: the
/// condition runs in DynamoDB, and a failed condition is "kept", not an error.
#[tokio::test]
async fn a_gone_connection_is_removed_only_if_older_than_the_cutoff() {
    let db = within(LocalDynamoDb::start())
        .await
        .expect("start the local DynamoDB");
    within(db.create_table("connections", CONNECTION_ID))
        .await
        .expect("create table");
    let registry = DynamoDbRegistry::new(db.client(), "connections");
    let old = connection("old");
    let mut young = connection("young");
    young.connected_at = old.connected_at + chrono::TimeDelta::milliseconds(1500);
    for record in [&old, &young] {
        within(registry.register(record)).await.expect("register");
    }
    // Between the two, to the millisecond: string order must be time order.
    let cutoff = old.connected_at + chrono::TimeDelta::milliseconds(1);

    let kept = within(registry.remove_gone("young", cutoff)).await;
    assert_eq!(kept, Ok(GoneRemoval::Kept));
    let absent = within(registry.remove_gone("never-registered", cutoff)).await;
    assert_eq!(absent, Ok(GoneRemoval::Kept));
    let removed = within(registry.remove_gone("old", cutoff)).await;
    assert_eq!(removed, Ok(GoneRemoval::Removed));
    assert_eq!(within(registry.list()).await.expect("list"), ["young"]);

    let missing_table = DynamoDbRegistry::new(db.client(), "no-such-table");
    let error = within(missing_table.remove_gone("young", cutoff))
        .await
        .expect_err("no table");
    assert_eq!(error.operation, "DeleteItem");
}
