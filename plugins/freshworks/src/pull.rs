//! `pull`: full and incremental listings, deletions, and container scope.
//!
//! Requests (page size 100, the API's maximum):
//!
//! | Phase    | Request                                                                 |
//! |----------|-------------------------------------------------------------------------|
//! | full     | `GET <entity>/filters` once (the "All …" view id, then kept in the cursor), `GET settings/<entity>/fields` once (field types), then `GET <entity>/view/<id>?page=N&per_page=100&sort=updated_at&sort_type=desc` per page |
//! | changes  | the same view pages (or `GET contacts/lists/<id>?…` for a list) until a page reaches past `checkpoint − overlap` |
//! | deleted  | `POST filtered_search/<entity>?page=N&per_page=100` with `deleted is 1` and `updated_at is_after <window>` |
//!
//! A listing stops at `meta.total_pages` (or on an empty page when the app sends no
//! meta), so a full listing of N records costs ⌈N/100⌉ + 2 requests, and an incremental
//! run with no changes costs 2 (one view page, one deleted search). Sorting by
//! `updated_at` descending makes offset paging safe against edits during the listing:
//! an edited record moves to the front, so later pages shift by one towards the end
//! (duplicates, which the host drops), never towards the start (a skip). A page shorter
//! than asked for while more pages follow (Freshworks does this now and then, leaving a
//! record out) is read again with other page boundaries before the listing goes on
//! (`complete_short_page`); a listing that stays incomplete keeps its checkpoint.
//!
//! An incremental listing starts `overlap-seconds` before its checkpoint (timestamps have
//! one-second resolution: a record edited in the checkpoint's second after the listing
//! read it has the same `updated_at`), so it lists again what the last run returned near
//! the checkpoint. The cursor remembers those records by a hash of their JSON
//! (`Cursor::seen`, at most `MAX_SEEN`) and such a listing returns only the ones that
//! changed: a poll that finds nothing new hands the host no record.

use std::collections::BTreeSet;

use serde_json::{Value as Json, json};
use tandem_sdk::{Error, Page, PullRequest, Record};

use crate::api::Client;
use crate::cursor::{Cursor, MAX_SEEN, Phase};
use crate::meta;
use crate::model::{App, Entity};
use crate::record::{self, FieldTypes};
use crate::settings::Settings;
use tandem_sdk::timestamp as instant;
use tandem_sdk::url::encode;

/// The API's largest page.
pub const MAX_PAGE: u32 = 100;

/// Runs one `pull` call for `app`.
pub fn pull(app: App, req: PullRequest) -> Result<Page, Error> {
    let settings = Settings::load()?;
    let entity = app.entity(&req.entity, settings.edition)?;
    if req.container.is_some() && !app.has_lists() {
        return Err(Error::invalid(format!(
            "{} records have no containers; pull without a container",
            app.label()
        )));
    }
    let client = Client::new(settings);
    let per_page = if req.page_size == 0 {
        MAX_PAGE
    } else {
        req.page_size.min(MAX_PAGE)
    };
    let list = req.container.clone();
    let previous = req.cursor.as_deref().map(Cursor::decode).transpose()?;
    if let Some(cursor) = &previous {
        cursor.check_scope(entity.plural(), list.as_deref())?;
    }
    let cursor = start(
        previous,
        req.full,
        entity,
        list,
        per_page,
        client.settings().overlap_secs,
    );
    run(&client, entity, cursor)
}

/// The cursor to fetch next: a listing in progress continues; a finished one starts the
/// next incremental run (or a full listing when asked, or when there is no checkpoint).
pub fn start(
    previous: Option<Cursor>,
    full: bool,
    entity: Entity,
    list: Option<String>,
    per_page: u32,
    overlap_secs: i64,
) -> Cursor {
    match previous {
        Some(cursor) if cursor.phase == Phase::Full => cursor,
        Some(cursor) if !full && cursor.phase != Phase::Done => cursor,
        Some(done) if !full && done.checkpoint.is_some() => {
            let checkpoint = done.checkpoint.clone().unwrap_or_default();
            Cursor {
                phase: Phase::Changes,
                page: 1,
                per_page,
                window: Some(
                    instant::minus_secs(&checkpoint, overlap_secs)
                        .unwrap_or_else(|| checkpoint.clone()),
                ),
                high: None,
                checkpoint: Some(checkpoint),
                ..done
            }
        }
        previous => {
            let mut cursor = Cursor::full(entity.plural(), list, per_page);
            if let Some(previous) = previous {
                cursor.view = previous.view;
                cursor.checkpoint = previous.checkpoint;
                cursor.types = previous.types;
                cursor.cached = previous.cached;
            }
            cursor
        }
    }
}

