//! Switches of the simulated Google account: one per behaviour that
//! `docs/google-people-api.md` marks uncertain (§10), plus the tunables of §9 (quotas,
//! propagation lag, token lifetimes). Defaults follow the recommendation there; each
//! field says which point it covers. Settings can be read and patched at run time through
//! `GET/PATCH /_sandbox/google/settings`.

use serde::{Deserialize, Serialize};

/// What a sync token's 7-day lifetime counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncExpiryFrom {
    /// From the full sync that started the chain of tokens (the documented text: "Sync
    /// tokens expire 7 days after the full sync"). Default.
    FullSync,
    /// From the issue time of the token presented (the other reading of "seven days", docs/google-people-api.md §10 #1).
    Issue,
}

/// `error.status` of the expired sync token reply (docs/google-people-api.md §10 #1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExpiredStatus {
    /// Most captured bodies (default).
    FailedPrecondition,
    /// One capture that claims to be verbatim.
    InvalidArgument,
}

impl ExpiredStatus {
    /// The status string.
    pub fn as_str(self) -> &'static str {
        match self {
            ExpiredStatus::FailedPrecondition => "FAILED_PRECONDITION",
            ExpiredStatus::InvalidArgument => "INVALID_ARGUMENT",
        }
    }
}

/// What `pageSize` above the maximum does (docs/google-people-api.md §10 #6: unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverMax {
    /// Coerce to the maximum, as Google's API design guide (AIP-158) asks. Default.
    Clamp,
    /// 400 INVALID_ARGUMENT.
    Reject,
}

/// `error.status` of the 409 for a duplicate group name (docs/google-people-api.md §10 #10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DuplicateStatus {
    /// Default (the "probably" of docs/google-people-api.md §7.2).
    AlreadyExists,
    /// `ABORTED`, the other status a duplicate could plausibly get.
    Aborted,
}

impl DuplicateStatus {
    /// The status string.
    pub fn as_str(self) -> &'static str {
        match self {
            DuplicateStatus::AlreadyExists => "ALREADY_EXISTS",
            DuplicateStatus::Aborted => "ABORTED",
        }
    }
}

/// What a mutation that arrives while another mutation of the same user is in flight gets
/// (docs/google-people-api.md §9.7, §7.3 "send mutations one at a time").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Concurrency {
    /// Both succeed (default).
    Allow,
    /// The second gets 409 ABORTED.
    Aborted,
    /// The second gets 503 UNAVAILABLE.
    Unavailable,
}

/// Per-minute, per-user quota limits (docs/google-people-api.md §7.1, §9.7). The numbers Google applies are
/// unpublished (docs/google-people-api.md §10 #4); the defaults are the console defaults one project reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuotaLimits {
    /// "Critical read requests (Contact and Profile Reads)" per minute.
    pub critical_reads_per_minute: u32,
    /// "Critical write requests (Contact Creates and Updates)" per minute.
    pub critical_writes_per_minute: u32,
    /// "Write requests (Contact Deletes and Contact Group Writes)" per minute.
    pub writes_per_minute: u32,
    /// "Read requests (Contact Group Reads)" per minute.
    pub group_reads_per_minute: u32,
    /// "Daily Contact Writes (Total)" per day, counted per contact written.
    pub daily_contact_writes: u32,
    /// Extra bucket charged by the first page of a full sync, if set.
    pub full_sync_first_pages_per_minute: Option<u32>,
}

impl Default for QuotaLimits {
    fn default() -> Self {
        QuotaLimits {
            critical_reads_per_minute: 60,
            critical_writes_per_minute: 30,
            writes_per_minute: 30,
            group_reads_per_minute: 90,
            daily_contact_writes: 100_000,
            full_sync_first_pages_per_minute: None,
        }
    }
}

/// All switches of one simulated Google account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GoogleSettings {
    /// Sync token lifetime in seconds (docs/google-people-api.md §3.1: 7 days).
    pub sync_token_ttl_secs: i64,
    /// What the lifetime counts from.
    pub sync_token_expiry_from: SyncExpiryFrom,
    /// HTTP status of the expired-token reply: 400 observed live; 410 per old docs (docs/google-people-api.md §10 #1).
    pub expired_sync_token_http: u16,
    /// `error.status` of the expired-token reply.
    pub expired_sync_token_status: ExpiredStatus,
    /// docs/google-people-api.md §10 #3: when true, an incremental call gets a `nextSyncToken` only if it also sets
    /// `requestSyncToken=true`; when false (default) any call with `syncToken` gets one.
    pub strict_request_sync_token: bool,
    /// docs/google-people-api.md §10 #6: pageSize above 1000 on connections.list / contactGroups.list.
    pub page_size_over_max: OverMax,
    /// docs/google-people-api.md §10 #7: reject `sortOrder=LAST_MODIFIED_DESCENDING` together with sync tokens
    /// (low-confidence report; default off).
    pub reject_descending_sync: bool,
    /// docs/google-people-api.md §2.3: the person etag embeds the requested field mask, so it differs between reads
    /// with different masks (default on, as observed). Updates accept either.
    pub etag_varies_by_mask: bool,
    /// docs/google-people-api.md §9.4: seconds before a write shows in sync deltas and search (default 0).
    pub propagation_lag_secs: i64,
    /// docs/google-people-api.md §3.3: search runs on a lazily refreshed cache that only an empty-query request
    /// refreshes (default on). Off: search always sees the current state.
    pub search_requires_warmup: bool,
    /// docs/google-people-api.md §10 #9: an invalid item fails the whole batch (default) or only itself.
    pub batch_atomic: bool,
    /// docs/google-people-api.md §4.4, §9.5: batch create/update with an empty `readMask`. Google's reference page
    /// says both "Required" and "if left empty, the post-mutate-get is skipped". False
    /// (default): a 400. True: the writes happen and the reply is `{}` (new names are lost).
    pub batch_empty_read_mask_skips_read: bool,
    /// docs/google-people-api.md §10 #10.
    pub duplicate_group_status: DuplicateStatus,
    /// docs/google-people-api.md §10 #11: `contactGroups.update` requires a matching group etag (default off: an
    /// etag is checked only when one is sent).
    pub group_update_requires_etag: bool,
    /// docs/google-people-api.md §10 #8: a contact created without memberships joins `myContacts` (default on).
    pub auto_my_contacts: bool,
    /// docs/google-people-api.md §6.2: `expires_in` of issued access tokens (3599).
    pub access_token_ttl_secs: i64,
    /// docs/google-people-api.md §9.7: quota emulation; `null` (default) = no quotas.
    pub quotas: Option<QuotaLimits>,
    /// docs/google-people-api.md §9.7.
    pub concurrent_mutations: Concurrency,
}

impl Default for GoogleSettings {
    fn default() -> Self {
        GoogleSettings {
            sync_token_ttl_secs: 7 * 24 * 3600,
            sync_token_expiry_from: SyncExpiryFrom::FullSync,
            expired_sync_token_http: 400,
            expired_sync_token_status: ExpiredStatus::FailedPrecondition,
            strict_request_sync_token: false,
            page_size_over_max: OverMax::Clamp,
            reject_descending_sync: false,
            etag_varies_by_mask: true,
            propagation_lag_secs: 0,
            search_requires_warmup: true,
            batch_atomic: true,
            batch_empty_read_mask_skips_read: false,
            duplicate_group_status: DuplicateStatus::AlreadyExists,
            group_update_requires_etag: false,
            auto_my_contacts: true,
            access_token_ttl_secs: 3599,
            quotas: None,
            concurrent_mutations: Concurrency::Allow,
        }
    }
}
