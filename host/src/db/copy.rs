//! `tandem state copy`: moves an install's redb state file into an empty PostgreSQL
//! database, row for row, and proves it by comparing counts and digests of every table.
//!
//! What moves where (the same keys and values, byte for byte):
//! - the engine's nine tables (`tandem_sync_*`) -> `tandem_kv` rows, `tbl` = the table's name;
//! - plugin storage `runtime.plugin_store` / `runtime.plugin_store_usage` ->
//!   `tandem_plugin_store` / `tandem_plugin_usage`, same owner and connection;
//! - legacy plugin storage (`runtime.plugin_kv*`, keyed by the plugin's self-declared name,
//!   not yet moved to its operator-keyed namespace) -> the same PostgreSQL tables under
//!   owner `legacy:NAME`. No plugin reads that owner: as on redb, the rows wait there until
//!   the connection's plugin, declaring that name, first uses storage and takes them over
//!   (`runtime::storage`), so nothing is lost and nothing becomes readable that was not.
//!
//! All rows are written in one transaction (all or nothing), after locking the target's
//! tables and checking that they hold no tandem row. The source is held open (redb's
//! lock) for the whole copy, so no daemon can change it meanwhile; a file a running
//! daemon holds is refused. After the commit every table is read back from PostgreSQL and
//! its digest compared with the file's.
//!
//! There is no way back (PostgreSQL to redb): back a fleet's database up with the
//! database's own tools (`pg_dump`), see docs/fleet.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use sha2::{Digest as _, Sha256};
use thiserror::Error;
use tokio_postgres::types::ToSql;

use super::pg::{Conn, Params, params};
use super::{Pg, PgError, PgOptions};
use crate::app::{StateFile, StateFileError};
use crate::runtime::storage::{KV, LEGACY_KV, LEGACY_USAGE, USAGE};
use crate::sync::state::{SCHEMA_VERSION, TABLE_NAMES};

/// The owner prefix of legacy plugin storage copied to PostgreSQL (owners are otherwise
/// `plugin:NAME` or `sha256:HEX`, so it never meets a live namespace).
pub const LEGACY_OWNER: &str = "legacy:";

/// Rows per insert statement (and at most [`BATCH_BYTES`] of keys and values).
const BATCH_ROWS: usize = 1000;
const BATCH_BYTES: usize = 8 << 20;

/// Why a copy did not happen, or did not check out.
#[derive(Debug, Error)]
pub enum CopyError {
    /// `--from` names no file.
    #[error("no state file at {}: check --from (the [state] path of the install to move)", path.display())]
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// The state file cannot be opened (in use by a daemon, damaged...).
    #[error("{0}")]
    StateFile(#[from] StateFileError),
    /// A table of the state file cannot be read.
    #[error("cannot read the state file {}: {message}", path.display())]
    Read {
        /// The state file.
        path: PathBuf,
        /// What redb said.
        message: String,
    },
    /// The state file was written by a newer tandem.
    #[error(
        "the state file {} uses sync layout v{found}, newer than this build's v{supported}: copy it with the tandem version that wrote it",
        path.display()
    )]
    NewerLayout {
        /// The state file.
        path: PathBuf,
        /// Its layout.
        found: u32,
        /// This build's.
        supported: u32,
    },
    /// The target database could not be reached, or a statement failed (nothing was
    /// committed).
    #[error("{0}")]
    Target(#[from] PgError),
    /// The target already holds tandem state.
    #[error(
        "the target database {target} already holds tandem state (rows in {tables}); refusing to copy over it, nothing was written: copy into a new, empty database"
    )]
    NotEmpty {
        /// host:port/database.
        target: String,
        /// The tables that hold rows.
        tables: String,
    },
    /// A table read back from PostgreSQL differs from the file.
    #[error(
        "the copy in {target} does not match the state file: {table} has {file_rows} rows in the file and {copied_rows} in the database (digests {file_digest} and {copied_digest}); do not start a daemon on it: drop that database, create an empty one and copy again"
    )]
    Mismatch {
        /// host:port/database.
        target: String,
        /// The table (its redb name).
        table: &'static str,
        /// Rows in the file.
        file_rows: u64,
        /// Rows read back.
        copied_rows: u64,
        /// The file's digest (hex).
        file_digest: String,
        /// The database's digest (hex).
        copied_digest: String,
    },
}

