//! The `storage` host interface: key-value storage in the state database ([`Db`]: the
//! redb file, or PostgreSQL for a fleet), one namespace per (owner, connection) chosen
//! by the host.
//!
//! The owner is something the plugin cannot choose: the operator's name for the plugin
//! (`[plugins.NAME]`), or, for a plugin run outside a config, its sha256. (Before, the
//! manifest's self-declared name keyed it, so another plugin declaring that name and
//! pointed at the connection read its data; such legacy namespaces are moved to the new
//! key the first time the connection's plugin, declaring that same name, uses storage.)
//!
//! The database is the caller's (the sync engine keeps its own tables in the same file);
//! on redb this module owns the tables `KV` and `USAGE` (and reads and empties the legacy
//! ones), on PostgreSQL the tables `tandem_plugin_store` and `tandem_plugin_usage`. Usage
//! (bytes and keys) is kept per namespace in the same write transaction as the data, so
//! quotas are exact; on PostgreSQL a write first locks the namespace's usage row, so two
//! daemons writing one namespace take turns and cannot overshoot it together. redb calls
//! run on tokio's blocking pool (a commit includes an fsync); PostgreSQL calls run on the
//! pool's own runtime ([`Pg::run_async`]). Without a storage grant a plugin sees nothing:
//! reads find no value, listings are empty, writes are refused, and what an earlier grant
//! stored is kept.

use std::ops::Bound;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::bindings::storage::{Host, KeyPage, StorageError};
use super::state::HostState;
use crate::db::{Db, Pg, PgError};
use tokio_postgres::types::ToSql;

/// Values: (owner, connection, key) -> bytes.
pub(crate) const KV: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("runtime.plugin_store");
/// Usage: (owner, connection) -> (bytes, keys).
pub(crate) const USAGE: TableDefinition<(&str, &str), (u64, u64)> =
    TableDefinition::new("runtime.plugin_store_usage");
/// Legacy values, keyed by the manifest's name: (name, connection, key) -> bytes.
pub(crate) const LEGACY_KV: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("runtime.plugin_kv");
/// Legacy usage: (name, connection) -> (bytes, keys).
pub(crate) const LEGACY_USAGE: TableDefinition<(&str, &str), (u64, u64)> =
    TableDefinition::new("runtime.plugin_kv_usage");

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest value, in bytes (the namespace quota may be lower).
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Most keys returned by one `list-keys` call.
pub const MAX_PAGE: u32 = 1000;

/// Effective storage quota of a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Bytes of keys plus values.
    pub bytes: u64,
    /// Number of keys.
    pub keys: u64,
}

/// Who owns a storage namespace (with the connection id): never the plugin's own word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// The operator's name for the plugin, `[plugins.NAME]`.
    Operator(String),
    /// The plugin's sha256 (a plugin run outside a config).
    Digest([u8; 32]),
}

impl Owner {
    /// The key text; the prefixes keep the two kinds apart.
    pub(crate) fn key(&self) -> String {
        match self {
            Owner::Operator(name) => format!("plugin:{name}"),
            Owner::Digest(sha) => format!("sha256:{}", hex::encode(sha)),
        }
    }
}

/// One connection's namespace.
pub(crate) struct StorageCtx {
    db: Db,
    owner: Arc<str>,
    connection: Arc<str>,
    /// `None`: no storage granted; reads see nothing, writes are refused.
    quota: Option<Quota>,
    /// Why a write is refused without a grant: the operator's fix, not the record's.
    ungranted: Arc<str>,
    /// The manifest name whose legacy namespace this one takes over, once.
    legacy: Arc<str>,
    migrated: Moved,
}

/// Whether a namespace's legacy namespace was moved: shared by every context of the same
/// namespace in a process, so that the move is tried once, not at every run.
pub(crate) type Moved = Arc<tokio::sync::OnceCell<()>>;

impl StorageCtx {
    pub(crate) fn new(
        db: impl Into<Db>,
        owner: &Owner,
        legacy_name: Arc<str>,
        connection: Arc<str>,
        quota: Option<Quota>,
    ) -> Self {
        Self {
            db: db.into(),
            owner: owner.key().into(),
            ungranted: no_grant_message(owner).into(),
            connection,
            quota,
            legacy: legacy_name,
            migrated: Moved::default(),
        }
    }

    /// Shares `moved` with the other contexts of this namespace (the runtime keeps one
    /// per namespace).
    pub(crate) fn moved_once_per(mut self, moved: Moved) -> Self {
        self.migrated = moved;
        self
    }

    fn namespace(&self) -> Namespace {
        Namespace {
            db: self.db.clone(),
            plugin: self.owner.clone(),
            connection: self.connection.clone(),
        }
    }

    /// Moves the legacy namespace (keyed by the manifest's name) to this one, the first
    /// time storage is used with a grant. A failure is logged, never the plugin's.
    /// Legacy namespaces come from redb files written before storage was keyed by its
    /// operator; a PostgreSQL database holds them only when `tandem state copy` brought
    /// them from such a file (under owner `legacy:NAME`, see `db::copy`).
    async fn migrate(&self) {
        self.migrated
            .get_or_init(|| async {
                let legacy = self.legacy.clone();
                let moved = match &self.db {
                    Db::Redb(db) => {
                        let ns = RedbNamespace {
                            db: db.clone(),
                            plugin: self.owner.clone(),
                            connection: self.connection.clone(),
                        };
                        blocking(move || ns.take_legacy(&legacy)).await
                    }
                    Db::Postgres(pg) => self
                        .namespace()
                        .pg(pg)
                        .take_legacy(&legacy)
                        .await
                        .map_err(pg_unavailable),
                };
                if let Err(e) = moved {                    tracing::warn!(connection = %self.connection, error = ?e, "cannot move the plugin's storage to its new namespace");
                }
            })
            .await;
    }

