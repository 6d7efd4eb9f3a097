//! Bad input gets a clear answer, never a crash: each bad frame has its own
//! error code and the connection stays usable; frames and messages larger
//! than API Gateway's limits close the connection with 1009, a binary frame
//! with 1003.

use anyhow::{Context, bail, ensure};
use e2e::{Client, Incoming, Stack};
use protocol::{BAD_FRAMES, BadFrame, ErrorCode, MAX_DATA_BYTES, ServerFrame, limits};

async fn expect_error(client: &mut Client, expected: ErrorCode) -> anyhow::Result<String> {
    match client.recv_server().await? {
        ServerFrame::Error { code, message } if code == expected => Ok(message),
        other => bail!("expected an error frame with code {expected:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn each_bad_frame_gets_its_error_code_and_the_connection_stays_usable() -> anyhow::Result<()>
{
    let stack = Stack::start().await?;
    stack.explain(
        async {
            let mut client = Client::connect(stack.edge()).await?;
            for &BadFrame {
                case, text, code, ..
            } in BAD_FRAMES
            {
                client
                    .send_text(text)
                    .await
                    .with_context(|| case.to_string())?;
                let message = expect_error(&mut client, code)
                    .await
                    .with_context(|| case.to_string())?;
                ensure!(
                    !message.is_empty(),
                    "{case}: the error frame has no message"
                );
                client
                    .ping()
                    .await
                    .with_context(|| format!("ping after {case}"))?;
            }
            client.close().await
        }
        .await,
    )
}

#[tokio::test]
async fn too_large_data_gets_its_error_code_and_data_at_the_limit_is_sent() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack.explain(
        async {
            let mut client = Client::connect(stack.edge()).await?;

            // Data over 32 KB in a message under 128 KB, sent as API Gateway
            // requires, in frames of at most 32 KB.
            let big = "x".repeat(MAX_DATA_BYTES + 1024);
            let text = format!(r#"{{"action":"sendmessage","data":"{big}"}}"#);
            client
                .send_fragmented(&text, limits::MAX_FRAME_BYTES / 2)
                .await?;
            expect_error(&mut client, ErrorCode::DataTooLarge)
                .await
                .context("data over 32 KB")?;
            client.ping().await.context("ping after too large data")?;

            // Data exactly at the limit is delivered (to nobody: the sender is alone).
            let fits = "y".repeat(MAX_DATA_BYTES - 2);
            let text = format!(r#"{{"action":"sendmessage","data":"{fits}"}}"#);
            client
                .send_fragmented(&text, limits::MAX_FRAME_BYTES / 2)
                .await?;
            match client.recv_server().await? {
                ServerFrame::Sent { recipients: 0 } => {}
                other => {
                    bail!("data at the limit: expected sent to 0 recipients, got {other:?}")
                }
            }
            client.close().await
        }
        .await,
    )
}

/// API Gateway takes no binary frame from a client: it closes the
/// connection with 1003 before any route runs (docs: "Binary media types
/// for WebSocket APIs"), and the function never sees it.
#[tokio::test]
async fn a_binary_frame_closes_the_connection_with_1003() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack.explain(
        async {
            let mut client = Client::connect(stack.edge()).await?;
            client.send_binary(br#"{"action":"ping"}"#).await?;
            let code = client.expect_close().await.context("a binary frame")?;
            ensure!(
                code == Some(1003),
                "a binary frame: expected close code 1003, got {code:?}"
            );
            // Another connection is served as before.
            let mut other = Client::connect(stack.edge()).await?;
            other.ping().await.context("ping on a new connection")?;
            other.close().await
        }
        .await,
    )
}

#[tokio::test]
async fn oversize_frames_and_messages_are_closed_with_1009() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack.explain(
        async {
            // One frame over 32 KB.
            let mut client = Client::connect(stack.edge()).await?;
            let frame = format!(
                r#"{{"action":"ping","data":"{}"}}"#,
                "f".repeat(limits::MAX_FRAME_BYTES)
            );
            client.send_text(&frame).await?;
            let code = client.expect_close().await.context("a frame over 32 KB")?;
            ensure!(
                code == Some(1009),
                "a frame over 32 KB: expected close code 1009, got {code:?}"
            );

            // A message over 128 KB, in frames of 16 KB.
            let mut client = Client::connect(stack.edge()).await?;
            let message = format!(
                r#"{{"action":"ping","data":"{}"}}"#,
                "m".repeat(limits::MAX_MESSAGE_BYTES)
            );
            let sent = client
                .send_fragmented(&message, limits::MAX_FRAME_BYTES / 2)
                .await;
            match (sent, client.recv().await) {
                // The server may close before the last frame is written.
                (_, Ok(Incoming::Close(code))) => {
                    ensure!(
                        code == Some(1009),
                        "a message over 128 KB: expected close code 1009, got {code:?}"
                    )
                }
                (sent, received) => bail!(
                    "a message over 128 KB: expected a close frame, sent {sent:?}, got {received:?}"
                ),
            }

            // Other clients are unaffected.
            let mut other = Client::connect(stack.edge()).await?;
            other.ping().await?;
            other.close().await
        }
        .await,
    )
}
