//! Each row of the parity table: what it sends, what AWS documents, and why
//! it failed when it did.

use super::reference::*;
use super::*;

/// The close API Gateway sends at its idle and 2-hour limits (Going away).
pub(super) const GOING_AWAY: u16 = 1001;
/// The close for a frame or message over its limit (Message too big).
const TOO_BIG: u16 = 1009;
/// The close for a binary frame (Unsupported data).
const UNSUPPORTED: u16 = 1003;

/// A client through the distribution, or why there is none.
pub(super) async fn open(target: &Target) -> Result<Ws, String> {
    target
        .connector
        .connect(&target.edge, None)
        .await
        .map(|connected| connected.ws)
        .map_err(|error| format!("through the distribution: {error}"))
}

/// The row's outcome from a probe that says why it failed.
pub(super) fn outcome(id: &'static str, result: Result<String, String>) -> Outcome {
    match result {
        Ok(detail) => Outcome::pass(id, detail),
        Err(why) => Outcome::fail(id, why),
    }
}

pub(super) async fn expect_close(
    ws: &mut Ws,
    code: u16,
    limit: Duration,
) -> Result<String, String> {
    match ending(ws, limit).await? {
        Some(got) if got == code => Ok(format!("closed with {code}")),
        Some(got) => Err(format!("closed with {got}, not {code}")),
        None => Err(format!("closed without a code, not {code}")),
    }
}

pub(super) async fn frame_limit(target: &Target) -> Row {
    let run = async {
        let mut ws = open(target).await?;
        // One byte over 32 KB in a single frame.
        let text = "x".repeat(MAX_FRAME_BYTES + 1);
        send_fragmented(&mut ws, &text, MAX_FRAME_BYTES + 1, target.limit)
            .await
            .map_err(|e| e.to_string())?;
        expect_close(&mut ws, TOO_BIG, target.limit).await
    };
    Row::new(
        "A frame over 32 KB closes the connection with 1009",
        QUOTAS,
        outcome("frame-limit", run.await),
    )
}

pub(super) async fn message_limit(target: &Target) -> Row {
    let run = async {
        let mut ws = open(target).await?;
        // One byte over 128 KB, in frames of 32 KB (each within its own limit).
        let text = "x".repeat(MAX_MESSAGE_BYTES + 1);
        send_fragmented(&mut ws, &text, MAX_FRAME_BYTES, target.limit)
            .await
            .map_err(|e| e.to_string())?;
        expect_close(&mut ws, TOO_BIG, target.limit).await
    };
    Row::new(
        "A message over 128 KB (in frames of 32 KB) closes with 1009",
        QUOTAS,
        outcome("message-limit", run.await),
    )
}

