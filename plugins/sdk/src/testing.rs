//! Stand-ins for the host, for unit tests of a plugin compiled for the build machine
//! (not wasm32): per-thread connection settings, an in-memory store, a scripted HTTP
//! handler and captured log lines. Inside the real host none of this exists.
//!
//! ```
//! use tandem_sdk::http::{Response, Request};
//! use tandem_sdk::testing;
//!
//! testing::reset();
//! testing::set_config("base-url", "https://api.example.com");
//! testing::mock_http(|req: &Request| {
//!     assert_eq!(req.url, "https://api.example.com/me");
//!     Ok(Response { status: 200, headers: vec![], body: br#"{"id":"7"}"#.to_vec() })
//! });
//! let me: serde_json::Value = tandem_sdk::http::get_json("https://api.example.com/me").unwrap();
//! assert_eq!(me["id"], "7");
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::http::{HttpError, Request, Response};
use crate::log::Level;

type Handler = Box<dyn FnMut(&Request) -> Result<Response, HttpError>>;

#[derive(Default)]
struct State {
    config: BTreeMap<String, String>,
    storage: BTreeMap<String, Vec<u8>>,
    storage_writes: usize,
    storage_reads: usize,
    http: Option<Handler>,
    requests: Vec<Request>,
    logs: Vec<(Level, String)>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// Clears this thread's settings, store, HTTP handler, requests and logs.
pub fn reset() {
    STATE.with(|s| *s.borrow_mut() = State::default());
}

/// Sets a connection setting read by [`crate::config`].
pub fn set_config(key: &str, value: &str) {
    STATE.with(|s| {
        s.borrow_mut()
            .config
            .insert(key.to_owned(), value.to_owned())
    });
}

/// Answers every [`crate::http`] request of this thread with `handler`.
pub fn mock_http(handler: impl FnMut(&Request) -> Result<Response, HttpError> + 'static) {
    STATE.with(|s| s.borrow_mut().http = Some(Box::new(handler)));
}

/// The requests sent on this thread since the last [`reset`].
pub fn requests() -> Vec<Request> {
    STATE.with(|s| s.borrow().requests.clone())
}

/// The storage writes (sets and deletes) made on this thread since the last [`reset`]:
/// in the host each is a write to its state, so a plugin should not repeat them idly.
pub fn storage_writes() -> usize {
    STATE.with(|s| s.borrow().storage_writes)
}

/// The storage reads (gets and key listings) made on this thread since the last
/// [`reset`]: in the host each is a statement too, so a call that finds nothing new should
/// make none.
pub fn storage_reads() -> usize {
    STATE.with(|s| s.borrow().storage_reads)
}

/// The log lines written on this thread since the last [`reset`].
pub fn logs() -> Vec<(Level, String)> {
    STATE.with(|s| s.borrow().logs.clone())
}

/// A JSON response with this status.
pub fn json_response(status: u16, body: &serde_json::Value) -> Response {
    Response {
        status,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body: serde_json::to_vec(body).unwrap_or_default(),
    }
}

pub(crate) fn http_send(req: &Request) -> Result<Response, HttpError> {
    // Take the handler out while it runs, so that it may itself use the state.
    let handler = STATE.with(|s| {
        let mut state = s.borrow_mut();
        state.requests.push(req.clone());
        state.http.take()
    });
    let Some(mut handler) = handler else {
        return Err(HttpError::Transport(
            "no Tandem host: in native tests, script answers with tandem_sdk::testing::mock_http"
                .to_owned(),
        ));
    };
    let result = handler(req);
    STATE.with(|s| {
        let mut state = s.borrow_mut();
        // A handler installed by the handler itself wins.
        if state.http.is_none() {
            state.http = Some(handler);
        }
    });
    result
}

pub(crate) fn log(level: Level, message: &str, fields: &[(String, String)]) {
    eprintln!("[{level:?}] {message} {fields:?}");
    STATE.with(|s| s.borrow_mut().logs.push((level, message.to_owned())));
}

/// The in-memory store behind [`crate::storage`] on native targets.
pub(crate) mod storage {
    use super::STATE;
    use crate::storage::{KeyPage, StorageError};

    pub fn get(key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        check(key)?;
        Ok(STATE.with(|s| {
            let mut state = s.borrow_mut();
            state.storage_reads += 1;
            state.storage.get(key).cloned()
        }))
    }

    pub fn set(key: &str, value: &[u8]) -> Result<(), StorageError> {
        check(key)?;
        STATE.with(|s| {
            let mut state = s.borrow_mut();
            state.storage_writes += 1;
            state.storage.insert(key.to_owned(), value.to_vec())
        });
        Ok(())
    }

    pub fn delete(key: &str) -> Result<bool, StorageError> {
        check(key)?;
        Ok(STATE.with(|s| {
            let mut state = s.borrow_mut();
            state.storage_writes += 1;
            state.storage.remove(key).is_some()
        }))
    }

    pub fn list_keys(
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<KeyPage, StorageError> {
        STATE.with(|s| {
            let mut state = s.borrow_mut();
            state.storage_reads += 1;
            let mut keys: Vec<String> = state
                .storage
                .keys()
                .filter(|k| k.starts_with(prefix))
                .filter(|k| cursor.is_none_or(|c| k.as_str() > c))
                .take(limit.max(1) as usize + 1)
                .cloned()
                .collect();
            let next_cursor = if keys.len() > limit.max(1) as usize {
                keys.pop();
                keys.last().cloned()
            } else {
                None
            };
            Ok(KeyPage { keys, next_cursor })
        })
    }

    fn check(key: &str) -> Result<(), StorageError> {
        if key.is_empty() {
            return Err(StorageError::InvalidKey("the key is empty".to_owned()));
        }
        Ok(())
    }
}

/// The settings behind [`crate::config`] on native targets.
pub(crate) mod config {
    use super::STATE;

    pub fn get(key: &str) -> Option<String> {
        STATE.with(|s| s.borrow().config.get(key).cloned())
    }

    pub fn all() -> Vec<(String, String)> {
        STATE.with(|s| {
            s.borrow()
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }
}
