//! The function's configuration, read from its environment once at start.
//!
//! The Pulumi program and the local stack set the same variables, so the
//! deployed and the local function take the same path.

/// Name of the variable holding the DynamoDB connections table.
pub const CONNECTIONS_TABLE: &str = "CONNECTIONS_TABLE";
/// Name of the variable holding the DynamoDB table of the continuations'
/// claims ([`crate::claims`]).
pub const CLAIMS_TABLE: &str = "CLAIMS_TABLE";
/// Name of the variable holding the management endpoint
/// (`https://{apiId}.execute-api.{region}.amazonaws.com/{stage}`).
pub const MANAGEMENT_ENDPOINT: &str = "MANAGEMENT_ENDPOINT";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub connections_table: String,
    pub claims_table: String,
    /// `None` when unset or empty: the endpoint then comes from an SDK
    /// override or from each event's domain and stage.
    pub management_endpoint: Option<String>,
}

/// A required variable is unset or empty.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{name} is not set: it must name the DynamoDB table {what} (the Pulumi program and the local stack set it)"
)]
pub struct MissingTable {
    pub name: &'static str,
    pub what: &'static str,
}

/// `main` returns this error, and Rust prints an error returned from `main`
/// with `Debug`: make that the readable message.
impl std::fmt::Debug for MissingTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, MissingTable> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, MissingTable> {
        let present = |name| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let table = |name, what| present(name).ok_or(MissingTable { name, what });
        Ok(Settings {
            connections_table: table(CONNECTIONS_TABLE, "of open connections")?,
            claims_table: table(CLAIMS_TABLE, "of the broadcasts' continuation claims")?,
            management_endpoint: present(MANAGEMENT_ENDPOINT),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn both_tables_are_required() {
        let missing = |vars| Settings::from_lookup(lookup(vars)).map_err(|e| e.name);
        assert_eq!(missing(&[]), Err(CONNECTIONS_TABLE));
        assert_eq!(
            missing(&[(CONNECTIONS_TABLE, " "), (CLAIMS_TABLE, "c")]),
            Err(CONNECTIONS_TABLE)
        );
        assert_eq!(missing(&[(CONNECTIONS_TABLE, "t")]), Err(CLAIMS_TABLE));
        let error = Settings::from_lookup(lookup(&[(CONNECTIONS_TABLE, "t")])).unwrap_err();
        assert!(
            error.to_string().starts_with("CLAIMS_TABLE is not set"),
            "{error}"
        );
    }

    #[test]
    fn the_management_endpoint_is_optional() {
        let settings = Settings::from_lookup(lookup(&[
            (CONNECTIONS_TABLE, "t"),
            (CLAIMS_TABLE, "c"),
            (MANAGEMENT_ENDPOINT, ""),
        ]))
        .unwrap();
        assert_eq!(
            settings,
            Settings {
                connections_table: "t".into(),
                claims_table: "c".into(),
                management_endpoint: None
            }
        );
        let settings = Settings::from_lookup(lookup(&[
            (CONNECTIONS_TABLE, "t"),
            (CLAIMS_TABLE, "c"),
            (MANAGEMENT_ENDPOINT, "https://x/prod"),
        ]))
        .unwrap();
        assert_eq!(
            settings.management_endpoint.as_deref(),
            Some("https://x/prod")
        );
    }
}
