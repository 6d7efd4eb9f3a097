//! `FanoutTable` against a real DynamoDB-compatible server (Dynoxide, `local-dynamodb`): the
//! pages a continuation walks are disjoint and cover the table, and hold
//! connections only.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use local_dynamodb::LocalDynamoDb;
use websocket_handler::fanout::{RecipientPages, is_recipient};
use websocket_handler::fanout_table::FanoutTable;

const LIMIT: Duration = Duration::from_secs(300);

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("timed out")
}

#[tokio::test]
async fn pages_cover_the_table_once() {
    let db = within(LocalDynamoDb::start())
        .await
        .expect("start the local DynamoDB");
    let ids: BTreeSet<String> = (0..23).map(|i| format!("conn-{i:02}")).collect();
    support::connections_table(&db, &ids).await;
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
    assert!(seen.iter().all(|id| is_recipient(id, "nobody")));
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), ids);
    // A claim an earlier version kept in this table is never a recipient.
    assert!(!is_recipient("#fanout#m1#1", "nobody"));
}
