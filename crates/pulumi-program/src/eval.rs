//! Evaluates the program's expressions as far as they can be known offline.
//!
//! Configuration, `${pulumi.project}`/`${pulumi.stack}`, variables, the
//! region data source (`aws:getRegion` is the stack's `aws:region`) and
//! resource inputs written as known values all resolve; a resource output
//! (`${api.id}`) stays a reference ([`Part::Ref`]) for the caller to fill.

use std::cell::RefCell;

use serde_yaml_ng::{Mapping, Value};

use crate::Part;
use crate::interpolation::{self, Access, Accessor, Segment};
use crate::program::{Config, Program, full_token};

pub(crate) const GET_REGION: &str = "aws:index/getRegion:getRegion";

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Evaluated {
    Known(Value),
    /// A string with resource outputs in it.
    Template(Vec<Part>),
    /// Not computable offline; says why.
    Unknown(String),
}

pub(crate) struct Evaluator<'a> {
    program: &'a Program,
    config: &'a Config,
    /// Variables being evaluated, to refuse cycles instead of recursing forever.
    active: RefCell<Vec<String>>,
}

impl<'a> Evaluator<'a> {
    pub fn new(program: &'a Program, config: &'a Config) -> Self {
        Evaluator {
            program,
            config,
            active: RefCell::new(Vec::new()),
        }
    }

    pub fn region(&self) -> Option<&str> {
        self.config
            .provider
            .get("aws:region")
            .and_then(Value::as_str)
    }