    /// Reads a value; nothing without a storage grant.
    pub(crate) async fn get(&self, key: String) -> Result<Option<Vec<u8>>, StorageError> {
        check_key(&key)?;
        if self.quota.is_none() {
            return Ok(None);
        }
        self.migrate().await;
        let ns = self.namespace();
        ns.get(key).await
    }

    /// Writes a value within the quota.
    pub(crate) async fn set(&self, key: String, value: Vec<u8>) -> Result<(), StorageError> {
        check_key(&key)?;
        let Some(quota) = self.quota else {
            return Err(StorageError::QuotaExceeded(self.ungranted.to_string()));
        };
        if value.len() > MAX_VALUE_BYTES {
            return Err(StorageError::TooLarge(format!(
                "value of {} bytes exceeds the {MAX_VALUE_BYTES}-byte limit",
                value.len()
            )));
        }
        self.migrate().await;
        let ns = self.namespace();
        ns.set(key, value, quota).await
    }

    /// Deletes a value; whether it existed.
    pub(crate) async fn delete(&self, key: String) -> Result<bool, StorageError> {
        check_key(&key)?;
        if self.quota.is_none() {
            return Ok(false);
        }
        self.migrate().await;
        let ns = self.namespace();
        ns.delete(key).await
    }

    /// Lists keys with `prefix` after `cursor`.
    pub(crate) async fn list_keys(
        &self,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<KeyPage, StorageError> {
        if let Some(c) = &cursor
            && !c.starts_with(&prefix)
        {
            return Err(StorageError::InvalidKey(
                "the cursor does not belong to this prefix".into(),
            ));
        }
        if self.quota.is_none() {
            return Ok(KeyPage {
                keys: Vec::new(),
                next_cursor: None,
            });
        }
        self.migrate().await;
        let limit = if limit == 0 { 100 } else { limit.min(MAX_PAGE) } as usize;
        let ns = self.namespace();
        ns.list(prefix, cursor, limit).await
    }

    /// Bytes and keys in use.
    #[cfg(test)]
    pub(crate) async fn usage(&self) -> Result<(u64, u64), StorageError> {
        let ns = self.namespace();
        ns.usage().await
    }
}

fn check_key(key: &str) -> Result<(), StorageError> {
    if key.is_empty() {
        return Err(StorageError::InvalidKey("the key is empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(StorageError::TooLarge(format!(
            "key of {} bytes exceeds the {MAX_KEY_BYTES}-byte limit",
            key.len()
        )));
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StorageError::Unavailable(format!(
            "storage task failed: {e}"
        )))
    })
}

fn unavailable(e: impl Into<redb::Error>) -> StorageError {
    // The state file's first I/O error explains redb's later "previous I/O error".
    let e = e.into();
    crate::sync::state::remember_io(&e);
    StorageError::Unavailable(format!(
        "storage failed: {}",
        crate::sync::state::store_message(&e)
    ))
}

/// One namespace on either backend.
struct Namespace {
    db: Db,
    plugin: Arc<str>,
    connection: Arc<str>,
}

impl Namespace {
    fn redb(&self, db: &Arc<Database>) -> RedbNamespace {
        RedbNamespace {
            db: db.clone(),
            plugin: self.plugin.clone(),
            connection: self.connection.clone(),
        }
    }

    fn pg(&self, pg: &Arc<Pg>) -> PgNamespace {
        PgNamespace {
            pg: pg.clone(),
            owner: self.plugin.to_string(),
            connection: self.connection.to_string(),
        }
    }

    async fn get(&self, key: String) -> Result<Option<Vec<u8>>, StorageError> {
        match &self.db {
            Db::Redb(db) => {
                let ns = self.redb(db);
                blocking(move || ns.get(&key)).await
            }
            Db::Postgres(pg) => self.pg(pg).get(key).await.map_err(pg_unavailable),
        }
    }

    #[cfg(test)]
    async fn usage(&self) -> Result<(u64, u64), StorageError> {
        match &self.db {
            Db::Redb(db) => {
                let ns = self.redb(db);
                blocking(move || ns.usage()).await
            }
            Db::Postgres(pg) => self.pg(pg).usage().await.map_err(pg_unavailable),
        }
    }

    async fn set(&self, key: String, value: Vec<u8>, quota: Quota) -> Result<(), StorageError> {
        match &self.db {
            Db::Redb(db) => {
                let ns = self.redb(db);
                blocking(move || ns.set(&key, &value, quota)).await
            }
            Db::Postgres(pg) => match self.pg(pg).set(key, value, quota).await {
                Ok(r) => r,
                Err(e) => Err(pg_unavailable(e)),
            },
        }
    }

