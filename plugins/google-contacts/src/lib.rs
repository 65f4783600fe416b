//! Google Contacts connector: the People API translated to the Tandem contract.
//!
//! Thin by design: the host owns state (cursors, links, baselines), scheduling, merging
//! and credentials. OAuth2 is the host's job (`tandem.toml` asks for an `oauth2` profile
//! with the `contacts` scope; the host refreshes the token and attaches the bearer), so
//! the connector never sees a token. Facts come from `docs/google-people-api.md`,
//! cited below by section.
//!
//! * Settings: `base-url` (default `https://people.googleapis.com`; a simulated account's
//!   URL in tests).
//! * Entity `contacts`; containers are contact groups (`contactGroups/…`: user groups,
//!   `myContacts` and `starred`, the groups that accept members).
//! * `pull`: `connections.list` with one fixed field mask ([`mapping::PERSON_FIELDS`]),
//!   1000 per page, full listing then incremental with sync tokens; tombstones
//!   (`metadata.deleted`) become `page.deleted`; an expired sync token is
//!   `cursor-expired`, and the host runs a full listing and compares it with its baseline
//!   (docs/google-people-api.md §8.2). A pull scoped to a group lists the same pages and keeps the group's members
//!   (a contact that leaves the group is seen missing by the next full listing).
//! * `find` and `find-many` (the contract's optional `lookup-api`): by ids with
//!   `getBatchGet`; by email or marker with a scan of the account (`connections.list`
//!   with a one- or two-field mask, then `getBatchGet` of the matches), since
//!   `searchContacts` runs on a lazily refreshed cache that must not be used for
//!   de-duplication or read-after-write (docs/google-people-api.md §3.3). One `find-many` call answers all its
//!   e-mails and markers with ONE scan, so a run's lookups cost a scan per batch of up to
//!   1,000 keys instead of one per key.
//! * `push`: see [`push`]; the engine marker is a `clientData` entry `tandem-marker`
//!   written on create (docs/google-people-api.md §2.2, §8.3: the hidden sync tag `find(marker)` looks for).
//! * Errors: see [`error`].

pub mod api;
pub mod cursor;
pub mod error;
pub mod mapping;
pub mod push;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;
use tandem_sdk::{
    AccountInfo, BatchLookup, Connector, Container, EntityInfo, Error, FieldDef, Lookup, Page,
    PluginInfo, PullRequest, Record, Write, WriteResult,
};

use crate::api::{Api, MAX_BATCH};
use crate::cursor::Listing;
use crate::mapping::{MAX_PAGE, PERSON_FIELDS};

/// The only entity.
pub const ENTITY: &str = "contacts";
/// Largest number of writes per `push` call. A push is split into requests within the
/// API's limits (200 creates or updates, 500 deletes per batch, docs/google-people-api.md §4.4); 1000 is the
/// least common multiple of the two, so a full call is five full create or update
/// batches or two full delete batches, and hosts that send full pushes reach the lower
/// bound of requests for creates, updates and deletes alike. A call of 1000 updates is
/// ten requests (a read and a write per 200), within the manifest's 60 s call limit.
pub const MAX_PUSH: u32 = 1000;
/// Critical read requests per minute per user, the most reported console default
/// (docs/google-people-api.md §7.1; unpublished and varying, §10 #4). Writes also spend read quota.
pub const READS_PER_MINUTE: u32 = 60;
/// Pages a scan reads at most (Google caps an account at 25,000 contacts).
const MAX_SCAN_PAGES: usize = 100;
/// System groups that accept members (docs/google-people-api.md §5.2).
const ADDABLE_SYSTEM_GROUPS: [&str; 2] = ["contactGroups/myContacts", "contactGroups/starred"];

/// The Google Contacts connector (People API), exported as the plugin.
pub struct GoogleContacts;

tandem_sdk::export_connector!(GoogleContacts);
tandem_sdk::export_batch_lookup!(GoogleContacts);

fn check_entity(entity: &str) -> Result<(), Error> {
    if entity == ENTITY {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "unknown entity `{entity}`; this connector serves `contacts`"
        )))
    }
}

