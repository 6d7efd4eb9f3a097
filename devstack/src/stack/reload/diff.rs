//! What an edit of the Pulumi program changes, and whether a running stack
//! can take it.
//!
//! A `pulumi up` of the deployed program updates routes, the stage's
//! throttling, the web ACL's rules and the function's configuration without
//! dropping an established WebSocket connection; renaming the stage or the
//! table replaces the resource (new URL, empty table). [`diff`] sorts an edit
//! the same way: [`Setting::applies_live`] settings are swapped into the
//! running stack, the others need `devstack` to be restarted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use pulumi_program::{FunctionSpec, RouteSpec, Template, Topology};

/// One setting of the [`Topology`] the local stack runs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Setting {
    /// A route added or removed, or its `apiKeyRequired` changed.
    Route,
    RouteSelection,
    ApiKeySelection,
    /// The stage's default route throttling.
    Throttling,
    /// The web ACL's rate-based rule (name, limit, window).
    RateRule,
    FunctionEnvironment,
    FunctionMemory,
    FunctionTimeout,
    /// The function's event invoke config (retries, maximum event age).
    FunctionAsyncInvoke,
    // Needs a restart from here on.
    StageName,
    Region,
    Table,
    FunctionName,
    OriginHeader,
    Project,
    /// The `$connect` authorizer: whether it runs, its identity source, TTL
    /// or function (its pool and the local issuer start with the stack).
    SignIn,
}

/// The part of the running stack a live setting belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The API layer (routes, selection expressions, throttling).
    Api,
    /// The edge (the WAF rate rule).
    Edge,
    /// The Lambda pool (the function's configuration).
    Function,
    /// The Invoke API's delivery of asynchronous events.
    AsyncInvoke,
}

impl Setting {
    /// Whether a running stack can take the change (as a deployment would
    /// without dropping connections).
    pub fn applies_live(self) -> bool {
        self.part().is_some()
    }

    /// Where a live change applies; `None` when it needs a restart.
    pub fn part(self) -> Option<Part> {
        match self {
            Setting::Route
            | Setting::RouteSelection
            | Setting::ApiKeySelection
            | Setting::Throttling => Some(Part::Api),
            Setting::RateRule => Some(Part::Edge),
            Setting::FunctionEnvironment | Setting::FunctionMemory | Setting::FunctionTimeout => {
                Some(Part::Function)
            }
            Setting::FunctionAsyncInvoke => Some(Part::AsyncInvoke),
            Setting::StageName
            | Setting::Region
            | Setting::Table
            | Setting::FunctionName
            | Setting::OriginHeader
            | Setting::Project
            | Setting::SignIn => None,
        }
    }
}

/// One changed setting, described for a log line. Environment values are
/// never shown (they may hold secrets): only the variables' names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub setting: Setting,
    pub description: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

/// Every change between two topologies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    pub changes: Vec<Change>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The changes a running stack takes.
    pub fn live(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.setting.applies_live())
    }

    /// The changes that need a restart.
    pub fn needs_restart(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| !c.setting.applies_live())
    }

    /// Whether any change applies to `part`.
    pub fn touches(&self, part: Part) -> bool {
        self.changes.iter().any(|c| c.setting.part() == Some(part))
    }

    /// The message for an edit a running stack cannot take, or `None` when it can.
    pub fn restart_message(&self) -> Option<String> {
        let restart: Vec<String> = self.needs_restart().map(ToString::to_string).collect();
        if restart.is_empty() {
            return None;
        }
        Some(format!(
            "the edit changes what a running stack cannot: {}. Restart devstack to apply it \
             (Ctrl-C, then start it again; open connections and the table's data end). \
             Nothing was applied: the stack runs as before",
            restart.join("; ")
        ))
    }
}

/// The changes from `old` to `new`, in [`Setting`] order.
pub fn diff(old: &Topology, new: &Topology) -> Diff {
    let mut changes = Vec::new();
    let mut push = |setting, description: String| {
        changes.push(Change {
            setting,
            description,
        })
    };
    route_changes(&old.routes, &new.routes, &mut push);
    api_changes(old, new, &mut push);
    rate_rule_change(old, new, &mut push);
    function_changes(&old.function, &new.function, &mut push);
    restart_changes(old, new, &mut push);
    changes.sort_by_key(|c| c.setting);
    Diff { changes }
}

/// The API's selection expressions and the stage's throttling.
fn api_changes(old: &Topology, new: &Topology, push: &mut impl FnMut(Setting, String)) {
    if old.api.route_selection_expression != new.api.route_selection_expression {
        push(
            Setting::RouteSelection,
            format!(
                "route selection expression {} → {}",
                old.api.route_selection_expression, new.api.route_selection_expression
            ),
        );
    }
    if old.api.api_key_selection_expression != new.api.api_key_selection_expression {
        push(
            Setting::ApiKeySelection,
            format!(
                "API key selection expression {} → {}",
                shown(&old.api.api_key_selection_expression),
                shown(&new.api.api_key_selection_expression)
            ),
        );
    }
    let (old_stage, new_stage) = (&old.stage, &new.stage);
    if (
        old_stage.throttling_burst_limit,
        old_stage.throttling_rate_limit,
    ) != (
        new_stage.throttling_burst_limit,
        new_stage.throttling_rate_limit,
    ) {
        push(
            Setting::Throttling,
            format!(
                "stage throttling burst {} rate {}/s → burst {} rate {}/s",
                shown(&old_stage.throttling_burst_limit),
                shown(&old_stage.throttling_rate_limit),
                shown(&new_stage.throttling_burst_limit),
                shown(&new_stage.throttling_rate_limit)
            ),
        );
    }
}

