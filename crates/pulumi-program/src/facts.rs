//! What pulumi-aws refuses or replaces beyond names and types: the provider
//! facts (`facts/pulumi-aws-<version>.facts.json`, written by
//! `facts/extract_facts.py` from the Terraform AWS provider's schema source,
//! never by hand), compiled in. The rehearsal's provider double reads the
//! same file, and words its refusals the same way ([`Rule::refuse`]), so the
//! offline check and the rehearsal never disagree about a value.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

const FACTS_JSON: &str = include_str!("../facts/pulumi-aws-7.51.1.facts.json");

/// The facts of every resource type that has them.
#[derive(Debug, Deserialize)]
pub struct Facts {
    pub version: String,
    pub resources: BTreeMap<String, ResourceFacts>,
}

/// One type's rules, keyed by Pulumi property path (`rules[].name`: `[]` is
/// every element of a list), and the source they were read from.
#[derive(Debug, Deserialize)]
pub struct ResourceFacts {
    pub terraform: String,
    pub source: String,
    pub properties: BTreeMap<String, Rule>,
}

/// What the provider's schema says of one property.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// A change replaces the resource (Terraform's `ForceNew`).
    #[serde(default)]
    pub force_new: bool,
    /// The allowed values (`validation.StringInSlice`, `enum.Validate`).
    pub values: Option<Vec<String>>,
    /// Inclusive length bounds (`validation.StringLenBetween`).
    pub len: Option<(usize, usize)>,
    /// Inclusive numeric bounds (`validation.IntBetween`).
    pub range: Option<(i64, i64)>,
    /// A pattern the whole value must match (`validation.StringMatch`).
    pub pattern: Option<String>,
}

/// The embedded facts, parsed once.
pub fn facts() -> Result<&'static Facts, String> {
    static FACTS: OnceLock<Result<Facts, String>> = OnceLock::new();
    FACTS
        .get_or_init(|| {
            serde_json::from_str(FACTS_JSON)
                .map_err(|err| format!("the embedded provider facts are corrupt: {err}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl Rule {
    /// Why the provider refuses `value` at `path`, worded as the Terraform
    /// SDK's validators word it; `None` when it accepts it.
    pub fn refuse(&self, path: &str, value: &str) -> Option<String> {
        if let Some(values) = &self.values
            && !values.iter().any(|v| v == value)
        {
            let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
            return Some(format!(
                "expected {path} to be one of [{}], got {value}",
                quoted.join(" ")
            ));
        }
        if let Some((min, max)) = self.len
            && !(min..=max).contains(&value.len())
        {
            return Some(format!(
                "expected length of {path} to be in the range ({min} - {max}), got {value}"
            ));
        }
        if let Some((min, max)) = self.range
            && !value
                .parse::<f64>()
                .is_ok_and(|n| n >= min as f64 && n <= max as f64)
        {
            return Some(format!(
                "expected {path} to be in the range ({min} - {max}), got {value}"
            ));
        }
        if let Some(pattern) = &self.pattern {
            match regex_lite::Regex::new(pattern) {
                Ok(re) if re.is_match(value) => {}
                Ok(_) => {
                    return Some(format!(
                        "invalid value for {path} (must match {pattern}), got {value}"
                    ));
                }
                Err(err) => {
                    return Some(format!(
                        "the facts' pattern {pattern:?} for {path} does not compile: {err}"
                    ));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_facts_parse_and_name_the_replacements_and_enums() {
        let facts = facts().expect("embedded facts parse");
        assert_eq!(facts.version, "7.51.1");
        let api = &facts.resources["aws:apigatewayv2/api:Api"].properties;
        assert!(api["protocolType"].force_new);
        assert_eq!(
            api["protocolType"]
                .refuse("protocolType", "WEBSOCKETS")
                .as_deref(),
            Some(r#"expected protocolType to be one of ["HTTP" "WEBSOCKET"], got WEBSOCKETS"#)
        );
        assert_eq!(
            api["protocolType"].refuse("protocolType", "WEBSOCKET"),
            None
        );
        let acl = &facts.resources["aws:wafv2/webAcl:WebAcl"].properties;
        assert_eq!(
            acl["namePrefix"].refuse("namePrefix", "websocket-waf-dev-"),
            None
        );
        assert_eq!(
            acl["namePrefix"].refuse("namePrefix", "a.b").as_deref(),
            Some("invalid value for namePrefix (must match ^[0-9A-Za-z_-]+$), got a.b")
        );
        let function = &facts.resources["aws:lambda/function:Function"].properties;
        assert_eq!(
            function["timeout"].refuse("timeout", "0").as_deref(),
            Some("expected timeout to be in the range (1 - 900), got 0")
        );
        assert!(!facts.resources["aws:dynamodb/table:Table"].properties["billingMode"].force_new);
    }
}