/// The field types a listing converts records with. An incremental listing uses the
/// ones its cursor carries (learned by the last full listing) and makes no storage call
/// (each is a statement in the host's database); a record with a custom field they do not
/// know says they are old: then the cache (kept by every full listing on the connection),
/// and if it does not know the field either, the app's metadata, once per call.
struct Types<'a> {
    client: &'a Client,
    entity: Entity,
    resolved: Option<FieldTypes>,
    /// The metadata was fetched in this call: what it does not list is a plain field.
    fresh: bool,
    /// What a page without records is converted with: nothing.
    none: FieldTypes,
}

impl Types<'_> {
    /// The types for a page of `items`, kept in `cursor` when they change.
    fn for_page(&mut self, cursor: &mut Cursor, items: &[Json]) -> Result<&FieldTypes, Error> {
        if items.is_empty() {
            return Ok(&self.none);
        }
        if self.resolved.is_none() {
            self.resolved = match cursor.types.clone() {
                Some(types) => Some(types),
                None => self.cached(cursor),
            };
        }
        let unknown = |types: &FieldTypes| -> BTreeSet<String> {
            items
                .iter()
                .filter_map(Json::as_object)
                .flat_map(|o| types.unknown_custom(o))
                .map(str::to_owned)
                .collect()
        };
        let stale = self
            .resolved
            .as_ref()
            .is_none_or(|t| !unknown(t).is_empty());
        if stale && !self.fresh {
            let known = self.cached(cursor).filter(|t| unknown(t).is_empty());
            self.resolved = match known {
                Some(types) => Some(types),
                None => {
                    self.fresh = true;
                    cursor.cached = false;
                    Some(meta::types_fetched(self.client, self.entity)?)
                }
            };
        }
        let mut types = self.resolved.take().unwrap_or_default();
        if self.fresh {
            // Fields the app lists on records but not in its metadata are plain ones:
            // remembered, so that the next run does not fetch the metadata for them again
            // (the cache, which holds the metadata's, then differs from the cursor's).
            let extra = unknown(&types);
            if !extra.is_empty() {
                types.custom.extend(extra);
                cursor.cached = false;
            }
        }
        if cursor.types.as_ref() != Some(&types) {
            cursor.types = Some(types.clone());
        }
        Ok(self.resolved.insert(types))
    }

    /// The cached types, noting in `cursor` that the cache holds what it now carries.
    fn cached(&self, cursor: &mut Cursor) -> Option<FieldTypes> {
        let types = meta::cached(self.entity)?;
        cursor.cached = true;
        Some(types)
    }
}

/// Fetches pages from `cursor` until a page can be returned.
fn run(client: &Client, entity: Entity, mut cursor: Cursor) -> Result<Page, Error> {
    let overlap = client.settings().overlap_secs;
    let mut types = Types {
        client,
        entity,
        resolved: None,
        fresh: false,
        none: FieldTypes::default(),
    };
    if cursor.phase == Phase::Full && cursor.page == 1 {
        let known = cursor.types.as_ref().filter(|_| cursor.cached);
        let (fresh, cached) = meta::refresh(client, entity, known)?;
        cursor.types = Some(fresh.clone());
        cursor.cached = cached;
        types.resolved = Some(fresh);
        types.fresh = true;
    }
    let mut records = Vec::new();
    let mut deleted = Vec::new();
    loop {
        match cursor.phase {
            Phase::Full | Phase::Changes => {
                let mut listing = fetch_listing(client, entity, &mut cursor, None)?;
                if listing.is_short(cursor.page, cursor.per_page) {
                    listing = complete_short_page(client, entity, &mut cursor, listing)?;
                }
                if cursor.page == 1 && cursor.list.is_some() {
                    check_members(client.settings(), &mut cursor, listing.total);
                }
                let page_types = types.for_page(&mut cursor, &listing.items)?;
                let step = listing_step(&mut cursor, &listing, page_types, overlap)?;
                records.extend(step.records);
                deleted.extend(step.deleted);
                if !step.last {
                    cursor.page += 1;
                    return Ok(Page::more(records, cursor.encode()).with_deleted(deleted));
                }
                if cursor.phase == Phase::Full {
                    return Ok(finish(cursor, records, deleted, overlap));
                }
                cursor.phase = Phase::Deleted;
                cursor.page = 1;
            }
            Phase::Deleted => {
                let found = fetch_deleted(client, entity, &cursor)?;
                let last = found.items.is_empty()
                    || found
                        .total
                        .is_some_and(|t| u64::from(cursor.page) * u64::from(cursor.per_page) >= t);
                deleted.extend(
                    found
                        .items
                        .iter()
                        .filter_map(|item| item.as_object().and_then(record::id_of)),
                );
                if !last {
                    cursor.page += 1;
                    return Ok(Page::more(records, cursor.encode()).with_deleted(deleted));
                }
                return Ok(finish(cursor, records, deleted, overlap));
            }
            Phase::Done => return Ok(finish(cursor, records, deleted, overlap)),
        }
    }
}

