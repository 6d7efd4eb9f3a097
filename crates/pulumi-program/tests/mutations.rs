//! Broken copies of the real program are caught: each test changes one thing
//! in memory and expects the finding at its path.

use pulumi_program::check::check_sources;
use pulumi_program::{Error, load_sources};

mod support;

use support::{DEV, PROGRAM, expect, findings, mutated, mutated_in, mutated_table};

#[test]
fn the_unmutated_program_has_no_findings() {
    assert_eq!(findings(PROGRAM), vec![]);
}

#[test]
fn a_misspelt_property_is_caught_with_a_suggestion() {
    let program = mutated(
        "originProtocolPolicy: https-only",
        "originProtocolPolcy: https-only",
    );
    expect(
        &program,
        "resources.distribution.properties.origins[0].customOriginConfig.originProtocolPolcy",
        "did you mean `originProtocolPolicy`?",
    );
    let program = mutated_table(
        "      billingMode: PAY_PER_REQUEST",
        "      billingMod: PAY_PER_REQUEST",
    );
    expect(
        &program,
        "resources.connections.properties.billingMod",
        "has no property `billingMod`",
    );
}

#[test]
fn a_missing_required_property_is_caught_at_any_depth() {
    let program = mutated("      role: ${role.arn}\n", "");
    expect(
        &program,
        "resources.handler.properties.role",
        "required property",
    );
    let program = mutated("        targetOriginId: websocket-api\n", "");
    expect(
        &program,
        "resources.distribution.properties.defaultCacheBehavior.targetOriginId",
        "required property",
    );
}

#[test]
fn dangling_references_are_caught() {
    let program = mutated(
        "CONNECTIONS_TABLE: ${connections.name}",
        "CONNECTIONS_TABLE: ${conections.name}",
    );
    expect(
        &program,
        "resources.handler.properties.environment.variables.CONNECTIONS_TABLE",
        "refers to no resource, variable or config key; did you mean `connections`?",
    );
    let program = mutated(
        "integrationUri: ${handler.invokeArn}",
        "integrationUri: ${handler.invokeUrl}",
    );
    expect(
        &program,
        "resources.integration.properties.integrationUri",
        "has no output `invokeUrl`",
    );
    let program = mutated("limit: ${rateLimit}", "limit: ${rateLimt}");
    expect(
        &program,
        "resources.webAcl.properties.rules[0].statement.rateBasedStatement.limit",
        "refers to no resource, variable or config key",
    );
}

#[test]
fn an_unknown_builtin_is_caught() {
    let program = mutated_in(
        "role",
        "      assumeRolePolicy:\n        fn::toJSON:",
        "      assumeRolePolicy:\n        fn::toYAML:",
    );
    expect(
        &program,
        "resources.role.properties.assumeRolePolicy.fn::toYAML",
        "unknown builtin `fn::toYAML`",
    );
}

#[test]
fn an_unknown_data_source_or_return_field_is_caught() {
    let program = mutated(
        "function: aws:index/getRegion:getRegion",
        "function: aws:index/getRegoin:getRegoin",
    );
    expect(
        &program,
        "variables.region.fn::invoke.function",
        "no data source",
    );
    let program = mutated("      return: region\n", "      return: regionName\n");
    expect(
        &program,
        "variables.region.fn::invoke.return",
        "returns no `regionName`",
    );
}

#[test]
fn values_of_the_wrong_shape_are_caught() {
    let program = mutated("memorySize: ${functionMemory}", "memorySize: lots");
    expect(
        &program,
        "resources.handler.properties.memorySize",
        "expected an integer, found a string",
    );
    let program = mutated(
        "      enabled: true\n      comment:",
        "      enabled: [true]\n      comment:",
    );
    expect(
        &program,
        "resources.distribution.properties.enabled",
        "expected a boolean, found a list",
    );
    let program = mutated_in(
        "handler",
        "        fn::fileArchive: ./target",
        "        fn::fileAsset: ./target",
    );
    expect(
        &program,
        "resources.handler.properties.code",
        "expected an archive",
    );
    let program = mutated_table(
        "      ttl:\n        attributeName: expiresAt\n        enabled: true\n",
        "      ttl: [expiresAt]\n",
    );
    expect(
        &program,
        "resources.connections.properties.ttl",
        "found a list",
    );
    let dev = DEV.replace("logRetentionDays: 3", "logRetentionDays: three");
    let found = check_sources(PROGRAM, Some(&dev), "dev");
    assert!(
        found
            .iter()
            .any(|d| d.path == "Pulumi.dev.yaml#config.websocket-waf:logRetentionDays"),
        "{found:?}"
    );
}