impl Connector for GoogleContacts {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "google-contacts",
            env!("CARGO_PKG_VERSION"),
            "Google Contacts",
        )
        .entity(
            EntityInfo::new(ENTITY, "Contacts")
                .incremental()
                .tombstones()
                .with_containers()
                .page_size(MAX_PAGE)
                .batch_size(MAX_PUSH),
        )
        .rate_limit(READS_PER_MINUTE, 60)
    }

    fn check() -> Result<AccountInfo, Error> {
        let api = Api::from_config()?;
        let me = api.get(
            "people/me",
            &[("personFields", "emailAddresses,metadata,names")],
        )?;
        let id = mapping::resource_name(&me)
            .ok_or_else(|| Error::transient("people/me answered without a resourceName"))?
            .to_owned();
        let record = mapping::to_record(&me).unwrap_or_else(|| Record::new(id.clone()));
        let who = record
            .text(mapping::EMAIL)
            .or_else(|| record.text(mapping::DISPLAY_NAME))
            .unwrap_or(&id)
            .to_owned();
        Ok(AccountInfo::new(id, format!("Google Contacts of {who}")))
    }

    fn schema(entity: &str) -> Result<Vec<FieldDef>, Error> {
        check_entity(entity)?;
        let api = Api::from_config()?;
        // Custom keys are per contact (no metadata endpoint): scan with a narrow mask.
        let mut custom = BTreeSet::new();
        scan(&api, "clientData,userDefined", |person| {
            custom.extend(mapping::custom_field_names(person));
        })?;
        let mut fields = mapping::standard_fields();
        fields.extend(custom.iter().filter_map(|name| mapping::custom_field(name)));
        Ok(fields)
    }

    fn containers(entity: &str) -> Result<Vec<Container>, Error> {
        check_entity(entity)?;
        let api = Api::from_config()?;
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        for _ in 0..MAX_SCAN_PAGES {
            let mut query = vec![
                ("pageSize", "1000"),
                ("groupFields", "groupType,memberCount,name"),
            ];
            if let Some(token) = &page {
                query.push(("pageToken", token));
            }
            let reply = api.get("contactGroups", &query)?;
            for group in reply
                .get("contactGroups")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(container) = to_container(group) {
                    out.push(container);
                }
            }
            page = next_token(&reply, "nextPageToken");
            if page.is_none() {
                break;
            }
        }
        Ok(out)
    }

    fn pull(req: PullRequest) -> Result<Page, Error> {
        check_entity(&req.entity)?;
        let api = Api::from_config()?;
        let group = req
            .container
            .as_deref()
            .map(mapping::group_name)
            .transpose()
            .map_err(Error::invalid)?;
        let listing = Listing::plan(req.cursor.as_deref(), req.full, req.page_size)?;
        if let Some(group) = &group
            && listing.page.is_none()
        {
            // A misspelt group must not look like an empty one.
            api.get(group, &[("groupFields", "name")])?;
        }
        let reply = api
            .list_connections(
                PERSON_FIELDS,
                listing.size,
                listing.sync.as_deref(),
                listing.page.as_deref(),
                true,
            )
            .map_err(|e| stale_token(e, &listing))?;
        let (records, deleted) = split_page(&reply, group.as_deref());
        let next_page = next_token(&reply, "nextPageToken");
        let more = next_page.is_some();
        let next = listing.next(next_page, next_token(&reply, "nextSyncToken"));
        Ok(Page {
            records,
            deleted,
            next_cursor: next.map(|c| c.encode()),
            more,
        })
    }

    fn find(entity: &str, query: Lookup) -> Result<Vec<Record>, Error> {
        Ok(Self::find_many(entity, vec![query])?
            .pop()
            .unwrap_or_default())
    }

    fn push(entity: &str, writes: Vec<Write>) -> Result<Vec<WriteResult>, Error> {
        check_entity(entity)?;
        let api = Api::from_config()?;
        Ok(push::push(&api, writes))
    }
}

