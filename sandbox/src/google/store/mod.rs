//! State of one simulated Google account and every People API operation on it, as plain
//! functions of (state, request, now): no I/O, so the HTTP layer stays thin and the behaviour
//! is testable without a server.
//!
//! Model (docs/google-people-api.md §9.8): contacts keyed by resource name (deleted ones stay as tombstones), contact
//! groups, one global change sequence (`seq`) stamped on every change, tokens bound to their
//! parameters, and a lazily refreshed search cache.

mod connections;
mod control;
mod groups;
mod people;
mod search;
mod writes;

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::google::auth::{AuthState, OAuthClient, TokenRequest};
use crate::google::error::{ApiError, OAuthError};

use crate::google::person::{self, FieldMask, PersonData, RenderMeta, RenderOpts};
use crate::google::quota::QuotaState;
use crate::google::settings::GoogleSettings;

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
    use super::connections::page_size;
    use super::*;
    use crate::google::settings::OverMax;

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
