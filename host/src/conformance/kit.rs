//! The sequence of checks the kit runs (listed in the [`super`] module docs). Each check
//! adds one row to the report; a check whose prerequisite failed is listed as skipped
//! with the reason, so the table always shows what was and was not verified.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::runtime::client::describe_plugin_error;
use crate::runtime::types::{
    Container, CreateOp, DeleteDetection, EntityInfo, Error as PluginError, Field, FieldDef,
    FieldType, Lookup, MembershipOp, Op, PluginInfo, PullRequest, Record, UpdateOp, Value, Write,
    WriteResult,
};
use crate::runtime::{CallError, ConnectorClient, Credentials, Plugin, Runtime, Secret};

use super::report::{Outcome, Report};
use super::sandbox_api::{Fault, SandboxControl};
use super::{KitOptions, NEEDS_SANDBOX, Target};

/// Scope of the checks that concern the whole plugin.
const PLUGIN: &str = "plugin";
/// A listing that has not ended after this many pages is reported as endless.
const MAX_PAGES: usize = 10_000;
/// Containers listed at most to find one the created record is not in.
const MAX_CONTAINERS_TRIED: usize = 3;
/// Some apps version records by `updated_at` with one-second resolution: two writes to
/// one record within the same second can keep the version. The kit waits this long
/// before writing a record again, as a sync (minutes apart) would.
const VERSION_TICK: Duration = Duration::from_millis(1100);
/// A key no app accepts.
const WRONG_KEY: &str = "tandem-conformance-wrong-key-0000000000";

/// The well-known tags of the contract's vocabulary (`wit/types.wit`, `field-def`).
const VOCABULARY: &[&str] = tandem_well_known::ALL;

/// A whole listing: every page of one `pull` run.
#[derive(Debug, Default)]
struct Listing {
    records: Vec<Record>,
    deleted: Vec<String>,
    pages: usize,
    /// The last page's `next-cursor`.
    checkpoint: Option<String>,
}

impl Listing {
    /// The last copy of a record (pages may repeat one that changed during the listing).
    fn get(&self, id: &str) -> Option<&Record> {
        self.records.iter().rev().find(|r| r.id == id)
    }

    fn ids(&self) -> BTreeSet<&str> {
        self.records.iter().map(|r| r.id.as_str()).collect()
    }

    fn summary(&self) -> String {
        let distinct = self.ids().len();
        let mut text = format!(
            "{} in {}",
            plural(distinct, "record"),
            plural(self.pages, "page")
        );
        if self.records.len() > distinct {
            text.push_str(&format!(", {} listed twice", self.records.len() - distinct));
        }
        if !self.deleted.is_empty() {
            text.push_str(&format!(", {} deleted", self.deleted.len()));
        }
        text
    }
}

/// What the kit expects a later listing to show for a record it wrote.
#[derive(Debug, Clone)]
struct Expected {
    id: String,
    field: String,
    value: String,
    version: Option<String>,
}

/// The fields the kit writes, from the schema's well-known tags.
#[derive(Debug, Clone)]
struct Fields {
    email: String,
    /// first-name, else full-name, else last-name: the field the kit updates.
    name: Option<String>,
    /// The `first-name` field (user edits in the simulated accounts set the first name).
    first_name: Option<String>,
    last_name: Option<String>,
}

pub(super) struct Kit<'a> {
    runtime: &'a Runtime,
    plugin: &'a Arc<Plugin>,
    target: &'a Target,
    options: &'a KitOptions,
    report: Report,
    nonce: String,
}