#[test]
fn unknown_resource_types_are_caught() {
    let program = mutated_table(
        "type: aws:dynamodb/table:Table",
        "type: aws:dynamodb/tabel:Tabel",
    );
    expect(
        &program,
        "resources.connections.type",
        "no resource type aws:dynamodb/tabel:Tabel",
    );
    let program = mutated_table(
        "type: aws:dynamodb/table:Table",
        "type: aws:s3/bucket:Bucket",
    );
    expect(
        &program,
        "resources.connections.type",
        "outside the extracted modules",
    );
}

#[test]
fn the_provider_version_must_be_pinned() {
    let program = mutated_table(
        "        enabled: true\n    options:\n      version: 7.51.1",
        "        enabled: true\n    options:\n      version: 6.0.0",
    );
    expect(
        &program,
        "resources.connections.options.version",
        "the checked schema is 7.51.1",
    );
}

#[test]
fn connect_must_require_the_key() {
    let program = mutated("apiKeyRequired: true", "apiKeyRequired: false");
    expect(
        &program,
        "resources.connectRoute.properties.apiKeyRequired",
        "$connect must require the API key",
    );
    let program = mutated(
        "apiKeySelectionExpression: $request.header.x-api-key",
        "apiKeySelectionExpression: $request.header.x-other",
    );
    expect(
        &program,
        "resources.api.properties.apiKeySelectionExpression",
        "x-api-key",
    );
}

#[test]
fn cloudfront_must_send_the_api_key_header() {
    let program = mutated("- name: x-api-key", "- name: x-api-secret");
    expect(
        &program,
        "resources.distribution.properties.origins[0].customHeaders",
        "x-api-key",
    );
    let program = mutated("value: ${apiKey.value}", "value: ${apiKey.id}");
    expect(
        &program,
        "resources.distribution.properties.origins[0].customHeaders",
        "apiKey.value",
    );
}

#[test]
fn the_distribution_must_be_behind_this_programs_cloudfront_acl_in_us_east_1() {
    let program = mutated("scope: CLOUDFRONT", "scope: REGIONAL");
    expect(
        &program,
        "resources.webAcl.properties.scope",
        "must be CLOUDFRONT",
    );
    let program = mutated(
        "      region: us-east-1\n      namePrefix: ${pulumi.project}-${pulumi.stack}-\n      scope",
        "      namePrefix: ${pulumi.project}-${pulumi.stack}-\n      scope",
    );
    expect(
        &program,
        "resources.webAcl.properties.region",
        "must be us-east-1",
    );
    let program = mutated("webAclId: ${webAcl.arn}", "webAclId: ${wafLogs.arn}");
    expect(
        &program,
        "resources.distribution.properties.webAclId",
        "wafv2 WebAcl",
    );
}

#[test]
fn the_origin_must_be_https_only_with_tls_1_2() {
    let program = mutated(
        "originProtocolPolicy: https-only",
        "originProtocolPolicy: match-viewer",
    );
    expect(
        &program,
        "resources.distribution.properties.origins[0].customOriginConfig.originProtocolPolicy",
        "must be https-only",
    );
    let program = mutated(
        "              - TLSv1.2",
        "              - TLSv1.1\n              - TLSv1.2",
    );
    expect(
        &program,
        "resources.distribution.properties.origins[0].customOriginConfig.originSslProtocols",
        "must be [TLSv1.2]",
    );
}

#[test]
fn viewers_must_use_https_only() {
    for policy in ["allow-all", "redirect-to-https"] {
        let program = mutated(
            "viewerProtocolPolicy: https-only",
            &format!("viewerProtocolPolicy: {policy}"),
        );
        expect(
            &program,
            "resources.distribution.properties.defaultCacheBehavior.viewerProtocolPolicy",
            "must be https-only",
        );
    }
}

