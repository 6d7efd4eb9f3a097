//! `FanoutTable` against a real DynamoDB-compatible server (dynalite): the
//! pages a continuation walks are disjoint and cover the table, and a hop
//! can be claimed once only.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use local_dynamodb::LocalDynamoDb;
use websocket_handler::fanout::{Claims, RecipientPages};
use websocket_handler::fanout_table::{FanoutTable, claim_id};
use websocket_handler::registry::{
    CONNECTION_ID, Connection, ConnectionRegistry, DynamoDbRegistry,
};

const LIMIT: Duration = Duration::from_secs(300);

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("timed out")
}

#[tokio::test]
async fn pages_cover_the_table_once_and_claims_hold_once() {
    let db = within(LocalDynamoDb::start())
        .await
        .expect("start the local DynamoDB");
    within(db.create_table("connections", CONNECTION_ID))
        .await
        .expect("create table");
    let registry = DynamoDbRegistry::new(db.client(), "connections");
    let ids: BTreeSet<String> = (0..23).map(|i| format!("conn-{i:02}")).collect();
    for id in &ids {
        let connection = Connection {
            connection_id: id.clone(),
            connected_at: Utc::now(),
            source_ip: None,
            user_agent: None,
        };
        within(registry.register(&connection))
            .await
            .expect("register");
    }
    let table = FanoutTable::new(db.client(), "connections").with_page_size(5);

    // Walk the pages as a chain of continuations would: each from the key
    // the previous one ended at.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = within(table.page(after.as_deref())).await.expect("page");
        pages += 1;
        assert!(page.ids.len() <= 5, "{} ids in a page of 5", page.ids.len());
        seen.extend(page.ids);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
        assert!(pages <= 10, "the pages do not end");
    }
    assert_eq!(seen.len(), ids.len(), "an id was read twice: {seen:?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), ids);

    assert!(within(table.claim("m1", 1)).await.expect("claim"));
    assert!(!within(table.claim("m1", 1)).await.expect("claim again"));
    assert!(within(table.claim("m1", 2)).await.expect("next hop"));
    assert!(within(table.claim("m2", 1)).await.expect("other message"));

    // The claims are in the table, but neither listed as connections nor
    // ever taken for recipients.
    let all = within(registry.list()).await.expect("list");
    assert_eq!(all.into_iter().collect::<BTreeSet<_>>(), ids);
    let page = within(table.page(None)).await.expect("page");
    assert!(
        page.ids
            .iter()
            .all(|id| id.starts_with('#') != websocket_handler::fanout::is_recipient(id, "nobody"))
    );
    assert!(!websocket_handler::fanout::is_recipient(
        &claim_id("m1", 1),
        "nobody"
    ));
}
