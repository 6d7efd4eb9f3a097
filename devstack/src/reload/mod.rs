//! Watch mode's tools that know nothing of the Pulumi program: the file
//! watcher ([`watch`]: debounced saves, sorted into function and program
//! changes) and the function's versions ([`build`]: the cargo build that
//! captures the compiler's output, and the private, hash-named copy of each
//! binary the pool runs). [`crate::stack::reload`] puts them to work.

pub mod build;
pub mod watch;
