//! The open-file limit, raised for thousands of connections.
//!
//! Every WebSocket through the local stack holds one descriptor in it, the
//! client's socket at the edge (the edge reaches the API layer through a
//! pipe in the process, `crate::listener::local`; a connection straight to
//! the API layer holds its own socket), so 10,000 connections need 10,000
//! and more — above the usual soft limit of 1,024 (and some hard limits).
//! The stack and the benchmark's load generator raise their own limit at
//! start and say when they cannot reach what they asked for.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors the stack asks for: 300,000 connections' worth, and room.
pub const WANTED: u64 = 320_000;

/// Descriptors kept for everything but the clients' sockets: the API
/// layer's budget of request sockets (the function processes' posts to
/// @connections while a broadcast runs: up to 200 in flight each), and 256
/// for the stack's own files, listeners, its processes' pipes and their
/// Runtime API and DynamoDB connections.
const RESERVE: u64 = crate::apigateway::REQUEST_CONNECTIONS as u64 + 256;

/// What the limit was and became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    pub before: Option<u64>,
    pub now: Option<u64>,
    pub wanted: u64,
}

impl OpenFiles {
    /// Connections through the edge the limit allows (one descriptor each,
    /// less [`RESERVE`]); `None` when unlimited.
    pub fn edge_connections(&self) -> Option<u64> {
        self.now.map(|n| n.saturating_sub(RESERVE))
    }

    /// A one-line account for the log: the limit, and what it allows.
    pub fn describe(&self) -> String {
        let show = |l: Option<u64>| l.map_or("unlimited".to_string(), |l| l.to_string());
        let short = if self.now.is_some_and(|n| n < self.wanted) {
            format!(
                " (wanted {}: the hard limit or the privileges do not allow more; \
                 raise it with `ulimit -n` as root or in limits.conf)",
                self.wanted
            )
        } else {
            String::new()
        };
        format!(
            "open-file limit {} (was {}){short}; about {} connections through the edge",
            show(self.now),
            show(self.before),
            self.edge_connections()
                .map_or("unlimited".to_string(), |c| c.to_string())
        )
    }
}

/// Raises the soft limit to `wanted`, and the hard limit with it when the
/// process may (root or CAP_SYS_RESOURCE); otherwise as far as the hard
/// limit goes. Never lowers either.
pub fn raise(wanted: u64) -> OpenFiles {
    let before = getrlimit(Resource::Nofile);
    let target = |limit: Option<u64>| limit.map(|l| l.max(wanted));
    let both = Rlimit {
        current: target(before.current),
        maximum: target(before.maximum),
    };
    if setrlimit(Resource::Nofile, both).is_err() {
        // Not allowed to raise the hard limit: the soft one up to it.
        let soft = Rlimit {
            current: match (before.current, before.maximum) {
                (Some(current), Some(max)) => Some(current.max(wanted.min(max))),
                (current, None) => target(current),
                (None, _) => None,
            },
            maximum: before.maximum,
        };
        let _ = setrlimit(Resource::Nofile, soft);
    }
    OpenFiles {
        before: before.current,
        now: getrlimit(Resource::Nofile).current,
        wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_never_lowers_and_reaches_the_hard_limit_at_least() {
        let hard = getrlimit(Resource::Nofile).maximum;
        let before = getrlimit(Resource::Nofile).current;
        let raised = raise(64);
        assert_eq!(raised.before, before);
        assert!(raised.now >= before.map(|b| b.max(64)) || raised.now.is_none());
        let raised = raise(WANTED);
        match (raised.now, hard) {
            (Some(now), Some(hard)) => assert!(now >= hard.min(WANTED), "{now} < {hard}"),
            (now, hard) => assert!(now.is_none() || hard.is_none()),
        }
    }

    #[test]
    fn the_account_names_the_limit_and_what_it_allows() {
        let short = OpenFiles {
            before: Some(1024),
            now: Some(20_000),
            wanted: WANTED,
        };
        assert_eq!(short.edge_connections(), Some(15_648));
        let text = short.describe();
        assert!(
            text.contains("20000") && text.contains("wanted 320000"),
            "{text}"
        );
        let enough = OpenFiles {
            now: Some(WANTED),
            ..short
        };
        assert!(!enough.describe().contains("wanted"));
    }
}
