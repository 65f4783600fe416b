//! What the engine needs from a connector, mirroring `tandem:plugin/connector-api`,
//! and from the tenant's mappers (`mapper-api`). The runtime adapter implements
//! [`Source`] over a plugin instance and [`Mappers`] over mapper plugins; the
//! engine's tests implement them in memory.

use std::future::Future;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::model::{Record, Value};

/// The data type of a field (WIT `field-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FieldType {
    /// Single-line text.
    Text,
    /// Multi-line text.
    LongText,
    /// A number.
    Number,
    /// A flag.
    Boolean,
    /// A date, `YYYY-MM-DD`.
    Date,
    /// A date-time, RFC 3339.
    Datetime,
    /// An e-mail address.
    Email,
    /// A phone number.
    Phone,
    /// A URL.
    Url,
    /// One value out of `choices`.
    Choice,
    /// Several values out of `choices`.
    MultiChoice,
    /// A reference to another object, by id.
    Reference,
}

/// An allowed value of a choice field (WIT `choice`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    /// The stored value.
    pub value: String,
    /// The label users see.
    pub label: String,
}

/// The description of one field (WIT `field-def`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldDef {
    /// The app's field name.
    pub name: String,
    /// The label users see.
    pub label: String,
    /// The data type.
    pub kind: FieldType,
    /// A create without it is refused.
    pub required: bool,
    /// The field can be written through the API.
    pub writable: bool,
    /// The value travels as a list.
    pub multi_value: bool,
    /// The account defined it.
    pub custom: bool,
    /// Its well-known meaning (`email`, `dnd`, `consent`...), if any.
    pub well_known: Option<String>,
    /// Allowed values of a choice field.
    pub choices: Vec<Choice>,
}

impl FieldDef {
    /// A writable field of the given type, for tests and adapters.
    pub fn new(name: &str, kind: FieldType, well_known: Option<&str>) -> Self {
        FieldDef {
            name: name.into(),
            label: name.into(),
            kind,
            required: false,
            writable: true,
            multi_value: matches!(kind, FieldType::MultiChoice),
            custom: false,
            well_known: well_known.map(str::to_string),
            choices: Vec::new(),
        }
    }

    /// Whether the field carries the given well-known tag.
    pub fn is(&self, tag: &str) -> bool {
        self.well_known.as_deref() == Some(tag)
    }
}

/// What a connector can do with one entity (WIT `entity-info`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntityInfo {
    /// Entity name (`contacts`, `leads`).
    pub name: String,
    /// `pull` with a cursor returns only changes.
    pub incremental: bool,
    /// `pull` reports deleted ids.
    pub tombstones: bool,
    /// The entity has containers.
    pub containers: bool,
    /// Largest page.
    pub max_page_size: u32,
    /// Largest number of writes per `push`.
    pub max_batch_size: u32,
}

/// A container of records (WIT `container`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// The app's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Number of members, when known.
    pub member_count: Option<u64>,
}

/// Which records a pull lists (WIT `pull-request`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequest {
    /// Entity name.
    pub entity: String,
    /// Restrict to one container.
    pub container: Option<String>,
    /// The opaque cursor, `None` to start.
    pub cursor: Option<String>,
    /// List everything, ignoring any incremental position.
    pub full: bool,
    /// Requested page size.
    pub page_size: u32,
}

/// One page of a listing (WIT `page`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Page {
    /// Records on this page.
    pub records: Vec<Record>,
    /// Ids deleted since the cursor.
    pub deleted: Vec<String>,
    /// The cursor to pass next.
    pub next_cursor: Option<String>,
    /// More pages follow.
    pub more: bool,
}

/// A lookup before creating (WIT `lookup`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Records whose e-mail equals this, case-insensitively.
    Email(String),
    /// Records carrying this engine marker.
    Marker(String),
    /// Records with these ids.
    Ids(Vec<String>),
}

/// One write (WIT `op`). Field maps are keyed by the app's field names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteOp {
    /// Create a record, tagged with an idempotency marker.
    Create {
        /// The fields to set.
        fields: Vec<(String, Value)>,
        /// The engine marker (`lookup(marker)` finds the record).
        marker: Option<String>,
        /// Containers to add the record to.
        containers: Vec<String>,
    },
    /// Update some fields.
    Update {
        /// The record's id in the app.
        id: String,
        /// Only if the record is still at this version.
        if_version: Option<String>,
        /// The fields to set.
        fields: Vec<(String, Value)>,
    },
    /// Delete a record.
    Delete(String),
    /// Add records to a container.
    AddToContainer {
        /// The container's id in the app.
        container: String,
        /// The ids of the records to add.
        ids: Vec<String>,
    },
    /// Remove records from a container.
    RemoveFromContainer {
        /// The container's id in the app.
        container: String,
        /// The ids of the records to remove.
        ids: Vec<String>,
    },
}

/// A write with its correlation reference (WIT `write`).
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    /// Echoed in the result.
    pub reference: String,
    /// What to write.
    pub op: WriteOp,
}

