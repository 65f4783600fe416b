//! State of one simulated Google account and every People API operation on it, as plain
//! functions of (state, request, now): no I/O, so the HTTP layer stays thin and the behaviour
//! is testable without a server.
//!
//! Model (docs/google-people-api.md §9.8): contacts keyed by resource name (deleted ones stay as tombstones), contact
//! groups, one global change sequence (`seq`) stamped on every change, tokens bound to their
//! parameters, and a lazily refreshed search cache.

use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::auth::{AuthState, OAuthClient, TokenRequest};
use super::cursor::{self, PageCursor, SyncCursor};
use super::error::{ApiError, OAuthError};
use super::person::{
    self, FieldMask, PERSON_FIELDS, PersonData, PersonInput, RenderMeta, RenderOpts,
};
use super::quota::QuotaState;
use super::settings::{GoogleSettings, OverMax};

/// System groups seeded in every account (docs/google-people-api.md §9.6), with their `formattedName`.
pub const SYSTEM_GROUPS: [(&str, &str); 8] = [
    ("myContacts", "My Contacts"),
    ("starred", "Starred"),
    ("all", "All Contacts"),
    ("friends", "Friends"),
    ("family", "Family"),
    ("coworkers", "Coworkers"),
    ("chatBuddies", "Chat contacts"),
    ("blocked", "Blocked"),
];

/// System groups that accept new members; the others only allow removal (docs/google-people-api.md §5.2).
const ADDABLE_SYSTEM_GROUPS: [&str; 2] = ["contactGroups/myContacts", "contactGroups/starred"];

/// Valid `groupFields` / `readGroupFields` paths.
pub const GROUP_FIELDS: [&str; 5] = ["clientData", "groupType", "memberCount", "metadata", "name"];

/// Batch limits (docs/google-people-api.md §1.1).
pub const MAX_BATCH_GET: usize = 200;
/// `batchCreateContacts` / `batchUpdateContacts` limit.
pub const MAX_BATCH_WRITE: usize = 200;
/// `batchDeleteContacts` limit.
pub const MAX_BATCH_DELETE: usize = 500;
/// `members:modify` limit (adds + removes).
pub const MAX_MEMBERS_MODIFY: usize = 1000;

/// One contact (live or deleted).
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    /// `people/c<19 digits>`.
    pub resource_name: String,
    /// 16-hex CONTACT source id.
    pub source_id: String,
    /// The stored data.
    pub data: PersonData,
    /// Bumped on every change; feeds the source etag.
    pub version: u64,
    /// Raw bytes of the current source etag.
    pub source_etag: [u8; 8],
    /// `metadata.sources[0].updateTime`.
    pub update_time: OffsetDateTime,
    /// Change sequence number of the last change.
    pub seq: u64,
    /// Deleted (kept as a tombstone for sync deltas).
    pub deleted: bool,
}

/// One contact group.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// `contactGroups/<id>`.
    pub resource_name: String,
    /// `name` (system groups: their id, e.g. `myContacts`).
    pub name: String,
    /// `formattedName` of system groups.
    pub formatted_name: Option<String>,
    /// SYSTEM_CONTACT_GROUP.
    pub system: bool,
    /// `clientData`.
    pub client_data: Vec<Value>,
    /// Group etag (user groups).
    pub etag: String,
    /// `metadata.updateTime`.
    pub update_time: OffsetDateTime,
    /// Change sequence number of the last change.
    pub seq: u64,
    /// Deleted (tombstone for group sync).
    pub deleted: bool,
    /// Bumped on every change.
    pub version: u64,
}

/// The signed-in user's own profile (`people/me`).
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Numeric account id (`people/<id>`).
    pub account_id: String,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Account email.
    pub email: String,
}

/// Parameters of `people.connections.list`, parsed from the query.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    /// `personFields` (raw).
    pub person_fields: Option<String>,
    /// `pageSize`.
    pub page_size: Option<i64>,
    /// `pageToken` (empty = absent).
    pub page_token: Option<String>,
    /// `sortOrder`.
    pub sort_order: Option<String>,
    /// `requestSyncToken`.
    pub request_sync_token: bool,
    /// `syncToken` (empty = absent).
    pub sync_token: Option<String>,
    /// `sources` (repeated).
    pub sources: Vec<String>,
}

/// Parameters of `contactGroups.list`.
#[derive(Debug, Clone, Default)]
pub struct GroupListParams {
    /// `pageSize`.
    pub page_size: Option<i64>,
    /// `pageToken`.
    pub page_token: Option<String>,
    /// `syncToken`.
    pub sync_token: Option<String>,
    /// `groupFields` (raw).
    pub group_fields: Option<String>,
}

#[derive(Debug, Clone)]
struct SearchCache {
    /// (resource name, lower-cased searchable texts) as of the last refresh.
    entries: Vec<(String, Vec<String>)>,
}

/// What a batch item turned into.
#[derive(Debug, Clone)]
enum ItemOutcome {
    Ok(String),
    Err(ApiError),
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

/// The whole state of one simulated Google account.
#[derive(Debug, Clone)]
pub struct Store {
    /// Behaviour switches.
    pub settings: GoogleSettings,
    /// Contacts by resource name, deleted ones included.
    pub contacts: BTreeMap<String, Contact>,
    /// Groups by resource name, deleted user groups included.
    pub groups: BTreeMap<String, Group>,
    /// OAuth client and tokens.
    pub auth: AuthState,
    /// The account owner.
    pub profile: Profile,
    /// Quota usage.
    pub quota: QuotaState,
    seed: u64,
    secret: [u8; 16],
    rng: ChaCha8Rng,
    seq: u64,
    sync_generation: u64,
    search: Option<SearchCache>,
    search_refresh_due: Option<OffsetDateTime>,
}

/// RFC 3339 with milliseconds (`2024-06-01T10:00:00.123Z`), as Google writes `updateTime`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    super::rfc3339(t)
}