impl<'a> Kit<'a> {
    pub(super) fn new(
        runtime: &'a Runtime,
        plugin: &'a Arc<Plugin>,
        target: &'a Target,
        options: &'a KitOptions,
    ) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self {
            runtime,
            plugin,
            target,
            options,
            report: Report::new(plugin.label(), &target.label),
            nonce: format!("{:x}", nanos % (1 << 48)),
        }
    }

    fn row(&mut self, scope: &str, name: &str, result: Result<String, String>) {
        match result {
            Ok(detail) => self.report.push(scope, name, Outcome::Pass, detail),
            Err(reason) => self.report.push(scope, name, Outcome::Fail(reason), ""),
        }
    }

    fn skip(&mut self, scope: &str, name: &str, reason: &str) {
        self.report
            .push(scope, name, Outcome::Skip(reason.to_owned()), "");
    }

    fn control(&self) -> Option<&'a SandboxControl> {
        self.target.control.as_ref()
    }

    pub(super) async fn run(mut self) -> Report {
        let client = match self.target.connect(
            self.runtime,
            self.plugin,
            "conformance",
            self.target.credentials.clone(),
        ) {
            Ok(client) => client,
            Err(e) => {
                self.row(PLUGIN, "connect", Err(e.to_string()));
                return self.report;
            }
        };
        let info = match client.describe().await {
            Ok(info) => info,
            Err(e) => {
                self.row(PLUGIN, "describe", Err(call_error(&e)));
                return self.report;
            }
        };
        let described = self.describe(&info);
        self.row(PLUGIN, "describe", described);
        let checked = client.check().await;
        let account_ok = checked.is_ok();
        self.row(
            PLUGIN,
            "check",
            match checked {
                Ok(account) if account.account_id.trim().is_empty() => {
                    Err("`check` returned an empty account id".to_owned())
                }
                Ok(account) => Ok(format!(
                    "account {} ({})",
                    account.account_id, account.display_name
                )),
                Err(e) => Err(match e.plugin_error() {
                    Some(PluginError::Unauthorized(_)) => format!(
                        "{}: the credentials given to the kit are wrong or expired",
                        call_error(&e)
                    ),
                    _ => call_error(&e),
                }),
            },
        );
        self.wrong_credentials().await;
        self.restricted_credentials().await;

        let entities = self.entities(&info).await;
        if !account_ok {
            for entity in &entities {
                self.skip(
                    &entity.name,
                    "all checks",
                    "`check` failed with the kit's credentials",
                );
            }
            self.skip(
                PLUGIN,
                "error mapping",
                "`check` failed with the kit's credentials",
            );
            return self.report;
        }
        for entity in &entities {
            self.entity(&client, entity).await;
        }
        match entities.first() {
            Some(first) => self.error_mapping(&client, first).await,
            None => self.skip(PLUGIN, "error mapping", "no entity to test"),
        }
        self.report
    }

    /// `describe`: well-formed capabilities, the manifest's name.
    fn describe(&self, info: &PluginInfo) -> Result<String, String> {
        let manifest = self.plugin.manifest();
        if info.name != manifest.name {
            return Err(format!(
                "describe names the plugin `{}` but its manifest says `{}`",
                info.name, manifest.name
            ));
        }
        if info.entities.is_empty() {
            return Err("describe lists no entity".to_owned());
        }
        let mut names = BTreeSet::new();
        for e in &info.entities {
            if e.name.trim().is_empty() {
                return Err("an entity has an empty name".to_owned());
            }
            if !names.insert(e.name.as_str()) {
                return Err(format!("entity `{}` is listed twice", e.name));
            }
            if e.max_page_size == 0 || e.max_batch_size == 0 {
                return Err(format!(
                    "entity `{}` has max-page-size {} and max-batch-size {}; both must be at least 1",
                    e.name, e.max_page_size, e.max_batch_size
                ));
            }
        }
        if let Some(limit) = info
            .rate_limits
            .iter()
            .find(|l| l.requests == 0 || l.per_seconds == 0)
        {
            return Err(format!(
                "rate limit {}/{}s: both numbers must be at least 1",
                limit.requests, limit.per_seconds
            ));
        }
        let entities: Vec<String> = info
            .entities
            .iter()
            .map(|e| {
                let mut caps = vec![
                    format!("page {}", e.max_page_size),
                    format!("batch {}", e.max_batch_size),
                ];
                if e.incremental {
                    caps.push("incremental".into());
                }
                if e.deletes == DeleteDetection::Tombstones {
                    caps.push("tombstones".into());
                }
                if e.containers {
                    caps.push("containers".into());
                }
                format!("{} ({})", e.name, caps.join(", "))
            })
            .collect();
        let limits: Vec<String> = info
            .rate_limits
            .iter()
            .map(|l| format!("{}/{}s", l.requests, l.per_seconds))
            .collect();
        Ok(format!(
            "{} {} for {}: {}; rate limits: {}",
            info.name,
            info.version,
            info.app,
            entities.join(", "),
            if limits.is_empty() {
                "none".to_owned()
            } else {
                limits.join(", ")
            }
        ))
    }

    /// `check` with credentials the app refuses must be `unauthorized`.
    async fn wrong_credentials(&mut self) {
        const NAME: &str = "check: wrong credentials -> unauthorized";
        let wrong = match &self.target.credentials {
            Credentials::None => {
                self.skip(PLUGIN, NAME, "the connection has no credentials");
                return;
            }
            Credentials::ApiKey(_) => Credentials::ApiKey(Secret::new(WRONG_KEY)),
            Credentials::OAuth2 {
                client_id,
                client_secret,
                token_url,
                ..
            } => Credentials::OAuth2 {
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
                refresh_token: Secret::new(WRONG_KEY),
                token_url: token_url.clone(),
            },
        };
        let result = self
            .expect_check(
                "conformance-wrong-credentials",
                wrong,
                "unauthorized",
                "check succeeded with a made-up credential: call the app in `check` and map its 401 to `unauthorized`",
            )
            .await;
        self.row(PLUGIN, NAME, result);
    }

    /// `check` with credentials that lack permission must be `forbidden`.
    async fn restricted_credentials(&mut self) {
        const NAME: &str = "check: restricted credentials -> forbidden";
        match (&self.target.restricted_credentials, self.control()) {
            (Some(restricted), _) => {
                let result = self
                    .expect_check(
                        "conformance-restricted",
                        restricted.clone(),
                        "forbidden",
                        "check succeeded with the credentials of a user without API permission",
                    )
                    .await;
                self.row(PLUGIN, NAME, result);
            }
            (None, None) => self.skip(PLUGIN, NAME, NEEDS_SANDBOX),
            (None, Some(control)) => {
                let reason = format!(
                    "the simulated {} account has no restricted credentials",
                    control.kind()
                );
                self.skip(PLUGIN, NAME, &reason);
            }
        }
    }

    async fn expect_check(
        &self,
        id: &str,
        credentials: Credentials,
        wanted: &str,
        if_ok: &str,
    ) -> Result<String, String> {
        let client = self
            .target
            .connect(self.runtime, self.plugin, id, credentials)
            .map_err(|e| e.to_string())?;
        match client.check().await {
            Ok(_) => Err(if_ok.to_owned()),
            Err(e) => expect_variant(&e, wanted),
        }
    }

    /// The entities to test: the options' (or all described), and on a simulated
    /// account only those it serves.
    async fn entities(&mut self, info: &PluginInfo) -> Vec<EntityInfo> {
        let mut chosen: Vec<EntityInfo> = if self.options.entities.is_empty() {
            info.entities.clone()
        } else {
            let described: Vec<&str> = info.entities.iter().map(|e| e.name.as_str()).collect();
            for wanted in &self.options.entities {
                if !described.contains(&wanted.as_str()) {
                    let reason = format!(
                        "`{wanted}` is not an entity of the plugin (it describes {})",
                        described.join(", ")
                    );
                    self.row(PLUGIN, "entities", Err(reason));
                }
            }
            info.entities
                .iter()
                .filter(|e| self.options.entities.contains(&e.name))
                .cloned()
                .collect()
        };
        if let Some(control) = self.control() {
            match control.entities().await {
                Ok(served) => {
                    let (kept, dropped): (Vec<_>, Vec<_>) =
                        chosen.into_iter().partition(|e| served.contains(&e.name));
                    for e in dropped {
                        let reason =
                            format!("the simulated {} account has no {}", control.kind(), e.name);
                        self.skip(&e.name, "all checks", &reason);
                    }
                    chosen = kept;
                }
                Err(e) => self.row(PLUGIN, "entities", Err(e.to_string())),
            }
        }
        chosen
    }

    /// Every check of one entity, in order.
    async fn entity(&mut self, client: &ConnectorClient, entity: &EntityInfo) {
        let scope = entity.name.clone();
        let scope = scope.as_str();
        let schema = match client.schema(scope).await {
            Ok(fields) => fields,
            Err(e) => {
                let mut reason = call_error(&e);
                if self.control().is_none() {
                    reason.push_str("; if the account does not serve this entity, pass --entity");
                }
                self.row(scope, "schema", Err(reason));
                self.skip(scope, "other checks", "schema failed");
                return;
            }
        };
        let checked = schema_check(&schema);
        self.row(scope, "schema", checked);
        let fields = self.schema_fields(scope, &schema);

        let containers = self.containers(client, entity).await;

        let full = self.pull_all(client, scope, None, None, true).await;
        let full = match full {
            Ok(listing) => {
                let mut detail = listing.summary();
                if entity.incremental && listing.checkpoint.is_none() {
                    self.row(
                        scope,
                        "pull full",
                        Err(format!(
                            "{detail}; the last page has no next-cursor, so an incremental run cannot start"
                        )),
                    );
                } else {
                    if let Some(bad) = listing.records.iter().find(|r| r.updated_at.is_none()) {
                        detail.push_str(&format!("; record {} has no updated-at", bad.id));
                    }
                    self.row(scope, "pull full", Ok(detail));
                }
                listing
            }
            Err(reason) => {
                self.row(scope, "pull full", Err(reason));
                self.skip(scope, "other checks", "the full listing failed");
                return;
            }
        };
        self.complete(scope, &full).await;

        let Some(fields) = fields else {
            self.skip(
                scope,
                "writes",
                "the schema has no writable field tagged `email`",
            );
            return;
        };
        let Some(created) = self.create(client, entity, &fields).await else {
            self.skip(scope, "finds, updates, deletes", "push create failed");
            return;
        };
        self.finds(client, scope, &created).await;
        let mut expected: Vec<Expected> = created
            .iter()
            .map(|r| Expected {
                id: r.id.clone(),
                field: fields.name.clone().unwrap_or_else(|| fields.email.clone()),
                value: text_of(r, fields.name.as_deref().unwrap_or(&fields.email))
                    .unwrap_or_default(),
                version: r.version.clone(),
            })
            .collect();
        self.update(client, scope, &fields, &mut expected[0]).await;
        let gone = expected.pop().map(|e| e.id).unwrap_or_default();
        self.delete(client, scope, &gone).await;

        let after_push = self
            .pull_after(
                client,
                entity,
                "pull after push",
                full.checkpoint.clone(),
                &expected,
                std::slice::from_ref(&gone),
            )
            .await;
        self.membership(client, entity, &containers, &expected[1].id)
            .await;
        let user_deleted = self
            .user_edit(client, entity, &fields, after_push, &expected)
            .await;

        let leftover: Vec<String> = expected
            .iter()
            .map(|e| e.id.clone())
            .filter(|id| Some(id) != user_deleted.as_ref())
            .collect();
        self.cleanup(client, scope, &leftover).await;
    }

    /// Which fields the kit writes; adds the schema's email and custom-field rows.
    fn schema_fields(&mut self, scope: &str, schema: &[FieldDef]) -> Option<Fields> {
        let tagged = |tag: &str| {
            schema
                .iter()
                .find(|f| f.writable && f.well_known.as_deref() == Some(tag))
                .map(|f| f.name.clone())
        };
        let email = tagged(tandem_well_known::EMAIL);
        self.row(
            scope,
            "schema: well-known email",
            match (&email, schema.iter().find(|f| f.well_known.as_deref() == Some(tandem_well_known::EMAIL))) {
                (Some(name), _) => Ok(format!("`{name}`")),
                (None, Some(f)) => Err(format!(
                    "`{}` is tagged `email` but not writable: the host cannot create records",
                    f.name
                )),
                (None, None) => Err(
                    "no field is tagged `email`: the host pairs records by email and cannot sync this entity"
                        .to_owned(),
                ),
            },
        );
        let custom: Vec<&str> = schema
            .iter()
            .filter(|f| f.custom)
            .map(|f| f.name.as_str())
            .collect();
        if custom.is_empty() {
            if self.control().is_some() {
                self.row(
                    scope,
                    "schema: custom fields",
                    Err(
                        "no field is marked custom, but the simulated account has custom fields"
                            .to_owned(),
                    ),
                );
            } else {
                self.skip(
                    scope,
                    "schema: custom fields",
                    "no field is marked custom (fine if the account has no custom fields)",
                );
            }
        } else {
            self.row(
                scope,
                "schema: custom fields",
                Ok(format!("{}: {}", custom.len(), abbreviate(&custom, 6))),
            );
        }
        let first_name = tagged("first-name");
        let last_name = tagged("last-name");
        Some(Fields {
            name: first_name
                .clone()
                .or_else(|| tagged("full-name"))
                .or_else(|| last_name.clone()),
            email: email?,
            first_name,
            last_name,
        })
    }

    async fn containers(
        &mut self,
        client: &ConnectorClient,
        entity: &EntityInfo,
    ) -> Vec<Container> {
        let scope = entity.name.as_str();
        match client.containers(scope).await {
            Ok(list) if !entity.containers && !list.is_empty() => {
                self.row(
                    scope,
                    "containers",
                    Err(format!(
                        "{} containers returned, but describe says the entity has none",
                        list.len()
                    )),
                );
                list
            }
            Ok(list) if !entity.containers => {
                self.row(scope, "containers", Ok("none, as described".to_owned()));
                list
            }
            Ok(list) => {
                let result = match list
                    .iter()
                    .find(|c| c.id.trim().is_empty() || c.name.trim().is_empty())
                {
                    Some(bad) => Err(format!(
                        "container `{}` / `{}` has an empty id or name",
                        bad.id, bad.name
                    )),
                    None => Ok(format!(
                        "{}: {}",
                        list.len(),
                        abbreviate(&list.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), 6)
                    )),
                };
                self.row(scope, "containers", result);
                list
            }
            Err(e) => {
                self.row(scope, "containers", Err(call_error(&e)));
                Vec::new()
            }
        }
    }

    /// Every page of one listing.
    async fn pull_all(
        &self,
        client: &ConnectorClient,
        entity: &str,
        container: Option<&str>,
        cursor: Option<String>,
        full: bool,
    ) -> Result<Listing, String> {
        let page_size = self.page_size(client, entity).await;
        let mut listing = Listing::default();
        let mut cursor = cursor;
        for n in 1..=MAX_PAGES {
            let page = client
                .pull(&PullRequest {
                    entity: entity.to_owned(),
                    container: container.map(str::to_owned),
                    cursor: cursor.clone(),
                    full,
                    page_size,
                })
                .await
                .map_err(|e| format!("page {n}: {}", call_error(&e)))?;
            listing.pages = n;
            if page.records.len() > page_size as usize {
                return Err(format!(
                    "page {n} has {} records, more than the page size {page_size} asked for",
                    page.records.len()
                ));
            }
            if let Some(bad) = page.records.iter().find(|r| r.id.trim().is_empty()) {
                return Err(format!(
                    "page {n} has a record without an id ({} fields)",
                    bad.fields.len()
                ));
            }
            listing.records.extend(page.records);
            listing.deleted.extend(page.deleted);
            if !page.more {
                listing.checkpoint = page.next_cursor;
                return Ok(listing);
            }
            match page.next_cursor {
                None => return Err(format!("page {n} says `more` but has no next-cursor")),
                Some(next) if n > 1 && Some(&next) == cursor.as_ref() => {
                    return Err(format!(
                        "page {n} returned the cursor it was given: the listing would never end"
                    ));
                }
                Some(next) => cursor = Some(next),
            }
        }
        Err(format!("the listing did not end after {MAX_PAGES} pages"))
    }

    /// The page size the kit asks for: the entity's largest.
    async fn page_size(&self, client: &ConnectorClient, entity: &str) -> u32 {
        client
            .describe()
            .await
            .ok()
            .and_then(|info| info.entities.into_iter().find(|e| e.name == entity))
            .map_or(100, |e| e.max_page_size)
    }

    /// The full listing holds exactly the simulated account's live records.
    async fn complete(&mut self, scope: &str, full: &Listing) {
        const NAME: &str = "pull full: complete";
        let Some(control) = self.control() else {
            self.skip(scope, NAME, NEEDS_SANDBOX);
            return;
        };
        let result = match control.live_ids(scope).await {
            Err(e) => Err(e.to_string()),
            Ok(live) => {
                let pulled = full.ids();
                let missing: Vec<&str> = live
                    .iter()
                    .map(String::as_str)
                    .filter(|id| !pulled.contains(id))
                    .collect();
                let extra: Vec<&str> = pulled
                    .iter()
                    .copied()
                    .filter(|id| !live.contains(*id))
                    .collect();
                if missing.is_empty() && extra.is_empty() {
                    Ok(format!("all {} live records of the account", live.len()))
                } else {
                    Err(format!(
                        "the account has {} live records; the listing misses {} ({}) and has {} the account does not ({})",
                        live.len(),
                        missing.len(),
                        abbreviate(&missing, 5),
                        extra.len(),
                        abbreviate(&extra, 5)
                    ))
                }
            }
        };
        self.row(scope, NAME, result);
    }

    /// `push` of creates: one result per write, in order, each the stored record.
    async fn create(
        &mut self,
        client: &ConnectorClient,
        entity: &EntityInfo,
        fields: &Fields,
    ) -> Option<Vec<Record>> {
        let scope = entity.name.as_str();
        let n = self.options.creates.max(3);
        let writes: Vec<Write> = (0..n)
            .map(|i| {
                let mut values = vec![field(&fields.email, self.email(i))];
                if let Some(first) = &fields.first_name {
                    values.push(field(first, format!("Conformance{i}")));
                } else if let Some(name) = &fields.name {
                    values.push(field(name, format!("Conformance{i}")));
                }
                if let Some(last) = &fields.last_name
                    && Some(last) != fields.name.as_ref()
                {
                    values.push(field(last, "Kit".to_owned()));
                }
                Write {
                    ref_: format!("create-{i}"),
                    op: Op::Create(CreateOp {
                        fields: values,
                        marker: Some(self.marker(i)),
                        containers: Vec::new(),
                    }),
                }
            })
            .collect();
        let results = match push_batched(client, scope, &writes, entity.max_batch_size).await {
            Ok(results) => results,
            Err(reason) => {
                self.row(scope, "push create", Err(reason));
                return None;
            }
        };
        let mut created = Vec::new();
        let mut problems = Vec::new();
        for (i, result) in results.iter().enumerate() {
            match &result.outcome {
                Ok(Some(record)) => {
                    let email = text_of(record, &fields.email).unwrap_or_default();
                    if !email.eq_ignore_ascii_case(&self.email(i)) {
                        problems.push(format!(
                            "{}: the stored record's `{}` is `{email}`, not `{}`",
                            result.ref_,
                            fields.email,
                            self.email(i)
                        ));
                    } else if record.id.trim().is_empty() {
                        problems.push(format!("{}: the stored record has no id", result.ref_));
                    }
                    created.push(record.clone());
                }
                Ok(None) => problems.push(format!(
                    "{}: no stored record (a create must return the record read back)",
                    result.ref_
                )),
                Err(e) => problems.push(format!("{}: {}", result.ref_, describe_plugin_error(e))),
            }
        }
        let ids: BTreeSet<&str> = created.iter().map(|r| r.id.as_str()).collect();
        if problems.is_empty() && ids.len() != created.len() {
            problems.push("two creates returned the same record id".to_owned());
        }
        if problems.is_empty() {
            let versions = if created.iter().all(|r| r.version.is_some()) {
                "with versions"
            } else {
                "without versions"
            };
            let ids: Vec<&str> = ids.into_iter().collect();
            self.row(
                scope,
                "push create",
                Ok(format!(
                    "{} {versions} ({})",
                    plural(n, "record"),
                    abbreviate(&ids, 4)
                )),
            );
            Some(created)
        } else {
            self.row(scope, "push create", Err(problems.join("; ")));
            None
        }
    }

    fn email(&self, i: usize) -> String {
        format!("kit-{}-{i}@conformance.example", self.nonce)
    }

    fn marker(&self, i: usize) -> String {
        format!("tandem-kit-{}-{i}", self.nonce)
    }

    /// `find` by email (in another letter case), by marker, by ids.
    async fn finds(&mut self, client: &ConnectorClient, scope: &str, created: &[Record]) {
        let (first, second) = (&created[0].id, &created[1].id);
        let email = self.email(0).to_uppercase();
        let result = match client.find(scope, &Lookup::Email(email.clone())).await {
            Err(e) => Err(call_error(&e)),
            Ok(found) if found.iter().any(|r| &r.id == first) => {
                Ok(format!("{email} -> {}", ids_of(&found)))
            }
            Ok(found) => Err(format!(
                "looking up {email} (created as {}) found [{}], not {first}: emails match case-insensitively",
                self.email(0),
                ids_of(&found)
            )),
        };
        self.row(scope, "find by email", result);

        let marker = self.marker(0);
        let result = match client.find(scope, &Lookup::Marker(marker.clone())).await {
            Err(e) => Err(call_error(&e)),
            Ok(found) if found.iter().any(|r| &r.id == second) => Err(format!(
                "looking up marker {marker} also found {second}, created with another marker"
            )),
            Ok(found) if found.iter().any(|r| &r.id == first) => {
                Ok(format!("{marker} -> {}", ids_of(&found)))
            }
            Ok(found) => Err(format!(
                "looking up marker {marker} found [{}], not {first}: store create-op.marker with the record",
                ids_of(&found)
            )),
        };
        self.row(scope, "find by marker", result);

        let wanted = vec![first.clone(), second.clone()];
        let result = match client.find(scope, &Lookup::Ids(wanted.clone())).await {
            Err(e) => Err(call_error(&e)),
            Ok(found) => {
                let got: BTreeSet<&str> = found.iter().map(|r| r.id.as_str()).collect();
                if got == wanted.iter().map(String::as_str).collect() {
                    Ok(format!("[{}]", ids_of(&found)))
                } else {
                    Err(format!(
                        "looking up ids [{}] found [{}]",
                        wanted.join(", "),
                        ids_of(&found)
                    ))
                }
            }
        };
        self.row(scope, "find by ids", result);
    }

    /// `push` of an update with the record's version, then one with a stale version.
    async fn update(
        &mut self,
        client: &ConnectorClient,
        scope: &str,
        fields: &Fields,
        target: &mut Expected,
    ) {
        let Some(name) = fields.name.clone() else {
            self.skip(
                scope,
                "push update",
                "the schema has no writable first-name, full-name or last-name field",
            );
            self.skip(
                scope,
                "push update: stale version -> conflict",
                "no field to update",
            );
            return;
        };
        tokio::time::sleep(VERSION_TICK).await;
        let created_version = target.version.clone();
        let write = |value: &str, version: Option<String>, tag: &str| Write {
            ref_: tag.to_owned(),
            op: Op::Update(UpdateOp {
                id: target.id.clone(),
                if_version: version,
                fields: vec![field(&name, value.to_owned())],
            }),
        };
        let result = match push_one(
            client,
            scope,
            write("Updated", created_version.clone(), "update"),
        )
        .await
        {
            Err(reason) => Err(reason),
            Ok(Err(e)) => Err(describe_plugin_error(&e)),
            Ok(Ok(None)) => {
                Err("no stored record (an update must return the record read back)".to_owned())
            }
            Ok(Ok(Some(record))) => {
                let value = text_of(&record, &name).unwrap_or_default();
                if value != "Updated" {
                    Err(format!(
                        "the stored record's `{name}` is `{value}`, not `Updated`"
                    ))
                } else if created_version.is_some() && record.version == created_version {
                    Err(format!(
                        "the version did not change: {} before and after the update",
                        created_version.as_deref().unwrap_or_default()
                    ))
                } else {
                    target.value = value;
                    target.version = record.version.clone();
                    Ok(format!(
                        "`{name}` = Updated, version {} -> {}",
                        created_version.as_deref().unwrap_or("none"),
                        record.version.as_deref().unwrap_or("none")
                    ))
                }
            }
        };
        let updated = result.is_ok();
        self.row(scope, "push update", result);

        const STALE: &str = "push update: stale version -> conflict";
        if !updated {
            self.skip(scope, STALE, "push update failed");
            return;
        }
        let Some(stale) = created_version else {
            self.skip(scope, STALE, "the plugin returns no versions");
            return;
        };
        let result = match push_one(client, scope, write("Stale", Some(stale.clone()), "stale"))
            .await
        {
            Err(reason) => Err(reason),
            Ok(Err(PluginError::Conflict(m))) => Ok(format!("conflict: {m}")),
            Ok(Err(e)) => Err(format!(
                "expected conflict, got {}",
                describe_plugin_error(&e)
            )),
            Ok(Ok(record)) => {
                if let Some(record) = record {
                    target.value = text_of(&record, &name).unwrap_or_default();
                    target.version = record.version.clone();
                }
                Err(format!(
                    "the update with if-version {stale} (no longer current) was applied: honour if-version"
                ))
            }
        };
        self.row(scope, STALE, result);
    }

    /// `push` of a delete, then the same delete again (already gone: still a success).
    async fn delete(&mut self, client: &ConnectorClient, scope: &str, id: &str) {
        let delete = |tag: &str| Write {
            ref_: tag.to_owned(),
            op: Op::Delete(id.to_owned()),
        };
        let result = match push_one(client, scope, delete("delete")).await {
            Err(reason) => Err(reason),
            Ok(Err(e)) => Err(describe_plugin_error(&e)),
            Ok(Ok(Some(_))) => Err("a delete returned a record; it must return none".to_owned()),
            Ok(Ok(None)) => match push_one(client, scope, delete("delete-again")).await {
                Err(reason) => Err(format!("deleting {id} again: {reason}")),
                Ok(Err(e)) => Err(format!(
                    "deleting {id} again failed ({}): a retried delete of a record already gone must succeed",
                    describe_plugin_error(&e)
                )),
                Ok(Ok(_)) => match client.find(scope, &Lookup::Ids(vec![id.to_owned()])).await {
                    Err(e) => Err(format!("find by id after the delete: {}", call_error(&e))),
                    Ok(found) if found.is_empty() => Ok(format!(
                        "{id} deleted (twice); find by id no longer returns it"
                    )),
                    Ok(_) => Err(format!("find by id still returns {id} after its delete")),
                },
            },
        };
        self.row(scope, "push delete", result);
    }

    /// A later listing (incremental from `cursor` when the entity is incremental, else
    /// full) shows the expected records with their versions and not the deleted ones
    /// (as tombstones when declared). Returns the listing's checkpoint.
    async fn pull_after(
        &mut self,
        client: &ConnectorClient,
        entity: &EntityInfo,
        name: &str,
        cursor: Option<String>,
        live: &[Expected],
        gone: &[String],
    ) -> Option<String> {
        let scope = entity.name.as_str();
        let incremental = entity.incremental && cursor.is_some();
        let from = if incremental { cursor } else { None };
        let listing = match self.pull_all(client, scope, None, from, !incremental).await {
            Ok(listing) => listing,
            Err(reason) => {
                self.row(scope, name, Err(reason));
                return None;
            }
        };
        let tombstones = incremental && entity.deletes == DeleteDetection::Tombstones;
        let mut problems = Vec::new();
        for e in live {
            match listing.get(&e.id) {
                None => problems.push(format!("{} is missing", e.id)),
                Some(record) => {
                    let value = text_of(record, &e.field).unwrap_or_default();
                    if value != e.value {
                        problems.push(format!(
                            "{}: `{}` is `{value}`, expected `{}`",
                            e.id, e.field, e.value
                        ));
                    }
                    if e.version.is_some() && record.version != e.version {
                        problems.push(format!(
                            "{}: version {} differs from {} that push returned for the same state",
                            e.id,
                            record.version.as_deref().unwrap_or("none"),
                            e.version.as_deref().unwrap_or("none")
                        ));
                    }
                }
            }
        }
        for id in gone {
            if listing.get(id).is_some() && !listing.deleted.contains(id) {
                problems.push(format!("{id} was deleted but is still listed"));
            } else if tombstones && !listing.deleted.contains(id) {
                problems.push(format!(
                    "{id} was deleted but is not among the listing's deleted ids (describe declares tombstones)"
                ));
            }
        }
        let kind = if incremental { "incremental" } else { "full" };
        if problems.is_empty() {
            let mut detail = format!(
                "{kind}: {}; {} written record{} with {}",
                listing.summary(),
                live.len(),
                if live.len() == 1 { "" } else { "s" },
                if live.iter().any(|e| e.version.is_some()) {
                    "their new versions"
                } else {
                    "their values"
                }
            );
            if tombstones {
                detail.push_str(", deletion as tombstone");
            }
            self.row(scope, name, Ok(detail));
        } else {
            self.row(scope, name, Err(format!("{kind}: {}", problems.join("; "))));
        }
        if entity.incremental {
            listing.checkpoint
        } else {
            None
        }
    }

    /// Container membership: add a created record, list the container, remove it.
    async fn membership(
        &mut self,
        client: &ConnectorClient,
        entity: &EntityInfo,
        containers: &[Container],
        id: &str,
    ) {
        const NAME: &str = "containers: add, list, remove";
        let scope = entity.name.as_str();
        if !entity.containers {
            self.skip(scope, NAME, "describe says the entity has no containers");
            return;
        }
        if containers.is_empty() {
            self.skip(scope, NAME, "the account has no containers");
            return;
        }
        // The smallest container the record is not in yet (a full listing of it is
        // cheapest): adding to a container the app already put it in (Google's My
        // Contacts) changes nothing, and removing it from there may take its last
        // container away, which apps refuse (a Google contact keeps at least one group).
        let mut candidates: Vec<&Container> = containers.iter().collect();
        candidates.sort_by_key(|c| c.member_count.unwrap_or(u64::MAX));
        let mut container = None;
        for candidate in candidates.into_iter().take(MAX_CONTAINERS_TRIED) {
            match self
                .pull_all(client, scope, Some(&candidate.id), None, true)
                .await
            {
                Ok(listing) if listing.get(id).is_some() => continue,
                Ok(_) => {
                    container = Some(candidate);
                    break;
                }
                Err(r) => {
                    let r = format!("listing container {}: {r}", candidate.name);
                    self.row(scope, NAME, Err(r));
                    return;
                }
            }
        }
        let Some(container) = container else {
            self.skip(
                scope,
                NAME,
                &format!(
                    "the created record is already in each of the {MAX_CONTAINERS_TRIED} smallest containers; add a container it is not in (in Google: a user contact group)"
                ),
            );
            return;
        };
        let change = |add: bool| Write {
            ref_: if add { "add" } else { "remove" }.to_owned(),
            op: {
                let m = MembershipOp {
                    container: container.id.clone(),
                    ids: vec![id.to_owned()],
                };
                if add {
                    Op::AddToContainer(m)
                } else {
                    Op::RemoveFromContainer(m)
                }
            },
        };
        let result = async {
            match push_one(client, scope, change(true)).await? {
                Ok(None) => {}
                Ok(Some(_)) => {
                    return Err(
                        "adding to a container returned a record; it must return none".to_owned(),
                    );
                }
                Err(e) => {
                    return Err(format!(
                        "adding {id} to {}: {}",
                        container.name,
                        describe_plugin_error(&e)
                    ));
                }
            }
            let listing = self
                .pull_all(client, scope, Some(&container.id), None, true)
                .await
                .map_err(|r| format!("listing container {}: {r}", container.name))?;
            if listing.get(id).is_none() {
                return Err(format!(
                    "{id} was added to {} but a pull of that container does not list it ({})",
                    container.name,
                    listing.summary()
                ));
            }
            match push_one(client, scope, change(false)).await? {
                Ok(None) => Ok(format!(
                    "{id} added to {} ({} listed), then removed",
                    container.name,
                    listing.summary()
                )),
                Ok(Some(_)) => Err(
                    "removing from a container returned a record; it must return none".to_owned(),
                ),
                Err(e) => Err(format!(
                    "removing {id} from {}: {}",
                    container.name,
                    describe_plugin_error(&e)
                )),
            }
        }
        .await;
        self.row(scope, NAME, result);
    }

    /// A user edits one created record and deletes another in the app (control API);
    /// the next listing shows both. Returns the id deleted by the user.
    async fn user_edit(
        &mut self,
        client: &ConnectorClient,
        entity: &EntityInfo,
        fields: &Fields,
        cursor: Option<String>,
        expected: &[Expected],
    ) -> Option<String> {
        const NAME: &str = "pull after user edit";
        let scope = entity.name.as_str();
        let Some(control) = self.control() else {
            self.skip(scope, NAME, NEEDS_SANDBOX);
            return None;
        };
        let Some(first_name) = &fields.first_name else {
            self.skip(scope, NAME, "the schema has no writable first-name field");
            return None;
        };
        if entity.incremental && cursor.is_none() {
            self.skip(
                scope,
                NAME,
                "the previous incremental listing did not complete",
            );
            return None;
        }
        tokio::time::sleep(VERSION_TICK).await;
        let edited = expected[1].id.clone();
        let deleted = expected[0].id.clone();
        let acted = async {
            control
                .user_edit_first_name(scope, &edited, "Edited")
                .await?;
            control.user_delete(scope, &deleted).await
        }
        .await;
        if let Err(e) = acted {
            self.row(scope, NAME, Err(e.to_string()));
            return None;
        }
        let before = expected[1].version.clone();
        let from = if entity.incremental { cursor } else { None };
        let listing = match self
            .pull_all(client, scope, None, from, !entity.incremental)
            .await
        {
            Ok(listing) => listing,
            Err(reason) => {
                self.row(scope, NAME, Err(reason));
                return Some(deleted);
            }
        };
        let tombstones = entity.incremental && entity.deletes == DeleteDetection::Tombstones;
        let mut problems = Vec::new();
        match listing.get(&edited) {
            None => problems.push(format!("{edited}, edited by the user, is missing")),
            Some(record) => {
                let value = text_of(record, first_name).unwrap_or_default();
                if value != "Edited" {
                    problems.push(format!(
                        "{edited}: `{first_name}` is `{value}`, the user set `Edited`"
                    ));
                }
                if before.is_some() && record.version == before {
                    problems.push(format!(
                        "{edited}: the version did not change after the user's edit"
                    ));
                }
            }
        }
        if listing.get(&deleted).is_some() && !listing.deleted.contains(&deleted) {
            problems.push(format!("{deleted}, deleted by the user, is still listed"));
        } else if tombstones && !listing.deleted.contains(&deleted) {
            problems.push(format!(
                "{deleted}, deleted by the user, is not among the deleted ids (describe declares tombstones)"
            ));
        }
        let kind = if entity.incremental {
            "incremental"
        } else {
            "full"
        };
        if problems.is_empty() {
            let what = if tombstones {
                "the user's edit and deletion (tombstone)"
            } else {
                "the user's edit and deletion"
            };
            self.row(
                scope,
                NAME,
                Ok(format!("{kind}: {}; {what}", listing.summary())),
            );
        } else {
            self.row(scope, NAME, Err(format!("{kind}: {}", problems.join("; "))));
        }
        Some(deleted)
    }

    /// Deletes what the kit created (a row only when that fails).
    async fn cleanup(&mut self, client: &ConnectorClient, scope: &str, ids: &[String]) {
        let writes: Vec<Write> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| Write {
                ref_: format!("cleanup-{i}"),
                op: Op::Delete(id.clone()),
            })
            .collect();
        if writes.is_empty() {
            return;
        }
        let failed: Vec<String> = match client.push(scope, &writes).await {
            Err(e) => vec![call_error(&e)],
            Ok(results) => results
                .iter()
                .filter_map(|r| {
                    r.outcome
                        .as_ref()
                        .err()
                        .map(|e| format!("{}: {}", r.ref_, describe_plugin_error(e)))
                })
                .collect(),
        };
        if !failed.is_empty() {
            let reason = format!(
                "the kit could not delete the records it created ({}): {}",
                ids.join(", "),
                failed.join("; ")
            );
            self.row(scope, "cleanup", Err(reason));
        }
    }

    /// Faults injected through the control API must map to the contract's variants.
    async fn error_mapping(&mut self, client: &ConnectorClient, entity: &EntityInfo) {
        let cases = [
            (
                "error: 429 -> rate-limited",
                Fault::RateLimited,
                "rate-limited",
            ),
            ("error: 503 -> transient", Fault::Unavailable, "transient"),
            (
                "error: truncated JSON -> transient",
                Fault::Truncated,
                "transient",
            ),
        ];
        const REVOKED: &str = "error: revoked credentials -> unauthorized";
        let Some(control) = self.control() else {
            for (name, _, _) in cases {
                self.skip(PLUGIN, name, NEEDS_SANDBOX);
            }
            self.skip(PLUGIN, REVOKED, NEEDS_SANDBOX);
            return;
        };
        let request = PullRequest {
            entity: entity.name.clone(),
            container: None,
            cursor: None,
            full: true,
            page_size: entity.max_page_size,
        };
        for (name, fault, wanted) in cases {
            let result = async {
                control.clear_faults().await.map_err(|e| e.to_string())?;
                control.inject(fault).await.map_err(|e| e.to_string())?;
                let outcome = client.pull(&request).await;
                control.clear_faults().await.map_err(|e| e.to_string())?;
                match outcome {
                    Ok(_) => Err(format!(
                        "pull succeeded although its first request to {} got the fault",
                        control.api_prefix()
                    )),
                    Err(e) => expect_variant(&e, wanted),
                }
            }
            .await;
            self.row(PLUGIN, name, result.map(|d| format!("pull: {d}")));
        }
        let result = async {
            control
                .revoke_credentials()
                .await
                .map_err(|e| e.to_string())?;
            let outcome = client.check().await;
            control
                .restore_credentials()
                .await
                .map_err(|e| e.to_string())?;
            match outcome {
                Ok(_) => {
                    Err("check succeeded after the account revoked the credentials".to_owned())
                }
                Err(e) => expect_variant(&e, "unauthorized"),
            }
        }
        .await;
        self.row(PLUGIN, REVOKED, result.map(|d| format!("check: {d}")));
    }
}

