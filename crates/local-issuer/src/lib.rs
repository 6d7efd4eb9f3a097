//! A local OpenID Connect issuer: plays the identity provider (Cognito, Auth0,
//! Keycloak…) for the tests and the local stack, so sign-in works with no
//! account anywhere. Like `local-dynamodb`, it stands in for an outside service.
//!
//! It generates an RS256 and an ES256 key when it starts (no private key is
//! committed), publishes them as a JWKS and a discovery document, and mints
//! tokens for any user — in Rust with [`Issuer::mint`], or over HTTP with
//! `POST /token` ([`server`]).

mod keys;
pub mod server;

use std::sync::{PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, Header};
use serde::{Deserialize, Serialize};

pub use keys::SigningKey;
pub use server::{LocalIssuer, router, serve};

/// The longest lifetime a minted token may have: a day. Tokens travel in the
/// query string (and so in access logs); short lifetimes are the point.
pub const MAX_LIFETIME_SECS: i64 = 24 * 60 * 60;

/// A token's lifetime when the request names none: five minutes.
pub const DEFAULT_LIFETIME_SECS: i64 = 300;

/// Why the issuer could not start or mint.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("cannot generate the issuer's {0} key")]
    KeyGeneration(&'static str),
    #[error("cannot describe the issuer's key as a JWK: {0}")]
    Jwk(#[source] jsonwebtoken::errors::Error),
    #[error("cannot sign the token: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
    #[error("the token request is invalid: {0}")]
    BadRequest(String),
}

/// What to put in a minted token. Only `sub` is required; the rest have the
/// defaults an ordinary sign-in would give. Also the JSON body of `POST /token`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    /// The user's id (`sub`).
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `aud`; the issuer's audience when absent. Ignored when `client_id` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Mint a Cognito-style access token instead: no `aud`, this `client_id`
    /// and `token_use: access`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `RS256` (default) or `ES256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Seconds from now to `exp`: [`DEFAULT_LIFETIME_SECS`] when absent, at most
    /// [`MAX_LIFETIME_SECS`]; negative mints an already expired token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
    /// Seconds from now to `nbf` (0 when absent); positive mints a token not
    /// yet valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_in: Option<i64>,
}

impl MintRequest {
    /// A token for `sub` with every default.
    pub fn for_user(sub: impl Into<String>) -> Self {
        Self {
            sub: sub.into(),
            ..Self::default()
        }
    }
}

/// The claims of a minted token (ID-token shaped, or a Cognito-style access
/// token when `client_id` is set).
#[derive(Debug, Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_use: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    iat: i64,
    nbf: i64,
    exp: i64,
}

#[derive(Debug)]
struct Keys {
    rs256: SigningKey,
    es256: SigningKey,
}

impl Keys {
    fn generate() -> Result<Self, IssuerError> {
        Ok(Self {
            rs256: SigningKey::generate_rs256()?,
            es256: SigningKey::generate_es256()?,
        })
    }
}

/// The issuer: its URL (the `iss` of its tokens), its default audience and
/// its current keys.
#[derive(Debug)]
pub struct Issuer {
    url: String,
    audience: String,
    keys: RwLock<Keys>,
}

impl Issuer {
    /// An issuer at `url` (no trailing slash; the `iss` of its tokens) whose
    /// tokens name `audience` unless a request says otherwise.
    pub fn generate(
        url: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self, IssuerError> {
        let url = url.into().trim_end_matches('/').to_owned();
        Ok(Self {
            url,
            audience: audience.into(),
            keys: RwLock::new(Keys::generate()?),
        })
    }

    /// The issuer URL: `iss`, and the base of the discovery document.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/.well-known/jwks.json", self.url)
    }

    /// Replaces both keys with new ones (new `kid`s), as an issuer rotating
    /// its keys does: tokens signed before no longer verify against the JWKS.
    pub fn rotate(&self) -> Result<(), IssuerError> {
        let fresh = Keys::generate()?;
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// The current key for `alg` (RS256 or ES256).
    pub fn key(&self, alg: Algorithm) -> Option<SigningKey> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        match alg {
            Algorithm::RS256 => Some(keys.rs256.clone()),
            Algorithm::ES256 => Some(keys.es256.clone()),
            _ => None,
        }
    }

    /// The public keys, as `/.well-known/jwks.json` serves them.
    pub fn jwks(&self) -> JwkSet {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        JwkSet {
            keys: vec![keys.rs256.jwk().clone(), keys.es256.jwk().clone()],
        }
    }

    /// The OpenID discovery document (`/.well-known/openid-configuration`):
    /// the fields a relying party reads to find the keys.
    pub fn discovery(&self) -> serde_json::Value {
        serde_json::json!({
            "issuer": self.url,
            "jwks_uri": self.jwks_uri(),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        })
    }

