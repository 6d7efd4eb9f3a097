//! What the authorizer is configured with, read once at start from the
//! environment the program sets: `ISSUER`, `AUDIENCE`, `TOKEN_PARAMETER`,
//! optional `JWKS_URL`. A missing or unusable value stops the function at
//! start with a message naming the variable (never at the first handshake).

use http::Uri;

pub const ISSUER: &str = "ISSUER";
pub const AUDIENCE: &str = "AUDIENCE";
pub const TOKEN_PARAMETER: &str = "TOKEN_PARAMETER";
pub const JWKS_URL: &str = "JWKS_URL";
/// The query-string parameter carrying the token when `TOKEN_PARAMETER` is unset.
pub const DEFAULT_TOKEN_PARAMETER: &str = "token";

/// The authorizer's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Compared exactly with the token's `iss`.
    pub issuer: String,
    /// The accepted audiences (`aud`, or `client_id` for access tokens without `aud`).
    pub audiences: Vec<String>,
    /// The query-string parameter holding the token.
    pub token_parameter: String,
    /// Where the keys are; `None`: OpenID discovery from the issuer.
    pub jwks_url: Option<String>,
}

/// Why the settings are unusable; each names its variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{0} names no audience (a comma-separated list of accepted audiences)")]
    NoAudience(&'static str),
    #[error("{variable} is not a usable URL: {reason}")]
    Url {
        variable: &'static str,
        reason: String,
    },
}

impl Settings {
    /// Reads the settings through `lookup` (`std::env::var` in `main`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let set = |name: &'static str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let issuer = set(ISSUER).ok_or(SettingsError::Missing(ISSUER))?;
        check_url(&issuer).map_err(|reason| SettingsError::Url {
            variable: ISSUER,
            reason,
        })?;
        let audiences: Vec<String> = set(AUDIENCE)
            .ok_or(SettingsError::Missing(AUDIENCE))?
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        if audiences.is_empty() {
            return Err(SettingsError::NoAudience(AUDIENCE));
        }
        let jwks_url = set(JWKS_URL);
        if let Some(url) = &jwks_url {
            check_url(url).map_err(|reason| SettingsError::Url {
                variable: JWKS_URL,
                reason,
            })?;
        }
        Ok(Self {
            issuer,
            audiences,
            token_parameter: set(TOKEN_PARAMETER)
                .unwrap_or_else(|| DEFAULT_TOKEN_PARAMETER.to_owned()),
            jwks_url,
        })
    }

    /// The discovery document's URL (OpenID Connect Discovery 1.0 §4).
    pub fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        )
    }
}

/// Keys are fetched over HTTPS only, except plain HTTP to a loopback host
/// (127.0.0.0/8, [::1], localhost): the local issuer. Returns why not.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: Uri = url.parse().map_err(|e| format!("{e}"))?;
    let host = uri.host().ok_or("it names no host")?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback_host(host) => Ok(()),
        Some("http") => Err(format!(
            "plain http is allowed to a loopback host only (127.0.0.0/8, [::1], localhost), not {host}; use https"
        )),
        _ => Err("it must start with https://".into()),
    }
}

fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn reads_the_programs_variables_with_defaults() {
        let s = read(&[
            (
                ISSUER,
                "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc",
            ),
            (AUDIENCE, " app1, app2 ,"),
        ])
        .expect("settings");
        assert_eq!(s.audiences, ["app1", "app2"]);
        assert_eq!(s.token_parameter, "token");
        assert_eq!(s.jwks_url, None);
        assert_eq!(
            s.discovery_url(),
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc/.well-known/openid-configuration"
        );
        let s = read(&[
            (ISSUER, "http://127.0.0.1:9000"),
            (AUDIENCE, "a"),
            (TOKEN_PARAMETER, "t"),
            (JWKS_URL, "http://[::1]:9/jwks"),
        ])
        .expect("loopback http");
        assert_eq!(s.token_parameter, "t");
    }

    #[test]
    fn each_unusable_value_is_named() {
        assert_eq!(
            read(&[(AUDIENCE, "a")]),
            Err(SettingsError::Missing(ISSUER))
        );
        assert_eq!(
            read(&[(ISSUER, "https://x")]),
            Err(SettingsError::Missing(AUDIENCE))
        );
        assert_eq!(
            read(&[(ISSUER, "https://x"), (AUDIENCE, " , ")]),
            Err(SettingsError::NoAudience(AUDIENCE))
        );
        let err = read(&[(ISSUER, "http://issuer.example.com"), (AUDIENCE, "a")])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("ISSUER") && err.contains("loopback"),
            "{err}"
        );
        let err = read(&[
            (ISSUER, "https://x"),
            (AUDIENCE, "a"),
            (JWKS_URL, "ftp://x/keys"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("JWKS_URL") && err.contains("https://"),
            "{err}"
        );
        assert!(check_url("http://localhost:1/x").is_ok());
        assert!(check_url("http://127.1.2.3/x").is_ok());
        assert!(check_url("http://10.0.0.1/x").is_err());
    }
}
