//! The PostgreSQL backend: a pool of connections, the schema's migrations, and the
//! key-value operations the engine's store needs.
//!
//! Why tokio-postgres with deadpool-postgres (and not sqlx): no compile-time database and
//! no macros (far less to build on a small CI machine), statements prepared once per
//! connection, `LISTEN`/`NOTIFY` through the connection's message stream, and TLS through
//! the rustls that reqwest already links.
//!
//! The connections live on a small runtime of their own. The engine's store is
//! synchronous (as redb is): it takes a connection from the pool through that runtime and
//! then drives the query futures on the calling thread, which only wait on channels to
//! the connection task. So a synchronous caller never blocks the runtime its connection
//! needs, even on a current-thread runtime.

mod migrate;
mod tls;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use futures::TryStreamExt;
use thiserror::Error;
use tokio_postgres::types::ToSql;

pub use migrate::{LATEST as SCHEMA_LATEST, MIGRATIONS};

/// `[state] tls`: whether the connection to PostgreSQL is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain TCP (a server on loopback or a private network).
    Disable,
    /// TLS when the server offers it, plain otherwise (libpq's default).
    #[default]
    Prefer,
    /// TLS or no connection.
    Require,
}

impl std::str::FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "disable" => Ok(TlsMode::Disable),
            "prefer" => Ok(TlsMode::Prefer),
            "require" => Ok(TlsMode::Require),
            other => Err(format!(
                "unknown tls mode {other:?}; use \"disable\", \"prefer\" or \"require\""
            )),
        }
    }
}

/// How to reach the database.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://user:password@host:port/db` (a secret: never shown).
    pub url: String,
    /// Encryption.
    pub tls: TlsMode,
    /// Extra root certificates (PEM) besides the system's, for a private CA.
    pub ca_file: Option<PathBuf>,
    /// Connections in the pool.
    pub pool_size: usize,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

impl PgOptions {
    /// Options for `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            tls: TlsMode::default(),
            ca_file: None,
            pool_size: DEFAULT_POOL_SIZE,
        }
    }
}

/// The default number of pooled connections per process.
pub const DEFAULT_POOL_SIZE: usize = 8;

/// A PostgreSQL failure, in one line without secrets.
#[derive(Debug, Error)]
pub enum PgError {
    /// `[state] url` is not a PostgreSQL URL.
    #[error(
        "cannot read [state] url as a PostgreSQL URL (postgres://user:password@host:port/database): {0}"
    )]
    Url(String),
    /// The database could not be reached or refused us.
    #[error(
        "cannot reach the state database {target}: {message}; check [state] url and that the server is up"
    )]
    Connect {
        /// host:port/database.
        target: String,
        /// The driver's reason.
        message: String,
    },
    /// A query failed.
    #[error("the state database {target}: {message}")]
    Query {
        /// host:port/database.
        target: String,
        /// The server's (or the driver's) reason.
        message: String,
    },
    /// The database's schema is newer than this build.
    #[error(
        "the state database {target} has schema v{found}, newer than this build's v{supported}: upgrade tandem on this machine (a newer daemon migrated it)"
    )]
    NewerSchema {
        /// host:port/database.
        target: String,
        /// The version found.
        found: i32,
        /// This build's latest.
        supported: i32,
    },
    /// TLS settings could not be used.
    #[error("[state] tls: {0}")]
    Tls(String),
}

/// Counters of what this process asked of the database (the fleet benchmark reads them).
#[derive(Debug, Default)]
pub struct PgStats {
    /// Statements sent.
    pub queries: AtomicU64,
    /// Exchanges with the server (a pipelined commit is one, whatever its statements).
    pub round_trips: AtomicU64,
    /// Rows inserted, updated or deleted.
    pub rows_written: AtomicU64,
    /// Of the round trips, the fleet's rate-budget leases: one per block of an account's
    /// requests, not per run (`app::budget`).
    pub budget_leases: AtomicU64,
    /// Of the rows written, the leases' (the account's row, and the grant when there is one).
    pub budget_rows_written: AtomicU64,
}

