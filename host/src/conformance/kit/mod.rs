//! The sequence of checks the kit runs (listed in the [`super`] module docs). Each check
//! adds one row to the report; a check whose prerequisite failed is listed as skipped
//! with the reason, so the table always shows what was and was not verified.

mod containers;
mod describe;
mod errors;
mod listing;
mod schema;
mod user_edit;
mod writes;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::conformance::report::{Outcome, Report};
use crate::conformance::sandbox_api::SandboxControl;
use crate::conformance::{KitOptions, Target};
use crate::runtime::client::describe_plugin_error;
use crate::runtime::types::{EntityInfo, Error as PluginError, Field, PluginInfo, Record, Value};
use crate::runtime::{CallError, ConnectorClient, Plugin, Runtime};

use schema::schema_check;

/// Scope of the checks that concern the whole plugin.
const PLUGIN: &str = "plugin";

/// The id of the kit's main connection (the others are named after their check).
pub(super) const CONNECTION: &str = "conformance";

/// Some apps version records by `updated_at` with one-second resolution: two writes to
/// one record within the same second can keep the version. The kit waits this long
/// before writing a record again, as a sync (minutes apart) would.
const VERSION_TICK: Duration = Duration::from_millis(1100);

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
        let fresh = format!("{:x}", nanos % (1 << 48));
        // A replay writes the recorded e-mails and markers: the same requests.
        let nonce = match &target.tape {
            Some(tape) => tape.nonce(fresh),
            None => fresh,
        };
        Self {
            runtime,
            plugin,
            target,
            options,
            report: Report::new(plugin.label(), &target.label),
            nonce,
        }
    }

    fn row(&mut self, scope: &str, name: &str, result: Result<String, String>) {
        if let Some(miss) = self.replay_miss() {
            return self.report.push(scope, name, Outcome::Fail(miss), "");
        }
        match result {
            Ok(detail) => self.report.push(scope, name, Outcome::Pass, detail),
            Err(reason) => self.report.push(scope, name, Outcome::Fail(reason), ""),
        }
    }

    fn skip(&mut self, scope: &str, name: &str, reason: &str) {
        if let Some(miss) = self.replay_miss() {
            return self.report.push(scope, name, Outcome::Fail(miss), "");
        }
        self.report
            .push(scope, name, Outcome::Skip(reason.to_owned()), "");
    }

    /// In a replay, the requests since the last row that the recording does not have:
    /// whatever the check concluded from the stand-in errors, it failed.
    fn replay_miss(&self) -> Option<String> {
        self.target.tape.as_ref()?.take_misses()
    }

    /// Waits [`VERSION_TICK`] before writing a record again; a replay's app has no clock.
    async fn tick(&self) {
        if !self.target.replaying() {
            tokio::time::sleep(VERSION_TICK).await;
        }
    }

    fn control(&self) -> Option<&'a SandboxControl> {
        self.target.control.as_ref()
    }

    pub(super) async fn run(mut self) -> Report {
        self.checks().await;
        // Requests no row accounted for (the cleanup's, say).
        if let Some(miss) = self.replay_miss() {
            self.report.push(PLUGIN, "replay", Outcome::Fail(miss), "");
        }
        self.report
    }

    async fn checks(&mut self) {
        let client = match self.target.connect(
            self.runtime,
            self.plugin,
            CONNECTION,
            self.target.credentials.clone(),
        ) {
            Ok(client) => client,
            Err(e) => {
                self.row(PLUGIN, "connect", Err(e.to_string()));
                return;
            }
        };
        let info = match client.describe().await {
            Ok(info) => info,
            Err(e) => {
                self.row(PLUGIN, "describe", Err(call_error(&e)));
                return;
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
            return;
        }
        for entity in &entities {
            self.entity(&client, entity).await;
        }
        match entities.first() {
            Some(first) => self.error_mapping(&client, first).await,
            None => self.skip(PLUGIN, "error mapping", "no entity to test"),
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
        self.small_pages(client, entity, &full).await;

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

/// A call error as one line, without the plugin's name for typed errors.
fn call_error(error: &CallError) -> String {
    match error.plugin_error() {
        Some(e) => describe_plugin_error(e),
        None => error.to_string(),
    }
}
