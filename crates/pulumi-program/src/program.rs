//! The two documents of a stack — `Pulumi.yaml` and `Pulumi.<stack>.yaml` —
//! parsed, with the stack's configuration resolved the way Pulumi resolves it
//! ([`config`]).

use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use crate::Error;

mod config;

pub(crate) use config::Config;

/// Project-file keys Pulumi accepts (project attributes and the YAML program).
pub(crate) const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "runtime",
    "description",
    "config",
    "main",
    "stackConfigDir",
    "backend",
    "options",
    "template",
    "plugins",
    "packages",
    "author",
    "license",
    "website",
    "variables",
    "resources",
    "outputs",
];

#[derive(Debug, Clone)]
pub(crate) struct Program {
    pub project: String,
    pub stack: String,
    /// `Pulumi.<stack>.yaml`, for messages.
    pub stack_file: String,
    pub doc: Mapping,
    /// The stack file's `config:` mapping (empty when the file has none).
    pub stack_config: Mapping,
}

/// A resource of the program, as written.
#[derive(Debug, Clone)]
pub(crate) struct Resource<'a> {
    pub name: &'a str,
    /// The type token in its full form (`aws:lambda/function:Function`).
    pub token: String,
    pub properties: Option<&'a Mapping>,
    /// The resource options (`deleteBeforeReplace`, `dependsOn`...), as written.
    pub options: Option<&'a Mapping>,
}

impl Program {
    pub fn read(dir: &Path, stack: &str) -> Result<Program, Error> {
        let project_path = dir.join("Pulumi.yaml");
        let project_src = std::fs::read_to_string(&project_path).map_err(|source| Error::Io {
            path: project_path.display().to_string(),
            source,
        })?;
        let stack_path = dir.join(format!("Pulumi.{stack}.yaml"));
        let stack_src = match std::fs::read_to_string(&stack_path) {
            Ok(src) => Some(src),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(Error::Io {
                    path: stack_path.display().to_string(),
                    source,
                });
            }
        };
        Program::parse(&project_src, stack_src.as_deref(), stack)
    }

    pub fn parse(
        project_src: &str,
        stack_src: Option<&str>,
        stack: &str,
    ) -> Result<Program, Error> {
        let stack_file = format!("Pulumi.{stack}.yaml");
        let doc = match serde_yaml_ng::from_str::<Value>(project_src) {
            Ok(Value::Mapping(doc)) => doc,
            Ok(_) => return Err(invalid("Pulumi.yaml", "is not a mapping")),
            Err(err) => return Err(invalid("Pulumi.yaml", format!("is not valid YAML: {err}"))),
        };
        let project = match doc.get("name") {
            Some(Value::String(name)) if !name.is_empty() => name.clone(),
            _ => return Err(invalid("name", "the project needs a name")),
        };
        let stack_config = match stack_src {
            None => Mapping::new(),
            Some(src) => match serde_yaml_ng::from_str::<Value>(src) {
                Ok(Value::Mapping(file)) => match file.get("config") {
                    None | Some(Value::Null) => Mapping::new(),
                    Some(Value::Mapping(config)) => config.clone(),
                    Some(_) => {
                        return Err(invalid(format!("{stack_file}#config"), "is not a mapping"));
                    }
                },
                Ok(Value::Null) => Mapping::new(),
                Ok(_) => return Err(invalid(&stack_file, "is not a mapping")),
                Err(err) => return Err(invalid(&stack_file, format!("is not valid YAML: {err}"))),
            },
        };
        Ok(Program {
            project,
            stack: stack.to_string(),
            stack_file,
            doc,
            stack_config,
        })
    }

    pub fn section(&self, key: &str) -> Option<&Mapping> {
        match self.doc.get(key) {
            Some(Value::Mapping(section)) => Some(section),
            _ => None,
        }
    }

    pub fn variables(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.section("variables")
            .into_iter()
            .flat_map(|m| m.iter())
            .filter_map(|(k, v)| k.as_str().map(|k| (k, v)))
    }

    pub fn variable(&self, name: &str) -> Option<&Value> {
        self.section("variables").and_then(|m| m.get(name))
    }

    /// The resources, in program order. Entries that are not mappings or have no
    /// string `type` are skipped here; the check reports them.
    pub fn resources(&self) -> Vec<Resource<'_>> {
        let Some(section) = self.section("resources") else {
            return Vec::new();
        };
        section
            .iter()
            .filter_map(|(name, body)| {
                let name = name.as_str()?;
                let body = body.as_mapping()?;
                let written_type = body.get("type")?.as_str()?;
                Some(Resource {
                    name,
                    token: full_token(written_type),
                    properties: body.get("properties").and_then(Value::as_mapping),
                    options: body.get("options").and_then(Value::as_mapping),
                })
            })
            .collect()
    }

    pub fn resource(&self, name: &str) -> Option<Resource<'_>> {
        self.resources().into_iter().find(|r| r.name == name)
    }
}

/// `aws:apigatewayv2:Route` → `aws:apigatewayv2/route:Route`; `aws:getRegion` →
/// `aws:index/getRegion:getRegion`; full tokens are returned unchanged.
pub(crate) fn full_token(token: &str) -> String {
    let parts: Vec<&str> = token.split(':').collect();
    match parts.as_slice() {
        [pkg, module, name] if !module.contains('/') && *pkg != "pulumi" => {
            format!("{pkg}:{module}/{}:{name}", lower_first(name))
        }
        [pkg, name] => format!("{pkg}:index/{}:{name}", lower_first(name)),
        _ => token.to_string(),
    }
}

fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_tokens_expand_like_pulumi_does() {
        assert_eq!(
            full_token("aws:apigatewayv2:Route"),
            "aws:apigatewayv2/route:Route"
        );
        assert_eq!(full_token("aws:getRegion"), "aws:index/getRegion:getRegion");
        assert_eq!(
            full_token("aws:lambda/function:Function"),
            "aws:lambda/function:Function"
        );
        assert_eq!(full_token("pulumi:providers:aws"), "pulumi:providers:aws");
    }
}
