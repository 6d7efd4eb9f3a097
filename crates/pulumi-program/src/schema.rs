//! The types of pulumi-aws at the pinned version, as the offline check sees them.
//!
//! `schema/pulumi-aws-<version>.json` is produced by `schema/extract.py` from
//! the published Python SDK (never written by hand) and compiled in here.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

const SCHEMA_JSON: &str = include_str!("../schema/pulumi-aws-7.51.1.json");

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Schema {
    pub version: String,
    pub modules: Vec<String>,
    pub resources: BTreeMap<String, ResourceSchema>,
    pub functions: BTreeMap<String, FunctionSchema>,
    pub types: BTreeMap<String, BTreeMap<String, Property>>,
    /// Tokens of resources outside the extracted modules.
    pub other_resources: Vec<String>,
    pub other_functions: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ResourceSchema {
    pub inputs: BTreeMap<String, Property>,
    pub outputs: BTreeMap<String, TypeSpec>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FunctionSchema {
    pub inputs: BTreeMap<String, Property>,
    pub outputs: BTreeMap<String, TypeSpec>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Property {
    #[serde(rename = "type")]
    pub ty: TypeSpec,
    pub required: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum TypeSpec {
    /// `string`, `integer`, `number`, `boolean`, `any`, `object` (an output
    /// object whose fields are not extracted), `archive`, `asset`, `assetOrArchive`.
    Named(String),
    Array {
        array: Box<TypeSpec>,
    },
    Map {
        map: Box<TypeSpec>,
    },
    Ref {
        #[serde(rename = "ref")]
        reference: String,
    },
}

/// The embedded schema, parsed once.
pub(crate) fn schema() -> Result<&'static Schema, String> {
    static SCHEMA: OnceLock<Result<Schema, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            serde_json::from_str(SCHEMA_JSON)
                .map_err(|err| format!("the embedded pulumi-aws schema is corrupt: {err}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl Schema {
    /// The module a type token belongs to (`aws:lambda/function:Function` → `lambda`).
    pub fn module_of(token: &str) -> Option<&str> {
        token.split(':').nth(1).and_then(|m| m.split('/').next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_schema_parses_and_has_the_program_types() {
        let schema = schema().expect("embedded schema parses");
        assert_eq!(schema.version, "7.51.1");
        let route = &schema.resources["aws:apigatewayv2/route:Route"];
        assert!(route.inputs["routeKey"].required);
        assert!(!route.inputs["apiKeyRequired"].required);
        assert!(matches!(&route.inputs["apiKeyRequired"].ty, TypeSpec::Named(t) if t == "boolean"));
        assert!(
            schema.resources["aws:cloudfront/distribution:Distribution"]
                .outputs
                .contains_key("domainName")
        );
        assert!(
            schema
                .types
                .contains_key("cloudfront.DistributionOriginCustomOriginConfigArgs")
        );
        assert!(
            schema
                .functions
                .contains_key("aws:index/getRegion:getRegion")
        );
        assert!(
            schema
                .other_resources
                .iter()
                .any(|t| t == "aws:s3/bucket:Bucket")
        );
    }
}
