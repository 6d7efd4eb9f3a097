//! Stage throttling, configured from the stack config: messages over the
//! route's burst get API Gateway's "Too Many Requests" frame, and the route
//! recovers as its bucket refills (a ping retried until it gets its pong,
//! within a generous bound).

use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use e2e::{Client, Incoming, Stack, StackConfig};
use protocol::{ClientFrame, GatewayFrame, ServerFrame};

const BURST: u32 = 3;
const RATE_PER_SEC: u32 = 1;
const SENT: usize = 10;
/// A generous bound on the bucket refilling one token at RATE_PER_SEC.
const RECOVERY: Duration = Duration::from_secs(10);

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

            // The bucket refills at RATE_PER_SEC: a ping is answered again
            // within a few seconds. Each try gets exactly one frame, pong or
            // Too Many Requests, so nothing else can have been queued.
            let recovery = Instant::now();
            loop {
                client.send(&ClientFrame::ping()).await?;
                match client.recv().await? {
                    Incoming::Server(ServerFrame::Pong) => break,
                    Incoming::Gateway(frame) if frame.message == GatewayFrame::TOO_MANY_REQUESTS => {
                        ensure!(
                            recovery.elapsed() < RECOVERY,
                            "still throttled {RECOVERY:?} after the burst; the rate is {RATE_PER_SEC}/s"
                        );
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    other => bail!("expected pong or Too Many Requests, got {other:?}"),
                }
            }
            client.close().await
        }
        .await,
    )
}
