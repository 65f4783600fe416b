//! The opaque cursor handed to the host, and what the next `connections.list` call is.
//!
//! Google binds a page token to every other parameter of the listing and a sync token to
//! the field mask, sources and sort order (docs/google-people-api.md §3.1, §8.1): the cursor therefore records
//! the page size the listing started with and the field mask it was made with, so that
//! a later call repeats them exactly. It is JSON:
//!
//! ```json
//! {"v":1,"m":"<mask id>","n":1000,"phase":"full","page":"<nextPageToken>"}
//! {"v":1,"m":"<mask id>","n":1000,"phase":"delta","sync":"<syncToken>","page":"<nextPageToken>"}
//! {"v":1,"m":"<mask id>","n":1000,"phase":"checkpoint","sync":"<nextSyncToken>"}
//! ```
//!
//! `full` and `delta` are positions inside a listing (more pages follow); `checkpoint`
//! ends a listing and starts the next incremental run. A cursor this connector cannot
//! use (unreadable, another version, another field mask) is `cursor-expired`: the host
//! then runs a full listing, which is the documented recovery.

use serde::{Deserialize, Serialize};
use tandem_sdk::Error;

use crate::mapping::MASK_ID;

/// Version of the cursor format.
const VERSION: u32 = 1;

/// Where a listing is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum Phase {
    /// Inside a full listing: the next page token.
    Full {
        /// `nextPageToken` of the previous page.
        page: String,
    },
    /// Inside an incremental listing: the sync token it started from and the next page.
    Delta {
        /// The `syncToken` this listing was started with (sent again with every page).
        sync: String,
        /// `nextPageToken` of the previous page.
        page: String,
    },
    /// A listing ended: the sync token of the next incremental run.
    Checkpoint {
        /// `nextSyncToken` of the last page.
        sync: String,
    },
}

/// The cursor: a phase plus the parameters that must not change across pages and runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Format version.
    pub v: u32,
    /// The field mask the tokens were made with ([`MASK_ID`]).
    pub m: String,
    /// The page size the tokens were made with.
    pub n: u32,
    /// Where the listing is.
    #[serde(flatten)]
    pub phase: Phase,
}

impl Cursor {
    /// A cursor for this connector's mask.
    pub fn new(page_size: u32, phase: Phase) -> Self {
        Cursor {
            v: VERSION,
            m: MASK_ID.to_owned(),
            n: page_size,
            phase,
        }
    }

    /// The cursor as text.
    pub fn encode(&self) -> String {
        // A struct of strings and numbers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a cursor; anything unusable is `cursor-expired`.
    pub fn decode(text: &str) -> Result<Cursor, Error> {
        let cursor: Cursor = serde_json::from_str(text).map_err(|e| {
            Error::cursor_expired(format!("unreadable cursor ({e}); a full listing is needed"))
        })?;
        if cursor.v != VERSION || cursor.m != MASK_ID {
            return Err(Error::cursor_expired(format!(
                "the cursor was made by another version of this connector (format {}, mask {}); a full listing is needed",
                cursor.v, cursor.m
            )));
        }
        if !(1..=crate::mapping::MAX_PAGE).contains(&cursor.n) {
            return Err(Error::cursor_expired(format!(
                "the cursor's page size {} is out of range; a full listing is needed",
                cursor.n
            )));
        }
        Ok(cursor)
    }
}

/// The `connections.list` call a pull makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// `syncToken` (incremental listing) or none (full listing).
    pub sync: Option<String>,
    /// `pageToken`, none on the first page.
    pub page: Option<String>,
    /// `pageSize`.
    pub size: u32,
}

impl Listing {
    /// The call for a pull: `full` restarts a full listing unless the cursor is already
    /// inside one; otherwise the cursor continues its listing or starts an incremental
    /// one from its checkpoint. `page_size` applies to listings that start here.
    pub fn plan(cursor: Option<&str>, full: bool, page_size: u32) -> Result<Listing, Error> {
        let size = page_size.clamp(1, crate::mapping::MAX_PAGE);
        let start_full = Listing {
            sync: None,
            page: None,
            size,
        };
        let Some(text) = cursor else {
            return Ok(start_full);
        };
        let cursor = Cursor::decode(text)?;
        Ok(match cursor.phase {
            Phase::Full { page } => Listing {
                sync: None,
                page: Some(page),
                size: cursor.n,
            },
            _ if full => start_full,
            Phase::Delta { sync, page } => Listing {
                sync: Some(sync),
                page: Some(page),
                size: cursor.n,
            },
            Phase::Checkpoint { sync } => Listing {
                sync: Some(sync),
                page: None,
                size: cursor.n,
            },
        })
    }

    /// Whether the call carries a token Google may refuse as stale.
    pub fn has_token(&self) -> bool {
        self.sync.is_some() || self.page.is_some()
    }

