//! The API layer (execute-api) refuses clients without the stack's key, so
//! only traffic through the edge (CloudFront + WAF) gets in.

use anyhow::{Context, ensure};
use e2e::{Client, Stack};

#[tokio::test]
async fn the_api_layer_refuses_a_client_without_the_key() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack.explain(
        async {
            let status = Client::handshake(stack.api(), None, None)
                .await?
                .refused()?;
            ensure!(status == 403, "without a key: expected 403, got {status}");
            let status = Client::handshake(stack.api(), Some("not-the-key-0123456789"), None)
                .await?
                .refused()?;
            ensure!(
                status == 403,
                "with a wrong key: expected 403, got {status}"
            );
            Ok(())
        }
        .await,
    )
}

#[tokio::test]
async fn the_api_layer_accepts_a_client_with_the_key() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack.explain(
        async {
            let mut client = Client::handshake(stack.api(), Some(stack.api_key()), None)
                .await?
                .accepted()
                .context("with the stack's key")?;
            client.ping().await?;
            client.close().await
        }
        .await,
    )
}

#[tokio::test]
async fn the_edge_replaces_a_key_sent_by_the_client() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack.explain(
        async {
            // CloudFront's origin custom header overrides the viewer's: a wrong key
            // sent to the edge is replaced by the right one.
            let mut client =
                Client::handshake(stack.edge(), Some("a-wrong-key-from-the-viewer"), None)
                    .await?
                    .accepted()
                    .context("through the edge with a wrong key")?;
            client.ping().await?;
            client.close().await
        }
        .await,
    )
}
