//! The certificate program (`certificate/Pulumi.yaml`,
//! docs/deploy.md#custom-domain) through the real YAML host and engine: it
//! requests the certificate in us-east-1 with DNS validation, writes ACM's
//! challenge into the hosted zone it finds by name, waits for the validation,
//! and its `CertificateArn` is what the main program's custom domain takes.

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use super::{Rehearsal, created, no_warnings_or_errors, text};

const NAME: &str = "chat.example.com";
const ZONE: &str = "example.com";

/// A certificate stack for `name` in `zone`.
fn certificate_stack(name: &str, zone: &str) -> anyhow::Result<Rehearsal> {
    let stack = Rehearsal::of("certificate")?;
    stack.pulumi(&["config", "set", "domainNames", name])?;
    stack.pulumi(&["config", "set", "zoneName", zone])?;
    Ok(stack)
}

/// Where in the journal the entry of `call` for `name` is.
fn position(journal: &[Value], call: &str, name: &str) -> anyhow::Result<usize> {
    journal
        .iter()
        .position(|e| e["call"] == call && e["name"] == name && e["preview"] != true)
        .with_context(|| format!("no {call} of {name}"))
}

#[test]
fn the_certificate_program_validates_by_dns_in_us_east_1_and_the_main_program_takes_its_arn()
-> anyhow::Result<()> {
    let stack = certificate_stack(NAME, ZONE)?;
    let preview = stack.pulumi(&["preview"])?;
    no_warnings_or_errors("pulumi preview (certificate)", &preview)?;
    let up = stack.pulumi(&["up", "--yes"])?;
    no_warnings_or_errors("pulumi up --yes (certificate)", &up)?;

    let all = stack.calls("Create")?;
    let certificate = created(&all, "certificate")?;
    let record = created(&all, "validationRecord")?;
    let validation = created(&all, "validation")?;
    for resource in [certificate, record, validation] {
        ensure!(
            resource["region"] == "us-east-1",
            "{} went to {}, not us-east-1",
            resource["name"],
            resource["region"]
        );
    }
    ensure!(
        certificate["inputs"]["domainName"] == NAME
            && certificate["inputs"]["validationMethod"] == "DNS",
        "the certificate was asked for {}",
        certificate["inputs"]
    );

    // The record is ACM's challenge, in the zone found by the name given.
    let zone = stack
        .session
        .journal()?
        .into_iter()
        .find(|e| e["call"] == "Invoke" && e["type"] == "aws:route53/getZone:getZone")
        .context("no getZone")?;
    ensure!(
        zone["inputs"]["name"] == ZONE,
        "getZone was asked for {}",
        zone["inputs"]
    );
    let challenge = &certificate["outputs"]["domainValidationOptions"][0];
    let inputs = &record["inputs"];
    ensure!(
        inputs["zoneId"] == zone["outputs"]["zoneId"]
            && inputs["name"] == challenge["resourceRecordName"]
            && inputs["type"] == "CNAME"
            && inputs["records"] == json!([challenge["resourceRecordValue"]]),
        "the record {inputs} is not the challenge {challenge} in zone {}",
        zone["outputs"]
    );
    let arn = text(&certificate["outputs"]["arn"], "the certificate's ARN")?;
    ensure!(
        validation["inputs"]["certificateArn"] == arn
            && validation["inputs"]["validationRecordFqdns"] == json!([record["outputs"]["fqdn"]]),
        "the validation waits for {}, not this certificate and record",
        validation["inputs"]
    );
    let journal = stack.session.journal()?;
    ensure!(
        position(&journal, "Create", "validation")?
            > position(&journal, "Create", "validationRecord")?,
        "the validation was created before its record"
    );

    let output = stack.pulumi(&["stack", "output", "CertificateArn"])?.stdout;
    let output = output.trim();
    ensure!(
        output == arn && output.starts_with("arn:aws:acm:us-east-1:123456789012:certificate/"),
        "CertificateArn {output:?} is not the certificate's ARN {arn} in us-east-1"
    );

    // The main program's custom domain takes it.
    let main = Rehearsal::unchanged()?;
    main.pulumi(&["config", "set", "domainNames", NAME])?;
    main.pulumi(&["config", "set", "certificateArn", output])?;
    main.pulumi(&["config", "set", "customDomain", "1"])?;
    let up = main.pulumi(&["up", "--yes"])?;
    no_warnings_or_errors("pulumi up --yes (main, custom domain)", &up)?;
    let main_created = main.calls("Create")?;
    let distribution = &created(&main_created, "distribution")?["inputs"];
    ensure!(
        distribution["viewerCertificate"]["acmCertificateArn"] == output
            && distribution["aliases"] == json!([NAME]),
        "the distribution did not take the certificate: {distribution}"
    );
    Ok(())
}

#[test]
fn a_second_name_stops_the_preview_before_anything_is_created() -> anyhow::Result<()> {
    let stack = certificate_stack("chat.example.com,ws.example.com", ZONE)?;
    let preview = stack.session.run(&["preview"])?;
    let text = preview.text();
    ensure!(
        !preview.status.success() && text.contains("onlyOneDomainName"),
        "two names were not refused at onlyOneDomainName:\n{text}"
    );
    ensure!(
        stack.calls("Create")?.is_empty(),
        "a refused preview created resources"
    );
    Ok(())
}

#[test]
fn a_name_outside_the_zone_is_refused_as_route_53_refuses_it() -> anyhow::Result<()> {
    let stack = certificate_stack(NAME, "example.org")?;
    let up = stack.session.run(&["up", "--yes"])?;
    let text = up.text();
    ensure!(
        !up.status.success() && text.contains("is not permitted in zone example.org."),
        "a record for {NAME} was written into example.org:\n{text}"
    );
    Ok(())
}
