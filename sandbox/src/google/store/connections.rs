//! `people.connections.list`: sorted pages, page tokens and sync tokens.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::google::cursor::{PageCursor, SyncCursor};
use crate::google::error::ApiError;
use crate::google::person::{FieldMask, PERSON_FIELDS, RenderOpts};
use crate::google::settings::OverMax;
use crate::google::{cursor, person};

use super::{Contact, ListParams, Store};

impl Store {
    /// `people.connections.list` (docs/google-people-api.md §3.1, §9.4).
    pub fn list_connections(
        &mut self,
        p: &ListParams,
        now: OffsetDateTime,
    ) -> Result<Value, ApiError> {
        let mask = FieldMask::parse(
            p.person_fields.as_deref(),
            &PERSON_FIELDS,
            "personFields",
            "people/get",
        )?;
        let page_size = page_size(p.page_size, 100, 1000, self.settings.page_size_over_max)?;
        let sort = p.sort_order.as_deref().unwrap_or("LAST_MODIFIED_ASCENDING");
        if !SORT_ORDERS.contains(&sort) {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value at 'sort_order' (type.googleapis.com/google.people.v1.ListConnectionsRequest.SortOrder), \"{sort}\""
            )));
        }
        let mut sources = p.sources.clone();
        for s in &sources {
            if !READ_SOURCES.contains(&s.as_str()) {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid value at 'sources[0]' (type.googleapis.com/google.people.v1.ReadSourceType), \"{s}\""
                )));
            }
        }
        sources.sort();
        sources.dedup();
        let sources_text = sources.join(",");
        let sync_token = p.sync_token.as_deref().filter(|t| !t.is_empty());
        let page_token = p.page_token.as_deref().filter(|t| !t.is_empty());
        let wants_sync = p.request_sync_token || sync_token.is_some();
        if self.settings.reject_descending_sync && wants_sync && sort == "LAST_MODIFIED_DESCENDING"
        {
            return Err(ApiError::bad_token());
        }
        let mask_text = mask.canonical();
        let bind_hash = cursor::param_hash(&["c", &mask_text, &sources_text, sort]);
        let page_hash = cursor::param_hash(&[
            "c",
            &mask_text,
            &sources_text,
            sort,
            &page_size.to_string(),
            if p.request_sync_token { "1" } else { "0" },
            sync_token.unwrap_or(""),
        ]);

        let since = match sync_token {
            Some(t) => Some(self.check_sync_token(t, 'c', bind_hash, now)?),
            None => None,
        };
        let (position, origin, after) = match page_token {
            Some(t) => {
                let c: PageCursor =
                    cursor::decode(t, &self.secret).ok_or_else(ApiError::bad_token)?;
                if c.k != 'c' || c.h != page_hash {
                    return Err(ApiError::bad_token());
                }
                (
                    c.p,
                    c.o,
                    Some((parse_key_text(&c.s).ok_or_else(ApiError::bad_token)?, c.r)),
                )
            }
            None => {
                let origin = since.as_ref().map_or(now.unix_timestamp(), |s| s.o);
                let position = if since.is_some() {
                    self.visible_position(now)
                } else {
                    self.seq
                };
                (position, origin, None)
            }
        };

        // The result set: live contacts (full listing) or every contact changed in
        // (since, position] (delta, tombstones included).
        let mut items: Vec<((u64, String), &Contact)> = self
            .contacts
            .values()
            .filter(|c| match &since {
                Some(s) => c.seq > s.p && c.seq <= position,
                None => !c.deleted,
            })
            .map(|c| (sort_key(c, sort), c))
            .collect();
        items.sort_by(|a, b| (&a.0, &a.1.resource_name).cmp(&(&b.0, &b.1.resource_name)));
        let total = items.len();
        let start = match &after {
            Some((s, r)) => items.partition_point(|(k, c)| (k, &c.resource_name) <= (s, r)),
            None => 0,
        };
        let page: Vec<&((u64, String), &Contact)> =
            items.iter().skip(start).take(page_size).collect();
        let last_page = start + page.len() >= total;

        let mut out = Map::new();
        if !page.is_empty() {
            let opts = RenderOpts { list_cap: true };
            let people: Vec<Value> = page
                .iter()
                .map(|(_, c)| {
                    if c.deleted {
                        person::render_tombstone(self.meta(c), &mask)
                    } else {
                        self.render(c, &mask, opts)
                    }
                })
                .collect();
            out.insert("connections".into(), Value::Array(people));
        }
        if !last_page && let Some((key, c)) = page.last() {
            let pc = PageCursor {
                k: 'c',
                h: page_hash,
                p: position,
                s: key_text(key),
                r: c.resource_name.clone(),
                o: origin,
            };
            out.insert(
                "nextPageToken".into(),
                json!(cursor::encode(&pc, &self.secret)),
            );
        }
        let issue =
            p.request_sync_token || (since.is_some() && !self.settings.strict_request_sync_token);
        if last_page && issue {
            let sc = SyncCursor {
                k: 'c',
                p: position,
                h: bind_hash,
                i: now.unix_timestamp(),
                o: origin,
                g: self.sync_generation,
            };
            out.insert(
                "nextSyncToken".into(),
                json!(cursor::encode(&sc, &self.secret)),
            );
        }
        // proto3 JSON omits zero counters: an idle delta is exactly {"nextSyncToken": …}.
        if total > 0 {
            out.insert("totalPeople".into(), json!(total));
            out.insert("totalItems".into(), json!(total));
        }
        Ok(Value::Object(out))
    }

    pub(super) fn check_sync_token(
        &self,
        token: &str,
        kind: char,
        bind_hash: u64,
        now: OffsetDateTime,
    ) -> Result<SyncCursor, ApiError> {
        let c: SyncCursor = cursor::decode(token, &self.secret).ok_or_else(ApiError::bad_token)?;
        if c.k != kind || c.h != bind_hash {
            return Err(ApiError::bad_token());
        }
        let from = match self.settings.sync_token_expiry_from {
            crate::google::settings::SyncExpiryFrom::FullSync => c.o,
            crate::google::settings::SyncExpiryFrom::Issue => c.i,
        };
        if c.g < self.sync_generation
            || now.unix_timestamp() - from > self.settings.sync_token_ttl_secs
        {
            let mut e =
                ApiError::expired_sync_token(self.settings.expired_sync_token_status.as_str());
            if let Ok(code) =
                axum::http::StatusCode::from_u16(self.settings.expired_sync_token_http)
            {
                e.http = code;
            }
            return Err(e);
        }
        Ok(c)
    }
}

