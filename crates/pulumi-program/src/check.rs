//! The offline check: what `pulumi preview` would refuse, without the CLI.
//!
//! The program is checked against pulumi-aws's own types (see `schema.rs`):
//! resource types, property names at every depth, required properties, the
//! shape of every value, every `${...}` reference (to a resource output that
//! exists, a variable or a config key), every `fn::` builtin and data source.
//! Then the invariants that make the scheme secure are checked: `$connect`
//! needs the key, CloudFront sends the key, the distribution is behind this
//! program's CLOUDFRONT web ACL in us-east-1, https on both sides, the invoke
//! permission is scoped to this API, and `DistributionURL` is the wss:// URL;
//! the role grants exactly what the function calls; replacements cannot
//! collide on a name; the alarms and the dashboard watch this stack.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use crate::eval::builtin;
use crate::interpolation::{self, Access, Segment};
use crate::program::{self, Config, Program, full_token};
use crate::schema::{self, Property, Schema, TypeSpec};
use crate::topology;

mod alarms;
mod grants;
mod invariants;

pub use grants::{FUNCTION_DYNAMODB_ACTIONS, FUNCTION_SELF_ACTIONS};

/// One finding: where in the program (`resources.distribution.properties.origins[0]...`)
/// and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Checks `dir/Pulumi.yaml` with `dir/Pulumi.<stack>.yaml`; no findings means it passes.
pub fn check(dir: &Path, stack: &str) -> Vec<Diagnostic> {
    match Program::read(dir, stack) {
        Ok(program) => check_program(&program),
        Err(err) => vec![from_error(err)],
    }
}

/// [`check`] on the documents' text.
pub fn check_sources(project_yaml: &str, stack_yaml: Option<&str>, stack: &str) -> Vec<Diagnostic> {
    match Program::parse(project_yaml, stack_yaml, stack) {
        Ok(program) => check_program(&program),
        Err(err) => vec![from_error(err)],
    }
}

const BUILTINS: &[&str] = &[
    "fn::invoke",
    "fn::join",
    "fn::split",
    "fn::select",
    "fn::toJSON",
    "fn::toBase64",
    "fn::fromBase64",
    "fn::secret",
    "fn::readFile",
    "fn::fileAsset",
    "fn::stringAsset",
    "fn::remoteAsset",
    "fn::fileArchive",
    "fn::remoteArchive",
    "fn::assetArchive",
    "fn::stackReference",
    "fn::rfc3339ToUnix",
];

const RESOURCE_KEYS: &[&str] = &["type", "properties", "options", "get", "defaultProvider"];

const RESOURCE_OPTIONS: &[&str] = &[
    "additionalSecretOutputs",
    "aliases",
    "customTimeouts",
    "deleteBeforeReplace",
    "deletedWith",
    "dependsOn",
    "hideDiffs",
    "ignoreChanges",
    "import",
    "parent",
    "pluginDownloadURL",
    "protect",
    "provider",
    "providers",
    "replaceOnChanges",
    "replaceWith",
    "retainOnDelete",
    "version",
];

const INVOKE_KEYS: &[&str] = &["function", "arguments", "return", "options"];
const INVOKE_OPTIONS: &[&str] = &[
    "dependsOn",
    "parent",
    "pluginDownloadURL",
    "provider",
    "version",
];

/// What an expression is known to produce.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// Unknown until deployment, or anything.
    Any,
    /// An interpolated string: text with references, taken as any scalar.
    Scalar,
    String,
    Integer,
    Number,
    Boolean,
    List,
    Object,
    Archive,
    Asset,
    Null,
}

impl Shape {
    fn describe(self) -> &'static str {
        match self {
            Shape::Any => "anything",
            Shape::Scalar => "an interpolated string",
            Shape::String => "a string",
            Shape::Integer => "an integer",
            Shape::Number => "a number",
            Shape::Boolean => "a boolean",
            Shape::List => "a list",
            Shape::Object => "an object",
            Shape::Archive => "an archive",
            Shape::Asset => "an asset",
            Shape::Null => "null",
        }
    }
}