/// The row count and sha256 of one table (see [`Digester`] for what is hashed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDigest {
    /// Rows.
    pub rows: u64,
    /// sha256 over the rows in key order.
    pub sha256: [u8; 32],
}

impl TableDigest {
    /// The digest in hex.
    pub fn hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// One table, as read from the file and as read back from the database.
#[derive(Debug, Clone)]
pub struct TableCheck {
    /// The table's redb name.
    pub table: &'static str,
    /// In the state file.
    pub file: TableDigest,
    /// In PostgreSQL, after the commit.
    pub copied: TableDigest,
}

impl TableCheck {
    /// Whether both sides agree.
    pub fn ok(&self) -> bool {
        self.file == self.copied
    }
}

/// What a copy did.
#[derive(Debug, Clone)]
pub struct CopyReport {
    /// host:port/database of the target.
    pub target: String,
    /// Every table, in a fixed order.
    pub tables: Vec<TableCheck>,
}

impl CopyReport {
    /// `Err` naming the first table whose copy differs from the file.
    pub fn check(&self) -> Result<(), CopyError> {
        match self.tables.iter().find(|t| !t.ok()) {
            None => Ok(()),
            Some(t) => Err(CopyError::Mismatch {
                target: self.target.clone(),
                table: t.table,
                file_rows: t.file.rows,
                copied_rows: t.copied.rows,
                file_digest: t.file.hex(),
                copied_digest: t.copied.hex(),
            }),
        }
    }
}

/// Hashes rows given in key order: per row, each key part and then the value, each as
/// its length (8 bytes, big-endian) and its bytes. The same function runs over the file
/// and over the database, so a missing, extra, reordered or altered row changes it.
#[derive(Default)]
pub struct Digester {
    rows: u64,
    sha: Sha256,
}

impl Digester {
    /// Adds one row.
    pub fn row(&mut self, key: &[&[u8]], value: &[u8]) {
        for part in key.iter().chain([&value]) {
            self.sha.update((part.len() as u64).to_be_bytes());
            self.sha.update(part);
        }
        self.rows += 1;
    }

    /// The digest so far.
    pub fn finish(self) -> TableDigest {
        TableDigest {
            rows: self.rows,
            sha256: self.sha.finalize().into(),
        }
    }
}

/// A usage row's value, as hashed on both sides.
fn usage_bytes(bytes: u64, keys: u64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&bytes.to_be_bytes());
    out[8..].copy_from_slice(&keys.to_be_bytes());
    out
}

/// The tables a copy carries, in report order.
const PLUGIN_TABLES: [&str; 4] = [
    "runtime.plugin_store",
    "runtime.plugin_store_usage",
    "runtime.plugin_kv",
    "runtime.plugin_kv_usage",
];

/// Copies the state file at `from` into the empty database `to`, then checks every table.
/// The report says how each table compared; [`CopyReport::check`] turns a difference
/// into an error.
pub fn copy(from: &Path, to: &PgOptions) -> Result<CopyReport, CopyError> {
    if !from.is_file() {
        return Err(CopyError::Missing {
            path: from.to_path_buf(),
        });
    }
    // Held to the end: redb's lock keeps daemons off the file while it is copied.
    let file = StateFile::open(from, "tandem state copy")?;
    let db = file.database();
    check_layout(db, from)?;
    let pg = Pg::connect(to)?;
    copy_into(db, from, &pg)
}

fn check_layout(db: &redb::Database, path: &Path) -> Result<(), CopyError> {
    let read = |e: redb::Error| read_err(path, e);
    let tx = db.begin_read().map_err(|e| read(e.into()))?;
    let meta = TableDefinition::<&str, &[u8]>::new(TABLE_NAMES[0]);
    let t = match tx.open_table(meta) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(read(e.into())),
    };
    let found = t
        .get("\0schema")
        .map_err(|e| read(e.into()))?
        .and_then(|v| serde_json::from_slice::<u32>(v.value()).ok());
    match found {
        Some(found) if found > SCHEMA_VERSION => Err(CopyError::NewerLayout {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        }),
        _ => Ok(()),
    }
}

fn read_err(path: &Path, e: redb::Error) -> CopyError {
    CopyError::Read {
        path: path.to_path_buf(),
        message: crate::sync::state::store_message(&e),
    }
}