/// A stable hash of an API object (its JSON text, keys sorted): equal while the app
/// returns the same content.
fn json_hash(item: &Json) -> String {
    use std::hash::{DefaultHasher, Hasher};
    // `DefaultHasher::new` has fixed keys: the same hash for the same text in every call
    // of one build. A build that hashes otherwise only lists the overlap once more.
    // Streamed into the hasher rather than written out first. `str::hash` is the text's
    // bytes and then 0xff, so the hash is what hashing the whole text gave.
    struct Feed<'a>(&'a mut DefaultHasher);
    impl std::io::Write for Feed<'_> {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.write(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = DefaultHasher::new();
    // Writing a `Json` value to memory cannot fail.
    let _ = serde_json::to_writer(Feed(&mut h), item);
    h.write_u8(0xff);
    format!("{:016x}", h.finish())
}

/// The last page of a run: the checkpoint for the next one, and the records near it that
/// the next run need not return again unless they changed.
fn finish(cursor: Cursor, records: Vec<Record>, deleted: Vec<String>, overlap: i64) -> Page {
    // A listing with a page that stayed short is not trusted: the checkpoint stays where
    // the run started (none after a full listing), so the next run lists the same span
    // again (in full after a full listing) instead of skipping what was left out.
    let checkpoint = if cursor.gaps {
        (cursor.phase != Phase::Full)
            .then(|| cursor.checkpoint.clone())
            .flatten()
    } else {
        instant::later(cursor.high.clone(), cursor.checkpoint.clone())
    };
    // What the next run lists again: from its checkpoint less the overlap.
    let from = checkpoint
        .as_deref()
        .and_then(instant::parse)
        .map(|c| c.unix_timestamp() - overlap);
    let mut cursor = cursor;
    let seen = match from {
        Some(from) => std::mem::take(&mut cursor.recent)
            .into_iter()
            .filter(|(_, _, at)| *at >= from)
            .map(|(id, hash, _)| (id, hash))
            .collect(),
        None => Default::default(),
    };
    let done = Cursor {
        phase: Phase::Done,
        page: 1,
        window: None,
        high: None,
        checkpoint,
        gaps: false,
        whole: false,
        seen,
        recent: Vec::new(),
        ..cursor
    };
    Page::last(records, Some(done.encode())).with_deleted(deleted)
}

/// One page of a listing as the app returned it.
#[derive(Debug, Default)]
pub struct Listing {
    /// The record objects.
    pub items: Vec<Json>,
    /// `meta.total_pages`, when sent.
    pub total_pages: Option<u64>,
    /// `meta.total`, when sent.
    pub total: Option<u64>,
}

impl Listing {
    /// Reads `{"<key>": [...], "meta": {...}}`, taking the records out of the answer
    /// rather than copying them (a page is most of a poll's work in the plugin).
    pub fn parse(mut body: Json, key: &str) -> Result<Self, Error> {
        let has_meta = body.get("meta").is_some();
        let items = match body.get_mut(key) {
            Some(Json::Array(items)) => std::mem::take(items),
            Some(Json::Null) | None if has_meta => Vec::new(),
            _ => {
                return Err(Error::transient(format!(
                    "the answer has no `{key}` list; retry later"
                )));
            }
        };
        let meta = |k: &str| body.pointer(&format!("/meta/{k}")).and_then(Json::as_u64);
        Ok(Listing {
            items,
            total_pages: meta("total_pages"),
            total: meta("total"),
        })
    }