impl BatchLookup for GoogleContacts {
    /// Every e-mail and marker of the batch from ONE scan of the account (a one- or
    /// two-field mask, 1,000 contacts per page), since `searchContacts` must not be used
    /// for de-duplication (docs/google-people-api.md §3.3); then `getBatchGet` of the matches and of the ids, 200
    /// per request. N lookups cost ⌈contacts/1000⌉ + ⌈matches/200⌉ requests, not N scans.
    fn find_many(entity: &str, keys: Vec<Lookup>) -> Result<Vec<Vec<Record>>, Error> {
        check_entity(entity)?;
        let api = Api::from_config()?;
        let mut emails: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut markers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for key in &keys {
            match key {
                Lookup::Email(email) => {
                    emails.insert(email_key(email), Vec::new());
                }
                Lookup::Marker(marker) => {
                    markers.insert(marker.clone(), Vec::new());
                }
                Lookup::Ids(_) => {}
            }
        }
        let mask = match (emails.is_empty(), markers.is_empty()) {
            (true, true) => None,
            (false, true) => Some("emailAddresses"),
            (true, false) => Some("clientData"),
            (false, false) => Some("clientData,emailAddresses"),
        };
        if let Some(mask) = mask {
            scan(&api, mask, |person| {
                let Some(name) = mapping::resource_name(person) else {
                    return;
                };
                let mut own: Vec<String> = person
                    .get("emailAddresses")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.get("value").and_then(Json::as_str))
                    .map(email_key)
                    .collect();
                own.sort_unstable();
                own.dedup();
                for email in own {
                    if let Some(names) = emails.get_mut(&email) {
                        names.push(name.to_owned());
                    }
                }
                if let Some(names) = mapping::marker_of(person).and_then(|m| markers.get_mut(m)) {
                    names.push(name.to_owned());
                }
            })?;
        }
        // Every contact to read, once.
        let mut wanted: BTreeSet<String> = emails
            .values()
            .chain(markers.values())
            .flatten()
            .cloned()
            .collect();
        for key in &keys {
            if let Lookup::Ids(ids) = key {
                wanted.extend(ids.iter().filter_map(|id| mapping::person_name(id).ok()));
            }
        }
        let wanted: Vec<String> = wanted.into_iter().collect();
        let mut people: BTreeMap<String, Record> = BTreeMap::new();
        for chunk in wanted.chunks(MAX_BATCH) {
            for (name, person) in api.batch_get(chunk)? {
                match person {
                    Ok(person) => {
                        if let Some(record) = mapping::to_record(&person) {
                            people.insert(name, record);
                        }
                    }
                    // Missing (or malformed) ids are simply absent.
                    Err(Error::NotFound(_) | Error::Invalid(_)) => {}
                    Err(error) => return Err(error),
                }
            }
        }
        // Each contact once per key, in the order found.
        let records = |names: &[String]| -> Vec<Record> {
            let mut seen = BTreeSet::new();
            names
                .iter()
                .filter(|n| seen.insert(n.as_str()))
                .filter_map(|n| people.get(n).cloned())
                .collect()
        };
        Ok(keys
            .iter()
            .map(|key| match key {
                Lookup::Email(email) => records(&emails[&email_key(email)]),
                Lookup::Marker(marker) => records(&markers[marker]),
                Lookup::Ids(ids) => {
                    let names: Vec<String> = ids
                        .iter()
                        .filter_map(|id| mapping::person_name(id).ok())
                        .collect();
                    records(&names)
                }
            })
            .collect())
    }
}

/// An address as the lookups compare it (Google matches addresses ignoring ASCII case).
fn email_key(email: &str) -> String {
    email.trim().to_ascii_lowercase()
}

/// A Google reply's token, when present and non-empty.
fn next_token(reply: &Json, key: &str) -> Option<String> {
    reply
        .get(key)
        .and_then(Json::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// A listing that carried a sync or page token and was refused as an invalid argument:
/// Google says "Request contains an invalid argument." for a malformed token or one made
/// with other parameters (docs/google-people-api.md §7.2, §8.1). Only a new full listing recovers.
fn stale_token(error: Error, listing: &Listing) -> Error {
    match error {
        Error::Invalid(message)
            if listing.has_token() && message.contains("Request contains an invalid argument") =>
        {
            Error::cursor_expired(format!(
                "{message} (the sync or page token is no longer accepted; a full listing is needed)"
            ))
        }
        other => other,
    }
}

/// Records and tombstones of a `connections.list` page; with `group`, only its members
/// (tombstones are kept: a deleted contact has no memberships left to test).
pub fn split_page(reply: &Json, group: Option<&str>) -> (Vec<Record>, Vec<String>) {
    let mut records = Vec::new();
    let mut deleted = Vec::new();
    for person in reply
        .get("connections")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        if mapping::is_deleted(person) {
            deleted.extend(mapping::resource_name(person).map(str::to_owned));
            continue;
        }
        if let Some(group) = group
            && !mapping::memberships(person).iter().any(|g| g == group)
        {
            continue;
        }
        records.extend(mapping::to_record(person));
    }
    (records, deleted)
}

/// A contact group as a container: user groups and the system groups that accept members.
pub fn to_container(group: &Json) -> Option<Container> {
    let id = group.get("resourceName")?.as_str()?;
    let user = group.get("groupType").and_then(Json::as_str) == Some("USER_CONTACT_GROUP");
    if !user && !ADDABLE_SYSTEM_GROUPS.contains(&id) {
        return None;
    }
    let name = group
        .get("formattedName")
        .or_else(|| group.get("name"))
        .and_then(Json::as_str)
        .unwrap_or(id);
    // proto3 JSON omits a zero count.
    let count = group.get("memberCount").and_then(Json::as_u64).unwrap_or(0);
    Some(Container::new(id, name, Some(count)))
}

/// Reads every contact with a narrow mask (no sync token) and hands each to `visit`.
fn scan(api: &Api, mask: &str, mut visit: impl FnMut(&Json)) -> Result<(), Error> {
    let mut page: Option<String> = None;
    for _ in 0..MAX_SCAN_PAGES {
        let reply = api.list_connections(mask, MAX_PAGE, None, page.as_deref(), false)?;
        for person in reply
            .get("connections")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            visit(person);
        }
        page = next_token(&reply, "nextPageToken");
        if page.is_none() {
            return Ok(());
        }
    }
    Err(Error::fatal(format!(
        "the account lists more than {} pages of contacts; a scan stops there",
        MAX_SCAN_PAGES
    )))
}

#[cfg(test)]
mod tests;