/// The web ACL's rate-based rule.
fn rate_rule_change(old: &Topology, new: &Topology, push: &mut impl FnMut(Setting, String)) {
    if old.waf != new.waf {
        push(
            Setting::RateRule,
            format!(
                "WAF rule {} {} per {}s → {} {} per {}s",
                old.waf.rate_rule_name,
                old.waf.rate_limit,
                old.waf.evaluation_window_secs,
                new.waf.rate_rule_name,
                new.waf.rate_limit,
                new.waf.evaluation_window_secs
            ),
        );
    }
}

/// The settings a deployment would replace a resource for: the stage, the
/// region, the table, the function's name, CloudFront's key header, the
/// project.
fn restart_changes(old: &Topology, new: &Topology, push: &mut impl FnMut(Setting, String)) {
    let (old_stage, new_stage) = (&old.stage, &new.stage);
    if old_stage.name != new_stage.name {
        push(
            Setting::StageName,
            format!("stage name {} → {}", old_stage.name, new_stage.name),
        );
    }
    if old.region != new.region {
        push(
            Setting::Region,
            format!("region {} → {}", old.region, new.region),
        );
    }
    if old.table != new.table || old.claims_table != new.claims_table {
        let describe = |t: &pulumi_program::TableSpec| {
            format!(
                "{} (hash key {}, TTL {})",
                t.name,
                t.hash_key,
                shown(&t.ttl_attribute)
            )
        };
        push(
            Setting::Table,
            format!(
                "tables {}, {} → {}, {}",
                describe(&old.table),
                describe(&old.claims_table),
                describe(&new.table),
                describe(&new.claims_table)
            ),
        );
    }
    if old.function.name != new.function.name {
        push(
            Setting::FunctionName,
            format!(
                "function name {} → {}",
                old.function.name, new.function.name
            ),
        );
    }
    if old.origin_api_key_header != new.origin_api_key_header {
        push(
            Setting::OriginHeader,
            format!(
                "CloudFront's key header {} → {}",
                old.origin_api_key_header, new.origin_api_key_header
            ),
        );
    }
    if old.sign_in != new.sign_in {
        let describe = |s: &Option<pulumi_program::SignInSpec>| match s {
            Some(s) if s.enabled => format!(
                "on (?{}=, cached {}s, function {})",
                s.token_parameter, s.result_ttl_secs, s.function.name
            ),
            _ => "off".to_string(),
        };
        push(
            Setting::SignIn,
            format!(
                "sign-in {} → {}",
                describe(&old.sign_in),
                describe(&new.sign_in)
            ),
        );
    }
    if (&old.project, &old.stack) != (&new.project, &new.stack) {
        push(
            Setting::Project,
            format!(
                "project/stack {}/{} → {}/{}",
                old.project, old.stack, new.project, new.stack
            ),
        );
    }
}

fn route_changes(old: &[RouteSpec], new: &[RouteSpec], push: &mut impl FnMut(Setting, String)) {
    let keyed = |routes: &[RouteSpec]| -> BTreeMap<String, bool> {
        routes
            .iter()
            .map(|r| (r.route_key.clone(), r.api_key_required))
            .collect()
    };
    let (old, new) = (keyed(old), keyed(new));
    let needs_key = |required: bool| if required { ", needs the key" } else { "" };
    for (key, required) in &new {
        match old.get(key) {
            None => push(
                Setting::Route,
                format!("route {key} added{}", needs_key(*required)),
            ),
            Some(before) if before != required => push(
                Setting::Route,
                format!("route {key}: apiKeyRequired {before} → {required}"),
            ),
            Some(_) => {}
        }
    }
    for key in old.keys().filter(|key| !new.contains_key(*key)) {
        push(Setting::Route, format!("route {key} removed"));
    }
}

fn function_changes(
    old: &FunctionSpec,
    new: &FunctionSpec,
    push: &mut impl FnMut(Setting, String),
) {
    if old.environment != new.environment {
        let names = |env: &BTreeMap<String, Template>| env.keys().cloned().collect::<BTreeSet<_>>();
        let (old_names, new_names) = (names(&old.environment), names(&new.environment));
        let mut parts = Vec::new();
        let added: Vec<_> = new_names.difference(&old_names).cloned().collect();
        let removed: Vec<_> = old_names.difference(&new_names).cloned().collect();
        let changed: Vec<_> = old_names
            .intersection(&new_names)
            .filter(|name| old.environment.get(*name) != new.environment.get(*name))
            .cloned()
            .collect();
        for (what, list) in [("added", added), ("removed", removed), ("changed", changed)] {
            if !list.is_empty() {
                parts.push(format!("{what} {}", list.join(", ")));
            }
        }
        push(
            Setting::FunctionEnvironment,
            format!("function environment: {}", parts.join("; ")),
        );
    }
    if old.memory_mb != new.memory_mb {
        push(
            Setting::FunctionMemory,
            format!("function memory {} → {} MB", old.memory_mb, new.memory_mb),
        );
    }
    if old.async_invoke != new.async_invoke {
        let (a, b) = (old.async_invoke, new.async_invoke);
        push(
            Setting::FunctionAsyncInvoke,
            format!(
                "asynchronous invocation: {} → {} retries, maximum event age {} → {} s",
                a.maximum_retry_attempts,
                b.maximum_retry_attempts,
                a.maximum_event_age_secs,
                b.maximum_event_age_secs
            ),
        );
    }
    if old.timeout_secs != new.timeout_secs {
        push(
            Setting::FunctionTimeout,
            format!(
                "function timeout {} → {} s",
                old.timeout_secs, new.timeout_secs
            ),
        );
    }
}

fn shown<T: fmt::Display>(value: &Option<T>) -> String {
    value
        .as_ref()
        .map_or_else(|| "(none)".to_string(), ToString::to_string)
}

#[cfg(test)]
mod tests;
