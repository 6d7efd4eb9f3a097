//! Sign-in on `$connect` (issue 22) through the real Pulumi CLI 3.274.1 and
//! YAML host 1.25.0 against the provider double: both modes deploy, a switch
//! between them updates the route and redeploys the stage, and the YAML host
//! itself stops the preview of a stack that would be open while an issuer is
//! configured, signed in without an issuer or audience, or in no known mode.

use std::collections::BTreeSet;

use anyhow::{Context, bail, ensure};
use e2e::rehearsal::{Rehearsal, created, names, no_warnings_or_errors, text};
use serde_json::Value;

/// The Create of `name` in `calls`, its inputs.
fn inputs<'a>(calls: &'a [Value], name: &str) -> anyhow::Result<&'a Value> {
    Ok(&created(calls, name)?["inputs"])
}

#[test]
fn oidc_attaches_the_authorizer_and_off_detaches_it_with_a_redeploy() -> anyhow::Result<()> {
    // The dev stack: signIn oidc against the loopback issuer.
    let stack = Rehearsal::unchanged()?;
    let up = stack.pulumi(&["up", "--yes"])?;
    no_warnings_or_errors("pulumi up --yes", &up)?;
    let all = stack.calls("Create")?;
    let authorizer_id = text(
        &created(&all, "connectAuthorizer")?["id"],
        "the authorizer's id",
    )?;
    let api = created(&all, "api")?;
    let execution_arn = text(&api["outputs"]["executionArn"], "the API's executionArn")?;
    let route = inputs(&all, "connectRoute")?;
    ensure!(
        route["authorizationType"] == "CUSTOM"
            && route["authorizerId"] == authorizer_id
            && route["apiKeyRequired"] == true,
        "$connect with sign-in on: {route}"
    );
    let authorizer = inputs(&all, "connectAuthorizer")?;
    let function = created(&all, "authorizer")?;
    ensure!(
        authorizer["authorizerType"] == "REQUEST"
            && authorizer["identitySources"]
                == serde_json::json!(["route.request.querystring.token"])
            && authorizer["authorizerResultTtlInSeconds"] == 300.0
            && authorizer["authorizerUri"] == function["outputs"]["invokeArn"],
        "the authorizer: {authorizer}"
    );
    let permission = inputs(&all, "authorizerPermission")?;
    ensure!(
        permission["sourceArn"] == format!("{execution_arn}/authorizers/{authorizer_id}")
            && permission["function"] == function["outputs"]["name"],
        "the authorizer's permission is not scoped to it: {permission}"
    );
    let env = &function["inputs"]["environment"]["variables"];
    ensure!(
        env["ISSUER"] == "http://127.0.0.1:8083"
            && env["AUDIENCE"] == "websocket-waf-dev"
            && env["TOKEN_PARAMETER"] == "token",
        "the authorizer's environment: {env}"
    );
    // Its role: its own logs, nothing else.
    let logs = text(
        &created(&all, "authorizerLogs")?["outputs"]["arn"],
        "the log group's ARN",
    )?;
    let policy: Value = serde_json::from_str(text(
        &inputs(&all, "authorizerRolePolicy")?["policy"],
        "the authorizer's policy",
    )?)?;
    ensure!(
        policy["Statement"]
            == serde_json::json!([{
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": format!("{logs}:*"),
            }]),
        "the authorizer's role grants more than its logs: {policy}"
    );
    let sign_in = stack.pulumi(&["stack", "output", "SignIn"])?.stdout;
    ensure!(
        sign_in.trim()
            == "oidc http://127.0.0.1:8083 (audience websocket-waf-dev, token in ?token=)",
        "SignIn output: {sign_in:?}"
    );

    // Off: the issuer goes with it (off with an issuer is refused, below).
    stack.pulumi(&["config", "set", "signIn", "off"])?;
    stack.pulumi(&["config", "rm", "issuer"])?;
    stack.pulumi(&["config", "rm", "audience"])?;
    let before = stack.calls("Update")?.len();
    let created_before = stack.calls("Create")?.len();
    let up = stack.pulumi(&["up", "--yes"])?;
    no_warnings_or_errors("pulumi up --yes (signIn off)", &up)?;
    let updates = stack.calls("Update")?;
    let updated = names(&updates[before..]);
    for name in ["connectRoute", "authorizer"] {
        ensure!(
            updated.contains(name),
            "signIn off did not update {name}: {updated:?}"
        );
    }
    // The deployment's triggers changed: AWS replaces it (a new deployment
    // of the API), as the provider facts say.
    let recreated = names(&stack.calls("Create")?[created_before..]);
    ensure!(
        recreated == BTreeSet::from(["deployment".to_string()]),
        "signIn off should replace the deployment and create nothing else: {recreated:?}"
    );
    let route = &updates[before..]
        .iter()
        .find(|u| u["name"] == "connectRoute")
        .context("the route's update")?["inputs"];
    ensure!(
        route["authorizationType"] == "NONE" && route["apiKeyRequired"] == true,
        "$connect with sign-in off: {route}"
    );
    let sign_in = stack.pulumi(&["stack", "output", "SignIn"])?.stdout;
    ensure!(sign_in.starts_with("off"), "SignIn output: {sign_in:?}");
    let deleted = names(&stack.calls("Delete")?);
    ensure!(
        deleted == BTreeSet::from(["deployment".to_string()]),
        "switching sign-in off deleted more than the replaced deployment: {deleted:?}"
    );
    Ok(())
}

