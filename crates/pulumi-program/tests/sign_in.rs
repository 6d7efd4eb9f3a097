//! Sign-in on `$connect` (issue 22), broken one thing at a time in a copy of
//! the real program: each invariant of crates/pulumi-program/src/check/sign_in.rs
//! (and the authorizer's role and alarm) is caught, at its path.

mod support;

use pulumi_program::{Part, Template, load_sources};
use support::{DEV, PROGRAM, expect, expect_with, findings_with, mutated, mutated_in};

/// The dev stack's file with sign-in's config replaced by `lines`.
fn dev_with(lines: &str) -> String {
    let kept: Vec<&str> = DEV
        .lines()
        .filter(|l| {
            !["signIn:", "issuer:", "audience:"]
                .iter()
                .any(|k| l.trim_start().starts_with(&format!("websocket-waf:{k}")))
        })
        .collect();
    format!("{}\n{lines}", kept.join("\n"))
}

#[test]
fn both_modes_pass_and_read_as_the_route_says() {
    let off = dev_with("  websocket-waf:signIn: off\n");
    assert_eq!(findings_with(PROGRAM, &off), vec![]);
    let topology = load_sources(PROGRAM, Some(&off), "dev").expect("loads with sign-in off");
    let sign_in = topology.sign_in.expect("the program has an authorizer");
    assert!(!sign_in.enabled, "signIn off runs no authorizer");

    let topology = load_sources(PROGRAM, Some(DEV), "dev").expect("loads");
    let sign_in = topology.sign_in.expect("the program has an authorizer");
    assert!(sign_in.enabled, "the dev stack signs in");
    assert_eq!(sign_in.resource, "connectAuthorizer");
    assert_eq!(sign_in.token_parameter, "token");
    assert_eq!(sign_in.result_ttl_secs, 300);
    assert_eq!(sign_in.function.name, "websocket-waf-dev-authorizer");
    assert_eq!(sign_in.function.timeout_secs, 10);
    let env = |name: &str| sign_in.function.environment.get(name).cloned();
    let text = |s: &str| Some(Template(vec![Part::Text(s.into())]));
    assert_eq!(env("ISSUER"), text("http://127.0.0.1:8083"));
    assert_eq!(env("AUDIENCE"), text("websocket-waf-dev"));
    assert_eq!(env("TOKEN_PARAMETER"), text("token"));

    let renamed = dev_with(
        "  websocket-waf:issuer: https://issuer.example\n  websocket-waf:audience: a,b\n  websocket-waf:tokenParameter: access_token\n  websocket-waf:signInCacheTtl: 0\n",
    );
    assert_eq!(findings_with(PROGRAM, &renamed), vec![]);
    let sign_in = load_sources(PROGRAM, Some(&renamed), "dev")
        .expect("loads")
        .sign_in
        .expect("an authorizer");
    assert_eq!(sign_in.token_parameter, "access_token");
    assert_eq!(sign_in.result_ttl_secs, 0);
}

#[test]
fn a_stack_that_would_be_open_or_blind_is_refused_naming_its_config() {
    for (lines, shown) in [
        (
            "  websocket-waf:signIn: off\n  websocket-waf:issuer: https://issuer.example\n",
            "signIn=off issuer=\"https://issuer.example\"",
        ),
        ("  websocket-waf:signIn: oidc\n", "signIn=oidc issuer=\"\""),
        (
            "  websocket-waf:issuer: https://issuer.example\n",
            "audience=\"\"",
        ),
        (
            "  websocket-waf:issuer: issuer.example\n  websocket-waf:audience: a\n",
            "issuer=\"issuer.example\"",
        ),
        ("  websocket-waf:signIn: on\n", "signIn=on"),
    ] {
        expect_with(PROGRAM, &dev_with(lines), "config", shown);
    }
}

#[test]
fn the_program_itself_refuses_open_and_blind_stacks() {
    // Without the issuer's guard, off with an issuer (and oidc without one) deploys.
    let start = PROGRAM
        .find("  issuerFitsSignIn:")
        .expect("the issuer's guard");
    let end = start
        + PROGRAM[start..]
            .find("  # oidc needs an audience")
            .expect("the next variable");
    let program = format!("{}{}", &PROGRAM[..start], &PROGRAM[end..]);
    expect(
        &program,
        "variables",
        "signIn=off issuer=\"https://issuer.example\"",
    );
    expect(&program, "variables", "signIn oidc without an issuer");
    // Without the audience's guard, oidc without an audience deploys.
    let start = PROGRAM
        .find("  audienceFitsSignIn:")
        .expect("the audience's guard");
    let end = start
        + PROGRAM[start..]
            .find("\n\n")
            .expect("the end of the variable");
    let program = format!("{}{}", &PROGRAM[..start], &PROGRAM[end + 1..]);
    expect(&program, "variables", "without an audience");
    // A table that takes any mode: `on` is no explicit mode.
    let program = mutated(
        "'|off:NONE|oidc:CUSTOM|'",
        "'|off:NONE|oidc:CUSTOM|on:CUSTOM|'",
    );
    let program = program
        .replacen("'|off:##|oidc:#http|'", "'|off:##|oidc:#http|on:#http|'", 1)
        .replacen(
            "'|off:-|oidc:${audience}|'",
            "'|off:-|oidc:${audience}|on:${audience}|'",
            1,
        );
    expect(&program, "variables", "neither oidc nor off");
}