/// The copy proper: one transaction on `pg`, then the check.
fn copy_into(db: &redb::Database, path: &Path, pg: &Arc<Pg>) -> Result<CopyReport, CopyError> {
    let c = pg.client_blocking()?;
    // EXCLUSIVE: nobody else writes these tables until we commit (readers still may), so
    // the emptiness check below holds until then.
    pg.batch(
        &c,
        "BEGIN; SET LOCAL lock_timeout = '30s'; \
         LOCK TABLE tandem_kv, tandem_plugin_store, tandem_plugin_usage, tandem_leases, tandem_daemons, \
         tandem_budgets, tandem_budget_grants IN EXCLUSIVE MODE",
    )?;
    let written = (|| {
        let busy = pg.query(&c, NON_EMPTY, params![])?;
        if !busy.is_empty() {
            let tables: Vec<String> = busy.iter().map(|r| r.get(0)).collect();
            return Err(CopyError::NotEmpty {
                target: pg.target().to_string(),
                tables: tables.join(", "),
            });
        }
        write_all(db, path, pg, &c)
    })();
    let file = match written {
        Ok(file) => file,
        Err(e) => {
            let _ = pg.batch(&c, "ROLLBACK");
            return Err(e);
        }
    };
    pg.batch(&c, "COMMIT")?;
    drop(c);
    let copied = digests_in(pg)?;
    let tables = file
        .into_iter()
        .zip(copied)
        .map(|((table, file), (_, copied))| TableCheck {
            table,
            file,
            copied,
        })
        .collect();
    Ok(CopyReport {
        target: pg.target().to_string(),
        tables,
    })
}

/// The tables of the target that hold rows.
const NON_EMPTY: &str = "SELECT 'tandem_kv' WHERE EXISTS (SELECT 1 FROM tandem_kv) \
     UNION ALL SELECT 'tandem_plugin_store' WHERE EXISTS (SELECT 1 FROM tandem_plugin_store) \
     UNION ALL SELECT 'tandem_plugin_usage' WHERE EXISTS (SELECT 1 FROM tandem_plugin_usage) \
     UNION ALL SELECT 'tandem_leases' WHERE EXISTS (SELECT 1 FROM tandem_leases) \
     UNION ALL SELECT 'tandem_daemons' WHERE EXISTS (SELECT 1 FROM tandem_daemons) \
     UNION ALL SELECT 'tandem_budgets' WHERE EXISTS (SELECT 1 FROM tandem_budgets) \
     UNION ALL SELECT 'tandem_budget_grants' WHERE EXISTS (SELECT 1 FROM tandem_budget_grants)";

/// A column of text, of bytes, of numbers (one array parameter of an insert).
type Texts = Vec<String>;
type Bytes = Vec<Vec<u8>>;
type Numbers = Vec<i64>;

/// Rows waiting to be inserted, by destination, as columns.
#[derive(Default)]
struct Pending {
    kv: (Texts, Bytes, Bytes),
    store: (Texts, Texts, Bytes, Bytes),
    usage: (Texts, Texts, Numbers, Numbers),
    rows: usize,
    bytes: usize,
}

impl Pending {
    fn added(&mut self, pg: &Pg, c: &Conn, bytes: usize) -> Result<(), PgError> {
        self.rows += 1;
        self.bytes += bytes;
        if self.rows >= BATCH_ROWS || self.bytes >= BATCH_BYTES {
            self.flush(pg, c)?;
        }
        Ok(())
    }

