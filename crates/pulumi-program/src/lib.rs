//! The Pulumi program, read without the Pulumi CLI.
//!
//! `Pulumi.yaml` and `Pulumi.<stack>.yaml` are the single description of the
//! deployment. This crate turns them into a [`Topology`]: the facts the local
//! stack needs to behave as the deployed one does (routes and which need the
//! API key, the stage, the WAF rate limit, throttling, the function's settings
//! and environment, the connections table).
//!
//! [`check::check`] proves the same files offline against pulumi-aws's types
//! and the invariants of the scheme, since the Pulumi CLI is not available
//! where this project is built.
//!
//! [`Topology::not_played`] lists what the local stack does not play (alarms,
//! dashboard, topics, IAM, log groups...), [`Topology::coverage_summary`] says
//! it in one line.

use std::collections::BTreeMap;
use std::path::Path;

pub mod check;
mod coverage;
mod eval;
pub mod facts;
mod interpolation;
mod program;
mod schema;
mod topology;

pub use check::Diagnostic;

/// What the local stack needs to know of the program, for one stack.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub project: String,
    pub stack: String,
    /// The stack's `aws:region`.
    pub region: String,
    pub api: ApiSpec,
    pub stage: StageSpec,
    /// Every `aws:apigatewayv2/route:Route` of the API.
    pub routes: Vec<RouteSpec>,
    pub waf: WafSpec,
    pub function: FunctionSpec,
    /// The connections table (the function's `CONNECTIONS_TABLE`).
    pub table: TableSpec,
    /// The continuations' claims table (the function's `CLAIMS_TABLE`).
    pub claims_table: TableSpec,
    /// The origin custom header CloudFront adds to every request (`x-api-key`).
    pub origin_api_key_header: String,
    /// The distribution's aliases (config `domainNames` with `customDomain`
    /// 1): names with an ACM certificate, which the local stack does not play.
    pub aliases: Vec<String>,
    /// Sign-in on `$connect`: the program's authorizer and its function, if
    /// it has one (whether `$connect` uses it is [`SignInSpec::enabled`]).
    pub sign_in: Option<SignInSpec>,
    /// Every resource of the program, in program order, and who plays it locally.
    pub resources: Vec<ProgramResource>,
}

/// The part of the local stack that plays a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LocalPart {
    /// CloudFront and the WAF web ACL.
    Edge,
    /// The API Gateway WebSocket API: API, routes, integration, deployment, stage, key.
    ApiLayer,
    /// The function.
    Lambda,
    /// The connections table.
    DynamoDb,
}

/// One resource of the program.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramResource {
    /// Its name in `Pulumi.yaml` (`connections`).
    pub name: String,
    /// Its full type token (`aws:dynamodb/table:Table`).
    pub resource_type: String,
    /// `None`: the local stack does not play it (alarms, dashboard, IAM...).
    pub played_by: Option<LocalPart>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiSpec {
    pub route_selection_expression: String,
    pub api_key_selection_expression: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageSpec {
    pub name: String,
    /// `defaultRouteSettings.throttlingBurstLimit`.
    pub throttling_burst_limit: Option<u32>,
    /// `defaultRouteSettings.throttlingRateLimit`, requests per second.
    pub throttling_rate_limit: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteSpec {
    pub route_key: String,
    pub api_key_required: bool,
}

/// The `$connect` route's Lambda REQUEST authorizer
/// (`aws:apigatewayv2/authorizer:Authorizer`) and the function it invokes.
#[derive(Debug, Clone, PartialEq)]
pub struct SignInSpec {
    /// The Authorizer's logical name in the program (`connectAuthorizer`).
    pub resource: String,
    /// `$connect` runs it: the route's `authorizationType` is `CUSTOM` (config
    /// `signIn: oidc`); `NONE` (`signIn: off`) leaves it unattached.
    pub enabled: bool,
    /// The query-string parameter of its identity source
    /// (`route.request.querystring.<name>`): absent, API Gateway answers 401
    /// without invoking the function.
    pub token_parameter: String,
    /// `authorizerResultTtlInSeconds`: how long an answer is kept per token
    /// (0: no cache; AWS's default when left out, 300).
    pub result_ttl_secs: u32,
    /// The authorizer's function (its environment holds `ISSUER`, `AUDIENCE`,
    /// `TOKEN_PARAMETER`).
    pub function: FunctionSpec,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WafSpec {
    /// Name of the rate-based rule, for log lines.
    pub rate_rule_name: String,
    /// Requests per client IP allowed in one evaluation window.
    pub rate_limit: u64,
    pub evaluation_window_secs: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    /// The function's `name` (Lambda's `AWS_LAMBDA_FUNCTION_NAME`).
    pub name: String,
    pub memory_mb: u32,
    pub timeout_secs: u32,
    /// `environment.variables`, with config and variables already substituted;
    /// references to other resources' outputs are left for the caller.
    pub environment: BTreeMap<String, Template>,
    /// How Lambda delivers the function's asynchronous events (its
    /// `aws:lambda/functionEventInvokeConfig`, or Lambda's defaults).
    pub async_invoke: AsyncInvokeSpec,
}

/// `aws:lambda/functionEventInvokeConfig` of the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncInvokeSpec {
    /// Retries after a function error (0–2; Lambda's default 2).
    pub maximum_retry_attempts: u32,
    /// Events older than this are dropped (60–21,600 s; default 21,600).
    pub maximum_event_age_secs: u32,
}

impl Default for AsyncInvokeSpec {
    fn default() -> Self {
        AsyncInvokeSpec {
            maximum_retry_attempts: 2,
            maximum_event_age_secs: 21_600,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    /// The table's logical name in the program.
    pub resource: String,
    pub name: String,
    pub hash_key: String,
    pub ttl_attribute: Option<String>,
}

/// A string value of the program whose `${resource.property}` references
/// could not be resolved offline (they are resource outputs).
#[derive(Debug, Clone, PartialEq)]
pub struct Template(pub Vec<Part>);

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    /// `${resource.property}`, with the resource's type token.
    Ref {
        resource: String,
        resource_type: String,
        property: String,
    },
}

impl Template {
    /// Fills each reference with `lookup(resource, resource_type, property)`
    /// (the resource's logical name, its type token, the output).
    pub fn resolve(
        &self,
        mut lookup: impl FnMut(&str, &str, &str) -> Option<String>,
    ) -> Result<String, Error> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Ref {
                    resource,
                    resource_type,
                    property,
                } => {
                    let value = lookup(resource, resource_type, property).ok_or_else(|| {
                        Error::Unresolved {
                            reference: format!("${{{resource}.{property}}}"),
                            resource_type: resource_type.clone(),
                        }
                    })?;
                    out.push_str(&value);
                }
            }
        }
        Ok(out)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("cannot resolve {reference} (a {resource_type} output) locally")]
    Unresolved {
        reference: String,
        resource_type: String,
    },
}

/// Reads `dir/Pulumi.yaml` and `dir/Pulumi.<stack>.yaml` (the stack file may
/// be absent when the project's defaults and config cover everything).
pub fn load(dir: &Path, stack: &str) -> Result<Topology, Error> {
    topology::build(&program::Program::read(dir, stack)?)
}

/// [`load`] from the documents' text.
pub fn load_sources(
    project_yaml: &str,
    stack_yaml: Option<&str>,
    stack: &str,
) -> Result<Topology, Error> {
    topology::build(&program::Program::parse(project_yaml, stack_yaml, stack)?)
}
