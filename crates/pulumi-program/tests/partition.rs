//! AWS host names from the partition (crates/pulumi-program/src/check/partition.rs):
//! a literal `amazonaws.com` is caught, and a stack in China gets China's suffix.

mod support;

use pulumi_program::{Part, load_sources};
use support::{DEV, PROGRAM, expect, mutated};

#[test]
fn a_literal_amazonaws_com_host_name_is_caught() {
    let program = mutated(
        "https://${api.id}.execute-api.${region}.${dnsSuffix}/${stageName}",
        "https://${api.id}.execute-api.${region}.amazonaws.com/${stageName}",
    );
    expect(
        &program,
        "resources.handler.properties.environment.variables.MANAGEMENT_ENDPOINT",
        "use getPartition's dnsSuffix",
    );
    let program = mutated(
        "domainName: ${api.id}.execute-api.${region}.${dnsSuffix}",
        "domainName: ${api.id}.execute-api.${region}.amazonaws.com",
    );
    expect(
        &program,
        "resources.distribution.properties.origins[0].domainName",
        "the aws partition's DNS suffix only",
    );
}

#[test]
fn a_stack_in_china_builds_china_host_names() {
    let china = DEV.replace("aws:region: eu-west-1", "aws:region: cn-north-1");
    assert_ne!(china, DEV, "the dev stack names its region");
    let topology = load_sources(PROGRAM, Some(&china), "dev").expect("loads");
    let endpoint = &topology.function.environment["MANAGEMENT_ENDPOINT"];
    let text: String = endpoint
        .0
        .iter()
        .map(|p| match p {
            Part::Text(t) => t.clone(),
            Part::Ref {
                resource, property, ..
            } => format!("${{{resource}.{property}}}"),
        })
        .collect();
    assert_eq!(
        text,
        "https://${api.id}.execute-api.cn-north-1.amazonaws.com.cn/prod"
    );
}
