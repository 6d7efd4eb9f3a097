//! The invariants of the scheme, checked on the program's values: what makes
//! the API reachable only through CloudFront and WAF. What the deployment
//! promises besides (WAF rules and logs, the function as cargo-lambda builds
//! it, names scoped by project and stack) is in [`super::requirements`].

use serde_yaml_ng::Value;

use super::Checker;
use crate::eval::{Evaluated, Evaluator};
use crate::interpolation::{self, Segment};
use crate::program::{Config, Program, Resource};
use crate::topology::{self, API, API_KEY, DISTRIBUTION, ROUTE, TABLE, WEB_ACL};

/// What every check of the program's values reads: its resources, and an
/// evaluator for their properties.
pub(super) struct Scope<'p> {
    pub eval: Evaluator<'p>,
    pub resources: Vec<Resource<'p>>,
}

impl<'p> Scope<'p> {
    pub fn new(program: &'p Program, config: &'p Config) -> Self {
        Scope {
            eval: Evaluator::new(program, config),
            resources: program.resources(),
        }
    }

    /// The resources of type `token`, in program order.
    pub fn of(&self, token: &str) -> Vec<&Resource<'p>> {
        self.resources.iter().filter(|r| r.token == token).collect()
    }

    /// The first resource of type `token`.
    pub fn first(&self, token: &str) -> Option<&Resource<'p>> {
        self.resources.iter().find(|r| r.token == token)
    }

    /// The function the API's integration invokes (see [`topology::handler`]).
    pub fn handler(&self) -> Option<&Resource<'p>> {
        let found = topology::handler(&self.resources).ok()?;
        self.resources.iter().find(|r| r.name == found.name)
    }

    /// The function the `$connect` authorizer invokes, if any.
    pub fn authorizer_function(&self) -> Option<&Resource<'p>> {
        let found = topology::authorizer_function(&self.resources)?;
        self.resources.iter().find(|r| r.name == found.name)
    }
}

