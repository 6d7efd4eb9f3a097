//! AWS's account limits as the local stack plays them, end to end: a client
//! over the account's new-connection rate is refused at the handshake, a
//! management POST over the account's request rate gets 429
//! `LimitExceededException` (as aws-sdk-apigatewaymanagement reads it),
//! and at the `--max-connections` WebSocket cap a broadcast still reaches
//! every connected client (the function's posts are not WebSockets).

use anyhow::{Context, bail, ensure};
use aws_sdk_apigatewaymanagement::error::ProvideErrorMetadata;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use e2e::{Client, Stack, StackConfig};
use protocol::{ClientFrame, ServerFrame};
use serde_json::json;

#[tokio::test]
async fn a_client_over_the_account_connect_rate_is_refused() -> anyhow::Result<()> {
    // 2 new connections a second: a burst of 2, then one every 500 ms.
    let stack = Stack::start_with(StackConfig::new().account_connect_limit(2)).await?;
    stack.explain(
        async {
            let _first = Client::connect(stack.edge()).await?;
            let _second = Client::connect(stack.edge()).await?;
            let status = Client::handshake(stack.edge(), None, None)
                .await?
                .refused()
                .context("the third handshake within the second")?;
            ensure!(status == 429, "refused with {status}, expected 429");
            let log = stack.log();
            ensure!(
                log.contains("--account-connect-limit"),
                "the refusal is not named in the log"
            );
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
            Client::connect(stack.edge())
                .await
                .context("a handshake once the rate allows")?;
            Ok(())
        }
        .await,
    )
}

#[tokio::test]
async fn a_management_post_over_the_account_rate_gets_429_limit_exceeded() -> anyhow::Result<()> {
    // 20 requests a second: a burst of 10; the client's handshake takes one.
    let stack = Stack::start_with(StackConfig::new().account_rate_limit(20)).await?;
    stack.explain(
        async {
            let mut client = Client::connect(stack.edge()).await?;
            let sdk = stack.management_client();
            let once = aws_sdk_apigatewaymanagement::Client::from_conf(
                sdk.config()
                    .to_builder()
                    .retry_config(
                        aws_sdk_apigatewaymanagement::config::retry::RetryConfig::disabled(),
                    )
                    .build(),
            );
            // The stack answers (the function's reply is a post too).
            client.send(&ClientFrame::ping()).await?;
            match client.recv_server().await? {
                ServerFrame::Pong => {}
                other => bail!("expected pong, got {other:?}"),
            }
            let mut refused = None;
            for n in 0..40 {
                // Any id: the quota is checked before the connection is looked up.
                let sent = once
                    .post_to_connection()
                    .connection_id("L0SM9cOFvHcCIhw=")
                    .data(Blob::new(format!("{n}")))
                    .send()
                    .await;
                if let Err(error) = sent
                    && error.raw_response().map(|r| r.status().as_u16()) == Some(429)
                {
                    refused = Some(error);
                    break;
                }
            }
            let error = refused.context("no post was refused with 429 in 40")?;
            let service = error.as_service_error().context("a service error")?;
            ensure!(service.is_limit_exceeded_exception(), "{error:?}");
            let message = service.message().unwrap_or_default();
            ensure!(message.contains("--account-rate-limit"), "{message}");
            Ok(())
        }
        .await,
    )
}

#[tokio::test]
async fn at_the_websocket_cap_a_broadcast_still_reaches_everyone() -> anyhow::Result<()> {
    const CAP: usize = 3;
    let stack = Stack::start_with(StackConfig::new().max_connections(CAP)).await?;
    stack.explain(
        async {
            let mut clients = Vec::new();
            for _ in 0..CAP {
                clients.push(Client::connect(stack.edge()).await?);
            }
            let status = Client::handshake(stack.edge(), None, None)
                .await?
                .refused()
                .context("a handshake over the cap")?;
            ensure!(status == 429, "refused with {status}, expected 429");
            let data = json!({"text": "at the cap"});
            clients[0]
                .send(&ClientFrame::send_message(data.clone()))
                .await?;
            for (n, client) in clients.iter_mut().enumerate().skip(1) {
                match client
                    .recv_server()
                    .await
                    .with_context(|| format!("client {n}"))?
                {
                    ServerFrame::Message { data: got, .. } => ensure!(got == data),
                    other => bail!("client {n}: expected the message, got {other:?}"),
                }
            }
            match clients[0].recv_server().await? {
                ServerFrame::Sent { recipients } => {
                    ensure!(recipients == CAP - 1, "sent to {recipients}")
                }
                other => bail!("expected sent, got {other:?}"),
            }
            Ok(())
        }
        .await,
    )
}
