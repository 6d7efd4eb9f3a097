//! The deploy commands of docs/deploy.md — `pulumi stack init`, `preview`,
//! `up --yes`, `stack output`, `destroy --yes` — run by the real Pulumi CLI
//! 3.274.1 and YAML language host 1.25.0 (built from Go source, pinned)
//! against the aws 7.51.1 provider double, on a local file backend. Each
//! test works on its own copy of the program with a zip it writes, and reads
//! the double's journal to see what the engine asked the provider for.
//! Without Go these tests fail, naming it.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{Context, ensure};
use devstack::tools::rehearse::{program, toolchain::repo_root};
use e2e::rehearsal::{
    Rehearsal, created, names, no_warnings_or_errors, preview_fails, replace_once, resource_names,
    text, toolchain,
};
use serde_json::Value;

#[path = "pulumi_cli/certificate.rs"]
mod certificate;
#[path = "pulumi_cli/custom_domain.rs"]
mod custom_domain;
#[path = "pulumi_cli/provider_facts.rs"]
mod provider_facts;

#[test]
fn up_creates_every_resource_and_outputs_the_distribution_url_and_a_secret_key()
-> anyhow::Result<()> {
    let stack = Rehearsal::unchanged()?;
    let up = stack.pulumi(&["up", "--yes"])?;
    no_warnings_or_errors("pulumi up --yes", &up)?;
    let created = stack.calls("Create")?;
    ensure!(
        names(&created) == resource_names()? && created.len() == resource_names()?.len(),
        "up created {:?}, the program declares {:?}",
        names(&created),
        resource_names()?
    );

    let url = stack
        .pulumi(&["stack", "output", "DistributionURL"])?
        .stdout;
    let host = url
        .trim()
        .strip_prefix("wss://")
        .context("DistributionURL is not wss://")?;
    let id = host
        .strip_suffix(".cloudfront.net")
        .context("not a cloudfront.net domain")?;
    ensure!(
        id.starts_with('d')
            && id.len() == 14
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "DistributionURL {url:?} is not wss://d….cloudfront.net"
    );

    let shown = stack.pulumi(&["stack", "output", "ApiKey"])?.stdout;
    ensure!(
        shown.trim() == "[secret]",
        "ApiKey printed {shown:?}, not [secret]"
    );
    let key = stack
        .pulumi(&["stack", "output", "ApiKey", "--show-secrets"])?
        .stdout;
    let distribution = created
        .iter()
        .find(|e| e["name"] == "distribution")
        .context("no distribution in the journal")?;
    let header = distribution["inputs"]["origins"][0]["customHeaders"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["name"] == "x-api-key"))
        .context("the distribution's origin has no x-api-key header")?;
    ensure!(
        header["value"]["secret"] == key.trim() && key.trim().len() >= 20,
        "ApiKey {key:?} is not the x-api-key origin header, or not sent as a secret: {header}"
    );
    Ok(())
}

