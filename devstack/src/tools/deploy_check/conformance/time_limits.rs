//! The idle and 2-hour rows: reached now through the control locally;
//! waited for against a deployment only with `--slow`.

use super::reference::*;
use super::rows::{GOING_AWAY, expect_close, open, outcome};
use super::*;

use protocol::limits::{IDLE_TIMEOUT, MAX_CONNECTION_LIFE};

/// How early or late a close may come against the documented limit: a
/// close well before it is a deviation too (something else closed the
/// connection), and one after it means the limit is not enforced.
const MARGIN: Duration = Duration::from_secs(60);
/// The 2-hour row's client pings this often, so it never reaches the idle limit.
const KEEPALIVE: Duration = Duration::from_secs(300);

/// Waits for the close at `limit` (between `limit - MARGIN` and `limit +
/// MARGIN`), pinging every `keepalive` when given.
async fn wait_for_limit(
    ws: &mut Ws,
    limit: Duration,
    keepalive: Option<Duration>,
) -> Result<String, String> {
    let started = Instant::now();
    let within = limit + MARGIN;
    let deadline = started + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("still open after {}s", within.as_secs()));
        }
        let step = keepalive.map_or(left, |k| k.min(left));
        match ending(ws, step).await {
            Ok(code) => {
                let took = started.elapsed();
                let secs = took.as_secs();
                if took + MARGIN < limit {
                    return Err(format!(
                        "closed ({code:?}) after {secs} s, before the documented {} s",
                        limit.as_secs()
                    ));
                }
                return match code {
                    Some(GOING_AWAY) => Ok(format!("closed with 1001 after {secs} s")),
                    other => Err(format!("closed with {other:?} after {secs} s, not 1001")),
                };
            }
            Err(why) if why.starts_with("no frame") => {
                if keepalive.is_some() {
                    send(ws, &ClientFrame::ping(), Duration::from_secs(10))
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            Err(why) => return Err(why),
        }
    }
}

pub async fn time_limits(target: &Target) -> (Row, Row) {
    const IDLE: &str = "Idle for 10 minutes: closed with 1001";
    const LIFE: &str = "2 hours after the handshake: closed with 1001";
    match &target.local {
        Some(local) => {
            let idle = expire(target, local, Limit::Idle).await;
            let life = expire(target, local, Limit::Life).await;
            (
                Row::new(IDLE, QUOTAS, outcome("idle-timeout", idle)),
                Row::new(LIFE, QUOTAS, outcome("max-connection-life", life)),
            )
        }
        None if !target.slow => (
            Row::new(
                IDLE,
                QUOTAS,
                Outcome::skip("idle-timeout", "takes 10 minutes: --slow"),
            ),
            Row::new(
                LIFE,
                QUOTAS,
                Outcome::skip("max-connection-life", "takes 2 hours: --slow"),
            ),
        ),
        None => {
            let idle = async {
                let mut ws = open(target).await?;
                wait_for_limit(&mut ws, IDLE_TIMEOUT, None).await
            };
            let life = async {
                let mut ws = open(target).await?;
                wait_for_limit(&mut ws, MAX_CONNECTION_LIFE, Some(KEEPALIVE)).await
            };
            let (idle, life) = tokio::join!(idle, life);
            (
                Row::new(IDLE, QUOTAS, outcome("idle-timeout", idle)),
                Row::new(LIFE, QUOTAS, outcome("max-connection-life", life)),
            )
        }
    }
}

/// Locally: the control makes one connection reach `limit` now.
async fn expire(target: &Target, local: &Local, limit: Limit) -> Result<String, String> {
    let mut a = open(target).await?;
    let mut b = open(target).await?;
    let connection = connection_id(&mut a, &mut b, target.limit).await?;
    local
        .control
        .expire(Some(&connection), limit)
        .await
        .map_err(|e| format!("the control: {e:#}"))?;
    let closed = expect_close(&mut a, GOING_AWAY, target.limit).await?;
    // The other connection is untouched.
    round_trip(&mut b, target.limit)
        .await
        .map_err(|e| format!("the other connection after the expiry: {e}"))?;
    let _ = close(b, target.limit).await;
    Ok(format!("{closed} (reached now through the control)"))
}
