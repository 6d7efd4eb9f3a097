//! SDK clients built at their first use, not at start.
//!
//! Building an AWS SDK client is a large part of a cold start: each service
//! crate parses its endpoint partitions (JSON, with regular expressions) and
//! the HTTP client builds a TLS connector for the client's settings.
//! Measured with callgrind on the release build: each of the function's
//! three clients cost about 0.8 million instructions at start, half of the
//! whole cold start. Most invocations use one or two of them (a ping none
//! but the reply, a broadcast hands nothing on until it is large), so each
//! is built when an invocation first needs it, and once per process.

use std::sync::{Arc, OnceLock};

/// A client built by `build` the first time [`Lazy::get`] is called.
/// Clones share the one client.
pub struct Lazy<C> {
    cell: Arc<OnceLock<C>>,
    build: Arc<dyn Fn() -> C + Send + Sync>,
}

impl<C> Lazy<C> {
    pub fn new(build: impl Fn() -> C + Send + Sync + 'static) -> Self {
        Lazy {
            cell: Arc::new(OnceLock::new()),
            build: Arc::new(build),
        }
    }

    /// The client, built now if this is its first use.
    pub fn get(&self) -> &C {
        self.cell.get_or_init(|| (self.build)())
    }

    /// Whether the client has been built yet.
    pub fn is_built(&self) -> bool {
        self.cell.get().is_some()
    }
}

/// An already built client (the tests pass one).
impl<C: Clone + Send + Sync + 'static> From<C> for Lazy<C> {
    fn from(client: C) -> Self {
        let cell = Arc::new(OnceLock::from(client.clone()));
        Lazy {
            cell,
            build: Arc::new(move || client.clone()),
        }
    }
}

impl<C> Clone for Lazy<C> {
    fn clone(&self) -> Self {
        Lazy {
            cell: self.cell.clone(),
            build: self.build.clone(),
        }
    }
}

impl<C> std::fmt::Debug for Lazy<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lazy")
            .field("built", &self.is_built())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn the_client_is_built_at_first_use_and_once_for_all_clones() {
        let builds = Arc::new(AtomicUsize::new(0));
        let counter = builds.clone();
        let lazy = Lazy::new(move || counter.fetch_add(1, Ordering::SeqCst));
        let clone = lazy.clone();
        assert!(!lazy.is_built());
        assert_eq!(builds.load(Ordering::SeqCst), 0, "nothing built at start");
        assert_eq!(*clone.get(), 0);
        assert_eq!(*lazy.get(), 0);
        assert!(lazy.is_built());
        assert_eq!(
            builds.load(Ordering::SeqCst),
            1,
            "built once, shared by clones"
        );
    }

    /// A client's `Debug` (in the function's error and log lines) says
    /// whether it was built, and printing it never builds it.
    #[test]
    fn debug_tells_whether_it_was_built_without_building_it() {
        let lazy = Lazy::new(|| 7);
        assert_eq!(format!("{lazy:?}"), "Lazy { built: false }");
        assert!(!lazy.is_built());
        lazy.get();
        assert_eq!(format!("{lazy:?}"), "Lazy { built: true }");
    }

    #[test]
    fn a_built_client_is_used_as_given() {
        let lazy = Lazy::from(String::from("given"));
        assert!(lazy.is_built());
        assert_eq!(lazy.get(), "given");
    }
}
