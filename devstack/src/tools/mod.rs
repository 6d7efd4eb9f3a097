//! What runs against a stack rather than being part of it: the deployment
//! checker (`devstack check`) and the benchmarks (`devstack bench`).

pub mod bench;
pub mod deploy_check;
pub mod percentiles;
