//! Time and faults on demand (`devstack control`): each provokes on the
//! local stack what happens on AWS but could not be provoked locally, and
//! shows what the FUNCTION does about it.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use devstack::control::{Limit, PostFault, RouteFault};
use e2e::{Client, Incoming, Stack};
use protocol::{ClientFrame, GatewayFrame, ServerFrame};
use serde_json::json;

/// How long a test waits for a line in the stack's log.
const LOG_WAIT: Duration = Duration::from_secs(15);
/// The function removes a connection after a 410 only once its record is
/// older than its `GONE_GRACE` (30 s, functions/websocket-handler/src/registry.rs:
/// its `$connect` may still be running); the tests wait past it.
const PAST_GONE_GRACE: Duration = Duration::from_secs(31);

/// Two clients through the edge, and A's connection id (as B sees it in a
/// message from A).
async fn pair(stack: &Stack) -> anyhow::Result<(Client, Client, String)> {
    let mut a = Client::connect(stack.edge()).await?;
    let mut b = Client::connect(stack.edge()).await?;
    a.ping().await?;
    b.ping().await?;
    let recipients = broadcast(&mut a, "hello").await?;
    ensure!(
        recipients == 1,
        "A reached {recipients} connections, expected B only"
    );
    let from = match b.recv_server().await? {
        ServerFrame::Message { from, .. } => from,
        other => bail!("B expected A's message, got {other:?}"),
    };
    Ok((a, b, from))
}

/// Sends `sendmessage` and returns how many connections the function reached.
async fn broadcast(client: &mut Client, data: &str) -> anyhow::Result<usize> {
    client.send(&ClientFrame::send_message(json!(data))).await?;
    loop {
        match client.recv_server().await? {
            ServerFrame::Sent { recipients } => return Ok(recipients),
            // Messages from the other client may come first.
            ServerFrame::Message { .. } => continue,
            other => bail!("expected the sent frame, got {other:?}"),
        }
    }
}

/// B's connection id, from a message B sends to A.
async fn id_of(b: &mut Client, a: &mut Client) -> anyhow::Result<String> {
    broadcast(b, "who am I").await?;
    match a.recv_server().await? {
        ServerFrame::Message { from, .. } => Ok(from),
        other => bail!("A expected B's message, got {other:?}"),
    }
}

fn expect_gateway_error(incoming: Incoming) -> anyhow::Result<()> {
    match incoming {
        Incoming::Gateway(frame) if frame.message == GatewayFrame::INTERNAL_SERVER_ERROR => Ok(()),
        other => bail!("expected API Gateway's Internal server error frame, got {other:?}"),
    }
}

#[tokio::test]
async fn connections_reach_the_idle_and_two_hour_limits_on_demand() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack.explain(
        async {
            let control = stack.control()?;
            let (mut a, mut b, a_id) = pair(&stack).await?;
            // One connection at the 2-hour limit: API Gateway's 1001, and its
            // $disconnect runs; the other connection is untouched.
            let answer = control.expire(Some(&a_id), Limit::Life).await?;
            ensure!(answer["expired"] == 1, "answer {answer}");
            ensure!(a.expect_close().await? == Some(1001), "A's close code");
            stack
                .wait_for_log(
                    &format!("connection_id={a_id} route=\"$disconnect\""),
                    1,
                    LOG_WAIT,
                )
                .await?;
            b.ping().await.context("B after A expired")?;
            // An id that is not open is named in the refusal.
            let refused = control.expire(Some(&a_id), Limit::Idle).await;
            ensure!(
                refused
                    .as_ref()
                    .is_err_and(|e| e.to_string().contains(&a_id)),
                "expiring a closed connection: {refused:?}"
            );
            // Every connection at the idle limit.
            let answer = control.expire(None, Limit::Idle).await?;
            ensure!(answer["expired"] == 1, "answer {answer}");
            ensure!(b.expect_close().await? == Some(1001), "B's close code");
            Ok(())
        }
        .await,
    )
}

