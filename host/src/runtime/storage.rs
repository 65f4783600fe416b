//! The `storage` host interface: key-value storage on redb, one namespace per
//! (plugin, connection) chosen by the host.
//!
//! The database is the caller's (the sync engine keeps its own tables in the same file);
//! this module owns the tables [`KV`] and [`USAGE`]. Usage (bytes and keys) is kept per
//! namespace in the same write transaction as the data, so quotas are exact. Database
//! calls run on tokio's blocking pool (a commit includes an fsync).

use std::ops::Bound;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::bindings::storage::{Host, KeyPage, StorageError};
use super::state::HostState;

/// Values: (plugin, connection, key) -> bytes.
const KV: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("runtime.plugin_kv");
/// Usage: (plugin, connection) -> (bytes, keys).
const USAGE: TableDefinition<(&str, &str), (u64, u64)> =
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

/// One connection's namespace.
pub(crate) struct StorageCtx {
    db: Arc<Database>,
    plugin: Arc<str>,
    connection: Arc<str>,
    /// `None`: no storage granted; reads see nothing, writes are refused.
    quota: Option<Quota>,
}

impl StorageCtx {
    pub(crate) fn new(
        db: Arc<Database>,
        plugin: Arc<str>,
        connection: Arc<str>,
        quota: Option<Quota>,
    ) -> Self {
        Self {
            db,
            plugin,
            connection,
            quota,
        }
    }

    fn namespace(&self) -> Namespace {
        Namespace {
            db: self.db.clone(),
            plugin: self.plugin.clone(),
            connection: self.connection.clone(),
        }
    }

    /// Reads a value.
    pub(crate) async fn get(&self, key: String) -> Result<Option<Vec<u8>>, StorageError> {
        check_key(&key)?;
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
        let ns = self.namespace();
        blocking(move || ns.set(&key, &value, quota)).await
    }

    /// Deletes a value; whether it existed.
    pub(crate) async fn delete(&self, key: String) -> Result<bool, StorageError> {
        check_key(&key)?;
        if self.quota.is_none() {
            return Ok(false);
        }
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
        StorageCtx::new(db.clone(), plugin.into(), conn.into(), quota)
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
