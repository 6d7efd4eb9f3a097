//! The offline check: what `pulumi preview` would refuse, without the CLI.
//!
//! The program is checked against pulumi-aws's own types (see `schema.rs`):
//! resource types, property names at every depth, required properties, the
//! shape of every value, every `${...}` reference (to a resource output that
//! exists, a variable or a config key), every `fn::` builtin and data source,
//! and every stated value the provider's validators refuse (`provider`, from
//! the provider facts the rehearsal's double plays too).
//! Then the invariants that make the scheme secure are checked: `$connect`
//! needs the key, CloudFront sends the key, the distribution is behind this
//! program's CLOUDFRONT web ACL in us-east-1, https on both sides, the invoke
//! permission is scoped to this API, and `DistributionURL` is the wss:// URL;
//! the role grants exactly what the function calls; replacements cannot
//! collide on a name; the alarms and the dashboard watch this stack.
//!
//! One `Checker` walks the program; its parts live beside it: `sections`
//! (top level, config, names, resources and options), `values` (shapes against
//! the types), `expressions` (`${...}` and `fn::`), `cycles`, then the scheme's
//! `invariants` and `requirements`, `sign_in` on `$connect`, the roles'
//! `grants`, the `alarms` and the `dashboard`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use crate::eval::builtin;
use crate::interpolation::{self, Access, Segment};
use crate::program::{self, Config, Program, full_token};
use crate::schema::{self, Property, Schema, TypeSpec};
use crate::topology;

mod access_logs;
mod alarms;
mod budgets;
mod certificate;
mod custom_domain;
mod cycles;
mod dashboard;
mod expressions;
mod failures;
mod grants;
mod invariants;
mod names;
mod partition;
mod provider;
mod requirements;
mod sections;
mod sign_in;
mod sources;
mod values;

use values::Shape;

pub use access_logs::ACCESS_LOG_FIELDS;
pub use certificate::check_certificate_sources;
pub use sign_in::MODES as SIGN_IN_MODES;

pub use grants::{
    AUTHORIZER_ROLE_ACTIONS, FUNCTION_DYNAMODB_ACTIONS, FUNCTION_SELF_ACTIONS, LOG_ACTIONS,
    MANAGEMENT_ACTIONS, ROLE_ACTIONS,
};

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

fn check_program(program: &Program) -> Vec<Diagnostic> {
    let mut checker = match Checker::new(program) {
        Ok(checker) => checker,
        Err(diag) => return vec![diag],
    };
    checker.top_level();
    checker.config_declarations();
    checker.names();
    checker.names_aws_accepts();
    checker.host_names_from_the_partition();
    checker.variables();
    checker.resources();
    checker.provider_values();
    checker.outputs();
    checker.cycles();
    checker.unused_config();
    checker.invariants();
    checker.sign_in();
    checker.broadcast_budgets();
    checker.requirements();
    checker.role_grants();
    checker.waf_log_policy();
    checker.replacements();
    checker.alarms();
    checker.failures_page();
    checker.one_source_per_name();
    checker.stage_access_logs();
    checker.custom_domain();
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

impl<'a> Checker<'a> {
    /// A checker of `program`, holding the config's problems already.
    fn new(program: &'a Program) -> Result<Self, Diagnostic> {
        let schema = schema::schema().map_err(|message| Diagnostic {
            path: "schema".into(),
            message,
        })?;
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
        Ok(checker)
    }

    fn report(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            path: path.into(),
            message: message.into(),
        });
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
