//! What runs against a stack rather than being part of it: the deployment
//! checker (`devstack check`), the benchmarks (`devstack bench`) and the
//! Pulumi rehearsal (`devstack rehearse`); and what they and the e2e tests
//! share: the WebSocket [`client`] and the [`launch`] of `devstack up`.

pub mod bench;
pub mod client;
pub mod deploy_check;
pub mod launch;
pub mod percentiles;
pub mod rehearse;
pub mod token;
