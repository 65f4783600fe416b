//! Key-value storage private to one (plugin, connection) pair (connectors only).
//!
//! Plugins keep no memory between calls; what must survive (a token cache, an id map)
//! goes here. The host chooses the namespace and enforces a quota.
//!
//! ```no_run
//! # fn main() -> Result<(), tandem_sdk::Error> {
//! use tandem_sdk::storage;
//!
//! storage::set_json("owners/42", &vec!["ann", "bob"])?;
//! let owners: Option<Vec<String>> = storage::get_json("owners/42")?;
//! let keys = storage::list_keys("owners/")?;
//! # let _ = (owners, keys);
//! # Ok(())
//! # }
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

pub use crate::__bindings::connector::tandem::plugin::storage::{KeyPage, StorageError};

#[cfg(target_arch = "wasm32")]
use crate::__bindings::connector::tandem::plugin::storage as host;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::storage as host;

/// Keys fetched per `list-keys` call by [`list_keys`].
const PAGE: u32 = 500;

/// Reads a value.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    Ok(host::get(key)?)
}

/// Writes a value, replacing any previous one.
pub fn set(key: &str, value: &[u8]) -> Result<(), Error> {
    Ok(host::set(key, value)?)
}

/// Deletes a value; returns whether it existed.
pub fn delete(key: &str) -> Result<bool, Error> {
    Ok(host::delete(key)?)
}

/// Reads a JSON value; a value that does not decode as `T` is a fatal error.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
    match get(key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::fatal(format!(
                "stored value `{key}` is not the expected JSON: {e}"
            ))
        }),
    }
}

/// Writes a value as JSON.
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), Error> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| Error::fatal(format!("cannot encode `{key}` as JSON: {e}")))?;
    set(key, &bytes)
}

/// One page of the keys starting with `prefix`, in byte order.
pub fn list_keys_page(prefix: &str, cursor: Option<&str>, limit: u32) -> Result<KeyPage, Error> {
    Ok(host::list_keys(prefix, cursor, limit)?)
}

/// Every key starting with `prefix`, in byte order (follows all pages).
pub fn list_keys(prefix: &str) -> Result<Vec<String>, Error> {
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = list_keys_page(prefix, cursor.as_deref(), PAGE)?;
        keys.extend(page.keys);
        match page.next_cursor {
            // A cursor that does not move would loop forever.
            Some(next) if cursor.as_deref() == Some(next.as_str()) => {
                return Err(Error::fatal(format!(
                    "storage listing of `{prefix}` did not advance past `{next}`"
                )));
            }
            Some(next) => cursor = Some(next),
            None => return Ok(keys),
        }
    }
}

impl From<StorageError> for Error {
    fn from(error: StorageError) -> Self {
        match error {
            // The host's own message names the operator's setting to change: the
            // manifest's quota-bytes is not what is missing.
            StorageError::QuotaExceeded(m) if m.starts_with("no storage grant") => Error::fatal(m),
            StorageError::QuotaExceeded(m) => Error::fatal(format!(
                "storage quota exceeded: {m}; raise [storage] quota-bytes or store less"
            )),
            StorageError::TooLarge(m) => Error::fatal(format!("storage value too large: {m}")),
            StorageError::InvalidKey(m) => Error::fatal(format!("invalid storage key: {m}")),
            StorageError::Unavailable(m) => Error::transient(format!("storage unavailable: {m}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_listing_in_the_native_store() {
        crate::testing::reset();
        set_json("a/1", &1).unwrap();
        set_json("a/2", &"two").unwrap();
        set("b/1", b"raw").unwrap();
        assert_eq!(get_json::<i32>("a/1").unwrap(), Some(1));
        assert_eq!(get_json::<String>("a/3").unwrap(), None);
        assert!(matches!(get_json::<i32>("a/2"), Err(Error::Fatal(_))));
        assert_eq!(list_keys("a/").unwrap(), vec!["a/1", "a/2"]);
        let page = list_keys_page("", None, 2).unwrap();
        assert_eq!(page.keys, vec!["a/1", "a/2"]);
        let rest = list_keys_page("", page.next_cursor.as_deref(), 2).unwrap();
        assert_eq!(rest.keys, vec!["b/1"]);
        assert_eq!(rest.next_cursor, None);
        assert!(delete("a/1").unwrap());
        assert!(!delete("a/1").unwrap());
    }

    #[test]
    fn storage_errors_map_to_contract_errors() {
        assert!(Error::from(StorageError::Unavailable("busy".into())).is_retryable());
        assert!(matches!(
            Error::from(StorageError::QuotaExceeded("1 MiB".into())),
            Error::Fatal(_)
        ));
        // No grant at all: the host's operator-facing message, without the author's hint.
        let denied = "no storage grant: grant it under [plugins.x.grant]";
        let Error::Fatal(m) = Error::from(StorageError::QuotaExceeded(denied.into())) else {
            panic!("fatal")
        };
        assert_eq!(m, denied);
    }
}
