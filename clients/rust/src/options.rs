//! What a client is configured with; the defaults are docs/clients.md's.

use std::time::Duration;

use crate::ClientError;

/// A client's configuration. `Options::new(url)` has the defaults; set fields to change them.
#[derive(Debug, Clone)]
pub struct Options {
    pub url: url::Url,
    /// The sign-in token, put in the query string as `token_parameter`.
    pub token: Option<String>,
    pub token_parameter: String,
    /// Extra handshake headers (a backend may send what a browser cannot).
    pub headers: Vec<(String, String)>,
    /// A `ping` goes out when nothing was sent for this long (API Gateway: 10 min idle).
    pub keepalive: Duration,
    pub base: Duration,
    pub cap: Duration,
    /// Attempts in a row that never opened before giving up; `None`: never.
    pub max_attempts: Option<u32>,
    /// A connection open this long resets the backoff.
    pub stable: Duration,
    pub connect_timeout: Duration,
    pub queue_limit: usize,
    pub dedupe_window: usize,
}

impl Options {
    pub fn new(url: &str) -> Result<Options, ClientError> {
        let parsed =
            url::Url::parse(url).map_err(|e| ClientError::BadUrl(format!("{url}: {e}")))?;
        if !matches!(parsed.scheme(), "ws" | "wss") {
            return Err(ClientError::BadUrl(url.to_string()));
        }
        Ok(Options {
            url: parsed,
            token: None,
            token_parameter: "token".into(),
            headers: Vec::new(),
            keepalive: Duration::from_secs(5 * 60),
            base: Duration::from_secs(3),
            cap: Duration::from_secs(30),
            max_attempts: Some(12),
            stable: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            queue_limit: 100,
            dedupe_window: 1_000,
        })
    }

    /// The URL of one attempt: the token in the query string when there is one.
    pub(crate) fn attempt_url(&self) -> url::Url {
        let mut url = self.url.clone();
        if let Some(token) = self.token.as_deref().filter(|t| !t.is_empty()) {
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| k != &self.token_parameter)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            url.query_pairs_mut()
                .clear()
                .extend_pairs(kept)
                .append_pair(&self.token_parameter, token);
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_in_the_query_string_once() {
        let mut options = Options::new("ws://h/?a=1&token=old").expect("url");
        options.token = Some("x y".into());
        assert_eq!(options.attempt_url().as_str(), "ws://h/?a=1&token=x+y");
        assert!(matches!(
            Options::new("http://h/"),
            Err(ClientError::BadUrl(_))
        ));
        assert!(matches!(
            Options::new("not a url"),
            Err(ClientError::BadUrl(_))
        ));
    }
}