fn check_program(program: &Program) -> Vec<Diagnostic> {
    let schema = match schema::schema() {
        Ok(schema) => schema,
        Err(message) => {
            return vec![Diagnostic {
                path: "schema".into(),
                message,
            }];
        }
    };
    let (config, problems) = program.config();
    let mut checker = Checker {
        program,
        config,
        schema,
        diags: Vec::new(),
    };
    for problem in problems {
        checker.report(problem.path, problem.message);
    }
    checker.top_level();
    checker.config_declarations();
    checker.names();
    checker.variables();
    checker.resources();
    checker.outputs();
    checker.cycles();
    checker.unused_config();
    checker.invariants();
    checker.requirements();
    checker.role_grants();
    checker.waf_log_policy();
    checker.replacements();
    checker.alarms();
    checker.alarm_outputs();
    if checker.diags.is_empty()
        && let Err(err) = topology::build(program)
    {
        checker.diags.push(from_error(err));
    }
    checker.diags
}

struct Checker<'a> {
    program: &'a Program,
    config: Config,
    schema: &'static Schema,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn report(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            path: path.into(),
            message: message.into(),
        });
    }

    fn top_level(&mut self) {
        for key in self.program.doc.keys() {
            match key.as_str() {
                Some(k) if program::TOP_LEVEL_KEYS.contains(&k) => {}
                Some(k) => self.report(
                    k,
                    format!(
                        "not a Pulumi.yaml key{}",
                        suggest(k, program::TOP_LEVEL_KEYS.iter().copied())
                    ),
                ),
                None => self.report("", "a top-level key is not a string"),
            }
        }
        let runtime = match self.program.doc.get("runtime") {
            Some(Value::String(r)) => Some(r.as_str()),
            Some(Value::Mapping(m)) => m.get("name").and_then(Value::as_str),
            _ => None,
        };
        if runtime != Some("yaml") {
            self.report("runtime", "must be `yaml` for this program");
        }
        for key in ["resources", "variables", "outputs"] {
            if let Some(v) = self.program.doc.get(key)
                && !v.is_mapping()
            {
                self.report(key, "is not a mapping");
            }
        }
    }

    /// Every tunable has a type, and only the fields the YAML host reads.
    fn config_declarations(&mut self) {
        let Some(section) = self.program.section("config") else {
            return;
        };
        let prefix = format!("{}:", self.program.project);
        for (key, decl) in section {
            let Some(key) = key.as_str() else { continue };
            let bare = key.strip_prefix(&prefix).unwrap_or(key);
            if bare.contains(':') {
                continue;
            }
            let path = format!("config.{key}");
            let Some(decl) = decl.as_mapping() else {
                self.report(path, "declare it with type and default");
                continue;
            };
            // The fields pulumi-language-yaml reads; it warns on any other
            // (`description` included: say it in a comment instead).
            for field in decl.keys().filter_map(Value::as_str) {
                if !["type", "default", "secret", "items", "value", "name"].contains(&field) {
                    self.report(
                        format!("{path}.{field}"),
                        "not a config declaration field (the YAML host warns: it reads type, default, secret, items, value and name)",
                    );
                }
            }
            if !decl.contains_key("type") {
                self.report(&path, "has no type");
            }
        }
    }

    /// Resources, variables and config keys share one namespace.
    fn names(&mut self) {
        let variables: BTreeSet<&str> = self.program.variables().map(|(k, _)| k).collect();
        for resource in self.program.resources() {
            if variables.contains(resource.name) {
                self.report(
                    format!("resources.{}", resource.name),
                    "a variable has the same name",
                );
            }
            if self.config.lookup(resource.name).is_some() {
                self.report(
                    format!("resources.{}", resource.name),
                    "a config key has the same name",
                );
            }
        }
        for name in variables {
            if self.config.lookup(name).is_some() {
                self.report(
                    format!("variables.{name}"),
                    "a config key has the same name",
                );
            }
        }
    }

    fn variables(&mut self) {
        let program = self.program;
        for (name, value) in program.variables() {
            self.any(value, &format!("variables.{name}"));
        }
    }

    fn outputs(&mut self) {
        let program = self.program;
        if let Some(outputs) = program.section("outputs") {
            for (name, value) in outputs {
                let name = name.as_str().unwrap_or("?");
                self.any(value, &format!("outputs.{name}"));
            }
        }
    }

    fn resources(&mut self) {
        let program = self.program;
        let Some(section) = program.section("resources") else {
            self.report("resources", "the program has no resources");
            return;
        };
        for (name, body) in section {
            let Some(name) = name.as_str() else {
                self.report("resources", "a resource name is not a string");
                continue;
            };
            let path = format!("resources.{name}");
            let Some(body) = body.as_mapping() else {
                self.report(path, "is not a mapping");
                continue;
            };
            for key in body.keys().filter_map(Value::as_str) {
                if !RESOURCE_KEYS.contains(&key) {
                    self.report(
                        format!("{path}.{key}"),
                        format!(
                            "not a resource field{}",
                            suggest(key, RESOURCE_KEYS.iter().copied())
                        ),
                    );
                }
            }
            let Some(written) = body.get("type").and_then(Value::as_str) else {
                self.report(format!("{path}.type"), "is missing");
                continue;
            };
            let token = full_token(written);
            let properties = match body.get("properties") {
                None | Some(Value::Null) => None,
                Some(Value::Mapping(p)) => Some(p),
                Some(_) => {
                    self.report(format!("{path}.properties"), "is not a mapping");
                    continue;
                }
            };
            let props_path = format!("{path}.properties");
            let empty = Mapping::new();
            if token.starts_with("pulumi:providers:") {
                if let Some(props) = properties {
                    self.any(&Value::Mapping(props.clone()), &props_path);
                }
            } else if let Some(resource) = self.schema.resources.get(&token) {
                self.object(
                    properties.unwrap_or(&empty),
                    &resource.inputs,
                    &token,
                    &props_path,
                );
                self.pinned(body.get("options"), &format!("{path}.options.version"));
            } else {
                let message = self.unknown_token(&token, written, false);
                self.report(format!("{path}.type"), message);
            }
            if let Some(options) = body.get("options") {
                self.resource_options(options, &format!("{path}.options"));
            }
        }
    }

    fn unknown_token(&self, token: &str, written: &str, function: bool) -> String {
        let (others, kind) = if function {
            (&self.schema.other_functions, "data source")
        } else {
            (&self.schema.other_resources, "resource type")
        };
        if others.iter().any(|t| t == token) {
            format!(
                "{written} is in pulumi-aws {} but outside the extracted modules ({}); add {} to MODULES in schema/extract.py and regenerate",
                self.schema.version,
                self.schema.modules.join(", "),
                Schema::module_of(token).unwrap_or("its module"),
            )
        } else {
            let known: Vec<&str> = if function {
                self.schema.functions.keys().map(String::as_str).collect()
            } else {
                self.schema.resources.keys().map(String::as_str).collect()
            };
            format!(
                "no {kind} {written} in pulumi-aws {}{}",
                self.schema.version,
                suggest(token, known.into_iter())
            )
        }
    }

    /// pulumi-aws is pinned: every aws resource and invoke names the version.
    fn pinned(&mut self, options: Option<&Value>, path: &str) {
        match options.and_then(|o| o.get("version")) {
            Some(Value::String(v)) if *v == self.schema.version => {}
            Some(other) => self.report(
                path,
                format!(
                    "pins pulumi-aws {other:?}; the checked schema is {}",
                    self.schema.version
                ),
            ),
            None => self.report(
                path,
                format!("is missing: pin pulumi-aws to {}", self.schema.version),
            ),
        }
    }

    fn resource_options(&mut self, options: &Value, path: &str) {
        let Some(options) = options.as_mapping() else {
            self.report(path, "is not a mapping");
            return;
        };
        for (key, value) in options {
            let Some(key) = key.as_str() else { continue };
            let at = format!("{path}.{key}");
            if !RESOURCE_OPTIONS.contains(&key) {
                self.report(
                    &at,
                    format!(
                        "not a resource option{}",
                        suggest(key, RESOURCE_OPTIONS.iter().copied())
                    ),
                );
                continue;
            }
            match key {
                "dependsOn" => match value {
                    Value::Sequence(items) => {
                        for (i, item) in items.iter().enumerate() {
                            self.resource_ref(item, &format!("{at}[{i}]"));
                        }
                    }
                    other => {
                        self.any(other, &at);
                    }
                },
                "parent" | "provider" | "deletedWith" => self.resource_ref(value, &at),
                _ => {
                    self.any(value, &at);
                }
            }
        }
    }

    /// A `${resource}` reference to a whole resource.
    fn resource_ref(&mut self, value: &Value, path: &str) {
        let shape = self.any(value, path);
        let whole = value
            .as_str()
            .and_then(|s| interpolation::parse(s).ok())
            .is_some_and(|segments| {
                interpolation::sole_access(&segments)
                    .is_some_and(|a| a.path.is_empty() && self.program.resource(&a.root).is_some())
            });
        if !whole && shape != Shape::Any {
            self.report(path, "expected a resource, written `${name}`");
        }
    }

    /// Checks a mapping against an object type's properties.
    fn object(
        &mut self,
        value: &Mapping,
        properties: &BTreeMap<String, Property>,
        owner: &str,
        path: &str,
    ) {
        for (key, v) in value {
            let Some(key) = key.as_str() else {
                self.report(path, "has a key that is not a string");
                continue;
            };
            let at = format!("{path}.{key}");
            match properties.get(key) {
                Some(property) => self.value(v, &property.ty, &at),
                None => {
                    self.report(
                        &at,
                        format!(
                            "{owner} has no property `{key}`{}",
                            suggest(key, properties.keys().map(String::as_str))
                        ),
                    );
                    self.any(v, &at);
                }
            }
        }
        for (name, property) in properties {
            if property.required && !value.contains_key(name.as_str()) {
                self.report(
                    format!("{path}.{name}"),
                    format!("required property of {owner} is missing"),
                );
            }
        }
    }

    /// Checks a value against a schema type.
    fn value(&mut self, value: &Value, ty: &TypeSpec, path: &str) {
        match value {
            Value::Mapping(m) if builtin(m).is_none() => match ty {
                TypeSpec::Ref { reference } => match self.schema.types.get(reference) {
                    Some(properties) => {
                        let owner = reference
                            .rsplit('.')
                            .next()
                            .unwrap_or(reference)
                            .trim_end_matches("Args")
                            .to_string();
                        self.object(m, properties, &owner, path);
                    }
                    None => self.report(
                        path,
                        format!("type {reference} is not in the extracted schema"),
                    ),
                },
                TypeSpec::Map { map } => {
                    for (key, v) in m {
                        let key = key.as_str().unwrap_or("?");
                        self.value(v, map, &format!("{path}.{key}"));
                    }
                }
                TypeSpec::Named(n) if n == "any" || n == "object" => {
                    self.any(value, path);
                }
                other => {
                    self.report(
                        path,
                        format!("expected {}, found an object", describe(other)),
                    );
                    self.any(value, path);
                }
            },
            Value::Sequence(items) => match ty {
                TypeSpec::Array { array } => {
                    for (i, item) in items.iter().enumerate() {
                        self.value(item, array, &format!("{path}[{i}]"));
                    }
                }
                TypeSpec::Named(n) if n == "any" => {
                    self.any(value, path);
                }
                other => {
                    self.report(path, format!("expected {}, found a list", describe(other)));
                    self.any(value, path);
                }
            },
            other => {
                let shape = self.any(other, path);
                self.compare(shape, ty, path);
            }
        }
    }

    fn compare(&mut self, shape: Shape, ty: &TypeSpec, path: &str) {
        let fits = match (shape, ty) {
            (Shape::Any | Shape::Null, _) => true,
            (_, TypeSpec::Named(n)) if n == "any" => true,
            (Shape::Scalar, TypeSpec::Named(n)) => {
                matches!(n.as_str(), "string" | "integer" | "number" | "boolean")
            }
            (Shape::String, TypeSpec::Named(n)) => n == "string",
            (Shape::Integer, TypeSpec::Named(n)) => n == "integer" || n == "number",
            (Shape::Number, TypeSpec::Named(n)) => n == "number",
            (Shape::Boolean, TypeSpec::Named(n)) => n == "boolean",
            (Shape::Archive, TypeSpec::Named(n)) => n == "archive" || n == "assetOrArchive",
            (Shape::Asset, TypeSpec::Named(n)) => n == "asset" || n == "assetOrArchive",
            (Shape::List, TypeSpec::Array { .. }) => true,
            (Shape::Object, TypeSpec::Ref { .. } | TypeSpec::Map { .. }) => true,
            (Shape::Object, TypeSpec::Named(n)) => n == "object",
            _ => false,
        };
        if !fits {
            self.report(
                path,
                format!("expected {}, found {}", describe(ty), shape.describe()),
            );
        }
    }

    /// Checks the expressions inside any value and says what it produces.
    fn any(&mut self, value: &Value, path: &str) -> Shape {
        match value {
            Value::Null => Shape::Null,
            Value::Bool(_) => Shape::Boolean,
            Value::Number(n) if n.is_i64() || n.is_u64() => Shape::Integer,
            Value::Number(_) => Shape::Number,
            Value::String(s) => self.string(s, path),
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.any(item, &format!("{path}[{i}]"));
                }
                Shape::List
            }
            Value::Mapping(m) => {
                if let Some((name, args)) = builtin(m) {
                    return self.builtin(name, args, path);
                }
                for (key, v) in m {
                    let key = key.as_str().unwrap_or("?");
                    self.any(v, &format!("{path}.{key}"));
                }
                Shape::Object
            }
            Value::Tagged(_) => {
                self.report(path, "YAML tags are not Pulumi YAML");
                Shape::Any
            }
        }
    }

    fn string(&mut self, s: &str, path: &str) -> Shape {
        let segments = match interpolation::parse(s) {
            Ok(segments) => segments,
            Err(message) => {
                self.report(path, message);
                return Shape::Any;
            }
        };
        let mut has_access = false;
        for segment in &segments {
            if let Segment::Access(access) = segment {
                has_access = true;
                self.access(access, path);
            }
        }
        match interpolation::sole_access(&segments) {
            Some(access) => self.access_shape(access, 0),
            None if has_access => Shape::Scalar,
            None => Shape::String,
        }
    }

    /// A reference must name something, and a resource reference an output it has.
    fn access(&mut self, access: &Access, path: &str) {
        let root = access.root.as_str();
        if root == "pulumi" {
            if !matches!(
                access.first_property(),
                Some("project" | "stack" | "organization")
            ) || access.path.len() != 1
            {
                self.report(
                    path,
                    format!("{access}: pulumi has only project, stack and organization"),
                );
            }
            return;
        }
        if self.config.declared.contains_key(root) || self.config.lookup(root).is_some() {
            return;
        }
        if self.program.variable(root).is_some() {
            return;
        }
        if let Some(resource) = self.program.resource(root) {
            if access.path.is_empty() {
                return;
            }
            let Some(property) = access.first_property() else {
                self.report(
                    path,
                    format!("{access}: a resource's outputs are read by name"),
                );
                return;
            };
            if let Some(schema) = self.schema.resources.get(&resource.token)
                && !schema.outputs.contains_key(property)
            {
                self.report(
                    path,
                    format!(
                        "{access}: {} has no output `{property}`{}",
                        resource.token,
                        suggest(property, schema.outputs.keys().map(String::as_str))
                    ),
                );
            }
            return;
        }
        let names: Vec<String> = self
            .program
            .resources()
            .iter()
            .map(|r| r.name.to_string())
            .chain(self.program.variables().map(|(k, _)| k.to_string()))
            .chain(self.config.declared.keys().cloned())
            .collect();
        self.report(
            path,
            format!(
                "{access} refers to no resource, variable or config key{}",
                suggest(root, names.iter().map(String::as_str))
            ),
        );
    }

    fn access_shape(&self, access: &Access, depth: usize) -> Shape {
        let root = access.root.as_str();
        if root == "pulumi" {
            return Shape::String;
        }
        if let Some(ty) = self.config.declared.get(root) {
            if !access.path.is_empty() {
                return Shape::Any;
            }
            return match ty.as_str() {
                "string" => Shape::String,
                "integer" => Shape::Integer,
                "boolean" => Shape::Boolean,
                "array" => Shape::List,
                "object" => Shape::Object,
                _ => Shape::Any,
            };
        }
        if self.config.lookup(root).is_some() {
            return if access.path.is_empty() {
                Shape::String
            } else {
                Shape::Any
            };
        }
        if let Some(resource) = self.program.resource(root) {
            if access.path.is_empty() {
                return Shape::Object;
            }
            if access.path.len() == 1
                && let (Some(schema), Some(property)) = (
                    self.schema.resources.get(&resource.token),
                    access.first_property(),
                )
                && let Some(ty) = schema.outputs.get(property)
            {
                return shape_of(ty);
            }
        }
        if access.path.is_empty()
            && let Some(expr) = self.program.variable(root)
        {
            return self.infer(expr, depth + 1);
        }
        Shape::Any
    }

    /// What a variable's expression produces, without reporting anything
    /// (the variable itself is checked where it is declared).
    fn infer(&self, value: &Value, depth: usize) -> Shape {
        // Variables referring to each other in a cycle are reported by `cycles`.
        if depth > 16 {
            return Shape::Any;
        }
        match value {
            Value::Null => Shape::Null,
            Value::Bool(_) => Shape::Boolean,
            Value::Number(n) if n.is_i64() || n.is_u64() => Shape::Integer,
            Value::Number(_) => Shape::Number,
            Value::Sequence(_) => Shape::List,
            Value::Tagged(_) => Shape::Any,
            Value::String(s) => match interpolation::parse(s) {
                Ok(segments) => match interpolation::sole_access(&segments) {
                    Some(access) => self.access_shape(access, depth),
                    None if segments.iter().any(|s| matches!(s, Segment::Access(_))) => {
                        Shape::Scalar
                    }
                    None => Shape::String,
                },
                Err(_) => Shape::Any,
            },
            Value::Mapping(m) => match builtin(m) {
                None => Shape::Object,
                Some((name, args)) => match BUILTINS
                    .iter()
                    .copied()
                    .find(|b| b.eq_ignore_ascii_case(name))
                {
                    Some("fn::invoke") => {
                        let function = args
                            .get("function")
                            .and_then(Value::as_str)
                            .and_then(|f| self.schema.functions.get(&full_token(f)));
                        match (function, args.get("return")) {
                            (Some(function), Some(Value::String(field))) => function
                                .outputs
                                .get(field)
                                .map(shape_of)
                                .unwrap_or(Shape::Any),
                            (Some(_), None) => Shape::Object,
                            _ => Shape::Any,
                        }
                    }
                    Some("fn::secret") => self.infer(args, depth + 1),
                    Some(
                        "fn::join" | "fn::toJSON" | "fn::toBase64" | "fn::fromBase64"
                        | "fn::readFile",
                    ) => Shape::String,
                    Some("fn::split") => Shape::List,
                    Some("fn::rfc3339ToUnix") => Shape::Integer,
                    Some("fn::fileAsset" | "fn::stringAsset" | "fn::remoteAsset") => Shape::Asset,
                    Some("fn::fileArchive" | "fn::remoteArchive" | "fn::assetArchive") => {
                        Shape::Archive
                    }
                    _ => Shape::Any,
                },
            },
        }
    }

    /// A declared tunable nothing reads is a knob that does nothing.
    fn unused_config(&mut self) {
        let mut roots = BTreeSet::new();
        for key in ["variables", "resources", "outputs"] {
            if let Some(section) = self.program.doc.get(key) {
                references(section, &mut roots);
            }
        }
        let unused: Vec<String> = self
            .config
            .declared
            .keys()
            .filter(|k| !roots.contains(*k))
            .cloned()
            .collect();
        for key in unused {
            self.report(format!("config.{key}"), "is declared but nothing uses it");
        }
    }

    fn builtin(&mut self, name: &str, args: &Value, path: &str) -> Shape {
        let at = format!("{path}.{name}");
        let Some(canonical) = BUILTINS
            .iter()
            .copied()
            .find(|b| b.eq_ignore_ascii_case(name))
        else {
            // `fn::aws:getRegion` is the short form of an invoke.
            let token = full_token(&name[4..]);
            if name[4..].contains(':') && self.schema.functions.contains_key(&token) {
                let mut call = Mapping::new();
                call.insert("function".into(), Value::String(name[4..].to_string()));
                if !args.is_null() {
                    call.insert("arguments".into(), args.clone());
                }
                return self.invoke(&Value::Mapping(call), &at, false);
            }
            self.report(
                &at,
                format!(
                    "unknown builtin `{name}`{}",
                    suggest(name, BUILTINS.iter().copied())
                ),
            );
            self.any(args, &at);
            return Shape::Any;
        };
        match canonical {
            "fn::invoke" => self.invoke(args, &at, true),
            "fn::join" | "fn::split" | "fn::select" | "fn::stackReference" => {
                let Some(items) = args.as_sequence().filter(|items| items.len() == 2) else {
                    self.report(&at, format!("{canonical} takes a list of two values"));
                    return Shape::Any;
                };
                for (i, item) in items.iter().enumerate() {
                    self.any(item, &format!("{at}[{i}]"));
                }
                match canonical {
                    "fn::join" => Shape::String,
                    "fn::split" => Shape::List,
                    _ => Shape::Any,
                }
            }
            "fn::secret" => self.any(args, &at),
            "fn::rfc3339ToUnix" => {
                self.any(args, &at);
                Shape::Integer
            }
            "fn::toJSON" | "fn::toBase64" | "fn::fromBase64" | "fn::readFile" => {
                self.any(args, &at);
                Shape::String
            }
            "fn::fileAsset" | "fn::stringAsset" | "fn::remoteAsset" | "fn::fileArchive"
            | "fn::remoteArchive" => {
                if !args.is_string() {
                    self.report(&at, format!("{canonical} takes a string"));
                } else {
                    self.any(args, &at);
                }
                if canonical.ends_with("Asset") {
                    Shape::Asset
                } else {
                    Shape::Archive
                }
            }
            "fn::assetArchive" => {
                match args.as_mapping() {
                    Some(entries) => {
                        for (key, v) in entries {
                            let key = key.as_str().unwrap_or("?");
                            let shape = self.any(v, &format!("{at}.{key}"));
                            if !matches!(shape, Shape::Asset | Shape::Archive) {
                                self.report(
                                    format!("{at}.{key}"),
                                    "expected an asset or an archive",
                                );
                            }
                        }
                    }
                    None => self.report(&at, "fn::assetArchive takes a mapping of paths to assets"),
                }
                Shape::Archive
            }
            _ => Shape::Any,
        }
    }

    fn invoke(&mut self, args: &Value, path: &str, pin: bool) -> Shape {
        let Some(call) = args.as_mapping() else {
            self.report(
                path,
                "fn::invoke takes a mapping with function, arguments and return",
            );
            return Shape::Any;
        };
        for key in call.keys().filter_map(Value::as_str) {
            if !INVOKE_KEYS.contains(&key) {
                self.report(
                    format!("{path}.{key}"),
                    format!(
                        "not an fn::invoke field{}",
                        suggest(key, INVOKE_KEYS.iter().copied())
                    ),
                );
            }
        }
        let Some(written) = call.get("function").and_then(Value::as_str) else {
            self.report(format!("{path}.function"), "is missing");
            return Shape::Any;
        };
        let token = full_token(written);
        let Some(function) = self.schema.functions.get(&token) else {
            let message = self.unknown_token(&token, written, true);
            self.report(format!("{path}.function"), message);
            return Shape::Any;
        };
        let empty = Mapping::new();
        match call.get("arguments") {
            None | Some(Value::Null) => self.object(
                &empty,
                &function.inputs,
                &token,
                &format!("{path}.arguments"),
            ),
            Some(Value::Mapping(arguments)) => self.object(
                arguments,
                &function.inputs,
                &token,
                &format!("{path}.arguments"),
            ),
            Some(_) => self.report(format!("{path}.arguments"), "is not a mapping"),
        }
        if let Some(options) = call.get("options") {
            match options.as_mapping() {
                Some(options) => {
                    for (key, v) in options {
                        let key = key.as_str().unwrap_or("?");
                        if !INVOKE_OPTIONS.contains(&key) {
                            self.report(format!("{path}.options.{key}"), "not an invoke option");
                        }
                        self.any(v, &format!("{path}.options.{key}"));
                    }
                }
                None => self.report(format!("{path}.options"), "is not a mapping"),
            }
        }
        if pin {
            self.pinned(call.get("options"), &format!("{path}.options.version"));
        }
        match call.get("return") {
            None => Shape::Object,
            Some(Value::String(field)) => match function.outputs.get(field) {
                Some(ty) => shape_of(ty),
                None => {
                    self.report(
                        format!("{path}.return"),
                        format!(
                            "{token} returns no `{field}`{}",
                            suggest(field, function.outputs.keys().map(String::as_str))
                        ),
                    );
                    Shape::Any
                }
            },
            Some(_) => {
                self.report(format!("{path}.return"), "is not a string");
                Shape::Any
            }
        }
    }

    /// Pulumi refuses a program whose resources and variables depend on each
    /// other in a cycle (an output cannot feed the resource it comes from).
    fn cycles(&mut self) {
        let program = self.program;
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let nodes: BTreeSet<String> = program
            .resources()
            .iter()
            .map(|r| r.name.to_string())
            .chain(program.variables().map(|(k, _)| k.to_string()))
            .collect();
        if let Some(section) = program.section("resources") {
            for (name, body) in section {
                if let Some(name) = name.as_str() {
                    let mut roots = BTreeSet::new();
                    references(body, &mut roots);
                    roots.retain(|r| nodes.contains(r));
                    graph.insert(name.to_string(), roots);
                }
            }
        }
        for (name, value) in program.variables() {
            let mut roots = BTreeSet::new();
            references(value, &mut roots);
            roots.retain(|r| nodes.contains(r));
            graph.insert(name.to_string(), roots);
        }
        let mut done = BTreeSet::new();
        let mut reported = BTreeSet::new();
        for start in graph.keys() {
            let mut stack = vec![start.clone()];
            find_cycle(&graph, &mut stack, &mut done, &mut |cycle| {
                let mut members = cycle.to_vec();
                members.sort();
                if reported.insert(members) {
                    let first = &cycle[0];
                    let section = if program.variable(first).is_some() {
                        "variables"
                    } else {
                        "resources"
                    };
                    self.diags.push(Diagnostic {
                        path: format!("{section}.{first}"),
                        message: format!("dependency cycle: {} -> {first}", cycle.join(" -> ")),
                    });
                }
            });
        }
    }
}