impl Store {
    /// An empty account (system groups only) whose random choices derive from `seed`.
    pub fn new(
        seed: u64,
        settings: GoogleSettings,
        client: OAuthClient,
        refresh_token: String,
        profile: Profile,
        now: OffsetDateTime,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x600_613e);
        let mut secret = [0u8; 16];
        rng.fill(&mut secret);
        let mut s = Store {
            settings,
            contacts: BTreeMap::new(),
            groups: BTreeMap::new(),
            auth: AuthState::new(client, refresh_token),
            profile,
            quota: QuotaState::default(),
            seed,
            secret,
            rng,
            seq: 0,
            sync_generation: 0,
            search: None,
            search_refresh_due: None,
        };
        for (id, formatted) in SYSTEM_GROUPS {
            let rn = format!("contactGroups/{id}");
            s.seq += 1;
            let etag = s.group_etag(&rn, 1);
            s.groups.insert(
                rn.clone(),
                Group {
                    resource_name: rn,
                    name: id.into(),
                    formatted_name: Some(formatted.into()),
                    system: true,
                    client_data: Vec::new(),
                    etag,
                    update_time: now,
                    seq: s.seq,
                    deleted: false,
                    version: 1,
                },
            );
        }
        s
    }

    /// The seed the account was built from.
    pub fn seed_value(&self) -> u64 {
        self.seed
    }

    /// The `/token` refresh grant (docs/google-people-api.md §6.2), with the configured access token lifetime.
    pub fn oauth_token(
        &mut self,
        req: &TokenRequest,
        now: OffsetDateTime,
    ) -> Result<Value, OAuthError> {
        let ttl = self.settings.access_token_ttl_secs;
        self.auth.token(req, now, ttl, &mut self.rng)
    }

    /// Grant a new refresh token with `scope`.
    pub fn issue_refresh_token(&mut self, scope: &str) -> String {
        self.auth.issue_refresh(scope, &mut self.rng)
    }

    /// Current change sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Current sync token generation (bumped by [`Store::expire_sync_tokens`]).
    pub fn sync_generation(&self) -> u64 {
        self.sync_generation
    }

    /// Expire every sync token issued so far (control API hook, docs/google-people-api.md §9.4).
    pub fn expire_sync_tokens(&mut self) {
        self.sync_generation += 1;
    }

    // ----- identity, etags -------------------------------------------------------------

    fn source_etag(&self, rn: &str, version: u64) -> [u8; 8] {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(rn.as_bytes());
        h.update(version.to_le_bytes());
        let d = h.finalize();
        let mut out = [0u8; 8];
        out.copy_from_slice(&d[..8]);
        out
    }

    fn group_etag(&self, rn: &str, version: u64) -> String {
        use base64::Engine;
        let raw = self.source_etag(&format!("g:{rn}"), version);
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn mint_person_name(&mut self) -> String {
        loop {
            let n: u64 = self
                .rng
                .random_range(1_000_000_000_000_000_000..=9_999_999_999_999_999_999);
            let rn = format!("people/c{n}");
            if !self.contacts.contains_key(&rn) {
                return rn;
            }
        }
    }

    fn mint_hex16(&mut self) -> String {
        format!("{:016x}", self.rng.random::<u64>())
    }

    /// Render metadata of a contact.
    pub fn meta<'a>(&self, c: &'a Contact) -> RenderMeta<'a> {
        RenderMeta {
            resource_name: &c.resource_name,
            source_id: &c.source_id,
            source_etag: c.source_etag,
            update_time: c.update_time,
            etag_varies_by_mask: self.settings.etag_varies_by_mask,
            source_type: "CONTACT",
        }
    }

    /// Render a live contact with `mask`.
    pub fn render(&self, c: &Contact, mask: &FieldMask, opts: RenderOpts) -> Value {
        person::render(&c.data, self.meta(c), mask, opts)
    }

    /// Record a change of a contact: new version, source etag, update time and sequence.
    fn touch(&mut self, rn: &str, now: OffsetDateTime) {
        let seq = self.next_seq();
        let Some(version) = self.contacts.get(rn).map(|c| c.version + 1) else {
            return;
        };
        let etag = self.source_etag(rn, version);
        if let Some(c) = self.contacts.get_mut(rn) {
            c.version = version;
            c.source_etag = etag;
            c.update_time = now;
            c.seq = seq;
        }
    }

    fn touch_group(&mut self, rn: &str, now: OffsetDateTime) {
        let seq = self.next_seq();
        let Some(version) = self.groups.get(rn).map(|g| g.version + 1) else {
            return;
        };
        let etag = self.group_etag(rn, version);
        if let Some(g) = self.groups.get_mut(rn) {
            g.version = version;
            g.etag = etag;
            g.update_time = now;
            g.seq = seq;
        }
    }

    /// A live (not deleted) contact.
    pub fn live(&self, rn: &str) -> Option<&Contact> {
        self.contacts.get(rn).filter(|c| !c.deleted)
    }

    fn live_group(&self, rn: &str) -> Option<&Group> {
        self.groups.get(rn).filter(|g| !g.deleted)
    }

    // ----- change visibility -----------------------------------------------------------

    /// The highest change position whose changes are all visible to sync deltas at `now`
    /// (docs/google-people-api.md §9.4 propagation lag).
    fn visible_position(&self, now: OffsetDateTime) -> u64 {
        if self.settings.propagation_lag_secs <= 0 {
            return self.seq;
        }
        let horizon = now - time::Duration::seconds(self.settings.propagation_lag_secs);
        self.contacts
            .values()
            .filter(|c| c.update_time > horizon)
            .map(|c| c.seq - 1)
            .min()
            .unwrap_or(self.seq)
    }

    // ----- connections.list ------------------------------------------------------------

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

    fn check_sync_token(
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
            super::settings::SyncExpiryFrom::FullSync => c.o,
            super::settings::SyncExpiryFrom::Issue => c.i,
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

    // ----- get / batchGet -------------------------------------------------------------

    /// Render `people/me`.
    fn render_profile(&self, mask: &FieldMask) -> Value {
        let mut data = PersonData::default();
        data.fields.insert(
            "names".into(),
            vec![json!({"givenName": self.profile.given_name, "familyName": self.profile.family_name})],
        );
        data.fields.insert(
            "emailAddresses".into(),
            vec![json!({"value": self.profile.email})],
        );
        let rn = format!("people/{}", self.profile.account_id);
        let raw = self.source_etag(&rn, 1);
        let meta = RenderMeta {
            resource_name: &rn,
            source_id: &self.profile.account_id,
            source_etag: raw,
            update_time: OffsetDateTime::UNIX_EPOCH,
            etag_varies_by_mask: self.settings.etag_varies_by_mask,
            source_type: "PROFILE",
        };
        person::render(&data, meta, mask, RenderOpts::default())
    }

    /// `people.get` (docs/google-people-api.md §3.2). `people/me` is the account owner's profile.
    pub fn get_person(&self, rn: &str, person_fields: Option<&str>) -> Result<Value, ApiError> {
        let mask = FieldMask::parse(person_fields, &PERSON_FIELDS, "personFields", "people/get")?;
        if rn == "people/me" || rn == format!("people/{}", self.profile.account_id) {
            return Ok(self.render_profile(&mask));
        }
        let c = self.live(rn).ok_or_else(ApiError::not_found)?;
        Ok(self.render(c, &mask, RenderOpts::default()))
    }

    /// `people.getBatchGet` (docs/google-people-api.md §3.2): ≤200 names, a status per item.
    pub fn batch_get(
        &self,
        names: &[String],
        person_fields: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mask = FieldMask::parse(
            person_fields,
            &PERSON_FIELDS,
            "personFields",
            "people/getBatchGet",
        )?;
        if names.is_empty() {
            return Err(ApiError::invalid_argument(
                "resourceNames must contain at least one resource name.",
            ));
        }
        if names.len() > MAX_BATCH_GET {
            return Err(ApiError::invalid_argument(format!(
                "Too many resource names: {} were given, the maximum is {MAX_BATCH_GET}.",
                names.len()
            )));
        }
        let responses: Vec<Value> = names
            .iter()
            .map(|rn| {
                let result = if !rn.starts_with("people/") {
                    Err(ApiError::invalid_argument(format!(
                        "Resource name \"{rn}\" is not a valid person resource name."
                    )))
                } else if rn == "people/me" {
                    Ok(self.render_profile(&mask))
                } else {
                    self.live(rn)
                        .map(|c| self.render(c, &mask, RenderOpts::default()))
                        .ok_or_else(ApiError::not_found)
                };
                person_response(rn, result)
            })
            .collect();
        Ok(json!({ "responses": responses }))
    }

    // ----- writes ----------------------------------------------------------------------

    /// Validate a requested membership set against the current one (docs/google-people-api.md §2.2 memberships).
    fn resolve_memberships(
        &self,
        current: &BTreeSet<String>,
        wanted: &[String],
    ) -> Result<BTreeSet<String>, ApiError> {
        let mut out = BTreeSet::new();
        for g in wanted {
            if !g.starts_with("contactGroups/") {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid contact group resource name \"{g}\"."
                )));
            }
            let group = self.live_group(g).ok_or_else(ApiError::not_found)?;
            if group.system && !current.contains(g) && !ADDABLE_SYSTEM_GROUPS.contains(&g.as_str())
            {
                return Err(ApiError::invalid_argument(format!(
                    "Cannot add contacts to the system contact group \"{g}\"; only user groups, contactGroups/myContacts and contactGroups/starred accept new members."
                )));
            }
            out.insert(g.clone());
        }
        Ok(out)
    }

    fn check_create(&self, input: &PersonInput) -> Result<BTreeSet<String>, ApiError> {
        match input.memberships.as_deref() {
            Some(w) if !w.is_empty() => self.resolve_memberships(&BTreeSet::new(), w),
            _ if self.settings.auto_my_contacts => {
                Ok(BTreeSet::from(["contactGroups/myContacts".to_owned()]))
            }
            _ => Ok(BTreeSet::new()),
        }
    }

    fn insert_contact(
        &mut self,
        input: &PersonInput,
        memberships: BTreeSet<String>,
        now: OffsetDateTime,
    ) -> String {
        let rn = self.mint_person_name();
        let source_id = self.mint_hex16();
        let fields = input
            .fields
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.contacts.insert(
            rn.clone(),
            Contact {
                resource_name: rn.clone(),
                source_id,
                data: PersonData {
                    fields,
                    memberships,
                },
                version: 0,
                source_etag: [0; 8],
                update_time: now,
                seq: 0,
                deleted: false,
            },
        );
        self.touch(&rn, now);
        rn
    }

    /// `people.createContact` (docs/google-people-api.md §4.1, §9.5). Returns the new resource name.
    pub fn create_contact(
        &mut self,
        input: &PersonInput,
        now: OffsetDateTime,
    ) -> Result<String, ApiError> {
        let memberships = self.check_create(input)?;
        Ok(self.insert_contact(input, memberships, now))
    }

    /// Validate an update without applying it; returns the new membership set if the mask
    /// names memberships.
    fn check_update(
        &self,
        rn: &str,
        input: &PersonInput,
        mask: &FieldMask,
    ) -> Result<Option<BTreeSet<String>>, ApiError> {
        let c = self.live(rn).ok_or_else(ApiError::not_found)?;
        // docs/google-people-api.md §10 #2: accept the top-level person etag or the CONTACT source etag.
        let presented = input.etag.as_deref().or(input.source_etag.as_deref());
        let Some(presented) = presented.filter(|e| !e.is_empty()) else {
            return Err(ApiError::missing_etag());
        };
        if person::etag_source_bytes(presented) != Some(c.source_etag) {
            return Err(ApiError::stale_etag());
        }
        if mask.has("memberships") {
            let wanted = input.memberships.clone().unwrap_or_default();
            let set = self.resolve_memberships(&c.data.memberships, &wanted)?;
            if set.is_empty() {
                return Err(ApiError::invalid_argument(
                    "Contact must keep at least one contact group membership.",
                ));
            }
            return Ok(Some(set));
        }
        Ok(None)
    }

    fn apply_update(
        &mut self,
        rn: &str,
        input: &PersonInput,
        mask: &FieldMask,
        memberships: Option<BTreeSet<String>>,
        now: OffsetDateTime,
    ) {
        if let Some(c) = self.contacts.get_mut(rn) {
            for field in mask.0.iter().filter(|f| **f != "memberships") {
                // Named fields are replaced wholesale; named but absent means cleared.
                match input.fields.get(*field).filter(|v| !v.is_empty()) {
                    Some(v) => {
                        c.data.fields.insert((*field).to_owned(), v.clone());
                    }
                    None => {
                        c.data.fields.remove(*field);
                    }
                }
            }
            if let Some(m) = memberships {
                c.data.memberships = m;
            }
        }
        self.touch(rn, now);
    }

    /// `people.updateContact` (docs/google-people-api.md §4.2, §9.5).
    pub fn update_contact(
        &mut self,
        rn: &str,
        input: &PersonInput,
        update_fields: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), ApiError> {
        let mask = FieldMask::parse(
            update_fields,
            &person::UPDATE_FIELDS,
            "updatePersonFields",
            "people/updateContact",
        )?;
        let m = self.check_update(rn, input, &mask)?;
        self.apply_update(rn, input, &mask, m, now);
        Ok(())
    }

    /// Delete a contact, leaving a tombstone for sync deltas.
    fn tombstone(&mut self, rn: &str, now: OffsetDateTime) {
        if let Some(c) = self.contacts.get_mut(rn) {
            c.deleted = true;
            c.data = PersonData::default();
        }
        self.touch(rn, now);
    }

    /// `people.deleteContact` (docs/google-people-api.md §4.3, §9.5).
    pub fn delete_contact(&mut self, rn: &str, now: OffsetDateTime) -> Result<(), ApiError> {
        self.live(rn).ok_or_else(ApiError::not_found)?;
        self.tombstone(rn, now);
        Ok(())
    }

    /// `people.batchCreateContacts` (docs/google-people-api.md §4.4). `read_mask` is already validated (or `None` when
    /// the read is skipped).
    pub fn batch_create(
        &mut self,
        inputs: &[Result<PersonInput, ApiError>],
        read_mask: Option<&FieldMask>,
        now: OffsetDateTime,
    ) -> Result<Value, ApiError> {
        if inputs.is_empty() {
            return Err(ApiError::invalid_argument("contacts must not be empty."));
        }
        if inputs.len() > MAX_BATCH_WRITE {
            return Err(ApiError::invalid_argument(format!(
                "Too many contacts: {} were given, the maximum is {MAX_BATCH_WRITE}.",
                inputs.len()
            )));
        }
        let checks: Vec<Result<BTreeSet<String>, ApiError>> = inputs
            .iter()
            .map(|i| {
                i.as_ref()
                    .map_err(Clone::clone)
                    .and_then(|i| self.check_create(i))
            })
            .collect();
        if self.settings.batch_atomic
            && let Some((idx, Err(e))) = checks.iter().enumerate().find(|(_, c)| c.is_err())
        {
            return Err(batch_error(e, &format!("contacts[{idx}]")));
        }
        let mut outcomes = Vec::with_capacity(inputs.len());
        for (input, check) in inputs.iter().zip(checks) {
            outcomes.push(match (input, check) {
                (Ok(input), Ok(m)) => ItemOutcome::Ok(self.insert_contact(input, m, now)),
                (_, Err(e)) => ItemOutcome::Err(e),
                (Err(e), _) => ItemOutcome::Err(e.clone()),
            });
        }
        let Some(mask) = read_mask else {
            return Ok(json!({}));
        };
        let created: Vec<Value> = outcomes
            .into_iter()
            .map(|o| match o {
                ItemOutcome::Ok(rn) => {
                    let v = self
                        .live(&rn)
                        .map(|c| self.render(c, mask, RenderOpts::default()));
                    person_response(&rn, v.ok_or_else(ApiError::not_found))
                }
                ItemOutcome::Err(e) => person_response("", Err(e)),
            })
            .collect();
        Ok(json!({ "createdPeople": created }))
    }

    /// `people.batchUpdateContacts` (docs/google-people-api.md §4.4): etag checked per contact.
    pub fn batch_update(
        &mut self,
        inputs: &[(String, Result<PersonInput, ApiError>)],
        update_mask: Option<&str>,
        read_mask: Option<&FieldMask>,
        now: OffsetDateTime,
    ) -> Result<Value, ApiError> {
        let mask = FieldMask::parse(
            update_mask,
            &person::UPDATE_FIELDS,
            "updateMask",
            "people/batchUpdateContacts",
        )?;
        if inputs.is_empty() {
            return Err(ApiError::invalid_argument("contacts must not be empty."));
        }
        if inputs.len() > MAX_BATCH_WRITE {
            return Err(ApiError::invalid_argument(format!(
                "Too many contacts: {} were given, the maximum is {MAX_BATCH_WRITE}.",
                inputs.len()
            )));
        }
        let checks: Vec<Result<Option<BTreeSet<String>>, ApiError>> = inputs
            .iter()
            .map(|(rn, i)| {
                i.as_ref()
                    .map_err(Clone::clone)
                    .and_then(|i| self.check_update(rn, i, &mask))
            })
            .collect();
        if self.settings.batch_atomic
            && let Some(((rn, _), Err(e))) = inputs.iter().zip(&checks).find(|(_, c)| c.is_err())
        {
            return Err(batch_error(e, &format!("contacts[{rn}]")));
        }
        let mut results = Map::new();
        let mut done = Vec::new();
        for ((rn, input), check) in inputs.iter().zip(checks) {
            match (input, check) {
                (Ok(input), Ok(m)) => {
                    self.apply_update(rn, input, &mask, m, now);
                    done.push(rn.clone());
                }
                (_, Err(e)) => {
                    results.insert(rn.clone(), person_response(rn, Err(e)));
                }
                (Err(e), _) => {
                    results.insert(rn.clone(), person_response(rn, Err(e.clone())));
                }
            }
        }
        let Some(read) = read_mask else {
            return Ok(json!({}));
        };
        for rn in done {
            let v = self
                .live(&rn)
                .map(|c| self.render(c, read, RenderOpts::default()));
            results.insert(
                rn.clone(),
                person_response(&rn, v.ok_or_else(ApiError::not_found)),
            );
        }
        Ok(json!({ "updateResult": results }))
    }

    /// `people.batchDeleteContacts` (docs/google-people-api.md §4.4): ≤500 names.
    pub fn batch_delete(
        &mut self,
        names: &[String],
        now: OffsetDateTime,
    ) -> Result<Value, ApiError> {
        if names.is_empty() {
            return Err(ApiError::invalid_argument(
                "resourceNames must not be empty.",
            ));
        }
        if names.len() > MAX_BATCH_DELETE {
            return Err(ApiError::invalid_argument(format!(
                "Too many resource names: {} were given, the maximum is {MAX_BATCH_DELETE}.",
                names.len()
            )));
        }
        if self.settings.batch_atomic
            && let Some(missing) = names.iter().find(|n| self.live(n).is_none())
        {
            return Err(batch_error(&ApiError::not_found(), missing));
        }
        for rn in names {
            if self.live(rn).is_some() {
                self.tombstone(rn, now);
            }
        }
        Ok(json!({}))
    }

    // ----- search ----------------------------------------------------------------------

    fn search_texts(c: &Contact) -> Vec<String> {
        let mut texts = Vec::new();
        let d = &c.data;
        for (field, keys) in [
            (
                "names",
                &["givenName", "familyName", "middleName", "unstructuredName"][..],
            ),
            ("nicknames", &["value"][..]),
            ("emailAddresses", &["value"][..]),
            ("phoneNumbers", &["value"][..]),
            ("organizations", &["name", "title", "department"][..]),
        ] {
            for item in d.fields.get(field).into_iter().flatten() {
                for k in keys {
                    if let Some(s) = item.get(*k).and_then(Value::as_str) {
                        texts.push(s.to_lowercase());
                        if field == "phoneNumbers" {
                            texts.push(s.chars().filter(char::is_ascii_digit).collect());
                        }
                    }
                }
            }
            if field == "names"
                && let Some(n) = d.fields.get("names").and_then(|n| n.first())
            {
                let full = ["givenName", "middleName", "familyName"]
                    .iter()
                    .filter_map(|k| n.get(*k).and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(" ");
                texts.push(full.to_lowercase());
            }
        }
        texts
    }

    fn rebuild_search(&mut self) {
        let entries = self
            .contacts
            .values()
            .filter(|c| !c.deleted)
            .map(|c| (c.resource_name.clone(), Self::search_texts(c)))
            .collect();
        self.search = Some(SearchCache { entries });
    }

    /// `people.searchContacts` (docs/google-people-api.md §3.3, §9.5). An empty query warms the cache up.
    pub fn search(
        &mut self,
        query: &str,
        read_mask: &FieldMask,
        page_size: Option<i64>,
        now: OffsetDateTime,
    ) -> Result<Value, ApiError> {
        let size = page_size.unwrap_or(10);
        if size < 0 {
            return Err(ApiError::invalid_argument("pageSize must not be negative."));
        }
        let size = if size == 0 { 10 } else { size.min(30) } as usize;
        let lag = time::Duration::seconds(self.settings.propagation_lag_secs.max(0));
        if query.trim().is_empty() {
            // Warm-up: the cache refresh completes after the propagation lag.
            let due = now + lag;
            if self.search_refresh_due.is_none_or(|d| d > due) {
                self.search_refresh_due = Some(due);
            }
            return Ok(json!({}));
        }
        let q = query.trim().to_lowercase();
        let matched: Vec<String> = if self.settings.search_requires_warmup {
            if self.search_refresh_due.is_some_and(|d| d <= now) {
                self.search_refresh_due = None;
                self.rebuild_search();
            }
            self.search
                .iter()
                .flat_map(|s| &s.entries)
                .filter(|(_, texts)| texts.iter().any(|t| prefix_phrase_match(t, &q)))
                .map(|(rn, _)| rn.clone())
                .collect()
        } else {
            let horizon = now - lag;
            self.contacts
                .values()
                .filter(|c| !c.deleted && c.update_time <= horizon)
                .filter(|c| {
                    Self::search_texts(c)
                        .iter()
                        .any(|t| prefix_phrase_match(t, &q))
                })
                .map(|c| c.resource_name.clone())
                .collect()
        };
        let results: Vec<Value> = matched
            .iter()
            .filter_map(|rn| self.live(rn))
            .take(size)
            .map(|c| json!({"person": self.render(c, read_mask, RenderOpts::default())}))
            .collect();
        if results.is_empty() {
            return Ok(json!({}));
        }
        Ok(json!({ "results": results }))
    }

    // ----- contact groups --------------------------------------------------------------

    fn member_count(&self, rn: &str) -> usize {
        self.contacts
            .values()
            .filter(|c| !c.deleted && c.data.memberships.contains(rn))
            .count()
    }

    fn members(&self, rn: &str) -> Vec<String> {
        self.contacts
            .values()
            .filter(|c| !c.deleted && c.data.memberships.contains(rn))
            .map(|c| c.resource_name.clone())
            .collect()
    }

    /// Render a group with `mask`, plus up to `max_members` member names.
    pub fn render_group(&self, g: &Group, mask: &FieldMask, max_members: usize) -> Value {
        let mut out = Map::new();
        out.insert("resourceName".into(), json!(g.resource_name));
        if !g.system {
            out.insert("etag".into(), json!(g.etag));
        }
        if mask.has("metadata") && !g.system {
            out.insert(
                "metadata".into(),
                json!({"updateTime": rfc3339(g.update_time)}),
            );
        }
        if mask.has("groupType") {
            let t = if g.system {
                "SYSTEM_CONTACT_GROUP"
            } else {
                "USER_CONTACT_GROUP"
            };
            out.insert("groupType".into(), json!(t));
        }
        if mask.has("name") {
            out.insert("name".into(), json!(g.name));
            out.insert(
                "formattedName".into(),
                json!(g.formatted_name.as_deref().unwrap_or(&g.name)),
            );
        }
        if max_members > 0 {
            let members: Vec<String> = self
                .members(&g.resource_name)
                .into_iter()
                .take(max_members)
                .collect();
            if !members.is_empty() {
                out.insert("memberResourceNames".into(), json!(members));
            }
        }
        if mask.has("memberCount") {
            let n = self.member_count(&g.resource_name);
            if n > 0 {
                out.insert("memberCount".into(), json!(n));
            }
        }
        if mask.has("clientData") && !g.client_data.is_empty() {
            out.insert("clientData".into(), Value::Array(g.client_data.clone()));
        }
        Value::Object(out)
    }

    fn group_mask(raw: Option<&str>, param: &str) -> Result<FieldMask, ApiError> {
        match raw.filter(|r| !r.trim().is_empty()) {
            None => Ok(FieldMask(
                ["metadata", "groupType", "memberCount", "name"]
                    .into_iter()
                    .collect(),
            )),
            Some(r) => FieldMask::parse(Some(r), &GROUP_FIELDS, param, "contactGroups/list"),
        }
    }

    /// `contactGroups.list` (docs/google-people-api.md §5.1), with group sync tokens and tombstones (§9.6).
    pub fn list_groups(
        &mut self,
        p: &GroupListParams,
        now: OffsetDateTime,
    ) -> Result<Value, ApiError> {
        let mask = Self::group_mask(p.group_fields.as_deref(), "groupFields")?;
        let page_size = page_size(p.page_size, 30, 1000, self.settings.page_size_over_max)?;
        let mask_text = mask.canonical();
        let sync_token = p.sync_token.as_deref().filter(|t| !t.is_empty());
        let bind_hash = cursor::param_hash(&["g", &mask_text]);
        let page_hash = cursor::param_hash(&[
            "g",
            &mask_text,
            &page_size.to_string(),
            sync_token.unwrap_or(""),
        ]);
        let since = match sync_token {
            Some(t) => Some(self.check_sync_token(t, 'g', bind_hash, now)?),
            None => None,
        };
        let (position, origin, after) = match p.page_token.as_deref().filter(|t| !t.is_empty()) {
            Some(t) => {
                let c: PageCursor =
                    cursor::decode(t, &self.secret).ok_or_else(ApiError::bad_token)?;
                if c.k != 'g' || c.h != page_hash {
                    return Err(ApiError::bad_token());
                }
                (c.p, c.o, Some((c.s, c.r)))
            }
            None => (
                self.seq,
                since.as_ref().map_or(now.unix_timestamp(), |s| s.o),
                None,
            ),
        };
        let mut items: Vec<(String, &Group)> = self
            .groups
            .values()
            .filter(|g| match &since {
                Some(s) => g.seq > s.p && g.seq <= position,
                None => !g.deleted,
            })
            // User groups first (by name), then system groups, as Google lists them.
            .map(|g| {
                (
                    format!("{}{}", u8::from(g.system), g.name.to_lowercase()),
                    g,
                )
            })
            .collect();
        items.sort_by(|a, b| (&a.0, &a.1.resource_name).cmp(&(&b.0, &b.1.resource_name)));
        let total = items.len();
        let start = match &after {
            Some((s, r)) => items.partition_point(|(k, g)| (k, &g.resource_name) <= (s, r)),
            None => 0,
        };
        let page: Vec<&(String, &Group)> = items.iter().skip(start).take(page_size).collect();
        let last_page = start + page.len() >= total;
        let mut out = Map::new();
        if !page.is_empty() {
            let groups: Vec<Value> = page
                .iter()
                .map(|(_, g)| {
                    if g.deleted {
                        json!({
                            "resourceName": g.resource_name,
                            "etag": g.etag,
                            "metadata": {"updateTime": rfc3339(g.update_time), "deleted": true}
                        })
                    } else {
                        self.render_group(g, &mask, 0)
                    }
                })
                .collect();
            out.insert("contactGroups".into(), Value::Array(groups));
        }
        if !last_page && let Some((key, g)) = page.last() {
            let pc = PageCursor {
                k: 'g',
                h: page_hash,
                p: position,
                s: key.clone(),
                r: g.resource_name.clone(),
                o: origin,
            };
            out.insert(
                "nextPageToken".into(),
                json!(cursor::encode(&pc, &self.secret)),
            );
        }
        if last_page {
            let sc = SyncCursor {
                k: 'g',
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
        if total > 0 {
            out.insert("totalItems".into(), json!(total));
        }
        Ok(Value::Object(out))
    }

    /// `contactGroups.get`.
    pub fn get_group(
        &self,
        rn: &str,
        max_members: Option<i64>,
        group_fields: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mask = Self::group_mask(group_fields, "groupFields")?;
        let g = self.live_group(rn).ok_or_else(ApiError::not_found)?;
        let max = usize::try_from(max_members.unwrap_or(0))
            .map_err(|_| ApiError::invalid_argument("maxMembers must not be negative."))?;
        Ok(self.render_group(g, &mask, max))
    }

    /// `contactGroups.batchGet` (≤200 names).
    pub fn batch_get_groups(
        &self,
        names: &[String],
        max_members: Option<i64>,
        group_fields: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mask = Self::group_mask(group_fields, "groupFields")?;
        if names.is_empty() || names.len() > MAX_BATCH_GET {
            return Err(ApiError::invalid_argument(format!(
                "resourceNames must hold between 1 and {MAX_BATCH_GET} names; {} were given.",
                names.len()
            )));
        }
        let max = usize::try_from(max_members.unwrap_or(0)).unwrap_or(0);
        let responses: Vec<Value> = names
            .iter()
            .map(|rn| match self.live_group(rn) {
                Some(g) => json!({
                    "requestedResourceName": rn,
                    "contactGroup": self.render_group(g, &mask, max),
                    "status": {}
                }),
                None => json!({
                    "requestedResourceName": rn,
                    "status": ApiError::not_found().rpc_status()
                }),
            })
            .collect();
        Ok(json!({ "responses": responses }))
    }

    fn check_group_name(&self, name: &str, except: Option<&str>) -> Result<(), ApiError> {
        if name.trim().is_empty() {
            return Err(ApiError::invalid_argument(
                "contactGroup.name must not be empty.",
            ));
        }
        let clash = self.groups.values().any(|g| {
            !g.deleted
                && Some(g.resource_name.as_str()) != except
                && (g.name.eq_ignore_ascii_case(name)
                    || g.formatted_name
                        .as_deref()
                        .is_some_and(|f| f.eq_ignore_ascii_case(name)))
        });
        if clash {
            return Err(ApiError::conflict(
                self.settings.duplicate_group_status.as_str(),
                format!("Contact group name \"{name}\" already exists."),
            ));
        }
        Ok(())
    }

    /// `contactGroups.create`: `{contactGroup:{name, clientData}, readGroupFields}`.
    pub fn create_group(&mut self, body: &Value, now: OffsetDateTime) -> Result<Value, ApiError> {
        check_keys(body, &["contactGroup", "readGroupFields"], "")?;
        let mask = Self::group_mask(
            body.get("readGroupFields").and_then(Value::as_str),
            "readGroupFields",
        )?;
        let group = body.get("contactGroup").cloned().unwrap_or(Value::Null);
        check_keys(
            &group,
            &[
                "resourceName",
                "etag",
                "name",
                "clientData",
                "metadata",
                "groupType",
                "formattedName",
                "memberResourceNames",
                "memberCount",
            ],
            "contact_group",
        )?;
        let name = group
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        self.check_group_name(&name, None)?;
        let rn = format!("contactGroups/{}", self.mint_hex16());
        let client_data = group
            .get("clientData")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        self.groups.insert(
            rn.clone(),
            Group {
                resource_name: rn.clone(),
                name,
                formatted_name: None,
                system: false,
                client_data,
                etag: String::new(),
                update_time: now,
                seq: 0,
                deleted: false,
                version: 0,
            },
        );
        self.touch_group(&rn, now);
        let g = &self.groups[&rn];
        Ok(self.render_group(g, &mask, 0))
    }

    /// `contactGroups.update`: `{contactGroup:{…}, updateGroupFields, readGroupFields}`.
    pub fn update_group(
        &mut self,
        rn: &str,
        body: &Value,
        now: OffsetDateTime,
    ) -> Result<Value, ApiError> {
        check_keys(
            body,
            &["contactGroup", "updateGroupFields", "readGroupFields"],
            "",
        )?;
        let read = Self::group_mask(
            body.get("readGroupFields").and_then(Value::as_str),
            "readGroupFields",
        )?;
        let update = match body
            .get("updateGroupFields")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
        {
            None => FieldMask(["name"].into_iter().collect()),
            Some(r) => FieldMask::parse(
                Some(r),
                &["name", "clientData"],
                "updateGroupFields",
                "contactGroups/update",
            )?,
        };
        let group = body.get("contactGroup").cloned().unwrap_or(Value::Null);
        let g = self.live_group(rn).ok_or_else(ApiError::not_found)?;
        if g.system {
            return Err(ApiError::failed_precondition(
                "System contact groups cannot be updated.",
            ));
        }
        match group.get("etag").and_then(Value::as_str) {
            Some(e) if e != g.etag => {
                return Err(ApiError::failed_precondition(
                    "Request contactGroup.etag is different than the current contactGroup.etag. Clear local cache and get the latest contact group.",
                ));
            }
            None if self.settings.group_update_requires_etag => {
                return Err(ApiError::invalid_argument(
                    "Request must set contactGroup.etag.",
                ));
            }
            _ => {}
        }
        let name = group
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if update.has("name") {
            self.check_group_name(&name, Some(rn))?;
        }
        let client_data = group
            .get("clientData")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(g) = self.groups.get_mut(rn) {
            if update.has("name") {
                g.name = name;
            }
            if update.has("clientData") {
                g.client_data = client_data;
            }
        }
        self.touch_group(rn, now);
        Ok(self.render_group(&self.groups[rn], &read, 0))
    }

    /// `contactGroups.delete`, optionally deleting the members.
    pub fn delete_group(
        &mut self,
        rn: &str,
        delete_contacts: bool,
        now: OffsetDateTime,
    ) -> Result<(), ApiError> {
        let g = self.live_group(rn).ok_or_else(ApiError::not_found)?;
        if g.system {
            return Err(ApiError::failed_precondition(
                "System contact groups cannot be deleted.",
            ));
        }
        for member in self.members(rn) {
            if delete_contacts {
                self.tombstone(&member, now);
            } else {
                if let Some(c) = self.contacts.get_mut(&member) {
                    c.data.memberships.remove(rn);
                }
                self.touch(&member, now);
            }
        }
        if let Some(g) = self.groups.get_mut(rn) {
            g.deleted = true;
        }
        self.touch_group(rn, now);
        Ok(())
    }

    /// `contactGroups.members.modify` (docs/google-people-api.md §5.2, §9.6).
    pub fn modify_members(
        &mut self,
        rn: &str,
        add: &[String],
        remove: &[String],
        now: OffsetDateTime,
    ) -> Result<Value, ApiError> {
        if add.len() + remove.len() > MAX_MEMBERS_MODIFY {
            return Err(ApiError::invalid_argument(format!(
                "Too many resource names: at most {MAX_MEMBERS_MODIFY} may be added and removed in one request; {} were given.",
                add.len() + remove.len()
            )));
        }
        let g = self.live_group(rn).ok_or_else(ApiError::not_found)?;
        if g.system && !add.is_empty() && !ADDABLE_SYSTEM_GROUPS.contains(&rn) {
            return Err(ApiError::invalid_argument(format!(
                "Cannot add contacts to the system contact group \"{rn}\"; only user groups, contactGroups/myContacts and contactGroups/starred accept new members."
            )));
        }
        for n in add.iter().chain(remove) {
            if !n.starts_with("people/") {
                return Err(ApiError::invalid_argument(format!(
                    "Resource name \"{n}\" is not a valid person resource name."
                )));
            }
        }
        let mut not_found = Vec::new();
        let mut last_group = Vec::new();
        for n in add {
            match self.live(n) {
                None => not_found.push(n.clone()),
                Some(c) if c.data.memberships.contains(rn) => {}
                Some(_) => {
                    if let Some(c) = self.contacts.get_mut(n) {
                        c.data.memberships.insert(rn.to_owned());
                    }
                    self.touch(n, now);
                }
            }
        }
        for n in remove {
            match self.live(n) {
                None => not_found.push(n.clone()),
                Some(c) if !c.data.memberships.contains(rn) => {}
                Some(c) if c.data.memberships.len() == 1 => last_group.push(n.clone()),
                Some(_) => {
                    if let Some(c) = self.contacts.get_mut(n) {
                        c.data.memberships.remove(rn);
                    }
                    self.touch(n, now);
                }
            }
        }
        let mut out = Map::new();
        if !not_found.is_empty() {
            out.insert("notFoundResourceNames".into(), json!(not_found));
        }
        if !last_group.is_empty() {
            out.insert(
                "canNotRemoveLastContactGroupResourceNames".into(),
                json!(last_group),
            );
        }
        Ok(Value::Object(out))
    }

    // ----- control-API operations ------------------------------------------------------

    /// Add a contact as the seed or the user would (no auth, no quota, no etag).
    pub fn insert_seeded(&mut self, data: PersonData, now: OffsetDateTime) -> String {
        let input = PersonInput {
            fields: data.fields,
            ..PersonInput::default()
        };
        let memberships = if data.memberships.is_empty() {
            BTreeSet::from(["contactGroups/myContacts".to_owned()])
        } else {
            data.memberships
        };
        self.insert_contact(&input, memberships, now)
    }

    /// Create (or find, by name) a user group, as the user would in the app.
    pub fn ensure_user_group(&mut self, name: &str, now: OffsetDateTime) -> String {
        if let Some(g) = self.groups.values().find(|g| !g.deleted && g.name == name) {
            return g.resource_name.clone();
        }
        let rn = format!("contactGroups/{}", self.mint_hex16());
        self.groups.insert(
            rn.clone(),
            Group {
                resource_name: rn.clone(),
                name: name.into(),
                formatted_name: None,
                system: false,
                client_data: Vec::new(),
                etag: String::new(),
                update_time: now,
                seq: 0,
                deleted: false,
                version: 0,
            },
        );
        self.touch_group(&rn, now);
        rn
    }

    /// Edit a contact as the user would in Google Contacts: every Person field present in
    /// `body` replaces the stored one (memberships included); no etag needed. The etag and
    /// `updateTime` move.
    pub fn user_edit(
        &mut self,
        rn: &str,
        body: &Value,
        now: OffsetDateTime,
    ) -> Result<(), ApiError> {
        let input = person::parse_person(body, "person")?;
        let c = self.live(rn).ok_or_else(ApiError::not_found)?;
        let memberships = match &input.memberships {
            Some(w) => Some(self.resolve_memberships(&c.data.memberships, w)?),
            None => None,
        };
        let mut keys: BTreeSet<&'static str> = input
            .fields
            .keys()
            .filter_map(|k| PERSON_FIELDS.iter().copied().find(|f| f == k))
            .collect();
        if memberships.is_some() {
            keys.insert("memberships");
        }
        self.apply_update(rn, &input, &FieldMask(keys), memberships, now);
        Ok(())
    }

    /// Delete a contact as the user would (404 if unknown or already deleted).
    pub fn user_delete(&mut self, rn: &str, now: OffsetDateTime) -> Result<(), ApiError> {
        self.delete_contact(rn, now)
    }

    /// Full state dump for the control API: contacts (deleted included) with etags, groups
    /// with their members, change sequence and token generation.
    pub fn inspect(&self) -> Value {
        let all = FieldMask::all();
        let people: Vec<Value> = self
            .contacts
            .values()
            .map(|c| {
                let person = if c.deleted {
                    Value::Null
                } else {
                    self.render(c, &all, RenderOpts::default())
                };
                json!({
                    "resourceName": c.resource_name,
                    "deleted": c.deleted,
                    "etag": person::person_etag(&all, c.source_etag, self.settings.etag_varies_by_mask),
                    "sourceEtag": person::source_etag_text(c.source_etag),
                    "updateTime": rfc3339(c.update_time),
                    "seq": c.seq,
                    "memberships": c.data.memberships,
                    "person": person,
                })
            })
            .collect();
        let groups: Vec<Value> = self
            .groups
            .values()
            .map(|g| {
                json!({
                    "resourceName": g.resource_name,
                    "name": g.name,
                    "groupType": if g.system { "SYSTEM_CONTACT_GROUP" } else { "USER_CONTACT_GROUP" },
                    "etag": g.etag,
                    "deleted": g.deleted,
                    "updateTime": rfc3339(g.update_time),
                    "clientData": g.client_data,
                    "members": if g.deleted { Vec::new() } else { self.members(&g.resource_name) },
                })
            })
            .collect();
        json!({
            "people": people,
            "groups": groups,
            "seq": self.seq,
            "syncTokenGeneration": self.sync_generation,
            "profile": {
                "resourceName": format!("people/{}", self.profile.account_id),
                "email": self.profile.email,
            },
        })
    }
}

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
fn page_size(
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

/// A PersonResponse entry: `{requestedResourceName, httpStatusCode, person?, status}`.
fn person_response(rn: &str, result: Result<Value, ApiError>) -> Value {
    match result {
        Ok(person) => json!({
            "requestedResourceName": rn,
            "httpStatusCode": 200,
            "person": person,
            "status": {}
        }),
        Err(e) => json!({
            "requestedResourceName": rn,
            "httpStatusCode": e.http.as_u16(),
            "status": e.rpc_status()
        }),
    }
}

/// The error of an atomic batch: the failing item's status, its message prefixed with the
/// item's position.
fn batch_error(e: &ApiError, at: &str) -> ApiError {
    let mut out = e.clone();
    out.message = format!("{at}: {}", e.message);
    out
}

/// Reject unknown keys of a JSON object (ESF "Unknown name" 400).
pub fn check_keys(v: &Value, known: &[&str], at: &str) -> Result<(), ApiError> {
    if let Some(obj) = v.as_object()
        && let Some(bad) = obj.keys().find(|k| !known.contains(&k.as_str()))
    {
        return Err(ApiError::unknown_body_field(bad, at));
    }
    Ok(())
}

/// Case-insensitive prefix-phrase match: `q` matches `text` if it is a prefix of `text`
/// starting at a word boundary ("foo name" matches "f", "foo n", "nam"; not "oo n").
pub fn prefix_phrase_match(text: &str, q: &str) -> bool {
    let mut prev_alnum = false;
    for (i, ch) in text.char_indices() {
        let alnum = ch.is_alphanumeric();
        if alnum && !prev_alnum && text[i..].starts_with(q) {
            return true;
        }
        prev_alnum = alnum;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_phrase_matching_follows_the_reference_example() {
        for q in ["f", "foo n", "nam", "foo name"] {
            assert!(prefix_phrase_match("foo name", q), "{q}");
        }
        assert!(!prefix_phrase_match("foo name", "oo n"));
        assert!(prefix_phrase_match("ada@example.com", "example"));
    }

    #[test]
    fn page_size_rules() {
        assert_eq!(page_size(None, 100, 1000, OverMax::Clamp).unwrap(), 100);
        assert_eq!(page_size(Some(0), 100, 1000, OverMax::Clamp).unwrap(), 100);
        assert_eq!(
            page_size(Some(5000), 100, 1000, OverMax::Clamp).unwrap(),
            1000
        );
        assert!(page_size(Some(5000), 100, 1000, OverMax::Reject).is_err());
        assert!(page_size(Some(-1), 100, 1000, OverMax::Clamp).is_err());
    }
}