#[test]
fn the_web_acl_and_waf_logs_go_to_us_east_1_and_the_rest_to_the_stack_region() -> anyhow::Result<()>
{
    let stack = Rehearsal::unchanged()?;
    stack.pulumi(&["up", "--yes"])?;
    let regions: HashMap<String, String> = stack
        .calls("Create")?
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or("?").to_string(),
                e["region"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    let east = [
        "webAcl",
        "wafLogs",
        "wafLogsPolicy",
        "wafLogging",
        "edgeAlarmTopic",
        "wafBlockedAlarm",
        "cloudfront5xxAlarm",
    ];
    for (name, region) in &regions {
        let want = if east.contains(&name.as_str()) {
            "us-east-1"
        } else {
            "eu-west-1"
        };
        ensure!(region == want, "{name} went to {region}, not {want}");
    }
    let acl = stack.pulumi(&["stack", "output", "WebAclArn"])?.stdout;
    ensure!(
        acl.starts_with("arn:aws:wafv2:us-east-1:123456789012:global/webacl/websocket-waf-dev-"),
        "WebAclArn {acl:?} is not a CLOUDFRONT-scope ACL in us-east-1 named from its namePrefix"
    );
    Ok(())
}

/// An alarm's expected dimensions: (name, value).
type Dimensions<'a> = Vec<(&'a str, &'a str)>;

#[test]
fn the_alarms_watch_this_stacks_resources_from_their_metrics_region() -> anyhow::Result<()> {
    let stack = Rehearsal::unchanged()?;
    stack.pulumi(&["up", "--yes"])?;
    let all = stack.calls("Create")?;
    let get = |name: &str| created(&all, name);
    let function = text(&get("handler")?["outputs"]["name"], "the function's name")?;
    let authorizer = text(
        &get("authorizer")?["outputs"]["name"],
        "the authorizer's name",
    )?;
    let api = text(&get("api")?["id"], "the API's id")?;
    let stage = text(&get("stage")?["outputs"]["name"], "the stage's name")?;
    let acl = &get("webAcl")?["inputs"];
    let acl_metric = text(
        &acl["visibilityConfig"]["metricName"],
        "the web ACL's metric name",
    )?;
    let rule_metrics: Vec<&str> = acl["rules"]
        .as_array()
        .context("the web ACL has no rules")?
        .iter()
        .filter_map(|r| r["visibilityConfig"]["metricName"].as_str())
        .chain(["ALL"])
        .collect();
    let distribution = text(&get("distribution")?["id"], "the distribution's id")?;

    // Each alarm: its region, its topic, and the dimensions it must carry.
    let queue = text(
        &get("deadLetters")?["outputs"]["name"],
        "the dead-letter queue's name",
    )
    .or_else(|_| {
        text(
            &get("deadLetters")?["inputs"]["name"],
            "the dead-letter queue's name",
        )
    })?;
    let expected: [(&str, &str, &str, Dimensions); 12] = [
        (
            "functionErrorsAlarm",
            "eu-west-1",
            "alarmTopic",
            vec![("FunctionName", function)],
        ),
        (
            "authorizerErrorsAlarm",
            "eu-west-1",
            "alarmTopic",
            vec![("FunctionName", authorizer)],
        ),
        (
            "functionThrottlesAlarm",
            "eu-west-1",
            "alarmTopic",
            vec![("FunctionName", function)],
        ),
        (
            "functionDurationAlarm",
            "eu-west-1",
            "alarmTopic",
            vec![("FunctionName", function)],
        ),
        (
            "broadcastLossAlarm",
            "eu-west-1",
            "alarmTopic",
            vec![("FunctionName", function)],
        ),
        (
            "broadcastCutShortAlarm",
            "eu-west-1",
            "alarmTopic",
            vec![("FunctionName", function)],
        ),
        (
            "asyncEventsDroppedAlarm",
            "eu-west-1",
            "alarmTopic",
            vec![("FunctionName", function)],
        ),
        (
            "deadLettersAlarm",
            "eu-west-1",
            "alarmTopic",
            vec![("QueueName", queue)],
        ),
        ("functionErrorLinesAlarm", "eu-west-1", "alarmTopic", vec![]),
        (
            "apiExecutionErrorsAlarm",
            "eu-west-1",
            "alarmTopic",
            vec![("ApiId", api), ("Stage", stage)],
        ),
        (
            "wafBlockedAlarm",
            "us-east-1",
            "edgeAlarmTopic",
            vec![("WebACL", acl_metric)],
        ),
        (
            "cloudfront5xxAlarm",
            "us-east-1",
            "edgeAlarmTopic",
            vec![("DistributionId", distribution), ("Region", "Global")],
        ),
    ];
    let alarms: BTreeSet<String> = all
        .iter()
        .filter(|e| e["type"] == "aws:cloudwatch/metricAlarm:MetricAlarm")
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect();
    ensure!(
        alarms == expected.iter().map(|(n, ..)| n.to_string()).collect(),
        "the alarms created are {alarms:?}"
    );
    for (name, region, topic, dimensions) in &expected {
        let alarm = get(name)?;
        ensure!(
            alarm["region"] == *region,
            "{name} is in {}, not {region}",
            alarm["region"]
        );
        let topic = get(topic)?;
        ensure!(
            topic["region"] == *region,
            "{name}'s topic is in {}",
            topic["region"]
        );
        let topic_arn = text(&topic["outputs"]["arn"], "a topic's ARN")?;
        ensure!(
            topic_arn.starts_with(&format!("arn:aws:sns:{region}:")),
            "{name}'s topic ARN {topic_arn} is not in {region}"
        );
        for actions in ["alarmActions", "okActions"] {
            ensure!(
                alarm["inputs"][actions] == serde_json::json!([topic_arn]),
                "{name}'s {actions} are {}, not [{topic_arn}]",
                alarm["inputs"][actions]
            );
        }
        // Dimensions sit on the alarm, or on its metric query for a math alarm.
        let inputs = &alarm["inputs"];
        let found = inputs["metricQueries"]
            .as_array()
            .and_then(|q| q.iter().find(|q| q["metric"].is_object()))
            .map_or(&inputs["dimensions"], |q| &q["metric"]["dimensions"]);
        for (key, value) in dimensions {
            ensure!(
                found[key] == *value,
                "{name}'s dimension {key} is {}, not this stack's {value}",
                found[key]
            );
        }
        if *name == "functionErrorLinesAlarm" {
            // The metric where the filter on the function's log group defines it.
            let filter = &get("functionErrorLines")?["inputs"];
            let group = text(
                &get("functionLogs")?["inputs"]["name"],
                "the function's log group",
            )?;
            let transformation = &filter["metricTransformation"];
            ensure!(
                filter["logGroupName"] == group
                    && inputs["namespace"] == transformation["namespace"]
                    && inputs["metricName"] == transformation["name"]
                    && found.as_object().is_none_or(|d| d.is_empty()),
                "{name} does not watch the filter's metric: {inputs} / {filter}"
            );
        }
        if *name == "wafBlockedAlarm" {
            let rule = text(&found["Rule"], "the WAF alarm's Rule")?;
            ensure!(
                rule_metrics.contains(&rule),
                "Rule {rule} is not one of {rule_metrics:?}"
            );
        }
    }

    let policy = get("wafLogsPolicy")?;
    ensure!(
        policy["region"] == "us-east-1",
        "the log resource policy is in {}",
        policy["region"]
    );
    let document: Value = serde_json::from_str(text(
        &policy["inputs"]["policyDocument"],
        "the policy document",
    )?)?;
    let waf_logs = text(
        &get("wafLogs")?["outputs"]["arn"],
        "the WAF log group's ARN",
    )?;
    ensure!(
        document["Statement"][0]["Resource"] == format!("{waf_logs}:*"),
        "the log resource policy is not scoped to this stack's WAF log group: {document}"
    );

    let role: Value = serde_json::from_str(text(
        &get("rolePolicy")?["inputs"]["policy"],
        "the role's policy",
    )?)?;
    let table = text(&get("connections")?["outputs"]["arn"], "the table's ARN")?;
    let claims = text(&get("claims")?["outputs"]["arn"], "the claims table's ARN")?;
    let dead_letters = text(
        &get("deadLetters")?["outputs"]["arn"],
        "the dead-letter queue's ARN",
    )?;
    let execution = text(
        &get("api")?["outputs"]["executionArn"],
        "the API's executionArn",
    )?;
    let mut grants = BTreeSet::new();
    for statement in role["Statement"]
        .as_array()
        .context("the role's policy has no statements")?
    {
        let actions: Vec<&Value> = match &statement["Action"] {
            Value::Array(actions) => actions.iter().collect(),
            one => vec![one],
        };
        for action in actions {
            let resource = text(&statement["Resource"], "a statement's Resource")?;
            grants.insert((text(action, "an action")?.to_string(), resource.to_string()));
        }
    }
    let logs = format!(
        "{}:*",
        text(
            &get("functionLogs")?["outputs"]["arn"],
            "the function's log group ARN"
        )?
    );
    let connections = format!("{execution}/{stage}/POST/@connections/*");
    let want: BTreeSet<(String, String)> = [
        ("logs:CreateLogStream", logs.as_str()),
        ("logs:PutLogEvents", logs.as_str()),
        ("dynamodb:PutItem", table),
        ("dynamodb:DeleteItem", table),
        ("dynamodb:Scan", table),
        ("dynamodb:PutItem", claims),
        ("sqs:SendMessage", dead_letters),
        ("execute-api:ManageConnections", connections.as_str()),
    ]
    .into_iter()
    .map(|(a, r)| (a.to_string(), r.to_string()))
    .collect();
    ensure!(
        grants == want,
        "the role grants {grants:?}, not exactly {want:?}"
    );

    let behaviour = &get("distribution")?["inputs"]["defaultCacheBehavior"];
    ensure!(
        behaviour["viewerProtocolPolicy"] == "https-only",
        "the viewer protocol is {}",
        behaviour["viewerProtocolPolicy"]
    );

    let alarm_topic = stack.pulumi(&["stack", "output", "AlarmTopicArn"])?.stdout;
    let edge_topic = stack
        .pulumi(&["stack", "output", "EdgeAlarmTopicArn"])?
        .stdout;
    let dashboard = stack.pulumi(&["stack", "output", "DashboardURL"])?.stdout;
    ensure!(
        alarm_topic.trim() == get("alarmTopic")?["outputs"]["arn"]
            && edge_topic.trim() == get("edgeAlarmTopic")?["outputs"]["arn"],
        "the topic outputs {alarm_topic:?} {edge_topic:?} are not the topics created"
    );
    let name = text(
        &get("dashboard")?["inputs"]["dashboardName"],
        "the dashboard's name",
    )?;
    ensure!(
        dashboard.trim()
            == format!(
                "https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#dashboards/dashboard/{name}"
            ),
        "DashboardURL is {dashboard:?}"
    );
    Ok(())
}

#[test]
fn a_second_up_changes_nothing_and_an_edit_updates_exactly_its_resource() -> anyhow::Result<()> {
    let stack = Rehearsal::unchanged()?;
    stack.pulumi(&["up", "--yes"])?;

    let before = stack.journal_len()?;
    let again = stack.pulumi(&["up", "--yes"])?;
    let later: Vec<Value> = stack.session.journal()?.split_off(before);
    let changes: Vec<&Value> = later
        .iter()
        .filter(|e| ["Create", "Update", "Delete"].contains(&e["call"].as_str().unwrap_or("")))
        .collect();
    ensure!(
        changes.is_empty(),
        "a second up (or its preview) changed resources: {changes:?}\n{}",
        again.text()
    );

    stack.pulumi(&["config", "set", "rateLimit", "1000"])?;
    stack.pulumi(&["up", "--yes"])?;
    let updated = stack.calls("Update")?;
    ensure!(
        names(&updated) == BTreeSet::from(["webAcl".to_string()]),
        "rateLimit updated {:?}",
        names(&updated)
    );
    let diff = stack
        .session
        .journal()?
        .into_iter()
        .rev()
        .find(|e| e["call"] == "Diff" && e["name"] == "webAcl")
        .context("no Diff of the web ACL")?;
    ensure!(
        diff["replaces"].is_null(),
        "the rate limit, updatable in place, replaces the web ACL: {diff}"
    );
    let limit = &updated[0]["inputs"]["rules"][0]["statement"]["rateBasedStatement"]["limit"];
    ensure!(
        limit == 1000.0,
        "the web ACL's rate rule limit is {limit}, not 1000"
    );

    program::write_function_zip(
        &program::function_zip(stack.session.program_dir()),
        b"second build",
    )?;
    stack.pulumi(&["up", "--yes"])?;
    let updated = stack.calls("Update")?;
    ensure!(
        names(&updated[1..]) == BTreeSet::from(["handler".to_string()]) && updated.len() == 2,
        "a new zip updated {:?}",
        names(&updated[1..])
    );
    ensure!(
        stack.calls("Create")?.len() == resource_names()?.len()
            && stack.calls("Delete")?.is_empty(),
        "an edit created or deleted resources"
    );
    Ok(())
}

#[test]
fn destroy_deletes_dependents_first_and_leaves_an_empty_stack() -> anyhow::Result<()> {
    let stack = Rehearsal::unchanged()?;
    stack.pulumi(&["up", "--yes"])?;
    let state: Value = serde_json::from_str(&stack.pulumi(&["stack", "export"])?.stdout)?;
    stack.pulumi(&["destroy", "--yes"])?;

    let deleted: Vec<String> = stack
        .calls("Delete")?
        .iter()
        .filter_map(|e| e["urn"].as_str().map(str::to_string))
        .collect();
    let order: HashMap<&str, usize> = deleted
        .iter()
        .enumerate()
        .map(|(i, u)| (u.as_str(), i))
        .collect();
    let resources = state["deployment"]["resources"]
        .as_array()
        .context("state has resources")?;
    let mut edges = 0;
    for resource in resources
        .iter()
        .filter(|r| r["type"].as_str().is_some_and(|t| t.starts_with("aws:")))
    {
        let urn = resource["urn"].as_str().context("resource without urn")?;
        let at = *order
            .get(urn)
            .with_context(|| format!("{urn} was not deleted"))?;
        for dependency in resource["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if let Some(&dep_at) = order.get(dependency) {
                edges += 1;
                ensure!(
                    at < dep_at,
                    "{urn} was deleted after {dependency}, which it depends on"
                );
            }
        }
    }
    ensure!(
        deleted.len() == resource_names()?.len(),
        "destroy deleted {} resources",
        deleted.len()
    );
    ensure!(
        edges >= 20,
        "only {edges} dependencies were checked: the state lost its dependencies?"
    );

    let after: Value = serde_json::from_str(&stack.pulumi(&["stack", "export"])?.stdout)?;
    let left = after["deployment"]["resources"]
        .as_array()
        .map_or(0, Vec::len);
    ensure!(
        left == 0,
        "the stack still holds {left} resources after destroy"
    );
    Ok(())
}

