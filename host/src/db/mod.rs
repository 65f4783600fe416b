//! The state interface: where the engine's tables, the plugins' storage, the run logs and
//! the fleet's leases live. Two backends implement it:
//!
//! - **redb** (the default): one file, one process (`[state] path`). Nothing to run.
//! - **PostgreSQL** (`[state] backend = "postgres"`): any number of `tandem run`
//!   processes share one database; each sync is owned by one of them through a lease
//!   with a fencing epoch (`app/fleet.rs`, docs/fleet.md §3).
//!
//! [`crate::sync::SyncStore`] and the `storage` host interface are written once over
//! [`Db`]; each matches on the backend where the two differ (redb's typed tables and
//! transactions, PostgreSQL's queries).

pub mod copy;
pub mod pg;

use std::sync::Arc;

pub use pg::{Pg, PgError, PgOptions, TlsMode};

/// An open state backend, shared by everything in the process.
#[derive(Clone)]
pub enum Db {
    /// A redb file (or an in-memory redb, in tests).
    Redb(Arc<redb::Database>),
    /// A PostgreSQL database shared by a fleet.
    Postgres(Arc<Pg>),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Db::Redb(_) => f.write_str("Db::Redb"),
            Db::Postgres(pg) => write!(f, "Db::Postgres({})", pg.target()),
        }
    }
}

impl From<Arc<redb::Database>> for Db {
    fn from(db: Arc<redb::Database>) -> Self {
        Db::Redb(db)
    }
}

impl From<Arc<Pg>> for Db {
    fn from(pg: Arc<Pg>) -> Self {
        Db::Postgres(pg)
    }
}

impl Db {
    /// The backend's name, as `[state] backend` spells it.
    pub fn backend(&self) -> &'static str {
        match self {
            Db::Redb(_) => "redb",
            Db::Postgres(_) => "postgres",
        }
    }

    /// The PostgreSQL backend, when this is one (the fleet needs it).
    pub fn postgres(&self) -> Option<&Arc<Pg>> {
        match self {
            Db::Postgres(pg) => Some(pg),
            Db::Redb(_) => None,
        }
    }
}

/// Engine tests run once per backend: `on_both_backends! { fn name() { ... } }` makes
/// `name::redb` and `name::postgres`, and [`testing::fresh`] gives each a new, empty
/// database of its backend (an in-memory redb; a database of its own on the test
/// process's throwaway PostgreSQL server).
#[cfg(test)]
pub(crate) mod testing {
    use std::cell::Cell;
    use std::sync::Arc;

    use super::{Db, Pg, PgOptions, TlsMode};

    /// A backend under test.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Backend {
        Redb,
        Postgres,
    }

    thread_local! {
        static BACKEND: Cell<Backend> = const { Cell::new(Backend::Redb) };
    }

    /// Runs `f` with `backend` as the one [`fresh`] opens (the tests run their
    /// current-thread runtimes on the test's thread).
    pub(crate) fn on<R>(backend: Backend, f: impl FnOnce() -> R) -> R {
        let before = BACKEND.replace(backend);
        let out = f();
        BACKEND.set(before);
        out
    }

    /// A new, empty database on the current test's backend.
    pub(crate) fn fresh() -> Db {
        match BACKEND.get() {
            Backend::Redb => Db::Redb(Arc::new(
                redb::Database::builder()
                    .create_with_backend(redb::backends::InMemoryBackend::new())
                    .expect("an in-memory redb opens"),
            )),
            Backend::Postgres => Db::Postgres(postgres()),
        }
    }

    /// A new, empty database on the test process's PostgreSQL server.
    pub(crate) fn postgres() -> Arc<Pg> {
        Pg::connect(&pg_options()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// How to reach a new, empty database on the test process's PostgreSQL server.
    pub(crate) fn pg_options() -> PgOptions {
        let url = tandem_pgserver::PgServer::shared().create_database();
        let mut opts = PgOptions::new(url);
        opts.tls = TlsMode::Disable;
        opts.pool_size = 4;
        opts
    }

    /// Runs `f` on a fresh current-thread runtime (for tests of async code on either
    /// backend).
    pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(f)
    }

    /// A linked pair `a`/`b` of entity pair 0 under `key`, with one synced field.
    pub(crate) fn link(key: &str, a: Option<&str>, b: Option<&str>) -> crate::sync::baseline::Link {
        use crate::sync::baseline::{FieldBase, Link, LinkOrigin, LinkState};
        use crate::sync::model::{SidePair, Value};
        Link {
            key: key.into(),
            entity: 0,
            ids: SidePair::new(a.map(Into::into), b.map(Into::into)),
            state: LinkState::Linked,
            fields: [("f".to_string(), FieldBase::new(Value::Text("x".into())))].into(),
            versions: SidePair::default(),
            match_key: None,
            origin: LinkOrigin::Email,
            review: Default::default(),
            touched: Default::default(),
        }
    }

    /// One test per backend; see the module's documentation.
    macro_rules! on_both_backends {
        ($(#[$attr:meta])* fn $name:ident() $body:block) => {
            $(#[$attr])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                #[test]
                fn redb() {
                    $crate::db::testing::on($crate::db::testing::Backend::Redb, || $body)
                }

                #[test]
                fn postgres() {
                    $crate::db::testing::on($crate::db::testing::Backend::Postgres, || $body)
                }
            }
        };
    }
    pub(crate) use on_both_backends;
}
