//! Pulumi YAML's `${...}` string interpolation.
//!
//! A string value of the program is text with property accesses in it:
//! `https://${api.id}.execute-api.${region}.amazonaws.com`. `$$` is a literal
//! `$`, and a `$` not followed by `{` is literal too (`$request.body.action`).
//! Both the loader and the offline check read strings through this one parser.

use std::fmt;

/// One piece of an interpolated string.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Text(String),
    Access(Access),
}

/// `${root.prop[0]["key"]}`: a root name (resource, variable, config key or
/// `pulumi`) and the accessors after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    pub root: String,
    pub path: Vec<Accessor>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Accessor {
    Property(String),
    Index(usize),
    Key(String),
}

impl Access {
    /// The accessors as written after the root: `origins[0].domainName`.
    pub fn path_text(&self) -> String {
        let mut out = String::new();
        for (i, accessor) in self.path.iter().enumerate() {
            match accessor {
                Accessor::Property(name) if i == 0 => out.push_str(name),
                Accessor::Property(name) => {
                    out.push('.');
                    out.push_str(name);
                }
                Accessor::Index(index) => out.push_str(&format!("[{index}]")),
                Accessor::Key(key) => out.push_str(&format!("[{key:?}]")),
            }
        }
        out
    }

    /// The first property after the root, if it is a property.
    pub fn first_property(&self) -> Option<&str> {
        match self.path.first() {
            Some(Accessor::Property(name)) => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "${{{}}}", self.root)
        } else if matches!(self.path.first(), Some(Accessor::Property(_))) {
            write!(f, "${{{}.{}}}", self.root, self.path_text())
        } else {
            write!(f, "${{{}{}}}", self.root, self.path_text())
        }
    }
}

/// Splits a string into text and accesses. Errors name what is malformed.
pub fn parse(input: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut text = String::new();
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        text.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            text.push('$');
            rest = stripped;
        } else if let Some(inner_start) = after.strip_prefix('{') {
            let end = inner_start
                .find('}')
                .ok_or_else(|| format!("unterminated `${{` in {input:?}"))?;
            let access = parse_access(&inner_start[..end])?;
            if !text.is_empty() {
                segments.push(Segment::Text(std::mem::take(&mut text)));
            }
            segments.push(Segment::Access(access));
            rest = &inner_start[end + 1..];
        } else {
            text.push('$');
            rest = after;
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        segments.push(Segment::Text(text));
    }
    Ok(segments)
}

/// `Some(access)` when the whole string is exactly one `${...}`.
pub fn sole_access(segments: &[Segment]) -> Option<&Access> {
    match segments {
        [Segment::Access(access)] => Some(access),
        _ => None,
    }
}

fn parse_access(inner: &str) -> Result<Access, String> {
    let inner = inner.trim();
    let root_end = inner.find(['.', '[']).unwrap_or(inner.len());
    let root = &inner[..root_end];
    if root.is_empty() {
        return Err(format!("`${{{inner}}}` has no name"));
    }
    let mut path = Vec::new();
    let mut rest = &inner[root_end..];
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let name = &after[..end];
            if name.is_empty() {
                return Err(format!("`${{{inner}}}` has an empty property name"));
            }
            path.push(Accessor::Property(name.to_string()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after
                .find(']')
                .ok_or_else(|| format!("`${{{inner}}}` has an unclosed `[`"))?;
            let body = after[..end].trim();
            if let Some(key) = body.strip_prefix('"').and_then(|b| b.strip_suffix('"')) {
                path.push(Accessor::Key(key.to_string()));
            } else {
                let index = body.parse::<usize>().map_err(|_| {
                    format!("`${{{inner}}}`: `[{body}]` is not an index or a quoted key")
                })?;
                path.push(Accessor::Index(index));
            }
            rest = &after[end + 1..];
        } else {
            return Err(format!("`${{{inner}}}` is not a property access"));
        }
    }
    Ok(Access {
        root: root.to_string(),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(root: &str, path: Vec<Accessor>) -> Segment {
        Segment::Access(Access {
            root: root.into(),
            path,
        })
    }

    #[test]
    fn text_and_accesses() {
        let parts = parse("https://${api.id}.execute-api.${region}.amazonaws.com/${stageName}")
            .expect("valid");
        assert_eq!(
            parts,
            vec![
                Segment::Text("https://".into()),
                access("api", vec![Accessor::Property("id".into())]),
                Segment::Text(".execute-api.".into()),
                access("region", vec![]),
                Segment::Text(".amazonaws.com/".into()),
                access("stageName", vec![]),
            ]
        );
    }

    #[test]
    fn dollar_without_brace_and_escapes_are_text() {
        assert_eq!(
            parse("$request.body.action").expect("valid"),
            vec![Segment::Text("$request.body.action".into())]
        );
        assert_eq!(
            parse("a$${b}").expect("valid"),
            vec![Segment::Text("a${b}".into())]
        );
    }

    #[test]
    fn indexes_and_keys() {
        let parts = parse("${distribution.origins[0][\"x\"].domainName}").expect("valid");
        let Some(access) = sole_access(&parts) else {
            panic!("one access expected: {parts:?}")
        };
        assert_eq!(access.root, "distribution");
        assert_eq!(access.path_text(), "origins[0][\"x\"].domainName");
        assert_eq!(
            access.to_string(),
            "${distribution.origins[0][\"x\"].domainName}"
        );
    }

    #[test]
    fn malformed_accesses_are_errors() {
        assert!(parse("${api.id").is_err());
        assert!(parse("${}").is_err());
        assert!(parse("${api..id}").is_err());
        assert!(parse("${api[x]}").is_err());
    }
}
