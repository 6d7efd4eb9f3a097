//! Sign-in on `$connect`, when the program attaches its authorizer: the
//! authorizer function runs in a Lambda pool of its own (its own processes
//! and Runtime API, the environment the program gives it), and its tokens
//! come from the local OpenID issuer the stack serves on `--issuer-addr` —
//! or from a real issuer named with `--issuer`.

use std::sync::Arc;

use anyhow::Context as _;
use local_issuer::LocalIssuer;
use pulumi_program::Topology;
use tracing::info;

use super::reload::FunctionSource;
use super::start::workspace_manifest;
use super::{Endpoints, UpOptions};
use crate::console::EventBus;
use crate::issuer::{self, DEFAULT_AUDIENCE};
use crate::lambda::LambdaPool;
use crate::reload::build::{AUTHORIZER_PACKAGE, CargoFunction};
use crate::stack::program::{IssuerTarget, authorizer_env, first_audience, function_config};

/// The authorizer's processes at most: API Gateway runs it once per
/// handshake not answered from the cache.
const AUTHORIZER_CONCURRENCY: usize = 4;

/// Sign-in, running.
pub(super) struct SignIn {
    /// The local issuer, unless `--issuer` names a real one.
    local_issuer: Option<LocalIssuer>,
    /// `ISSUER` of the authorizer function.
    issuer_url: String,
    pub(super) pool: Arc<LambdaPool>,
    token_parameter: String,
    ttl_secs: u32,
}

impl SignIn {
    /// Starts the issuer (unless a real one is named) and the authorizer's
    /// pool, when the program attaches an authorizer to `$connect`.
    pub(super) async fn start(
        topology: &Topology,
        options: &UpOptions,
        endpoints: &mut Endpoints,
        api_addr: std::net::SocketAddr,
        events: EventBus,
    ) -> anyhow::Result<Option<SignIn>> {
        let Some(spec) = topology.sign_in.as_ref().filter(|s| s.enabled) else {
            return Ok(None);
        };
        let (local_issuer, target) = match &options.issuer {
            Some(url) => (
                None,
                IssuerTarget {
                    issuer: url.clone(),
                    jwks_url: None,
                    local_audience: None,
                },
            ),
            None => {
                let listener = crate::listener::bind(options.issuer_addr).with_context(|| {
                    format!(
                        "cannot listen on {} for the local OpenID issuer (is another devstack running? \
                         try another --issuer-addr)",
                        options.issuer_addr
                    )
                })?;
                let audience =
                    first_audience(topology).unwrap_or_else(|| DEFAULT_AUDIENCE.to_string());
                let local = issuer::serve(listener, &audience)?;
                let target = IssuerTarget {
                    issuer: local.url().to_string(),
                    jwks_url: Some(local.issuer().jwks_uri()),
                    local_audience: Some(audience.clone()),
                };
                info!(issuer = local.url(), audience, "local OpenID issuer ready");
                (Some(local), target)
            }
        };
        if local_issuer.is_some() {
            endpoints.issuer = Some(target.issuer.clone());
        }
        let binary = authorizer_source(options)
            .first_binary()
            .await
            .context("getting the authorizer function")?;
        let env = authorizer_env(topology, endpoints, api_addr, &target)?;
        let pool = LambdaPool::start(
            function_config(&spec.function, binary, env, AUTHORIZER_CONCURRENCY),
            events,
        )
        .await
        .context("starting the authorizer function")?;
        Ok(Some(SignIn {
            local_issuer,
            issuer_url: target.issuer,
            pool,
            token_parameter: spec.token_parameter.clone(),
            ttl_secs: spec.result_ttl_secs,
        }))
    }

    /// The banner's sign-in line.
    pub(super) fn banner_line(&self) -> String {
        let whose = if self.local_issuer.is_some() {
            "local issuer; `devstack token --sub alice` mints a token"
        } else {
            "--issuer"
        };
        format!(
            "on: {} ({whose}); token in ?{}=, answers cached {}s",
            self.issuer_url, self.token_parameter, self.ttl_secs
        )
    }

    /// A wscat URL with a token: `base` plus `?token=…`, the token minted
    /// by `devstack token` (naming the issuer when not at its default).
    pub(super) fn wscat_url(&self, base: &str) -> String {
        let token = if self.local_issuer.is_none() {
            "<a token of the issuer>".to_string()
        } else if self.issuer_url == issuer::DEFAULT_URL {
            "$(cargo run -q -p devstack -- token --sub alice)".to_string()
        } else {
            format!(
                "$(cargo run -q -p devstack -- token --sub alice --issuer {})",
                self.issuer_url
            )
        };
        format!("\"{base}?{}={token}\"", self.token_parameter)
    }

    pub(super) async fn shutdown(self) {
        self.pool.shutdown().await;
        drop(self.local_issuer);
    }
}

/// Where the authorizer's binary comes from: `--authorizer-bin`, or its
/// crate built with cargo in the same workspace as the handler's.
fn authorizer_source(options: &UpOptions) -> FunctionSource {
    match &options.authorizer_bin {
        Some(path) => FunctionSource::File(path.clone()),
        None => FunctionSource::Cargo(CargoFunction::for_package(
            workspace_manifest(options),
            AUTHORIZER_PACKAGE,
        )),
    }
}

/// The banner's sign-in line when the program attaches no authorizer.
pub(super) fn off_line(topology: &Topology) -> String {
    match &topology.sign_in {
        Some(_) => "off (signIn: off): anyone who comes through the edge connects".to_string(),
        None => "off: the program has no $connect authorizer".to_string(),
    }
}
