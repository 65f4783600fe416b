//! The `storage` host interface: key-value storage on redb, one namespace per
//! (owner, connection) chosen by the host.
//!
//! The owner is something the plugin cannot choose: the operator's name for the plugin
//! (`[plugins.NAME]`), or, for a plugin run outside a config, its sha256. (Before, the
//! manifest's self-declared name keyed it, so another plugin declaring that name and
//! pointed at the connection read its data; such legacy namespaces are moved to the new
//! key the first time the connection's plugin, declaring that same name, uses storage.)
//!
//! The database is the caller's (the sync engine keeps its own tables in the same file);
//! this module owns the tables `KV` and `USAGE` (and reads and empties the legacy
//! ones). Usage (bytes and keys) is kept per namespace in the same write transaction as
//! the data, so quotas are exact. Database calls run on tokio's blocking pool (a commit
//! includes an fsync). Without a storage grant a plugin sees nothing: reads find no value,
//! listings are empty, writes are refused, and what an earlier grant stored is kept.

use std::ops::Bound;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::bindings::storage::{Host, KeyPage, StorageError};
use super::state::HostState;

/// Values: (owner, connection, key) -> bytes.
const KV: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("runtime.plugin_store");
/// Usage: (owner, connection) -> (bytes, keys).
const USAGE: TableDefinition<(&str, &str), (u64, u64)> =
    TableDefinition::new("runtime.plugin_store_usage");
/// Legacy values, keyed by the manifest's name: (name, connection, key) -> bytes.
const LEGACY_KV: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("runtime.plugin_kv");
/// Legacy usage: (name, connection) -> (bytes, keys).
const LEGACY_USAGE: TableDefinition<(&str, &str), (u64, u64)> =
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
    fn key(&self) -> String {
        match self {
            Owner::Operator(name) => format!("plugin:{name}"),
            Owner::Digest(sha) => format!("sha256:{}", hex::encode(sha)),
        }
    }
}

/// One connection's namespace.
pub(crate) struct StorageCtx {
    db: Arc<Database>,
    owner: Arc<str>,
    connection: Arc<str>,
    /// `None`: no storage granted; reads see nothing, writes are refused.
    quota: Option<Quota>,
    /// The manifest name whose legacy namespace this one takes over, once.
    legacy: Arc<str>,
    migrated: tokio::sync::OnceCell<()>,
}

impl StorageCtx {
    pub(crate) fn new(
        db: Arc<Database>,
        owner: &Owner,
        legacy_name: Arc<str>,
        connection: Arc<str>,
        quota: Option<Quota>,
    ) -> Self {
        Self {
            db,
            owner: owner.key().into(),
            connection,
            quota,
            legacy: legacy_name,
            migrated: tokio::sync::OnceCell::new(),
        }
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
    async fn migrate(&self) {
        self.migrated
            .get_or_init(|| async {
                let ns = self.namespace();
                let legacy = self.legacy.clone();
                if let Err(e) = blocking(move || ns.take_legacy(&legacy)).await {
                    tracing::warn!(connection = %self.connection, error = ?e, "cannot move the plugin's storage to its new namespace");
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
        blocking(move || ns.get(&key)).await
    }

    /// Writes a value within the quota.
    pub(crate) async fn set(&self, key: String, value: Vec<u8>) -> Result<(), StorageError> {
        check_key(&key)?;
        let Some(quota) = self.quota else {
            return Err(StorageError::QuotaExceeded(
                "this connection has no storage grant".into(),
            ));
        };
        if value.len() > MAX_VALUE_BYTES {
            return Err(StorageError::TooLarge(format!(
                "value of {} bytes exceeds the {MAX_VALUE_BYTES}-byte limit",
                value.len()
            )));
        }
        self.migrate().await;
        let ns = self.namespace();
        blocking(move || ns.set(&key, &value, quota)).await
    }

    /// Deletes a value; whether it existed.
    pub(crate) async fn delete(&self, key: String) -> Result<bool, StorageError> {
        check_key(&key)?;
        if self.quota.is_none() {
            return Ok(false);
        }
        self.migrate().await;
        let ns = self.namespace();
        blocking(move || ns.delete(&key)).await
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
        blocking(move || ns.list(&prefix, cursor.as_deref(), limit)).await
    }

    /// Bytes and keys in use.
    #[cfg(test)]
    pub(crate) async fn usage(&self) -> Result<(u64, u64), StorageError> {
        let ns = self.namespace();
        blocking(move || ns.usage()).await
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

struct Namespace {
    db: Arc<Database>,
    plugin: Arc<str>,
    connection: Arc<str>,
}

impl Namespace {
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
            if new_bytes > quota.bytes {
                return Err(StorageError::QuotaExceeded(format!(
                    "storage quota of {} bytes reached ({bytes} in use, this write needs {entry})",
                    quota.bytes
                )));
            }
            if new_keys > quota.keys {
                return Err(StorageError::QuotaExceeded(format!(
                    "storage quota of {} keys reached",
                    quota.keys
                )));
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

    fn db() -> Arc<Database> {
        Arc::new(
            Database::builder()
                .create_with_backend(redb::backends::InMemoryBackend::new())
                .unwrap(),
        )
    }

    fn ctx(db: &Arc<Database>, plugin: &str, conn: &str, quota: Option<Quota>) -> StorageCtx {
        let owner = Owner::Operator(plugin.into());
        StorageCtx::new(db.clone(), &owner, plugin.into(), conn.into(), quota)
    }

    const Q: Option<Quota> = Some(Quota {
        bytes: 100,
        keys: 3,
    });

    #[tokio::test]
    async fn namespaces_are_isolated() {
        let db = db();
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
    }

    #[tokio::test]
    async fn quota_counts_bytes_and_keys_and_frees_on_delete() {
        let db = db();
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
    }

    #[tokio::test]
    async fn no_grant_means_no_writes() {
        let db = db();
        let s = ctx(&db, "p", "c", None);
        let err = s.set("k".into(), b"v".to_vec()).await.unwrap_err();
        assert!(
            matches!(err, StorageError::QuotaExceeded(ref m) if m.contains("no storage grant"))
        );
        assert_eq!(s.get("k".into()).await.unwrap(), None);
    }

    /// The operator removes the grant: what was stored is invisible (and kept), and comes
    /// back with the grant.
    #[tokio::test]
    async fn a_removed_grant_hides_what_was_stored() {
        let db = db();
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
    }

    /// Two plugins declaring the same manifest name, under different operator entries (or
    /// digests), never share a namespace.
    #[tokio::test]
    async fn the_owner_keys_the_namespace_not_the_declared_name() {
        let db = db();
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

    #[tokio::test]
    async fn key_and_value_limits() {
        let db = db();
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
    }

    #[tokio::test]
    async fn list_keys_paginates_within_the_prefix() {
        let db = db();
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
    }
}
