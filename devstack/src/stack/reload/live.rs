//! The running stack as watch mode changes it: the [`Target`] of the
//! reloader, turning a new topology or binary into the plain configs of the
//! Lambda pool, the API layer and the edge, exactly as the start does.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use pulumi_program::Topology;

use super::Target;
use crate::apigateway::Gateway;
use crate::cloudfront::Edge;
use crate::lambda::LambdaPool;
use crate::lambda::invoke_api::LambdaApi;
use crate::stack::{
    Endpoints, LOCAL_API_ID, edge_config, function_config, function_env, gateway_config,
};

/// What a swap needs of the running stack.
pub struct LiveStack {
    pub pool: Arc<LambdaPool>,
    pub gateway: Gateway,
    pub edge: Edge,
    pub lambda_api: LambdaApi,
    pub endpoints: Endpoints,
    pub api_addr: SocketAddr,
    pub dynamodb_endpoint: String,
    pub max_concurrency: usize,
}

impl Target for LiveStack {
    async fn swap_function(&self, topology: &Topology, binary: &Path) -> anyhow::Result<()> {
        let env = function_env(
            topology,
            &self.endpoints,
            self.api_addr,
            &self.dynamodb_endpoint,
        )?;
        let config = function_config(
            &topology.function,
            binary.to_path_buf(),
            env,
            self.max_concurrency,
        );
        self.pool.swap(config).await
    }

    fn swap_api(&self, topology: &Topology) {
        self.gateway.swap_routing(&gateway_config(
            topology,
            LOCAL_API_ID,
            &self.api_addr.to_string(),
            &self.endpoints.api_key,
        ));
    }

    fn swap_edge(&self, topology: &Topology) {
        self.edge
            .swap_rate_rule(&edge_config(topology, &self.endpoints).waf);
    }

    fn swap_async_invoke(&self, topology: &Topology) {
        let spec = topology.function.async_invoke;
        self.lambda_api.swap_retries(
            spec.maximum_retry_attempts,
            std::time::Duration::from_secs(u64::from(spec.maximum_event_age_secs)),
        );
    }
}
