//! Builds the [`Topology`] the local stack runs from the evaluated program.
//!
//! Every fact is read from the resource that defines it in AWS (routes from
//! the `Route`s of the API, the stage's throttling from the `Stage`, the rate
//! limit from the web ACL's rate-based rule...), so the local stack cannot
//! drift from what `pulumi up` deploys. Anything missing or not knowable
//! offline is an [`Error::Invalid`] naming the path in `Pulumi.yaml`.

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

use crate::eval::{Evaluated, Evaluator};
use crate::interpolation::{self, Segment};
use crate::program::{Program, Resource};
use crate::{
    ApiSpec, AsyncInvokeSpec, Error, FunctionSpec, Part, RouteSpec, StageSpec, TableSpec, Template,
    Topology, WafSpec,
};

mod reader;
mod sign_in;

use reader::Reader;

pub(crate) const API: &str = "aws:apigatewayv2/api:Api";
pub(crate) const ROUTE: &str = "aws:apigatewayv2/route:Route";
pub(crate) const STAGE: &str = "aws:apigatewayv2/stage:Stage";
pub(crate) const WEB_ACL: &str = "aws:wafv2/webAcl:WebAcl";
pub(crate) const FUNCTION: &str = "aws:lambda/function:Function";
pub(crate) const EVENT_INVOKE_CONFIG: &str =
    "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig";
pub(crate) const TABLE: &str = "aws:dynamodb/table:Table";
pub(crate) const DISTRIBUTION: &str = "aws:cloudfront/distribution:Distribution";
pub(crate) const API_KEY: &str = "aws:apigateway/apiKey:ApiKey";
pub(crate) const INTEGRATION: &str = "aws:apigatewayv2/integration:Integration";
pub(crate) const AUTHORIZER: &str = "aws:apigatewayv2/authorizer:Authorizer";

/// AWS's defaults for what the program may leave out.
const DEFAULT_MEMORY_MB: u32 = 128;
const DEFAULT_TIMEOUT_SECS: u32 = 3;
const DEFAULT_EVALUATION_WINDOW_SECS: u64 = 300;

pub(crate) fn build(program: &Program) -> Result<Topology, Error> {
    let (config, problems) = program.config();
    if let Some(problem) = problems.into_iter().next() {
        return Err(Error::Invalid {
            path: problem.path,
            message: problem.message,
        });
    }
    let eval = Evaluator::new(program, &config);
    let region = eval
        .region()
        .ok_or_else(|| {
            invalid(
                format!("{}#config.aws:region", program.stack_file),
                "the stack sets no region",
            )
        })?
        .to_string();
    let resources = program.resources();
    let reader = Reader { eval: &eval };

    // In this order, so the first error named is the same as it always was.
    let api = only(&resources, API)?;
    let api_spec = api_spec(&reader, &api)?;
    let routes = routes(&reader, &resources, &api)?;
    let stage = stage_spec(&reader, &resources, &api)?;
    let waf = waf_spec(&reader, &only(&resources, WEB_ACL)?)?;
    let handler = handler(&resources)?;
    let function = function_spec(&reader, &handler, async_invoke(&reader, &resources)?)?;
    let table = table_spec(&reader, &table_of(&resources, "CONNECTIONS_TABLE")?)?;
    let claims_table = table_spec(&reader, &table_of(&resources, "CLAIMS_TABLE")?)?;
    let distribution = only(&resources, DISTRIBUTION)?;
    let origin_api_key_header = origin_key_header(program, &reader, &distribution)?;
    let aliases = aliases(&reader, &distribution)?;
    let sign_in = sign_in::spec(&reader, &resources, &api)?;
    Ok(Topology {
        project: program.project.clone(),
        stack: program.stack.clone(),
        region,
        api: api_spec,
        stage,
        routes,
        waf,
        function,
        table,
        claims_table,
        origin_api_key_header,
        aliases,
        sign_in,
        resources: crate::coverage::resources(program),
    })
}

/// The distribution's aliases, each a string (none when left out).
fn aliases(reader: &Reader<'_>, distribution: &Resource<'_>) -> Result<Vec<String>, Error> {
    let path = format!("{}.aliases", at(distribution));
    let Some(value) = distribution.properties.and_then(|p| p.get("aliases")) else {
        return Ok(Vec::new());
    };
    match reader.known(value, &path)? {
        Value::Sequence(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(invalid(&path, format!("expected strings, found {other:?}"))),
            })
            .collect(),
        other => Err(invalid(&path, format!("expected a list, found {other:?}"))),
    }
}

