//! A custom domain with modern TLS (issue 23, docs/deploy.md#custom-domain):
//! config `domainNames` become the distribution's aliases, served with
//! `certificateArn` (SNI only, TLS 1.2 or newer), or CloudFront's default
//! certificate and no alias when there is none. Pulumi YAML has no
//! conditionals, so the program looks the viewer certificate up from config;
//! this check evaluates the program under both configurations and proves
//! what each sends, and that the program stops the preview of a
//! configuration CloudFront would refuse.

use serde_yaml_ng::Value;

use super::Checker;
use super::invariants::{Scope, known, prop};
use super::sign_in::stops_preview;
use crate::Part;
use crate::eval::{Evaluated, scalar_text};
use crate::program::Config;
use crate::topology::DISTRIBUTION;

/// The security policies a distribution with its own certificate may use:
/// TLS 1.2 or newer (CloudFront's TLSv1.2_2021 and the later policies).
pub const MODERN_TLS: &[&str] = &["TLSv1.2_2021", "TLSv1.2_2025", "TLSv1.3_2025"];
const EXAMPLE_ARN: &str =
    "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000";
const NAMES: &str = "chat.example.com,ws.example.com";

/// `config` with the three custom-domain keys set.
fn with_domain(config: &Config, names: &str, arn: &str, custom_domain: u8) -> Config {
    let mut config = config.clone();
    for (key, value) in [
        ("domainNames", Value::String(names.into())),
        ("certificateArn", Value::String(arn.into())),
        ("customDomain", Value::Number(custom_domain.into())),
    ] {
        config.project.insert(key.into(), value);
    }
    config
}

/// `config` without a custom domain: for a check of something else that
/// must not blame it for a preview the domain's guards stop.
pub(super) fn without_domain(config: &Config) -> Config {
    if config.declared.contains_key("customDomain") {
        with_domain(config, "", "", 0)
    } else {
        config.clone()
    }
}

fn strings(items: &[&str]) -> Value {
    Value::Sequence(items.iter().map(|s| Value::String((*s).into())).collect())
}

