//! docs/deploy.md against `Pulumi.yaml` and `Pulumi.dev.yaml`: the
//! configuration table, the table of resources and the stack outputs, each
//! row read beside the declaration it describes.

use std::collections::BTreeSet;

use super::markdown::{Doc, Drift, code_spans, yaml};
use super::scalar;

#[test]
fn deploy_md_configuration_table_is_pulumi_yamls_config() {
    let doc = Doc::read("docs/deploy.md");
    let program = yaml("Pulumi.yaml");
    let dev = yaml("Pulumi.dev.yaml");
    let project = program["name"]
        .as_str()
        .expect("Pulumi.yaml names its project");
    let config = program["config"]
        .as_mapping()
        .expect("Pulumi.yaml has config");
    let dev_value = |key: &str| dev["config"].get(format!("{project}:{key}")).map(scalar);
    let rows = doc
        .table_after("## Configuration")
        .expect("docs/deploy.md has a table under `## Configuration`");
    let mut drift = Drift::default();
    let mut seen = BTreeSet::new();
    for row in rows {
        let [key, kind, default, ..] = row.cells.as_slice() else {
            drift.at(&doc, row.line, "a row needs Key | Type | Default | Meaning");
            continue;
        };
        let key = code_spans(key).first().copied().unwrap_or(key.as_str());
        seen.insert(key.to_string());
        let dev_quoted = default
            .split_once("dev: `")
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(v, _)| v.to_string());
        let dev_actual = dev["config"]
            .get(key)
            .map(scalar)
            .or_else(|| dev_value(key));
        if dev_quoted != dev_actual {
            drift.at(&doc, row.line, format!(
                "`{key}`: the dev stack's value is quoted as {dev_quoted:?}, Pulumi.dev.yaml has {dev_actual:?}"
            ));
        }
        if key.contains(':') {
            continue; // a provider's key (aws:region): no declaration in Pulumi.yaml
        }
        let Some(declared) = config.get(key) else {
            drift.at(
                &doc,
                row.line,
                format!("`{key}` is not declared in Pulumi.yaml's config"),
            );
            continue;
        };
        let declared_type = declared.get("type").map(scalar).unwrap_or_default();
        if *kind != declared_type {
            drift.at(
                &doc,
                row.line,
                format!("`{key}` is of type {declared_type} in Pulumi.yaml, not {kind}"),
            );
        }
        let declared_default = declared.get("default").map(scalar);
        // An empty string is quoted as `""` (a code span cannot be empty).
        let quoted_default = code_spans(default)
            .first()
            .map(|d| if *d == "\"\"" { "" } else { d })
            .map(str::to_string);
        if quoted_default != declared_default {
            drift.at(
                &doc,
                row.line,
                format!(
                    "`{key}`: default {quoted_default:?} here, {declared_default:?} in Pulumi.yaml"
                ),
            );
        }
    }
    for key in config.keys().map(scalar) {
        if !seen.contains(&key) {
            drift.page(
                &doc,
                format!("config key `{key}` of Pulumi.yaml has no row under `## Configuration`"),
            );
        }
    }
    drift.check("make the table under `## Configuration` in docs/deploy.md say what `config:` in Pulumi.yaml declares (key, type, default; `dev:` what Pulumi.dev.yaml sets)");
}

#[test]
fn deploy_md_lists_every_resource_of_the_program() {
    let doc = Doc::read("docs/deploy.md");
    let program = yaml("Pulumi.yaml");
    let resources = program["resources"]
        .as_mapping()
        .expect("Pulumi.yaml has resources");
    let rows = doc
        .table_after("## What it creates")
        .expect("docs/deploy.md has a table under `## What it creates`");
    let mut drift = Drift::default();
    let mut seen = BTreeSet::new();
    for row in rows {
        let spans: Vec<&str> = row
            .cells
            .iter()
            .take(3)
            .flat_map(|c| code_spans(c))
            .collect();
        let [name, kind, ..] = spans.as_slice() else {
            drift.at(
                &doc,
                row.line,
                "a row needs `name` | `type` | region | what it is for",
            );
            continue;
        };
        seen.insert(name.to_string());
        let Some(resource) = resources.get(*name) else {
            drift.at(
                &doc,
                row.line,
                format!("`{name}` is not a resource of Pulumi.yaml"),
            );
            continue;
        };
        let actual = resource["type"].as_str().unwrap_or_default();
        if *kind != actual {
            drift.at(
                &doc,
                row.line,
                format!("`{name}` is a `{actual}` in Pulumi.yaml, not `{kind}`"),
            );
        }
        let region = resource["properties"]
            .get("region")
            .map(scalar)
            .unwrap_or_else(|| "stack".into());
        let quoted = row.cells.get(2).and_then(|c| c.split_whitespace().next());
        if quoted.map(|c| c.trim_matches('`')) != Some(region.as_str()) {
            drift.at(
                &doc,
                row.line,
                format!("`{name}` is created in region `{region}` (the third column)"),
            );
        }
    }
    for name in resources.keys().map(scalar) {
        if !seen.contains(&name) {
            let kind = resources[name.as_str()]["type"]
                .as_str()
                .unwrap_or_default();
            drift.page(&doc, format!("resource `{name}` (`{kind}`) of Pulumi.yaml has no row under `## What it creates`"));
        }
    }
    drift.check("give each resource of Pulumi.yaml one row (logical name, type, region, what it is for) under `## What it creates` in docs/deploy.md, and no other rows");
}