#[test]
fn the_invoke_permission_must_be_scoped_to_this_api() {
    let program = mutated(
        "sourceArn: ${api.executionArn}/${stageName}/*",
        "sourceArn: arn:aws:execute-api:*",
    );
    expect(
        &program,
        "resources.invokePermission.properties.sourceArn",
        "must be scoped to this API",
    );
    let program = mutated("      sourceArn: ${api.executionArn}/${stageName}/*\n", "");
    expect(
        &program,
        "resources.invokePermission.properties.sourceArn",
        "must be scoped to this API",
    );
}

#[test]
fn distribution_url_must_be_wss_to_the_distribution() {
    let program = mutated(
        "DistributionURL: wss://${distribution.domainName}",
        "DistributionURL: https://${distribution.domainName}",
    );
    expect(
        &program,
        "outputs.DistributionURL",
        "must be wss://${distribution.domainName}",
    );
}

#[test]
fn the_function_environment_is_the_contract_with_its_code() {
    let program = mutated("          CONNECTIONS_TABLE: ${connections.name}\n", "");
    expect(
        &program,
        "resources.handler.properties.environment.variables.CONNECTIONS_TABLE",
        "table",
    );
}

#[test]
fn a_config_description_field_is_refused_as_the_yaml_host_warns_on_it() {
    let program = mutated(
        "  functionMemory:\n    type: integer\n",
        "  functionMemory:\n    type: integer\n    description: Lambda memory in MB.\n",
    );
    expect(
        &program,
        "config.functionMemory.description",
        "not a config declaration field",
    );
}

#[test]
fn load_names_what_is_missing() {
    let dev = DEV.replace("  aws:region: eu-west-1\n", "");
    match load_sources(PROGRAM, Some(&dev), "dev") {
        Err(Error::Invalid { path, .. }) => assert_eq!(path, "Pulumi.dev.yaml#config.aws:region"),
        other => panic!("expected the missing region to be named, got {other:?}"),
    }
    let program = mutated("      name: ${stageName}\n", "");
    match load_sources(&program, Some(DEV), "dev") {
        Err(Error::Invalid { path, .. }) => assert_eq!(path, "resources.stage.properties.name"),
        other => panic!("expected the missing stage name to be named, got {other:?}"),
    }
}

#[test]
fn stack_config_overrides_defaults_with_or_without_the_project_namespace() {
    let dev = format!("{DEV}  websocket-waf:rateLimit: 100\n  stageBurstLimit: \"7\"\n");
    let topology = load_sources(PROGRAM, Some(&dev), "dev").expect("loads");
    assert_eq!(topology.waf.rate_limit, 100);
    assert_eq!(topology.stage.throttling_burst_limit, Some(7));
    let prod = "config:\n  aws:region: ap-southeast-2\n  websocket-waf:stageName: live\n";
    let topology = load_sources(PROGRAM, Some(prod), "prod").expect("loads");
    assert_eq!(topology.region, "ap-southeast-2");
    assert_eq!(topology.stage.name, "live");
    assert_eq!(topology.table.name, "websocket-waf-prod-connections");
    let endpoint = topology.function.environment["MANAGEMENT_ENDPOINT"]
        .resolve(|_, _, property| (property == "id").then(|| "abc".to_string()))
        .expect("resolves");
    assert_eq!(
        endpoint,
        "https://abc.execute-api.ap-southeast-2.amazonaws.com/live"
    );
}

#[test]
fn a_dependency_cycle_is_caught() {
    // The stage depends on the function (through routes and integration), so
    // the function cannot read the stage's name: that is why it uses config.
    let program = mutated("${dnsSuffix}/${stageName}", "${dnsSuffix}/${stage.name}");
    let found = findings(&program);
    assert!(
        found
            .iter()
            .any(|d| d.message.starts_with("dependency cycle:")
                && d.message.contains("handler")
                && d.message.contains("stage")),
        "{found:?}"
    );
}

