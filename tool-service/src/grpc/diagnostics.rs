//! `taskagent.v1.DiagnosticsService`: the pool and the database's state, for
//! the gateway's `/health` and `/metrics`. Holds no user data.

use std::time::Duration;

use taskagent_proto::diagnostics_service_server::{DiagnosticsService, DiagnosticsServiceServer};
use taskagent_proto::{DatabaseStats, GetDatabaseStatsRequest};
use tonic::{Request, Response, Status};

use crate::db::Store;

/// A ping slower than this reports the database unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// Handlers of DiagnosticsService.
#[derive(Clone)]
pub struct DiagnosticsApi {
    store: Store,
}

impl DiagnosticsApi {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub fn into_server(self) -> DiagnosticsServiceServer<Self> {
        DiagnosticsServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl DiagnosticsService for DiagnosticsApi {
    async fn get_database_stats(
        &self,
        _request: Request<GetDatabaseStatsRequest>,
    ) -> Result<Response<DatabaseStats>, Status> {
        let reachable = matches!(
            tokio::time::timeout(PING_TIMEOUT, self.store.ping()).await,
            Ok(Ok(()))
        );
        let pool = self.store.pool_state();
        Ok(Response::new(DatabaseStats {
            backend: pool.backend.to_owned(),
            reachable,
            connections: pool.connections,
            active_connections: pool.active,
            max_connections: pool.max,
        }))
    }
}