    /// A page with fewer records than asked for although more pages follow.
    pub fn is_short(&self, page: u32, per_page: u32) -> bool {
        !self.items.is_empty()
            && self.items.len() < per_page as usize
            && self.total_pages.is_some_and(|t| u64::from(page) < t)
    }
}

/// What one listing page gives.
#[derive(Debug, Default)]
pub struct Step {
    /// Live records of the page (inside the window for `changes`).
    pub records: Vec<Record>,
    /// Soft-deleted records met in the listing.
    pub deleted: Vec<String>,
    /// The phase has no more pages.
    pub last: bool,
}

/// Maps one listing page and decides whether the phase goes on (pure).
pub fn listing_step(
    cursor: &mut Cursor,
    listing: &Listing,
    types: &FieldTypes,
    overlap: i64,
) -> Result<Step, Error> {
    let window = cursor.window.as_deref().and_then(instant::parse);
    let windowed = cursor.phase == Phase::Changes && !cursor.whole;
    let mut step = Step::default();
    let mut page_high: Option<String> = None;
    let mut past_window = false;
    for item in &listing.items {
        let Some(object) = item.as_object() else {
            continue;
        };
        if record::is_deleted(object) {
            step.deleted.extend(record::id_of(object));
            continue;
        }
        // Whether the host gets this record is decided before it is built: in a windowed
        // listing most records are usually the overlap, unchanged, and building them was
        // most of an idle poll's work in the plugin.
        let id = record::required_id(object)?;
        let updated_at = record::updated_at_of(object);
        let updated = updated_at.as_deref().and_then(instant::parse);
        page_high = instant::later(page_high, updated_at);
        past_window = matches!((window, updated), (Some(w), Some(u)) if u < w);
        if windowed && past_window {
            continue;
        }
        let hash = json_hash(item);
        // Listed again only because of the overlap, and unchanged since the last run
        // returned it: nothing new for the host. Only in a windowed listing: a complete
        // one (full, or a list read whole) must return every record in scope.
        let unchanged = windowed && cursor.seen.get(&id) == Some(&hash);
        if let Some(u) = updated
            && cursor.recent.len() < MAX_SEEN
        {
            cursor.recent.push((id, hash, u.unix_timestamp()));
        }
        if !unchanged {
            step.records.push(record::to_record(object, types)?);
        }
    }
    if cursor.page == 1 {
        cursor.high = page_high;
    }
    // Only what the next run lists again can be remembered: from this run's newest less
    // the overlap (the checkpoint is not older). Pages come newest first, so the rest of a
    // long listing adds nothing here and its cursors stay small.
    if let Some(high) = cursor.high.as_deref().and_then(instant::parse) {
        let from = high.unix_timestamp() - overlap;
        cursor.recent.retain(|(_, _, at)| *at >= from);
    }
    // `past_window` is the last record's: the page reached past the window start.
    step.last = listing.items.is_empty()
        || listing
            .total_pages
            .is_some_and(|t| u64::from(cursor.page) >= t)
        || (windowed && past_window);
    Ok(step)
}

/// The plugin storage key counting the members this connection added to (and removed
/// from) `list` since the list was last listed.
fn own_changes_key(list: &str) -> String {
    format!("list-changes/{list}")
}

/// Records that this connection added (`delta` > 0) or removed list members, so that the
/// next listing's member-count check expects them. Best effort: without storage the next
/// incremental listing of the list reads it in full.
pub fn note_own_membership_changes(list: &str, delta: i64) {
    let key = own_changes_key(list);
    let before = tandem_sdk::storage::get_json::<i64>(&key)
        .ok()
        .flatten()
        .unwrap_or(0);
    if let Err(e) = tandem_sdk::storage::set_json(&key, &before.saturating_add(delta)) {
        tandem_sdk::log::debug(&format!("cannot note list changes: {}", e.message()));
    }
}

