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

/// What the pool has seen of the database.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// `Some(why)` while the database is known to be unreachable.
    outage: Option<Arc<str>>,
    /// Connection attempts that failed so far.
    failures: u64,
}

/// The database's reachability as the pool has seen it. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Outage(Arc<watch::Sender<Seen>>);

impl Default for Outage {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(Seen::default())))
    }
}

/// Who waits for a connection: a call gives up at once during an outage; the
/// health watcher's ping (which must find the end of one) gives up at the
/// next failed connection attempt instead of waiting out its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiter {
    Call,
    Ping,
}

impl Outage {
    /// Marks the database unreachable for `reason`.
    pub(crate) fn begin(&self, reason: &str) {
        let mut begun = false;
        self.0.send_modify(|seen| {
            seen.failures += 1;
            if seen.outage.is_none() {
                seen.outage = Some(reason.into());
                begun = true;
            }
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
        if self.0.send_if_modified(|seen| seen.outage.take().is_some()) {
            tracing::info!("database reachable again: calls go through");
        }
    }

    /// Why the database is unreachable, if it is known to be.
    pub(crate) fn reason(&self) -> Option<Arc<str>> {
        self.0.borrow().outage.clone()
    }

    /// The reason `waiter` should stop waiting for a connection, as soon as
    /// there is one.
    pub(crate) fn give_up(&self, waiter: Waiter) -> impl Future<Output = Arc<str>> + use<> {
        let mut seen = self.0.subscribe();
        let failures = seen.borrow().failures;
        async move {
            // The sender lives as long as the pool, so waiting cannot fail.
            let reason = match waiter {
                Waiter::Call => seen
                    .wait_for(|s| s.outage.is_some())
                    .await
                    .ok()
                    .and_then(|s| s.outage.clone()),
                Waiter::Ping => seen
                    .wait_for(|s| s.failures > failures)
                    .await
                    .ok()
                    .and_then(|s| s.outage.clone()),
            };
            reason.unwrap_or_else(|| "database unreachable".into())
        }
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
