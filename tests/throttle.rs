//! Stage throttling, configured from the stack config: messages over the
//! route's burst get API Gateway's "Too Many Requests" frame, and the route
//! recovers as its bucket refills.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use e2e::{Client, Incoming, Stack, StackConfig};
use protocol::{ClientFrame, GatewayFrame, ServerFrame};

const BURST: u32 = 3;
const RATE_PER_SEC: u32 = 1;
const SENT: usize = 10;

#[tokio::test]
async fn messages_over_the_stage_burst_are_throttled() -> anyhow::Result<()> {
    let config = StackConfig::new()
        .set("stageBurstLimit", BURST)
        .set("stageRateLimit", RATE_PER_SEC);
    let stack = Stack::start_with(config).await?;
    stack.explain(
        async {
            let mut client = Client::connect(stack.edge()).await?;
            let started = Instant::now();
            for _ in 0..SENT {
                client.send(&ClientFrame::ping()).await?;
            }
            let sending = started.elapsed();
            let (mut pongs, mut throttled) = (0u64, 0u64);
            for _ in 0..SENT {
                match client.recv().await? {
                    Incoming::Server(ServerFrame::Pong) => pongs += 1,
                    Incoming::Gateway(frame) if frame.message == GatewayFrame::TOO_MANY_REQUESTS => {
                        throttled += 1
                    }
                    other => bail!("expected pong or Too Many Requests, got {other:?}"),
                }
            }
            // The bucket starts full and refills at the rate while the pings go out.
            let refilled = (sending.as_secs_f64() * f64::from(RATE_PER_SEC)).ceil() as u64;
            let most = u64::from(BURST) + refilled + 1;
            ensure!(
                (u64::from(BURST)..=most).contains(&pongs),
                "{pongs} of {SENT} pings answered; the burst is {BURST} (at most {most} after {sending:?})"
            );
            ensure!(throttled == SENT as u64 - pongs);

            tokio::time::sleep(Duration::from_millis(1500)).await;
            client.ping().await?;
            client.close().await
        }
        .await,
    )
}