/// What happened to one write (WIT `write-result`).
#[derive(Clone, Debug, PartialEq)]
pub struct WriteResult {
    /// The write's reference.
    pub reference: String,
    /// The stored record after the write, `None` for deletes and membership.
    pub outcome: Result<Option<Record>, SourceError>,
}

/// A typed connector error (WIT `error`), plus host-side failures of the call.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum SourceError {
    /// Credentials missing, wrong or expired.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Credentials lack a permission.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The record or container does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The app refused the call for now.
    #[error("rate limited: {message}")]
    RateLimited {
        /// How long to wait, when known.
        retry_after_ms: Option<u64>,
        /// The app's message.
        message: String,
    },
    /// The app refused the input.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The record changed since the given version.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The incremental cursor is no longer valid.
    #[error("cursor expired: {0}")]
    CursorExpired(String),
    /// A passing failure.
    #[error("transient: {0}")]
    Transient(String),
    /// Anything else.
    #[error("fatal: {0}")]
    Fatal(String),
}

impl SourceError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SourceError::RateLimited { .. }
                | SourceError::Transient(_)
                | SourceError::Conflict(_)
                | SourceError::CursorExpired(_)
        )
    }

    /// A short code for reports and the store.
    pub fn code(&self) -> &'static str {
        match self {
            SourceError::Unauthorized(_) => "unauthorized",
            SourceError::Forbidden(_) => "forbidden",
            SourceError::NotFound(_) => "not-found",
            SourceError::RateLimited { .. } => "rate-limited",
            SourceError::Invalid(_) => "invalid",
            SourceError::Conflict(_) => "conflict",
            SourceError::CursorExpired(_) => "cursor-expired",
            SourceError::Transient(_) => "transient",
            SourceError::Fatal(_) => "fatal",
        }
    }
}

/// One connected app account, as the engine uses it. Futures are `Send` so
/// that the daemon can run syncs on a multi-threaded runtime.
pub trait Source: Send + Sync {
    /// The entities the connector serves and their capabilities.
    fn entities(&self) -> impl Future<Output = Result<Vec<EntityInfo>, SourceError>> + Send;
    /// The fields of an entity, custom fields included.
    fn schema(
        &self,
        entity: &str,
    ) -> impl Future<Output = Result<Vec<FieldDef>, SourceError>> + Send;
    /// The containers (lists, groups) of an entity.
    fn containers(
        &self,
        entity: &str,
    ) -> impl Future<Output = Result<Vec<Container>, SourceError>> + Send;
    /// One page of records and deletions.
    fn pull(&self, req: PullRequest) -> impl Future<Output = Result<Page, SourceError>> + Send;
    /// Records by e-mail, marker or ids.
    fn find(
        &self,
        entity: &str,
        lookup: Lookup,
    ) -> impl Future<Output = Result<Vec<Record>, SourceError>> + Send;
    /// Records of many lookups at once: one list per lookup, in order, each what
    /// [`Source::find`] returns for it. Connectors that can (the contract's optional
    /// `lookup-api`) answer a batch with a few requests; the default asks `find` for
    /// each lookup in turn.
    fn find_many(
        &self,
        entity: &str,
        lookups: Vec<Lookup>,
    ) -> impl Future<Output = Result<Vec<Vec<Record>>, SourceError>> + Send {
        async move {
            let mut out = Vec::with_capacity(lookups.len());
            for lookup in lookups {
                out.push(self.find(entity, lookup).await?);
            }
            Ok(out)
        }
    }
    /// Applies writes in order; one result per write.
    fn push(
        &self,
        entity: &str,
        writes: Vec<Write>,
    ) -> impl Future<Output = Result<Vec<WriteResult>, SourceError>> + Send;
    /// The API requests this source has sent since it was made, and its account's quota
    /// now, for the run log; `None` when it does not count them (the default). The engine
    /// records what a run added.
    fn requests(&self) -> Option<super::state::Requests> {
        None
    }
}

/// Where a batch of records is going (WIT `map-context`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapContext {
    /// The sync's name.
    pub sync: String,
    /// The connection the records come from.
    pub source: String,
    /// The connection the records go to.
    pub target: String,
    /// The source entity.
    pub entity: String,
}

/// The tenant's mapper plugins, called by name in the order the sync lists them.
pub trait Mappers: Send + Sync {
    /// Transforms a batch: per input, `Some` to pass on, `None` to drop it from
    /// this run, or an error that fails that record only.
    fn map(
        &self,
        mapper: &str,
        ctx: &MapContext,
        records: Vec<Record>,
    ) -> impl Future<Output = Vec<Result<Option<Record>, SourceError>>> + Send;
}

/// No mappers: a sync that lists none never calls this.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMappers;

impl Mappers for NoMappers {
    async fn map(
        &self,
        mapper: &str,
        _ctx: &MapContext,
        records: Vec<Record>,
    ) -> Vec<Result<Option<Record>, SourceError>> {
        records
            .iter()
            .map(|_| {
                Err(SourceError::Fatal(format!(
                    "mapper `{mapper}` is not loaded: load the plugin or remove it from the sync"
                )))
            })
            .collect()
    }
}
