//! The stack's configuration, resolved the way Pulumi resolves it: the
//! project's declared defaults, overridden by the stack file's `config:`
//! (keys namespaced with the project name, or bare), coerced to the declared
//! type. Keys of other namespaces (`aws:region`) are provider configuration.

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

use super::Program;

/// Config types a project may declare.
const CONFIG_TYPES: &[&str] = &["string", "integer", "boolean", "array", "object"];

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
            read_declarations(section, &prefix, &mut config, &mut problems);
        }
        self.apply_stack_values(&prefix, &mut config, &mut problems);
        self.report_unset(&config, &mut problems);
        (config, problems)
    }

    /// The stack file's `config:` over the defaults: project keys must be
    /// declared, and are coerced to their declared type.
    fn apply_stack_values(&self, prefix: &str, config: &mut Config, problems: &mut Vec<Problem>) {
        for (key, value) in &self.stack_config {
            let Some(key) = key.as_str() else {
                problems.push(Problem::new(
                    format!("{}#config", self.stack_file),
                    "has a key that is not a string",
                ));
                continue;
            };
            let path = format!("{}#config.{key}", self.stack_file);
            let bare = key.strip_prefix(prefix).unwrap_or(key);
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
    }

    /// A declared key with neither a default nor a stack value.
    fn report_unset(&self, config: &Config, problems: &mut Vec<Problem>) {
        for key in config.declared.keys() {
            if !config.project.contains_key(key) {
                problems.push(Problem::new(
                    format!("config.{key}"),
                    format!("has no default and {} does not set it", self.stack_file),
                ));
            }
        }
    }
}

/// The project's `config:` section: each project key's type and default, and
/// the values it sets for other namespaces.
fn read_declarations(
    section: &Mapping,
    prefix: &str,
    config: &mut Config,
    problems: &mut Vec<Problem>,
) {
    for (key, decl) in section {
        let Some(key) = key.as_str() else {
            problems.push(Problem::new("config", "has a key that is not a string"));
            continue;
        };
        let path = format!("config.{key}");
        let bare = key.strip_prefix(prefix).unwrap_or(key);
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
        let Some(ty) = declared_type(&path, decl, problems) else {
            continue;
        };
        let default = match decl {
            Value::Mapping(m) => m.get("default").or_else(|| m.get("value")).cloned(),
            literal => Some(literal.clone()),
        };
        if let Some(default) = default {
            match coerce(&default, &ty) {
                Ok(value) => {
                    config.project.insert(bare.to_string(), value);
                }
                Err(message) => problems.push(Problem::new(format!("{path}.default"), message)),
            }
        }
        config.declared.insert(bare.to_string(), ty);
    }
}

/// A declaration's config type: its `type`, else its default's, else a
/// literal's; `None` (with the problem) when there is none or it is not one of
/// [`CONFIG_TYPES`].
fn declared_type(path: &str, decl: &Value, problems: &mut Vec<Problem>) -> Option<String> {
    let ty = match decl {
        Value::Mapping(m) => match m.get("type") {
            Some(Value::String(ty)) => Some(ty.clone()),
            Some(_) => {
                problems.push(Problem::new(format!("{path}.type"), "is not a string"));
                None
            }
            None => m.get("default").map(type_of).map(str::to_string),
        },
        literal => Some(type_of(literal).to_string()),
    };
    let Some(ty) = ty else {
        problems.push(Problem::new(path, "declares neither a type nor a default"));
        return None;
    };
    if !CONFIG_TYPES.contains(&ty.as_str()) {
        problems.push(Problem::new(
            format!("{path}.type"),
            format!(
                "`{ty}` is not a config type (one of {})",
                CONFIG_TYPES.join(", ")
            ),
        ));
        return None;
    }
    Some(ty)
}

/// The config type a literal value has.
fn type_of(value: &Value) -> &'static str {
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
}