/// `pulumi preview` of the dev stack after `config` fails, naming `variable`,
/// and nothing is created.
fn refused(config: &[&[&str]], variable: &str) -> anyhow::Result<()> {
    let stack = Rehearsal::unchanged()?;
    for args in config {
        stack.pulumi(args)?;
    }
    let preview = stack.session.run(&["preview"])?;
    if preview.status.success() {
        bail!("the preview passed:\n{}", preview.text());
    }
    let text = preview.text();
    for needle in [
        format!("Error registering variable [{variable}]"),
        "out-of-bounds".into(),
    ] {
        ensure!(
            text.contains(&needle),
            "the preview failed without `{needle}`:\n{text}"
        );
    }
    let up = stack.session.run(&["up", "--yes"])?;
    ensure!(!up.status.success(), "up passed:\n{}", up.text());
    ensure!(
        stack.calls("Create")?.is_empty(),
        "a refused stack created resources"
    );
    Ok(())
}

#[test]
fn off_with_an_issuer_configured_is_refused() -> anyhow::Result<()> {
    refused(&[&["config", "set", "signIn", "off"]], "issuerFitsSignIn")
}

#[test]
fn oidc_without_an_issuer_or_an_audience_is_refused() -> anyhow::Result<()> {
    refused(&[&["config", "rm", "issuer"]], "issuerFitsSignIn")?;
    refused(
        &[&["config", "set", "issuer", "issuer.example"]],
        "issuerFitsSignIn",
    )?;
    refused(&[&["config", "rm", "audience"]], "audienceFitsSignIn")
}

#[test]
fn a_mode_that_is_neither_oidc_nor_off_is_refused() -> anyhow::Result<()> {
    refused(
        &[&["config", "set", "signIn", "on"]],
        "connectAuthorization",
    )
}

#[test]
fn a_fresh_stack_with_no_sign_in_config_is_refused_until_an_issuer_is_set() -> anyhow::Result<()> {
    // The project's defaults alone: signIn oidc, no issuer.
    refused(
        &[
            &["config", "rm", "signIn"],
            &["config", "rm", "issuer"],
            &["config", "rm", "audience"],
        ],
        "issuerFitsSignIn",
    )?;
    let stack = Rehearsal::unchanged()?;
    for args in [
        &["config", "rm", "signIn"][..],
        &[
            "config",
            "set",
            "issuer",
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123",
        ],
        &["config", "set", "audience", "4lvpv0example0client0id"],
    ] {
        stack.pulumi(args)?;
    }
    stack.pulumi(&["up", "--yes"])?;
    let route = inputs(&stack.calls("Create")?, "connectRoute")?.clone();
    ensure!(
        route["authorizationType"] == "CUSTOM",
        "the default mode is not oidc: {route}"
    );
    let created: BTreeSet<String> = names(&stack.calls("Create")?);
    ensure!(
        created.contains("authorizerErrorsAlarm"),
        "no authorizer errors alarm: {created:?}"
    );
    Ok(())
}
