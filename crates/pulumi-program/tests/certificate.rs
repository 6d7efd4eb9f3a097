//! The certificate program (crates/pulumi-program/src/check/certificate.rs,
//! docs/deploy.md#custom-domain), broken one thing at a time.

use pulumi_program::check::check_certificate_sources;

mod support;

const PROGRAM: &str = include_str!("../../../certificate/Pulumi.yaml");
/// A stack of it, as `pulumi config set` writes one.
const STACK: &str = "config:
  websocket-waf-certificate:domainNames: chat.example.com
  websocket-waf-certificate:zoneName: example.com
";

fn findings(program: &str) -> Vec<pulumi_program::Diagnostic> {
    check_certificate_sources(program, Some(STACK), "prod")
}

/// The program with `from` (which must occur exactly once) replaced by `to`.
fn mutated(from: &str, to: &str) -> String {
    assert_eq!(
        PROGRAM.matches(from).count(),
        1,
        "{from:?} must occur once in certificate/Pulumi.yaml"
    );
    PROGRAM.replacen(from, to, 1)
}

/// Asserts a finding at `path` whose message contains `needle`.
fn expect(program: &str, path: &str, needle: &str) {
    support::expect_among(&findings(program), path, needle);
}

#[test]
fn the_program_as_it_is_passes() {
    let found = findings(PROGRAM);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_certificate_and_its_validation_go_through_the_us_east_1_provider() {
    expect(
        &mutated("      region: us-east-1\n", "      region: eu-west-1\n"),
        "resources",
        "region: us-east-1",
    );
    for (resource, block) in [
        (
            "certificate",
            "      validationMethod: DNS\n    options:\n      provider: ${usEast1}\n",
        ),
        (
            "validation",
            "        - ${validationRecord.fqdn}\n    options:\n      provider: ${usEast1}\n",
        ),
    ] {
        let without = block.replace("      provider: ${usEast1}\n", "");
        expect(
            &mutated(block, &without),
            &format!("resources.{resource}.options.provider"),
            "the us-east-1 provider",
        );
    }
}

#[test]
fn the_certificate_is_validated_by_dns_for_the_one_name() {
    expect(
        &mutated(
            "      validationMethod: DNS\n",
            "      validationMethod: EMAIL\n",
        ),
        "resources.certificate.properties.validationMethod",
        "must be DNS",
    );
    // The provider's own validator, from the facts.
    expect(
        &mutated(
            "      validationMethod: DNS\n",
            "      validationMethod: DNSS\n",
        ),
        "resources.certificate.properties.validationMethod",
        "expected validationMethod to be one of",
    );
    expect(
        &mutated("  onlyOneDomainName:\n", "  oneDomainNameOrMore:\n"),
        "variables.onlyOneDomainName",
        "is missing",
    );
}

#[test]
fn the_record_is_acms_challenge_in_the_named_zone() {
    expect(
        &mutated("        name: ${zoneName}\n", "        name: example.com\n"),
        "resources.validationRecord.properties.zoneId",
        "getZone's zoneId for ${zoneName}",
    );
    expect(
        &mutated(
            "      zoneId: ${zoneId}\n",
            "      zoneId: Z0123456789ABCDEFGHIJ\n",
        ),
        "resources.validationRecord.properties.zoneId",
        "the zone the user names",
    );
    expect(
        &mutated(
            "      type: ${certificate.domainValidationOptions[0].resourceRecordType}\n",
            "      type: TXT\n",
        ),
        "resources.validationRecord.properties.type",
        "ACM's challenge",
    );
    expect(
        &mutated(
            "        - ${certificate.domainValidationOptions[0].resourceRecordValue}\n",
            "        - ${certificate.domainValidationOptions[0].resourceRecordName}\n",
        ),
        "resources.validationRecord.properties.records",
        "ACM's challenge answer",
    );
}

#[test]
fn the_output_is_the_validated_certificate() {
    expect(
        &mutated(
            "  CertificateArn: ${validation.certificateArn}\n",
            "  CertificateArn: ${certificate.arn}\n",
        ),
        "outputs.CertificateArn",
        "ACM has issued",
    );
    expect(
        &mutated("        - ${validationRecord.fqdn}\n", ""),
        "resources.validation.properties.validationRecordFqdns",
        "waits for the record",
    );
}
