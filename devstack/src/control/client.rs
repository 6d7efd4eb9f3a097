//! `devstack control …`: talks to a running stack's control endpoint, found
//! in its ready file, with signed JSON requests. The e2e tests use the same
//! client.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::plan::{PostFault, RouteFault};
use super::{Limit, SERVICE};
use crate::sigv4::client::SignedClient;
use crate::stack::Endpoints;

/// A running stack's control endpoint.
#[derive(Debug, Clone)]
pub struct ControlClient {
    http: SignedClient,
}

impl ControlClient {
    /// The control of the stack that wrote `endpoints`.
    pub fn new(endpoints: &Endpoints) -> anyhow::Result<Self> {
        let http = SignedClient::new(&endpoints.control, &endpoints.region, SERVICE)
            .context("the ready file's control endpoint")?;
        Ok(ControlClient { http })
    }

    /// Sends one signed JSON request; the answer's JSON body on 2xx, its
    /// message as the error otherwise.
    pub async fn call(&self, method: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let body = Bytes::from(serde_json::to_vec(body)?);
        let (status, bytes) = self
            .http
            .send(method, path, body, Some("application/json"))
            .await
            .with_context(|| format!("the control at {}", self.http.authority()))?;
        let answer: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({ "message": String::from_utf8_lossy(&bytes) }));
        if !status.is_success() {
            let message = answer["message"].as_str().unwrap_or("(no message)");
            bail!("the control answered {status}: {message}");
        }
        Ok(answer)
    }

    /// The request `call` sends, for the control's own tests.
    #[cfg(test)]
    pub(crate) fn signed(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<hyper::Request<http_body_util::Full<Bytes>>> {
        self.http
            .signed(method, path, body, Some("application/json"))
    }

    /// Expires `connection` (or every open connection) at `limit` now.
    pub async fn expire(&self, connection: Option<&str>, limit: Limit) -> anyhow::Result<Value> {
        self.call(
            "POST",
            "/expire",
            &json!({"connection": connection, "limit": limit}),
        )
        .await
    }

    /// Drops `connection` without a close frame or `$disconnect`.
    pub async fn drop_connection(&self, connection: &str) -> anyhow::Result<Value> {
        self.call("POST", "/drop", &json!({ "connection": connection }))
            .await
    }

    /// The next `count` posts to `connection` get `answer`.
    pub async fn fail_posts(
        &self,
        connection: &str,
        answer: PostFault,
        count: u32,
    ) -> anyhow::Result<Value> {
        self.call(
            "POST",
            "/faults/post",
            &json!({"connection": connection, "answer": answer, "count": count}),
        )
        .await
    }

    /// The next `count` invocations of `route` get `fault`.
    pub async fn fault_route(
        &self,
        route: &str,
        fault: RouteFault,
        count: u32,
    ) -> anyhow::Result<Value> {
        self.call(
            "POST",
            "/faults/route",
            &json!({"route": route, "fault": fault, "count": count}),
        )
        .await
    }

    /// The processes of the next `count` invocations are killed mid-invocation.
    pub async fn kill_invocations(&self, count: u32) -> anyhow::Result<Value> {
        self.call("POST", "/faults/kill", &json!({ "count": count }))
            .await
    }

    /// Disarms every fault.
    pub async fn clear(&self) -> anyhow::Result<Value> {
        self.call("DELETE", "/faults", &json!({})).await
    }
}

/// `devstack control`: time and faults on demand for a running `devstack up`.
#[derive(Debug, Args)]
pub struct ControlArgs {
    /// The ready file the stack was started with (`devstack up --ready-file`).
    #[arg(long)]
    ready_file: PathBuf,
    #[command(subcommand)]
    command: ControlCommand,
}

#[derive(Debug, Subcommand)]
enum ControlCommand {
    /// Close a connection (or all) now with the close API Gateway sends at its idle or 2-hour limit.
    Expire {
        /// The connection id; every open connection when absent.
        #[arg(long)]
        connection: Option<String>,
        #[arg(long, value_enum, default_value = "idle")]
        limit: LimitArg,
    },
    /// Drop a client's socket without a close frame and without running $disconnect.
    Drop {
        #[arg(long)]
        connection: String,
    },
    /// @connections answers the next N posts to a connection with 410 or 429.
    Posts {
        #[arg(long)]
        connection: String,
        #[arg(long, value_enum)]
        answer: AnswerArg,
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Fail, or delay by --delay-ms, the next N invocations of a route.
    Route {
        #[arg(long)]
        route: String,
        /// Delay instead of failing.
        #[arg(long)]
        delay_ms: Option<u64>,
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Kill the function process of the next N invocations once it has the event.
    Kill {
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Disarm every fault.
    Clear,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LimitArg {
    Idle,
    Life,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AnswerArg {
    /// 410 GoneException.
    Gone,
    /// 429 LimitExceededException.
    Throttled,
}

/// Runs one `devstack control` command and prints the control's answer.
pub async fn run(args: ControlArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.ready_file).with_context(|| {
        format!(
            "reading the ready file {} (is the stack running with --ready-file?)",
            args.ready_file.display()
        )
    })?;
    let endpoints: Endpoints = serde_json::from_str(&text).with_context(|| {
        format!(
            "reading {} as devstack's ready file",
            args.ready_file.display()
        )
    })?;
    let client = ControlClient::new(&endpoints)?;
    let answer = match args.command {
        ControlCommand::Expire { connection, limit } => {
            let limit = match limit {
                LimitArg::Idle => Limit::Idle,
                LimitArg::Life => Limit::Life,
            };
            client.expire(connection.as_deref(), limit).await?
        }
        ControlCommand::Drop { connection } => client.drop_connection(&connection).await?,
        ControlCommand::Posts {
            connection,
            answer,
            count,
        } => {
            let answer = match answer {
                AnswerArg::Gone => PostFault::Gone,
                AnswerArg::Throttled => PostFault::Throttled,
            };
            client.fail_posts(&connection, answer, count).await?
        }
        ControlCommand::Route {
            route,
            delay_ms,
            count,
        } => {
            let fault = delay_ms.map_or(RouteFault::Fail, |millis| RouteFault::Delay { millis });
            client.fault_route(&route, fault, count).await?
        }
        ControlCommand::Kill { count } => client.kill_invocations(count).await?,
        ControlCommand::Clear => client.clear().await?,
    };
    println!("{answer}");
    Ok(())
}
