//! The data path: diesel-async connections pooled by bb8, on PostgreSQL
//! (`AsyncPgConnection`) or SQLite (diesel's `SqliteConnection` behind
//! diesel-async's `SyncConnectionWrapper`).
//!
//! Queries are written once: [`with_connection!`] checks a connection out of
//! whichever pool is configured and compiles the same query code for each
//! backend.

mod conversations;
mod models;
mod outage;
mod query_log;
mod row;
pub mod schema;
mod tasks;
mod tls;
mod turns;
mod url;

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::{Connection, ConnectionError, ConnectionResult};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;
use tokio::sync::Notify;

pub use self::conversations::{Conversation, Message, MessagePage};
use self::outage::{Outage, Waiter};
pub use self::tasks::{Task, TaskPage};
pub(crate) use self::tasks::{
    complete_task, create_task, delete_task, get_task, list_tasks, update_task,
};
pub(crate) use self::turns::ToolRunner;
pub use self::turns::{
    BeginTurn, KEY_RETENTION, OpenedTurn, ToolResult, TurnEnd, TurnKey, TurnStart,
};
pub use self::url::{DatabaseUrl, PostgresUrl, TlsMode};
use crate::config::DatabaseConfig;
use crate::error::Error;
use taskagent_common::error_chain;

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

/// Pragmas of every SQLite connection: WAL lets readers run beside the one
/// writer, and writers wait for each other instead of failing at once.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;";

/// Idle connections above `DB_POOL_SIZE` are closed after this long.
const OVERFLOW_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The SQLite connection type: diesel's synchronous connection run on tokio's
/// blocking pool.
pub type SqliteConnection = SyncConnectionWrapper<diesel::SqliteConnection>;

/// A pool of either backend.
#[derive(Clone)]
pub enum Pool {
    Postgres(bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>),
    Sqlite(bb8::Pool<AsyncDieselConnectionManager<SqliteConnection>>),
}

/// The database that holds tasks, conversations and messages. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// Woken whenever a call finds the database unavailable, so that health
    /// is checked at once instead of at the next tick.
    trouble: Arc<Notify>,
    /// Set while the database is known to be unreachable: calls then fail
    /// at once instead of waiting `DB_POOL_TIMEOUT` for a connection.
    outage: Outage,
    /// SQLite only: writes take turns here. SQLite allows one writer at a
    /// time, and its busy handler waits by sleeping (up to 100 ms a nap), so
    /// queueing writers in the process is fairer and far quicker.
    writer: Option<Arc<tokio::sync::Mutex<()>>>,
    /// PostgreSQL without prepared statements (`DB_PREPARED_STATEMENTS=false`):
    /// each use of a connection is one transaction, so that a transaction
    /// pooler keeps it on one server from a statement's preparation to its
    /// close.
    one_transaction_per_use: bool,
    /// The most connections the pool opens.
    max_connections: u32,
}

/// The pool as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    pub backend: &'static str,
    pub connections: u32,
    pub active: u32,
    pub max: u32,
}

/// Why the database could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot connect to {backend} at {target}: {reason}")]
    Connect {
        backend: &'static str,
        target: String,
        reason: String,
    },
    #[error("cannot run the {backend} migrations: {reason}")]
    Migrate {
        backend: &'static str,
        reason: String,
    },
}

/// Runs `$body` (an expression of type `Result<T, Error>` that may use `?`
/// and `.await`) with `$conn` bound to a pooled connection of the configured
/// backend. The body is compiled once per backend.
macro_rules! on_connection {
    ($store:expr, $conn:ident => $body:expr) => {
        $crate::db::on_connection!($store, waiter = $crate::db::Waiter::Call, $conn => $body)
    };
    ($store:expr, waiter = $waiter:expr, $conn:ident => $body:expr) => {{
        let store: &$crate::db::Store = $store;
        let gate = (&store.outage, $waiter);
        let span = store.session_span();
        let result: ::std::result::Result<_, $crate::error::Error> = ::tracing::Instrument::instrument(async { match store.pool() {
            $crate::db::Pool::Postgres(pool) => match $crate::db::checkout(pool, gate).await {
                Ok(mut connection) if store.one_transaction_per_use() => {
                    use ::diesel_async::AsyncConnection as _;
                    let connection: &mut ::diesel_async::AsyncPgConnection = &mut connection;
                    connection.transaction(async |$conn| $body).await
                }
                Ok(mut connection) => {
                    let $conn = &mut *connection;
                    async { $body }.await
                }
                Err(error) => Err(error),
            },
            $crate::db::Pool::Sqlite(pool) => match $crate::db::checkout(pool, gate).await {
                Ok(mut connection) => {
                    let $conn = &mut *connection;
                    async { $body }.await
                }
                Err(error) => Err(error),
            },
        }}, span).await;
        result
    }};
}