const SORT_ORDERS: [&str; 4] = [
    "LAST_MODIFIED_ASCENDING",
    "LAST_MODIFIED_DESCENDING",
    "FIRST_NAME_ASCENDING",
    "LAST_NAME_ASCENDING",
];

const READ_SOURCES: [&str; 4] = [
    "READ_SOURCE_TYPE_PROFILE",
    "READ_SOURCE_TYPE_CONTACT",
    "READ_SOURCE_TYPE_DOMAIN_CONTACT",
    "READ_SOURCE_TYPE_OTHER_CONTACT",
];

/// The sort key of a contact for `sortOrder`: a number (change sequence, or 0/1 for "has a
/// name") and a text (the lower-cased name for name orders).
fn sort_key(c: &Contact, sort: &str) -> (u64, String) {
    let name = |k: &str| {
        c.data
            .first_str("names", k)
            .map(str::to_lowercase)
            .filter(|s| !s.is_empty())
    };
    match sort {
        "LAST_MODIFIED_DESCENDING" => (u64::MAX - c.seq, String::new()),
        "FIRST_NAME_ASCENDING" => name("givenName").map_or((1, String::new()), |n| (0, n)),
        "LAST_NAME_ASCENDING" => name("familyName").map_or((1, String::new()), |n| (0, n)),
        _ => (c.seq, String::new()),
    }
}

/// A contact sort key as stored in a page token (`<number>:<text>`).
fn key_text(k: &(u64, String)) -> String {
    format!("{}:{}", k.0, k.1)
}

fn parse_key_text(s: &str) -> Option<(u64, String)> {
    let (n, t) = s.split_once(':')?;
    Some((n.parse().ok()?, t.to_owned()))
}

/// Resolve `pageSize`: unset or 0 → `default`; negative → 400; above `max` → clamp or 400.
pub(super) fn page_size(
    raw: Option<i64>,
    default: usize,
    max: usize,
    over: OverMax,
) -> Result<usize, ApiError> {
    match raw {
        None | Some(0) => Ok(default),
        Some(n) if n < 0 => Err(ApiError::invalid_argument(format!(
            "pageSize must be between 1 and {max}; got {n}."
        ))),
        Some(n) if n as u64 > max as u64 => match over {
            OverMax::Clamp => Ok(max),
            OverMax::Reject => Err(ApiError::invalid_argument(format!(
                "pageSize must be between 1 and {max}; got {n}."
            ))),
        },
        Some(n) => Ok(n as usize),
    }
}
