//! The custom domain (Pulumi.yaml's `domainNames`, `certificateArn`,
//! `customDomain`; docs/deploy.md#custom-domain) through the real YAML
//! host and engine: the form without a domain and the form with one are both
//! accepted and send the distribution what each needs, and the program's
//! guards stop the preview on a configuration CloudFront would refuse.

use std::collections::BTreeSet;

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use devstack::tools::rehearse::toolchain::repo_root;

use super::{Rehearsal, names};

const ARN: &str =
    "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000";

/// The distribution's create or last update, as the engine sent it.
fn distribution_inputs(stack: &Rehearsal) -> anyhow::Result<Value> {
    let mut calls = stack.calls("Create")?;
    calls.extend(stack.calls("Update")?);
    Ok(calls
        .into_iter()
        .rev()
        .find(|c| c["name"] == "distribution")
        .context("the distribution was not created")?["inputs"]
        .clone())
}

fn output(stack: &Rehearsal, name: &str) -> anyhow::Result<String> {
    Ok(stack
        .pulumi(&["stack", "output", name])?
        .stdout
        .trim()
        .to_string())
}

#[test]
fn a_custom_domain_gets_its_certificate_and_tls_1_2_and_none_keeps_cloudfronts()
-> anyhow::Result<()> {
    let stack = Rehearsal::unchanged()?;
    stack.pulumi(&["up", "--yes"])?;
    let plain = distribution_inputs(&stack)?;
    let certificate = &plain["viewerCertificate"];
    ensure!(
        *certificate == json!({"cloudfrontDefaultCertificate": true})
            && plain["aliases"] == json!([]),
        "without a domain: {plain}"
    );
    let url = output(&stack, "DistributionURL")?;
    ensure!(
        output(&stack, "CustomURL")? == url,
        "CustomURL is not DistributionURL {url:?} without a domain"
    );

    stack.pulumi(&[
        "config",
        "set",
        "domainNames",
        "chat.example.com,ws.example.com",
    ])?;
    stack.pulumi(&["config", "set", "certificateArn", ARN])?;
    stack.pulumi(&["config", "set", "customDomain", "1"])?;
    stack.pulumi(&["up", "--yes"])?;
    let named = distribution_inputs(&stack)?;
    let certificate = &named["viewerCertificate"];
    ensure!(
        *certificate
            == json!({
                "acmCertificateArn": ARN,
                "sslSupportMethod": "sni-only",
                "minimumProtocolVersion": "TLSv1.2_2021",
            })
            && named["aliases"] == json!(["chat.example.com", "ws.example.com"]),
        "with a domain: {named}"
    );
    let custom = output(&stack, "CustomURL")?;
    ensure!(custom == "wss://chat.example.com", "CustomURL {custom:?}");
    let updated = names(&stack.calls("Update")?);
    ensure!(
        updated == BTreeSet::from(["distribution".to_string()]),
        "the domain updated {updated:?}, not the distribution alone"
    );

    // Unchanged config, unchanged stack: nothing to update.
    let before = stack.journal_len()?;
    stack.pulumi(&["up", "--yes"])?;
    let later = stack.session.journal()?.split_off(before);
    let changes: Vec<&Value> = later
        .iter()
        .filter(|e| ["Create", "Update", "Delete"].contains(&e["call"].as_str().unwrap_or("")))
        .collect();
    ensure!(changes.is_empty(), "a second up changed {changes:?}");

    // Back to CloudFront's own name: the default certificate alone again.
    stack.pulumi(&["config", "set", "customDomain", "0"])?;
    stack.pulumi(&["config", "rm", "domainNames"])?;
    stack.pulumi(&["config", "rm", "certificateArn"])?;
    stack.pulumi(&["up", "--yes"])?;
    let back = distribution_inputs(&stack)?;
    ensure!(
        back["viewerCertificate"] == json!({"cloudfrontDefaultCertificate": true})
            && back["aliases"] == json!([]),
        "back to the default: {back}"
    );
    Ok(())
}

/// Sets `settings` on a fresh stack and expects the preview to stop at `guard`.
fn refused(settings: &[(&str, &str)], guard: &str) -> anyhow::Result<()> {
    let stack = Rehearsal::unchanged()?;
    for (key, value) in settings {
        stack.pulumi(&["config", "set", key, value])?;
    }
    let preview = stack.session.run(&["preview"])?;
    ensure!(
        !preview.status.success(),
        "the preview passed with {settings:?}:\n{}",
        preview.text()
    );
    // The host names a variable it registers, or (one waiting on an invoke,
    // like the partition) points at the variable's lines in Pulumi.yaml.
    let program = std::fs::read_to_string(repo_root().join("Pulumi.yaml"))?;
    let line = 1 + program
        .lines()
        .position(|l| l == format!("  {guard}:"))
        .with_context(|| format!("no variable {guard} in Pulumi.yaml"))?;
    let text = preview.text();
    ensure!(
        text.contains(&format!("Error registering variable [{guard}]"))
            || (line + 1..line + 4).any(|n| text.contains(&format!("on Pulumi.yaml line {n}:"))),
        "the preview with {settings:?} failed elsewhere than {guard} (line {line}):\n{text}"
    );
    Ok(())
}

#[test]
fn a_domain_name_without_a_certificate_is_refused() -> anyhow::Result<()> {
    refused(
        &[("domainNames", "chat.example.com")],
        "domainNamesNeedACertificate",
    )
}

#[test]
fn a_certificate_outside_us_east_1_or_without_custom_domain_1_is_refused() -> anyhow::Result<()> {
    let elsewhere = ARN.replace("us-east-1", "eu-west-1");
    refused(
        &[
            ("domainNames", "chat.example.com"),
            ("certificateArn", &elsewhere),
            ("customDomain", "1"),
        ],
        "certificateInUsEast1",
    )?;
    refused(
        &[("domainNames", "chat.example.com"), ("certificateArn", ARN)],
        "certificateFitsKind",
    )
}
