//! The one place that reads the Pulumi program's model: it turns the
//! topology into each service's plain config (the API's routes and
//! throttling, the WAF rate rule, the function's settings and environment)
//! and maps the resource outputs the function refers to onto local values.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use pulumi_program::Topology;

use super::Endpoints;
use crate::apigateway::{
    ACCOUNT_BURST_LIMIT, ACCOUNT_RATE_LIMIT, AuthorizerConfig, GatewayConfig, Limits, Route,
    Throttle,
};
use crate::cloudfront::{EdgeConfig, RateRuleConfig};
use crate::lambda::{FunctionConfig, LOCAL_ACCOUNT_ID};

/// The API id the local API layer plays (API Gateway ids are 10 characters).
pub const LOCAL_API_ID: &str = "devstack01";
/// Variables of the devstack's own environment handed to the function.
const PASSTHROUGH_ENV: &[&str] = &["RUST_LOG", "AWS_LAMBDA_LOG_LEVEL", "RUST_BACKTRACE"];

/// The API layer's config: the program's routes, selection expressions and
/// stage throttling (a stage that sets only one of rate and burst gets API
/// Gateway's account default for the other), with the stack's key.
pub fn gateway_config(
    topology: &Topology,
    api_id: &str,
    domain_name: &str,
    api_key: &str,
) -> GatewayConfig {
    let stage = &topology.stage;
    let throttle = match (stage.throttling_rate_limit, stage.throttling_burst_limit) {
        (None, None) => None,
        (rate, burst) => Some(Throttle {
            rate_per_sec: rate.unwrap_or(ACCOUNT_RATE_LIMIT),
            burst: burst.unwrap_or(ACCOUNT_BURST_LIMIT),
        }),
    };
    GatewayConfig {
        api_id: api_id.to_string(),
        stage: stage.name.clone(),
        domain_name: domain_name.to_string(),
        route_selection_expression: topology.api.route_selection_expression.clone(),
        api_key_selection_expression: topology.api.api_key_selection_expression.clone(),
        routes: topology
            .routes
            .iter()
            .map(|route| Route {
                key: route.route_key.clone(),
                api_key_required: route.api_key_required,
            })
            .collect(),
        api_keys: vec![api_key.to_string()],
        throttle,
        limits: Limits::default(),
        authorizer: authorizer_config(topology),
    }
}

/// The `$connect` route's authorizer, when the program attaches one
/// (`authorizationType: CUSTOM`): its identity source and result TTL.
pub fn authorizer_config(topology: &Topology) -> Option<AuthorizerConfig> {
    let sign_in = topology.sign_in.as_ref().filter(|s| s.enabled)?;
    Some(AuthorizerConfig {
        name: sign_in.resource.clone(),
        identity_sources: vec![format!(
            "route.request.querystring.{}",
            sign_in.token_parameter
        )],
        ttl: Duration::from_secs(u64::from(sign_in.result_ttl_secs)),
    })
}

/// Where the authorizer function's tokens come from: the stack's local
/// issuer, or a real one named with `--issuer`.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerTarget {
    /// `ISSUER`: exactly the tokens' `iss`.
    pub issuer: String,
    /// `JWKS_URL`, when known (the local issuer's); otherwise the function
    /// finds the keys by OpenID discovery.
    pub jwks_url: Option<String>,
    /// The local issuer's audience: `AUDIENCE` when the program names none
    /// (a stack without `audience` config still signs in locally).
    pub local_audience: Option<String>,
}

