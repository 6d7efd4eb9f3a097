//! The issuer's public keys, cached.
//!
//! Fetched at the first handshake (OpenID discovery, then the JWKS, unless
//! `JWKS_URL` names it), kept for [`MAX_AGE`], and fetched again early when
//! a token names a `kid` the cached set lacks (the issuer rotated its keys)
//! — but at most once per [`REFETCH_INTERVAL`], so a stream of tokens with
//! made-up `kid`s cannot make the function hammer the issuer. Every fetch
//! (discovery and JWKS together) ends within [`FETCH_TIMEOUT`]. Until a
//! first fetch succeeds, each handshake tries again (and, the issuer down,
//! fails within that bound).
//!
//! The HTTP GET is behind [`Fetcher`], so the cache is plain Rust; the
//! deployed fetcher is [`crate::https::HttpsFetcher`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::settings::{Settings, check_url};

/// The least time between two fetches triggered by an unknown `kid`.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// How long a fetched key set is used before it is fetched again, so a key
/// the issuer withdrew stops being accepted.
pub const MAX_AGE: Duration = Duration::from_secs(60 * 60);
/// The longest a fetch of the keys (discovery and JWKS) may take. API
/// Gateway gives an authorizer 10 s at most; past this the invocation fails
/// (API Gateway answers 500) rather than holding the handshake.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// One HTTP GET of a JSON document.
#[async_trait]
pub trait Fetcher: Send + Sync {
    /// The body of a 200 answer to `GET url`; anything else is an error
    /// saying what happened (never the body).
    async fn get(&self, url: &str) -> Result<Vec<u8>, String>;
}

/// Why the keys could not be had: the invocation fails with this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    #[error("cannot fetch {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("the issuer's keys did not arrive within {0:?}")]
    Timeout(Duration),
    #[error("{url} is not {what}: {reason}")]
    Document {
        url: String,
        what: &'static str,
        reason: String,
    },
}

/// Where the key set is.
#[derive(Debug, Clone)]
enum Location {
    Jwks(String),
    Discovery { issuer: String, url: String },
}

#[derive(Debug, Default)]
struct State {
    /// The JWKS URL, once known (discovery is done once).
    jwks_uri: Option<String>,
    keys: Option<Arc<JwkSet>>,
    fetched_at: Option<Instant>,
}

/// The cached key set of one issuer.
pub struct KeyCache<F> {
    fetcher: F,
    location: Location,
    refetch_interval: Duration,
    fetch_timeout: Duration,
    state: Mutex<State>,
}

impl<F: Fetcher> KeyCache<F> {
    /// Keys from `JWKS_URL`, else by discovery from the issuer.
    pub fn new(fetcher: F, settings: &Settings) -> Self {
        let location = match &settings.jwks_url {
            Some(url) => Location::Jwks(url.clone()),
            None => Location::Discovery {
                issuer: settings.issuer.clone(),
                url: settings.discovery_url(),
            },
        };
        Self {
            fetcher,
            location,
            refetch_interval: REFETCH_INTERVAL,
            fetch_timeout: FETCH_TIMEOUT,
            state: Mutex::new(State::default()),
        }
    }

    /// Another bound on unknown-`kid` refetches (tests).
    pub fn with_refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// Another fetch timeout (tests).
    pub fn with_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// The key set: cached, or fetched when there is none or it is older than [`MAX_AGE`].
    pub async fn keys(&self) -> Result<Arc<JwkSet>, KeysError> {
        let mut state = self.state.lock().await;
        match (&state.keys, state.fetched_at) {
            (Some(keys), Some(at)) if at.elapsed() < MAX_AGE => Ok(Arc::clone(keys)),
            _ => self.refresh(&mut state).await,
        }
    }

