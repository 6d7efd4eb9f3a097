//! The edge's WAF rate-based rule, configured from the stack config: after
//! the configured number of handshakes from one client IP, the next is
//! refused with 403; other client IPs are unaffected.

use std::net::IpAddr;

use anyhow::{Context, ensure};
use e2e::{Client, Stack, StackConfig};

const LIMIT: u64 = 10;

#[tokio::test]
async fn the_rate_rule_blocks_handshakes_over_the_configured_limit() -> anyhow::Result<()> {
    let stack = Stack::start_with(StackConfig::new().set("rateLimit", LIMIT)).await?;
    stack.explain(
        async {
            // A source address of its own, so no other traffic counts against it.
            let source: IpAddr = "127.0.0.7".parse()?;
            for n in 1..=LIMIT {
                let client = Client::handshake(stack.edge(), None, Some(source))
                    .await?
                    .accepted()
                    .with_context(|| format!("handshake {n} of the {LIMIT} allowed"))?;
                ensure!(
                    client.local_addr().ip() == source,
                    "the client did not connect from {source}"
                );
                client.close().await?;
            }
            let status = Client::handshake(stack.edge(), None, Some(source))
                .await?
                .refused()
                .with_context(|| {
                    format!(
                        "handshake {} from {source}, over the limit of {LIMIT}",
                        LIMIT + 1
                    )
                })?;
            ensure!(status == 403, "over the limit: expected 403, got {status}");
            let topology = stack.topology()?;
            ensure!(
                topology.waf.rate_limit == LIMIT,
                "the stack config sets rateLimit {LIMIT}, the program reads {}",
                topology.waf.rate_limit
            );
            let rule = &topology.waf.rate_rule_name;
            ensure!(
                stack
                    .log()
                    .lines()
                    .any(|l| l.contains(rule.as_str()) && l.contains("127.0.0.7")),
                "no log line names the rule {rule:?} and the blocked client 127.0.0.7"
            );

            let other: IpAddr = "127.0.0.8".parse()?;
            let mut client = Client::handshake(stack.edge(), None, Some(other))
                .await?
                .accepted()
                .with_context(|| format!("{other} is under the limit"))?;
            client.ping().await?;
            client.close().await
        }
        .await,
    )
}
