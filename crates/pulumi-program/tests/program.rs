//! The repository's own Pulumi program: it passes the offline check, and the
//! local stack's view of it is what the program says.

use std::path::{Path, PathBuf};

use pulumi_program::{LocalPart, Part, Template, check, load};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_program_and_dev_stack_pass_the_offline_check() {
    let diagnostics = check::check(&repo_root(), "dev");
    let listed: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert!(listed.is_empty(), "findings:\n{}", listed.join("\n"));
}

#[test]
fn the_dev_topology_is_what_the_program_declares() {
    let topology = load(&repo_root(), "dev").expect("loads");
    assert_eq!(topology.project, "websocket-waf");
    assert_eq!(topology.stack, "dev");
    assert_eq!(topology.region, "eu-west-1");
    assert_eq!(
        topology.api.route_selection_expression,
        "$request.body.action"
    );
    assert_eq!(
        topology.api.api_key_selection_expression.as_deref(),
        Some("$request.header.x-api-key")
    );
    let routes: Vec<(&str, bool)> = topology
        .routes
        .iter()
        .map(|r| (r.route_key.as_str(), r.api_key_required))
        .collect();
    assert_eq!(
        routes,
        vec![
            ("$connect", true),
            ("$disconnect", false),
            ("$default", false),
            ("sendmessage", false),
            ("ping", false)
        ]
    );
    assert_eq!(topology.stage.name, "prod");
    assert_eq!(topology.stage.throttling_burst_limit, Some(500));
    assert_eq!(topology.stage.throttling_rate_limit, Some(1000.0));
    assert_eq!(topology.waf.rate_rule_name, "rate-limit-per-ip");
    assert_eq!(topology.waf.rate_limit, 2000);
    assert_eq!(topology.waf.evaluation_window_secs, 300);
    assert_eq!(topology.function.name, "websocket-waf-dev-handler");
    assert_eq!(topology.function.memory_mb, 256);
    assert_eq!(topology.function.timeout_secs, 10);
    // A broadcast's continuations: no retries, dropped after a minute.
    assert_eq!(topology.function.async_invoke.maximum_retry_attempts, 0);
    assert_eq!(topology.function.async_invoke.maximum_event_age_secs, 60);
    assert_eq!(topology.table.name, "websocket-waf-dev-connections");
    assert_eq!(topology.table.hash_key, "connectionId");
    assert_eq!(topology.table.ttl_attribute.as_deref(), Some("expiresAt"));
    assert_eq!(topology.claims_table.resource, "claims");
    assert_eq!(topology.claims_table.name, "websocket-waf-dev-claims");
    assert_eq!(topology.claims_table.hash_key, "claimId");
    assert_eq!(
        topology.claims_table.ttl_attribute.as_deref(),
        Some("expiresAt")
    );
    assert_eq!(topology.origin_api_key_header, "x-api-key");
}

#[test]
fn the_function_environment_resolves_with_local_values() {
    let topology = load(&repo_root(), "dev").expect("loads");
    let env = &topology.function.environment;
    assert_eq!(
        env.keys().collect::<Vec<_>>(),
        vec![
            "CLAIMS_TABLE",
            "CONNECTIONS_TABLE",
            "FANOUT_IN_FLIGHT",
            "FANOUT_PER_INVOCATION",
            "MANAGEMENT_ENDPOINT"
        ]
    );
    // Integer config reaches the string-only environment as its decimal text.
    assert_eq!(
        env["FANOUT_IN_FLIGHT"],
        Template(vec![Part::Text("200".into())])
    );
    assert_eq!(
        env["FANOUT_PER_INVOCATION"],
        Template(vec![Part::Text("0".into())])
    );
    assert_eq!(
        env["CONNECTIONS_TABLE"],
        Template(vec![Part::Text("websocket-waf-dev-connections".into())])
    );
    assert_eq!(
        env["CLAIMS_TABLE"],
        Template(vec![Part::Text("websocket-waf-dev-claims".into())])
    );
    assert_eq!(
        env["MANAGEMENT_ENDPOINT"],
        Template(vec![
            Part::Text("https://".into()),
            Part::Ref {
                resource: "api".into(),
                resource_type: "aws:apigatewayv2/api:Api".into(),
                property: "id".into(),
            },
            Part::Text(".execute-api.eu-west-1.amazonaws.com/prod".into()),
        ])
    );
    let endpoint = env["MANAGEMENT_ENDPOINT"]
        .resolve(|_, ty, property| {
            (ty == "aws:apigatewayv2/api:Api" && property == "id").then(|| "local123".to_string())
        })
        .expect("resolves");
    assert_eq!(
        endpoint,
        "https://local123.execute-api.eu-west-1.amazonaws.com/prod"
    );
    assert!(env["MANAGEMENT_ENDPOINT"].resolve(|_, _, _| None).is_err());
}