    /// A fresh key set after a token named a `kid` that `seen` lacks; `None`
    /// when the last fetch was less than the refetch interval ago (the
    /// token is then refused). When another handshake refetched meanwhile,
    /// its newer set is returned without fetching again.
    pub async fn refetch_for_unknown_kid(
        &self,
        seen: &Arc<JwkSet>,
    ) -> Result<Option<Arc<JwkSet>>, KeysError> {
        let mut state = self.state.lock().await;
        if let Some(keys) = &state.keys
            && !Arc::ptr_eq(keys, seen)
        {
            return Ok(Some(Arc::clone(keys)));
        }
        if state
            .fetched_at
            .is_some_and(|at| at.elapsed() < self.refetch_interval)
        {
            tracing::info!(interval = ?self.refetch_interval, "unknown kid, but the keys were fetched less than the refetch interval ago; not fetching again");
            return Ok(None);
        }
        self.refresh(&mut state).await.map(Some)
    }

    async fn refresh(&self, state: &mut State) -> Result<Arc<JwkSet>, KeysError> {
        let fetched = tokio::time::timeout(self.fetch_timeout, self.fetch(state.jwks_uri.clone()))
            .await
            .map_err(|_| KeysError::Timeout(self.fetch_timeout))?;
        // A failed fetch still counts against the refetch bound.
        state.fetched_at = Some(Instant::now());
        let (jwks_uri, keys) = fetched?;
        let keys = Arc::new(keys);
        tracing::info!(url = %jwks_uri, keys = keys.keys.len(), "fetched the issuer's keys");
        state.jwks_uri = Some(jwks_uri);
        state.keys = Some(Arc::clone(&keys));
        Ok(keys)
    }

    async fn fetch(&self, known: Option<String>) -> Result<(String, JwkSet), KeysError> {
        let jwks_uri = match (known, &self.location) {
            (Some(url), _) => url,
            (None, Location::Jwks(url)) => url.clone(),
            (None, Location::Discovery { issuer, url }) => self.discover(issuer, url).await?,
        };
        let body = self.get(&jwks_uri).await?;
        let keys = parse_jwks(&body).map_err(|reason| KeysError::Document {
            url: jwks_uri.clone(),
            what: "a JWKS",
            reason,
        })?;
        Ok((jwks_uri, keys))
    }

    /// The `jwks_uri` of the discovery document, whose `issuer` must be
    /// the configured one (OpenID Connect Discovery 1.0 §4.3).
    async fn discover(&self, issuer: &str, url: &str) -> Result<String, KeysError> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let bad = |reason: String| KeysError::Document {
            url: url.to_owned(),
            what: "an OpenID discovery document",
            reason,
        };
        let doc: Discovery =
            serde_json::from_slice(&self.get(url).await?).map_err(|e| bad(e.to_string()))?;
        if doc.issuer != issuer {
            return Err(bad(format!(
                "it names the issuer {:?}, not ISSUER {issuer:?}",
                doc.issuer
            )));
        }
        check_url(&doc.jwks_uri)
            .map_err(|reason| bad(format!("its jwks_uri is unusable: {reason}")))?;
        Ok(doc.jwks_uri)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, KeysError> {
        self.fetcher
            .get(url)
            .await
            .map_err(|reason| KeysError::Fetch {
                url: url.to_owned(),
                reason,
            })
    }
}

