//! The diff on the real dev stack's topology, edited one setting at a time.

use std::path::Path;

use pulumi_program::{Part as TemplatePart, RouteSpec, Template, Topology};

use super::*;

fn dev() -> Topology {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    pulumi_program::load(root, "dev").expect("the dev stack loads")
}

fn settings(diff: &Diff) -> Vec<Setting> {
    diff.changes.iter().map(|c| c.setting).collect()
}

#[test]
fn the_same_topology_has_no_changes() {
    let diff = diff(&dev(), &dev());
    assert!(diff.is_empty(), "{diff:?}");
    assert_eq!(diff.restart_message(), None);
}

#[test]
fn routes_added_removed_and_rekeyed_apply_live_to_the_api() {
    let old = dev();
    let mut new = old.clone();
    new.routes.retain(|r| r.route_key != "ping");
    new.routes.push(RouteSpec {
        route_key: "echo".into(),
        api_key_required: false,
    });
    let default = new
        .routes
        .iter_mut()
        .find(|r| r.route_key == "$default")
        .expect("$default");
    default.api_key_required = true;

    let diff = diff(&old, &new);
    let described: Vec<String> = diff.changes.iter().map(ToString::to_string).collect();
    assert_eq!(
        described,
        [
            "route $default: apiKeyRequired false → true",
            "route echo added",
            "route ping removed"
        ]
    );
    assert!(diff.changes.iter().all(|c| c.setting == Setting::Route));
    assert!(diff.touches(Part::Api));
    assert!(!diff.touches(Part::Edge) && !diff.touches(Part::Function));
    assert_eq!(diff.restart_message(), None);
}

#[test]
fn reordering_routes_is_no_change() {
    let old = dev();
    let mut new = old.clone();
    new.routes.reverse();
    assert!(diff(&old, &new).is_empty());
}

#[test]
fn throttling_and_the_rate_rule_apply_live_to_their_parts() {
    let old = dev();
    let mut new = old.clone();
    new.stage.throttling_burst_limit = Some(3);
    new.waf.rate_limit = 10;
    let diff = diff(&old, &new);
    assert_eq!(settings(&diff), [Setting::Throttling, Setting::RateRule]);
    assert!(diff.touches(Part::Api) && diff.touches(Part::Edge));
    assert!(!diff.touches(Part::Function));
    let rule = diff.changes[1].to_string();
    assert!(rule.contains("→") && rule.contains(" 10 per "), "{rule}");
}

#[test]
fn function_settings_apply_live_and_never_show_environment_values() {
    let old = dev();
    let mut new = old.clone();
    new.function.memory_mb += 128;
    new.function.timeout_secs += 1;
    let secret = "s3cr3t-value";
    new.function.environment.insert(
        "NEW_VARIABLE".into(),
        Template(vec![TemplatePart::Text(secret.into())]),
    );
    let first = new
        .function
        .environment
        .keys()
        .find(|k| *k != "NEW_VARIABLE")
        .cloned()
        .expect("the dev function has environment variables");
    new.function.environment.insert(
        first.clone(),
        Template(vec![TemplatePart::Text(secret.into())]),
    );

    let diff = diff(&old, &new);
    assert_eq!(
        settings(&diff),
        [
            Setting::FunctionEnvironment,
            Setting::FunctionMemory,
            Setting::FunctionTimeout
        ]
    );
    assert!(diff.touches(Part::Function));
    let environment = diff.changes[0].to_string();
    assert!(
        environment.contains("added NEW_VARIABLE") && environment.contains(&first),
        "{environment}"
    );
    assert!(
        diff.changes.iter().all(|c| !c.description.contains(secret)),
        "{diff:?}"
    );
    assert_eq!(diff.restart_message(), None);
}

#[test]
fn a_stage_rename_needs_a_restart_and_the_message_says_so() {
    let old = dev();
    let mut new = old.clone();
    new.stage.name = "v1".into();
    new.routes.push(RouteSpec {
        route_key: "echo".into(),
        api_key_required: false,
    });
    let diff = diff(&old, &new);
    assert_eq!(settings(&diff), [Setting::Route, Setting::StageName]);
    assert_eq!(diff.live().count(), 1);
    assert_eq!(diff.needs_restart().count(), 1);
    let message = diff.restart_message().expect("a restart message");
    assert!(
        message.contains(&format!("stage name {} → v1", old.stage.name)),
        "{message}"
    );
    assert!(message.contains("Restart devstack"), "{message}");
    assert!(
        !message.contains("echo"),
        "only what needs the restart is named: {message}"
    );
}

#[test]
fn table_region_function_name_and_key_header_need_a_restart() {
    let old = dev();
    type Edit = (Setting, fn(&mut Topology));
    let edits: [Edit; 5] = [
        (Setting::Table, |t| t.table.name.push_str("-2")),
        (Setting::Table, |t| t.table.ttl_attribute = None),
        (Setting::Region, |t| t.region = "us-west-2".into()),
        (Setting::FunctionName, |t| t.function.name.push_str("-2")),
        (Setting::OriginHeader, |t| {
            t.origin_api_key_header = "x-other".into()
        }),
    ];
    for (setting, edit) in edits {
        let mut new = old.clone();
        edit(&mut new);
        let diff = diff(&old, &new);
        assert_eq!(settings(&diff), [setting]);
        assert!(!setting.applies_live());
        assert!(diff.restart_message().is_some(), "{setting:?}");
    }
}

#[test]
fn an_edit_of_the_async_invoke_config_applies_live_to_the_invoke_api() {
    let old = dev();
    let mut new = old.clone();
    new.function.async_invoke.maximum_retry_attempts =
        old.function.async_invoke.maximum_retry_attempts % 2 + 1;
    new.function.async_invoke.maximum_event_age_secs = 3_600;
    let diff = diff(&old, &new);
    assert_eq!(settings(&diff), [Setting::FunctionAsyncInvoke]);
    assert!(diff.touches(Part::AsyncInvoke));
    assert!(!diff.touches(Part::Function));
    assert_eq!(diff.restart_message(), None);
    let change = diff.changes[0].to_string();
    assert!(
        change.contains("retries") && change.contains("→ 3600 s"),
        "{change}"
    );
}

#[test]
fn turning_sign_in_off_or_changing_its_ttl_needs_a_restart() {
    let old = dev();
    assert!(
        old.sign_in.as_ref().is_some_and(|s| s.enabled),
        "dev signs in"
    );
    let mut off = old.clone();
    if let Some(sign_in) = off.sign_in.as_mut() {
        sign_in.enabled = false;
    }
    let changes = diff(&old, &off);
    assert!(!changes.is_empty());
    assert!(changes.live().next().is_none(), "{changes:?}");
    let message = changes.restart_message().expect("a restart is asked for");
    assert!(message.contains("sign-in on"), "{message}");
    assert!(message.contains("→ off"), "{message}");

    let mut ttl = old.clone();
    if let Some(sign_in) = ttl.sign_in.as_mut() {
        sign_in.result_ttl_secs = 0;
    }
    assert!(diff(&old, &ttl).restart_message().is_some());
}