/// The authorizer function's environment: the program's variables with
/// `ISSUER` (and `JWKS_URL`) pointed at `target`, the region, and the
/// variables passed through from devstack's own environment.
pub fn authorizer_env(
    topology: &Topology,
    endpoints: &Endpoints,
    api_addr: SocketAddr,
    target: &IssuerTarget,
) -> anyhow::Result<Vec<(String, String)>> {
    let Some(sign_in) = &topology.sign_in else {
        anyhow::bail!("the program has no $connect authorizer");
    };
    let mut env = resolve_env(&sign_in.function.environment, topology, endpoints, api_addr)
        .context("the authorizer function's environment")?;
    env.retain(|(name, _)| name != "ISSUER" && name != "JWKS_URL");
    env.push(("ISSUER".to_string(), target.issuer.clone()));
    if let Some(audience) = &target.local_audience
        && first_audience(topology).is_none()
    {
        env.retain(|(name, _)| name != "AUDIENCE");
        env.push(("AUDIENCE".to_string(), audience.clone()));
    }
    if let Some(jwks) = &target.jwks_url {
        env.push(("JWKS_URL".to_string(), jwks.clone()));
    }
    for (name, value) in [
        ("AWS_REGION", topology.region.clone()),
        ("AWS_DEFAULT_REGION", topology.region.clone()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ] {
        env.push((name.to_string(), value));
    }
    env.extend(passthrough_env());
    Ok(env)
}

/// The first audience the program accepts (`AUDIENCE`, comma-separated):
/// the one the local issuer's tokens name.
pub fn first_audience(topology: &Topology) -> Option<String> {
    let sign_in = topology.sign_in.as_ref()?;
    let template = sign_in.function.environment.get("AUDIENCE")?;
    let value = template.resolve(|_, _, _| None).ok()?;
    value
        .split(',')
        .map(str::trim)
        .find(|a| !a.is_empty())
        .map(str::to_string)
}

/// The edge's config: the origin (the API stage), the origin custom header
/// with the stack's key, and the web ACL's rate rule.
pub fn edge_config(topology: &Topology, endpoints: &Endpoints) -> EdgeConfig {
    let waf = &topology.waf;
    EdgeConfig {
        origin: endpoints.api.clone(),
        origin_api_key_header: topology.origin_api_key_header.clone(),
        api_key: endpoints.api_key.clone(),
        waf: RateRuleConfig {
            name: waf.rate_rule_name.clone(),
            limit: waf.rate_limit,
            window: Duration::from_secs(waf.evaluation_window_secs),
        },
    }
}

/// A function's config: the program's name, memory and timeout for
/// `function` (the handler's, or the authorizer's), with the given binary,
/// environment and concurrency.
pub fn function_config(
    function: &pulumi_program::FunctionSpec,
    binary: PathBuf,
    env: Vec<(String, String)>,
    max_concurrency: usize,
) -> FunctionConfig {
    FunctionConfig {
        binary,
        name: function.name.clone(),
        env,
        memory_mb: function.memory_mb,
        timeout: Duration::from_secs(u64::from(function.timeout_secs)),
        max_concurrency,
    }
}

/// Maps an AWS execute-api URL the program gives the function
/// (`https://{apiId}.execute-api.{region}.amazonaws.com/{stage}`, or `wss://`)
/// to the local API layer; any other value is returned unchanged.
pub fn localize_url(value: &str, api_addr: SocketAddr) -> String {
    let Ok(url) = url::Url::parse(value) else {
        return value.to_string();
    };
    let local_scheme = match url.scheme() {
        "https" => "http",
        "wss" => "ws",
        _ => return value.to_string(),
    };
    match url.host_str() {
        Some(host) if host.contains(".execute-api.") && host.ends_with(".amazonaws.com") => {
            let path = &url[url::Position::BeforePath..];
            format!("{local_scheme}://{api_addr}{path}")
        }
        _ => value.to_string(),
    }
}
/// The local value of a resource output the program's function environment
/// refers to.
fn local_output(
    topology: &Topology,
    endpoints: &Endpoints,
    api_addr: SocketAddr,
    (resource, resource_type, property): (&str, &str, &str),
) -> Option<String> {
    let region = &topology.region;
    let table = [&topology.table, &topology.claims_table]
        .into_iter()
        .find(|t| t.resource == resource)
        .map(|t| t.name.as_str())
        .unwrap_or_default();
    Some(match (resource_type, property) {
        ("aws:apigatewayv2/api:Api", "id") => LOCAL_API_ID.to_string(),
        ("aws:apigatewayv2/api:Api", "apiEndpoint") => format!("ws://{api_addr}"),
        ("aws:apigatewayv2/api:Api", "executionArn") => {
            format!("arn:aws:execute-api:{region}:{LOCAL_ACCOUNT_ID}:{LOCAL_API_ID}")
        }
        ("aws:apigatewayv2/stage:Stage", "name" | "id") => endpoints.stage.clone(),
        ("aws:apigatewayv2/stage:Stage", "invokeUrl") => endpoints.api.clone(),
        ("aws:dynamodb/table:Table", "name" | "id") if !table.is_empty() => table.to_string(),
        ("aws:dynamodb/table:Table", "arn") if !table.is_empty() => {
            format!("arn:aws:dynamodb:{region}:{LOCAL_ACCOUNT_ID}:table/{table}")
        }
        ("aws:cloudfront/distribution:Distribution", "domainName") => {
            let edge = url::Url::parse(&endpoints.edge).ok()?;
            format!("{}:{}", edge.host_str()?, edge.port_or_known_default()?)
        }
        ("aws:apigateway/apiKey:ApiKey", "value") => endpoints.api_key.clone(),
        _ => return None,
    })
}
/// The function's environment: the program's variables with resource
/// outputs resolved to local values, then the region, dummy credentials, the
/// SDK's endpoint overrides for the local DynamoDB and Lambda Invoke API, and
/// `MANAGEMENT_ENDPOINT` (the variable the program sets) for the local
/// management API.
pub fn function_env(
    topology: &Topology,
    endpoints: &Endpoints,
    api_addr: SocketAddr,
    dynamodb_endpoint: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut env = resolve_env(
        &topology.function.environment,
        topology,
        endpoints,
        api_addr,
    )?;
    let fixed = [
        ("AWS_REGION", topology.region.clone()),
        ("AWS_DEFAULT_REGION", topology.region.clone()),
        // The management API accepts requests signed with these only.
        (
            "AWS_ACCESS_KEY_ID",
            crate::apigateway::ACCESS_KEY_ID.to_string(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            crate::apigateway::SECRET_ACCESS_KEY.to_string(),
        ),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint.to_string()),
        ("MANAGEMENT_ENDPOINT", endpoints.management.clone()),
        ("AWS_ENDPOINT_URL_LAMBDA", endpoints.lambda.clone()),
    ];
    env.extend(fixed.into_iter().map(|(k, v)| (k.to_string(), v)));
    env.extend(passthrough_env());
    Ok(env)
}

/// A function's `environment.variables` with resource outputs resolved to
/// their local values and execute-api URLs pointed at the local API layer.
fn resolve_env(
    environment: &std::collections::BTreeMap<String, pulumi_program::Template>,
    topology: &Topology,
    endpoints: &Endpoints,
    api_addr: SocketAddr,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut env = Vec::new();
    for (name, template) in environment {
        let value = template
            .resolve(|resource, resource_type, property| {
                local_output(
                    topology,
                    endpoints,
                    api_addr,
                    (resource, resource_type, property),
                )
            })
            .with_context(|| format!("the function's environment variable {name}"))?;
        env.push((name.clone(), localize_url(&value, api_addr)));
    }
    Ok(env)
}

/// The variables of devstack's own environment every function gets.
fn passthrough_env() -> Vec<(String, String)> {
    PASSTHROUGH_ENV
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|v| (name.to_string(), v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn execute_api_urls_map_to_the_local_api() {
        let addr: SocketAddr = "127.0.0.1:8081".parse().expect("addr");
        assert_eq!(
            localize_url(
                "https://abc123defg.execute-api.eu-west-1.amazonaws.com/prod",
                addr
            ),
            "http://127.0.0.1:8081/prod"
        );
        assert_eq!(
            localize_url(
                "wss://abc123defg.execute-api.us-east-1.amazonaws.com/prod",
                addr
            ),
            "ws://127.0.0.1:8081/prod"
        );
        assert_eq!(localize_url("connections-table", addr), "connections-table");
        assert_eq!(
            localize_url("https://example.com/prod", addr),
            "https://example.com/prod"
        );
    }

    #[test]
    fn the_dev_stacks_function_environment_resolves_locally() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let topology = pulumi_program::load(root, "dev").expect("the dev stack loads");
        let addr: SocketAddr = "127.0.0.1:8081".parse().expect("addr");
        let endpoints = Endpoints {
            edge: "ws://127.0.0.1:8080/".into(),
            api: "ws://127.0.0.1:8081/prod".into(),
            management: format!("http://127.0.0.1:8081/{}", topology.stage.name),
            api_key: "k".into(),
            stage: topology.stage.name.clone(),
            console: "http://127.0.0.1:8082/".into(),
            lambda: "http://127.0.0.1:8084".into(),
            issuer: None,
            control: "http://127.0.0.1:8085".into(),
            region: topology.region.clone(),
        };
        let env =
            function_env(&topology, &endpoints, addr, "http://127.0.0.1:9").expect("resolves");
        let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        assert_eq!(get("AWS_ENDPOINT_URL_DYNAMODB"), Some("http://127.0.0.1:9"));
        assert_eq!(
            get("MANAGEMENT_ENDPOINT"),
            Some(endpoints.management.as_str())
        );
        assert_eq!(get("AWS_REGION"), Some(topology.region.as_str()));
        for (name, value) in &env {
            assert!(
                !value.contains("amazonaws.com"),
                "{name} still points at AWS: {value}"
            );
        }
    }

    #[test]
    fn the_dev_stacks_authorizer_is_pointed_at_the_given_issuer() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let topology = pulumi_program::load(root, "dev").expect("the dev stack loads");
        let authorizer = authorizer_config(&topology).expect("dev signs in");
        let sign_in = topology.sign_in.as_ref().expect("sign-in");
        assert_eq!(
            authorizer.identity_sources,
            vec![format!(
                "route.request.querystring.{}",
                sign_in.token_parameter
            )]
        );
        assert_eq!(
            authorizer.ttl,
            Duration::from_secs(u64::from(sign_in.result_ttl_secs))
        );
        let addr: SocketAddr = "127.0.0.1:8081".parse().expect("addr");
        let target = IssuerTarget {
            issuer: "http://127.0.0.1:9999".into(),
            jwks_url: Some("http://127.0.0.1:9999/.well-known/jwks.json".into()),
            local_audience: Some("devstack-local".into()),
        };
        let env = authorizer_env(&topology, &Endpoints::example(), addr, &target).expect("env");
        let get = |name: &str| {
            let values: Vec<&str> = env
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .collect();
            assert!(values.len() <= 1, "{name} set twice: {values:?}");
            values.first().map(|v| v.to_string())
        };
        assert_eq!(get("ISSUER").as_deref(), Some("http://127.0.0.1:9999"));
        assert_eq!(get("JWKS_URL"), target.jwks_url);
        assert_eq!(get("AUDIENCE"), first_audience(&topology));
        assert!(get("AUDIENCE").is_some_and(|a| !a.is_empty()));
        assert_eq!(get("AWS_REGION").as_deref(), Some(topology.region.as_str()));
    }

    /// A stack that configures no audience (signIn at its default, oidc)
    /// still signs in locally: the authorizer accepts the local issuer's
    /// audience instead of failing at init with `AUDIENCE is not set`.
    #[test]
    fn a_stack_without_an_audience_takes_the_local_issuers() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let program = std::fs::read_to_string(root.join("Pulumi.yaml")).expect("Pulumi.yaml");
        let topology = pulumi_program::load_sources(
            &program,
            Some(r#"{"config": {"aws:region": "us-east-1"}}"#),
            "bare",
        )
        .expect("a stack with no config loads");
        assert_eq!(first_audience(&topology), None);
        let addr: SocketAddr = "127.0.0.1:8081".parse().expect("addr");
        let local = IssuerTarget {
            issuer: "http://127.0.0.1:9999".into(),
            jwks_url: Some("http://127.0.0.1:9999/.well-known/jwks.json".into()),
            local_audience: Some("devstack-local".into()),
        };
        let env = authorizer_env(&topology, &Endpoints::example(), addr, &local).expect("env");
        let audiences: Vec<&str> = env
            .iter()
            .filter(|(k, _)| k == "AUDIENCE")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(audiences, ["devstack-local"]);

        // A real issuer (--issuer) gets no invented audience.
        let real = IssuerTarget {
            issuer: "https://issuer.example".into(),
            jwks_url: None,
            local_audience: None,
        };
        let env = authorizer_env(&topology, &Endpoints::example(), addr, &real).expect("env");
        assert!(
            env.iter()
                .filter(|(k, _)| k == "AUDIENCE")
                .all(|(_, v)| v.is_empty()),
            "{env:?}"
        );
    }
}