#[test]
fn a_variable_of_the_wrong_shape_is_caught() {
    // `region` is aws:getRegion's `region`, a string; a list is expected here.
    let program = mutated(
        "      logDestinationConfigs:\n        - ${wafLogs.arn}",
        "      logDestinationConfigs: ${region}",
    );
    expect(
        &program,
        "resources.wafLogging.properties.logDestinationConfigs",
        "expected a list, found a string",
    );
}

#[test]
fn an_unused_tunable_is_caught() {
    let program = mutated("limit: ${rateLimit}", "limit: 2000");
    expect(&program, "config.rateLimit", "nothing uses it");
}

#[test]
fn the_waf_keeps_its_rules_metrics_and_logs() {
    let program = mutated(
        "              name: AWSManagedRulesKnownBadInputsRuleSet",
        "              name: AWSManagedRulesSQLiRuleSet",
    );
    expect(
        &program,
        "resources.webAcl.properties.rules",
        "AWSManagedRulesKnownBadInputsRuleSet is missing",
    );
    let program = mutated(
        "            cloudwatchMetricsEnabled: true\n            metricName: ${wafMetrics.ipReputation}",
        "            cloudwatchMetricsEnabled: false\n            metricName: ${wafMetrics.ipReputation}",
    );
    expect(
        &program,
        "resources.webAcl.properties.rules[3].visibilityConfig.cloudwatchMetricsEnabled",
        "metrics",
    );
    let program = mutated(
        "          action:\n            block: {}",
        "          action:\n            count: {}",
    );
    expect(
        &program,
        "resources.webAcl.properties.rules",
        "rate-based rule whose action is block",
    );
    let program = mutated(
        "name: aws-waf-logs-${pulumi.project}",
        "name: waf-${pulumi.project}",
    );
    expect(
        &program,
        "resources.wafLogs.properties.name",
        "aws-waf-logs-",
    );
    let program = mutated(
        "      region: us-east-1\n      resourceArn: ${webAcl.arn}",
        "      resourceArn: ${webAcl.arn}",
    );
    expect(
        &program,
        "resources.wafLogging.properties.region",
        "us-east-1",
    );
}

#[test]
fn the_function_is_the_cargo_lambda_artifact() {
    let program = mutated_in("handler", "        - arm64", "        - x86_64");
    expect(
        &program,
        "resources.handler.properties.architectures",
        "arm64",
    );
    let program = mutated_in("handler", "runtime: provided.al2023", "runtime: nodejs20.x");
    expect(
        &program,
        "resources.handler.properties.runtime",
        "provided.al2023",
    );
    let program = mutated(
        "fn::fileArchive: ./target/lambda/websocket-handler/bootstrap.zip",
        "fn::fileArchive: ./bootstrap.zip",
    );
    expect(
        &program,
        "resources.handler.properties.code",
        "bootstrap.zip",
    );
}

#[test]
fn names_carry_the_project_and_stack() {
    let program = mutated(
        "name: ${pulumi.project}-${pulumi.stack}-connections",
        "name: connections",
    );
    expect(
        &program,
        "resources.connections.properties.name",
        "${pulumi.stack}",
    );
    let program = mutated(
        "      namePrefix: ${pulumi.project}-${pulumi.stack}-\n      assumeRolePolicy:",
        "      namePrefix: handler-\n      assumeRolePolicy:",
    );
    expect(
        &program,
        "resources.role.properties.namePrefix",
        "${pulumi.stack}",
    );
}

#[test]
fn the_stage_redeploys_when_the_selection_expressions_change() {
    let program = mutated(
        "        api: ${api.routeSelectionExpression} ${api.apiKeySelectionExpression}\n",
        "        api: ${api.routeSelectionExpression}\n",
    );
    expect(
        &program,
        "resources.deployment.properties.triggers",
        "${api.apiKeySelectionExpression}",
    );
    let program = mutated(
        "        api: ${api.routeSelectionExpression} ${api.apiKeySelectionExpression}\n",
        "",
    );
    expect(
        &program,
        "resources.deployment.properties.triggers",
        "${api.routeSelectionExpression}",
    );
}

#[test]
fn lambda_platform_logs_reach_cloudwatch() {
    let program = mutated_in("handler", "systemLogLevel: INFO", "systemLogLevel: WARN");
    expect(
        &program,
        "resources.handler.properties.loggingConfig.systemLogLevel",
        "REPORT",
    );
}