#[test]
fn deploy_md_names_every_stack_output() {
    let doc = Doc::read("docs/deploy.md");
    let program = yaml("Pulumi.yaml");
    let outputs = program["outputs"]
        .as_mapping()
        .expect("Pulumi.yaml has outputs");
    let (line, text) = doc
        .find("Stack outputs:")
        .next()
        .map(|(line, _)| {
            (
                line,
                doc.lines[line - 1..]
                    .iter()
                    .take_while(|l| !l.is_empty())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        })
        .expect("docs/deploy.md has a `Stack outputs:` paragraph");
    let named: BTreeSet<&str> = code_spans(&text).into_iter().collect();
    let mut drift = Drift::default();
    for output in outputs.keys().map(scalar) {
        if !named.contains(output.as_str()) {
            drift.at(&doc, line, format!("the output `{output}` is not named"));
        }
    }
    drift.check("name every output of Pulumi.yaml's `outputs:` in the `Stack outputs:` paragraph of docs/deploy.md");
}

#[test]
fn deploy_md_alarm_table_is_the_programs_alarms() {
    let doc = Doc::read("docs/deploy.md");
    let program = yaml("Pulumi.yaml");
    let prefix = "${pulumi.project}-${pulumi.stack}-";
    let alarms: Vec<(String, String)> = program["resources"]
        .as_mapping()
        .expect("Pulumi.yaml has resources")
        .values()
        .filter(|r| r["type"].as_str() == Some("aws:cloudwatch/metricAlarm:MetricAlarm"))
        .map(|r| {
            let name = r["properties"]["name"].as_str().unwrap_or_default();
            let region = r["properties"].get("region").map(scalar);
            (
                name.trim_start_matches(prefix).to_string(),
                region.unwrap_or_else(|| "stack".into()),
            )
        })
        .collect();
    let rows = doc
        .table_after("## Alarms and dashboard")
        .expect("docs/deploy.md has a table under `## Alarms and dashboard`");
    let mut drift = Drift::default();
    let mut seen = BTreeSet::new();
    for row in rows {
        let name = row
            .cells
            .first()
            .and_then(|c| code_spans(c).first().copied());
        let Some(name) = name else {
            drift.at(
                &doc,
                row.line,
                "a row needs the alarm's name in its first column",
            );
            continue;
        };
        seen.insert(name.to_string());
        match alarms.iter().find(|(n, _)| n == name) {
            None => drift.at(
                &doc,
                row.line,
                format!("no alarm of Pulumi.yaml is named `<project>-<stack>-{name}`"),
            ),
            Some((_, region)) => {
                let quoted = row.cells.get(1).map(|c| c.trim_matches('`'));
                if quoted != Some(region.as_str()) {
                    drift.at(
                        &doc,
                        row.line,
                        format!("`{name}` is in region `{region}` (the second column)"),
                    );
                }
            }
        }
    }
    for (name, _) in &alarms {
        if !seen.contains(name) {
            drift.page(
                &doc,
                format!("the alarm `<project>-<stack>-{name}` has no row under `## Alarms and dashboard`"),
            );
        }
    }
    drift.check("give each MetricAlarm of Pulumi.yaml one row (name without the `<project>-<stack>-` prefix, region, metric, dimensions, threshold) under `## Alarms and dashboard` in docs/deploy.md");
}