/// The member changes noted since the last listing of `list`, which they are then part of
/// (`None` without storage).
fn take_own_membership_changes(list: &str) -> Option<i64> {
    let key = own_changes_key(list);
    let delta = tandem_sdk::storage::get_json::<i64>(&key).ok()?;
    if delta.is_some() {
        let _ = tandem_sdk::storage::delete(&key);
    }
    Some(delta.unwrap_or(0))
}

/// First page of a list listing: whether this incremental run may trust `updated_at` for
/// people who joined the list. It reads the whole list instead when the connection says
/// joins do not move `updated_at`, or when the member count (`meta.total`, free with the
/// page) differs from the last run's plus this connection's own adds and removes since:
/// someone joined or left without the window showing it. A join and a leave between two
/// runs cancel out in the count; the periodic full listing covers that.
fn check_members(settings: &Settings, cursor: &mut Cursor, total: Option<u64>) {
    let own = cursor.list.as_deref().and_then(take_own_membership_changes);
    if cursor.phase == Phase::Changes {
        let expected = cursor
            .members
            .map(|known| i128::from(known) + i128::from(own.unwrap_or(0)));
        let agrees = match (expected, total) {
            (_, None) => true, // No count sent: nothing to compare.
            (Some(expected), Some(now)) => expected == i128::from(now),
            (None, Some(_)) => false,
        };
        if !settings.list_joins_move_updated_at {
            cursor.whole = true;
        } else if !agrees {
            cursor.whole = true;
            tandem_sdk::log::info(&format!(
                "list {} has {} members, {} expected; people joined or left without a newer updated_at: reading the whole list",
                cursor.list.as_deref().unwrap_or_default(),
                total.unwrap_or_default(),
                expected.map_or_else(|| "an unknown number".to_owned(), |e| e.to_string())
            ));
        }
    }
    cursor.members = total;
}

/// The page size that re-reads the span of short page `page` (of `per_page` records) with
/// its page boundaries elsewhere: the span's last index must not end a page of the new
/// size, since a short page lost a record there. `None` below 3 records a page.
pub fn shifted_page_size(page: u32, per_page: u32) -> Option<u32> {
    if per_page < 3 {
        return None;
    }
    let end = u64::from(page) * u64::from(per_page);
    (2..per_page).rev().find(|size| end % u64::from(*size) != 0)
}

/// Completes a page that came back short while more pages follow (Freshworks does this
/// now and then: a record of the page is left out, not moved to the next page, and asking
/// again at once often gives the same short page). The page's span is read once more with
/// pages of another size (see [`shifted_page_size`]; 2 or 3 requests), so its records sit
/// at other page boundaries, and the records not yet seen are merged in (newest first).
/// A span still short after that is logged and marks the listing as having gaps, so
/// that its checkpoint does not move (see [`finish`]).
fn complete_short_page(
    client: &Client,
    entity: Entity,
    cursor: &mut Cursor,
    short: Listing,
) -> Result<Listing, Error> {
    let (page, per_page) = (cursor.page, cursor.per_page);
    let start = u64::from(page - 1) * u64::from(per_page);
    let end = start + u64::from(per_page);
    let mut items = short.items.clone();
    let mut seen: std::collections::BTreeSet<String> = items
        .iter()
        .filter_map(|i| i.as_object().and_then(record::id_of))
        .collect();
    if let Some(size) = shifted_page_size(page, per_page) {
        let size64 = u64::from(size);
        for other in (start / size64 + 1)..=((end - 1) / size64 + 1) {
            let Ok(other) = u32::try_from(other) else {
                break;
            };
            let again = fetch_listing(client, entity, cursor, Some((other, size)))?;
            let first = u64::from(other - 1) * size64;
            for (offset, item) in again.items.into_iter().enumerate() {
                let index = first + offset as u64;
                let id = item.as_object().and_then(record::id_of);
                if (start..end).contains(&index)
                    && let Some(id) = id
                    && seen.insert(id)
                {
                    items.push(item);
                }
            }
        }
    }
    // Newest first, as the app sorts: the last record decides whether a window is passed.
    items.sort_by_key(|item| {
        std::cmp::Reverse(
            item.get("updated_at")
                .and_then(Json::as_str)
                .and_then(instant::parse),
        )
    });
    if items.len() < per_page as usize {
        cursor.gaps = true;
        tandem_sdk::log::warn(&format!(
            "page {page} has {} records of {per_page} although more pages follow, also when read again; the next run lists these records again",
            items.len()
        ));
    } else {
        tandem_sdk::log::info(&format!(
            "page {page} came back with {} records of {per_page} although more pages follow; read again with other page boundaries, complete",
            short.items.len()
        ));
    }
    Ok(Listing { items, ..short })
}