    fn flush(&mut self, pg: &Pg, c: &Conn) -> Result<(), PgError> {
        let p = std::mem::take(self);
        let mut statements: Vec<(&'static str, Params)> = Vec::new();
        if !p.kv.0.is_empty() {
            statements.push((
                "INSERT INTO tandem_kv (tbl, k, v) SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[])",
                params![p.kv.0, p.kv.1, p.kv.2],
            ));
        }
        if !p.store.0.is_empty() {
            statements.push((
                "INSERT INTO tandem_plugin_store (owner, connection, k, v) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[])",
                params![p.store.0, p.store.1, p.store.2, p.store.3],
            ));
        }
        if !p.usage.0.is_empty() {
            statements.push((
                "INSERT INTO tandem_plugin_usage (owner, connection, bytes, keys) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])",
                params![p.usage.0, p.usage.1, p.usage.2, p.usage.3],
            ));
        }
        for (sql, params) in statements {
            pg.execute(c, sql, params)?;
        }
        Ok(())
    }
}

/// Reads every table of the file, queues its rows for the target and digests them.
fn write_all(
    db: &redb::Database,
    path: &Path,
    pg: &Pg,
    c: &Conn,
) -> Result<Vec<(&'static str, TableDigest)>, CopyError> {
    let read = |e: redb::Error| read_err(path, e);
    let tx = db.begin_read().map_err(|e| read(e.into()))?;
    let mut out = Vec::new();
    let mut pending = Pending::default();
    for &name in &TABLE_NAMES {
        let mut d = Digester::default();
        match tx.open_table(TableDefinition::<&str, &[u8]>::new(name)) {
            Ok(t) => {
                for row in t.iter().map_err(|e| read(e.into()))? {
                    let (k, v) = row.map_err(|e| read(e.into()))?;
                    let (k, v) = (k.value(), v.value());
                    d.row(&[k.as_bytes()], v);
                    pending.kv.0.push(name.to_string());
                    pending.kv.1.push(k.as_bytes().to_vec());
                    pending.kv.2.push(v.to_vec());
                    pending.added(pg, c, k.len() + v.len())?;
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(read(e.into())),
        }
        out.push((name, d.finish()));
    }
    for (table, legacy) in [(KV, false), (LEGACY_KV, true)] {
        let mut d = Digester::default();
        match tx.open_table(table) {
            Ok(t) => {
                for row in t.iter().map_err(|e| read(e.into()))? {
                    let (k, v) = row.map_err(|e| read(e.into()))?;
                    let ((owner, conn, key), v) = (k.value(), v.value());
                    d.row(&[owner.as_bytes(), conn.as_bytes(), key.as_bytes()], v);
                    pending.store.0.push(owner_in_pg(owner, legacy));
                    pending.store.1.push(conn.to_string());
                    pending.store.2.push(key.as_bytes().to_vec());
                    pending.store.3.push(v.to_vec());
                    pending.added(pg, c, key.len() + v.len())?;
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(read(e.into())),
        }
        out.push((PLUGIN_TABLES[if legacy { 2 } else { 0 }], d.finish()));
        let usage_table = if legacy { LEGACY_USAGE } else { USAGE };
        let mut d = Digester::default();
        match tx.open_table(usage_table) {
            Ok(t) => {
                for row in t.iter().map_err(|e| read(e.into()))? {
                    let (k, v) = row.map_err(|e| read(e.into()))?;
                    let ((owner, conn), (bytes, keys)) = (k.value(), v.value());
                    d.row(
                        &[owner.as_bytes(), conn.as_bytes()],
                        &usage_bytes(bytes, keys),
                    );
                    let big = |n: u64| {
                        i64::try_from(n).map_err(|_| CopyError::Read {
                            path: path.to_path_buf(),
                            message: format!(
                                "plugin storage usage {n} of {owner}/{conn} is out of range"
                            ),
                        })
                    };
                    pending.usage.0.push(owner_in_pg(owner, legacy));
                    pending.usage.1.push(conn.to_string());
                    pending.usage.2.push(big(bytes)?);
                    pending.usage.3.push(big(keys)?);
                    pending.added(pg, c, 16)?;
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(read(e.into())),
        }
        out.push((PLUGIN_TABLES[if legacy { 3 } else { 1 }], d.finish()));
    }
    pending.flush(pg, c)?;
    // Report order: the engine's tables, then store, usage, legacy store, legacy usage.
    Ok(out)
}

fn owner_in_pg(owner: &str, legacy: bool) -> String {
    if legacy {
        format!("{LEGACY_OWNER}{owner}")
    } else {
        owner.to_string()
    }
}

/// Every table's digest as PostgreSQL holds it, in [`copy`]'s report order. Owners and
/// connections sort bytewise (`COLLATE "C"`) as redb sorts them; keys are `bytea`.
pub fn digests_in(pg: &Pg) -> Result<Vec<(&'static str, TableDigest)>, PgError> {
    const KV_ROWS: &str = "SELECT k, v FROM tandem_kv WHERE tbl = $1 ORDER BY k";
    const STORE_ROWS: &str = "SELECT owner, connection, k, v FROM tandem_plugin_store \
         WHERE (left(owner, 7) = 'legacy:') = $1 ORDER BY owner COLLATE \"C\", connection COLLATE \"C\", k";
    const USAGE_ROWS: &str = "SELECT owner, connection, bytes, keys FROM tandem_plugin_usage \
         WHERE (left(owner, 7) = 'legacy:') = $1 ORDER BY owner COLLATE \"C\", connection COLLATE \"C\"";
    let c = pg.client_blocking()?;
    let mut out = Vec::new();
    for &name in &TABLE_NAMES {
        out.push((name, digest_query(pg, &c, KV_ROWS, params![name], false)?));
    }
    for (i, legacy) in [(0, false), (2, true)] {
        let store = digest_query(pg, &c, STORE_ROWS, params![legacy], legacy)?;
        out.push((PLUGIN_TABLES[i], store));
        let usage = digest_query(pg, &c, USAGE_ROWS, params![legacy], legacy)?;
        out.push((PLUGIN_TABLES[i + 1], usage));
    }
    // The order `write_all` reports in.
    Ok(out)
}

/// Streams one query's rows into a digest. Rows are `(k, v)` of the engine's table,
/// `(owner, connection, k, v)` of the store or `(owner, connection, bytes, keys)` of the
/// usage; a legacy owner loses its prefix (the file has the bare name).
fn digest_query(
    pg: &Pg,
    c: &Conn,
    sql: &'static str,
    params: Params,
    legacy: bool,
) -> Result<TableDigest, PgError> {
    pg.count(1, 0);
    let c = c.clone();
    pg.wait(async move {
        let st = c.prepare_cached(sql).await?;
        let mut rows = Box::pin(
            c.query_raw(
                &st,
                params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)),
            )
            .await?,
        );
        let mut d = Digester::default();
        while let Some(row) = rows.try_next().await? {
            match row.len() {
                2 => d.row(&[row.get::<_, &[u8]>(0)], row.get::<_, &[u8]>(1)),
                _ => {
                    let owner: &str = row.get(0);
                    let owner = if legacy {
                        owner.strip_prefix(LEGACY_OWNER).unwrap_or(owner)
                    } else {
                        owner
                    };
                    let conn: &str = row.get(1);
                    match row.try_get::<_, &[u8]>(3) {
                        Ok(v) => d.row(
                            &[owner.as_bytes(), conn.as_bytes(), row.get::<_, &[u8]>(2)],
                            v,
                        ),
                        Err(_) => {
                            let (bytes, keys): (i64, i64) = (row.get(2), row.get(3));
                            d.row(
                                &[owner.as_bytes(), conn.as_bytes()],
                                &usage_bytes(bytes as u64, keys as u64),
                            );
                        }
                    }
                }
            }
        }
        Ok(d.finish())
    })
    .map_err(|e: tokio_postgres::Error| pg.error(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::{self, block_on, pg_options};
    use crate::db::{Db, TlsMode};
    use crate::runtime::storage::{Owner, Quota, StorageCtx};
    use crate::sync::baseline::Link;
    use crate::sync::model::Side;
    use crate::sync::state::{Event, Flow, RunKind, SyncStore};

    const Q: Option<Quota> = Some(Quota {
        bytes: 10_000,
        keys: 100,
    });

    fn target() -> PgOptions {
        let mut opts = pg_options();
        opts.pool_size = 2;
        opts
    }

    fn link(key: &str, a: &str, b: &str) -> Link {
        testing::link(key, Some(a), Some(b))
    }

    /// An install: two syncs with links, cursors, runs and events; a plugin's storage;
    /// and a legacy (name-keyed) namespace not taken over yet.
    fn seed(path: &Path) {
        let file = StateFile::open(path, "test").unwrap();
        let db = file.database().clone();
        let store = SyncStore::open(db.clone()).unwrap();
        for sync in ["crm-mkt", "crm-google"] {
            store
                .write(sync, |t| {
                    t.put_link(&link("0/a/1", "1", "9"), ("leads", "contacts"))?;
                    t.put_link(&link("0/a/2", "2", "8"), ("leads", "contacts"))?;
                    t.set_cursor(0, Side::A, Some("cursor-a"))?;
                    t.set_cursor(0, Side::B, Some("cursor-b"))?;
                    let run = t.begin_run(RunKind::Full, 100)?;
                    for seq in 0..3 {
                        t.put_event(&Event {
                            run: run.id,
                            seq,
                            direction: Flow::AToB,
                            action: "created".into(),
                            entity: "contacts".into(),
                            records: vec![format!("a:{seq}")],
                            link: Some("0/a/1".into()),
                            reason: "new".into(),
                        })?;
                    }
                    Ok(())
                })
                .unwrap();
        }
        block_on(async {
            let s = StorageCtx::new(
                db.clone(),
                &Owner::Operator("crm".into()),
                "fs".into(),
                "conn".into(),
                Q,
            );
            s.set("etag".into(), b"W/1".to_vec()).await.unwrap();
            s.set("page".into(), b"7".to_vec()).await.unwrap();
        });
        let tx = db.begin_write().unwrap();
        {
            let mut kv = tx.open_table(LEGACY_KV).unwrap();
            kv.insert(("old", "conn2", "cursor"), b"42".as_slice())
                .unwrap();
            let mut usage = tx.open_table(LEGACY_USAGE).unwrap();
            usage.insert(("old", "conn2"), (8, 1)).unwrap();
        }
        tx.commit().unwrap();
    }

    fn rows_in(pg: &Pg) -> Vec<(&'static str, TableDigest)> {
        digests_in(pg).unwrap()
    }

    #[test]
    fn a_copy_carries_every_row_and_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        seed(&path);
        let to = target();
        let report = copy(&path, &to).unwrap();
        report.check().unwrap();
        assert_eq!(report.tables.len(), 13);
        for t in &report.tables {
            assert!(t.ok(), "{t:?}");
        }
        let rows = |name: &str| {
            report
                .tables
                .iter()
                .find(|t| t.table == name)
                .unwrap()
                .copied
                .rows
        };
        assert_eq!(rows("tandem_sync_links"), 4);
        assert_eq!(rows("tandem_sync_cursors"), 4);
        assert_eq!(rows("tandem_sync_runs"), 2);
        assert_eq!(rows("tandem_sync_events"), 6);
        assert_eq!(rows("runtime.plugin_store"), 2);
        assert_eq!(rows("runtime.plugin_store_usage"), 1);
        assert_eq!(rows("runtime.plugin_kv"), 1);

        // The engine reads the same state from both.
        let pg = Pg::connect(&to).unwrap();
        let file = StateFile::open(&path, "test").unwrap();
        let (from_redb, from_pg) = (
            SyncStore::open(file.database().clone()).unwrap(),
            SyncStore::open(pg.clone()).unwrap(),
        );
        for sync in ["crm-mkt", "crm-google"] {
            assert_eq!(from_redb.links(sync).unwrap(), from_pg.links(sync).unwrap());
            assert_eq!(from_pg.links(sync).unwrap().len(), 2);
            assert_eq!(from_redb.runs(sync).unwrap(), from_pg.runs(sync).unwrap());
            assert_eq!(
                from_redb.events(sync, 1).unwrap(),
                from_pg.events(sync, 1).unwrap()
            );
            assert_eq!(from_pg.events(sync, 1).unwrap().len(), 3);
            for side in [Side::A, Side::B] {
                assert_eq!(
                    from_redb.cursor(sync, 0, side).unwrap(),
                    from_pg.cursor(sync, 0, side).unwrap()
                );
            }
            assert_eq!(
                from_pg.cursor(sync, 0, Side::B).unwrap().as_deref(),
                Some("cursor-b")
            );
        }
        // So does a plugin, with its usage; the legacy namespace waits for its plugin.
        block_on(async {
            let ctx = |owner: &str, legacy: &str, conn: &str| {
                StorageCtx::new(
                    Db::Postgres(pg.clone()),
                    &Owner::Operator(owner.into()),
                    legacy.into(),
                    conn.into(),
                    Q,
                )
            };
            let s = ctx("crm", "fs", "conn");
            assert_eq!(s.get("page".into()).await.unwrap(), Some(b"7".to_vec()));
            assert_eq!(s.usage().await.unwrap(), (4 + 3 + 4 + 1, 2));
            let stranger = ctx("x", "evil", "conn2");
            assert_eq!(stranger.get("cursor".into()).await.unwrap(), None);
            let heir = ctx("mine", "old", "conn2");
            assert_eq!(
                heir.get("cursor".into()).await.unwrap(),
                Some(b"42".to_vec())
            );
            assert_eq!(heir.usage().await.unwrap(), (8, 1));
        });
    }

    #[test]
    fn a_second_copy_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        seed(&path);
        let to = target();
        copy(&path, &to).unwrap().check().unwrap();
        let pg = Pg::connect(&to).unwrap();
        let before = rows_in(&pg);
        let err = copy(&path, &to).unwrap_err();
        assert!(matches!(err, CopyError::NotEmpty { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("tandem_kv") && msg.contains("nothing was written"),
            "{msg}"
        );
        assert_eq!(rows_in(&pg), before);

        // A database a daemon opened (the engine's layout row) counts as in use too.
        let used = target();
        SyncStore::open(Pg::connect(&used).unwrap()).unwrap();
        assert!(matches!(
            copy(&path, &used).unwrap_err(),
            CopyError::NotEmpty { .. }
        ));
    }

    /// A statement refused halfway (here by a trigger on the last table written) leaves
    /// nothing of the copy behind, and the copy can simply run again.
    #[test]
    fn a_failed_copy_writes_nothing_and_can_run_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        seed(&path);
        let to = target();
        let pg = Pg::connect(&to).unwrap();
        let c = pg.client_blocking().unwrap();
        pg.batch(
            &c,
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
             CREATE TRIGGER refuse BEFORE INSERT ON tandem_plugin_usage FOR EACH ROW EXECUTE FUNCTION refuse()",
        )
        .unwrap();
        let err = copy(&path, &to).unwrap_err();
        assert!(
            matches!(err, CopyError::Target(_)) && err.to_string().contains("refused by the test"),
            "{err}"
        );
        assert!(rows_in(&pg).iter().all(|(_, d)| d.rows == 0));
        pg.batch(&c, "DROP TRIGGER refuse ON tandem_plugin_usage")
            .unwrap();
        copy(&path, &to).unwrap().check().unwrap();
        assert!(rows_in(&pg).iter().any(|(_, d)| d.rows > 0));
    }

    #[test]
    fn a_file_in_use_is_refused_before_the_target_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        seed(&path);
        let held = StateFile::open(&path, "tandem run").unwrap();
        // An unreachable target: the file's lock is checked first.
        let mut to = PgOptions::new("postgres://u:pw@127.0.0.1:1/none");
        to.tls = TlsMode::Disable;
        let err = copy(&path, &to).unwrap_err();
        assert!(
            matches!(err, CopyError::StateFile(StateFileError::Locked { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("in use"), "{err}");
        drop(held);
        let err = copy(&dir.path().join("nope.redb"), &to).unwrap_err();
        assert!(matches!(err, CopyError::Missing { .. }), "{err}");
        assert!(!dir.path().join("nope.redb").exists());
    }

    #[test]
    fn an_empty_file_copies_to_empty_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        drop(redb::Database::create(&path).unwrap());
        let report = copy(&path, &target()).unwrap();
        report.check().unwrap();
        assert!(report.tables.iter().all(|t| t.copied.rows == 0));
    }

    #[test]
    fn a_difference_names_the_table() {
        let d = |rows: u64, b: u8| TableDigest {
            rows,
            sha256: [b; 32],
        };
        let report = CopyReport {
            target: "h:5432/db".into(),
            tables: vec![
                TableCheck {
                    table: "tandem_sync_links",
                    file: d(2, 1),
                    copied: d(2, 1),
                },
                TableCheck {
                    table: "tandem_sync_runs",
                    file: d(3, 1),
                    copied: d(2, 2),
                },
            ],
        };
        let err = report.check().unwrap_err().to_string();
        assert!(
            err.contains("tandem_sync_runs") && err.contains("3 rows"),
            "{err}"
        );
    }

    /// The digest covers order, keys and values: any change shows.
    #[test]
    fn the_digest_sees_every_change() {
        let digest = |rows: &[(&[u8], &[u8])]| {
            let mut d = Digester::default();
            for (k, v) in rows {
                d.row(&[k], v);
            }
            d.finish()
        };
        let base = digest(&[(b"a", b"1"), (b"b", b"2")]);
        assert_ne!(base, digest(&[(b"b", b"2"), (b"a", b"1")]));
        assert_ne!(base, digest(&[(b"a", b"1"), (b"b", b"3")]));
        assert_ne!(base, digest(&[(b"a", b"1b"), (b"", b"2")]));
        assert_ne!(base, digest(&[(b"a", b"1")]));
    }
}