#[test]
fn the_role_grants_exactly_what_the_function_calls() {
    let program = mutated(
        "                - dynamodb:PutItem\n",
        "                - dynamodb:PutItem\n                - dynamodb:GetItem\n",
    );
    expect(
        &program,
        "resources.rolePolicy.properties.policy",
        "grants dynamodb:GetItem on ${connections.arn}, which the function does not need",
    );
    let program = mutated("                - dynamodb:Scan\n", "");
    expect(
        &program,
        "resources.rolePolicy.properties.policy",
        "must grant dynamodb:Scan on ${connections.arn}",
    );
    let program = mutated(
        "${stageName}/POST/@connections/*",
        "${stageName}/*/@connections/*",
    );
    expect(
        &program,
        "resources.rolePolicy.properties.policy",
        "grants execute-api:ManageConnections on ${api.executionArn}/prod/*/@connections/*",
    );
    expect(
        &program,
        "resources.rolePolicy.properties.policy",
        "must grant execute-api:ManageConnections on ${api.executionArn}/prod/POST/@connections/*",
    );
    let program = mutated(
        "              Resource: ${connections.arn}",
        "              Resource: '*'",
    );
    expect(
        &program,
        "resources.rolePolicy.properties.policy",
        "grants dynamodb:PutItem on *",
    );
}

#[test]
fn waf_logs_through_this_stacks_policy_in_us_east_1() {
    let program = mutated(
        "      region: us-east-1\n      policyName:",
        "      policyName:",
    );
    expect(
        &program,
        "resources.wafLogsPolicy.properties.region",
        "us-east-1",
    );
    let program = mutated("      dependsOn:\n        - ${wafLogsPolicy}\n", "");
    expect(
        &program,
        "resources.wafLogging.options.dependsOn",
        "${wafLogsPolicy}",
    );
    let program = mutated(
        "              Resource: ${wafLogs.arn}:*",
        "              Resource: '*'",
    );
    expect(&program, "resources.wafLogging", "AWSWAF-LOGS");
    let program = mutated(
        "                - logs:CreateLogStream\n                - logs:PutLogEvents\n              Resource: ${wafLogs.arn}:*",
        "                - logs:*\n              Resource: ${wafLogs.arn}:*",
    );
    expect(
        &program,
        "resources.wafLogsPolicy.properties.policyDocument.fn::toJSON.Statement[0].Action",
        "must be exactly",
    );
}

#[test]
fn fixed_names_are_deleted_before_they_are_replaced() {
    let program = mutated_table(
        "        enabled: true\n    options:\n      version: 7.51.1\n      deleteBeforeReplace: true\n",
        "        enabled: true\n    options:\n      version: 7.51.1\n",
    );
    expect(
        &program,
        "resources.connections.options.deleteBeforeReplace",
        "must be true with a fixed name",
    );
    let program = mutated(
        "      namePrefix: ${pulumi.project}-${pulumi.stack}-\n      assumeRolePolicy:",
        "      name: ${pulumi.project}-${pulumi.stack}-handler\n      assumeRolePolicy:",
    );
    expect(
        &program,
        "resources.role.options.deleteBeforeReplace",
        "must be true",
    );
    let program = mutated(
        "      namePrefix: ${pulumi.project}-${pulumi.stack}-\n      scope:",
        "      name: ${pulumi.project}-${pulumi.stack}\n      scope:",
    );
    expect(
        &program,
        "resources.webAcl.properties.namePrefix",
        "cannot be deleted first",
    );
}

#[test]
fn every_alarm_is_there_with_this_stacks_dimensions() {
    let program = mutated("metricName: Throttles", "metricName: Invocations");
    expect(
        &program,
        "resources",
        "no aws:cloudwatch/metricAlarm:MetricAlarm on AWS/Lambda Throttles",
    );
    let program = mutated(
        "DistributionId: ${distribution.id}",
        "DistributionId: ${distribution.arn}",
    );
    expect(
        &program,
        "resources.cloudfront5xxAlarm.properties.dimensions.DistributionId",
        "must be ${distribution.id}",
    );
    let program = mutated(
        "        WebACL: ${wafMetrics.acl}\n",
        "        WebACL: some-other-acl\n",
    );
    expect(
        &program,
        "resources.wafBlockedAlarm.properties.dimensions.WebACL",
        "the web ACL's metric name (websocket-waf-dev)",
    );
    let program = mutated(
        "        Region: Global\n",
        "        Region: Global\n        Stage: prod\n",
    );
    expect(
        &program,
        "resources.cloudfront5xxAlarm.properties.dimensions",
        "exactly the dimensions DistributionId, Region",
    );
}