/// A pool of connections to the state database.
pub struct Pg {
    pool: Pool,
    rt: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    target: String,
    stats: PgStats,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pg({})", self.target)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        // A runtime cannot be dropped (it would block) inside another one.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Pg {
    /// Connects, checks the schema version and applies the migrations this build has and
    /// the database lacks.
    pub fn connect(opts: &PgOptions) -> Result<Arc<Pg>, PgError> {
        let config: tokio_postgres::Config = opts
            .url
            .parse()
            .map_err(|e: tokio_postgres::Error| PgError::Url(e.to_string()))?;
        let target = target_of(&config);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tandem-pg")
            .enable_all()
            .build()
            .map_err(|e| PgError::Connect {
                target: target.clone(),
                message: e.to_string(),
            })?;
        let mgr_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match opts.tls {
            TlsMode::Disable => {
                let mut config = config.clone();
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                Manager::from_config(config, tokio_postgres::NoTls, mgr_config)
            }
            mode => {
                let mut config = config.clone();
                config.ssl_mode(match mode {
                    TlsMode::Require => tokio_postgres::config::SslMode::Require,
                    _ => tokio_postgres::config::SslMode::Prefer,
                });
                let tls = tls::connector(opts.ca_file.as_deref())?;
                Manager::from_config(config, tls, mgr_config)
            }
        };
        let pool = Pool::builder(manager)
            .max_size(opts.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(10)))
            .wait_timeout(Some(Duration::from_secs(30)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| PgError::Connect {
                target: target.clone(),
                message: e.to_string(),
            })?;
        let pg = Pg {
            pool,
            handle: rt.handle().clone(),
            rt: Some(rt),
            target,
            stats: PgStats::default(),
        };
        let t = pg.target.clone();
        pg.run(move |pool| async move {
            let mut client = pool.get().await.map_err(|e| pool_error(&t, e))?;
            migrate::run(&mut client, &t).await
        })?;
        Ok(Arc::new(pg))
    }

    /// host:port/database, for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// What this process asked of the database so far.
    pub fn stats(&self) -> &PgStats {
        &self.stats
    }

    /// Counts `n` statements sent one after the other and `rows` rows written.
    pub fn count(&self, n: u64, rows: u64) {
        self.stats.queries.fetch_add(n, Ordering::Relaxed);
        self.stats.round_trips.fetch_add(n, Ordering::Relaxed);
        self.stats.rows_written.fetch_add(rows, Ordering::Relaxed);
    }

    /// Counts `n` statements sent together in one round trip and `rows` rows written.
    pub fn count_pipelined(&self, n: u64, rows: u64) {
        self.stats.queries.fetch_add(n, Ordering::Relaxed);
        self.stats.round_trips.fetch_add(1, Ordering::Relaxed);
        self.stats.rows_written.fetch_add(rows, Ordering::Relaxed);
    }

