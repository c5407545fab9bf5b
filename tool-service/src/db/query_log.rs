//! What each statement leaves behind: with `ENABLE_QUERY_LOGGING`, a log
//! line at debug level (at warn when slower than 100 ms); when traces are
//! exported, a `db.query` span. Only the SQL text is logged or exported,
//! never the bound values (they hold titles and chat messages).
//!
//! A transaction is one `db.transaction` span from its BEGIN to the end of
//! its COMMIT (or ROLLBACK), with its statements as children.
//!
//! Statement spans are made on PostgreSQL only: diesel reports a SQLite
//! statement from the blocking thread that runs it, where the call's span is
//! not current, so on SQLite a `db.session` span for each use of a
//! connection stands for its statements.

use std::time::{Duration, Instant};

use std::fmt::Write as _;

use diesel::connection::{Instrumentation, InstrumentationEvent};
use taskagent_common::telemetry;

/// Statements slower than this are logged at warn level.
pub const SLOW_QUERY: Duration = Duration::from_millis(100);

/// A diesel instrumentation that logs statements and traces them.
#[derive(Debug)]
pub struct QueryObserver {
    log: bool,
    trace: bool,
    started: Option<Instant>,
    /// The statement running: its SQL (for the log line) and span.
    sql: String,
    span: Option<tracing::Span>,
    /// The open top-level transaction's span, and the span that was
    /// current when it began.
    transaction: Option<(tracing::Span, Option<tracing::Id>)>,
    /// The next statement is the transaction's BEGIN, COMMIT or ROLLBACK:
    /// the transaction's span stands for it.
    boundary: Boundary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Boundary {
    None,
    Begin,
    End,
}

impl QueryObserver {
    /// An observer for a new connection, or `None` when it would do nothing.
    pub fn new(log: bool, statement_spans: bool) -> Option<Self> {
        let trace = statement_spans && telemetry::exporting();
        (log || trace).then_some(Self {
            log,
            trace,
            started: None,
            sql: String::new(),
            span: None,
            transaction: None,
            boundary: Boundary::None,
        })
    }
}

impl Instrumentation for QueryObserver {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::BeginTransaction { depth, .. }
                if self.trace
                    && depth.get() == 1
                    && telemetry::sampled(&tracing::Span::current()) =>
            {
                let span = tracing::info_span!(
                    "db.transaction",
                    otel.kind = "client",
                    db.system = "postgresql",
                    otel.status_code = tracing::field::Empty,
                );
                self.transaction = Some((span, tracing::Span::current().id()));
                self.boundary = Boundary::Begin;
            }
            InstrumentationEvent::CommitTransaction { depth, .. }
            | InstrumentationEvent::RollbackTransaction { depth, .. }
                if self.transaction.is_some() && depth.get() == 1 =>
            {
                self.boundary = Boundary::End;
            }
            InstrumentationEvent::StartQuery { query, .. } => {
                self.started = Some(Instant::now());
                // A statement of the transaction's own code is its child;
                // one made under a span opened since (a tool call) stays
                // that span's. Its SQL is formatted (diesel walks the query
                // twice for it) only for a trace that is kept, or a log.
                let parent = (self.trace && self.boundary == Boundary::None)
                    .then(|| {
                        let current = tracing::Span::current();
                        match &self.transaction {
                            Some((transaction, begun_under)) if current.id() == *begun_under => {
                                transaction.clone()
                            }
                            _ => current,
                        }
                    })
                    .filter(telemetry::sampled);
                if self.log || parent.is_some() {
                    self.sql = sql_of(query);
                }
                if let Some(parent) = parent {
                    self.span = Some(tracing::info_span!(
                        parent: &parent,
                        "db.query",
                        otel.kind = "client",
                        db.system = "postgresql",
                        db.statement = self.sql.as_str(),
                        otel.status_code = tracing::field::Empty,
                    ));
                }
            }
            InstrumentationEvent::FinishQuery { error, .. } => {
                let elapsed = self
                    .started
                    .take()
                    .map(|start| start.elapsed())
                    .unwrap_or_default();
                let sql = std::mem::take(&mut self.sql);
                let failed = error.is_some();
                if let Some(span) = self.span.take()
                    && failed
                {
                    span.record("otel.status_code", "ERROR");
                }
                match std::mem::replace(&mut self.boundary, Boundary::None) {
                    Boundary::Begin if failed => self.transaction = None,
                    Boundary::End => {
                        if let Some((transaction, _)) = self.transaction.take()
                            && failed
                        {
                            transaction.record("otel.status_code", "ERROR");
                        }
                    }
                    _ => {}
                }
                if !self.log {
                    return;
                }
                let duration_ms = elapsed.as_secs_f64() * 1000.0;
                if elapsed >= SLOW_QUERY {
                    tracing::warn!(db.statement = %sql, duration_ms, failed, "slow query");
                } else {
                    tracing::debug!(db.statement = %sql, duration_ms, failed, "query");
                }
            }
            _ => {}
        }
    }
}

/// The SQL of a statement without its bound values. diesel writes the SQL,
/// then ` -- binds: ` and the values: formatting stops there, so the values
/// (titles, whole chat messages) are never even formatted. Each piece is
/// searched once (with the end of the text before it, should the marker be
/// split).
fn sql_of(query: &dyn std::fmt::Display) -> String {
    const BINDS: &str = " -- binds:";
    struct UntilBinds(String);
    impl std::fmt::Write for UntilBinds {
        fn write_str(&mut self, text: &str) -> std::fmt::Result {
            let mut from = self.0.len().saturating_sub(BINDS.len() - 1);
            while !self.0.is_char_boundary(from) {
                from -= 1;
            }
            self.0.push_str(text);
            match self.0[from..].find(BINDS) {
                Some(at) => {
                    self.0.truncate(from + at);
                    Err(std::fmt::Error)
                }
                None => Ok(()),
            }
        }
    }
    let mut sql = UntilBinds(String::new());
    let _stopped_at_the_values = write!(sql, "{query}");
    sql.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sql_is_kept() {
        let query = "INSERT INTO \"tasks\" (\"title\") VALUES ($1) -- binds: [\"secret plans\"]";
        assert_eq!(
            sql_of(&query),
            "INSERT INTO \"tasks\" (\"title\") VALUES ($1)"
        );
        assert_eq!(sql_of(&"COMMIT"), "COMMIT");
        // The marker split across two pieces is found all the same.
        struct Split;
        impl std::fmt::Display for Split {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("SELECT 1 -- bi")?;
                f.write_str("nds: [\"secret\"]")
            }
        }
        assert_eq!(sql_of(&Split), "SELECT 1");
    }
}