/// Pushes `writes` in calls of at most `batch` writes; checks one result per write, in
/// order, refs echoed.
async fn push_batched(
    client: &ConnectorClient,
    entity: &str,
    writes: &[Write],
    batch: u32,
) -> Result<Vec<WriteResult>, String> {
    let mut results = Vec::with_capacity(writes.len());
    for chunk in writes.chunks(batch.max(1) as usize) {
        let got = client
            .push(entity, chunk)
            .await
            .map_err(|e| call_error(&e))?;
        let refs: Vec<&str> = got.iter().map(|r| r.ref_.as_str()).collect();
        let sent: Vec<&str> = chunk.iter().map(|w| w.ref_.as_str()).collect();
        if refs != sent {
            return Err(format!(
                "push returned results for [{}] but was sent [{}]: one result per write, in order",
                refs.join(", "),
                sent.join(", ")
            ));
        }
        results.extend(got);
    }
    Ok(results)
}

/// Pushes one write; the outer error is a failed call or a malformed answer.
async fn push_one(
    client: &ConnectorClient,
    entity: &str,
    write: Write,
) -> Result<Result<Option<Record>, PluginError>, String> {
    let mut results = push_batched(client, entity, std::slice::from_ref(&write), 1).await?;
    Ok(results.remove(0).outcome)
}

