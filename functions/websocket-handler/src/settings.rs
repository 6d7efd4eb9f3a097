//! The function's configuration, read from its environment once at start.
//!
//! The Pulumi program and the local stack set the same variables, so the
//! deployed and the local function take the same path.

/// Name of the variable holding the DynamoDB connections table.
pub const CONNECTIONS_TABLE: &str = "CONNECTIONS_TABLE";
/// Name of the variable holding the management endpoint
/// (`https://{apiId}.execute-api.{region}.amazonaws.com/{stage}`).
pub const MANAGEMENT_ENDPOINT: &str = "MANAGEMENT_ENDPOINT";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub connections_table: String,
    /// `None` when unset or empty: the endpoint then comes from an SDK
    /// override or from each event's domain and stage.
    pub management_endpoint: Option<String>,
}

#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{CONNECTIONS_TABLE} is not set: it must name the DynamoDB table of open connections (the Pulumi program and the local stack set it)"
)]
pub struct MissingTable;

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
        Ok(Settings {
            connections_table: present(CONNECTIONS_TABLE).ok_or(MissingTable)?,
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
    fn the_table_is_required() {
        assert_eq!(Settings::from_lookup(lookup(&[])), Err(MissingTable));
        assert_eq!(
            Settings::from_lookup(lookup(&[(CONNECTIONS_TABLE, " ")])),
            Err(MissingTable)
        );
        assert!(MissingTable.to_string().contains("CONNECTIONS_TABLE"));
    }

    #[test]
    fn the_management_endpoint_is_optional() {
        let settings = Settings::from_lookup(lookup(&[
            (CONNECTIONS_TABLE, "t"),
            (MANAGEMENT_ENDPOINT, ""),
        ]))
        .unwrap();
        assert_eq!(
            settings,
            Settings {
                connections_table: "t".into(),
                management_endpoint: None
            }
        );
        let settings = Settings::from_lookup(lookup(&[
            (CONNECTIONS_TABLE, "t"),
            (MANAGEMENT_ENDPOINT, "https://x/prod"),
        ]))
        .unwrap();
        assert_eq!(
            settings.management_endpoint.as_deref(),
            Some("https://x/prod")
        );
    }
}