impl Checker<'_> {
    /// The invariants that make the scheme what it is.
    pub(super) fn invariants(&mut self) {
        let config = self.config.clone();
        let scope = Scope::new(self.program, &config);
        let Some(api) = self.the_one(&scope, API) else {
            return;
        };
        self.api_reads_the_key(&scope, api);
        self.connect_requires_the_key(&scope, api);
        self.deployments_follow_the_api(&scope, api);
        self.function_environment(&scope, api);
        self.only_the_api_invokes(&scope, api);
        let Some(distribution) = self.the_one(&scope, DISTRIBUTION) else {
            return;
        };
        self.origin_is_the_api(&scope, api, distribution);
        self.viewers_use_https(&scope, distribution);
        self.distribution_has_the_web_acl(&scope, distribution);
        self.distribution_url(distribution);
    }

    /// The one resource of type `token`; any other count is reported.
    fn the_one<'s, 'p>(&mut self, scope: &'s Scope<'p>, token: &str) -> Option<&'s Resource<'p>> {
        let found = scope.of(token);
        match found.as_slice() {
            [one] => Some(one),
            _ => {
                self.report(
                    "resources",
                    format!("expected exactly one {token}, found {}", found.len()),
                );
                None
            }
        }
    }

    /// A WebSocket API that reads the key from x-api-key.
    fn api_reads_the_key(&mut self, scope: &Scope<'_>, api: &Resource<'_>) {
        let eval = &scope.eval;
        let api_at = format!("resources.{}.properties", api.name);
        if known(eval, prop(api, "protocolType")) != Some(Value::String("WEBSOCKET".into())) {
            self.report(format!("{api_at}.protocolType"), "must be WEBSOCKET");
        }
        if known(eval, prop(api, "apiKeySelectionExpression"))
            != Some(Value::String("$request.header.x-api-key".into()))
        {
            self.report(
                format!("{api_at}.apiKeySelectionExpression"),
                "must be $request.header.x-api-key, the header CloudFront adds",
            );
        }
    }

    /// The API's `$connect` route requires the key.
    fn connect_requires_the_key(&mut self, scope: &Scope<'_>, api: &Resource<'_>) {
        let eval = &scope.eval;
        let routes = scope.of(ROUTE);
        let connect = routes.iter().find(|r| {
            topology::refers_to(prop(r, "apiId"), api.name, "id")
                && known(eval, prop(r, "routeKey")) == Some(Value::String("$connect".into()))
        });
        match connect {
            None => self.report("resources", "no $connect route on the API"),
            Some(route) => {
                if known(eval, prop(route, "apiKeyRequired")) != Some(Value::Bool(true)) {
                    self.report(
                        format!("resources.{}.properties.apiKeyRequired", route.name),
                        "$connect must require the API key (apiKeyRequired: true), or clients can skip CloudFront and WAF",
                    );
                }
            }
        }
    }

    /// The stage redeploys when the API's selection expressions change.
    fn deployments_follow_the_api(&mut self, scope: &Scope<'_>, api: &Resource<'_>) {
        let deployments = scope.of("aws:apigatewayv2/deployment:Deployment");
        for deployment in deployments
            .iter()
            .filter(|d| topology::refers_to(prop(d, "apiId"), api.name, "id"))
        {
            let triggers = prop(deployment, "triggers").and_then(Value::as_mapping);
            for expression in ["routeSelectionExpression", "apiKeySelectionExpression"] {
                let redeploys = triggers.is_some_and(|t| {
                    t.values()
                        .filter_map(Value::as_str)
                        .any(|v| mentions(v, api.name, expression))
                });
                if !redeploys {
                    self.report(
                        format!("resources.{}.properties.triggers", deployment.name),
                        format!(
                            "must include ${{{}.{expression}}}, or changing it leaves the stage on the old deployment",
                            api.name
                        ),
                    );
                }
            }
        }
    }

    /// The function's environment, the contract with its code: the table's
    /// name and the management API's endpoint on this API.
    fn function_environment(&mut self, scope: &Scope<'_>, api: &Resource<'_>) {
        if let Some(function) = scope.handler() {
            let at = format!(
                "resources.{}.properties.environment.variables",
                function.name
            );
            let variables = prop(function, "environment").and_then(|e| e.get("variables"));
            let tables = scope.of(TABLE);
            let table_ok = tables.iter().any(|t| {
                topology::refers_to(
                    variables.and_then(|v| v.get("CONNECTIONS_TABLE")),
                    t.name,
                    "name",
                )
            });
            if !table_ok {
                self.report(
                    format!("{at}.CONNECTIONS_TABLE"),
                    "must be the connections table's ${table.name}",
                );
            }
            let claims_ok = tables.iter().any(|t| {
                let of = |variable: &str| {
                    topology::refers_to(variables.and_then(|v| v.get(variable)), t.name, "name")
                };
                of("CLAIMS_TABLE") && !of("CONNECTIONS_TABLE")
            });
            if !claims_ok {
                self.report(
                    format!("{at}.CLAIMS_TABLE"),
                    "must be ${<table>.name} of a table of its own, not the connections table: \
                     every broadcast's Scan reads the connections table",
                );
            }
            self.dead_letters(scope, function);
            let endpoint_ok = variables
                .and_then(|v| v.get("MANAGEMENT_ENDPOINT"))
                .and_then(Value::as_str)
                .is_some_and(|s| s.starts_with("https://") && mentions(s, api.name, "id"));
            if !endpoint_ok {
                self.report(
                    format!("{at}.MANAGEMENT_ENDPOINT"),
                    format!(
                        "must be https://${{{}.id}}.execute-api.<region>.amazonaws.com/<stage>",
                        api.name
                    ),
                );
            }
        }
    }

    /// The function's asynchronous events (a broadcast's continuations) that
    /// Lambda gives up on go to a queue of this program: never dropped
    /// without a trace.
    fn dead_letters(&mut self, scope: &Scope<'_>, function: &Resource<'_>) {
        let configs: Vec<&Resource<'_>> = scope
            .of(topology::EVENT_INVOKE_CONFIG)
            .into_iter()
            .filter(|c| topology::refers_to(prop(c, "functionName"), function.name, "name"))
            .collect();
        let Some(config) = configs.first() else {
            self.report(
                "resources",
                format!(
                    "no {} for the function: its continuation events need no retries and an on-failure destination",
                    topology::EVENT_INVOKE_CONFIG
                ),
            );
            return;
        };
        let destination = prop(config, "destinationConfig")
            .and_then(|d| d.get("onFailure"))
            .and_then(|f| f.get("destination"));
        let queued = scope
            .of(super::grants::QUEUE)
            .iter()
            .any(|q| topology::refers_to(destination, q.name, "arn"));
        if !queued {
            self.report(
                format!(
                    "resources.{}.properties.destinationConfig.onFailure.destination",
                    config.name
                ),
                "must be ${<queue>.arn} of an aws:sqs/queue:Queue of this program: a continuation Lambda gives up on is kept there",
            );
        }
    }

    /// Only this API may invoke the function.
    fn only_the_api_invokes(&mut self, scope: &Scope<'_>, api: &Resource<'_>) {
        let eval = &scope.eval;
        let permissions: Vec<&Resource<'_>> = scope
            .of("aws:lambda/permission:Permission")
            .into_iter()
            .filter(|p| {
                known(eval, prop(p, "principal"))
                    == Some(Value::String("apigateway.amazonaws.com".into()))
            })
            .collect();
        if permissions.is_empty() {
            self.report(
                "resources",
                "no aws:lambda/permission:Permission lets API Gateway invoke the function",
            );
        }
        for permission in permissions {
            let scoped = prop(permission, "sourceArn")
                .and_then(Value::as_str)
                .and_then(|s| interpolation::parse(s).ok())
                .is_some_and(|segments| match segments.as_slice() {
                    [Segment::Access(a), Segment::Text(rest), ..] => {
                        a.root == api.name
                            && a.path_text() == "executionArn"
                            && rest.starts_with('/')
                    }
                    _ => false,
                });
            if !scoped {
                self.report(
                    format!("resources.{}.properties.sourceArn", permission.name),
                    format!(
                        "must be scoped to this API: ${{{}.executionArn}}/...",
                        api.name
                    ),
                );
            }
        }
    }

    /// CloudFront's origin is the API, sent the key header, over https with
    /// TLS 1.2.
    fn origin_is_the_api(
        &mut self,
        scope: &Scope<'_>,
        api: &Resource<'_>,
        distribution: &Resource<'_>,
    ) {
        let eval = &scope.eval;
        let at = format!("resources.{}.properties", distribution.name);
        let origins = prop(distribution, "origins")
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        let api_origin = origins.iter().enumerate().find(|(_, o)| {
            o.get("domainName")
                .and_then(Value::as_str)
                .is_some_and(|d| mentions(d, api.name, "id"))
        });
        match api_origin {
            None => self.report(
                format!("{at}.origins"),
                format!(
                    "no origin is the API (domainName with ${{{}.id}})",
                    api.name
                ),
            ),
            Some((i, origin)) => {
                let origin_at = format!("{at}.origins[{i}]");
                let headers = origin
                    .get("customHeaders")
                    .and_then(Value::as_sequence)
                    .cloned()
                    .unwrap_or_default();
                let key_header = headers.iter().any(|h| {
                    let name_ok = h
                        .get("name")
                        .and_then(|n| known(eval, Some(n)))
                        .and_then(|n| n.as_str().map(str::to_ascii_lowercase))
                        .is_some_and(|n| n == "x-api-key");
                    let value_ok = scope
                        .resources
                        .iter()
                        .filter(|r| r.token == API_KEY)
                        .any(|k| topology::refers_to(h.get("value"), k.name, "value"));
                    name_ok && value_ok
                });
                if !key_header {
                    self.report(
                        format!("{origin_at}.customHeaders"),
                        "CloudFront must send the header x-api-key with the ApiKey's ${apiKey.value}",
                    );
                }
                let custom = origin.get("customOriginConfig");
                if known(eval, custom.and_then(|c| c.get("originProtocolPolicy")))
                    != Some(Value::String("https-only".into()))
                {
                    self.report(
                        format!("{origin_at}.customOriginConfig.originProtocolPolicy"),
                        "must be https-only",
                    );
                }
                if known(eval, custom.and_then(|c| c.get("originSslProtocols")))
                    != Some(Value::Sequence(vec![Value::String("TLSv1.2".into())]))
                {
                    self.report(
                        format!("{origin_at}.customOriginConfig.originSslProtocols"),
                        "must be [TLSv1.2]",
                    );
                }
            }
        }
    }

    /// Every cache behavior is https-only for viewers.
    fn viewers_use_https(&mut self, scope: &Scope<'_>, distribution: &Resource<'_>) {
        let at = format!("resources.{}.properties", distribution.name);
        let mut behaviors = vec![(
            format!("{at}.defaultCacheBehavior"),
            prop(distribution, "defaultCacheBehavior").cloned(),
        )];
        if let Some(ordered) =
            prop(distribution, "orderedCacheBehaviors").and_then(Value::as_sequence)
        {
            for (i, b) in ordered.iter().enumerate() {
                behaviors.push((format!("{at}.orderedCacheBehaviors[{i}]"), Some(b.clone())));
            }
        }
        for (path, behavior) in behaviors {
            let policy = known(
                &scope.eval,
                behavior
                    .as_ref()
                    .and_then(|b| b.get("viewerProtocolPolicy")),
            );
            if policy.as_ref().and_then(Value::as_str) != Some("https-only") {
                self.report(
                    format!("{path}.viewerProtocolPolicy"),
                    "must be https-only: WebSocket clients do not follow redirect-to-https's 301",
                );
            }
        }
    }

    /// The distribution has this program's CLOUDFRONT-scope web ACL, in
    /// us-east-1.
    fn distribution_has_the_web_acl(&mut self, scope: &Scope<'_>, distribution: &Resource<'_>) {
        let eval = &scope.eval;
        let at = format!("resources.{}.properties", distribution.name);
        let acl = scope
            .resources
            .iter()
            .filter(|r| r.token == WEB_ACL)
            .find(|a| topology::refers_to(prop(distribution, "webAclId"), a.name, "arn"));
        match acl {
            None => self.report(
                format!("{at}.webAclId"),
                "must be ${<web ACL>.arn} of this program's wafv2 WebAcl",
            ),
            Some(acl) => {
                let acl_at = format!("resources.{}.properties", acl.name);
                if known(eval, prop(acl, "scope")) != Some(Value::String("CLOUDFRONT".into())) {
                    self.report(format!("{acl_at}.scope"), "must be CLOUDFRONT");
                }
                if known(eval, prop(acl, "region")) != Some(Value::String("us-east-1".into())) {
                    self.report(format!("{acl_at}.region"), "must be us-east-1: CLOUDFRONT-scope web ACLs live there, whatever the stack's region");
                }
            }
        }
    }

    /// The URL users connect to: `wss://` and the distribution's domain.
    fn distribution_url(&mut self, distribution: &Resource<'_>) {
        let url_ok = self
            .program
            .section("outputs")
            .and_then(|o| o.get("DistributionURL"))
            .and_then(Value::as_str)
            .and_then(|s| interpolation::parse(s).ok())
            .is_some_and(|segments| match segments.as_slice() {
                [Segment::Text(scheme), Segment::Access(a)] => {
                    scheme == "wss://"
                        && a.root == distribution.name
                        && a.path_text() == "domainName"
                }
                _ => false,
            });
        if !url_ok {
            self.report(
                "outputs.DistributionURL",
                format!("must be wss://${{{}.domainName}}", distribution.name),
            );
        }
    }
}

pub(super) fn prop<'a>(resource: &'a Resource<'_>, name: &str) -> Option<&'a Value> {
    resource.properties.and_then(|p| p.get(name))
}

pub(super) fn known(eval: &Evaluator<'_>, value: Option<&Value>) -> Option<Value> {
    match eval.eval(value?) {
        Evaluated::Known(v) => Some(v),
        _ => None,
    }
}

/// A property's known value, if it is a string.
pub(super) fn known_str(eval: &Evaluator<'_>, value: Option<&Value>) -> Option<String> {
    known(eval, value).and_then(|v| v.as_str().map(str::to_string))
}

/// Whether a string interpolates `${resource.property}` somewhere.
pub(super) fn mentions(s: &str, resource: &str, property: &str) -> bool {
    interpolation::parse(s).is_ok_and(|segments| {
        segments.iter().any(|segment| {
            matches!(segment, Segment::Access(a) if a.root == resource && a.path.len() == 1 && a.first_property() == Some(property))
        })
    })
}