    async fn delete(&self, key: String) -> Result<bool, StorageError> {
        match &self.db {
            Db::Redb(db) => {
                let ns = self.redb(db);
                blocking(move || ns.delete(&key)).await
            }
            Db::Postgres(pg) => self.pg(pg).delete(key).await.map_err(pg_unavailable),
        }
    }

    async fn list(
        &self,
        prefix: String,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<KeyPage, StorageError> {
        match &self.db {
            Db::Redb(db) => {
                let ns = self.redb(db);
                blocking(move || ns.list(&prefix, cursor.as_deref(), limit)).await
            }
            Db::Postgres(pg) => self
                .pg(pg)
                .list(prefix, cursor, limit)
                .await
                .map_err(pg_unavailable),
        }
    }
}

/// The refusal of a write without a storage grant. It names the operator's setting, since
/// neither the record being synced nor the plugin's manifest can fix it.
fn no_grant_message(owner: &Owner) -> String {
    match owner {
        Owner::Operator(name) => format!(
            "no storage grant: the operator has not granted storage to plugin `{name}`; grant it in the config with storage-quota = \"1MiB\" under [plugins.{name}.grant]"
        ),
        Owner::Digest(_) => {
            "no storage grant: the operator has not granted storage to this plugin (a plugin run outside a config gets none)".into()
        }
    }
}

fn pg_unavailable(e: PgError) -> StorageError {
    StorageError::Unavailable(format!("storage failed: {e}"))
}

/// The message of a refused write (the same on both backends).
fn over_quota(
    quota: Quota,
    bytes: u64,
    entry: u64,
    new_bytes: u64,
    new_keys: u64,
) -> Option<StorageError> {
    if new_bytes > quota.bytes {
        return Some(StorageError::QuotaExceeded(format!(
            "storage quota of {} bytes reached ({bytes} in use, this write needs {entry})",
            quota.bytes
        )));
    }
    if new_keys > quota.keys {
        return Some(StorageError::QuotaExceeded(format!(
            "storage quota of {} keys reached",
            quota.keys
        )));
    }
    None
}

/// A namespace in the redb file (synchronous: called on the blocking pool).
struct RedbNamespace {
    db: Arc<Database>,
    plugin: Arc<str>,
    connection: Arc<str>,
}

impl RedbNamespace {
    fn key<'a>(&'a self, key: &'a str) -> (&'a str, &'a str, &'a str) {
        (&self.plugin, &self.connection, key)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = match txn.open_table(KV) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        let value = table.get(self.key(key)).map_err(unavailable)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    #[cfg(test)]
    fn usage(&self) -> Result<(u64, u64), StorageError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = match txn.open_table(USAGE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok((0, 0)),
            Err(e) => return Err(unavailable(e)),
        };
        let usage = table
            .get((&*self.plugin, &*self.connection))
            .map_err(unavailable)?;
        Ok(usage.map(|u| u.value()).unwrap_or((0, 0)))
    }

    fn set(&self, key: &str, value: &[u8], quota: Quota) -> Result<(), StorageError> {
        let txn = self.db.begin_write().map_err(unavailable)?;
        {
            let mut kv = txn.open_table(KV).map_err(unavailable)?;
            let mut usage = txn.open_table(USAGE).map_err(unavailable)?;
            let ns = (&*self.plugin, &*self.connection);
            let (bytes, keys) = usage
                .get(ns)
                .map_err(unavailable)?
                .map(|u| u.value())
                .unwrap_or((0, 0));
            let old = kv
                .get(self.key(key))
                .map_err(unavailable)?
                .map(|v| v.value().len() as u64);
            let entry = (key.len() + value.len()) as u64;
            let new_bytes = bytes - old.map_or(0, |o| o + key.len() as u64) + entry;
            let new_keys = keys + u64::from(old.is_none());
            if let Some(e) = over_quota(quota, bytes, entry, new_bytes, new_keys) {
                return Err(e);
            }
            kv.insert(self.key(key), value).map_err(unavailable)?;
            usage
                .insert(ns, (new_bytes, new_keys))
                .map_err(unavailable)?;
        }
        txn.commit().map_err(unavailable)
    }

    fn delete(&self, key: &str) -> Result<bool, StorageError> {
        let txn = self.db.begin_write().map_err(unavailable)?;
        let existed = {
            let mut kv = txn.open_table(KV).map_err(unavailable)?;
            let removed = kv
                .remove(self.key(key))
                .map_err(unavailable)?
                .map(|v| v.value().len() as u64);
            if let Some(len) = removed {
                let mut usage = txn.open_table(USAGE).map_err(unavailable)?;
                let ns = (&*self.plugin, &*self.connection);
                let (bytes, keys) = usage
                    .get(ns)
                    .map_err(unavailable)?
                    .map(|u| u.value())
                    .unwrap_or((0, 0));
                let freed = len + key.len() as u64;
                usage
                    .insert(ns, (bytes.saturating_sub(freed), keys.saturating_sub(1)))
                    .map_err(unavailable)?;
            }
            removed.is_some()
        };
        txn.commit().map_err(unavailable)?;
        Ok(existed)
    }