    /// A signed token for `request`.
    pub fn mint(&self, request: &MintRequest) -> Result<String, IssuerError> {
        if request.sub.is_empty() {
            return Err(IssuerError::BadRequest("`sub` must not be empty".into()));
        }
        let alg = match request.alg.as_deref().unwrap_or("RS256") {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => {
                return Err(IssuerError::BadRequest(format!(
                    "`alg` {other:?} is not one the local issuer signs with (RS256, ES256)"
                )));
            }
        };
        let lifetime = request.expires_in.unwrap_or(DEFAULT_LIFETIME_SECS);
        if lifetime > MAX_LIFETIME_SECS {
            return Err(IssuerError::BadRequest(format!(
                "`expires_in` {lifetime} s is longer than the {MAX_LIFETIME_SECS} s a local token may live"
            )));
        }
        let not_before = request.not_before_in.unwrap_or(0);
        if not_before.abs() > MAX_LIFETIME_SECS {
            return Err(IssuerError::BadRequest(format!(
                "`not_before_in` {not_before} s is further than {MAX_LIFETIME_SECS} s from now"
            )));
        }
        let now = unix_now();
        let access = request.client_id.as_deref();
        let claims = Claims {
            iss: &self.url,
            sub: &request.sub,
            aud: match access {
                Some(_) => None,
                None => Some(request.aud.as_deref().unwrap_or(&self.audience)),
            },
            client_id: access,
            token_use: access.map(|_| "access"),
            email: request.email.as_deref(),
            name: request.name.as_deref(),
            iat: now,
            nbf: now + not_before,
            exp: now + lifetime,
        };
        let key = self
            .key(alg)
            .ok_or_else(|| IssuerError::BadRequest(format!("no {alg:?} key")))?;
        sign(&key, &claims)
    }
}

/// Signs `claims` with `key`, naming its `kid` in the header.
fn sign(key: &SigningKey, claims: &impl Serialize) -> Result<String, IssuerError> {
    let mut header = Header::new(key.alg());
    header.kid = Some(key.kid().to_owned());
    jsonwebtoken::encode(&header, claims, key.encoding_key()).map_err(IssuerError::Sign)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};

    fn issuer() -> Issuer {
        Issuer::generate("http://127.0.0.1:1/", "local-app").expect("issuer")
    }

    fn verify(issuer: &Issuer, token: &str) -> serde_json::Value {
        let header = decode_header(token).expect("header");
        let jwks = issuer.jwks();
        let jwk = jwks
            .find(header.kid.as_deref().expect("kid"))
            .expect("kid in the JWKS");
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[issuer.url()]);
        validation.validate_aud = false;
        decode::<serde_json::Value>(
            token,
            &DecodingKey::from_jwk(jwk).expect("key"),
            &validation,
        )
        .expect("a minted token verifies against the JWKS")
        .claims
    }

    #[test]
    fn minted_tokens_verify_against_the_jwks_with_either_algorithm() {
        let issuer = issuer();
        assert_eq!(issuer.url(), "http://127.0.0.1:1");
        let mut request = MintRequest::for_user("alice");
        request.email = Some("alice@example.com".into());
        let claims = verify(&issuer, &issuer.mint(&request).expect("RS256 token"));
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], "local-app");
        assert_eq!(claims["email"], "alice@example.com");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            300
        );

        request.alg = Some("ES256".into());
        let token = issuer.mint(&request).expect("ES256 token");
        assert_eq!(decode_header(&token).unwrap().alg, Algorithm::ES256);
        verify(&issuer, &token);
    }

    #[test]
    fn an_access_token_names_the_client_instead_of_an_audience() {
        let issuer = issuer();
        let mut request = MintRequest::for_user("bob");
        request.client_id = Some("app-client".into());
        let claims = verify(&issuer, &issuer.mint(&request).expect("token"));
        assert!(claims.get("aud").is_none(), "{claims}");
        assert_eq!(claims["client_id"], "app-client");
        assert_eq!(claims["token_use"], "access");
    }

    #[test]
    fn after_a_rotation_the_jwks_names_new_kids_only() {
        let issuer = issuer();
        let before = issuer.mint(&MintRequest::for_user("alice")).expect("token");
        let old_kid = decode_header(&before).unwrap().kid.unwrap();
        issuer.rotate().expect("rotate");
        assert!(issuer.jwks().find(&old_kid).is_none());
        verify(
            &issuer,
            &issuer.mint(&MintRequest::for_user("alice")).expect("token"),
        );
    }

    #[test]
    fn bad_requests_name_the_problem_and_the_bound() {
        let issuer = issuer();
        let err = issuer
            .mint(&MintRequest::for_user(""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`sub`"), "{err}");
        let mut request = MintRequest::for_user("alice");
        request.alg = Some("HS256".into());
        let err = issuer.mint(&request).unwrap_err().to_string();
        assert!(
            err.contains("HS256") && err.contains("RS256, ES256"),
            "{err}"
        );
        request.alg = None;
        request.expires_in = Some(MAX_LIFETIME_SECS + 1);
        let err = issuer.mint(&request).unwrap_err().to_string();
        assert!(err.contains("86400"), "{err}");
    }
}
