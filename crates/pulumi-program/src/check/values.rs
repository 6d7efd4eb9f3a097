//! Values against pulumi-aws's types: every property at every depth has the
//! shape its type wants (what an expression produces is a [`Shape`]).

use super::*;

/// What an expression is known to produce.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Shape {
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
    pub(super) fn describe(self) -> &'static str {
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

impl Checker<'_> {
    /// Checks a mapping against an object type's properties.
    pub(super) fn object(
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
    pub(super) fn value(&mut self, value: &Value, ty: &TypeSpec, path: &str) {
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

    pub(super) fn compare(&mut self, shape: Shape, ty: &TypeSpec, path: &str) {
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
    pub(super) fn any(&mut self, value: &Value, path: &str) -> Shape {
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

    pub(super) fn string(&mut self, s: &str, path: &str) -> Shape {
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
}

pub(super) fn shape_of(ty: &TypeSpec) -> Shape {
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

pub(super) fn describe(ty: &TypeSpec) -> String {
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