    /// Moves the legacy namespace `(name, connection)` here if this one is empty.
    fn take_legacy(&self, name: &str) -> Result<(), StorageError> {
        let legacy = {
            let txn = self.db.begin_read().map_err(unavailable)?;
            let table = match txn.open_table(LEGACY_KV) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
                Err(e) => return Err(unavailable(e)),
            };
            let mut out = Vec::new();
            let start = (name, &*self.connection, "");
            for entry in table.range(start..).map_err(unavailable)? {
                let (k, v) = entry.map_err(unavailable)?;
                let (n, c, key) = k.value();
                if n != name || c != &*self.connection {
                    break;
                }
                out.push((key.to_owned(), v.value().to_vec()));
            }
            out
        };
        if legacy.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(unavailable)?;
        {
            let mut kv = txn.open_table(KV).map_err(unavailable)?;
            let mut usage = txn.open_table(USAGE).map_err(unavailable)?;
            let ns = (&*self.plugin, &*self.connection);
            if usage.get(ns).map_err(unavailable)?.is_some() {
                // This namespace is in use already: leave the legacy one alone.
                return Ok(());
            }
            let mut old_kv = txn.open_table(LEGACY_KV).map_err(unavailable)?;
            let mut old_usage = txn.open_table(LEGACY_USAGE).map_err(unavailable)?;
            let mut bytes = 0u64;
            for (key, value) in &legacy {
                kv.insert(self.key(key), value.as_slice())
                    .map_err(unavailable)?;
                old_kv
                    .remove((name, &*self.connection, key.as_str()))
                    .map_err(unavailable)?;
                bytes += (key.len() + value.len()) as u64;
            }
            usage
                .insert(ns, (bytes, legacy.len() as u64))
                .map_err(unavailable)?;
            old_usage
                .remove((name, &*self.connection))
                .map_err(unavailable)?;
        }
        txn.commit().map_err(unavailable)?;
        tracing::info!(connection = %self.connection, owner = %self.plugin, keys = legacy.len(), "plugin storage moved to its operator-keyed namespace");
        Ok(())
    }

    fn list(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, StorageError> {
        let empty = KeyPage {
            keys: Vec::new(),
            next_cursor: None,
        };
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = match txn.open_table(KV) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(empty),
            Err(e) => return Err(unavailable(e)),
        };
        let start = match cursor {
            Some(c) => Bound::Excluded(self.key(c)),
            None => Bound::Included(self.key(prefix)),
        };
        let range = table
            .range((start, Bound::Unbounded))
            .map_err(unavailable)?;
        let mut keys = Vec::new();
        let mut more = false;
        for entry in range {
            let (k, _) = entry.map_err(unavailable)?;
            let (plugin, connection, key) = k.value();
            if plugin != &*self.plugin
                || connection != &*self.connection
                || !key.starts_with(prefix)
            {
                break;
            }
            if keys.len() == limit {
                more = true;
                break;
            }
            keys.push(key.to_owned());
        }
        let next_cursor = if more { keys.last().cloned() } else { None };
        Ok(KeyPage { keys, next_cursor })
    }
}

/// A namespace in PostgreSQL. Each call runs on the pool's runtime; a write is one
/// transaction that locks the namespace's usage row first.
struct PgNamespace {
    pg: Arc<Pg>,
    owner: String,
    connection: String,
}

impl PgNamespace {
    async fn get(self, key: String) -> Result<Option<Vec<u8>>, PgError> {
        let t = self.pg.target().to_string();
        let row = self
            .pg
            .run_async(move |pool| async move {
                let c = Pg::get(&pool, &t).await?;
                let st = c
                    .prepare_cached(
                        "SELECT v FROM tandem_plugin_store WHERE owner = $1 AND connection = $2 AND k = $3",
                    )
                    .await
                    .map_err(|e| Pg::query_error(&t, e))?;
                c.query_opt(&st, &[&self.owner, &self.connection, &key.as_bytes()])
                    .await
                    .map_err(|e| Pg::query_error(&t, e))
            })
            .await?;
        self.pg.count(1, 0);
        Ok(row.map(|r| r.get(0)))
    }

    #[cfg(test)]
    async fn usage(self) -> Result<(u64, u64), PgError> {
        let t = self.pg.target().to_string();
        let row = self
            .pg
            .run_async(move |pool| async move {
                let c = Pg::get(&pool, &t).await?;
                c.query_opt(
                    "SELECT bytes, keys FROM tandem_plugin_usage WHERE owner = $1 AND connection = $2",
                    &[&self.owner, &self.connection],
                )
                .await
                .map_err(|e| Pg::query_error(&t, e))
            })
            .await?;
        Ok(row.map_or((0, 0), |r| {
            (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64)
        }))
    }