#[test]
fn connect_runs_the_authorizer_when_signed_in_and_keeps_the_key() {
    let program = mutated(
        "      authorizationType: ${connectAuthorization}\n",
        "      authorizationType: NONE\n",
    );
    expect(
        &program,
        "resources.connectRoute.properties.authorizationType",
        "must be CUSTOM when signIn is oidc",
    );
    let program = mutated("      authorizerId: ${connectAuthorizer.id}\n", "");
    expect(
        &program,
        "resources.connectRoute.properties.authorizerId",
        "must be ${<authorizer>.id}",
    );
    let program = mutated_in("connectRoute", "      apiKeyRequired: true\n", "");
    expect(
        &program,
        "resources.connectRoute.properties.apiKeyRequired",
        "$connect must require the API key",
    );
}

#[test]
fn the_authorizer_reads_the_parameter_its_function_is_told() {
    let program = mutated(
        "        - route.request.querystring.${tokenParameter}\n",
        "        - route.request.header.Authorization\n",
    );
    expect(
        &program,
        "resources.connectAuthorizer.properties.identitySources",
        "must be [route.request.querystring.<parameter>]",
    );
    let program = mutated(
        "          TOKEN_PARAMETER: ${tokenParameter}\n",
        "          TOKEN_PARAMETER: access_token\n",
    );
    expect(
        &program,
        "resources.authorizer.properties.environment.variables.TOKEN_PARAMETER",
        "must be token",
    );
    let program = mutated(
        "      authorizerType: REQUEST\n",
        "      authorizerType: JWT\n",
    );
    expect(
        &program,
        "resources.connectAuthorizer.properties.authorizerType",
        "must be REQUEST",
    );
    let program = mutated("          ISSUER: ${issuer}\n", "");
    expect(
        &program,
        "resources.authorizer.properties.environment.variables.ISSUER",
        "the authorizer needs it",
    );
    let ttl = dev_with(
        "  websocket-waf:issuer: http://127.0.0.1:8083\n  websocket-waf:audience: a\n  websocket-waf:signInCacheTtl: 7200\n",
    );
    expect_with(
        PROGRAM,
        &ttl,
        "resources.connectAuthorizer.properties.authorizerResultTtlInSeconds",
        "must be 0 to 3600",
    );
}

#[test]
fn only_the_authorizer_may_invoke_its_function() {
    let program = mutated(
        "      sourceArn: ${api.executionArn}/authorizers/${connectAuthorizer.id}\n",
        "      sourceArn: ${api.executionArn}/*\n",
    );
    expect(
        &program,
        "resources.authorizerPermission.properties.sourceArn",
        "only this authorizer may invoke",
    );
    let program = mutated(
        "      function: ${authorizer.name}\n",
        "      function: ${handler.name}\n",
    );
    expect(
        &program,
        "resources",
        "no aws:lambda/permission:Permission lets API Gateway invoke authorizer",
    );
}

#[test]
fn the_authorizer_has_a_role_of_its_own_with_its_logs_only() {
    let program = mutated_in(
        "authorizerRolePolicy",
        "                - logs:PutLogEvents\n",
        "                - logs:PutLogEvents\n                - dynamodb:GetItem\n",
    );
    expect(
        &program,
        "resources.authorizerRolePolicy.properties.policy",
        "grants dynamodb:GetItem on ${authorizerLogs.arn}:*, which the authorizer does not need",
    );
    let program = mutated(
        "      role: ${authorizerRole.arn}\n",
        "      role: ${role.arn}\n",
    );
    expect(
        &program,
        "resources.authorizer.properties.role",
        "shares its role with handler",
    );
    let program = mutated_in(
        "authorizer",
        "fn::fileArchive: ./target/lambda/authorizer/bootstrap.zip",
        "fn::fileArchive: ./target/lambda/websocket-handler/bootstrap.zip",
    );
    expect(
        &program,
        "resources.authorizer.properties.code",
        "./target/lambda/authorizer/bootstrap.zip",
    );
}

#[test]
fn the_authorizer_failing_pages_the_operator() {
    let program = mutated(
        "      dimensions:\n        FunctionName: ${authorizer.name}\n",
        "      dimensions:\n        FunctionName: ${handler.name}\n",
    );
    expect(
        &program,
        "resources",
        "no aws:cloudwatch/metricAlarm:MetricAlarm on AWS/Lambda Errors of authorizer",
    );
}

#[test]
fn a_change_of_sign_in_redeploys_the_stage() {
    let program = mutated(
        " ${connectRoute.authorizationType} ${connectRoute.authorizerId}\n",
        "\n",
    );
    expect(
        &program,
        "resources.deployment.properties.triggers",
        "must include ${connectRoute.authorizationType}",
    );
}
