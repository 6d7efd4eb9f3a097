//! The program's sections: the top-level keys, config declarations and their
//! use, names, variables, outputs, and each resource with its options.

use super::cycles::references;
use super::*;

pub(super) const RESOURCE_KEYS: &[&str] =
    &["type", "properties", "options", "get", "defaultProvider"];

pub(super) const RESOURCE_OPTIONS: &[&str] = &[
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

impl Checker<'_> {
    pub(super) fn top_level(&mut self) {
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
    pub(super) fn config_declarations(&mut self) {
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
    pub(super) fn names(&mut self) {
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

    pub(super) fn variables(&mut self) {
        let program = self.program;
        for (name, value) in program.variables() {
            self.any(value, &format!("variables.{name}"));
        }
    }

    pub(super) fn outputs(&mut self) {
        let program = self.program;
        if let Some(outputs) = program.section("outputs") {
            for (name, value) in outputs {
                let name = name.as_str().unwrap_or("?");
                self.any(value, &format!("outputs.{name}"));
            }
        }
    }

    pub(super) fn resources(&mut self) {
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

    pub(super) fn unknown_token(&self, token: &str, written: &str, function: bool) -> String {
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
    pub(super) fn pinned(&mut self, options: Option<&Value>, path: &str) {
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

    pub(super) fn resource_options(&mut self, options: &Value, path: &str) {
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
    pub(super) fn resource_ref(&mut self, value: &Value, path: &str) {
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

    /// A declared tunable nothing reads is a knob that does nothing.
    pub(super) fn unused_config(&mut self) {
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
}