/// Well-formed field definitions.
fn schema_check(schema: &[FieldDef]) -> Result<String, String> {
    if schema.is_empty() {
        return Err("no field".to_owned());
    }
    let mut names = BTreeSet::new();
    let mut unknown_tags = Vec::new();
    for f in schema {
        if f.name.trim().is_empty() {
            return Err(format!("a field labelled `{}` has no name", f.label));
        }
        if !names.insert(f.name.as_str()) {
            return Err(format!("field `{}` is listed twice", f.name));
        }
        if matches!(f.kind, FieldType::Choice | FieldType::MultiChoice) && f.choices.is_empty() {
            return Err(format!("`{}` is a choice field without choices", f.name));
        }
        if f.kind == FieldType::MultiChoice && !f.multi_value {
            return Err(format!(
                "`{}` is a multi-choice field but not multi-value",
                f.name
            ));
        }
        if let Some(tag) = &f.well_known
            && !VOCABULARY.contains(&tag.as_str())
        {
            unknown_tags.push(format!("{} ({tag})", f.name));
        }
    }
    let tagged = schema.iter().filter(|f| f.well_known.is_some()).count();
    let mut detail = format!("{} fields, {tagged} with a well-known tag", schema.len());
    if !unknown_tags.is_empty() {
        detail.push_str(&format!(
            "; tags outside the vocabulary, which the host ignores: {}",
            unknown_tags.join(", ")
        ));
    }
    Ok(detail)
}

