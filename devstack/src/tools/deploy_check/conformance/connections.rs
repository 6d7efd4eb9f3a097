//! The `@connections` rows: only the local stack's management API can be
//! called here (signed with the local credentials); against a deployment
//! they need its endpoint and AWS credentials, and are not run.

use super::reference::*;
use super::rows::{open, outcome};
use super::*;

fn connections_path(local: &Local, id: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    format!(
        "{}/@connections/{}",
        local.stage_path,
        encoded.replace('+', "%20")
    )
}

const NOT_DEPLOYED: &str = "needs the deployment's @connections endpoint and AWS credentials";

pub async fn unknown_connection(target: &Target) -> Row {
    let id = "unknown-connection";
    let outcome = match &target.local {
        None => Outcome::skip(id, NOT_DEPLOYED),
        Some(local) => {
            let path = connections_path(local, &format!("{}=", uuid::Uuid::new_v4().simple()));
            match local
                .management
                .send("POST", &path, Bytes::from_static(b"{}"), None)
                .await
            {
                Ok((status, body)) if status.as_u16() == 410 => {
                    let body = String::from_utf8_lossy(&body).into_owned();
                    if body.contains("GoneException") || body.contains("Gone") {
                        Outcome::pass(id, "410 GoneException")
                    } else {
                        Outcome::fail(
                            id,
                            format!("410, but the body names no GoneException: {body}"),
                        )
                    }
                }
                Ok((status, body)) => Outcome::fail(
                    id,
                    format!("{status}, not 410: {}", String::from_utf8_lossy(&body)),
                ),
                Err(error) => Outcome::fail(id, format!("{error:#}")),
            }
        }
    };
    Row::new(
        "@connections POST to an unknown id: 410 GoneException",
        CONNECTIONS,
        outcome,
    )
}

pub async fn connections_api(target: &Target) -> Row {
    let id = "connections-api";
    let Some(local) = &target.local else {
        return Row::new(
            GET_POST_DELETE,
            CONNECTIONS,
            Outcome::skip(id, NOT_DEPLOYED),
        );
    };
    let run = async {
        let mut a = open(target).await?;
        let mut b = open(target).await?;
        let connection = connection_id(&mut a, &mut b, target.limit).await?;
        let path = connections_path(local, &connection);
        let http = &local.management;
        let call = |method: &'static str, body: &'static [u8]| {
            let path = path.clone();
            async move {
                http.send(method, &path, Bytes::from_static(body), None)
                    .await
                    .map_err(|e| format!("{method}: {e:#}"))
            }
        };
        let (status, body) = call("GET", b"").await?;
        let info: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.as_u16() != 200
            || !info["connectedAt"].is_string()
            || !info["lastActiveAt"].is_string()
            || !info["identity"]["sourceIp"].is_string()
        {
            return Err(format!(
                "GET answered {status} {}: not 200 with connectedAt, lastActiveAt and identity.sourceIp",
                String::from_utf8_lossy(&body)
            ));
        }
        let (status, _) = call("POST", b"conformance-post").await?;
        if status.as_u16() != 200 {
            return Err(format!("POST answered {status}, not 200"));
        }
        let text = client::next_text(&mut a, target.limit, |text| {
            (text == "conformance-post").then_some(())
        })
        .await;
        text.map_err(|e| format!("the posted data did not arrive as it was sent: {e}"))?;
        let (status, _) = call("DELETE", b"").await?;
        if status.as_u16() != 204 {
            return Err(format!("DELETE answered {status}, not 204"));
        }
        let code = ending(&mut a, target.limit)
            .await
            .map_err(|e| format!("after DELETE: {e}"))?;
        let (status, _) = call("GET", b"").await?;
        if status.as_u16() != 410 {
            return Err(format!("GET after DELETE answered {status}, not 410"));
        }
        let _ = close(b, target.limit).await;
        Ok(format!(
            "GET 200 (connectedAt, identity, lastActiveAt), POST 200 delivers the bytes, DELETE 204 closes ({}), GET then 410",
            code.map_or("no code".to_string(), |c| c.to_string())
        ))
    };
    Row::new(GET_POST_DELETE, CONNECTIONS, outcome(id, run.await))
}

const GET_POST_DELETE: &str = "@connections GET, POST and DELETE on an open connection";
