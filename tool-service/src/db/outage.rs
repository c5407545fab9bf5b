//! Knowing that the database is down, so that calls fail fast.
//!
//! bb8 never hands a failed connection attempt to the caller waiting in
//! `get()`: the caller waits the whole `DB_POOL_TIMEOUT` while the error
//! goes to the pool's error sink. [`Outage`] is that sink. A connection that
//! cannot be opened (refused, reset, DNS, TLS, login) begins an outage; a
//! connection that opens, or a ping that succeeds, ends it. While it lasts,
//! calls answer UNAVAILABLE at once, and calls already waiting stop waiting.

use std::sync::Arc;

use diesel_async::pooled_connection::PoolError;
use tokio::sync::watch;

/// The database's reachability as the pool has seen it: `Some(reason)` while
/// it is known to be unreachable. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Outage(Arc<watch::Sender<Option<Arc<str>>>>);

impl Default for Outage {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(None)))
    }
}

impl Outage {
    /// Marks the database unreachable for `reason`.
    pub(crate) fn begin(&self, reason: &str) {
        let begun = self.0.send_if_modified(|state| {
            let begins = state.is_none();
            if begins {
                *state = Some(reason.into());
            }
            begins
        });
        if begun {
            tracing::warn!(
                error = reason,
                "database unreachable: calls fail at once until it answers"
            );
        }
    }

    /// Marks the database reachable again.
    pub(crate) fn end(&self) {
        if self.0.send_if_modified(|state| state.take().is_some()) {
            tracing::info!("database reachable again: calls go through");
        }
    }

    /// Why the database is unreachable, if it is known to be.
    pub(crate) fn reason(&self) -> Option<Arc<str>> {
        self.0.borrow().clone()
    }

    /// Resolves with the reason when an outage begins (at once during one).
    pub(crate) async fn begun(&self) -> Arc<str> {
        let mut state = self.0.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let reason = state
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|r| r.clone());
        reason.unwrap_or_else(|| "database unreachable".into())
    }
}

impl bb8::ErrorSink<PoolError> for Outage {
    fn sink(&self, error: PoolError) {
        // Only a failure to open a connection says the database is out of
        // reach; a failed query on an open one is the caller's to report.
        if let PoolError::ConnectionError(error) = &error {
            self.begin(&taskagent_common::error_chain(error));
        }
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<PoolError>> {
        Box::new(self.clone())
    }
}