    /// Moves the copied legacy namespace `(legacy:NAME, connection)` here if this one is
    /// empty: one statement, so all of it or nothing.
    async fn take_legacy(self, name: &str) -> Result<(), PgError> {
        let t = self.pg.target().to_string();
        let legacy = format!("{}{name}", crate::db::copy::LEGACY_OWNER);
        let (owner, connection) = (self.owner.clone(), self.connection.clone());
        let moved = self
            .pg
            .run_async(move |pool| async move {
                let c = Pg::get(&pool, &t).await?;
                let st = c
                    .prepare_cached(
                        "WITH moved AS (DELETE FROM tandem_plugin_store WHERE owner = $3 AND connection = $2 \
                              AND NOT EXISTS (SELECT 1 FROM tandem_plugin_usage WHERE owner = $1 AND connection = $2) \
                              RETURNING k, v), \
                         ins AS (INSERT INTO tandem_plugin_store (owner, connection, k, v) SELECT $1, $2, k, v FROM moved), \
                         u AS (INSERT INTO tandem_plugin_usage (owner, connection, bytes, keys) \
                              SELECT $1, $2, sum(octet_length(k) + octet_length(v)), count(*) FROM moved HAVING count(*) > 0), \
                         du AS (DELETE FROM tandem_plugin_usage WHERE owner = $3 AND connection = $2 AND EXISTS (SELECT 1 FROM moved)) \
                         SELECT count(*) FROM moved",
                    )
                    .await
                    .map_err(|e| Pg::query_error(&t, e))?;
                let row = c
                    .query_one(&st, &[&self.owner, &self.connection, &legacy])
                    .await
                    .map_err(|e| Pg::query_error(&t, e))?;
                Ok(row.get::<_, i64>(0))
            })
            .await?;
        self.pg.count(1, 0);
        if moved > 0 {
            tracing::info!(%connection, %owner, keys = moved, "plugin storage moved to its operator-keyed namespace");
        }
        Ok(())
    }

    /// `Ok(Err(_))`: refused by the quota, nothing written.
    async fn set(
        self,
        key: String,
        value: Vec<u8>,
        quota: Quota,
    ) -> Result<Result<(), StorageError>, PgError> {
        let t = self.pg.target().to_string();
        let out = self
            .pg
            .run_async(move |pool| async move {
                let q = |e| Pg::query_error(&t, e);
                let mut c = Pg::get(&pool, &t).await?;
                let tx = c.transaction().await.map_err(q)?;
                let (owner, conn, k) = (&self.owner, &self.connection, &key.as_bytes());
                // The usage row is created if missing and locked either way: every
                // writer of this namespace, in any daemon, waits here for the one
                // before it to commit, then reads what it left.
                let lock = tx
                    .prepare_cached(
                        "INSERT INTO tandem_plugin_usage (owner, connection, bytes, keys) VALUES ($1, $2, 0, 0) \
                         ON CONFLICT (owner, connection) DO UPDATE SET bytes = tandem_plugin_usage.bytes \
                         RETURNING bytes, keys",
                    )
                    .await
                    .map_err(q)?;
                let old = tx
                    .prepare_cached(
                        "SELECT octet_length(v) FROM tandem_plugin_store WHERE owner = $1 AND connection = $2 AND k = $3",
                    )
                    .await
                    .map_err(q)?;
                let usage = tx.query_one(&lock, &[owner, conn]).await.map_err(q)?;
                let old = tx.query_opt(&old, &[owner, conn, k]).await.map_err(q)?;
                let (bytes, keys) = (usage.get::<_, i64>(0) as u64, usage.get::<_, i64>(1) as u64);
                let old = old.map(|r| r.get::<_, i32>(0) as u64);
                let entry = (key.len() + value.len()) as u64;
                let new_bytes = bytes.saturating_sub(old.map_or(0, |o| o + key.len() as u64)) + entry;
                let new_keys = keys + u64::from(old.is_none());
                if let Some(refused) = over_quota(quota, bytes, entry, new_bytes, new_keys) {
                    tx.rollback().await.map_err(q)?;
                    return Ok((Err(refused), 3));
                }
                let put = tx
                    .prepare_cached(
                        "INSERT INTO tandem_plugin_store (owner, connection, k, v) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (owner, connection, k) DO UPDATE SET v = EXCLUDED.v",
                    )
                    .await
                    .map_err(q)?;
                let account = tx
                    .prepare_cached(
                        "UPDATE tandem_plugin_usage SET bytes = $3, keys = $4 WHERE owner = $1 AND connection = $2",
                    )
                    .await
                    .map_err(q)?;
                let (nb, nk) = (new_bytes as i64, new_keys as i64);
                // Sent together: the connection pipelines them.
                let put_params: [&(dyn ToSql + Sync); 4] = [owner, conn, k, &value];
                let usage_params: [&(dyn ToSql + Sync); 4] = [owner, conn, &nb, &nk];
                futures::try_join!(
                    tx.execute(&put, &put_params),
                    tx.execute(&account, &usage_params),
                )
                .map_err(q)?;
                tx.commit().await.map_err(q)?;
                Ok((Ok(()), 6))
            })
            .await?;
        let (result, statements) = out;
        self.pg
            .count(statements, if result.is_ok() { 3 } else { 1 });
        Ok(result)
    }

    async fn delete(self, key: String) -> Result<bool, PgError> {
        let t = self.pg.target().to_string();
        // One statement, so one transaction: the row and its share of the usage go
        // together.
        let removed = self
            .pg
            .run_async(move |pool| async move {
                let c = Pg::get(&pool, &t).await?;
                let st = c
                    .prepare_cached(
                        "WITH d AS (DELETE FROM tandem_plugin_store WHERE owner = $1 AND connection = $2 AND k = $3 \
                                    RETURNING octet_length(k) + octet_length(v) AS n), \
                              u AS (UPDATE tandem_plugin_usage SET bytes = greatest(bytes - d.n, 0), keys = greatest(keys - 1, 0) \
                                    FROM d WHERE owner = $1 AND connection = $2) \
                         SELECT count(*) FROM d",
                    )
                    .await
                    .map_err(|e| Pg::query_error(&t, e))?;
                let row = c
                    .query_one(&st, &[&self.owner, &self.connection, &key.as_bytes()])
                    .await
                    .map_err(|e| Pg::query_error(&t, e))?;
                Ok(row.get::<_, i64>(0))
            })
            .await?;
        self.pg.count(1, 2 * removed as u64);
        Ok(removed > 0)
    }