    /// Runs `f` on the pool's own runtime and waits for it (any thread, any runtime).
    pub fn run<T, F, Fut>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let pool = self.pool.clone();
        self.handle.spawn(async move {
            let _ = tx.send(f(pool).await);
        });
        rx.recv()
            .expect("the database runtime runs until the pool is dropped")
    }

    /// Runs `f` on the pool's own runtime, for an async caller: awaits its end without
    /// blocking the caller's thread (tokio-postgres's futures are polled there only).
    pub async fn run_async<T, F, Fut>(&self, f: F) -> Result<T, PgError>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, PgError>> + Send + 'static,
    {
        let pool = self.pool.clone();
        self.handle
            .spawn(async move { f(pool).await })
            .await
            .map_err(|e| PgError::Query {
                target: self.target.clone(),
                message: format!("the database task ended: {e}"),
            })?
    }

    /// A pooled connection from inside [`Pg::run_async`]'s closure.
    pub async fn get(pool: &Pool, target: &str) -> Result<Object, PgError> {
        pool.get().await.map_err(|e| pool_error(target, e))
    }

    /// A query error for `target`, from inside [`Pg::run_async`]'s closure.
    pub fn query_error(target: &str, e: tokio_postgres::Error) -> PgError {
        query_error(target, e)
    }

    /// A pooled connection, for an async caller.
    pub async fn client(&self) -> Result<Object, PgError> {
        let pool = self.pool.clone();
        let target = self.target.clone();
        self.handle
            .spawn(async move { pool.get().await.map_err(|e| pool_error(&target, e)) })
            .await
            .map_err(|e| PgError::Connect {
                target: self.target.clone(),
                message: e.to_string(),
            })?
    }

    /// A pooled connection, for a synchronous caller.
    pub fn client_blocking(&self) -> Result<Conn, PgError> {
        let target = self.target.clone();
        self.run(move |pool| async move {
            pool.get()
                .await
                .map(Arc::new)
                .map_err(|e| pool_error(&target, e))
        })
    }

    /// Runs `f` on the pool's runtime, where the connections' tasks live, and waits for
    /// it (tokio-postgres's futures are meant to be polled there).
    pub fn wait<T, Fut>(&self, f: Fut) -> T
    where
        T: Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        self.run(move |_| f)
    }

    /// A query error, in one line.
    pub fn error(&self, e: tokio_postgres::Error) -> PgError {
        query_error(&self.target, e)
    }

    /// Starts `f` on the pool's own runtime without waiting for it: an async caller awaits
    /// the handle (tokio-postgres's futures are polled there, never on the caller's).
    pub fn spawn<T, F, Fut>(&self, f: F) -> tokio::task::JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        self.handle.spawn(f(self.pool.clone()))
    }

    /// Runs one prepared statement on `client` and returns its rows.
    pub fn query(
        &self,
        client: &Conn,
        sql: &'static str,
        params: Params,
    ) -> Result<Vec<tokio_postgres::Row>, PgError> {
        self.count(1, 0);
        let c = client.clone();
        self.wait(async move {
            let st = c.prepare_cached(sql).await?;
            c.query_raw(
                &st,
                params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)),
            )
            .await?
            .try_collect::<Vec<_>>()
            .await
        })
        .map_err(|e| self.error(e))
    }

    /// Runs one prepared statement on `client` and returns the number of rows it changed.
    pub fn execute(
        &self,
        client: &Conn,
        sql: &'static str,
        params: Params,
    ) -> Result<u64, PgError> {
        let c = client.clone();
        let n = self
            .wait(async move {
                let st = c.prepare_cached(sql).await?;
                c.execute_raw(
                    &st,
                    params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)),
                )
                .await
            })
            .map_err(|e| self.error(e))?;
        self.count(1, n);
        Ok(n)
    }

    /// Runs statements without parameters (`BEGIN`, `COMMIT`...) in one round trip.
    pub fn batch(&self, client: &Conn, sql: &'static str) -> Result<(), PgError> {
        self.count(1, 0);
        let c = client.clone();
        self.wait(async move { c.batch_execute(sql).await })
            .map_err(|e| self.error(e))
    }

    /// One row of the engine's key-value table.
    pub fn kv_get(&self, tbl: &'static str, k: &str) -> Result<Option<Vec<u8>>, PgError> {
        let c = self.client_blocking()?;
        let rows = self.query(
            &c,
            "SELECT v FROM tandem_kv WHERE tbl = $1 AND k = $2",
            params![tbl, k.as_bytes().to_vec()],
        )?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// Rows of the engine's key-value table with these keys (those that exist).
    pub fn kv_get_many(
        &self,
        tbl: &'static str,
        keys: &[String],
    ) -> Result<Vec<(String, Vec<u8>)>, PgError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.client_blocking()?;
        let ks: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
        let rows = self.query(
            &c,
            "SELECT k, v FROM tandem_kv WHERE tbl = $1 AND k = ANY($2)",
            params![tbl, ks],
        )?;
        rows.into_iter().map(kv_row).collect()
    }

    /// Rows of several tables of the engine's key-value table with `lo <= k < hi`, in one
    /// statement: (table, key, value).
    pub fn kv_range_tables(
        &self,
        tbls: &[&'static str],
        lo: &str,
        hi: &str,
    ) -> Result<Vec<(String, String, Vec<u8>)>, PgError> {
        let c = self.client_blocking()?;
        let names: Vec<String> = tbls.iter().map(|t| t.to_string()).collect();
        let rows = self.query(
            &c,
            "SELECT tbl, k, v FROM tandem_kv WHERE tbl = ANY($1) AND k >= $2 AND k < $3",
            params![names, lo.as_bytes().to_vec(), hi.as_bytes().to_vec()],
        )?;
        rows.into_iter()
            .map(|r| {
                let tbl: String = r.get(0);
                let (k, v) = kv_row_at(&r, 1)?;
                Ok((tbl, k, v))
            })
            .collect()
    }

    /// Rows of the engine's key-value table with `lo <= k < hi`, in key order.
    pub fn kv_range(
        &self,
        tbl: &'static str,
        lo: &str,
        hi: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, PgError> {
        let c = self.client_blocking()?;
        kv_range_on(self, &c, tbl, lo, hi)
    }
}

/// A pooled connection; shared so that a statement can run on the pool's runtime while
/// its caller keeps the connection (a transaction's statements all use one).
pub type Conn = Arc<Object>;

/// A statement's parameters, owned (the statement runs on another thread).
pub type Params = Vec<Box<dyn ToSql + Send + Sync>>;

/// Owned statement parameters: `params![a, b]`.
#[macro_export]
#[doc(hidden)]
macro_rules! pg_params {
    ($($p:expr),* $(,)?) => {
        vec![$(Box::new($p) as Box<dyn tokio_postgres::types::ToSql + Send + Sync>),*]
    };
}
pub use crate::pg_params as params;

/// Rows of the key-value table with `lo <= k < hi` through `client` (in a transaction
/// or not).
pub(crate) fn kv_range_on(
    pg: &Pg,
    client: &Conn,
    tbl: &'static str,
    lo: &str,
    hi: &str,
) -> Result<Vec<(String, Vec<u8>)>, PgError> {
    let rows = pg.query(
        client,
        "SELECT k, v FROM tandem_kv WHERE tbl = $1 AND k >= $2 AND k < $3 ORDER BY k",
        params![tbl, lo.as_bytes().to_vec(), hi.as_bytes().to_vec()],
    )?;
    rows.into_iter().map(kv_row).collect()
}

fn kv_row(r: tokio_postgres::Row) -> Result<(String, Vec<u8>), PgError> {
    kv_row_at(&r, 0)
}

/// The key (column `at`) and value (the next column) of a key-value row.
fn kv_row_at(r: &tokio_postgres::Row, at: usize) -> Result<(String, Vec<u8>), PgError> {
    let k: Vec<u8> = r.get(at);
    let k = String::from_utf8(k).map_err(|_| PgError::Query {
        target: String::new(),
        message: "a key in tandem_kv is not UTF-8 (written by something other than tandem?)".into(),
    })?;
    Ok((k, r.get(at + 1)))
}

fn target_of(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

fn pool_error(target: &str, e: deadpool_postgres::PoolError) -> PgError {
    let message = match e {
        deadpool_postgres::PoolError::Backend(e) => one_line(&e),
        deadpool_postgres::PoolError::Timeout(_) => {
            "timed out waiting for a connection (is the server up, and pool-size large enough?)"
                .into()
        }
        other => other.to_string(),
    };
    PgError::Connect {
        target: target.into(),
        message,
    }
}

fn query_error(target: &str, e: tokio_postgres::Error) -> PgError {
    PgError::Query {
        target: target.into(),
        message: one_line(&e),
    }
}

/// The driver's message and its cause (the server's text, or the socket's) on one line.
fn one_line(e: &tokio_postgres::Error) -> String {
    let mut s = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    };
    if e.as_db_error().is_none()
        && let Some(src) = std::error::Error::source(e)
    {
        s.push_str(&format!(" ({src})"));
    }
    s.replace('\n', " ")
}