    /// The cursor after a page: more pages (`next_page`), or the checkpoint of the
    /// listing (`next_sync`, none when Google gave no sync token).
    pub fn next(&self, next_page: Option<String>, next_sync: Option<String>) -> Option<Cursor> {
        let phase = match (next_page, &self.sync) {
            (Some(page), None) => Phase::Full { page },
            (Some(page), Some(sync)) => Phase::Delta {
                sync: sync.clone(),
                page,
            },
            (None, _) => Phase::Checkpoint { sync: next_sync? },
        };
        Some(Cursor::new(self.size, phase))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(page: &str, n: u32) -> String {
        Cursor::new(n, Phase::Full { page: page.into() }).encode()
    }
    fn delta(sync: &str, page: &str, n: u32) -> String {
        Cursor::new(
            n,
            Phase::Delta {
                sync: sync.into(),
                page: page.into(),
            },
        )
        .encode()
    }
    fn checkpoint(sync: &str, n: u32) -> String {
        Cursor::new(n, Phase::Checkpoint { sync: sync.into() }).encode()
    }
    fn listing(sync: Option<&str>, page: Option<&str>, size: u32) -> Listing {
        Listing {
            sync: sync.map(Into::into),
            page: page.map(Into::into),
            size,
        }
    }

    #[test]
    fn the_cursor_format_is_stable_json() {
        assert_eq!(
            checkpoint("S1", 1000),
            format!(r#"{{"v":1,"m":"{MASK_ID}","n":1000,"phase":"checkpoint","sync":"S1"}}"#)
        );
        assert_eq!(
            delta("S1", "P2", 50),
            format!(r#"{{"v":1,"m":"{MASK_ID}","n":50,"phase":"delta","sync":"S1","page":"P2"}}"#)
        );
    }

    #[test]
    fn plans_follow_the_cursor_and_the_full_flag() {
        // (case, cursor, full, requested page size, expected call)
        let cases: Vec<(&str, Option<String>, bool, u32, Listing)> = vec![
            ("first run", None, false, 1000, listing(None, None, 1000)),
            ("first run, full", None, true, 200, listing(None, None, 200)),
            (
                "page size 0 becomes 1",
                None,
                false,
                0,
                listing(None, None, 1),
            ),
            (
                "page size is capped",
                None,
                false,
                5000,
                listing(None, None, 1000),
            ),
            (
                "next page of a full listing",
                Some(full("P2", 300)),
                false,
                1000,
                listing(None, Some("P2"), 300),
            ),
            (
                "full flag keeps a full listing going",
                Some(full("P2", 300)),
                true,
                1000,
                listing(None, Some("P2"), 300),
            ),
            (
                "incremental run from a checkpoint",
                Some(checkpoint("S1", 1000)),
                false,
                10,
                listing(Some("S1"), None, 1000),
            ),
            (
                "next page of an incremental run",
                Some(delta("S1", "P3", 1000)),
                false,
                10,
                listing(Some("S1"), Some("P3"), 1000),
            ),
            (
                "full flag ignores the checkpoint",
                Some(checkpoint("S1", 1000)),
                true,
                100,
                listing(None, None, 100),
            ),
            (
                "full flag abandons an incremental run",
                Some(delta("S1", "P3", 1000)),
                true,
                100,
                listing(None, None, 100),
            ),
        ];
        for (case, cursor, full, size, want) in cases {
            let got = Listing::plan(cursor.as_deref(), full, size).unwrap();
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn next_cursors_continue_or_checkpoint() {
        let full_listing = listing(None, None, 1000);
        assert_eq!(
            full_listing.next(Some("P2".into()), None).unwrap().encode(),
            full("P2", 1000)
        );
        assert_eq!(
            full_listing.next(None, Some("S9".into())).unwrap().encode(),
            checkpoint("S9", 1000)
        );
        assert_eq!(full_listing.next(None, None), None);
        let incremental = listing(Some("S1"), None, 500);
        assert_eq!(
            incremental.next(Some("P2".into()), None).unwrap().encode(),
            delta("S1", "P2", 500)
        );
        assert_eq!(
            incremental.next(None, Some("S2".into())).unwrap().encode(),
            checkpoint("S2", 500)
        );
        assert!(incremental.has_token() && !full_listing.has_token());
    }

    #[test]
    fn unusable_cursors_ask_for_a_full_listing() {
        let cases = [
            "not json".to_owned(),
            r#"{"v":1}"#.to_owned(),
            checkpoint("S1", 10).replace(r#""v":1"#, r#""v":2"#),
            checkpoint("S1", 10).replace(MASK_ID, "older-mask"),
            checkpoint("S1", 10).replace(r#""n":10"#, r#""n":0"#),
            checkpoint("S1", 10).replace("checkpoint", "later"),
        ];
        for text in cases {
            let err = Listing::plan(Some(&text), false, 100).unwrap_err();
            assert!(matches!(err, Error::CursorExpired(_)), "{text}: {err:?}");
        }
    }
}