    pub fn eval(&self, value: &Value) -> Evaluated {
        match value {
            Value::String(s) => self.eval_string(s),
            Value::Mapping(m) => {
                if let Some((name, args)) = builtin(m) {
                    return self.eval_builtin(name, args);
                }
                let mut out = Mapping::new();
                for (k, v) in m {
                    match self.eval(v) {
                        Evaluated::Known(v) => {
                            out.insert(k.clone(), v);
                        }
                        Evaluated::Template(_) => {
                            return Evaluated::Unknown(format!(
                                "{} holds resource outputs",
                                k.as_str().unwrap_or("a key")
                            ));
                        }
                        unknown @ Evaluated::Unknown(_) => return unknown,
                    }
                }
                Evaluated::Known(Value::Mapping(out))
            }
            Value::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match self.eval(item) {
                        Evaluated::Known(v) => out.push(v),
                        Evaluated::Template(_) => {
                            return Evaluated::Unknown("a list item holds resource outputs".into());
                        }
                        unknown @ Evaluated::Unknown(_) => return unknown,
                    }
                }
                Evaluated::Known(Value::Sequence(out))
            }
            other => Evaluated::Known(other.clone()),
        }
    }

    fn eval_string(&self, s: &str) -> Evaluated {
        let segments = match interpolation::parse(s) {
            Ok(segments) => segments,
            Err(message) => return Evaluated::Unknown(message),
        };
        if let Some(access) = interpolation::sole_access(&segments) {
            return self.eval_access(access);
        }
        let mut parts: Vec<Part> = Vec::new();
        for segment in segments {
            match segment {
                Segment::Text(text) => push_text(&mut parts, &text),
                Segment::Access(access) => match self.eval_access(&access) {
                    Evaluated::Known(value) => match scalar_text(&value) {
                        Some(text) => push_text(&mut parts, &text),
                        None => {
                            return Evaluated::Unknown(format!("{access} is not a scalar"));
                        }
                    },
                    Evaluated::Template(inner) => {
                        for part in inner {
                            match part {
                                Part::Text(text) => push_text(&mut parts, &text),
                                reference => parts.push(reference),
                            }
                        }
                    }
                    unknown @ Evaluated::Unknown(_) => return unknown,
                },
            }
        }
        into_evaluated(parts)
    }

    pub fn eval_access(&self, access: &Access) -> Evaluated {
        let root = access.root.as_str();
        if root == "pulumi" {
            return match access.first_property() {
                Some("project") if access.path.len() == 1 => known_str(&self.program.project),
                Some("stack") if access.path.len() == 1 => known_str(&self.program.stack),
                _ => Evaluated::Unknown(format!("{access} is not known offline")),
            };
        }
        if let Some(value) = self.config.lookup(root) {
            return walk(value.clone(), &access.path, access);
        }
        if let Some(expr) = self.program.variable(root) {
            if self.active.borrow().iter().any(|v| v == root) {
                return Evaluated::Unknown(format!("variable `{root}` refers to itself"));
            }
            self.active.borrow_mut().push(root.to_string());
            let value = self.eval(expr);
            self.active.borrow_mut().pop();
            return match value {
                Evaluated::Known(value) => walk(value, &access.path, access),
                Evaluated::Template(parts) if access.path.is_empty() => Evaluated::Template(parts),
                Evaluated::Template(_) => Evaluated::Unknown(format!("{access} indexes a string")),
                unknown => unknown,
            };
        }
        if let Some(resource) = self.program.resource(root) {
            let Some(property) = access.first_property() else {
                return Evaluated::Unknown(format!("{access} is a whole resource"));
            };
            // An input written as a known value is known before deployment
            // (the table's explicit name), and the output echoes it.
            let key = format!("{root}.{property}");
            if access.path.len() == 1
                && !self.active.borrow().contains(&key)
                && let Some(input) = resource.properties.and_then(|p| p.get(property))
            {
                self.active.borrow_mut().push(key);
                let value = self.eval(input);
                self.active.borrow_mut().pop();
                if let Evaluated::Known(value) = value {
                    return Evaluated::Known(value);
                }
            }
            return Evaluated::Template(vec![Part::Ref {
                resource: root.to_string(),
                resource_type: resource.token.clone(),
                property: access.path_text(),
            }]);
        }
        Evaluated::Unknown(format!("{access} names nothing in the program"))
    }

    fn eval_builtin(&self, name: &str, args: &Value) -> Evaluated {
        match name {
            "fn::secret" => self.eval(args),
            "fn::invoke" => self.eval_invoke(args),
            "fn::toJSON" => match self.eval(args) {
                Evaluated::Known(value) => match serde_json::to_string(&value) {
                    Ok(json) => Evaluated::Known(Value::String(json)),
                    Err(err) => Evaluated::Unknown(format!("fn::toJSON: {err}")),
                },
                Evaluated::Template(_) => {
                    Evaluated::Unknown("fn::toJSON of resource outputs".into())
                }
                unknown => unknown,
            },
            "fn::join" => {
                let Some([delimiter, values]) = two(args) else {
                    return Evaluated::Unknown("fn::join takes [delimiter, list]".into());
                };
                let (Evaluated::Known(Value::String(delimiter)), Value::Sequence(values)) =
                    (self.eval(delimiter), values)
                else {
                    return Evaluated::Unknown("fn::join of values not known offline".into());
                };
                let mut parts = Vec::new();
                for (i, value) in values.iter().enumerate() {
                    if i > 0 {
                        push_text(&mut parts, &delimiter);
                    }
                    match self.eval(value) {
                        Evaluated::Known(v) => match scalar_text(&v) {
                            Some(text) => push_text(&mut parts, &text),
                            None => return Evaluated::Unknown("fn::join of a non-scalar".into()),
                        },
                        Evaluated::Template(inner) => parts.extend(inner),
                        unknown => return unknown,
                    }
                }
                into_evaluated(parts)
            }
            "fn::select" => {
                let Some([index, values]) = two(args) else {
                    return Evaluated::Unknown("fn::select takes [index, list]".into());
                };
                // From a written list only the element selected need be
                // known offline (the other may be a resource output).
                if let (Evaluated::Known(Value::Number(n)), Value::Sequence(items)) =
                    (self.eval(index), values)
                {
                    return match n
                        .as_u64()
                        .and_then(|i| usize::try_from(i).ok())
                        .and_then(|i| items.get(i))
                    {
                        Some(item) => self.eval(item),
                        None => Evaluated::Unknown(format!(
                            "{OUT_OF_RANGE}: index {n} of a list of {}",
                            items.len()
                        )),
                    };
                }
                match (self.eval(index), self.eval(values)) {
                    (Evaluated::Unknown(why), _) | (_, Evaluated::Unknown(why)) => {
                        Evaluated::Unknown(why)
                    }
                    (
                        Evaluated::Known(Value::Number(n)),
                        Evaluated::Known(Value::Sequence(items)),
                    ) => n
                        .as_u64()
                        .and_then(|i| usize::try_from(i).ok())
                        .and_then(|i| items.get(i).cloned())
                        .map(Evaluated::Known)
                        .unwrap_or_else(|| {
                            Evaluated::Unknown(format!(
                                "{OUT_OF_RANGE}: index {n} of a list of {}",
                                items.len()
                            ))
                        }),
                    _ => Evaluated::Unknown("fn::select of values not known offline".into()),
                }
            }
            "fn::split" => {
                let Some([delimiter, source]) = two(args) else {
                    return Evaluated::Unknown("fn::split takes [delimiter, string]".into());
                };
                match (self.eval(delimiter), self.eval(source)) {
                    (Evaluated::Unknown(why), _) | (_, Evaluated::Unknown(why)) => {
                        Evaluated::Unknown(why)
                    }
                    (Evaluated::Known(Value::String(d)), Evaluated::Known(Value::String(s))) => {
                        Evaluated::Known(Value::Sequence(
                            go_split(&s, &d).into_iter().map(Value::String).collect(),
                        ))
                    }
                    _ => Evaluated::Unknown("fn::split of values not known offline".into()),
                }
            }
            other => Evaluated::Unknown(format!("{other} is not evaluated offline")),
        }
    }

    /// Only the region data source has an offline answer: the stack's region.
    fn eval_invoke(&self, args: &Value) -> Evaluated {
        let Some(args) = args.as_mapping() else {
            return Evaluated::Unknown("fn::invoke takes a mapping".into());
        };
        let Some(function) = args.get("function").and_then(Value::as_str) else {
            return Evaluated::Unknown("fn::invoke without a function".into());
        };
        if full_token(function) == GET_PARTITION {
            return self.eval_partition(args);
        }
        if full_token(function) != GET_REGION {
            return Evaluated::Unknown(format!("{function} is a data source read at deployment"));
        }
        let region = match args.get("arguments").and_then(|a| a.get("region")) {
            Some(region) => match self.eval(region) {
                Evaluated::Known(Value::String(region)) => region,
                _ => {
                    return Evaluated::Unknown(
                        "aws:getRegion's region argument is not known".into(),
                    );
                }
            },
            None => match self.region() {
                Some(region) => region.to_string(),
                None => return Evaluated::Unknown("the stack sets no aws:region".into()),
            },
        };
        let mut result = Mapping::new();
        for key in ["region", "name", "id"] {
            result.insert(Value::String(key.into()), Value::String(region.clone()));
        }
        match args.get("return").and_then(Value::as_str) {
            Some(field) => match result.get(field) {
                Some(value) => Evaluated::Known(value.clone()),
                None => Evaluated::Unknown(format!(
                    "aws:getRegion's `{field}` is known only at deployment"
                )),
            },
            None => Evaluated::Known(Value::Mapping(result)),
        }
    }

    /// `aws:getPartition` for the stack's region, as the AWS SDKs' partition
    /// table resolves it: the partition and its DNS suffix.
    fn eval_partition(&self, args: &Mapping) -> Evaluated {
        let Some(region) = self.region() else {
            return Evaluated::Unknown("the stack sets no aws:region".into());
        };
        let (partition, dns_suffix) = partition_of(region);
        let mut result = Mapping::new();
        for (key, value) in [
            ("id", partition),
            ("partition", partition),
            ("dnsSuffix", dns_suffix),
        ] {
            result.insert(Value::String(key.into()), Value::String(value.into()));
        }
        match args.get("return").and_then(Value::as_str) {
            Some(field) => match result.get(field) {
                Some(value) => Evaluated::Known(value.clone()),
                None => Evaluated::Unknown(format!(
                    "aws:getPartition's `{field}` is known only at deployment"
                )),
            },
            None => Evaluated::Known(Value::Mapping(result)),
        }
    }
}