/// Fetches the cursor's listing page (view or list), resolving the view id if needed;
/// `other` asks for another (page, page size) of the same listing instead.
fn fetch_listing(
    client: &Client,
    entity: Entity,
    cursor: &mut Cursor,
    other: Option<(u32, u32)>,
) -> Result<Listing, Error> {
    let (page, per_page) = other.unwrap_or((cursor.page, cursor.per_page));
    let query = format!("page={page}&per_page={per_page}&sort=updated_at&sort_type=desc");
    if let Some(list) = &cursor.list {
        let body = client.get(&format!("contacts/lists/{}?{query}", encode(list)))?;
        return Listing::parse(body, entity.plural());
    }
    let fresh = cursor.view.is_none();
    if fresh {
        cursor.view = Some(all_view(client, entity)?);
    }
    let path = |view: &str| format!("{}/view/{}?{query}", entity.plural(), encode(view));
    let body = match client.get(&path(cursor.view.as_deref().unwrap_or_default())) {
        // A view id kept from an earlier run may have gone: look it up once more.
        Err(Error::NotFound(_)) if !fresh => {
            cursor.view = Some(all_view(client, entity)?);
            client.get(&path(cursor.view.as_deref().unwrap_or_default()))?
        }
        other => other?,
    };
    Listing::parse(body, entity.plural())
}

/// The id of the view that holds every record ("All Contacts" / "All Leads").
pub fn all_view(client: &Client, entity: Entity) -> Result<String, Error> {
    let body = client.get(&format!("{}/filters", entity.plural()))?;
    pick_all_view(entity, &body).ok_or_else(|| {
        Error::fatal(format!(
            "the account has no \"{}\" view; restore that system view in Freshworks",
            entity.all_view()
        ))
    })
}

/// Picks the "All …" view: by exact name, else the first name starting with "All".
pub fn pick_all_view(entity: Entity, body: &Json) -> Option<String> {
    let filters = body.get("filters")?.as_array()?;
    let name_of = |f: &Json| {
        f.get("name")
            .and_then(Json::as_str)
            .unwrap_or("")
            .trim()
            .to_lowercase()
    };
    let id_of = |f: &Json| match f.get("id")? {
        Json::Number(n) => Some(n.to_string()),
        Json::String(s) => Some(s.clone()),
        _ => None,
    };
    let wanted = entity.all_view().to_lowercase();
    filters
        .iter()
        .find(|f| name_of(f) == wanted)
        .or_else(|| filters.iter().find(|f| name_of(f).starts_with("all ")))
        .and_then(id_of)
}

/// The deleted-records search body for a window.
pub fn deleted_query(window: Option<&str>) -> Json {
    let mut rules = vec![json!({"attribute": "deleted", "operator": "is", "value": 1})];
    if let Some(window) = window {
        rules.push(json!({"attribute": "updated_at", "operator": "is_after", "value": window}));
    }
    json!({"filter_rule": rules, "sort": "updated_at", "sort_type": "desc"})
}