#[test]
fn edge_alarms_are_in_us_east_1_and_notify_a_topic_there() {
    let program = mutated(
        "      region: us-east-1\n      name: ${pulumi.project}-${pulumi.stack}-waf-blocked",
        "      name: ${pulumi.project}-${pulumi.stack}-waf-blocked",
    );
    expect(
        &program,
        "resources.wafBlockedAlarm.properties.region",
        "must be us-east-1",
    );
    expect(
        &program,
        "resources.wafBlockedAlarm.properties.alarmActions",
        "in the alarm's own region",
    );
    let program = mutated(
        "AlarmTopicArn: ${alarmTopic.arn}",
        "AlarmTopicArn: ${edgeAlarmTopic.arn}",
    );
    expect(&program, "outputs.AlarmTopicArn", "the stack's region");
}

#[test]
fn thresholds_and_periods_come_from_config() {
    let program = mutated("threshold: ${cloudfront5xxPercent}", "threshold: 5");
    expect(
        &program,
        "resources.cloudfront5xxAlarm.properties.threshold",
        "typed config key",
    );
    let program = mutated("(${functionTimeout} * 1000)", "(10 * 1000)");
    expect(
        &program,
        "resources.functionDurationAlarm.properties.metricQueries",
        "${functionTimeout}",
    );
}

#[test]
fn the_dashboard_shows_every_part() {
    let program = mutated(
        "                  - [AWS/Lambda, ConcurrentExecutions, FunctionName, '${handler.name}']\n",
        "",
    );
    expect(
        &program,
        "resources.dashboard.properties.dashboardBody",
        "must show AWS/Lambda ConcurrentExecutions",
    );
    let program = mutated(
        "                  - [AWS/WAFV2, BlockedRequests, WebACL, '${wafMetrics.acl}', Rule, '${wafMetrics.ipReputation}']\n",
        "",
    );
    expect(
        &program,
        "resources.dashboard.properties.dashboardBody",
        "BlockedRequests for the rule aws-ip-reputation",
    );
    let program = mutated(
        "title: WAF allowed vs blocked, per rule\n                region: us-east-1",
        "title: WAF allowed vs blocked, per rule\n                region: ${region}",
    );
    expect(
        &program,
        "resources.dashboard.properties.dashboardBody.fn::toJSON.widgets[4].properties.region",
        "must be us-east-1",
    );
    let program = mutated(
        "#dashboards/dashboard/${dashboard.dashboardName}",
        "#dashboards",
    );
    expect(&program, "outputs.DashboardURL", "dashboardName");
}

/// Broadcasts lose nothing without a trace: the claims live in a table of
/// their own, continuation events Lambda gives up on go to a queue of this
/// program, and the losses the function counts are alarmed on.
#[test]
fn broadcast_losses_are_kept_and_alarmed_on() {
    let program = mutated(
        "          CLAIMS_TABLE: ${claims.name}\n",
        "          CLAIMS_TABLE: ${connections.name}\n",
    );
    expect(
        &program,
        "resources.handler.properties.environment.variables.CLAIMS_TABLE",
        "a table of its own",
    );
    let program = mutated(
        "      destinationConfig:\n        onFailure:\n          destination: ${deadLetters.arn}\n",
        "",
    );
    expect(
        &program,
        "resources.handlerAsyncConfig.properties.destinationConfig.onFailure.destination",
        "aws:sqs/queue:Queue",
    );
    // Without the destination the role's SendMessage is a grant too many.
    expect(
        &program,
        "resources.rolePolicy.properties.policy",
        "grants sqs:SendMessage on ${deadLetters.arn}, which the function does not need",
    );
    let program = mutated(
        "              Action: dynamodb:PutItem\n              Resource: ${claims.arn}\n",
        "              Action: dynamodb:GetItem\n              Resource: ${claims.arn}\n",
    );
    expect(
        &program,
        "resources.rolePolicy.properties.policy",
        "must grant dynamodb:PutItem on ${claims.arn}",
    );
    for (metric, namespace) in [
        ("RecipientsNotReached", "websocket-waf/Broadcast"),
        ("BroadcastsCutShort", "websocket-waf/Broadcast"),
        ("AsyncEventsDropped", "AWS/Lambda"),
        ("ApproximateNumberOfMessagesVisible", "AWS/SQS"),
    ] {
        let program = mutated(
            &format!("      metricName: {metric}\n"),
            "      metricName: Invocations\n",
        );
        expect(
            &program,
            "resources",
            &format!("no aws:cloudwatch/metricAlarm:MetricAlarm on {namespace} {metric}"),
        );
    }
}

