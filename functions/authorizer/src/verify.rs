//! Is this token a valid sign-in? The JWT checks, with jsonwebtoken doing
//! the signature and time checks: an allow-list of asymmetric algorithms
//! (no `none`, no HMAC: a public key must never be used as an HMAC secret),
//! the key chosen by `kid` and required to fit the algorithm, `exp` and
//! `nbf` with [`LEEWAY_SECS`] of clock skew, `iss` exactly, and the audience
//! (`aud`, or `client_id` for Cognito access tokens, which have no `aud`).

use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The algorithms a token may be signed with: RSA (PKCS#1 v1.5 and PSS)
/// and ECDSA, what Cognito, Auth0, Okta, Google and Keycloak sign with.
pub const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 60;
/// The longest token looked at: 8 KiB. Refused before it is parsed.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The longest `sub`: OpenID Connect Core §2 allows 255 ASCII characters.
pub const MAX_SUB_BYTES: usize = 255;

/// Who a valid token signs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub sub: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// Why a token is refused. The messages go to the log (never to the client)
/// and never quote the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the token is {0} bytes; the limit is {MAX_TOKEN_BYTES} bytes")]
    TooLong(usize),
    #[error("the token is not a JWT: {0}")]
    Malformed(String),
    #[error("the token's alg {0} is not accepted (RS256/384/512, PS256/384/512, ES256/384 only)")]
    Algorithm(String),
    #[error("the token names no kid")]
    NoKid,
    #[error("the token's kid is not among the issuer's keys")]
    UnknownKid,
    #[error("the issuer's key for the token's kid does not fit its alg {0:?}")]
    KeyMismatch(Algorithm),
    #[error("the token is invalid: {0}")]
    Invalid(String),
    #[error("the token is for another audience")]
    Audience,
    #[error("the token's sub is empty or longer than {MAX_SUB_BYTES} bytes")]
    Subject,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    client_id: Option<serde_json::Value>,
    #[serde(default)]
    email: Option<serde_json::Value>,
    #[serde(default)]
    name: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Checks tokens of one issuer for a set of audiences.
#[derive(Debug, Clone)]
pub struct Verifier {
    issuer: String,
    audiences: Vec<String>,
}

impl Verifier {
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
        }
    }

    /// The identity `token` signs in, checked against `keys`. A
    /// [`Refusal::UnknownKid`] may succeed against a fresher key set.
    pub fn verify(&self, token: &str, keys: &JwkSet) -> Result<Identity, Refusal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Refusal::TooLong(token.len()));
        }
        // An `alg` jsonwebtoken has no variant for (`none` among them) fails here.
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| Refusal::Malformed(e.to_string()))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(Refusal::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.as_deref().ok_or(Refusal::NoKid)?;
        let jwk = keys.find(kid).ok_or(Refusal::UnknownKid)?;
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != PublicKeyUse::Signature)
            || jwk
                .common
                .key_algorithm
                .is_some_and(|a| !same_algorithm(a, header.alg))
        {
            return Err(Refusal::KeyMismatch(header.alg));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|_| Refusal::KeyMismatch(header.alg))?;
        if key.family() != header.alg.family() {
            return Err(Refusal::KeyMismatch(header.alg));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // The audience is checked below: Cognito access tokens carry
        // `client_id` instead of `aud`.
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| Refusal::Invalid(e.to_string()))?
            .claims;
        let audience_ok = match &claims.aud {
            Some(Audience::One(aud)) => self.audiences.contains(aud),
            Some(Audience::Many(auds)) => auds.iter().any(|a| self.audiences.contains(a)),
            None => claims
                .client_id
                .as_ref()
                .and_then(serde_json::Value::as_str)
                .is_some_and(|c| self.audiences.iter().any(|a| a == c)),
        };
        if !audience_ok {
            return Err(Refusal::Audience);
        }
        if claims.sub.is_empty() || claims.sub.len() > MAX_SUB_BYTES {
            return Err(Refusal::Subject);
        }
        let text = |v: Option<serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => Some(s),
            _ => None,
        };
        Ok(Identity {
            sub: claims.sub,
            email: text(claims.email),
            name: text(claims.name),
        })
    }
}

fn same_algorithm(key: KeyAlgorithm, alg: Algorithm) -> bool {
    Algorithm::try_from(key).is_ok_and(|a| a == alg)
}
