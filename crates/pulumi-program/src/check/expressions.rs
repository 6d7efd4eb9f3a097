//! Expressions: every `${...}` reaches a resource output, variable or config
//! key that exists, and every `fn::` builtin and data source is one Pulumi knows.

use super::values::shape_of;
use super::*;

pub(super) const BUILTINS: &[&str] = &[
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

pub(super) const INVOKE_KEYS: &[&str] = &["function", "arguments", "return", "options"];

pub(super) const INVOKE_OPTIONS: &[&str] = &[
    "dependsOn",
    "parent",
    "pluginDownloadURL",
    "provider",
    "version",
];

impl Checker<'_> {
    /// A reference must name something, and a resource reference an output it has.
    pub(super) fn access(&mut self, access: &Access, path: &str) {
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

    pub(super) fn access_shape(&self, access: &Access, depth: usize) -> Shape {
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
    pub(super) fn infer(&self, value: &Value, depth: usize) -> Shape {
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

    pub(super) fn builtin(&mut self, name: &str, args: &Value, path: &str) -> Shape {
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

    pub(super) fn invoke(&mut self, args: &Value, path: &str, pin: bool) -> Shape {
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
}
