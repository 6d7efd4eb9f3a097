//! Sign-in on `$connect` (issue 22), checked: the route keeps the API key and
//! runs the program's Lambda REQUEST authorizer when config says `oidc`, the
//! authorizer reads the token parameter its function is told about, only it
//! may invoke that function, a mode change redeploys the stage — and the
//! program itself refuses, at `pulumi preview`, a stack that would be open
//! while an issuer is configured (or signed in without an issuer, an
//! audience or a known mode), whatever the current stack's config says.

use serde_yaml_ng::Value;

use super::Checker;
use super::custom_domain::without_domain;
use super::invariants::{Scope, known_str, mentions, prop};
use crate::eval::{Evaluated, Evaluator, OUT_OF_RANGE};
use crate::interpolation::{self, Segment};
use crate::program::{Config, Program, Resource};
use crate::topology::{self, API, AUTHORIZER, ROUTE};

/// The modes of config `signIn`, with the route's `authorizationType` each
/// means.
pub const MODES: &[(&str, &str)] = &[("oidc", "CUSTOM"), ("off", "NONE")];
/// The identity source's prefix: the token travels in the query string.
const QUERY_STRING: &str = "route.request.querystring.";
/// API Gateway's bounds on `authorizerResultTtlInSeconds`.
const MAX_TTL_SECS: u64 = 3600;

/// Stacks the program must refuse before anything is created: each sets
/// `signIn`, `issuer` and `audience` (None: the declared default), and says
/// why it must not deploy.
const REFUSED: &[(&str, Option<&str>, Option<&str>, &str)] = &[
    (
        "off",
        Some("https://issuer.example"),
        None,
        "signIn off with an issuer set would leave $connect open while an issuer is configured",
    ),
    (
        "oidc",
        Some(""),
        Some("client"),
        "signIn oidc without an issuer has nothing to check tokens against",
    ),
    (
        "oidc",
        Some("https://issuer.example"),
        Some(""),
        "signIn oidc without an audience would take any client's token",
    ),
    (
        "on",
        Some("https://issuer.example"),
        Some("client"),
        "a signIn that is neither oidc nor off is no explicit mode",
    ),
];