    /// Keys with `prefix` after `cursor` (or from `prefix`), in bytewise order as on
    /// redb: `bytea` compares bytes, whatever the database's collation.
    async fn list(
        self,
        prefix: String,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<KeyPage, PgError> {
        let t = self.pg.target().to_string();
        let rows = self
            .pg
            .run_async(move |pool| async move {
                let c = Pg::get(&pool, &t).await?;
                let (sql, start) = match &cursor {
                    Some(c) => (
                        "SELECT k FROM tandem_plugin_store WHERE owner = $1 AND connection = $2 AND k > $3 \
                         AND substr(k, 1, $4) = $5 ORDER BY k LIMIT $6",
                        c.as_bytes(),
                    ),
                    None => (
                        "SELECT k FROM tandem_plugin_store WHERE owner = $1 AND connection = $2 AND k >= $3 \
                         AND substr(k, 1, $4) = $5 ORDER BY k LIMIT $6",
                        prefix.as_bytes(),
                    ),
                };
                let st = c
                    .prepare_cached(sql)
                    .await
                    .map_err(|e| Pg::query_error(&t, e))?;
                // One more than asked: whether another page follows.
                let (plen, fetch) = (prefix.len() as i32, limit as i64 + 1);
                c.query(
                    &st,
                    &[&self.owner, &self.connection, &start, &plen, &prefix.as_bytes(), &fetch],
                )
                .await
                .map_err(|e| Pg::query_error(&t, e))
            })
            .await?;
        self.pg.count(1, 0);
        let mut keys = Vec::with_capacity(rows.len().min(limit));
        for r in &rows {
            let k: Vec<u8> = r.get(0);
            keys.push(String::from_utf8(k).map_err(|_| PgError::Query {
                target: self.pg.target().to_string(),
                message: "a key in tandem_plugin_store is not UTF-8 (written by something other than tandem?)".into(),
            })?);
        }
        let more = keys.len() > limit;
        keys.truncate(limit);
        let next_cursor = if more { keys.last().cloned() } else { None };
        Ok(KeyPage { keys, next_cursor })
    }
}

impl Host for HostState {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, StorageError>> {
        Ok(self.conn()?.storage.get(key).await)
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), StorageError>> {
        // No secret of the connection is stored, however the plugin got it.
        let (key, value) = (self.scrubbed(key), self.scrubbed_bytes(value));
        Ok(self.conn()?.storage.set(key, value).await)
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, StorageError>> {
        Ok(self.conn()?.storage.delete(key).await)
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<KeyPage, StorageError>> {
        Ok(self.conn()?.storage.list_keys(prefix, cursor, limit).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::{block_on, fresh, on_both_backends};

    /// A redb-only test's database.
    fn db() -> Arc<Database> {
        Arc::new(
            Database::builder()
                .create_with_backend(redb::backends::InMemoryBackend::new())
                .unwrap(),
        )
    }

    fn ctx(db: &Db, plugin: &str, conn: &str, quota: Option<Quota>) -> StorageCtx {
        let owner = Owner::Operator(plugin.into());
        StorageCtx::new(db.clone(), &owner, plugin.into(), conn.into(), quota)
    }

    /// Runs a backend test's async body (on the test's thread, where [`fresh`] knows the
    /// backend).
    const Q: Option<Quota> = Some(Quota {
        bytes: 100,
        keys: 3,
    });

    on_both_backends! {
        fn namespaces_are_isolated() {
            block_on(async {
                let db = fresh();
                let a = ctx(&db, "p", "conn-a", Q);
                let b = ctx(&db, "p", "conn-b", Q);
                let other_plugin = ctx(&db, "q", "conn-a", Q);
                a.set("cursor".into(), b"42".to_vec()).await.unwrap();
                assert_eq!(a.get("cursor".into()).await.unwrap(), Some(b"42".to_vec()));
                assert_eq!(b.get("cursor".into()).await.unwrap(), None);
                assert_eq!(other_plugin.get("cursor".into()).await.unwrap(), None);
                assert!(
                    b.list_keys(String::new(), None, 10)
                        .await
                        .unwrap()
                        .keys
                        .is_empty()
                );
                assert!(!b.delete("cursor".into()).await.unwrap());
                assert_eq!(a.get("cursor".into()).await.unwrap(), Some(b"42".to_vec()));
            })
        }
    }

    on_both_backends! {
        fn quota_counts_bytes_and_keys_and_frees_on_delete() {
            block_on(async {
                let db = fresh();
                let s = ctx(&db, "p", "c", Q);
                s.set("a".into(), vec![0; 40]).await.unwrap(); // 41
                s.set("b".into(), vec![0; 40]).await.unwrap(); // 82
                let err = s.set("c".into(), vec![0; 40]).await.unwrap_err();
                assert!(
                    matches!(err, StorageError::QuotaExceeded(ref m) if m.contains("100 bytes")),
                    "{err:?}"
                );
                // Replacing a value counts the difference only.
                s.set("b".into(), vec![0; 50]).await.unwrap(); // 92
                assert_eq!(s.usage().await.unwrap(), (92, 2));
                s.set("c".into(), vec![]).await.unwrap(); // 93, 3 keys
                let err = s.set("d".into(), vec![]).await.unwrap_err();
                assert!(
                    matches!(err, StorageError::QuotaExceeded(ref m) if m.contains("3 keys")),
                    "{err:?}"
                );
                assert!(s.delete("a".into()).await.unwrap());
                assert_eq!(s.usage().await.unwrap(), (52, 2));
                s.set("d".into(), vec![0; 40]).await.unwrap();
            })
        }
    }

    on_both_backends! {
        fn no_grant_means_no_writes() {
            block_on(async {
                let db = fresh();
                let s = ctx(&db, "p", "c", None);
                let err = s.set("k".into(), b"v".to_vec()).await.unwrap_err();
                // The operator's grant is to blame, and the message says where to fix it.
                let StorageError::QuotaExceeded(m) = &err else { panic!("{err:?}") };
                assert!(m.starts_with("no storage grant:"), "{m}");
                assert!(m.contains("storage-quota") && m.contains("[plugins.p.grant]"), "{m}");
                assert!(!m.contains('\n'));
                assert_eq!(s.get("k".into()).await.unwrap(), None);
            })
        }
    }

    on_both_backends! {
        /// The operator removes the grant: what was stored is invisible (and kept), and comes
        /// back with the grant.
        fn a_removed_grant_hides_what_was_stored() {
            block_on(async {
                let db = fresh();
                let granted = ctx(&db, "p", "c", Q);
                granted.set("cursor".into(), b"42".to_vec()).await.unwrap();
                let revoked = ctx(&db, "p", "c", None);
                assert_eq!(revoked.get("cursor".into()).await.unwrap(), None);
                let page = revoked.list_keys(String::new(), None, 10).await.unwrap();
                assert!(page.keys.is_empty() && page.next_cursor.is_none());
                assert!(!revoked.delete("cursor".into()).await.unwrap());
                let again = ctx(&db, "p", "c", Q);
                assert_eq!(
                    again.get("cursor".into()).await.unwrap(),
                    Some(b"42".to_vec())
                );
            })
        }
    }

    on_both_backends! {
        /// Two plugins declaring the same manifest name, under different operator entries (or
        /// digests), never share a namespace.
        fn the_owner_keys_the_namespace_not_the_declared_name() {
            block_on(async {
                let db = fresh();
                let mk = |owner: Owner| StorageCtx::new(db.clone(), &owner, "same".into(), "c".into(), Q);
                let victim = mk(Owner::Operator("crm".into()));
                victim.set("token".into(), b"v".to_vec()).await.unwrap();
                for other in [
                    mk(Owner::Operator("other".into())),
                    mk(Owner::Digest([7; 32])),
                ] {
                    assert_eq!(other.get("token".into()).await.unwrap(), None);
                    assert!(
                        other
                            .list_keys(String::new(), None, 10)
                            .await
                            .unwrap()
                            .keys
                            .is_empty()
                    );
                }
            })
        }
    }

    fn write_legacy(db: &Database, name: &str, conn: &str, entries: &[(&str, &[u8])]) {
        let txn = db.begin_write().unwrap();
        {
            let mut kv = txn.open_table(LEGACY_KV).unwrap();
            let mut usage = txn.open_table(LEGACY_USAGE).unwrap();
            let mut bytes = 0;
            for (k, v) in entries {
                kv.insert((name, conn, *k), *v).unwrap();
                bytes += (k.len() + v.len()) as u64;
            }
            usage
                .insert((name, conn), (bytes, entries.len() as u64))
                .unwrap();
        }
        txn.commit().unwrap();
    }

    #[tokio::test]
    async fn a_legacy_namespace_moves_to_the_connections_plugin_once() {
        let db = db();
        write_legacy(&db, "fs", "c", &[("cursor", b"7"), ("etag", b"x")]);
        write_legacy(&db, "fs", "other-conn", &[("cursor", b"9")]);
        // A plugin declaring another name finds nothing of it.
        let stranger = StorageCtx::new(
            db.clone(),
            &Owner::Operator("x".into()),
            "evil".into(),
            "c".into(),
            Q,
        );
        assert_eq!(stranger.get("cursor".into()).await.unwrap(), None);
        // The connection's plugin takes it over, usage included.
        let s = StorageCtx::new(
            db.clone(),
            &Owner::Operator("crm".into()),
            "fs".into(),
            "c".into(),
            Q,
        );
        assert_eq!(s.get("cursor".into()).await.unwrap(), Some(b"7".to_vec()));
        assert_eq!(
            s.list_keys(String::new(), None, 10).await.unwrap().keys,
            ["cursor", "etag"]
        );
        assert_eq!(s.usage().await.unwrap(), (12, 2));
        // The legacy rows are gone, so nobody else can take them later.
        let late = StorageCtx::new(
            db.clone(),
            &Owner::Operator("y".into()),
            "fs".into(),
            "c".into(),
            Q,
        );
        assert_eq!(late.get("cursor".into()).await.unwrap(), None);
        // Another connection's legacy data stays where it was until its own plugin comes.
        let txn = db.begin_read().unwrap();
        let legacy = txn.open_table(LEGACY_KV).unwrap();
        assert!(
            legacy
                .get(("fs", "other-conn", "cursor"))
                .unwrap()
                .is_some()
        );
        assert!(legacy.get(("fs", "c", "cursor")).unwrap().is_none());
    }

    /// The move is tried once per namespace in a process: a run's new context of a
    /// namespace already moved reads with one statement, not two.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn contexts_of_one_namespace_share_the_legacy_move() {
        use std::sync::atomic::Ordering::Relaxed;
        let pg = crate::db::testing::postgres();
        let moved = Moved::default();
        let mk = |moved: Moved| {
            StorageCtx::new(
                pg.clone(),
                &Owner::Operator("crm".into()),
                "fs".into(),
                "c".into(),
                Q,
            )
            .moved_once_per(moved)
        };
        let trips = || pg.stats().round_trips.load(Relaxed);
        let get = |s: StorageCtx| async move { s.get("cursor".into()).await.unwrap() };
        let before = trips();
        assert_eq!(get(mk(moved.clone())).await, None);
        assert_eq!(trips() - before, 2, "the move, then the read");
        let before = trips();
        assert_eq!(get(mk(moved.clone())).await, None);
        assert_eq!(trips() - before, 1, "the read only");
        // A context that does not share it tries again (another process).
        let before = trips();
        assert_eq!(get(mk(Moved::default())).await, None);
        assert_eq!(trips() - before, 2);
    }

    on_both_backends! {
        fn key_and_value_limits() {
            block_on(async {
                let db = fresh();
                let s = ctx(
                    &db,
                    "p",
                    "c",
                    Some(Quota {
                        bytes: u64::MAX,
                        keys: 10,
                    }),
                );
                assert!(matches!(
                    s.get(String::new()).await,
                    Err(StorageError::InvalidKey(_))
                ));
                assert!(matches!(
                    s.get("k".repeat(MAX_KEY_BYTES + 1)).await,
                    Err(StorageError::TooLarge(_))
                ));
                assert!(matches!(
                    s.set("k".into(), vec![0; MAX_VALUE_BYTES + 1]).await,
                    Err(StorageError::TooLarge(_))
                ));
            })
        }
    }

    on_both_backends! {
        fn list_keys_paginates_within_the_prefix() {
            block_on(async {
                let db = fresh();
                let s = ctx(
                    &db,
                    "p",
                    "c",
                    Some(Quota {
                        bytes: 10_000,
                        keys: 100,
                    }),
                );
                let other = ctx(
                    &db,
                    "p",
                    "d",
                    Some(Quota {
                        bytes: 10_000,
                        keys: 100,
                    }),
                );
                for k in ["link/1", "link/2", "link/3", "link/4", "links", "cursor"] {
                    s.set(k.into(), vec![1]).await.unwrap();
                }
                other.set("link/0".into(), vec![1]).await.unwrap();
                let p1 = s.list_keys("link/".into(), None, 3).await.unwrap();
                assert_eq!(p1.keys, ["link/1", "link/2", "link/3"]);
                let p2 = s
                    .list_keys("link/".into(), p1.next_cursor, 3)
                    .await
                    .unwrap();
                assert_eq!(p2.keys, ["link/4"]);
                assert_eq!(p2.next_cursor, None);
                let all = s.list_keys(String::new(), None, 0).await.unwrap();
                assert_eq!(all.keys.len(), 6);
                assert!(matches!(
                    s.list_keys("link/".into(), Some("cursor".into()), 3).await,
                    Err(StorageError::InvalidKey(_))
                ));
            })
        }
    }

    /// Two daemons (two pools on one database) writing one namespace at once: the usage
    /// row's lock makes them take turns, so together they store exactly the quota.
    #[test]
    fn two_daemons_writing_one_namespace_never_overshoot_the_quota() {
        let url = tandem_pgserver::PgServer::shared().create_database();
        let connect = || {
            let mut opts = crate::db::PgOptions::new(url.clone());
            opts.tls = crate::db::TlsMode::Disable;
            opts.pool_size = 4;
            Db::Postgres(Pg::connect(&opts).unwrap())
        };
        let (one, two) = (connect(), connect());
        let quota = Some(Quota {
            bytes: 1_000_000,
            keys: 10,
        });
        block_on(async {
            let (a, b) = (ctx(&one, "p", "c", quota), ctx(&two, "p", "c", quota));
            let writes = (0..20).map(|i| {
                let s = if i % 2 == 0 { &a } else { &b };
                s.set(format!("k{i:02}"), vec![0; 10])
            });
            let results = futures::future::join_all(writes).await;
            let stored = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(stored, 10, "{results:?}");
            for r in results.iter().filter_map(|r| r.as_ref().err()) {
                assert!(
                    matches!(r, StorageError::QuotaExceeded(m) if m.contains("10 keys")),
                    "{r:?}"
                );
            }
            let keys = a.list_keys(String::new(), None, 100).await.unwrap().keys;
            assert_eq!(keys.len(), 10);
            assert_eq!(b.usage().await.unwrap(), (10 * 13, 10));
        });
    }
}