/// A timeout no broadcast can post in, and fan-out settings the function
/// would refuse to start with, are refused with the setting named.
#[test]
fn budgets_a_broadcast_cannot_work_with_are_refused() {
    let dev = format!("{DEV}  websocket-waf:functionTimeout: 2\n");
    let found = check_sources(PROGRAM, Some(&dev), "dev");
    assert!(
        found
            .iter()
            .any(|d| d.path == "resources.handler.properties.timeout"
                && d.message.contains("is 2 s (config functionTimeout)")
                && d.message.contains("at least 3 s")),
        "{found:?}"
    );
    let dev = format!("{DEV}  websocket-waf:functionTimeout: 3\n");
    assert!(check_sources(PROGRAM, Some(&dev), "dev").is_empty());
    let dev = format!("{DEV}  websocket-waf:fanoutInFlight: 0\n");
    let found = check_sources(PROGRAM, Some(&dev), "dev");
    assert!(
        found.iter().any(|d| d.path
            == "resources.handler.properties.environment.variables.FANOUT_IN_FLIGHT"
            && d.message.contains("at least 1")),
        "{found:?}"
    );
}

/// The dashboard shows what broadcasts lost, beside the rest.
#[test]
fn the_dashboard_shows_lost_recipients() {
    let program = mutated(
        "                  - [websocket-waf/Broadcast, RecipientsNotReached, FunctionName, '${handler.name}']\n",
        "",
    );
    let found = findings(&program);
    assert!(
        found
            .iter()
            .any(|d| d.path.starts_with("resources.dashboard")
                && d.message.contains("RecipientsNotReached")),
        "{found:?}"
    );
}

#[test]
fn values_the_provider_refuses_are_refused_as_the_rehearsal_refuses_them() {
    // The same facts and wording as the rehearsal's provider double
    // (tests/pulumi_cli/provider_facts.rs refuses these through the engine).
    expect(
        &mutated(
            "      protocolType: WEBSOCKET\n",
            "      protocolType: WEBSOCKETS\n",
        ),
        "resources.api.properties.protocolType",
        r#"expected protocolType to be one of ["WEBSOCKET" "HTTP"], got WEBSOCKETS"#,
    );
    expect(
        &mutated_in(
            "handler",
            "      runtime: provided.al2023\n",
            "      runtime: provided.al2099\n",
        ),
        "resources.handler.properties.runtime",
        "got provided.al2099",
    );
    expect(
        &mutated("      scope: CLOUDFRONT\n", "      scope: GLOBAL\n"),
        "resources.webAcl.properties.scope",
        r#"expected scope to be one of ["CLOUDFRONT" "REGIONAL"], got GLOBAL"#,
    );
    expect(
        &mutated_table("          type: S\n", "          type: STRING\n"),
        "resources.connections.properties.attributes[0].type",
        r#"expected attributes[0].type to be one of ["S" "N" "B"], got STRING"#,
    );
    // A nested list inside a list: CloudFront speaks TLSv1.2 at most to an origin.
    expect(
        &mutated("              - TLSv1.2\n", "              - TLSv1.3\n"),
        "resources.distribution.properties.origins[0].customOriginConfig.originSslProtocols[0]",
        "got TLSv1.3",
    );
}