/// How the API picks a message's route and reads the key.
fn api_spec(reader: &Reader<'_>, api: &Resource<'_>) -> Result<ApiSpec, Error> {
    Ok(ApiSpec {
        route_selection_expression: reader.string(api, "routeSelectionExpression")?,
        api_key_selection_expression: reader.optional_string(api, "apiKeySelectionExpression")?,
    })
}

/// The API's routes; an API without any is an error.
fn routes(
    reader: &Reader<'_>,
    resources: &[Resource<'_>],
    api: &Resource<'_>,
) -> Result<Vec<RouteSpec>, Error> {
    let mut routes = Vec::new();
    for route in resources.iter().filter(|r| r.token == ROUTE) {
        if !refers_to(
            route.properties.and_then(|p| p.get("apiId")),
            api.name,
            "id",
        ) {
            continue;
        }
        routes.push(RouteSpec {
            route_key: reader.string(route, "routeKey")?,
            api_key_required: reader
                .optional_bool(route, "apiKeyRequired")?
                .unwrap_or(false),
        });
    }
    if routes.is_empty() {
        return Err(invalid(
            format!("resources.{}", api.name),
            "the API has no routes",
        ));
    }
    Ok(routes)
}

/// The API's stage: its name and default route throttling.
fn stage_spec(
    reader: &Reader<'_>,
    resources: &[Resource<'_>],
    api: &Resource<'_>,
) -> Result<StageSpec, Error> {
    let stage = only_of_api(resources, STAGE, api.name)?;
    let settings = property_mapping(&stage, "defaultRouteSettings");
    let setting = |name: &str| {
        settings
            .and_then(|s| s.get(name))
            .map(|v| (v, format!("{}.defaultRouteSettings.{name}", at(&stage))))
    };
    Ok(StageSpec {
        name: reader.string(&stage, "name")?,
        throttling_burst_limit: match setting("throttlingBurstLimit") {
            Some((v, path)) => Some(reader.number::<u32>(v, &path)?),
            None => None,
        },
        throttling_rate_limit: match setting("throttlingRateLimit") {
            Some((v, path)) => Some(reader.float(v, &path)?),
            None => None,
        },
    })
}

/// A function: name, memory, timeout (AWS's defaults when left out), its
/// environment as templates, and its asynchronous invocation settings.
fn function_spec(
    reader: &Reader<'_>,
    function: &Resource<'_>,
    async_invoke: AsyncInvokeSpec,
) -> Result<FunctionSpec, Error> {
    let mut environment = BTreeMap::new();
    if let Some(variables) = property_mapping(function, "environment")
        .and_then(|e| e.get("variables"))
        .and_then(Value::as_mapping)
    {
        for (name, value) in variables {
            let path = format!("{}.environment.variables", at(function));
            let name = name
                .as_str()
                .ok_or_else(|| invalid(&path, "has a name that is not a string"))?;
            environment.insert(
                name.to_string(),
                reader.template(value, &format!("{path}.{name}"))?,
            );
        }
    }
    Ok(FunctionSpec {
        name: reader.string(function, "name")?,
        memory_mb: reader
            .optional_number(function, "memorySize")?
            .unwrap_or(DEFAULT_MEMORY_MB),
        timeout_secs: reader
            .optional_number(function, "timeout")?
            .unwrap_or(DEFAULT_TIMEOUT_SECS),
        environment,
        async_invoke,
    })
}

/// The connections table: name, hash key, and the TTL attribute when TTL is on.
fn table_spec(reader: &Reader<'_>, table: &Resource<'_>) -> Result<TableSpec, Error> {
    let ttl = property_mapping(table, "ttl");
    let ttl_enabled = match ttl.and_then(|t| t.get("enabled")) {
        Some(v) => reader.bool(v, &format!("{}.ttl.enabled", at(table)))?,
        None => false,
    };
    Ok(TableSpec {
        resource: table.name.to_string(),
        name: reader.string(table, "name")?,
        hash_key: reader.string(table, "hashKey")?,
        ttl_attribute: match ttl.and_then(|t| t.get("attributeName")) {
            Some(v) if ttl_enabled => {
                Some(reader.known_string(v, &format!("{}.ttl.attributeName", at(table)))?)
            }
            _ => None,
        },
    })
}

/// The table the function's `variable` names (`${<table>.name}`).
fn table_of<'a>(resources: &[Resource<'a>], variable: &str) -> Result<Resource<'a>, Error> {
    let function = handler(resources)?;
    let named = function
        .properties
        .and_then(|p| p.get("environment"))
        .and_then(|e| e.get("variables"))
        .and_then(|v| v.get(variable));
    resources
        .iter()
        .find(|t| t.token == TABLE && refers_to(named, t.name, "name"))
        .cloned()
        .ok_or_else(|| {
            invalid(
                format!("{}.environment.variables.{variable}", at(&function)),
                format!("must be ${{<table>.name}} of a {TABLE} of this program"),
            )
        })
}