/// [`on_connection!`] for calls: a result saying the database is unavailable
/// also wakes the health watcher.
macro_rules! with_connection {
    ($store:expr, $conn:ident => $body:expr) => {{
        let store: &$crate::db::Store = $store;
        store.observe($crate::db::on_connection!(store, $conn => $body))
    }};
}
/// [`with_connection!`] for statements that write: on SQLite they first
/// take the writer's turn.
macro_rules! with_write_connection {
    ($store:expr, $conn:ident => $body:expr) => {{
        let store: &$crate::db::Store = $store;
        let _turn = store.writer_turn().await;
        $crate::db::with_connection!(store, $conn => $body)
    }};
}

/// A connection of either backend (pooled, or inside a transaction), for
/// query functions written once: [`on_conn!`] compiles their body for each.
pub(crate) enum Conn<'c> {
    Postgres(&'c mut AsyncPgConnection),
    Sqlite(&'c mut SqliteConnection),
}

impl<'c> From<&'c mut AsyncPgConnection> for Conn<'c> {
    fn from(conn: &'c mut AsyncPgConnection) -> Self {
        Self::Postgres(conn)
    }
}

impl<'c> From<&'c mut SqliteConnection> for Conn<'c> {
    fn from(conn: &'c mut SqliteConnection) -> Self {
        Self::Sqlite(conn)
    }
}

impl Conn<'_> {
    /// The same connection, borrowed for one more call.
    pub(crate) fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Self::Postgres(conn) => Conn::Postgres(conn),
            Self::Sqlite(conn) => Conn::Sqlite(conn),
        }
    }
}

/// Runs `$body` with `$c` bound to the backend connection inside the
/// [`Conn`] `$conn`; the body is compiled once per backend.
macro_rules! on_conn {
    ($conn:expr, $c:ident => $body:expr) => {{
        let result: ::std::result::Result<_, $crate::error::Error> = match $conn {
            $crate::db::Conn::Postgres($c) => async { $body }.await,
            $crate::db::Conn::Sqlite($c) => async { $body }.await,
        };
        result
    }};
}
pub(crate) use {on_conn, on_connection, with_connection, with_write_connection};

impl Store {
    /// Connects, runs pending migrations and opens the pool. A connection
    /// problem is reported with its real cause (refused, failed login, ...).
    pub async fn open(config: &DatabaseConfig) -> Result<Self, SetupError> {
        migrate(config).await?;
        Ok(Self::connect_pool(config))
    }

    fn connect_pool(config: &DatabaseConfig) -> Self {
        let logging = config.query_logging;
        let prepared = config.prepared_statements;
        let outage = Outage::default();
        let pool = match &config.url {
            DatabaseUrl::Postgres(target) => {
                let target = Arc::new(target.clone());
                let mut manager = ManagerConfig::<AsyncPgConnection>::default();
                manager.recycling_method = RecyclingMethod::Fast;
                let opened = outage.clone();
                manager.custom_setup = Box::new(move |_| {
                    let (target, opened) = (target.clone(), opened.clone());
                    async move {
                        let mut conn = connect_postgres(&target, prepared).await?;
                        opened.end();
                        if let Some(observer) = query_log::QueryObserver::new(logging, true) {
                            conn.set_instrumentation(observer);
                        }
                        Ok(conn)
                    }
                    .boxed()
                });
                let manager =
                    AsyncDieselConnectionManager::new_with_config(config.url.to_string(), manager);
                Pool::Postgres(pool_builder(config, &outage).build_unchecked(manager))
            }
            DatabaseUrl::Sqlite(path) => {
                let mut manager = ManagerConfig::<SqliteConnection>::default();
                manager.recycling_method = RecyclingMethod::Fast;
                let opened = outage.clone();
                manager.custom_setup = Box::new(move |path| {
                    let (path, opened) = (path.to_owned(), opened.clone());
                    async move {
                        let mut conn = SqliteConnection::establish(&path).await?;
                        conn.batch_execute(SQLITE_PRAGMAS)
                            .await
                            .map_err(ConnectionError::CouldntSetupConfiguration)?;
                        opened.end();
                        if let Some(observer) = query_log::QueryObserver::new(logging, false) {
                            conn.set_instrumentation(observer);
                        }
                        Ok(conn)
                    }
                    .boxed()
                });
                let manager =
                    AsyncDieselConnectionManager::new_with_config(path.to_string_lossy(), manager);
                Pool::Sqlite(pool_builder(config, &outage).build_unchecked(manager))
            }
        };
        let writer = matches!(pool, Pool::Sqlite(_)).then(|| Arc::new(tokio::sync::Mutex::new(())));
        Self {
            pool,
            trouble: Arc::new(Notify::new()),
            outage,
            writer,
            one_transaction_per_use: matches!(config.url, DatabaseUrl::Postgres(_))
                && !config.prepared_statements,
            max_connections: config.max_connections(),
        }
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Whether each use of a PostgreSQL connection is one transaction
    /// (`DB_PREPARED_STATEMENTS=false`).
    pub(crate) fn one_transaction_per_use(&self) -> bool {
        self.one_transaction_per_use
    }

    /// The span of one use of a pooled connection, on SQLite: there it
    /// stands for the statements, which cannot have spans of their own
    /// (see `query_log`). PostgreSQL's statements and transactions have
    /// spans of their own.
    pub(crate) fn session_span(&self) -> tracing::Span {
        match &self.pool {
            Pool::Postgres(_) => tracing::Span::none(),
            Pool::Sqlite(_) => {
                tracing::info_span!("db.session", otel.kind = "client", db.system = "sqlite")
            }
        }
    }

    /// Open and busy connections of the pool.
    pub fn pool_state(&self) -> PoolState {
        let (backend, state) = match &self.pool {
            Pool::Postgres(pool) => ("PostgreSQL", pool.state()),
            Pool::Sqlite(pool) => ("SQLite", pool.state()),
        };
        PoolState {
            backend,
            connections: state.connections,
            active: state.connections.saturating_sub(state.idle_connections),
            max: self.max_connections,
        }
    }

    /// Waits for the writer's turn (SQLite); `None` where writers need none.
    pub(crate) async fn writer_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.writer {
            Some(writer) => Some(writer.lock().await),
            None => None,
        }
    }

