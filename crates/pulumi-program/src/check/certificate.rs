//! The certificate program (`certificate/Pulumi.yaml`,
//! docs/deploy.md#custom-domain): the ACM certificate the main program's
//! custom domain takes. It is checked like any program against pulumi-aws's
//! types, then for what makes its certificate usable by CloudFront: requested
//! and validated through a `us-east-1` provider, by DNS, with ACM's challenge
//! written into the hosted zone the user names, and the output being the
//! validated certificate's ARN (one that exists only once ACM issued it).

use serde_yaml_ng::Value;

use super::{Checker, Diagnostic, from_error};
use crate::program::{Program, full_token};

const CERTIFICATE: &str = "aws:acm/certificate:Certificate";
const VALIDATION: &str = "aws:acm/certificateValidation:CertificateValidation";
const RECORD: &str = "aws:route53/record:Record";
const GET_ZONE: &str = "aws:route53/getZone:getZone";

/// Checks the certificate program's text with its stack `stack`'s file
/// (`Pulumi.<stack>.yaml`, which sets domainNames and zoneName); no findings
/// means it passes.
pub fn check_certificate_sources(
    project_yaml: &str,
    stack_yaml: Option<&str>,
    stack: &str,
) -> Vec<Diagnostic> {
    let program = match Program::parse(project_yaml, stack_yaml, stack) {
        Ok(program) => program,
        Err(err) => return vec![from_error(err)],
    };
    let mut checker = match Checker::new(&program) {
        Ok(checker) => checker,
        Err(diag) => return vec![diag],
    };
    checker.top_level();
    checker.config_declarations();
    checker.variables();
    checker.resources();
    checker.provider_values();
    checker.outputs();
    checker.cycles();
    checker.unused_config();
    checker.certificate_invariants();
    checker.diags
}

/// The one resource of `token`, with its name and body.
fn only<'p>(program: &'p Program, token: &str) -> Result<(&'p str, &'p Value), String> {
    let found: Vec<_> = program
        .section("resources")
        .into_iter()
        .flatten()
        .filter(|(_, body)| {
            body.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| full_token(t) == token)
        })
        .filter_map(|(name, body)| name.as_str().map(|n| (n, body)))
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!("the program has no {token}")),
        _ => Err(format!(
            "the program has {} of {token}: one is checked",
            found.len()
        )),
    }
}

fn at<'v>(body: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(body, |v, key| v.get(*key))
}

fn text<'v>(body: &'v Value, path: &[&str]) -> Option<&'v str> {
    at(body, path).and_then(Value::as_str)
}

impl Checker<'_> {
    fn certificate_invariants(&mut self) {
        let program = self.program;
        let lookups = [CERTIFICATE, VALIDATION, RECORD].map(|t| only(program, t));
        let [certificate, validation, record] = match lookups {
            [Ok(c), Ok(v), Ok(r)] => [c, v, r],
            errors => {
                for err in errors.into_iter().filter_map(Result::err) {
                    self.report("resources", err);
                }
                return;
            }
        };

        // The provider: us-east-1, where CloudFront reads certificates.
        let east = program
            .section("resources")
            .into_iter()
            .flatten()
            .find(|(_, body)| {
                text(body, &["type"]) == Some("pulumi:providers:aws")
                    && text(body, &["properties", "region"]) == Some("us-east-1")
            })
            .and_then(|(name, _)| name.as_str());
        let Some(east) = east else {
            self.report(
                "resources",
                "no `pulumi:providers:aws` with `region: us-east-1`: CloudFront takes viewer certificates from us-east-1 only",
            );
            return;
        };
        let provider = format!("${{{east}}}");
        for (name, body) in [certificate, validation, record] {
            if text(body, &["options", "provider"]) != Some(provider.as_str()) {
                self.report(
                    format!("resources.{name}.options.provider"),
                    format!("must be {provider}, the us-east-1 provider (CloudFront reads certificates there only)"),
                );
            }
        }

        let (cert, cert_body) = certificate;
        if text(cert_body, &["properties", "validationMethod"]) != Some("DNS") {
            self.report(
                format!("resources.{cert}.properties.validationMethod"),
                "must be DNS: the program proves the name with a Route 53 record",
            );
        }
        if text(cert_body, &["properties", "domainName"]) != Some("${domainNames}") {
            self.report(
                format!("resources.{cert}.properties.domainName"),
                "must be ${domainNames}, the one name the guard onlyOneDomainName admits",
            );
        }
        if !program
            .variables()
            .any(|(name, _)| name == "onlyOneDomainName")
        {
            self.report(
                "variables.onlyOneDomainName",
                "is missing: a second name would get no validation record and the up would wait for ACM in vain",
            );
        }

        // The record: ACM's challenge, in the zone found by the name the user gives.
        let (rec, rec_body) = record;
        let challenge = format!("${{{cert}.domainValidationOptions[0]");
        for (key, field) in [
            ("name", "resourceRecordName"),
            ("type", "resourceRecordType"),
        ] {
            if text(rec_body, &["properties", key])
                != Some(format!("{challenge}.{field}}}").as_str())
            {
                self.report(
                    format!("resources.{rec}.properties.{key}"),
                    format!("must be {challenge}.{field}}}, ACM's challenge"),
                );
            }
        }
        let value = format!("{challenge}.resourceRecordValue}}");
        let records = at(rec_body, &["properties", "records"]).and_then(Value::as_sequence);
        if records.is_none_or(|r| r.len() != 1 || r[0].as_str() != Some(value.as_str())) {
            self.report(
                format!("resources.{rec}.properties.records"),
                format!("must be [{value}], ACM's challenge answer alone"),
            );
        }
        let zone_var = text(rec_body, &["properties", "zoneId"])
            .and_then(|z| z.strip_prefix("${"))
            .and_then(|z| z.strip_suffix('}'));
        let zone_found = zone_var.and_then(|v| program.variable(v)).is_some_and(|v| {
            let invoke = &v["fn::invoke"];
            invoke["function"].as_str().map(full_token).as_deref() == Some(GET_ZONE)
                && invoke["arguments"]["name"].as_str() == Some("${zoneName}")
                && invoke["return"].as_str() == Some("zoneId")
        });
        if !zone_found {
            self.report(
                format!("resources.{rec}.properties.zoneId"),
                "must be a variable holding getZone's zoneId for ${zoneName}: the record goes into the zone the user names",
            );
        }

        // The validation waits for this certificate and this record; the output is its ARN.
        let (val, val_body) = validation;
        if text(val_body, &["properties", "certificateArn"])
            != Some(format!("${{{cert}.arn}}").as_str())
        {
            self.report(
                format!("resources.{val}.properties.certificateArn"),
                format!("must be ${{{cert}.arn}}"),
            );
        }
        let fqdn = format!("${{{rec}.fqdn}}");
        let fqdns =
            at(val_body, &["properties", "validationRecordFqdns"]).and_then(Value::as_sequence);
        if fqdns.is_none_or(|f| f.len() != 1 || f[0].as_str() != Some(fqdn.as_str())) {
            self.report(
                format!("resources.{val}.properties.validationRecordFqdns"),
                format!("must be [{fqdn}]: the validation waits for the record it names"),
            );
        }
        let output = program
            .section("outputs")
            .and_then(|o| o.get("CertificateArn"))
            .and_then(Value::as_str);
        let want = format!("${{{val}.certificateArn}}");
        if output != Some(want.as_str()) {
            self.report(
                "outputs.CertificateArn",
                format!(
                    "must be {want}: the ARN of a certificate ACM has issued, not merely requested"
                ),
            );
        }
    }
}