/// The web ACL's rate-based rule: its name, limit and window.
fn waf_spec(reader: &Reader<'_>, acl: &Resource<'_>) -> Result<WafSpec, Error> {
    let rules = acl
        .properties
        .and_then(|p| p.get("rules"))
        .and_then(Value::as_sequence)
        .ok_or_else(|| invalid(format!("{}.rules", at(acl)), "the web ACL has no rules"))?;
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("{}.rules[{i}]", at(acl));
        let Some(rate) = rule
            .get("statement")
            .and_then(|s| s.get("rateBasedStatement"))
            .and_then(Value::as_mapping)
        else {
            continue;
        };
        let name = rule
            .get("name")
            .ok_or_else(|| invalid(format!("{path}.name"), "is missing"))?;
        let limit = rate.get("limit").ok_or_else(|| {
            invalid(
                format!("{path}.statement.rateBasedStatement.limit"),
                "is missing",
            )
        })?;
        return Ok(WafSpec {
            rate_rule_name: reader.known_string(name, &format!("{path}.name"))?,
            rate_limit: reader
                .number(limit, &format!("{path}.statement.rateBasedStatement.limit"))?,
            evaluation_window_secs: match rate.get("evaluationWindowSec") {
                Some(v) => reader.number(
                    v,
                    &format!("{path}.statement.rateBasedStatement.evaluationWindowSec"),
                )?,
                None => DEFAULT_EVALUATION_WINDOW_SECS,
            },
        });
    }
    Err(invalid(
        format!("{}.rules", at(acl)),
        "no rule has a rateBasedStatement",
    ))
}

/// The name of the origin custom header whose value is an API key's `value`.
fn origin_key_header(
    program: &Program,
    reader: &Reader<'_>,
    distribution: &Resource<'_>,
) -> Result<String, Error> {
    let origins = distribution
        .properties
        .and_then(|p| p.get("origins"))
        .and_then(Value::as_sequence)
        .ok_or_else(|| {
            invalid(
                format!("{}.origins", at(distribution)),
                "the distribution has no origins",
            )
        })?;
    for (i, origin) in origins.iter().enumerate() {
        let Some(headers) = origin.get("customHeaders").and_then(Value::as_sequence) else {
            continue;
        };
        for (j, header) in headers.iter().enumerate() {
            let Some(Value::String(value)) = header.get("value") else {
                continue;
            };
            let is_key = interpolation::parse(value).ok().is_some_and(|segments| {
                interpolation::sole_access(&segments).is_some_and(|access| {
                    access.first_property() == Some("value")
                        && access.path.len() == 1
                        && program
                            .resource(&access.root)
                            .is_some_and(|r| r.token == API_KEY)
                })
            });
            if is_key {
                let path = format!("{}.origins[{i}].customHeaders[{j}].name", at(distribution));
                let name = header
                    .get("name")
                    .ok_or_else(|| invalid(&path, "is missing"))?;
                return reader.known_string(name, &path);
            }
        }
    }
    Err(invalid(
        format!("{}.origins", at(distribution)),
        "no origin custom header carries an API key's value",
    ))
}

/// The function's asynchronous delivery: its event invoke config, if the
/// program has one (at most one), else Lambda's defaults.
fn async_invoke(reader: &Reader<'_>, resources: &[Resource<'_>]) -> Result<AsyncInvokeSpec, Error> {
    let configs: Vec<&Resource<'_>> = resources
        .iter()
        .filter(|r| r.token == EVENT_INVOKE_CONFIG)
        .collect();
    let defaults = AsyncInvokeSpec::default();
    match configs.as_slice() {
        [] => Ok(defaults),
        [config] => Ok(AsyncInvokeSpec {
            maximum_retry_attempts: reader
                .optional_number(config, "maximumRetryAttempts")?
                .unwrap_or(defaults.maximum_retry_attempts),
            maximum_event_age_secs: reader
                .optional_number(config, "maximumEventAgeInSeconds")?
                .unwrap_or(defaults.maximum_event_age_secs),
        }),
        many => Err(invalid(
            "resources",
            format!(
                "expected at most one {EVENT_INVOKE_CONFIG}, found {}",
                many.len()
            ),
        )),
    }
}

