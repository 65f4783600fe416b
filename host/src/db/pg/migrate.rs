//! The schema's versioned migrations, run by `tandem` itself at connect.
//!
//! All of them run in one transaction under an advisory lock, so that daemons starting
//! together migrate once. Migrations are additive (new tables, new columns with
//! defaults): a daemon one version behind keeps running against an upgraded schema
//! during a rolling upgrade. A schema newer than this build is refused (docs/fleet.md §7).

use deadpool_postgres::Object;

use super::PgError;

/// One migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its version; applied in order.
    pub version: i32,
    /// A name for the record.
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "state",
        sql: include_str!("migrations/0001_state.sql"),
    },
    Migration {
        version: 2,
        name: "fleet",
        sql: include_str!("migrations/0002_fleet.sql"),
    },
    Migration {
        version: 3,
        name: "budgets",
        sql: include_str!("migrations/0003_budgets.sql"),
    },
    Migration {
        version: 4,
        name: "fence",
        sql: include_str!("migrations/0004_fence.sql"),
    },
];

/// The schema version this build writes.
pub const LATEST: i32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// `pg_advisory_xact_lock` key: "tandem" in ASCII.
const LOCK: i64 = 0x7461_6e64_656d;

pub(super) async fn run(client: &mut Object, target: &str) -> Result<(), PgError> {
    let err = |e: tokio_postgres::Error| super::query_error(target, e);
    let tx = client.transaction().await.map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await
        .map_err(err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS tandem_migrations (
            version integer PRIMARY KEY,
            name text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(err)?;
    let found: Option<i32> = tx
        .query_one("SELECT max(version) FROM tandem_migrations", &[])
        .await
        .map_err(err)?
        .get(0);
    let found = found.unwrap_or(0);
    if found > LATEST {
        return Err(PgError::NewerSchema {
            target: target.into(),
            found,
            supported: LATEST,
        });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        tx.batch_execute(m.sql).await.map_err(err)?;
        tx.execute(
            "INSERT INTO tandem_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await
        .map_err(err)?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "state database migrated"
        );
    }
    tx.commit().await.map_err(err)
}
