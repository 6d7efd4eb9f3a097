//! What the provider facts (crates/pulumi-program/facts) make the double do
//! through the real engine: refuse at preview the values pulumi-aws's
//! validators refuse, and plan a replacement where the provider forces a new
//! resource, in the order the engine chooses.

use std::fs;

use anyhow::{Context, ensure};
use serde_json::Value;

use super::{Rehearsal, preview_fails, replace_once};

#[test]
fn preview_refuses_a_protocol_type_the_provider_does_not_know() -> anyhow::Result<()> {
    preview_fails(
        "      protocolType: WEBSOCKET\n",
        "      protocolType: WEBSOCKETS\n",
        &[
            "aws:apigatewayv2/api:Api",
            r#"expected protocolType to be one of ["WEBSOCKET" "HTTP"], got WEBSOCKETS"#,
        ],
    )
}

#[test]
fn preview_refuses_a_lambda_runtime_the_provider_does_not_know() -> anyhow::Result<()> {
    preview_fails(
        // The handler's (the authorizer has the same line).
        "      role: ${role.arn}\n      runtime: provided.al2023\n",
        "      role: ${role.arn}\n      runtime: provided.al2099\n",
        &[
            "aws:lambda/function:Function",
            "expected runtime to be one of [",
            r#""provided.al2023""#,
            "got provided.al2099",
        ],
    )
}

#[test]
fn preview_refuses_a_web_acl_scope_the_provider_does_not_know() -> anyhow::Result<()> {
    preview_fails(
        "      scope: CLOUDFRONT\n",
        "      scope: GLOBAL\n",
        &[
            "aws:wafv2/webAcl:WebAcl",
            r#"expected scope to be one of ["CLOUDFRONT" "REGIONAL"], got GLOBAL"#,
        ],
    )
}

/// Journal positions of the real (not preview) Create and Delete of `name`
/// after entry `from`.
fn create_and_delete(stack: &Rehearsal, from: usize, name: &str) -> anyhow::Result<(usize, usize)> {
    let journal = stack.session.journal()?;
    let at = |call: &str| {
        journal
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, e)| e["call"] == call && e["name"] == name && e["preview"] != true)
            .map(|(i, _)| i)
            .with_context(|| format!("no {call} of {name} in the journal after entry {from}"))
    };
    Ok((at("Create")?, at("Delete")?))
}

/// The double's last Diff of `name`.
fn last_diff(stack: &Rehearsal, name: &str) -> anyhow::Result<Value> {
    stack
        .session
        .journal()?
        .into_iter()
        .rev()
        .find(|e| e["call"] == "Diff" && e["name"] == name)
        .with_context(|| format!("no Diff of {name} in the journal"))
}

/// Up, then the program edited by `original` -> `replacement`, previewed;
/// returns the preview's text and the journal length before the second up.
fn up_then_edit(
    stack: &Rehearsal,
    original: &str,
    replacement: &str,
) -> anyhow::Result<(String, usize)> {
    stack.pulumi(&["up", "--yes"])?;
    let yaml = stack.session.program_dir().join("Pulumi.yaml");
    let edited = replace_once(&fs::read_to_string(&yaml)?, original, replacement)?;
    fs::write(&yaml, edited)?;
    let preview = stack.pulumi(&["preview"])?.text();
    let before = stack.journal_len()?;
    stack.pulumi(&["up", "--yes"])?;
    Ok((preview, before))
}

/// The operations the preview shows for resource `name`, in its order
/// (`<op> <type> <name> <action>`: `--` delete original, `+-` replace, `++`
/// create replacement, `~` update).
fn preview_ops<'a>(preview: &'a str, name: &str) -> Vec<&'a str> {
    preview
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|words| words.len() > 2 && words[2] == name)
        .map(|words| words[0])
        .collect()
}

#[test]
fn renaming_the_table_replaces_it_deleting_the_old_one_first() -> anyhow::Result<()> {
    let stack = Rehearsal::unchanged()?;
    let (preview, before) = up_then_edit(
        &stack,
        "      name: ${pulumi.project}-${pulumi.stack}-connections\n",
        "      name: ${pulumi.project}-${pulumi.stack}-connections-v2\n",
    )?;
    ensure!(
        preview_ops(&preview, "connections") == ["--", "+-", "++"],
        "renaming the table does not preview as delete, replace, create:\n{preview}"
    );
    let diff = last_diff(&stack, "connections")?;
    ensure!(
        diff["replaces"] == serde_json::json!(["name"]) && diff["deleteBeforeReplace"] == true,
        "the double's diff of the renamed table: {diff}"
    );
    let (create, delete) = create_and_delete(&stack, before, "connections")?;
    ensure!(
        delete < create,
        "up created the renamed table (entry {create}) before deleting the old one (entry {delete})"
    );
    ensure!(
        preview_ops(&preview, "claims").is_empty(),
        "the other table changes too:\n{preview}"
    );
    Ok(())
}

#[test]
fn a_new_role_name_prefix_replaces_the_role_creating_the_new_one_first() -> anyhow::Result<()> {
    let stack = Rehearsal::unchanged()?;
    let (preview, before) = up_then_edit(
        &stack,
        "      namePrefix: ${pulumi.project}-${pulumi.stack}-\n      assumeRolePolicy:",
        "      namePrefix: ${pulumi.project}-${pulumi.stack}-fn-\n      assumeRolePolicy:",
    )?;
    ensure!(
        preview_ops(&preview, "role") == ["++", "+-", "--"],
        "a new namePrefix does not preview as create, replace, delete:\n{preview}"
    );
    let diff = last_diff(&stack, "role")?;
    ensure!(
        diff["replaces"] == serde_json::json!(["namePrefix"])
            && diff["deleteBeforeReplace"] != true,
        "the double's diff of the role: {diff}"
    );
    let (create, delete) = create_and_delete(&stack, before, "role")?;
    ensure!(
        create < delete,
        "up deleted the old role (entry {delete}) before creating its replacement (entry {create})"
    );
    Ok(())
}
