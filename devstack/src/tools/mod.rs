//! What runs against a stack rather than being part of it: the deployment
//! checker (`devstack check`), the benchmarks (`devstack bench`) and the
//! Pulumi rehearsal (`devstack rehearse`); and the WebSocket [`client`]
//! they and the e2e tests share.

pub mod bench;
pub mod client;
pub mod deploy_check;
pub mod percentiles;
pub mod rehearse;
