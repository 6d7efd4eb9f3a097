//! The server is real: a table created through this crate takes and returns
//! items through the AWS SDK, a conditional write it refuses is refused with
//! DynamoDB's error, and dropping the handle stops the server.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use local_dynamodb::LocalDynamoDb;

const LIMIT: Duration = Duration::from_secs(300);

#[tokio::test]
async fn serves_dynamodb_and_stops_with_its_handle() {
    let db = tokio::time::timeout(LIMIT, LocalDynamoDb::start())
        .await
        .expect("start timed out")
        .expect("start");
    assert!(
        db.endpoint().starts_with("http://127.0.0.1:"),
        "{}",
        db.endpoint()
    );
    tokio::time::timeout(LIMIT, db.create_table("things", "id"))
        .await
        .expect("create timed out")
        .expect("create table");

    let client = db.client();
    // Usable as soon as create_table returns: no CREATING state to wait out.
    let described =
        tokio::time::timeout(LIMIT, client.describe_table().table_name("things").send())
            .await
            .expect("timed out")
            .expect("describe table");
    assert_eq!(
        described.table().and_then(|t| t.table_status()),
        Some(&aws_sdk_dynamodb::types::TableStatus::Active)
    );

    let put = client
        .put_item()
        .table_name("things")
        .item("id", AttributeValue::S("a".into()));
    within(put.clone().item("n", AttributeValue::N("7".into())).send())
        .await
        .expect("put");
    let got = within(
        client
            .get_item()
            .table_name("things")
            .key("id", AttributeValue::S("a".into()))
            .send(),
    )
    .await
    .expect("get");
    let item = got.item().expect("item");
    assert_eq!(item.get("n"), Some(&AttributeValue::N("7".into())));

    // A second table with the same name is refused: it is a real server.
    let again = tokio::time::timeout(LIMIT, db.create_table("things", "id"))
        .await
        .expect("timed out");
    assert!(again.is_err());

    // DynamoDB's own error for a condition that does not hold, as the
    // function's claims and stale-connection removal rely on it.
    let refused = within(put.condition_expression("attribute_not_exists(id)").send())
        .await
        .expect_err("the item exists");
    assert!(
        refused
            .as_service_error()
            .is_some_and(|e| e.is_conditional_check_failed_exception()),
        "{refused:?}"
    );

    let endpoint = db.endpoint().to_string();
    drop(db);
    let port = endpoint.rsplit(':').next().expect("port");
    let refused = std::net::TcpStream::connect(format!("127.0.0.1:{port}"));
    assert!(refused.is_err(), "port {port} still answers");
}

#[tokio::test]
async fn servers_started_in_parallel_are_independent() {
    let (a, b) = tokio::time::timeout(LIMIT, async {
        tokio::join!(LocalDynamoDb::start(), LocalDynamoDb::start())
    })
    .await
    .expect("start timed out");
    let (a, b) = (a.expect("start a"), b.expect("start b"));
    assert_ne!(a.endpoint(), b.endpoint());
    tokio::time::timeout(LIMIT, a.create_table("only-in-a", "id"))
        .await
        .expect("timed out")
        .expect("create");
    let tables = tokio::time::timeout(LIMIT, b.client().list_tables().send())
        .await
        .expect("timed out")
        .expect("list");
    assert!(
        tables.table_names().is_empty(),
        "{:?}",
        tables.table_names()
    );
}

/// `call`'s result, within [`LIMIT`].
async fn within<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, call).await.expect("timed out")
}