    /// Passes `result` through, waking the health watcher when it says the
    /// database is unavailable.
    pub(crate) fn observe<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        if let Err(error) = &result
            && error.is_database_unavailable()
        {
            self.trouble.notify_one();
        }
        result
    }

    /// Resolves when a call has found the database unavailable.
    pub async fn trouble(&self) {
        self.trouble.notified().await;
    }

    /// One round trip to the database, even during an outage. Not observed:
    /// the health watcher itself calls this.
    pub async fn ping(&self) -> Result<(), Error> {
        on_connection!(self, waiter = Waiter::Ping, conn => {
            diesel::sql_query("SELECT 1").execute(conn).await?;
            Ok(())
        })
    }

    /// Records what the health watcher found: the database answered (calls
    /// go through again), or failed in a way that means it cannot be
    /// reached (calls fail at once). A ping that only timed out decides
    /// nothing here: the pool may just be busy.
    pub fn record_ping(&self, result: &Result<(), Error>) {
        match result {
            Ok(()) => self.outage.end(),
            Err(error) if error.is_database_unavailable() => {
                self.outage.begin(&taskagent_common::error_chain(error));
            }
            Err(_) => {}
        }
    }
}

/// Pool settings shared by both backends. No test query on checkout: a
/// broken connection is found by the call that uses it (and then dropped),
/// not by an extra round trip on every call. The wait for a connection is
/// bounded by `DB_POOL_TIMEOUT` here and by the caller's deadline through the
/// server's request timeout. A connection that cannot be opened (refused,
/// DNS, TLS, login) is not retried: bb8 hands its error to the error sink,
/// the [`Outage`], which makes waiting and later calls fail at once.
fn pool_builder<M: bb8::ManageConnection<Error = PoolError>>(
    config: &DatabaseConfig,
    outage: &Outage,
) -> bb8::Builder<M> {
    bb8::Pool::builder()
        .max_size(config.max_connections())
        .min_idle(Some(config.pool_size))
        .connection_timeout(config.pool_timeout)
        .max_lifetime(Some(config.pool_recycle))
        .idle_timeout(Some(OVERFLOW_IDLE_TIMEOUT))
        .test_on_check_out(false)
        .retry_connection(false)
        .error_sink(Box::new(outage.clone()))
}

/// Takes a connection from `pool`, mapping every failure to
/// [`Error::DatabaseUnavailable`]. A call fails at once during a known
/// outage and stops waiting when one begins; a ping stops waiting at the
/// next failed connection attempt.
pub(crate) async fn checkout<'p, M>(
    pool: &'p bb8::Pool<M>,
    (outage, waiter): (&Outage, Waiter),
) -> Result<bb8::PooledConnection<'p, M>, Error>
where
    M: bb8::ManageConnection<Error = PoolError>,
{
    let unreachable = |reason: &str| Error::DatabaseUnavailable(reason.to_owned().into());
    if waiter == Waiter::Call
        && let Some(reason) = outage.reason()
    {
        return Err(unreachable(&reason));
    }
    let waited = tokio::select! {
        got = pool.get() => got,
        reason = outage.give_up(waiter) => return Err(unreachable(&reason)),
    };
    waited.map_err(|error| match error {
        bb8::RunError::User(e) => Error::DatabaseUnavailable(Box::new(e)),
        bb8::RunError::TimedOut => unreachable("timed out waiting for a database connection"),
    })
}