#[tokio::test]
async fn a_broadcast_over_a_410_removes_the_connection_and_a_429_is_retried() -> anyhow::Result<()>
{
    let stack = Stack::start().await?;
    stack.explain(
        async {
            let control = stack.control()?;
            let (mut a, mut b, _) = pair(&stack).await?;
            let b_id = id_of(&mut b, &mut a).await?;

            // A 429 on the post to B: the function's post client retries it, B gets the message.
            control.fail_posts(&b_id, PostFault::Throttled, 1).await?;
            ensure!(
                broadcast(&mut a, "through a 429").await? == 1,
                "the 429 was not retried"
            );
            match b.recv_server().await? {
                ServerFrame::Message { data, .. } if data == json!("through a 429") => {}
                other => bail!("B expected the retried message, got {other:?}"),
            }
            stack
                .wait_for_log("post answered 429 (control fault)", 1, LOG_WAIT)
                .await?;

            // A 410 on the post to B, once B's record is past the function's
            // grace: B counts as gone and the function removes it from its
            // registry, so later broadcasts skip it (B is in fact still
            // connected: the function trusts @connections, as on AWS).
            tokio::time::sleep(PAST_GONE_GRACE).await;
            control.fail_posts(&b_id, PostFault::Gone, 1).await?;
            ensure!(
                broadcast(&mut a, "into a 410").await? == 0,
                "the 410 counted as delivered"
            );
            stack
                .wait_for_log("connection is gone; removed", 1, LOG_WAIT)
                .await?;
            let after = broadcast(&mut a, "after the 410").await?;
            ensure!(
                after == 0,
                "B was not removed after its 410: the next broadcast reached {after}"
            );
            b.ping().await.context("B itself is still connected")?;
            Ok(())
        }
        .await,
    )
}

#[tokio::test]
async fn a_dropped_client_gets_no_disconnect_and_the_next_broadcast_cleans_it_up()
-> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack.explain(
        async {
            let control = stack.control()?;
            let (mut a, mut b, _) = pair(&stack).await?;
            let b_id = id_of(&mut b, &mut a).await?;
            tokio::time::sleep(PAST_GONE_GRACE).await;
            control.drop_connection(&b_id).await?;
            match b.recv().await? {
                Incoming::Ended => {}
                other => {
                    bail!("B expected its connection to end without a close frame, got {other:?}")
                }
            }
            // No $disconnect for B: its row stays until a post finds it gone.
            tokio::time::sleep(Duration::from_millis(500)).await;
            ensure!(
                !stack
                    .log()
                    .contains(&format!("connection_id={b_id} route=\"$disconnect\"")),
                "$disconnect ran for the dropped connection"
            );
            ensure!(
                broadcast(&mut a, "to a lost client").await? == 0,
                "a dropped client counted as reached"
            );
            // The post got 410 and the function removed the row `$disconnect` left.
            stack
                .wait_for_log("connection is gone; removed", 1, LOG_WAIT)
                .await?;
            ensure!(
                !stack
                    .log()
                    .contains(&format!("connection_id={b_id} route=\"$disconnect\"")),
                "$disconnect ran for the dropped connection"
            );
            Ok(())
        }
        .await,
    )
}

#[tokio::test]
async fn failed_delayed_and_killed_invocations_then_the_next_works() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack.explain(
        async {
            let control = stack.control()?;
            let mut client = Client::connect(stack.edge()).await?;
            client.ping().await?;

            control.fault_route("ping", RouteFault::Fail, 1).await?;
            client.send(&ClientFrame::ping()).await?;
            expect_gateway_error(client.recv().await?)?;
            client.ping().await.context("the ping after a failed one")?;

            control
                .fault_route("ping", RouteFault::Delay { millis: 700 }, 1)
                .await?;
            let sent = Instant::now();
            client.ping().await?;
            ensure!(
                sent.elapsed() >= Duration::from_millis(700),
                "the delayed ping took {:?}",
                sent.elapsed()
            );

            // Killed with the event in hand: API Gateway's error frame; the
            // pool replaces the process and the next message works.
            control.kill_invocations(1).await?;
            client.send(&ClientFrame::ping()).await?;
            expect_gateway_error(client.recv().await?)?;
            stack
                .wait_for_log("killed mid-invocation (control fault)", 1, LOG_WAIT)
                .await?;
            stack
                .wait_for_log("result=\"crashed\"", 1, LOG_WAIT)
                .await?;
            client
                .ping()
                .await
                .context("the ping after a killed invocation")?;
            Ok(())
        }
        .await,
    )
}