/// `Some((name, args))` when a mapping is a builtin call: one `fn::` key.
pub(crate) fn builtin(m: &Mapping) -> Option<(&str, &Value)> {
    if m.len() != 1 {
        return None;
    }
    let (key, value) = m.iter().next()?;
    let key = key.as_str()?;
    key.get(..4)
        .filter(|prefix| prefix.eq_ignore_ascii_case("fn::"))
        .map(|_| (key, value))
}

fn two(args: &Value) -> Option<[&Value; 2]> {
    match args.as_sequence()?.as_slice() {
        [a, b] => Some([a, b]),
        _ => None,
    }
}

fn walk(mut value: Value, path: &[Accessor], access: &Access) -> Evaluated {
    for accessor in path {
        let next = match (accessor, &value) {
            (Accessor::Property(name) | Accessor::Key(name), Value::Mapping(m)) => {
                m.get(name.as_str()).cloned()
            }
            (Accessor::Index(i), Value::Sequence(items)) => items.get(*i).cloned(),
            _ => None,
        };
        match next {
            Some(next) => value = next,
            None => return Evaluated::Unknown(format!("{access} does not exist")),
        }
    }
    Evaluated::Known(value)
}

fn known_str(s: &str) -> Evaluated {
    Evaluated::Known(Value::String(s.to_string()))
}

pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn push_text(parts: &mut Vec<Part>, text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some(Part::Text(last)) = parts.last_mut() {
        last.push_str(text);
    } else {
        parts.push(Part::Text(text.to_string()));
    }
}

fn into_evaluated(parts: Vec<Part>) -> Evaluated {
    if parts.iter().all(|p| matches!(p, Part::Text(_))) {
        let text: String = parts
            .into_iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(t),
                Part::Ref { .. } => None,
            })
            .collect();
        Evaluated::Known(Value::String(text))
    } else {
        Evaluated::Template(parts)
    }
}

/// `aws:getPartition`'s token.
const GET_PARTITION: &str = "aws:index/getPartition:getPartition";

/// The partition of a region and its DNS suffix (the AWS SDKs' partitions:
/// `cn-` China, `us-gov-` GovCloud, `us-iso-`/`us-isob-` the isolated
/// regions, `eusc-` the European Sovereign Cloud; the rest `aws`).
pub(crate) fn partition_of(region: &str) -> (&'static str, &'static str) {
    if region.starts_with("cn-") {
        ("aws-cn", "amazonaws.com.cn")
    } else if region.starts_with("us-gov-") {
        ("aws-us-gov", "amazonaws.com")
    } else if region.starts_with("us-isob-") {
        ("aws-iso-b", "sc2s.sgov.gov")
    } else if region.starts_with("us-iso-") {
        ("aws-iso", "c2s.ic.gov")
    } else if region.starts_with("eusc-") {
        ("aws-eusc", "amazonaws.eu")
    } else {
        ("aws", "amazonaws.com")
    }
}

/// How an [`Evaluated::Unknown`] starts when `fn::select` went past its list:
/// the YAML host stops the preview there ("list index 1 out-of-bounds for
/// list of length 1").
pub(crate) const OUT_OF_RANGE: &str = "fn::select index out of range";

/// `strings.Split` as Go (and so `fn::split` in the YAML host) does it: an
/// empty delimiter splits into characters, and an empty string into nothing.
fn go_split(s: &str, delimiter: &str) -> Vec<String> {
    if delimiter.is_empty() {
        return s.chars().map(String::from).collect();
    }
    s.split(delimiter).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::{go_split, partition_of};

    #[test]
    fn partitions_follow_the_region() {
        assert_eq!(partition_of("eu-west-1"), ("aws", "amazonaws.com"));
        assert_eq!(partition_of("cn-north-1"), ("aws-cn", "amazonaws.com.cn"));
        assert_eq!(
            partition_of("us-gov-west-1"),
            ("aws-us-gov", "amazonaws.com")
        );
        assert_eq!(
            partition_of("us-isob-east-1"),
            ("aws-iso-b", "sc2s.sgov.gov")
        );
    }

    #[test]
    fn split_is_go_strings_split() {
        assert_eq!(go_split("", ""), Vec::<String>::new());
        assert_eq!(go_split("ab", ""), vec!["a", "b"]);
        assert_eq!(go_split("", "|"), vec![""]);
        assert_eq!(go_split("|off:NONE|", "|off:"), vec!["", "NONE|"]);
        assert_eq!(go_split("|off:NONE|", "|on:"), vec!["|off:NONE|"]);
    }
}
