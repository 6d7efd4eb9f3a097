//! Sign-in on `$connect` through the local edge, with real WebSocket clients,
//! the real authorizer binary and real tokens from the stack's local OpenID
//! issuer: no token → 401 (the authorizer not invoked), a bad token → 403,
//! RS256 and ES256 tokens connect, the sender's user id arrives with its
//! message, a second handshake with the same token within the TTL is
//! answered from the policy cache, and an authorizer that cannot reach its
//! issuer → 500.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use e2e::{Client, Stack, StackConfig};
use local_issuer::{LocalIssuer, MintRequest};
use protocol::{ClientFrame, ServerFrame};
use serde_json::json;

/// The edge URL with `?token=`.
fn with_token(stack: &Stack, token: &str) -> String {
    format!("{}/?token={token}", stack.edge().trim_end_matches('/'))
}

/// The stack's log lines of the local Lambda invoking the authorizer
/// function (one `invoke` report per invocation).
fn authorizer_invocations(stack: &Stack) -> anyhow::Result<usize> {
    let topology = stack.topology()?;
    let name = &topology
        .sign_in
        .as_ref()
        .context("the program has an authorizer")?
        .function
        .name;
    let function = format!("function={name} ");
    Ok(stack
        .log()
        .lines()
        .filter(|line| line.contains(&function) && line.contains(" invoke "))
        .count())
}

async fn handshake_status(url: &str) -> anyhow::Result<u16> {
    Client::handshake(url, None, None).await?.refused()
}

#[tokio::test]
async fn no_token_401_bad_token_403_rs256_and_es256_connect() -> anyhow::Result<()> {
    let stack = Stack::start_with(StackConfig::new().sign_in()).await?;
    stack.explain(
        async {
            let status = handshake_status(stack.edge()).await?;
            ensure!(status == 401, "without a token: {status}");
            ensure!(
                authorizer_invocations(&stack)? == 0,
                "the authorizer ran for a handshake without a token"
            );
            let status = handshake_status(&with_token(&stack, "not-a-jwt")).await?;
            ensure!(status == 403, "with a malformed token: {status}");
            // Signed by an issuer the stack does not trust.
            let stranger = LocalIssuer::start("websocket-waf-dev").await?;
            let foreign = stranger.issuer().mint(&MintRequest::for_user("mallory"))?;
            let status = handshake_status(&with_token(&stack, &foreign)).await?;
            ensure!(status == 403, "with another issuer's token: {status}");

            for alg in ["RS256", "ES256"] {
                let mut request = MintRequest::for_user(format!("user-{alg}"));
                request.alg = Some(alg.to_string());
                let token = stack.token(&request).await?;
                let mut client = Client::connect(&with_token(&stack, &token))
                    .await
                    .with_context(|| format!("a valid {alg} token"))?;
                client.ping().await?;
                client.close().await?;
            }
            Ok(())
        }
        .await,
    )
}

#[tokio::test]
async fn the_senders_user_id_arrives_and_the_policy_is_cached() -> anyhow::Result<()> {
    let stack = Stack::start_with(StackConfig::new().sign_in()).await?;
    stack.explain(
        async {
            let alice = stack.token(&MintRequest::for_user("alice")).await?;
            let bob = stack.token(&MintRequest::for_user("bob")).await?;
            let mut sender = Client::connect(&with_token(&stack, &alice)).await?;
            let mut receiver = Client::connect(&with_token(&stack, &bob)).await?;
            sender
                .send(&ClientFrame::send_message(json!({"text": "hi"})))
                .await?;
            loop {
                match receiver.recv_server().await? {
                    ServerFrame::Message { user_id, data, .. } => {
                        ensure!(data == json!({"text": "hi"}), "{data}");
                        ensure!(user_id.as_deref() == Some("alice"), "userId {user_id:?}");
                        break;
                    }
                    ServerFrame::Sent { .. } | ServerFrame::Pong => {}
                    other => bail!("expected alice's message, got {other:?}"),
                }
            }
            ensure!(authorizer_invocations(&stack)? == 2, "one per token so far");
            // The same token within the TTL: the cached policy, no invocation.
            let mut again = Client::connect(&with_token(&stack, &alice)).await?;
            again.ping().await?;
            // Give a (wrong) invocation's report time to reach the log.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let invocations = authorizer_invocations(&stack)?;
            ensure!(
                invocations == 2,
                "{invocations} invocations: the cache was not used"
            );
            for client in [sender, receiver, again] {
                client.close().await?;
            }
            Ok(())
        }
        .await,
    )
}

#[tokio::test]
async fn an_authorizer_that_cannot_reach_its_issuer_gets_500() -> anyhow::Result<()> {
    // A real issuer that stops answering: its token, then its port closed.
    let gone = LocalIssuer::start("websocket-waf-dev").await?;
    let token = gone.issuer().mint(&MintRequest::for_user("alice"))?;
    let url = gone.url().to_string();
    drop(gone);
    let stack = Stack::start_with(StackConfig::new().issuer(&url)).await?;
    stack.explain(
        async {
            let status = handshake_status(&with_token(&stack, &token)).await?;
            ensure!(status == 500, "with the issuer unreachable: {status}");
            Ok(())
        }
        .await,
    )
}