/// The function the API's integration invokes (`integrationUri:
/// ${<function>.invokeArn}`): the handler of every route. A program with one
/// function and no such integration has that one.
pub(crate) fn handler<'a>(resources: &[Resource<'a>]) -> Result<Resource<'a>, Error> {
    invoked_by(resources, INTEGRATION, "integrationUri")
        .map_err(|found| {
            invalid(
                "resources",
                format!(
                    "expected one {FUNCTION} that an {INTEGRATION} invokes (integrationUri: ${{<function>.invokeArn}}), found {found}"
                ),
            )
        })
}

/// The function the `$connect` authorizer invokes (`authorizerUri:
/// ${<function>.invokeArn}`), if the program has one.
pub(crate) fn authorizer_function<'a>(resources: &[Resource<'a>]) -> Option<Resource<'a>> {
    let functions: Vec<&Resource<'a>> = resources.iter().filter(|f| f.token == FUNCTION).collect();
    let invoked: Vec<&Resource<'a>> = functions
        .into_iter()
        .filter(|f| {
            resources.iter().any(|a| {
                a.token == AUTHORIZER
                    && refers_to(
                        a.properties.and_then(|p| p.get("authorizerUri")),
                        f.name,
                        "invokeArn",
                    )
            })
        })
        .collect();
    match invoked.as_slice() {
        [one] => Some((*one).clone()),
        _ => None,
    }
}

/// The one function a resource of type `by` invokes through `property`, or
/// the program's only function when none does; else how many were found.
fn invoked_by<'a>(
    resources: &[Resource<'a>],
    by: &str,
    property: &str,
) -> Result<Resource<'a>, usize> {
    let functions: Vec<&Resource<'a>> = resources.iter().filter(|f| f.token == FUNCTION).collect();
    let invoked: Vec<&Resource<'a>> = functions
        .iter()
        .copied()
        .filter(|f| {
            resources.iter().any(|i| {
                i.token == by
                    && refers_to(
                        i.properties.and_then(|p| p.get(property)),
                        f.name,
                        "invokeArn",
                    )
            })
        })
        .collect();
    match (invoked.as_slice(), functions.as_slice()) {
        ([one], _) | ([], [one]) => Ok((*one).clone()),
        ([], all) => Err(all.len()),
        (many, _) => Err(many.len()),
    }
}

/// The single resource of a type.
pub(crate) fn only<'a>(resources: &[Resource<'a>], token: &str) -> Result<Resource<'a>, Error> {
    let found: Vec<&Resource<'a>> = resources.iter().filter(|r| r.token == token).collect();
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(invalid("resources", format!("no {token} resource"))),
        many => Err(invalid(
            "resources",
            format!(
                "expected one {token}, found {}: {}",
                many.len(),
                many.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// The single resource of a type whose `apiId` is `${api.id}`.
fn only_of_api<'a>(
    resources: &[Resource<'a>],
    token: &str,
    api: &str,
) -> Result<Resource<'a>, Error> {
    let of_api: Vec<Resource<'a>> = resources
        .iter()
        .filter(|r| {
            r.token == token && refers_to(r.properties.and_then(|p| p.get("apiId")), api, "id")
        })
        .cloned()
        .collect();
    only(&of_api, token).map_err(|_| {
        invalid(
            "resources",
            format!(
                "expected one {token} with apiId: ${{{api}.id}}, found {}",
                of_api.len()
            ),
        )
    })
}

/// Whether `value` is exactly `${resource.property}`.
pub(crate) fn refers_to(value: Option<&Value>, resource: &str, property: &str) -> bool {
    let Some(Value::String(s)) = value else {
        return false;
    };
    match interpolation::parse(s) {
        Ok(segments) => matches!(
            segments.as_slice(),
            [Segment::Access(a)] if a.root == resource && a.path.len() == 1 && a.first_property() == Some(property)
        ),
        Err(_) => false,
    }
}

fn property_mapping<'r>(resource: &'r Resource<'_>, name: &str) -> Option<&'r Mapping> {
    resource
        .properties
        .and_then(|p| p.get(name))
        .and_then(Value::as_mapping)
}

fn at(resource: &Resource<'_>) -> String {
    format!("resources.{}.properties", resource.name)
}

fn refs(parts: &[Part]) -> String {
    parts
        .iter()
        .filter_map(|p| match p {
            Part::Ref {
                resource, property, ..
            } => Some(format!("${{{resource}.{property}}}")),
            Part::Text(_) => None,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Invalid {
        path: path.into(),
        message: message.into(),
    }
}