fn fetch_deleted(client: &Client, entity: Entity, cursor: &Cursor) -> Result<Listing, Error> {
    let path = format!(
        "filtered_search/{}?page={}&per_page={}",
        entity.singular(),
        cursor.page,
        cursor.per_page
    );
    let body = client
        .post(&path, &deleted_query(cursor.window.as_deref()))
        .map_err(|e| e.context("listing deleted records"))?;
    Listing::parse(body, entity.plural())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifted_page_sizes_move_the_span_end_off_a_page_end() {
        // (page, per_page) -> size: the span's end (page × per_page) is no multiple of it.
        let cases = [
            ((1, 100), Some(99)),
            ((2, 100), Some(99)),
            ((99, 100), Some(98)), // 9,900 = 99 × 100
            ((3, 10), Some(9)),
            ((9, 10), Some(8)), // 90 = 9 × 10
            ((1, 3), Some(2)),
            ((1, 2), None),
        ];
        for ((page, per_page), want) in cases {
            let got = shifted_page_size(page, per_page);
            assert_eq!(got, want, "page {page} of {per_page}");
            if let Some(size) = got {
                assert_ne!(u64::from(page * per_page) % u64::from(size), 0);
            }
        }
    }

    /// A listing that kept a gap does not move its checkpoint: an incremental run keeps
    /// the one it started from, a full listing leaves none (the next run is full again).
    #[test]
    fn a_listing_with_gaps_keeps_its_checkpoint() {
        let mut cursor = Cursor::full("contacts", None, 100);
        cursor.phase = Phase::Deleted;
        cursor.checkpoint = Some("2024-06-01T10:00:00Z".into());
        cursor.high = Some("2024-06-01T11:00:00Z".into());
        let checkpoint = |page: Page| {
            Cursor::decode(page.next_cursor.as_deref().unwrap())
                .unwrap()
                .checkpoint
        };
        assert_eq!(
            checkpoint(finish(cursor.clone(), vec![], vec![], 120)).as_deref(),
            Some("2024-06-01T11:00:00Z")
        );
        cursor.gaps = true;
        let done = finish(cursor.clone(), vec![], vec![], 120);
        let decoded = Cursor::decode(done.next_cursor.as_deref().unwrap()).unwrap();
        assert_eq!(decoded.checkpoint.as_deref(), Some("2024-06-01T10:00:00Z"));
        assert!(!decoded.gaps, "the next run starts clean");
        cursor.phase = Phase::Full;
        assert_eq!(checkpoint(finish(cursor, vec![], vec![], 120)), None);
    }

    #[test]
    fn the_cursor_remembers_only_what_the_next_run_lists_again() {
        // A full listing's first page, newest first, one record a minute: with an overlap
        // of 120 s the next run lists again the records of the last two minutes.
        let items: Vec<Json> = (0..10)
            .map(|i| {
                json!({"id": i, "email": format!("p{i}@example.com"),
                       "updated_at": format!("2024-06-01T10:{:02}:00Z", 50 - i)})
            })
            .collect();
        let listing = Listing {
            items,
            total_pages: Some(1),
            total: Some(10),
        };
        let mut cursor = Cursor::full("contacts", None, 100);
        let step = listing_step(&mut cursor, &listing, &FieldTypes::default(), 120).unwrap();
        assert_eq!(
            step.records.len(),
            10,
            "a full listing returns every record"
        );
        let done = finish(cursor, step.records, vec![], 120);
        let next = Cursor::decode(done.next_cursor.as_deref().unwrap()).unwrap();
        assert_eq!(next.checkpoint.as_deref(), Some("2024-06-01T10:50:00Z"));
        assert_eq!(
            next.seen.keys().map(String::as_str).collect::<Vec<_>>(),
            ["0", "1", "2"]
        );
        assert!(next.recent.is_empty());

        // The next run lists them again: unchanged ones are not returned, a changed one is.
        let mut again = start(Some(next), false, Entity::Contacts, None, 100, 120);
        let mut relisted = listing.items[..4].to_vec();
        relisted[1]["job_title"] = json!("Changed");
        let listing = Listing {
            items: relisted,
            total_pages: Some(1),
            total: Some(4),
        };
        let step = listing_step(&mut again, &listing, &FieldTypes::default(), 120).unwrap();
        assert_eq!(
            step.records
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>(),
            ["1"]
        );
        assert!(step.last, "the page reached past the window");
    }

    #[test]
    fn the_streamed_hash_is_the_hash_of_the_whole_text() {
        // Cursors written before the hash was streamed hold hashes of the JSON text: they
        // must still match, or every record of the overlap is listed again once.
        use std::hash::{DefaultHasher, Hash, Hasher};
        let item = json!({"id": 7, "emails": [{"value": "ä@example.com"}], "custom_field": {"cf_x": null},
                          "updated_at": "2024-06-01T10:00:00Z", "name": "\"quoted\" \u{1F600}"});
        let mut h = DefaultHasher::new();
        item.to_string().hash(&mut h);
        assert_eq!(json_hash(&item), format!("{:016x}", h.finish()));
        assert_ne!(json_hash(&item), json_hash(&json!({"id": 7})));
    }
}