impl Checker<'_> {
    /// The sign-in invariants, when the program has an authorizer.
    pub(super) fn sign_in(&mut self) {
        let config = self.config.clone();
        let scope = Scope::new(self.program, &config);
        let Some(api) = scope.first(API) else {
            return;
        };
        let authorizers = scope.of(AUTHORIZER);
        if authorizers.is_empty() && self.config.lookup("signIn").is_none() {
            return;
        }
        let Some(connect) = scope.of(ROUTE).into_iter().find(|r| {
            topology::refers_to(prop(r, "apiId"), api.name, "id")
                && known_str(&scope.eval, prop(r, "routeKey")).as_deref() == Some("$connect")
        }) else {
            return;
        };
        let route_at = format!("resources.{}.properties", connect.name);
        let Some(authorizer) = authorizers
            .iter()
            .find(|a| topology::refers_to(prop(connect, "authorizerId"), a.name, "id"))
        else {
            self.report(
                format!("{route_at}.authorizerId"),
                format!("must be ${{<authorizer>.id}} of this program's {AUTHORIZER}"),
            );
            return;
        };
        self.mode_is_the_config(&scope, connect);
        self.refuses_open_or_blind_stacks(connect);
        self.authorizer_reads_the_token(&scope, api, authorizer);
        self.only_the_authorizer_invokes(&scope, api, authorizer);
        self.mode_changes_redeploy(&scope, connect, authorizer);
    }

    /// `authorizationType` is what config `signIn` says: CUSTOM for oidc,
    /// NONE for off.
    fn mode_is_the_config(&mut self, scope: &Scope<'_>, connect: &Resource<'_>) {
        let at = format!("resources.{}.properties.authorizationType", connect.name);
        let mode = self.config.lookup("signIn").and_then(Value::as_str);
        let Some((mode, expected)) = MODES.iter().find(|(m, _)| Some(*m) == mode) else {
            // Refused below, as the YAML host refuses it.
            return;
        };
        match scope
            .eval
            .eval(prop(connect, "authorizationType").unwrap_or(&Value::Null))
        {
            Evaluated::Known(Value::String(found)) if found == *expected => {}
            Evaluated::Unknown(why) if why.starts_with(OUT_OF_RANGE) => {}
            found => self.report(
                at,
                format!(
                    "must be {expected} when signIn is {mode}, found {}",
                    describe(&found)
                ),
            ),
        }
    }

    /// Each stack of [`REFUSED`] stops the preview: a variable (or the
    /// route's `authorizationType`) selects past the end of its list.
    fn refuses_open_or_blind_stacks(&mut self, connect: &Resource<'_>) {
        for (mode, issuer, audience, why) in REFUSED {
            let mut config = self.config.clone();
            for (key, value) in [
                ("signIn", Some(*mode)),
                ("issuer", *issuer),
                ("audience", *audience),
            ] {
                if let Some(value) = value {
                    config
                        .project
                        .insert(key.into(), Value::String(value.into()));
                }
            }
            if !refused(self.program, &config, connect) {
                self.report(
                    "variables",
                    format!(
                        "the program deploys signIn={mode} issuer={:?} audience={:?}: {why}; refuse it with a variable that selects past its list (see the sign-in variables)",
                        issuer.unwrap_or("<default>"),
                        audience.unwrap_or("<default>")
                    ),
                );
            }
        }
        // And the current stack, with a message naming its config (its
        // custom domain, checked on its own, left out).
        if refused(self.program, &without_domain(&self.config), connect) {
            let show = |key: &str| {
                self.config
                    .lookup(key)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            self.report(
                "config",
                format!(
                    "signIn={} issuer={:?} audience={:?} stops `pulumi preview`: oidc needs an http(s) issuer and an audience, off needs no issuer",
                    show("signIn"),
                    show("issuer"),
                    show("audience")
                ),
            );
        }
    }

    /// A REQUEST authorizer on this API, invoking a function of this
    /// program, reading one query-string parameter — the one the function's
    /// `TOKEN_PARAMETER` names — with a cache TTL API Gateway accepts.
    fn authorizer_reads_the_token(
        &mut self,
        scope: &Scope<'_>,
        api: &Resource<'_>,
        authorizer: &Resource<'_>,
    ) {
        let eval = &scope.eval;
        let at = format!("resources.{}.properties", authorizer.name);
        if !topology::refers_to(prop(authorizer, "apiId"), api.name, "id") {
            self.report(
                format!("{at}.apiId"),
                format!("must be ${{{}.id}}", api.name),
            );
        }
        if known_str(eval, prop(authorizer, "authorizerType")).as_deref() != Some("REQUEST") {
            self.report(
                format!("{at}.authorizerType"),
                "must be REQUEST: a WebSocket API's authorizer is a Lambda REQUEST authorizer",
            );
        }
        let Some(function) = scope.authorizer_function() else {
            self.report(
                format!("{at}.authorizerUri"),
                "must be ${<function>.invokeArn} of a function of this program",
            );
            return;
        };
        let parameter = match eval.eval(prop(authorizer, "identitySources").unwrap_or(&Value::Null))
        {
            Evaluated::Known(Value::Sequence(sources)) => match sources.as_slice() {
                [Value::String(source)] => source.strip_prefix(QUERY_STRING).map(str::to_string),
                _ => None,
            },
            _ => None,
        };
        let told = known_str(
            eval,
            prop(function, "environment")
                .and_then(|e| e.get("variables"))
                .and_then(|v| v.get("TOKEN_PARAMETER")),
        );
        match parameter {
            None => self.report(
                format!("{at}.identitySources"),
                format!(
                    "must be [{QUERY_STRING}<parameter>]: a browser cannot set a WebSocket handshake's headers"
                ),
            ),
            Some(parameter) if told.as_deref() != Some(parameter.as_str()) => self.report(
                format!(
                    "resources.{}.properties.environment.variables.TOKEN_PARAMETER",
                    function.name
                ),
                format!(
                    "must be {parameter}, the parameter the authorizer's identity source reads (found {})",
                    told.as_deref().unwrap_or("none")
                ),
            ),
            Some(_) => {}
        }
        for variable in ["ISSUER", "AUDIENCE"] {
            let value = prop(function, "environment")
                .and_then(|e| e.get("variables"))
                .and_then(|v| v.get(variable));
            if value.is_none() {
                self.report(
                    format!(
                        "resources.{}.properties.environment.variables.{variable}",
                        function.name
                    ),
                    "the authorizer needs it (functions/authorizer)",
                );
            }
        }
        if let Some(ttl) = prop(authorizer, "authorizerResultTtlInSeconds") {
            let within = match eval.eval(ttl) {
                Evaluated::Known(v) => v.as_u64().is_some_and(|n| n <= MAX_TTL_SECS),
                _ => true,
            };
            if !within {
                self.report(
                    format!("{at}.authorizerResultTtlInSeconds"),
                    format!("must be 0 to {MAX_TTL_SECS} (API Gateway's bounds)"),
                );
            }
        }
    }

    /// Exactly one permission lets API Gateway invoke the authorizer's
    /// function, and only from this authorizer:
    /// `${api.executionArn}/authorizers/${<authorizer>.id}`.
    fn only_the_authorizer_invokes(
        &mut self,
        scope: &Scope<'_>,
        api: &Resource<'_>,
        authorizer: &Resource<'_>,
    ) {
        let Some(function) = scope.authorizer_function() else {
            return;
        };
        let permissions: Vec<&Resource<'_>> = scope
            .of("aws:lambda/permission:Permission")
            .into_iter()
            .filter(|p| {
                ["name", "arn"]
                    .iter()
                    .any(|f| topology::refers_to(prop(p, "function"), function.name, f))
            })
            .collect();
        if permissions.is_empty() {
            self.report(
                "resources",
                format!(
                    "no aws:lambda/permission:Permission lets API Gateway invoke {}",
                    function.name
                ),
            );
        }
        for permission in permissions {
            let scoped = prop(permission, "sourceArn")
                .and_then(Value::as_str)
                .and_then(|s| interpolation::parse(s).ok())
                .is_some_and(|segments| match segments.as_slice() {
                    [
                        Segment::Access(a),
                        Segment::Text(middle),
                        Segment::Access(b),
                    ] => {
                        a.root == api.name
                            && a.path_text() == "executionArn"
                            && middle == "/authorizers/"
                            && b.root == authorizer.name
                            && b.path_text() == "id"
                    }
                    _ => false,
                });
            if !scoped {
                self.report(
                    format!("resources.{}.properties.sourceArn", permission.name),
                    format!(
                        "must be ${{{}.executionArn}}/authorizers/${{{}.id}}: only this authorizer may invoke {}",
                        api.name, authorizer.name, function.name
                    ),
                );
            }
        }
    }

    /// The stage's deployment follows the route's authorization and the
    /// authorizer: switching signIn takes effect only once redeployed.
    fn mode_changes_redeploy(
        &mut self,
        scope: &Scope<'_>,
        connect: &Resource<'_>,
        authorizer: &Resource<'_>,
    ) {
        for deployment in scope.of("aws:apigatewayv2/deployment:Deployment") {
            let triggers: Vec<&str> = prop(deployment, "triggers")
                .and_then(Value::as_mapping)
                .map(|t| t.values().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for (resource, property) in [
                (connect.name, "authorizationType"),
                (connect.name, "authorizerId"),
                (authorizer.name, "id"),
            ] {
                if !triggers.iter().any(|t| mentions(t, resource, property)) {
                    self.report(
                        format!("resources.{}.properties.triggers", deployment.name),
                        format!(
                            "must include ${{{resource}.{property}}}: a change of sign-in leaves the stage on the old deployment otherwise"
                        ),
                    );
                }
            }
        }
    }
}

/// Whether the YAML host stops the preview of this program under `config`:
/// a variable, or the `$connect` route's `authorizationType`, selects past
/// the end of its list.
fn refused(program: &Program, config: &Config, connect: &Resource<'_>) -> bool {
    stops_preview(program, config, prop(connect, "authorizationType"))
}

/// Whether the YAML host stops the preview of `program` under `config`: a
/// variable, or `also`, selects past the end of its list.
pub(super) fn stops_preview(program: &Program, config: &Config, also: Option<&Value>) -> bool {
    let eval = Evaluator::new(program, config);
    let out_of_range = |value: &Value| matches!(eval.eval(value), Evaluated::Unknown(why) if why.starts_with(OUT_OF_RANGE));
    program.variables().any(|(_, value)| out_of_range(value)) || also.is_some_and(out_of_range)
}

fn describe(found: &Evaluated) -> String {
    match found {
        Evaluated::Known(v) => serde_json::to_string(v).unwrap_or_else(|_| "?".into()),
        Evaluated::Template(_) => "a resource output".into(),
        Evaluated::Unknown(why) => format!("nothing known offline ({why})"),
    }
}
