//! A custom domain with modern TLS (crates/pulumi-program/src/check/custom_domain.rs),
//! broken one thing at a time.

mod support;

use pulumi_program::load_sources;
use support::{DEV, PROGRAM, expect, expect_with, findings, findings_with, mutated};

/// The program without the variable `name` (up to the next variable's comment).
fn without_variable(name: &str, next_comment: &str) -> String {
    let start = PROGRAM.find(&format!("  {name}:\n")).expect("the variable");
    let end = start + PROGRAM[start..].find(next_comment).expect("the next");
    format!("{}{}", &PROGRAM[..start], &PROGRAM[end..])
}

#[test]
fn the_program_as_it_is_passes() {
    let found = findings(PROGRAM);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn with_a_certificate_viewers_get_sni_and_tls_1_2() {
    for (from, to) in [
        (
            "          minimumProtocolVersion: TLSv1.2_2021\n",
            "          minimumProtocolVersion: TLSv1\n",
        ),
        (
            "          sslSupportMethod: sni-only\n",
            "          sslSupportMethod: vip\n",
        ),
        (
            "        - acmCertificateArn: ${certificateArn}\n          sslSupportMethod",
            "        - sslSupportMethod",
        ),
    ] {
        expect(
            &mutated(from, to),
            "resources.distribution.properties.viewerCertificate",
            "with domainNames and certificateArn",
        );
    }
}

#[test]
fn without_a_domain_the_default_certificate_alone_and_no_alias() {
    // A policy beside the default certificate: AWS ignores it, the provider
    // does not record it, every preview would show it as a change.
    let program = mutated(
        "      - - cloudfrontDefaultCertificate: true\n",
        "      - - cloudfrontDefaultCertificate: true\n          minimumProtocolVersion: TLSv1.2_2021\n",
    );
    expect(
        &program,
        "resources.distribution.properties.viewerCertificate",
        "must be exactly {cloudfrontDefaultCertificate: true} without a domain",
    );
    // Split at `,` an empty domainNames is one alias '' CloudFront refuses.
    let program = mutated("          - ['', ',']\n", "          - [',', ',']\n");
    expect(
        &program,
        "resources.distribution.properties.aliases",
        "without a domain",
    );
}

#[test]
fn the_custom_url_is_the_first_name_or_the_distributions_own() {
    let program = mutated(
        "        - wss://${firstDomainName}\n",
        "        - wss://${distribution.domainName}\n",
    );
    expect(
        &program,
        "outputs.CustomURL",
        "must be wss://chat.example.com",
    );
    let program = mutated(
        "      - - wss://${distribution.domainName}\n",
        "      - - ''\n",
    );
    expect(
        &program,
        "outputs.CustomURL",
        "own wss:// URL without a domain",
    );
}

#[test]
fn the_program_refuses_what_cloudfront_would() {
    for (name, next, why) in [
        (
            "domainNamesNeedACertificate",
            "  # And on a certificate",
            "deploys domain names without a certificate",
        ),
        (
            "certificateNeedsADomainName",
            "  # CloudFront reads viewer certificates",
            "deploys a certificate without a domain name",
        ),
        (
            "certificateInUsEast1",
            "  # With its own certificate",
            "deploys a certificate outside us-east-1",
        ),
        (
            "certificateFitsKind",
            "  certificateKindKey:",
            "deploys a certificate with customDomain 0",
        ),
    ] {
        expect(&without_variable(name, next), "variables", why);
    }
}

#[test]
fn the_local_stack_learns_the_configured_names_and_none_by_default() {
    let topology = load_sources(PROGRAM, Some(DEV), "dev").expect("the dev stack loads");
    assert!(topology.aliases.is_empty(), "{:?}", topology.aliases);
    let stack = format!(
        "{DEV}  websocket-waf:domainNames: chat.example.com,ws.example.com\n  \
         websocket-waf:certificateArn: arn:aws:acm:us-east-1:123456789012:certificate/abc\n  \
         websocket-waf:customDomain: 1\n"
    );
    let topology = load_sources(PROGRAM, Some(&stack), "dev").expect("a stack with a domain loads");
    assert_eq!(topology.aliases, ["chat.example.com", "ws.example.com"]);
}

#[test]
fn a_stack_whose_own_domain_is_refused_is_named_and_sign_in_is_not_blamed() {
    let stack = format!(
        "{DEV}  websocket-waf:domainNames: chat.example.com\n  websocket-waf:customDomain: 1\n"
    );
    expect_with(
        PROGRAM,
        &stack,
        "config",
        "domainNames=\"chat.example.com\" certificateArn=\"\" customDomain=1 stops `pulumi preview`",
    );
    let found = findings_with(PROGRAM, &stack);
    assert!(
        found.iter().all(|d| !d.message.contains("signIn=")),
        "sign-in blamed for the domain: {found:#?}"
    );
}
