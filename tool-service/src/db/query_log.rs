//! `ENABLE_QUERY_LOGGING`: every statement at debug level, and those slower
//! than 100 ms at warn. Only the SQL text is logged, never the bound values
//! (they hold titles and chat messages).

use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent};

/// Statements slower than this are logged at warn level.
pub const SLOW_QUERY: Duration = Duration::from_millis(100);

/// A diesel instrumentation that logs statements and their duration.
#[derive(Debug, Default)]
pub struct QueryLogger {
    started: Option<Instant>,
}

impl Instrumentation for QueryLogger {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } => self.started = Some(Instant::now()),
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                let elapsed = self
                    .started
                    .take()
                    .map(|start| start.elapsed())
                    .unwrap_or_default();
                let text = query.to_string();
                let sql = text.split(" -- binds:").next().unwrap_or_default();
                let duration_ms = elapsed.as_secs_f64() * 1000.0;
                let failed = error.is_some();
                if elapsed >= SLOW_QUERY {
                    tracing::warn!(db.statement = sql, duration_ms, failed, "slow query");
                } else {
                    tracing::debug!(db.statement = sql, duration_ms, failed, "query");
                }
            }
            _ => {}
        }
    }
}
