//! A stand-in for the connections table that answers the fan-out's one read,
//! `Scan` (DynamoDB's JSON 1.0 protocol), from memory after a fixed latency.
//!
//! Why: the local DynamoDB answers a Scan page from the same machine, with no
//! network between; DynamoDB itself serves a page of 1,000 items in tens of
//! milliseconds across one. With this stand-in (and the @connections one) the
//! row says what the function's fan-out does when the network is the cost
//! (it was added when the local DynamoDB was moto, whose Scan cost ≈ 0.27 ms
//! of CPU per item and bounded the row by itself). It pages
//! as DynamoDB does: ids in key order, `Limit`, `ExclusiveStartKey`,
//! `LastEvaluatedKey` on every page but the last.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::thread_server::ThreadServer;

const JSON_1_0: &str = "application/x-amz-json-1.0";

struct Table {
    /// Connection ids, sorted.
    ids: Vec<String>,
    latency: Duration,
    scans: AtomicUsize,
}

/// The running stand-in; stops when dropped.
pub struct RegistryStandIn {
    endpoint: String,
    table: Arc<Table>,
    _server: ThreadServer,
}

fn error(status: StatusCode, kind: &str, message: String) -> Response {
    let body =
        json!({ "__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"), "message": message });
    (status, [(header::CONTENT_TYPE, JSON_1_0)], body.to_string()).into_response()
}

/// One page: the ids after `start`, at most `limit` of them.
fn page<'a>(
    ids: &'a [String],
    start: Option<&str>,
    limit: usize,
) -> (Vec<&'a String>, Option<&'a String>) {
    let from = start.map_or(0, |key| ids.partition_point(|id| id.as_str() <= key));
    let items: Vec<&String> = ids[from..].iter().take(limit).collect();
    let last = (from + items.len() < ids.len())
        .then(|| items.last().copied())
        .flatten();
    (items, last)
}

async fn scan(State(table): State<Arc<Table>>, headers: HeaderMap, body: String) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if target != "DynamoDB_20120810.Scan" {
        return error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            format!("the registry stand-in answers Scan only, not {target:?}"),
        );
    }
    let request: Value = match serde_json::from_str(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                format!("the Scan request is not JSON: {e}"),
            );
        }
    };
    let limit = request
        .get("Limit")
        .and_then(Value::as_u64)
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let start = request
        .pointer("/ExclusiveStartKey/connectionId/S")
        .and_then(Value::as_str);
    tokio::time::sleep(table.latency).await;
    table.scans.fetch_add(1, Ordering::SeqCst);
    let (items, last) = page(&table.ids, start, limit);
    let mut body = json!({
        "Items": items.iter().map(|id| json!({ "connectionId": { "S": id } })).collect::<Vec<_>>(),
        "Count": items.len(),
        "ScannedCount": items.len(),
    });
    if let Some(last) = last {
        body["LastEvaluatedKey"] = json!({ "connectionId": { "S": last } });
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, JSON_1_0)],
        body.to_string(),
    )
        .into_response()
}

impl RegistryStandIn {
    /// Listens on 127.0.0.1 (a free port) and answers each Scan page after
    /// `latency`, from `ids`.
    pub fn start(mut ids: Vec<String>, latency: Duration) -> anyhow::Result<Self> {
        ids.sort();
        ids.dedup();
        let table = Arc::new(Table {
            ids,
            latency,
            scans: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/", post(scan))
            .with_state(table.clone());
        let server = ThreadServer::axum("registry stand-in", app)?;
        Ok(RegistryStandIn {
            endpoint: format!("http://{}", server.addr),
            table,
            _server: server,
        })
    }

    /// `http://127.0.0.1:<port>`: the DynamoDB endpoint to give the function.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Scan pages served so far.
    pub fn scans(&self) -> usize {
        self.table.scans.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    #[test]
    fn pages_follow_the_key_order_and_the_start_key() {
        let ids: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let (items, last) = page(&ids, None, 2);
        assert_eq!((items, last), (vec![&ids[0], &ids[1]], Some(&ids[1])));
        let (items, last) = page(&ids, Some("b"), 2);
        assert_eq!((items, last), (vec![&ids[2], &ids[3]], Some(&ids[3])));
        let (items, last) = page(&ids, Some("d"), 2);
        assert_eq!((items, last), (vec![&ids[4]], None));
        let (items, last) = page(&ids, Some("c"), 2);
        assert_eq!(
            (items, last),
            (vec![&ids[3], &ids[4]], None),
            "no key after the last item"
        );
    }

    /// The SDK's own paginator reads every id exactly once through it.
    #[tokio::test]
    async fn the_sdk_scans_every_id_once() {
        let ids: Vec<String> = (0..2_500).map(|i| format!("Id{i:05}=")).collect();
        let standin = RegistryStandIn::start(ids.clone(), Duration::from_millis(1)).expect("start");
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "local", "local", None, None, "bench",
            ))
            .endpoint_url(standin.endpoint())
            .build();
        let client = aws_sdk_dynamodb::Client::from_conf(config);
        let mut pages = client
            .scan()
            .table_name("t")
            .limit(1_000)
            .into_paginator()
            .send();
        let mut seen = Vec::new();
        while let Some(page) = tokio::time::timeout(Duration::from_secs(10), pages.next())
            .await
            .expect("a page in time")
        {
            for item in page.expect("a page").items() {
                match item.get("connectionId") {
                    Some(AttributeValue::S(id)) => seen.push(id.clone()),
                    other => panic!("an item without its id: {other:?}"),
                }
            }
        }
        assert_eq!(seen, ids);
        assert_eq!(standin.scans(), 3);

        let error = client.put_item().table_name("t").send().await.unwrap_err();
        assert!(
            format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&error))
                .contains("Scan only"),
            "{error:?}"
        );
    }
}
