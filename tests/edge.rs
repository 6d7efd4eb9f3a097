//! Through the edge, as a client of CloudFront sees the API: ping, a message
//! from one client reaching another, and a closed client being gone.

use anyhow::{Context, bail, ensure};
use e2e::{Client, Incoming, Stack, within};
use protocol::{ClientFrame, ServerFrame};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn ping_gets_pong_through_the_edge() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack.explain(
        async {
            let mut client = Client::connect(stack.edge()).await?;
            client.ping().await?;
            client
                .ping()
                .await
                .context("a second ping on the same connection")?;
            client.close().await
        }
        .await,
    )
}

/// Reads frames until a `message` arrives; returns its sender and data.
async fn next_message(client: &mut Client) -> anyhow::Result<(String, serde_json::Value, String)> {
    match client.recv_server().await? {
        ServerFrame::Message {
            id,
            from,
            data,
            sent_at,
            ..
        } => {
            ensure!(!id.is_empty(), "the message has no id");
            Ok((from, data, sent_at))
        }
        other => bail!("expected a message, got {other:?}"),
    }
}

async fn expect_sent(client: &mut Client) -> anyhow::Result<usize> {
    match client.recv_server().await? {
        ServerFrame::Sent { recipients } => Ok(recipients),
        other => bail!("expected sent, got {other:?}"),
    }
}

#[tokio::test]
async fn a_message_from_one_client_reaches_the_other() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack.explain(
        async {
            let mut alice = Client::connect(stack.edge()).await?;
            let mut bob = Client::connect(stack.edge()).await?;
            let data = json!({"text": "hello", "nested": [1, 2, {"x": null}]});
            alice.send(&ClientFrame::send_message(data.clone())).await?;

            let (from, received, sent_at) = next_message(&mut bob).await.context("bob")?;
            ensure!(received == data, "bob got {received}, alice sent {data}");
            ensure!(!from.is_empty(), "the message names no sender");
            chrono::DateTime::parse_from_rfc3339(&sent_at)
                .with_context(|| format!("sentAt {sent_at:?} is not RFC 3339"))?;

            let recipients = expect_sent(&mut alice).await.context("alice")?;
            ensure!(
                recipients == 1,
                "alice was told {recipients} recipients, bob is the only other client"
            );
            // The sender does not get its own message back: its next frame is the pong.
            alice.ping().await.context("alice after sending")?;
            bob.ping().await.context("bob after receiving")?;
            alice.close().await?;
            bob.close().await
        }
        .await,
    )
}

#[tokio::test]
async fn a_closed_client_is_gone() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack.explain(
        async {
            let management = stack.management_client();
            let mut alice = Client::connect(stack.edge()).await?;
            let mut bob = Client::connect(stack.edge()).await?;
            let mut carol = Client::connect(stack.edge()).await?;

            // Bob's id, as the others see it.
            bob.send(&ClientFrame::send_message(json!("bob here")))
                .await?;
            let (bob_id, _, _) = next_message(&mut alice).await.context("alice")?;
            next_message(&mut carol).await.context("carol")?;
            ensure!(
                expect_sent(&mut bob).await? == 2,
                "bob should reach alice and carol"
            );
            bob.close().await?;

            // Until the API layer has forgotten bob, posting to him may still work;
            // once it answers 410 Gone, it must keep doing so.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let posted = within(Duration::from_secs(10), "POST @connections", async {
                    management
                        .post_to_connection()
                        .connection_id(&bob_id)
                        .data("hi bob".as_bytes().to_vec().into())
                        .send()
                        .await
                })
                .await?;
                match posted {
                    Err(error) => {
                        let status = error.raw_response().map(|r| r.status().as_u16());
                        ensure!(
                            status == Some(410),
                            "POST to a closed connection: expected 410, got {status:?}: {error:?}"
                        );
                        ensure!(
                            error.into_service_error().is_gone_exception(),
                            "the SDK does not see a GoneException"
                        );
                        break;
                    }
                    Ok(_) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    Ok(_) => bail!("POST to bob's id still succeeds 10 s after bob closed"),
                }
            }

            alice
                .send(&ClientFrame::send_message(json!("who is left?")))
                .await?;
            let (alice_id, data, _) = next_message(&mut carol).await.context("carol")?;
            ensure!(data == json!("who is left?"));
            let recipients = expect_sent(&mut alice).await?;
            ensure!(
                recipients == 1,
                "bob has closed: alice's broadcast should reach only carol, it counted {recipients}"
            );

            // A live connection still accepts a POST: the 410 above is about bob.
            within(Duration::from_secs(10), "POST @connections", async {
                management
                    .post_to_connection()
                    .connection_id(&alice_id)
                    .data(b"posted".to_vec().into())
                    .send()
                    .await
            })
            .await?
            .context("POST to alice's connection")?;
            match alice.recv().await? {
                Incoming::Text(text) if text == "posted" => {}
                other => bail!("alice expected the posted text, got {other:?}"),
            }
            alice.close().await?;
            carol.close().await
        }
        .await,
    )
}