/// Opens one PostgreSQL connection, with TLS when the URL asks for it;
/// without `prepared` statements, it caches none.
async fn connect_postgres(
    target: &PostgresUrl,
    prepared: bool,
) -> ConnectionResult<AsyncPgConnection> {
    let failed = |e: tokio_postgres::Error| ConnectionError::BadConnection(error_chain(&e));
    if target.tls == TlsMode::Off {
        let (client, connection) = target
            .config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(failed)?;
        into_diesel(client, connection, prepared).await
    } else {
        let tls = tls::connector(target.tls, target.root_cert.as_deref())
            .map_err(ConnectionError::BadConnection)?;
        let (client, connection) = target.config.connect(tls).await.map_err(failed)?;
        into_diesel(client, connection, prepared).await
    }
}

/// diesel's connection around a tokio-postgres one. diesel-async sets the
/// session up with two prepared statements: without `prepared` statements
/// (behind a transaction pooler) they run inside one transaction, which
/// keeps them on one server, and nothing is cached afterwards.
async fn into_diesel<T>(
    client: tokio_postgres::Client,
    connection: tokio_postgres::Connection<tokio_postgres::Socket, T>,
    prepared: bool,
) -> ConnectionResult<AsyncPgConnection>
where
    T: tokio_postgres::tls::TlsStream + Unpin + Send + 'static,
{
    if prepared {
        return AsyncPgConnection::try_from_client_and_connection(client, connection).await;
    }
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %error_chain(&error), "database connection closed");
        }
    });
    let setup_failed = |e: tokio_postgres::Error| {
        ConnectionError::CouldntSetupConfiguration(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::Unknown,
            Box::new(error_chain(&e)),
        ))
    };
    client.batch_execute("BEGIN").await.map_err(setup_failed)?;
    let mut conn = AsyncPgConnection::try_from(client).await?;
    conn.batch_execute("COMMIT")
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    conn.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
    Ok(conn)
}

/// Applies the pending migrations of `url`'s backend and returns the versions
/// it applied. Used at start-up and by `taskagent migrate`.
pub async fn migrate(config: &DatabaseConfig) -> Result<Vec<String>, SetupError> {
    let url = &config.url;
    let backend = url.backend_name();
    let connect_error = |reason: String| SetupError::Connect {
        backend,
        target: url.to_string(),
        reason,
    };
    let migrate_error = |reason: String| SetupError::Migrate { backend, reason };
    let applied = match url {
        DatabaseUrl::Postgres(target) => {
            let conn = connect_postgres(target, config.prepared_statements)
                .await
                .map_err(|e| connect_error(e.to_string()))?;
            let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
            tokio::task::spawn_blocking(move || {
                // All pending migrations run in one transaction, which holds
                // the lock that keeps two instances starting together from
                // both migrating (and keeps it all on one server behind a
                // transaction pooler).
                diesel::Connection::transaction(&mut conn, |conn| {
                    SimpleConnection::batch_execute(conn, "SELECT pg_advisory_xact_lock(727165)")?;
                    run_pending(conn, POSTGRES_MIGRATIONS)
                })
            })
            .await
        }
        DatabaseUrl::Sqlite(path) => {
            let path = path.to_string_lossy().into_owned();
            let conn =
                tokio::task::spawn_blocking(move || diesel::SqliteConnection::establish(&path))
                    .await
                    .map_err(|e| connect_error(e.to_string()))?;
            let mut conn = conn.map_err(|e| connect_error(e.to_string()))?;
            tokio::task::spawn_blocking(move || {
                conn.batch_execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;")?;
                run_pending(&mut conn, SQLITE_MIGRATIONS)
            })
            .await
        }
    };
    applied
        .map_err(|e| migrate_error(e.to_string()))?
        .map_err(|e| migrate_error(error_chain(&*e)))
}

type MigrationResult = Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>>;

fn run_pending<C>(conn: &mut C, migrations: EmbeddedMigrations) -> MigrationResult
where
    C: MigrationHarness<C::Backend> + Connection,
{
    let applied = conn.run_pending_migrations(migrations)?;
    Ok(applied.iter().map(ToString::to_string).collect())
}