fn field(name: &str, text: String) -> Field {
    Field {
        name: name.to_owned(),
        value: Value::Text(text),
    }
}

/// A field's value as text (the first of a multi-value field).
fn text_of(record: &Record, name: &str) -> Option<String> {
    match &record.fields.iter().find(|f| f.name == name)?.value {
        Value::Text(t) => Some(t.clone()),
        Value::Texts(list) => list.first().cloned(),
        Value::Number(n) => Some(n.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        Value::Null => None,
    }
}

/// `1 record`, `2 records`.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn ids_of(records: &[Record]) -> String {
    records
        .iter()
        .map(|r| r.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn abbreviate(items: &[&str], max: usize) -> String {
    if items.len() <= max {
        items.join(", ")
    } else {
        format!(
            "{}, … ({} more)",
            items[..max].join(", "),
            items.len() - max
        )
    }
}

/// The name of an error's case, as in the contract.
fn variant(error: &PluginError) -> &'static str {
    match error {
        PluginError::Unauthorized(_) => "unauthorized",
        PluginError::Forbidden(_) => "forbidden",
        PluginError::NotFound(_) => "not-found",
        PluginError::RateLimited(_) => "rate-limited",
        PluginError::Invalid(_) => "invalid",
        PluginError::Conflict(_) => "conflict",
        PluginError::CursorExpired(_) => "cursor-expired",
        PluginError::Transient(_) => "transient",
        PluginError::Fatal(_) => "fatal",
    }
}

/// Pass when the call failed with the `wanted` case; the detail is the plugin's error.
fn expect_variant(error: &CallError, wanted: &str) -> Result<String, String> {
    match error.plugin_error() {
        Some(e) if variant(e) == wanted => Ok(describe_plugin_error(e)),
        Some(e) => Err(format!(
            "expected {wanted}, got {}",
            describe_plugin_error(e)
        )),
        None => Err(format!("expected {wanted}, the call failed: {error}")),
    }
}

/// A call error as one line, without the plugin's name for typed errors.
fn call_error(error: &CallError) -> String {
    match error.plugin_error() {
        Some(e) => describe_plugin_error(e),
        None => error.to_string(),
    }
}