pub(super) async fn binary_frame(target: &Target) -> Row {
    let run = async {
        let mut ws = open(target).await?;
        ws.send(Message::binary(br#"{"action":"ping"}"#.to_vec()))
            .await
            .map_err(|e| format!("sending a binary frame: {e}"))?;
        expect_close(&mut ws, UNSUPPORTED, target.limit).await
    };
    Row::new(
        "A binary frame closes the connection with 1003",
        BINARY,
        outcome("binary-frame", run.await),
    )
}

pub(super) async fn no_api_key(target: &Target) -> Row {
    let id = "no-api-key";
    let outcome = match &target.direct {
        Ok(direct) => {
            let mut outcome = expect_refusal(&target.connector, direct, id, None).await;
            if target.local.is_some() && outcome.status == Status::Pass {
                outcome.detail.push_str(
                    " (straight to the API layer, bypassing the edge that adds the key: only possible locally)",
                );
            }
            outcome
        }
        Err(why) => Outcome::fail(id, why.clone()),
    };
    Row::new(
        "$connect without the API key is refused with 403",
        API_KEY,
        outcome,
    )
}

pub(super) async fn route_selection(target: &Target) -> Row {
    let run = async {
        let mut ws = open(target).await?;
        round_trip(&mut ws, target.limit)
            .await
            .map_err(|e| format!("action ping: {e}"))?;
        let nonce = json!({ "devstackConformance": "route" });
        send(&mut ws, &ClientFrame::send_message(nonce), target.limit)
            .await
            .map_err(|e| e.to_string())?;
        wait_for(
            &mut ws,
            target.limit,
            "\"sent\" for action sendmessage",
            |frame| matches!(frame, ServerFrame::Sent { .. }).then_some(()),
        )
        .await
        .map_err(|e| format!("action sendmessage: {e}"))?;
        let _ = close(ws, target.limit).await;
        Ok("action ping → pong, action sendmessage → sent".to_string())
    };
    Row::new(
        "Route selection by `action` ($request.body.action)",
        ROUTES,
        outcome("route-selection", run.await),
    )
}

pub(super) async fn default_route(target: &Target) -> Row {
    let run = async {
        let mut ws = open(target).await?;
        let mut seen = Vec::new();
        for (what, text) in [
            ("an unknown action", r#"{"action":"no-such-route"}"#),
            ("a message that is not JSON", "hello"),
        ] {
            ws.send(Message::text(text))
                .await
                .map_err(|e| format!("sending {what}: {e}"))?;
            let code = wait_for(&mut ws, target.limit, what, |frame| match frame {
                ServerFrame::Error { code, .. } => Some(*code),
                _ => None,
            })
            .await;
            // The function answers every message $default hands it with an error frame.
            match code {
                Ok(code) => seen.push(format!("{what} → $default ({code:?})")),
                Err(error) => return Err(format!("{what}: {error}")),
            }
        }
        let _ = close(ws, target.limit).await;
        Ok(seen.join(", "))
    };
    Row::new(
        "No matching route, or no JSON: the $default route",
        DEFAULT_ROUTE,
        outcome("default-route", run.await),
    )
}

pub(super) async fn stage_throttling(target: &Target) -> Row {
    let run = async {
        let mut ws = open(target).await?;
        let flood = target.flood;
        for _ in 0..flood {
            ws.feed(Message::text(ClientFrame::ping().to_text()))
                .await
                .map_err(|e| e.to_string())?;
        }
        ws.flush().await.map_err(|e| e.to_string())?;
        let (mut pongs, mut throttled) = (0u32, 0u32);
        let deadline = Instant::now() + target.limit * 3;
        while pongs + throttled < flood {
            let left = deadline.saturating_duration_since(Instant::now());
            match client::next_frame(&mut ws, left).await {
                Ok(Frame::Text(text)) => match ServerFrame::parse(&text) {
                    Some(ServerFrame::Pong) => pongs += 1,
                    Some(_) => {}
                    None => match serde_json::from_str::<GatewayFrame>(&text) {
                        Ok(g) if g.message == GatewayFrame::TOO_MANY_REQUESTS => throttled += 1,
                        // Lambda's throttling (or any integration failure)
                        // reaches the client as "Internal server error": the
                        // stage let more through than the function could take.
                        Ok(g) => {
                            return Err(format!(
                                "after {pongs} pongs and {throttled} 429s API Gateway answered {:?} \
                                 (the function failed or was throttled: see its log; where the stage \
                                 admits more than the function takes, lower stageBurstLimit and \
                                 stageRateLimit for the check)",
                                g.message
                            ));
                        }
                        Err(_) => return Err(format!("an unexpected frame: {text}")),
                    },
                },
                Ok(other) => {
                    return Err(format!(
                        "after {pongs} pongs and {throttled} 429s: {other:?}"
                    ));
                }
                Err(error) => {
                    return Err(format!(
                        "{flood} pings sent at once: {pongs} pongs and {throttled} \"{}\" frames, then {error}",
                        GatewayFrame::TOO_MANY_REQUESTS
                    ));
                }
            }
        }
        drain(&mut ws, Duration::from_millis(200)).await;
        let _ = close(ws, target.limit).await;
        // Let the stage's bucket refill before the rows that follow.
        tokio::time::sleep(Duration::from_secs(1)).await;
        if throttled == 0 {
            return Err(format!(
                "{flood} pings sent at once were all served: no \"{}\" (raise --flood above the stage's burst)",
                GatewayFrame::TOO_MANY_REQUESTS
            ));
        }
        if pongs == 0 {
            return Err("every ping was throttled: none was served".into());
        }
        Ok(format!(
            "pings sent at once past the stage's burst: the rest get \"{}\" (429), one frame per message",
            GatewayFrame::TOO_MANY_REQUESTS
        ))
    };
    Row::new(
        "Messages over the stage's throttling get 429",
        THROTTLING,
        outcome("stage-throttling", run.await),
    )
}

pub(super) async fn sign_in_no_token(target: &Target) -> Row {
    const ROW: &str = "Sign-in on: $connect without a token gets 401 (no authorizer call)";
    if !target.signed_in {
        return Row::new(
            ROW,
            AUTHORIZER,
            Outcome::skip("sign-in-no-token", SIGN_IN_OFF),
        );
    }
    let mut outcome = expect_sign_in_refusal(&target.connector, &target.bare_edge).await;
    outcome.name = "sign-in-no-token";
    Row::new(ROW, AUTHORIZER, outcome)
}

pub(super) async fn sign_in_bad_token(target: &Target) -> Row {
    const ROW: &str = "Sign-in on: a token the authorizer denies gets 403";
    let id = "sign-in-bad-token";
    if !target.signed_in {
        return Row::new(ROW, AUTHORIZER, Outcome::skip(id, SIGN_IN_OFF));
    }
    // Not a JWT at all: the authorizer answers Deny.
    let bad = target
        .bare_edge
        .with_query(&target.token_parameter, "not.a.jwt");
    let outcome = match target.connector.connect(&bad, None).await {
        Err(ConnectError::Refused { status: 403 }) => Outcome::pass(id, "refused with HTTP 403"),
        Err(ConnectError::Refused { status }) => {
            Outcome::fail(id, format!("refused with HTTP {status}, not 403"))
        }
        Err(error) => Outcome::fail(id, format!("through the distribution: {error}")),
        Ok(connected) => {
            let _ = close(connected.ws, target.limit).await;
            Outcome::fail(id, "a client with a malformed token connected")
        }
    };
    Row::new(ROW, AUTHORIZER, outcome)
}

/// Why the sign-in rows are not run: no token is in use.
const SIGN_IN_OFF: &str =
    "sign-in off: the edge lets a client in without a token (against a deployment, give --token)";
