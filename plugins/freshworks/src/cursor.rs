//! The opaque pull cursor: URL-safe base64 of a small JSON document.
//!
//! A listing goes through phases; the cursor says where it is:
//!
//! ```text
//! full:     every record, page by page (view sorted by updated_at desc)     ─┐
//! changes:  records updated at or after `window` (same sort, stops at the   │
//!           first page that reaches past the window)                        │
//! deleted:  recycle-bin records updated at or after `window`                │
//! done:     the checkpoint: the next run starts `changes` at                ◄┘
//!           checkpoint − overlap
//! ```
//!
//! The checkpoint is the newest `updated_at` on the first page of the run (the server's
//! own clock). A record edited while later pages are read moves to the front of the
//! listing, so it is not seen in this run, but its new `updated_at` is after the
//! checkpoint and the next run sees it. A `done` cursor that carries no checkpoint (an
//! empty account) makes the next run a full listing.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use tandem_sdk::Error;

use crate::record::FieldTypes;

/// Most records a cursor remembers as seen near its checkpoint: past that many (a burst of
/// edits within the overlap), the rest are listed again, as without the memory.
pub const MAX_SEEN: usize = 200;

/// Cursor format version; a cursor of another version asks for a full listing.
const VERSION: u8 = 1;

/// Where a listing is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Listing every record.
    Full,
    /// Listing records changed since the window start.
    Changes,
    /// Listing records deleted since the window start.
    Deleted,
    /// Between runs: `checkpoint` is where the next run starts.
    Done,
}

/// The cursor's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Format version.
    pub v: u8,
    /// The entity listed (`contacts`, `leads`).
    pub entity: String,
    /// The container (list id) the listing is scoped to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
    /// Which part of the listing the cursor is in (full, changes, deleted, or done).
    pub phase: Phase,
    /// The next page to fetch (1-based).
    pub page: u32,
    /// Page size of this listing (page numbers depend on it).
    pub per_page: u32,
    /// The id of the "All Contacts" / "All Leads" view, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<String>,
    /// `changes` / `deleted`: list records updated at or after this instant (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Newest `updated_at` seen on the first page of this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<String>,
    /// The checkpoint this run started from (kept when nothing changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// Field types learned at the start of the last full listing (used when the plugin's
    /// storage has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<FieldTypes>,
    /// The plugin's storage holds `types`: the full listing that learned them wrote them
    /// (or found them there), so the next one need not read the cache to compare.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    /// Records the last run listed near its checkpoint (within the overlap the next run
    /// lists again), by id: a hash of the app's JSON for each. The next incremental
    /// listing does not return one whose JSON is unchanged, so that a poll that finds
    /// nothing new hands the host no record (and costs it no read of its links).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub seen: BTreeMap<String, String>,
    /// This listing's candidates for `seen`: (id, hash, `updated_at` in Unix seconds),
    /// kept while its pages are read, at most [`MAX_SEEN`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<(String, String, i64)>,
    /// A page of this run stayed short after it was read again: the run's checkpoint
    /// must not move past what it may have left out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gaps: bool,
    /// List listings: the list's member count (`meta.total`) at the last run's first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<u64>,
    /// `changes` of a list: this run reads the whole list, not only the window (the
    /// member count says someone joined or left without the window showing it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub whole: bool,
}

impl Cursor {
    /// The first page of a full listing.
    pub fn full(entity: &str, list: Option<String>, per_page: u32) -> Self {
        Cursor {
            v: VERSION,
            entity: entity.to_owned(),
            list,
            phase: Phase::Full,
            page: 1,
            per_page,
            view: None,
            window: None,
            high: None,
            checkpoint: None,
            types: None,
            cached: false,
            seen: BTreeMap::new(),
            recent: Vec::new(),
            gaps: false,
            members: None,
            whole: false,
        }
    }

    /// Encodes the cursor for the host.
    pub fn encode(&self) -> String {
        // A struct of strings and integers always serializes.
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes a cursor; anything unreadable asks the host for a full listing.
    pub fn decode(text: &str) -> Result<Self, Error> {
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|e| {
            Error::cursor_expired(format!(
                "the cursor is not one of this connector's ({e}); run a full listing"
            ))
        })?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|e| {
            Error::cursor_expired(format!(
                "the cursor is not one of this connector's ({e}); run a full listing"
            ))
        })?;
        if cursor.v != VERSION {
            return Err(Error::cursor_expired(format!(
                "the cursor has format {} and this connector reads format {VERSION}; run a full listing",
                cursor.v
            )));
        }
        if cursor.page == 0 || cursor.per_page == 0 {
            return Err(Error::cursor_expired(
                "the cursor is damaged (page 0); run a full listing",
            ));
        }
        Ok(cursor)
    }

    /// Refuses a cursor of another entity or container.
    pub fn check_scope(&self, entity: &str, list: Option<&str>) -> Result<(), Error> {
        if self.entity != entity || self.list.as_deref() != list {
            return Err(Error::cursor_expired(format!(
                "the cursor belongs to {} {}, not to {entity} {}; run a full listing",
                self.entity,
                scope_name(self.list.as_deref()),
                scope_name(list)
            )));
        }
        Ok(())
    }
}

fn scope_name(list: Option<&str>) -> String {
    list.map_or_else(|| "(all records)".to_owned(), |l| format!("(list {l})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_opacity() {
        let mut cursor = Cursor::full("contacts", Some("70000000123".into()), 100);
        cursor.view = Some("70000164405".into());
        cursor.high = Some("2024-05-01T10:00:00Z".into());
        let text = cursor.encode();
        assert!(
            text.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{text}"
        );
        assert_eq!(Cursor::decode(&text).unwrap(), cursor);
        // Optional parts are left out of the document.
        let plain = String::from_utf8(
            URL_SAFE_NO_PAD
                .decode(Cursor::full("leads", None, 50).encode())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            plain,
            r#"{"v":1,"entity":"leads","phase":"full","page":1,"per_page":50}"#
        );
    }

    /// Every unreadable cursor asks for a full listing.
    #[test]
    fn unreadable_cursors_expire() {
        let encode = |json: &str| URL_SAFE_NO_PAD.encode(json);
        let cases = [
            "garbage!".to_owned(),
            encode("not json"),
            encode(r#"{"v":2,"entity":"contacts","phase":"full","page":1,"per_page":100}"#),
            encode(r#"{"v":1,"entity":"contacts","phase":"sideways","page":1,"per_page":100}"#),
            encode(r#"{"v":1,"entity":"contacts","phase":"full","page":0,"per_page":100}"#),
        ];
        for text in cases {
            assert!(
                matches!(Cursor::decode(&text), Err(Error::CursorExpired(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn scope_must_match() {
        let cursor = Cursor::full("contacts", Some("7".into()), 100);
        assert!(cursor.check_scope("contacts", Some("7")).is_ok());
        let err = cursor.check_scope("contacts", None).unwrap_err();
        assert!(
            matches!(&err, Error::CursorExpired(m) if m.contains("(list 7)") && m.contains("(all records)")),
            "{err:?}"
        );
        assert!(cursor.check_scope("leads", Some("7")).is_err());
    }
}