/// The role's DynamoDB actions are the calls the function's code makes, so a
/// new call without its grant (or a grant left after a call goes) fails here.
#[test]
fn the_granted_dynamodb_actions_are_the_functions_calls() {
    const OPERATIONS: &[(&str, &str)] = &[
        (".get_item()", "dynamodb:GetItem"),
        (".put_item()", "dynamodb:PutItem"),
        (".update_item()", "dynamodb:UpdateItem"),
        (".delete_item()", "dynamodb:DeleteItem"),
        (".scan()", "dynamodb:Scan"),
        (".query()", "dynamodb:Query"),
        (".batch_get_item()", "dynamodb:BatchGetItem"),
        (".batch_write_item()", "dynamodb:BatchWriteItem"),
        (".transact_get_items()", "dynamodb:GetItem"),
        (".transact_write_items()", "dynamodb:PutItem"),
    ];
    let src = repo_root().join("functions/websocket-handler/src");
    // All of the function's code, and the part of it that uses the DynamoDB
    // SDK (where a `.query()` is a DynamoDB Query, not a URL's query).
    let (mut code, mut dynamodb_code) = (String::new(), String::new());
    for entry in std::fs::read_dir(&src).expect("the function's sources") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("a source file");
            if text.contains("aws_sdk_dynamodb") {
                dynamodb_code.push_str(&text);
            }
            code.push_str(&text);
        }
    }
    let mut called: Vec<&str> = OPERATIONS
        .iter()
        .filter(|(call, _)| dynamodb_code.contains(call))
        .map(|(_, action)| *action)
        .collect();
    called.sort_unstable();
    called.dedup();
    let mut granted = check::FUNCTION_DYNAMODB_ACTIONS.to_vec();
    granted.sort_unstable();
    assert_eq!(called, granted);
    // Lambda: only Invoke, of itself (a broadcast's continuation).
    assert!(
        code.contains(".invoke()") && check::FUNCTION_SELF_ACTIONS == ["lambda:InvokeFunction"]
    );
    // The management API: only PostToConnection (`POST @connections/{id}`,
    // signed and sent by the function's post client, not the SDK's).
    assert!(code.contains("/@connections/") && code.contains("Method::POST"));
    assert!(!code.contains("Method::GET") && !code.contains("Method::DELETE"));
    assert!(!code.contains(".get_connection()") && !code.contains(".delete_connection()"));
}

#[test]
fn the_topology_says_what_the_local_stack_plays_and_what_it_does_not() {
    let topology = load(&repo_root(), "dev").expect("loads");
    let played: Vec<(&str, LocalPart)> = topology
        .played()
        .into_iter()
        .map(|(_, name, part)| (name, part))
        .collect();
    for (name, part) in [
        ("connections", LocalPart::DynamoDb),
        ("claims", LocalPart::DynamoDb),
        ("handler", LocalPart::Lambda),
        ("handlerAsyncConfig", LocalPart::Lambda),
        ("api", LocalPart::ApiLayer),
        ("connectRoute", LocalPart::ApiLayer),
        ("stage", LocalPart::ApiLayer),
        ("webAcl", LocalPart::Edge),
        ("distribution", LocalPart::Edge),
    ] {
        assert!(
            played.contains(&(name, part)),
            "{name} played by {part:?}: {played:?}"
        );
    }
    let not_played = topology.not_played();
    for (ty, name) in [
        (
            "aws:cloudwatch/metricAlarm:MetricAlarm",
            "functionErrorsAlarm",
        ),
        (
            "aws:cloudwatch/metricAlarm:MetricAlarm",
            "cloudfront5xxAlarm",
        ),
        ("aws:cloudwatch/dashboard:Dashboard", "dashboard"),
        ("aws:sns/topic:Topic", "alarmTopic"),
        ("aws:sns/topic:Topic", "edgeAlarmTopic"),
        ("aws:sqs/queue:Queue", "deadLetters"),
        (
            "aws:cloudwatch/logResourcePolicy:LogResourcePolicy",
            "wafLogsPolicy",
        ),
        ("aws:iam/role:Role", "role"),
        ("aws:iam/rolePolicy:RolePolicy", "selfInvokePolicy"),
        ("aws:apigateway/usagePlan:UsagePlan", "usagePlan"),
        // Sign-in is not played by the local stack yet: the banner says so.
        ("aws:lambda/function:Function", "authorizer"),
        (
            "aws:apigatewayv2/authorizer:Authorizer",
            "connectAuthorizer",
        ),
    ] {
        assert!(
            not_played.contains(&(ty, name)),
            "{name} not played: {not_played:?}"
        );
    }
    assert_eq!(
        played.len() + not_played.len(),
        topology.resources.len(),
        "every resource is one or the other"
    );
    let summary = topology.coverage_summary();
    assert!(
        summary.starts_with(&format!(
            "plays {} of {} resources (CloudFront + WAF (edge), API Gateway WebSocket API (API layer), Lambda, DynamoDB); not played: ",
            played.len(),
            topology.resources.len()
        )),
        "{summary}"
    );
    assert!(summary.contains("MetricAlarm ×12"), "{summary}");
    assert!(summary.contains("Topic ×2"), "{summary}");
    assert!(summary.contains("Dashboard"), "{summary}");
}