impl Checker<'_> {
    pub(super) fn custom_domain(&mut self) {
        if !self.config.declared.contains_key("domainNames") {
            return;
        }
        let names: Vec<&str> = NAMES.split(',').collect();
        let named = with_domain(&self.config, NAMES, EXAMPLE_ARN, 1);
        let plain = with_domain(&self.config, "", "", 0);
        // What AWS reports back for each form, and nothing more: a field the
        // provider does not record (a policy beside the default certificate)
        // would show as a change on every preview.
        self.viewer_certificate(
            &named,
            "with domainNames and certificateArn",
            &strings(&names),
            &[
                ("acmCertificateArn", Some(EXAMPLE_ARN)),
                ("sslSupportMethod", Some("sni-only")),
                ("minimumProtocolVersion", None),
            ],
        );
        self.viewer_certificate(
            &plain,
            "without a domain",
            &strings(&[]),
            &[("cloudfrontDefaultCertificate", Some("true"))],
        );
        self.custom_url(&named, &plain, names[0]);
        let elsewhere = EXAMPLE_ARN.replace("us-east-1", "eu-west-1");
        for (names, arn, custom_domain, why) in [
            (
                "chat.example.com",
                "",
                0,
                "domain names without a certificate (CloudFront refuses the alias)",
            ),
            ("", EXAMPLE_ARN, 1, "a certificate without a domain name"),
            (
                NAMES,
                elsewhere.as_str(),
                1,
                "a certificate outside us-east-1 (CloudFront reads only those)",
            ),
            ("", EXAMPLE_ARN, 0, "a certificate with customDomain 0"),
            (NAMES, "", 1, "customDomain 1 without a certificate"),
            (NAMES, EXAMPLE_ARN, 2, "customDomain other than 0 or 1"),
        ] {
            let config = with_domain(&self.config, names, arn, custom_domain);
            if !stops_preview(self.program, &config, None) {
                self.report(
                    "variables",
                    format!(
                        "the program deploys {why}; refuse it with a variable that selects past its list"
                    ),
                );
            }
        }
        // And the current stack, with a message naming its config, when its
        // domain is what stops the preview.
        if stops_preview(self.program, &self.config, None)
            && !stops_preview(self.program, &plain, None)
        {
            let show = |key: &str| {
                self.config
                    .lookup(key)
                    .and_then(scalar_text)
                    .unwrap_or_default()
            };
            self.report(
                "config",
                format!(
                    "domainNames={:?} certificateArn={:?} customDomain={} stops `pulumi preview`: customDomain 1 needs domain names and an ACM certificate in us-east-1, 0 neither",
                    show("domainNames"),
                    show("certificateArn"),
                    show("customDomain")
                ),
            );
        }
    }

    /// The distribution's aliases and viewer certificate under `config`: the
    /// certificate has exactly the fields of `want`, each the value given
    /// (None: one of [`MODERN_TLS`]).
    fn viewer_certificate(
        &mut self,
        config: &Config,
        case: &str,
        aliases: &Value,
        want: &[(&str, Option<&str>)],
    ) {
        let scope = Scope::new(self.program, config);
        let Some(distribution) = scope.first(DISTRIBUTION) else {
            return;
        };
        let at = format!("resources.{}.properties", distribution.name);
        let certificate = known(&scope.eval, prop(distribution, "viewerCertificate"));
        let fields: Vec<(String, String)> = certificate
            .as_ref()
            .and_then(Value::as_mapping)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_string(), scalar_text(v)?)))
                    .collect()
            })
            .unwrap_or_default();
        let fits = fields.len() == want.len()
            && want.iter().all(|(name, value)| {
                fields.iter().any(|(n, v)| {
                    n == name && value.map_or(MODERN_TLS.contains(&v.as_str()), |w| v == w)
                })
            });
        if !fits {
            let want: Vec<String> = want
                .iter()
                .map(|(n, v)| {
                    format!(
                        "{n}: {}",
                        v.map_or(format!("one of {MODERN_TLS:?}"), str::to_string)
                    )
                })
                .collect();
            self.report(
                format!("{at}.viewerCertificate"),
                format!(
                    "must be exactly {{{}}} {case} (found {fields:?})",
                    want.join(", ")
                ),
            );
        }
        if known(&scope.eval, prop(distribution, "aliases")).as_ref() != Some(aliases) {
            self.report(
                format!("{at}.aliases"),
                format!("must be the config's domainNames, one alias each, {case}"),
            );
        }
    }

    /// CustomURL: the first name with a custom domain, the distribution's
    /// own URL (known only once deployed) without one.
    fn custom_url(&mut self, named: &Config, plain: &Config, first: &str) {
        let Some(url) = self
            .program
            .section("outputs")
            .and_then(|o| o.get("CustomURL"))
        else {
            self.report("outputs.CustomURL", "is missing: the URL viewers use");
            return;
        };
        let with = Scope::new(self.program, named).eval.eval(url);
        let want = format!("wss://{first}");
        if !matches!(&with, Evaluated::Known(Value::String(v)) if *v == want) {
            self.report(
                "outputs.CustomURL",
                format!("must be {want} with domainNames {NAMES} (found {with:?})"),
            );
        }
        let without = Scope::new(self.program, plain).eval.eval(url);
        let own_url = matches!(&without, Evaluated::Template(parts) if parts.iter().any(|p| matches!(
            p,
            Part::Ref { resource_type, property, .. }
                if resource_type == DISTRIBUTION && property == "domainName"
        )));
        if !own_url {
            self.report(
                "outputs.CustomURL",
                format!(
                    "must be the distribution's own wss:// URL without a domain (found {without:?})"
                ),
            );
        }
    }
}