#[tokio::test]
async fn check_signs_in_with_a_token_from_the_local_issuer() -> anyhow::Result<()> {
    let stack = Stack::start_with(StackConfig::new().sign_in()).await?;
    let endpoints = stack.endpoints().clone();
    let issuer = endpoints.issuer.clone().context("the stack's issuer")?;
    stack.explain(
        async {
            let run = tokio::process::Command::new(e2e::stack::devstack_binary()?)
                .args(["check", &endpoints.edge, "--direct", &endpoints.api])
                .args(["--issuer", &issuer, "--messages", "5", "--json"])
                .env_remove("DEVSTACK_API_KEY")
                .env_remove("DEVSTACK_TOKEN")
                .kill_on_drop(true)
                .output();
            let output = e2e::within(Duration::from_secs(120), "devstack check", run).await??;
            let report: serde_json::Value = serde_json::from_slice(&output.stdout)
                .with_context(|| String::from_utf8_lossy(&output.stderr).into_owned())?;
            let passed = |name: &str| {
                report["checks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["name"] == name && c["status"] == "pass")
            };
            ensure!(report["ok"] == true, "check failed: {report:#}");
            for name in ["handshake", "broadcast", "sign-in-no-token"] {
                ensure!(passed(name), "{name} did not pass: {report:#}");
            }
            ensure!(output.status.success(), "exit {}", output.status);
            Ok(())
        }
        .await,
    )
}

/// A token in the query string must not reach the logs (it is a bearer
/// credential): the stack at DEBUG, both functions at TRACE, a signed-in
/// client that connects, sends and closes; no line holds the token or its
/// signature.
#[tokio::test]
async fn no_log_line_holds_the_token() -> anyhow::Result<()> {
    let stack = Stack::start_with(
        StackConfig::new()
            .sign_in()
            .env("AWS_LAMBDA_LOG_LEVEL", "TRACE")
            .env("RUST_LOG", "debug"),
    )
    .await?;
    let token = stack.token(&MintRequest::for_user("carol")).await?;
    let signature = token.rsplit('.').next().unwrap_or_default().to_string();
    stack.explain(
        async {
            let mut client = Client::connect(&with_token(&stack, &token)).await?;
            client
                .send(&ClientFrame::send_message(json!({"text": "x"})))
                .await?;
            // The `sent` reply first: the two invocations run side by side,
            // so a ping sent at once may be answered before it.
            let reply = client.recv_server().await?;
            ensure!(
                matches!(reply, ServerFrame::Sent { .. }),
                "expected sent, got {reply:?}"
            );
            client.ping().await?;
            client.close().await?;
            // The authorizer's and the handler's lines arrive a moment later.
            stack
                .wait_for_log("\"$disconnect\"", 1, Duration::from_secs(20))
                .await?;
            ensure!(
                authorizer_invocations(&stack)? == 1,
                "the authorizer ran once"
            );
            ensure!(signature.len() > 20, "a signature: {signature}");
            for line in stack.log().lines() {
                ensure!(
                    !line.contains(&signature),
                    "a log line holds the token: {line}"
                );
            }
            Ok(())
        }
        .await,
    )
}

#[tokio::test]
async fn devstack_token_prints_a_token_of_the_running_stack_or_names_the_missing_stack()
-> anyhow::Result<()> {
    let token = |issuer: String| async move {
        let run = tokio::process::Command::new(e2e::stack::devstack_binary()?)
            .args([
                "token", "--sub", "dave", "--alg", "es256", "--issuer", &issuer,
            ])
            .kill_on_drop(true)
            .output();
        e2e::within(Duration::from_secs(60), "devstack token", run)
            .await?
            .context("running devstack token")
    };
    // No stack: a port nothing listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0")?;
    let nobody = format!("http://{}", free.local_addr()?);
    drop(free);
    let output = token(nobody).await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success(),
        "devstack token succeeded without a stack"
    );
    ensure!(
        stderr.contains("devstack up"),
        "the error does not name the stack: {stderr}"
    );

    let stack = Stack::start_with(StackConfig::new().sign_in()).await?;
    let issuer = stack
        .endpoints()
        .issuer
        .clone()
        .context("the stack's issuer")?;
    stack.explain(
        async {
            let output = token(issuer).await?;
            ensure!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let printed = String::from_utf8(output.stdout)?;
            let jwt = printed.trim();
            ensure!(
                printed.lines().count() == 1 && jwt.split('.').count() == 3,
                "{printed}"
            );
            let mut client = Client::connect(&with_token(&stack, jwt)).await?;
            client.ping().await?;
            client.close().await
        }
        .await,
    )
}