#[test]
fn preview_fails_on_a_misspelt_property() -> anyhow::Result<()> {
    preview_fails(
        "      routeKey: $connect\n",
        "      routeKye: $connect\n",
        &[
            "routeKye: string",
            "routeKey: Missing required property 'routeKey'",
        ],
    )
}

#[test]
fn preview_fails_on_a_missing_required_property() -> anyhow::Result<()> {
    preview_fails(
        "      scope: CLOUDFRONT\n",
        "",
        &[
            "aws:wafv2/webAcl:WebAcl",
            "scope: Missing required property 'scope'",
        ],
    )
}

#[test]
fn preview_fails_on_a_reference_to_a_resource_that_does_not_exist() -> anyhow::Result<()> {
    preview_fails(
        "      role: ${role.arn}\n",
        "      role: ${rol.arn}\n",
        &["\"rol\" not found", "${rol.arn}"],
    )
}

#[test]
fn preview_fails_on_a_string_where_the_schema_wants_an_integer() -> anyhow::Result<()> {
    preview_fails(
        "              limit: ${rateLimit}\n",
        "              limit: plenty\n",
        &["limit: Cannot assign type 'string' to type 'integer'"],
    )
}

#[test]
fn the_toolchain_is_the_pinned_one() -> anyhow::Result<()> {
    let toolchain = toolchain()?;
    let version = std::process::Command::new(&toolchain.pulumi)
        .arg("version")
        .output()?;
    let text = String::from_utf8_lossy(&version.stdout);
    ensure!(text.trim() == "v3.274.1", "pulumi version says {text:?}");
    ensure!(
        Path::new(&toolchain.language_yaml).is_file(),
        "no pulumi-language-yaml built"
    );
    Ok(())
}