/// Depth-first search from the last node of `stack`; calls `found` with each
/// cycle (the nodes in order) it closes.
fn find_cycle(
    graph: &BTreeMap<String, BTreeSet<String>>,
    stack: &mut Vec<String>,
    done: &mut BTreeSet<String>,
    found: &mut dyn FnMut(&[String]),
) {
    let Some(node) = stack.last().cloned() else {
        return;
    };
    if done.contains(&node) {
        return;
    }
    for next in graph.get(&node).into_iter().flatten() {
        if let Some(pos) = stack.iter().position(|n| n == next) {
            found(&stack[pos..]);
        } else {
            stack.push(next.clone());
            find_cycle(graph, stack, done, found);
            stack.pop();
        }
    }
    done.insert(node);
}

/// The roots of every `${...}` in a value.
fn references(value: &Value, roots: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => {
            if let Ok(segments) = interpolation::parse(s) {
                for segment in segments {
                    if let Segment::Access(access) = segment {
                        roots.insert(access.root);
                    }
                }
            }
        }
        Value::Sequence(items) => items.iter().for_each(|item| references(item, roots)),
        Value::Mapping(m) => m.values().for_each(|v| references(v, roots)),
        Value::Tagged(tagged) => references(&tagged.value, roots),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn shape_of(ty: &TypeSpec) -> Shape {
    match ty {
        TypeSpec::Named(n) => match n.as_str() {
            "string" => Shape::String,
            "integer" => Shape::Integer,
            "number" => Shape::Number,
            "boolean" => Shape::Boolean,
            "archive" => Shape::Archive,
            "asset" => Shape::Asset,
            "object" => Shape::Object,
            _ => Shape::Any,
        },
        TypeSpec::Array { .. } => Shape::List,
        TypeSpec::Map { .. } | TypeSpec::Ref { .. } => Shape::Object,
    }
}

fn describe(ty: &TypeSpec) -> String {
    match ty {
        TypeSpec::Named(n) => match n.as_str() {
            "integer" => "an integer".into(),
            "archive" => "an archive (fn::fileArchive, ...)".into(),
            "asset" => "an asset (fn::fileAsset, ...)".into(),
            "assetOrArchive" => "an asset or an archive".into(),
            other => format!("a {other}"),
        },
        TypeSpec::Array { .. } => "a list".into(),
        TypeSpec::Map { .. } => "a map".into(),
        TypeSpec::Ref { reference } => format!(
            "an object ({})",
            reference.rsplit('.').next().unwrap_or(reference)
        ),
    }
}

/// "; did you mean `x`?" for the closest candidate, when one is close.
fn suggest<'c>(word: &str, candidates: impl Iterator<Item = &'c str>) -> String {
    let lower = word.to_ascii_lowercase();
    let best = candidates
        .map(|c| (strsim::levenshtein(&lower, &c.to_ascii_lowercase()), c))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, c)) if d <= (word.len() / 3).max(1) => format!("; did you mean `{c}`?"),
        _ => String::new(),
    }
}

fn from_error(err: crate::Error) -> Diagnostic {
    match err {
        crate::Error::Invalid { path, message } => Diagnostic { path, message },
        other => Diagnostic {
            path: String::new(),
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_find_near_misses_only() {
        assert_eq!(
            suggest(
                "originProtocolPolcy",
                ["originProtocolPolicy", "httpPort"].into_iter()
            ),
            "; did you mean `originProtocolPolicy`?"
        );
        assert_eq!(suggest("zzz", ["originProtocolPolicy"].into_iter()), "");
    }
}