/// The keys of a JWKS this crate can use; keys of other types (`OKP`,
/// encryption keys, unknown algorithms) are skipped, not fatal.
fn parse_jwks(body: &[u8]) -> Result<JwkSet, String> {
    #[derive(Deserialize)]
    struct Raw {
        keys: Vec<serde_json::Value>,
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let keys = raw
        .keys
        .into_iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
        .filter(|k| match &k.algorithm {
            AlgorithmParameters::RSA(_) => true,
            AlgorithmParameters::EllipticCurve(ec) => {
                matches!(ec.curve, EllipticCurve::P256 | EllipticCurve::P384)
            }
            _ => false,
        })
        .collect();
    Ok(JwkSet { keys })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    /// Answers from a fixed map of URL to body, counting the requests.
    #[derive(Default)]
    struct Documents {
        answers: StdMutex<Vec<(String, Vec<u8>)>>,
        asked: StdMutex<Vec<String>>,
    }

    #[async_trait]
    impl Fetcher for Documents {
        async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
            self.asked.lock().unwrap().push(url.to_owned());
            let answers = self.answers.lock().unwrap();
            answers
                .iter()
                .find(|(u, _)| u == url)
                .map(|(_, a)| Ok(a.clone()))
                .unwrap_or(Err("404".into()))
        }
    }

    fn settings(jwks_url: Option<&str>) -> Settings {
        Settings {
            issuer: "https://issuer.example".into(),
            audiences: vec!["app".into()],
            token_parameter: "token".into(),
            jwks_url: jwks_url.map(str::to_owned),
        }
    }

    const JWKS: &str = r#"{"keys":[{"kty":"RSA","kid":"k1","alg":"RS256","n":"sXch","e":"AQAB"},{"kty":"OKP","crv":"X448","x":"AA"},{"kty":"weird"}]}"#;

    #[tokio::test]
    async fn discovery_then_jwks_once_and_unusable_keys_skipped() {
        let docs = Documents::default();
        *docs.answers.lock().unwrap() = vec![
            (
                "https://issuer.example/.well-known/openid-configuration".into(),
                br#"{"issuer":"https://issuer.example","jwks_uri":"https://keys.example/jwks"}"#
                    .to_vec(),
            ),
            ("https://keys.example/jwks".into(), JWKS.as_bytes().to_vec()),
        ];
        let cache = KeyCache::new(docs, &settings(None)).with_refetch_interval(Duration::ZERO);
        let keys = cache.keys().await.expect("keys");
        assert_eq!(keys.keys.len(), 1, "the RSA key only");
        assert!(keys.find("k1").is_some());
        cache.keys().await.expect("cached");
        assert_eq!(
            cache.fetcher.asked.lock().unwrap().len(),
            2,
            "cached after the first fetch"
        );
        // A refetch reuses the discovered jwks_uri.
        cache
            .refetch_for_unknown_kid(&keys)
            .await
            .expect("refetch")
            .expect("allowed");
        assert_eq!(
            *cache.fetcher.asked.lock().unwrap(),
            [
                "https://issuer.example/.well-known/openid-configuration",
                "https://keys.example/jwks",
                "https://keys.example/jwks"
            ]
        );
    }

    #[tokio::test]
    async fn a_discovery_document_of_another_issuer_or_with_a_plain_http_jwks_is_refused() {
        for (doc, expected) in [
            (
                r#"{"issuer":"https://evil.example","jwks_uri":"https://keys.example/jwks"}"#,
                "not ISSUER",
            ),
            (
                r#"{"issuer":"https://issuer.example","jwks_uri":"http://keys.example/jwks"}"#,
                "loopback",
            ),
            (r#"{"issuer":"https://issuer.example"}"#, "jwks_uri"),
        ] {
            let docs = Documents::default();
            *docs.answers.lock().unwrap() = vec![(
                "https://issuer.example/.well-known/openid-configuration".into(),
                doc.as_bytes().to_vec(),
            )];
            let err = KeyCache::new(docs, &settings(None))
                .keys()
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected) && err.contains("discovery"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_failed_fetch_names_the_url_and_counts_against_the_refetch_bound() {
        let cache = KeyCache::new(
            Documents::default(),
            &settings(Some("https://keys.example/jwks")),
        );
        let err = cache.keys().await.unwrap_err();
        assert_eq!(
            err,
            KeysError::Fetch {
                url: "https://keys.example/jwks".into(),
                reason: "404".into()
            }
        );
        let empty = Arc::new(JwkSet::default());
        assert_eq!(cache.refetch_for_unknown_kid(&empty).await, Ok(None));
        assert_eq!(cache.fetcher.asked.lock().unwrap().len(), 1);
    }
}
