//! The two documents of a stack — `Pulumi.yaml` and `Pulumi.<stack>.yaml` —
//! parsed, with the stack's configuration resolved the way Pulumi resolves it:
//! the project's declared defaults, overridden by the stack file's `config:`
//! (keys namespaced with the project name, or bare), coerced to the declared
//! type. Keys of other namespaces (`aws:region`) are provider configuration.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use crate::Error;

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

/// Config types a project may declare.
pub(crate) const CONFIG_TYPES: &[&str] = &["string", "integer", "boolean", "array", "object"];

/// One problem found while resolving configuration: where, and what.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

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

/// Configuration after defaults and stack overrides.
#[derive(Debug, Clone, Default)]
pub(crate) struct Config {
    /// Project keys, bare (`rateLimit`).
    pub project: BTreeMap<String, Value>,
    /// Declared project keys and their declared types.
    pub declared: BTreeMap<String, String>,
    /// Keys of other namespaces, in full (`aws:region`).
    pub provider: BTreeMap<String, Value>,
}

impl Config {
    /// The value of a `${name}` reference to configuration, if `name` is one.
    pub fn lookup(&self, name: &str) -> Option<&Value> {
        self.project.get(name).or_else(|| self.provider.get(name))
    }
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

    /// Resolves configuration; every problem is returned, with the values that
    /// could be resolved.
    pub fn config(&self) -> (Config, Vec<Problem>) {
        let mut config = Config::default();
        let mut problems = Vec::new();
        let prefix = format!("{}:", self.project);

        if let Some(section) = self.doc.get("config") {
            let Some(section) = section.as_mapping() else {
                problems.push(Problem::new("config", "is not a mapping"));
                return (config, problems);
            };
            for (key, decl) in section {
                let Some(key) = key.as_str() else {
                    problems.push(Problem::new("config", "has a key that is not a string"));
                    continue;
                };
                let path = format!("config.{key}");
                let bare = key.strip_prefix(&prefix).unwrap_or(key);
                if bare.contains(':') {
                    // Another namespace's key set by the project (e.g. `aws:region: {value: ...}`).
                    let value = match decl {
                        Value::Mapping(m) => m.get("value").or_else(|| m.get("default")).cloned(),
                        other => Some(other.clone()),
                    };
                    if let Some(value) = value {
                        config.provider.insert(bare.to_string(), value);
                    }
                    continue;
                }
                let (ty, default) = match decl {
                    Value::Mapping(m) => {
                        let ty = match m.get("type") {
                            Some(Value::String(ty)) => Some(ty.clone()),
                            Some(_) => {
                                problems
                                    .push(Problem::new(format!("{path}.type"), "is not a string"));
                                None
                            }
                            None => m.get("default").map(type_of).map(str::to_string),
                        };
                        (ty, m.get("default").or_else(|| m.get("value")).cloned())
                    }
                    literal => (Some(type_of(literal).to_string()), Some(literal.clone())),
                };
                let Some(ty) = ty else {
                    problems.push(Problem::new(&path, "declares neither a type nor a default"));
                    continue;
                };
                if !CONFIG_TYPES.contains(&ty.as_str()) {
                    problems.push(Problem::new(
                        format!("{path}.type"),
                        format!(
                            "`{ty}` is not a config type (one of {})",
                            CONFIG_TYPES.join(", ")
                        ),
                    ));
                    continue;
                }
                if let Some(default) = default {
                    match coerce(&default, &ty) {
                        Ok(value) => {
                            config.project.insert(bare.to_string(), value);
                        }
                        Err(message) => {
                            problems.push(Problem::new(format!("{path}.default"), message))
                        }
                    }
                }
                config.declared.insert(bare.to_string(), ty);
            }
        }

        for (key, value) in &self.stack_config {
            let Some(key) = key.as_str() else {
                problems.push(Problem::new(
                    format!("{}#config", self.stack_file),
                    "has a key that is not a string",
                ));
                continue;
            };
            let path = format!("{}#config.{key}", self.stack_file);
            let bare = key.strip_prefix(&prefix).unwrap_or(key);
            if bare.contains(':') {
                config.provider.insert(bare.to_string(), value.clone());
                continue;
            }
            let Some(ty) = config.declared.get(bare) else {
                problems.push(Problem::new(
                    path,
                    format!("`{bare}` is not declared in Pulumi.yaml's config"),
                ));
                continue;
            };
            match coerce(value, ty) {
                Ok(value) => {
                    config.project.insert(bare.to_string(), value);
                }
                Err(message) => problems.push(Problem::new(path, message)),
            }
        }

        for key in config.declared.keys() {
            if !config.project.contains_key(key) {
                problems.push(Problem::new(
                    format!("config.{key}"),
                    format!("has no default and {} does not set it", self.stack_file),
                ));
            }
        }
        (config, problems)
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

/// The config type a literal value has.
pub(crate) fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::Sequence(_) => "array",
        Value::Mapping(_) => "object",
        Value::Null => "null",
        Value::String(_) | Value::Tagged(_) => "string",
    }
}

/// A config value as its declared type; stack files often hold numbers and
/// booleans as strings (`pulumi config set` writes them so).
fn coerce(value: &Value, ty: &str) -> Result<Value, String> {
    let found = type_of(value);
    match (ty, value) {
        (_, _) if found == ty => Ok(value.clone()),
        ("integer", Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(|n| Value::Number(n.into()))
            .map_err(|_| format!("expected an integer, found {s:?}")),
        ("boolean", Value::String(s)) => match s.trim() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("expected a boolean, found {s:?}")),
        },
        ("string", Value::Number(n)) => Ok(Value::String(n.to_string())),
        ("string", Value::Bool(b)) => Ok(Value::String(b.to_string())),
        _ => Err(format!("expected {ty}, found {found}")),
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

    const PROJECT: &str = "
name: demo
runtime: yaml
config:
  limit: {type: integer, default: 10}
  label: {type: string}
  aws:region: {value: us-west-2}
";

    #[test]
    fn stack_values_override_defaults_and_are_coerced() {
        let stack = "config:\n  demo:limit: '25'\n  label: hi\n  aws:region: eu-west-1\n";
        let program = Program::parse(PROJECT, Some(stack), "dev").expect("parses");
        let (config, problems) = program.config();
        assert_eq!(problems, vec![]);
        assert_eq!(config.lookup("limit"), Some(&Value::Number(25.into())));
        assert_eq!(config.lookup("label"), Some(&Value::String("hi".into())));
        assert_eq!(
            config.lookup("aws:region"),
            Some(&Value::String("eu-west-1".into()))
        );
    }

    #[test]
    fn missing_and_undeclared_and_mistyped_values_are_problems() {
        let stack = "config:\n  demo:limt: 3\n  demo:limit: lots\n";
        let program = Program::parse(PROJECT, Some(stack), "dev").expect("parses");
        let (_, problems) = program.config();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "Pulumi.dev.yaml#config.demo:limt",
                "Pulumi.dev.yaml#config.demo:limit",
                "config.label"
            ]
        );
    }

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