#[test]
fn the_double_passes_its_go_tests() -> anyhow::Result<()> {
    // Check, the schema rewrite and the AWS formats, tested where they are written.
    toolchain()?;
    let output = std::process::Command::new("go")
        .args(["test", "./aws-double"])
        .current_dir(repo_root().join("devstack/rehearsal"))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=readonly -buildvcs=false")
        .env("GOCACHE", repo_root().join("target/pulumi/gocache"))
        .output()
        .context("running go test")?;
    ensure!(
        output.status.success(),
        "go test ./aws-double failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[test]
fn the_stage_logs_each_request_as_json_to_its_own_group() -> anyhow::Result<()> {
    let stack = Rehearsal::unchanged()?;
    stack.pulumi(&["up", "--yes"])?;
    let all = stack.calls("Create")?;
    let group = created(&all, "stageAccessLogs")?;
    let settings = &created(&all, "stage")?["inputs"]["accessLogSettings"];
    ensure!(
        settings["destinationArn"] == group["outputs"]["arn"]
            && group["inputs"]["retentionInDays"] == 3.0,
        "the stage's access log: {settings}, its group: {group}"
    );
    let format: Value = serde_json::from_str(text(&settings["format"], "the log format")?)?;
    for field in pulumi_program::check::ACCESS_LOG_FIELDS {
        ensure!(
            format
                .as_object()
                .is_some_and(|f| f.values().any(|v| v == field)),
            "the access log format does not log {field}: {format}"
        );
    }
    Ok(())
}
