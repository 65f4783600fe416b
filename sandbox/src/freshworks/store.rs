//! State of one simulated Freshworks account and every operation on it, as plain functions of
//! (state, input, switches, now). The HTTP layer ([`super::api`]) only parses and renders.
//!
//! Records keep the writable fields in a map (absent = null), emails as entries with ids, custom
//! fields normalised (multi-select as a `;`-joined string, dates as `YYYY-MM-DD`), list
//! memberships, and second-precision `created_at` / `updated_at`. `updated_at` moves on every
//! change that alters the record (a write that changes nothing leaves it alone), including list
//! membership changes when [`Switches::list_change_bumps_updated_at`] is on, soft deletes and
//! restores.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::error::ApiError;
use super::fields::{Entity, FieldDef, FieldType, Flavor, Refs, field_defs};
use super::switches::{DuplicateEmail, SoftDeletedUpdate, SortType, Switches};
use crate::AccountKind;
use crate::seed::{self, Consent, LIST_NAMES, SeedRecord};

/// One email of a record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EmailEntry {
    /// Entry id.
    pub id: u64,
    /// Address as stored (case preserved).
    pub value: String,
    /// Primary address (exactly one per record with emails).
    pub is_primary: bool,
    /// Optional label.
    pub label: Option<String>,
}

/// One contact or lead.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Record {
    /// 64-bit id.
    pub id: u64,
    /// Contact or lead.
    pub entity: Entity,
    /// Writable standard fields (absent = null).
    pub fields: BTreeMap<String, Value>,
    /// Emails.
    pub emails: Vec<EmailEntry>,
    /// Custom fields (`cf_*`), normalised.
    pub custom: BTreeMap<String, Value>,
    /// Sales accounts: (id, is_primary).
    pub sales_accounts: Vec<(u64, bool)>,
    /// Lead company (`company` object).
    pub company: BTreeMap<String, Value>,
    /// Lead deal (`deal` object).
    pub deal: BTreeMap<String, Value>,
    /// Marketing lists the record belongs to.
    pub list_ids: BTreeSet<u64>,
    /// Set once.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Moves on every change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// In the recycle bin.
    pub deleted: bool,
    /// Creating user.
    pub creater_id: u64,
    /// Last updating user.
    pub updater_id: u64,
}

impl Record {
    fn blank(id: u64, entity: Entity, now: OffsetDateTime, user: u64) -> Record {
        Record {
            id,
            entity,
            fields: BTreeMap::new(),
            emails: Vec::new(),
            custom: BTreeMap::new(),
            sales_accounts: Vec::new(),
            company: BTreeMap::new(),
            deal: BTreeMap::new(),
            list_ids: BTreeSet::new(),
            created_at: now,
            updated_at: now,
            deleted: false,
            creater_id: user,
            updater_id: user,
        }
    }

    /// The primary email, if any.
    pub fn primary_email(&self) -> Option<&str> {
        self.emails
            .iter()
            .find(|e| e.is_primary)
            .or(self.emails.first())
            .map(|e| e.value.as_str())
    }

    /// A standard field as a string (for search and filters).
    pub fn field_str(&self, name: &str) -> Option<String> {
        value_str(self.fields.get(name)?)
    }

    /// "First Last", or the email when there is no name.
    pub fn display_name(&self) -> String {
        let first = self.field_str("first_name").unwrap_or_default();
        let last = self.field_str("last_name").unwrap_or_default();
        let n = format!("{first} {last}").trim().to_owned();
        if n.is_empty() {
            self.primary_email().unwrap_or_default().to_owned()
        } else {
            n
        }
    }

    fn same_content(&self, other: &Record) -> bool {
        self.fields == other.fields
            && self.emails == other.emails
            && self.custom == other.custom
            && self.sales_accounts == other.sales_accounts
            && self.company == other.company
            && self.deal == other.deal
            && self.list_ids == other.list_ids
            && self.deleted == other.deleted
    }
}

fn value_str(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => Some(a.iter().filter_map(value_str).collect::<Vec<_>>().join(";")),
        other => Some(other.to_string()),
    }
}

/// A marketing list.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct List {
    /// Id.
    pub id: u64,
    /// Name (unique, case-insensitive).
    pub name: String,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last renamed or changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// What a saved view selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewKind {
    /// Every live record.
    All,
    /// Records owned by the calling user.
    Mine,
    /// Records created in the last 30 days.
    New,
}

/// A saved view (filter).
#[derive(Debug, Clone, serde::Serialize)]
pub struct View {
    /// Id.
    pub id: u64,
    /// Name ("All Contacts").
    pub name: String,
    /// Entity listed.
    pub entity: Entity,
    /// Selection.
    pub kind: ViewKind,
}

/// One bulk-upsert item, parsed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BulkItem {
    /// `unique_identifier`.
    pub identifier: Map<String, Value>,
    /// Fields to write.
    pub data: Map<String, Value>,
}

/// A bulk upsert job.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Job {
    /// Id.
    pub id: u64,
    /// Entity written.
    pub entity: Entity,
    /// Submitted.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Processed once the clock reaches this.
    #[serde(with = "time::serde::rfc3339")]
    pub ready_at: OffsetDateTime,
    /// Items still to process (emptied when done).
    pub items: Vec<BulkItem>,
    /// Done?
    pub completed: bool,
    /// When the status last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub status_updated_at: OffsetDateTime,
    /// Items written.
    pub succeeded: usize,
    /// Items rejected.
    pub failed: usize,
    /// One entry per failed item.
    pub failures: Vec<Value>,
    /// Calling user.
    pub user: u64,
}

/// Pending pagination quirks (Syncari saw short and unordered pages).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PageQuirks {
    /// The next N non-empty pages that more pages follow drop their last record.
    pub short_pages: u32,
    /// The next N pages with two or more records swap their first two.
    pub unordered_pages: u32,
}

/// Paging and sorting asked for by a request.
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// 1-based page.
    pub page: usize,
    /// Records per page (already capped at 100).
    pub per_page: usize,
    /// Sort field, if any.
    pub sort: Option<String>,
    /// Sort direction, if any.
    pub sort_type: Option<SortType>,
}

/// One filter rule of `filtered_search`.
#[derive(Debug, Clone)]
pub struct FilterRule {
    /// Attribute (`contact_email.email`, `updated_at`, `deleted`, a field name, `cf_*`).
    pub attribute: String,
    /// Operator (`is`, `is_in`, `is_after`…).
    pub operator: String,
    /// Scalar or array value.
    pub value: Value,
}

/// The whole state of one account.
#[derive(Debug, Clone)]
pub struct Store {
    /// Flavour facts.
    pub flavor: Flavor,
    next_id: u64,
    /// Users, selectors, sales accounts.
    pub refs: Refs,
    /// Contacts and leads by id (deleted ones included until forgotten).
    pub records: BTreeMap<u64, Record>,
    /// Lists by id.
    pub lists: BTreeMap<u64, List>,
    /// Saved views.
    pub views: Vec<View>,
    /// Bulk jobs by id.
    pub jobs: BTreeMap<u64, Job>,
    /// Marketing events received (`/crm/marketer/mas/api/v1/events`).
    pub events: Vec<Value>,
    /// Per-list unsubscribes from the standalone Freshmarketer tree: (list id, contact id).
    pub list_unsubscribes: BTreeSet<(u64, u64)>,
    /// Pending page quirks.
    pub quirks: PageQuirks,
    tie_salt: u64,
    /// Custom fields per entity (name, type), for rendering.
    custom_defs: BTreeMap<Entity, Vec<(String, FieldType)>>,
}

/// Truncate to whole seconds: the API shows seconds, so comparisons use seconds too.
pub fn secs(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn is_valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
}

impl Store {
    /// An empty account of `kind` (reference data and views, no records).
    pub fn empty(kind: AccountKind) -> Store {
        let flavor = Flavor::of(kind);
        let mut next_id = flavor.id_base;
        let mut alloc = || {
            next_id += 7;
            next_id
        };
        let refs = Refs::new(&flavor, &mut alloc);
        let mut s = Store {
            flavor,
            next_id,
            refs,
            records: BTreeMap::new(),
            lists: BTreeMap::new(),
            views: Vec::new(),
            jobs: BTreeMap::new(),
            events: Vec::new(),
            list_unsubscribes: BTreeSet::new(),
            quirks: PageQuirks::default(),
            tie_salt: 0,
            custom_defs: BTreeMap::new(),
        };
        for e in s.flavor.entities() {
            let defs = field_defs(&s.flavor, *e, &s.refs, true, &[])
                .into_iter()
                .filter(|d| !d.standard)
                .map(|d| (d.name, d.ftype))
                .collect();
            s.custom_defs.insert(*e, defs);
        }
        for entity in s.flavor.entities() {
            let label = match entity {
                Entity::Contact => "Contacts",
                Entity::Lead => "Leads",
            };
            for (kind, name) in [
                (ViewKind::All, format!("All {label}")),
                (ViewKind::Mine, format!("My {label}")),
                (ViewKind::New, format!("New {label}")),
            ] {
                let id = s.alloc_id();
                s.views.push(View {
                    id,
                    name,
                    entity: *entity,
                    kind,
                });
            }
        }
        s
    }

    /// An account of `kind` seeded with `n` records from `seed` (Classic: `n` leads plus `n/3`
    /// contacts), timestamps relative to `now`.
    pub fn seeded(
        kind: AccountKind,
        seed: u64,
        n: usize,
        now: OffsetDateTime,
        sw: &Switches,
    ) -> Store {
        let mut s = Store::empty(kind);
        let now = secs(now);
        let user0 = s.refs.user_ids()[0];
        for name in LIST_NAMES {
            let id = s.alloc_id();
            s.lists.insert(
                id,
                List {
                    id,
                    name: (*name).to_owned(),
                    created_at: now - time::Duration::days(400),
                    updated_at: now - time::Duration::days(400),
                },
            );
        }
        let list_ids: Vec<u64> = s.lists.keys().copied().collect();
        let (leads, contacts) = if s.flavor.has_leads {
            (n, n / 3)
        } else {
            (0, n)
        };
        let recs = seed::account_records(seed, kind, leads + contacts);
        for (i, r) in recs.iter().enumerate() {
            let entity = if i < leads {
                Entity::Lead
            } else {
                Entity::Contact
            };
            let input = s.seed_input(entity, r);
            let id = s.alloc_id();
            let created = now - time::Duration::seconds(r.created_secs_ago);
            let mut rec = Record::blank(id, entity, created, user0);
            match s.apply(&mut rec, &input, sw) {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(?e, "sandbox seed record rejected; skipped");
                    continue;
                }
            }
            if entity == Entity::Contact {
                rec.list_ids = r
                    .lists
                    .iter()
                    .filter_map(|l| list_ids.get(*l).copied())
                    .collect();
            }
            rec.updated_at = now - time::Duration::seconds(r.updated_secs_ago);
            s.records.insert(id, rec);
        }
        s
    }

    fn seed_input(&mut self, entity: Entity, r: &SeedRecord) -> Map<String, Value> {
        let p = &r.person;
        let mut m = Map::new();
        m.insert("first_name".into(), json!(p.first_name));
        m.insert("last_name".into(), json!(p.last_name));
        if !p.job_title.is_empty() {
            m.insert("job_title".into(), json!(p.job_title));
        }
        let mut emails = Vec::new();
        if let Some(e) = &r.email {
            emails.push(json!({"value": e, "is_primary": true}));
        }
        if let (Some(e), true) = (&p.secondary_email, r.duplicate_of.is_none()) {
            emails.push(json!({"value": e, "is_primary": false}));
        }
        if !emails.is_empty() {
            m.insert("emails".into(), Value::Array(emails));
        }
        if let Some(w) = &p.work_phone {
            m.insert("work_number".into(), json!(w));
        }
        if let Some(w) = &p.mobile_phone {
            m.insert("mobile_number".into(), json!(w));
        }
        m.insert("city".into(), json!(p.city));
        if let Some(st) = &p.state {
            m.insert("state".into(), json!(st));
        }
        m.insert("country".into(), json!(p.country));
        let users = self.refs.user_ids();
        m.insert("owner_id".into(), json!(users[r.owner % users.len()]));
        m.insert("lead_score".into(), json!(r.lead_score));
        m.insert(
            "subscription_status".into(),
            json!(r.consent.subscription_status()),
        );
        match r.consent {
            Consent::Subscribed => {
                m.insert("subscription_types".into(), json!("1;2;3"));
            }
            Consent::Unsubscribed => {
                m.insert("unsubscription_reason".into(), json!("Not interested"));
            }
            _ => {}
        }
        m.insert("do_not_disturb".into(), json!(r.do_not_disturb));
        let sources = self.refs.ids("lead_sources");
        m.insert(
            "lead_source_id".into(),
            json!(sources[p.index % sources.len()]),
        );
        if entity == Entity::Lead {
            let stages = self.refs.ids("lead_stages");
            m.insert(
                "lead_stage_id".into(),
                json!(stages[p.index % stages.len()]),
            );
            m.insert(
                "company".into(),
                json!({"name": p.company.name, "website": format!("https://{}", p.company.domain)}),
            );
        } else {
            if self.flavor.lifecycle {
                let stages = self
                    .refs
                    .selector("lifecycle_stages")
                    .map(|s| s.items.clone());
                if let Some(stages) = stages {
                    let st = &stages[p.index % stages.len()];
                    m.insert("lifecycle_stage_id".into(), st["id"].clone());
                    if let Some(first) = st["contact_status_ids"].get(0) {
                        m.insert("contact_status_id".into(), first.clone());
                    }
                }
            } else {
                let statuses = self.refs.ids("contact_statuses");
                m.insert(
                    "contact_status_id".into(),
                    json!(statuses[p.index % statuses.len()]),
                );
            }
            m.insert(
                "sales_accounts".into(),
                json!([{"name": p.company.name, "is_primary": true}]),
            );
        }
        if !self.flavor.lifecycle {
            m.insert("has_authority".into(), json!(p.index.is_multiple_of(3)));
        }
        let c = &r.custom;
        let mut cf = Map::new();
        if let Some(plan) = &c.plan {
            cf.insert(self.flavor.plan_field.into(), json!(plan));
        }
        if !c.interests.is_empty() {
            cf.insert("cf_interests".into(), json!(c.interests.join(";")));
        }
        if let Some(d) = c.renewal_date {
            cf.insert(
                "cf_renewal_date".into(),
                json!(format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)),
            );
        }
        if let Some(n) = c.seats {
            cf.insert("cf_seats".into(), json!(n));
        }
        cf.insert("cf_is_active".into(), json!(c.is_active));
        if let Some(rg) = &c.region {
            cf.insert("cf_region".into(), json!(rg));
        }
        m.insert("custom_field".into(), Value::Object(cf));
        m
    }

    /// A fresh id (ids grow, are > 2^32, and are not contiguous).
    pub fn alloc_id(&mut self) -> u64 {
        self.next_id += 3 + (mix(self.next_id) % 5);
        self.next_id
    }

    /// Field definitions of `entity` under `sw`.
    pub fn defs(&self, entity: Entity, sw: &Switches) -> Vec<FieldDef> {
        field_defs(
            &self.flavor,
            entity,
            &self.refs,
            sw.do_not_disturb_field,
            &sw.required_fields,
        )
    }

    /// Custom fields of `entity` (name, type) in metadata order.
    pub fn custom_defs(&self, entity: Entity) -> &[(String, FieldType)] {
        self.custom_defs.get(&entity).map_or(&[], Vec::as_slice)
    }

    /// A live or deleted record of `entity`.
    pub fn get(&self, entity: Entity, id: u64) -> Option<&Record> {
        self.records.get(&id).filter(|r| r.entity == entity)
    }

    /// Live records of `entity`.
    pub fn live(&self, entity: Entity) -> impl Iterator<Item = &Record> {
        self.records
            .values()
            .filter(move |r| r.entity == entity && !r.deleted)
    }

    // ----- writes -----

    /// Apply `input` (unwrapped fields) to `rec`, validating against the field metadata.
    /// On error `rec` may be partly changed: callers work on a copy.
    pub fn apply(
        &mut self,
        rec: &mut Record,
        input: &Map<String, Value>,
        sw: &Switches,
    ) -> Result<(), ApiError> {
        let defs = self.defs(rec.entity, sw);
        let mut errors: Vec<String> = Vec::new();
        for (k, v) in input {
            match k.as_str() {
                "email" | "emails" => self.apply_emails(rec, v, &mut errors),
                "custom_field" => match v {
                    Value::Object(cf) => {
                        for (ck, cv) in cf {
                            apply_custom(rec, &defs, ck, cv, sw, &mut errors);
                        }
                    }
                    Value::Null => {}
                    _ => errors.push("Custom field is invalid".to_owned()),
                },
                ck if ck.starts_with("cf_") => apply_custom(rec, &defs, ck, v, sw, &mut errors),
                "sales_accounts" if rec.entity == Entity::Contact => {
                    self.apply_sales_accounts(rec, v, &mut errors)
                }
                "company" | "deal" if rec.entity == Entity::Lead => {
                    let model = if k == "company" {
                        "LeadCompany"
                    } else {
                        "LeadDeal"
                    };
                    apply_nested(rec, &defs, model, v, &mut errors);
                }
                "tags" => match v {
                    Value::Null => {
                        rec.fields.remove("tags");
                    }
                    Value::String(s) => {
                        let tags: Vec<Value> = s
                            .split([';', ','])
                            .map(str::trim)
                            .filter(|t| !t.is_empty())
                            .map(|t| json!(t))
                            .collect();
                        rec.fields.insert("tags".into(), Value::Array(tags));
                    }
                    Value::Array(a) if a.iter().all(Value::is_string) => {
                        rec.fields.insert("tags".into(), Value::Array(a.clone()));
                    }
                    _ => errors.push("Tags is invalid".to_owned()),
                },
                other => {
                    let Some(def) = defs.iter().find(|d| {
                        d.standard && d.name == other && d.base_model == rec.entity.base_model()
                    }) else {
                        continue; // read-only or unknown attributes are ignored, as Rails does
                    };
                    match normalize(def, v, sw) {
                        Ok(Value::Null) => {
                            rec.fields.remove(other);
                        }
                        Ok(n) => {
                            rec.fields.insert(other.to_owned(), n);
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
        for d in defs.iter().filter(|d| d.required) {
            let present = if d.name == "emails" {
                !rec.emails.is_empty()
            } else if d.standard {
                rec.fields
                    .get(&d.name)
                    .and_then(value_str)
                    .is_some_and(|s| !s.is_empty())
            } else {
                rec.custom
                    .get(&d.name)
                    .and_then(value_str)
                    .is_some_and(|s| !s.is_empty())
            };
            if !present {
                errors.push(format!("{} can't be blank", d.label));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(errors))
        }
    }

    fn apply_emails(&mut self, rec: &mut Record, v: &Value, errors: &mut Vec<String>) {
        match v {
            Value::Null => {
                rec.emails.retain(|e| !e.is_primary);
                promote_primary(&mut rec.emails);
            }
            Value::String(s) if s.trim().is_empty() => {
                rec.emails.retain(|e| !e.is_primary);
                promote_primary(&mut rec.emails);
            }
            Value::String(s) => {
                let s = s.trim();
                if !is_valid_email(s) {
                    errors.push("Email is invalid".to_owned());
                    return;
                }
                if let Some(i) = rec
                    .emails
                    .iter()
                    .position(|e| e.value.eq_ignore_ascii_case(s))
                {
                    rec.emails[i].value = s.to_owned();
                    for (j, e) in rec.emails.iter_mut().enumerate() {
                        e.is_primary = j == i;
                    }
                } else if let Some(p) = rec.emails.iter_mut().find(|e| e.is_primary) {
                    p.value = s.to_owned();
                } else {
                    let id = self.alloc_id();
                    for e in &mut rec.emails {
                        e.is_primary = false;
                    }
                    rec.emails.insert(
                        0,
                        EmailEntry {
                            id,
                            value: s.to_owned(),
                            is_primary: true,
                            label: None,
                        },
                    );
                }
            }
            Value::Array(items) => {
                let mut new_primary: Option<u64> = None;
                for item in items {
                    let (id, value, primary, label, destroy) = match item {
                        Value::String(s) => (None, Some(s.trim().to_owned()), None, None, false),
                        Value::Object(o) => (
                            o.get("id").and_then(as_u64),
                            o.get("value")
                                .or(o.get("email"))
                                .and_then(Value::as_str)
                                .map(|s| s.trim().to_owned()),
                            o.get("is_primary").and_then(as_bool),
                            o.get("label").and_then(Value::as_str).map(str::to_owned),
                            o.get("_destroy").and_then(as_bool).unwrap_or(false),
                        ),
                        _ => {
                            errors.push("Emails is invalid".to_owned());
                            continue;
                        }
                    };
                    if let Some(v) = &value
                        && !destroy
                        && !is_valid_email(v)
                    {
                        errors.push("Email is invalid".to_owned());
                        continue;
                    }
                    let existing = id
                        .and_then(|id| rec.emails.iter().position(|e| e.id == id))
                        .or_else(|| {
                            value.as_ref().and_then(|v| {
                                rec.emails
                                    .iter()
                                    .position(|e| e.value.eq_ignore_ascii_case(v))
                            })
                        });
                    if destroy {
                        if let Some(i) = existing {
                            rec.emails.remove(i);
                        }
                        continue;
                    }
                    let entry_id = match existing {
                        Some(i) => {
                            let e = &mut rec.emails[i];
                            if let Some(v) = value {
                                e.value = v;
                            }
                            if label.is_some() {
                                e.label = label;
                            }
                            e.id
                        }
                        None => {
                            let Some(v) = value else {
                                if id.is_some() {
                                    errors.push("Emails is invalid".to_owned());
                                }
                                continue;
                            };
                            let nid = self.alloc_id();
                            rec.emails.push(EmailEntry {
                                id: nid,
                                value: v,
                                is_primary: false,
                                label,
                            });
                            nid
                        }
                    };
                    if primary == Some(true) {
                        new_primary = Some(entry_id);
                    }
                }
                if let Some(p) = new_primary {
                    for e in &mut rec.emails {
                        e.is_primary = e.id == p;
                    }
                }
                promote_primary(&mut rec.emails);
            }
            _ => errors.push("Emails is invalid".to_owned()),
        }
    }

    fn apply_sales_accounts(&mut self, rec: &mut Record, v: &Value, errors: &mut Vec<String>) {
        let items: Vec<&Value> = match v {
            Value::Null => {
                rec.sales_accounts.clear();
                return;
            }
            Value::Array(a) => a.iter().collect(),
            o @ Value::Object(_) => vec![o],
            _ => {
                errors.push("Accounts is invalid".to_owned());
                return;
            }
        };
        let mut out = Vec::new();
        for item in items {
            let primary = item.get("is_primary").and_then(as_bool).unwrap_or(false);
            let id = if let Some(id) = item.get("id").and_then(as_u64) {
                if self.refs.sales_account(id).is_none() {
                    errors.push("Accounts is invalid".to_owned());
                    continue;
                }
                id
            } else if let Some(name) = item.get("name").and_then(Value::as_str) {
                let website = item.get("website").and_then(Value::as_str);
                let mut next = self.next_id;
                let mut alloc = || {
                    next += 5;
                    next
                };
                let id = self.refs.sales_account_by_name(name, website, &mut alloc);
                self.next_id = self.next_id.max(next);
                id
            } else {
                errors.push("Accounts is invalid".to_owned());
                continue;
            };
            out.push((id, primary));
        }
        if !out.is_empty() && !out.iter().any(|(_, p)| *p) {
            out[0].1 = true;
        }
        // Primary first, as the API returns them.
        out.sort_by_key(|(_, p)| !*p);
        rec.sales_accounts = out;
    }

    fn duplicate_email(&self, rec: &Record) -> bool {
        rec.emails.iter().any(|e| {
            self.live(rec.entity).filter(|o| o.id != rec.id).any(|o| {
                o.emails
                    .iter()
                    .any(|x| x.value.eq_ignore_ascii_case(&e.value))
            })
        })
    }

    /// Create a record (`POST /contacts`). Returns its id.
    pub fn create(
        &mut self,
        entity: Entity,
        input: &Map<String, Value>,
        sw: &Switches,
        now: OffsetDateTime,
        user: u64,
    ) -> Result<u64, ApiError> {
        let id = self.alloc_id();
        let mut rec = Record::blank(id, entity, secs(now), user);
        self.apply(&mut rec, input, sw)?;
        if sw.duplicate_email == DuplicateEmail::Reject && self.duplicate_email(&rec) {
            return Err(ApiError::invalid(vec![
                "Email has already been taken".to_owned(),
            ]));
        }
        self.records.insert(id, rec);
        Ok(id)
    }

    /// Update a record (`PUT /contacts/{id}`): partial; `updated_at` moves if anything changed.
    pub fn update(
        &mut self,
        entity: Entity,
        id: u64,
        input: &Map<String, Value>,
        sw: &Switches,
        now: OffsetDateTime,
        user: u64,
    ) -> Result<(), ApiError> {
        let Some(orig) = self.get(entity, id).cloned() else {
            return Err(ApiError::not_found());
        };
        if orig.deleted && sw.update_soft_deleted == SoftDeletedUpdate::NotFound {
            return Err(ApiError::not_found());
        }
        let mut rec = orig.clone();
        self.apply(&mut rec, input, sw)?;
        self.commit(rec, &orig, now, user);
        Ok(())
    }

    /// Store `rec` (a modified copy of `orig`), bumping `updated_at` if its content changed.
    fn commit(&mut self, mut rec: Record, orig: &Record, now: OffsetDateTime, user: u64) -> bool {
        let changed = !rec.same_content(orig);
        if changed {
            rec.updated_at = secs(now).max(orig.updated_at);
            rec.updater_id = user;
        }
        self.records.insert(rec.id, rec);
        changed
    }

    /// Live records of `entity` whose `key` equals `value` (emails: any address; case per
    /// switch), oldest first.
    pub fn find_by(&self, entity: Entity, key: &str, value: &Value, sw: &Switches) -> Vec<u64> {
        let Some(want) = value_str(value) else {
            return Vec::new();
        };
        let eq = |a: &str| {
            if sw.email_case_insensitive && matches!(key, "emails" | "email") {
                a.eq_ignore_ascii_case(&want)
            } else {
                a == want
            }
        };
        let mut hits: Vec<&Record> = self
            .live(entity)
            .filter(|r| match key {
                "emails" | "email" => r.emails.iter().any(|e| eq(&e.value)),
                "id" => r.id.to_string() == want,
                k if k.starts_with("cf_") => {
                    r.custom.get(k).and_then(value_str).is_some_and(|v| eq(&v))
                }
                k => r.field_str(k).is_some_and(|v| eq(&v)),
            })
            .collect();
        hits.sort_by_key(|r| (r.created_at, r.id));
        hits.into_iter().map(|r| r.id).collect()
    }

    /// Upsert by `identifier` (`POST /contacts/upsert`). Returns (id, inserted).
    pub fn upsert(
        &mut self,
        entity: Entity,
        identifier: &Map<String, Value>,
        input: &Map<String, Value>,
        sw: &Switches,
        now: OffsetDateTime,
        user: u64,
    ) -> Result<(u64, bool), ApiError> {
        let Some((key, value)) = identifier
            .iter()
            .find(|(_, v)| value_str(v).is_some_and(|s| !s.trim().is_empty()))
        else {
            return Err(ApiError::bad_request("Unique identifier can't be blank"));
        };
        let supported = matches!(
            key.as_str(),
            "emails" | "email" | "mobile_number" | "external_id"
        ) || key.starts_with("cf_");
        if !supported {
            return Err(ApiError::bad_request(format!(
                "Unique identifier {key} is not a unique field"
            )));
        }
        if key.starts_with("cf_") && !self.defs(entity, sw).iter().any(|d| d.name == *key) {
            return Err(ApiError::bad_request(format!("{key} is invalid")));
        }
        // The identifier value is written too (an insert must carry it).
        let mut merged = input.clone();
        let field = if key == "email" {
            "emails"
        } else {
            key.as_str()
        };
        if key.starts_with("cf_") {
            let mut cf = merged
                .get("custom_field")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            cf.entry(key.clone()).or_insert_with(|| value.clone());
            merged.insert("custom_field".into(), Value::Object(cf));
        } else if !(field == "emails"
            && (merged.contains_key("emails") || merged.contains_key("email")))
        {
            merged
                .entry(field.to_owned())
                .or_insert_with(|| value.clone());
        }
        match self.find_by(entity, key, value, sw).first().copied() {
            Some(id) => {
                // Keep the matched address; add others given in the body.
                if field == "emails"
                    && let Some(Value::String(s)) = merged.get("emails")
                    && self
                        .get(entity, id)
                        .is_some_and(|r| r.emails.iter().any(|e| e.value.eq_ignore_ascii_case(s)))
                {
                    merged.remove("emails");
                }
                self.update(entity, id, &merged, sw, now, user)?;
                Ok((id, false))
            }
            None => Ok((self.create(entity, &merged, sw, now, user)?, true)),
        }
    }

    /// Soft delete (recycle bin): `is_deleted` true, out of views and lists' listings.
    pub fn soft_delete(
        &mut self,
        entity: Entity,
        id: u64,
        now: OffsetDateTime,
        user: u64,
    ) -> Result<(), ApiError> {
        let Some(orig) = self.get(entity, id).cloned() else {
            return Err(ApiError::not_found());
        };
        if orig.deleted {
            return Err(ApiError::not_found());
        }
        let mut rec = orig.clone();
        rec.deleted = true;
        self.commit(rec, &orig, now, user);
        Ok(())
    }

    /// Restore from the recycle bin (control API).
    pub fn restore(
        &mut self,
        entity: Entity,
        id: u64,
        now: OffsetDateTime,
        user: u64,
    ) -> Result<(), ApiError> {
        let Some(orig) = self.get(entity, id).cloned() else {
            return Err(ApiError::not_found());
        };
        let mut rec = orig.clone();
        rec.deleted = false;
        self.commit(rec, &orig, now, user);
        Ok(())
    }

    /// Permanent erase (`/forget`).
    pub fn forget(&mut self, entity: Entity, id: u64) -> Result<(), ApiError> {
        if self.get(entity, id).is_none() {
            return Err(ApiError::not_found());
        }
        self.records.remove(&id);
        self.list_unsubscribes.retain(|(_, c)| *c != id);
        Ok(())
    }

    /// Set `updated_at` of records directly (control API; ties and out-of-order data).
    pub fn set_updated_at(&mut self, ids: &[u64], at: OffsetDateTime) -> Result<(), ApiError> {
        if ids.iter().any(|id| !self.records.contains_key(id)) {
            return Err(ApiError::not_found());
        }
        for id in ids {
            if let Some(r) = self.records.get_mut(id) {
                r.updated_at = secs(at);
            }
        }
        Ok(())
    }

    // ----- lists -----

    /// Create a list.
    pub fn create_list(&mut self, name: &str, now: OffsetDateTime) -> Result<u64, ApiError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(ApiError::invalid(vec!["Name can't be blank".to_owned()]));
        }
        if self
            .lists
            .values()
            .any(|l| l.name.eq_ignore_ascii_case(name))
        {
            return Err(ApiError::invalid(vec![
                "Name has already been taken".to_owned(),
            ]));
        }
        let id = self.alloc_id();
        let now = secs(now);
        self.lists.insert(
            id,
            List {
                id,
                name: name.to_owned(),
                created_at: now,
                updated_at: now,
            },
        );
        Ok(id)
    }

    /// Rename a list.
    pub fn rename_list(
        &mut self,
        id: u64,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<(), ApiError> {
        let name = name.trim();
        if !self.lists.contains_key(&id) {
            return Err(ApiError::not_found());
        }
        if name.is_empty() {
            return Err(ApiError::invalid(vec!["Name can't be blank".to_owned()]));
        }
        if self
            .lists
            .values()
            .any(|l| l.id != id && l.name.eq_ignore_ascii_case(name))
        {
            return Err(ApiError::invalid(vec![
                "Name has already been taken".to_owned(),
            ]));
        }
        if let Some(l) = self.lists.get_mut(&id)
            && l.name != name
        {
            l.name = name.to_owned();
            l.updated_at = secs(now);
        }
        Ok(())
    }

    /// Live contact ids in list `id`.
    pub fn list_members(&self, id: u64) -> Vec<u64> {
        self.live(Entity::Contact)
            .filter(|r| r.list_ids.contains(&id))
            .map(|r| r.id)
            .collect()
    }

    /// Add (`add`) or remove contacts from a list. Unknown or deleted ids are skipped.
    /// Returns how many records changed.
    pub fn change_membership(
        &mut self,
        list: u64,
        ids: &[u64],
        add: bool,
        bump: bool,
        now: OffsetDateTime,
        user: u64,
    ) -> Result<usize, ApiError> {
        if !self.lists.contains_key(&list) {
            return Err(ApiError::not_found());
        }
        let mut changed = 0;
        for id in ids {
            let Some(orig) = self
                .get(Entity::Contact, *id)
                .filter(|r| !r.deleted)
                .cloned()
            else {
                continue;
            };
            let mut rec = orig.clone();
            let did = if add {
                rec.list_ids.insert(list)
            } else {
                rec.list_ids.remove(&list)
            };
            if !did {
                continue;
            }
            changed += 1;
            if bump {
                self.commit(rec, &orig, now, user);
            } else {
                self.records.insert(rec.id, rec);
            }
        }
        if add {
            for id in ids {
                self.list_unsubscribes.remove(&(list, *id));
            }
        }
        Ok(changed)
    }

    // ----- queries -----

    /// Ids of live records selected by a view.
    pub fn view_ids(&self, view: &View, now: OffsetDateTime, user: u64) -> Vec<u64> {
        let cutoff = now - time::Duration::days(30);
        self.live(view.entity)
            .filter(|r| match view.kind {
                ViewKind::All => true,
                ViewKind::Mine => r.fields.get("owner_id").and_then(Value::as_u64) == Some(user),
                ViewKind::New => r.created_at >= cutoff,
            })
            .map(|r| r.id)
            .collect()
    }

    /// Sort `ids` and cut out the requested page; applies pending page quirks.
    /// Returns (page ids, total).
    pub fn page(
        &mut self,
        mut ids: Vec<u64>,
        req: &PageRequest,
        sw: &Switches,
    ) -> (Vec<u64>, usize) {
        let field = req
            .sort
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| sw.default_sort.clone());
        let desc = req.sort_type.unwrap_or(sw.default_sort_type) == SortType::Desc;
        self.tie_salt = self.tie_salt.wrapping_add(1);
        let salt = self.tie_salt;
        let shuffle = sw.shuffle_ties;
        // Keys computed once per record, not per comparison.
        let mut keyed: Vec<(SortKey, u64, u64)> = ids
            .iter()
            .map(|id| {
                let k = self
                    .records
                    .get(id)
                    .map(|r| sort_key(r, &field))
                    .unwrap_or(SortKey::Null);
                let tie = if shuffle { mix(*id ^ mix(salt)) } else { *id };
                (k, tie, *id)
            })
            .collect();
        keyed.sort_by(|(ka, ta, _), (kb, tb, _)| {
            let ord = match (ka, kb) {
                // Nulls last whatever the direction.
                (SortKey::Null, SortKey::Null) => std::cmp::Ordering::Equal,
                (SortKey::Null, _) => return std::cmp::Ordering::Greater,
                (_, SortKey::Null) => return std::cmp::Ordering::Less,
                _ => {
                    let o = ka.partial_cmp(kb).unwrap_or(std::cmp::Ordering::Equal);
                    if desc { o.reverse() } else { o }
                }
            };
            ord.then(ta.cmp(tb))
        });
        ids = keyed.into_iter().map(|(_, _, id)| id).collect();
        let total = ids.len();
        let start = (req.page.max(1) - 1).saturating_mul(req.per_page);
        let mut out: Vec<u64> = ids.into_iter().skip(start).take(req.per_page).collect();
        // Short pages happen mid-stream (more pages follow); the record is left out, not
        // moved to the next page.
        let more_follow = start.saturating_add(req.per_page) < total;
        if !out.is_empty() && more_follow && self.quirks.short_pages > 0 {
            self.quirks.short_pages -= 1;
            out.pop();
        }
        if out.len() >= 2 && self.quirks.unordered_pages > 0 {
            self.quirks.unordered_pages -= 1;
            out.swap(0, 1);
        }
        (out, total)
    }

    /// Ids matching a filtered search (live records, or only deleted ones when a `deleted`
    /// rule asks for them).
    pub fn filtered(
        &self,
        entity: Entity,
        rules: &[FilterRule],
        sw: &Switches,
        offset: time::UtcOffset,
    ) -> Result<Vec<u64>, ApiError> {
        let mut want_deleted = false;
        let mut checks: Vec<&FilterRule> = Vec::new();
        for r in rules {
            if r.attribute == "deleted" || r.attribute == "is_deleted" {
                want_deleted = match &r.value {
                    Value::Bool(b) => *b,
                    v => value_str(v).is_some_and(|s| s == "1" || s == "true"),
                };
                if r.operator == "is_not" {
                    want_deleted = !want_deleted;
                }
            } else {
                checks.push(r);
            }
        }
        let defs = self.defs(entity, sw);
        // Validate attributes and operators up front so that an empty store still answers 400.
        for r in &checks {
            resolve_attr(entity, &r.attribute, &defs)?;
            if !OPERATORS.contains(&r.operator.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "Invalid operator {}",
                    r.operator
                )));
            }
            if matches!(r.operator.as_str(), "is_after" | "is_before")
                && matches!(resolve_attr(entity, &r.attribute, &defs)?, Attr::Time(_))
                && parse_time(&r.value, offset).is_none()
            {
                return Err(ApiError::bad_request(format!(
                    "Invalid value for {}",
                    r.attribute
                )));
            }
        }
        // Attributes resolved and wanted values normalised once per search, not per
        // record: a search of 100 emails over 40,000 records was quadratic in allocations.
        let mut prepared = Vec::with_capacity(checks.len());
        for r in &checks {
            let attr = resolve_attr(entity, &r.attribute, &defs)?;
            let wanted = wanted_values(&attr, &r.value, sw);
            prepared.push((attr, r, wanted));
        }
        let mut out = Vec::new();
        for rec in self
            .records
            .values()
            .filter(|r| r.entity == entity && r.deleted == want_deleted)
        {
            let ok = prepared.iter().all(|(attr, r, wanted)| {
                rule_matches(rec, attr, &r.operator, &r.value, wanted, sw, offset)
            });
            if ok {
                out.push(rec.id);
            }
        }
        Ok(out)
    }

    // ----- bulk jobs -----

    /// Queue a bulk upsert job; it completes `bulk_job_delay_secs` later on the clock.
    pub fn submit_job(
        &mut self,
        entity: Entity,
        items: Vec<BulkItem>,
        sw: &Switches,
        now: OffsetDateTime,
        user: u64,
    ) -> u64 {
        let id = self.alloc_id();
        let now = secs(now);
        self.jobs.insert(
            id,
            Job {
                id,
                entity,
                created_at: now,
                ready_at: now + time::Duration::seconds(sw.bulk_job_delay_secs as i64),
                items,
                completed: false,
                status_updated_at: now,
                succeeded: 0,
                failed: 0,
                failures: Vec::new(),
                user,
            },
        );
        id
    }

    /// Process every job whose time has come.
    pub fn run_due_jobs(&mut self, sw: &Switches, now: OffsetDateTime) {
        let due: Vec<u64> = self
            .jobs
            .values()
            .filter(|j| !j.completed && j.ready_at <= now)
            .map(|j| j.id)
            .collect();
        for id in due {
            let Some(mut job) = self.jobs.remove(&id) else {
                continue;
            };
            for item in std::mem::take(&mut job.items) {
                match self.upsert(job.entity, &item.identifier, &item.data, sw, now, job.user) {
                    Ok(_) => job.succeeded += 1,
                    Err(e) => {
                        job.failed += 1;
                        let mut f = Map::new();
                        f.insert(
                            "emails".into(),
                            item.identifier
                                .get("emails")
                                .or(item.identifier.get("email"))
                                .cloned()
                                .unwrap_or(Value::Null),
                        );
                        f.insert(
                            "mobile_number".into(),
                            item.identifier
                                .get("mobile_number")
                                .cloned()
                                .unwrap_or(Value::Null),
                        );
                        f.insert("error_message".into(), json!(e.messages));
                        job.failures.push(Value::Object(f));
                    }
                }
            }
            job.completed = true;
            job.status_updated_at = secs(now);
            self.jobs.insert(id, job);
        }
    }
}

fn promote_primary(emails: &mut [EmailEntry]) {
    if !emails.is_empty() && !emails.iter().any(|e| e.is_primary) {
        emails[0].is_primary = true;
    }
    let mut seen = false;
    for e in emails.iter_mut() {
        if e.is_primary {
            if seen {
                e.is_primary = false;
            }
            seen = true;
        }
    }
}

/// u64 from a number or numeric string.
pub fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_u64().map(|n| n != 0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn as_number(v: &Value) -> Option<Value> {
    match v {
        Value::Number(_) => Some(v.clone()),
        Value::String(s) => {
            let t = s.trim();
            if let Ok(i) = t.parse::<i64>() {
                Some(json!(i))
            } else {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| json!(f))
            }
        }
        _ => None,
    }
}

/// Normalise one value for field `def`; `Err` is the validation message.
fn normalize(def: &FieldDef, v: &Value, _sw: &Switches) -> Result<Value, String> {
    if v.is_null() || v.as_str().is_some_and(|s| s.is_empty()) && def.ftype != FieldType::Text {
        return Ok(Value::Null);
    }
    let invalid = || format!("{} is invalid", def.label);
    match def.ftype {
        FieldType::Text | FieldType::Textarea | FieldType::AutoComplete => match v {
            Value::String(s) => Ok(if s.is_empty() { Value::Null } else { json!(s) }),
            Value::Number(n) => Ok(json!(n.to_string())),
            Value::Bool(b) => Ok(json!(b.to_string())),
            _ => Err(invalid()),
        },
        FieldType::Number => as_number(v).ok_or_else(|| format!("{} is not a number", def.label)),
        FieldType::Checkbox => as_bool(v).map(Value::Bool).ok_or_else(invalid),
        FieldType::Dropdown if def.id_valued => {
            let id = as_u64(v).ok_or_else(invalid)?;
            if def.choices.iter().any(|c| c.id == id) {
                Ok(json!(id))
            } else {
                Err(invalid())
            }
        }
        FieldType::Dropdown => {
            let s = value_str(v).ok_or_else(invalid)?;
            def.choices
                .iter()
                .find(|c| c.value.eq_ignore_ascii_case(s.trim()))
                .map(|c| json!(c.value))
                .ok_or_else(invalid)
        }
        FieldType::MultiSelect => {
            let parts: Vec<String> = match v {
                Value::String(s) => s
                    .split(';')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect(),
                Value::Array(a) => a.iter().filter_map(value_str).collect(),
                _ => return Err(invalid()),
            };
            let mut out = Vec::new();
            for p in parts {
                let c = def
                    .choices
                    .iter()
                    .find(|c| c.value.eq_ignore_ascii_case(&p))
                    .ok_or_else(invalid)?;
                if !out.contains(&c.value) {
                    out.push(c.value.clone());
                }
            }
            Ok(if out.is_empty() {
                Value::Null
            } else {
                json!(out.join(";"))
            })
        }
        FieldType::Date => {
            let s = v.as_str().ok_or_else(invalid)?.trim();
            let date_part = s.get(..10).ok_or_else(invalid)?;
            let fmt = time::macros::format_description!("[year]-[month]-[day]");
            time::Date::parse(date_part, &fmt).map_err(|_| invalid())?;
            if s.len() > 10 && !s[10..].starts_with('T') && !s[10..].starts_with(' ') {
                return Err(invalid());
            }
            Ok(json!(date_part))
        }
        FieldType::Group => Err(invalid()),
    }
}

fn apply_custom(
    rec: &mut Record,
    defs: &[FieldDef],
    key: &str,
    v: &Value,
    sw: &Switches,
    errors: &mut Vec<String>,
) {
    let Some(def) = defs.iter().find(|d| !d.standard && d.name == key) else {
        if sw.strict_custom_fields {
            errors.push(format!("{key} is invalid"));
        }
        return;
    };
    match normalize(def, v, sw) {
        Ok(Value::Null) => {
            rec.custom.remove(key);
        }
        Ok(n) => {
            rec.custom.insert(key.to_owned(), n);
        }
        Err(e) => errors.push(e),
    }
}

fn apply_nested(
    rec: &mut Record,
    defs: &[FieldDef],
    model: &str,
    v: &Value,
    errors: &mut Vec<String>,
) {
    let target = if model == "LeadCompany" {
        &mut rec.company
    } else {
        &mut rec.deal
    };
    match v {
        Value::Null => target.clear(),
        Value::Object(o) => {
            for (k, val) in o {
                let def = defs.iter().find(|d| d.base_model == model && d.name == *k);
                let n = match def {
                    Some(d) => normalize(d, val, &Switches::default()),
                    // Other company/deal attributes (address, industry_type_id…) kept as given.
                    None => Ok(val.clone()),
                };
                match n {
                    Ok(Value::Null) => {
                        target.remove(k);
                    }
                    Ok(n) => {
                        target.insert(k.clone(), n);
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        _ => errors.push(format!(
            "{} is invalid",
            if model == "LeadCompany" {
                "Company"
            } else {
                "Deal"
            }
        )),
    }
}

/// Sort key of a record for a field.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum SortKey {
    Null,
    Num(f64),
    Time(i64),
    Str(String),
}

fn sort_key(r: &Record, field: &str) -> SortKey {
    let v = match field {
        "updated_at" => return SortKey::Time(r.updated_at.unix_timestamp()),
        "created_at" => return SortKey::Time(r.created_at.unix_timestamp()),
        "id" => return SortKey::Num(r.id as f64),
        "email" => r.primary_email().map(|e| json!(e)),
        "display_name" | "name" => Some(json!(r.display_name())),
        f if f.starts_with("cf_") => r.custom.get(f).cloned(),
        f => r.fields.get(f).cloned(),
    };
    match v {
        None | Some(Value::Null) => SortKey::Null,
        Some(Value::Number(n)) => SortKey::Num(n.as_f64().unwrap_or(0.0)),
        Some(Value::Bool(b)) => SortKey::Num(if b { 1.0 } else { 0.0 }),
        Some(other) => SortKey::Str(value_str(&other).unwrap_or_default().to_lowercase()),
    }
}

const OPERATORS: &[&str] = &[
    "is",
    "is_not",
    "is_in",
    "is_not_in",
    "contains",
    "starts_with",
    "is_after",
    "is_before",
    "is_empty",
    "is_not_empty",
];

enum Attr {
    Emails,
    Time(&'static str),
    Id,
    Field(String),
    Custom(String),
}

fn resolve_attr(entity: Entity, a: &str, defs: &[FieldDef]) -> Result<Attr, ApiError> {
    Ok(match a {
        // Only the documented attribute (`contact_email.email`, `lead_email.email`):
        // `email` is a `lookup` field name, not a filter attribute the API documents.
        x if x == entity.email_attribute() => Attr::Emails,
        "updated_at" => Attr::Time("updated_at"),
        "created_at" => Attr::Time("created_at"),
        "id" => Attr::Id,
        x if x.starts_with("cf_") && defs.iter().any(|d| !d.standard && d.name == x) => {
            Attr::Custom(x.to_owned())
        }
        x if defs.iter().any(|d| d.standard && d.name == x) => Attr::Field(x.to_owned()),
        _ => {
            return Err(ApiError::bad_request(format!(
                "Invalid filter attribute {a}"
            )));
        }
    })
}

/// Parse a filter time value: RFC 3339, `YYYY-MM-DDTHH:MM:SS` or `YYYY-MM-DD` (account time
/// zone), or Unix seconds.
fn parse_time(v: &Value, offset: time::UtcOffset) -> Option<OffsetDateTime> {
    match v {
        Value::Number(n) => OffsetDateTime::from_unix_timestamp(n.as_i64()?).ok(),
        Value::String(s) => {
            let s = s.trim();
            if let Some(t) = crate::common::clock::parse_rfc3339(s) {
                return Some(t);
            }
            let dt =
                time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
            if let Ok(p) = time::PrimitiveDateTime::parse(s, &dt) {
                return Some(p.assume_offset(offset));
            }
            let d = time::macros::format_description!("[year]-[month]-[day]");
            time::Date::parse(s, &d)
                .ok()
                .map(|d| d.midnight().assume_offset(offset))
        }
        _ => None,
    }
}

/// The values a rule compares with, normalised as [`rule_matches`] compares them (lower
/// case for emails when the account matches them case-insensitively).
fn wanted_values(attr: &Attr, value: &Value, sw: &Switches) -> Vec<String> {
    let ci = sw.email_case_insensitive && matches!(attr, Attr::Emails);
    let norm = |s: &str| if ci { s.to_lowercase() } else { s.to_owned() };
    let mut wanted: Vec<String> = match value {
        Value::Array(a) => a.iter().filter_map(value_str).map(|s| norm(&s)).collect(),
        v => value_str(v).map(|s| norm(&s)).into_iter().collect(),
    };
    // Sorted, so that `is_in` over 100 values is a binary search per record.
    wanted.sort_unstable();
    wanted.dedup();
    wanted
}

/// Whether `rec` passes one filter rule; `wanted` is [`wanted_values`] of the rule (sorted).
fn rule_matches(
    rec: &Record,
    attr: &Attr,
    op: &str,
    value: &Value,
    wanted: &[String],
    sw: &Switches,
    offset: time::UtcOffset,
) -> bool {
    if let Attr::Time(which) = attr {
        let t = if *which == "updated_at" {
            rec.updated_at
        } else {
            rec.created_at
        };
        let t = secs(t);
        let Some(v) = parse_time(value, offset).map(secs) else {
            return false;
        };
        return match op {
            "is_after" => t > v,
            "is_before" => t < v,
            "is" => t == v,
            "is_not" => t != v,
            _ => false,
        };
    }
    let ci = sw.email_case_insensitive && matches!(attr, Attr::Emails);
    let values: Vec<String> = match attr {
        Attr::Emails => rec.emails.iter().map(|e| e.value.clone()).collect(),
        Attr::Id => vec![rec.id.to_string()],
        Attr::Field(f) => rec.field_str(f).into_iter().collect(),
        Attr::Custom(f) => rec.custom.get(f).and_then(value_str).into_iter().collect(),
        Attr::Time(_) => Vec::new(),
    };
    let norm = |s: &str| if ci { s.to_lowercase() } else { s.to_owned() };
    let have: Vec<String> = values.iter().map(|s| norm(s)).collect();
    match op {
        "is" | "is_in" => have.iter().any(|h| wanted.binary_search(h).is_ok()),
        "is_not" | "is_not_in" => !have.iter().any(|h| wanted.binary_search(h).is_ok()),
        "contains" => have.iter().any(|h| {
            wanted
                .iter()
                .any(|w| h.to_lowercase().contains(&w.to_lowercase()))
        }),
        "starts_with" => have.iter().any(|h| {
            wanted
                .iter()
                .any(|w| h.to_lowercase().starts_with(&w.to_lowercase()))
        }),
        "is_empty" => have.iter().all(|h| h.is_empty()),
        "is_not_empty" => have.iter().any(|h| !h.is_empty()),
        "is_after" | "is_before" => {
            let num = |s: &str| s.parse::<f64>().ok();
            have.iter().any(|h| {
                wanted.iter().any(|w| match (num(h), num(w)) {
                    (Some(a), Some(b)) => {
                        if op == "is_after" {
                            a > b
                        } else {
                            a < b
                        }
                    }
                    _ => false,
                })
            })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn store() -> (Store, Switches) {
        let sw = Switches::default();
        (Store::empty(AccountKind::FreshsalesSuite), sw)
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn seeded_store_has_records_lists_and_large_ids() {
        let sw = Switches::default();
        let now = datetime!(2024-06-01 12:00 UTC);
        let s = Store::seeded(AccountKind::FreshsalesClassic, 3, 30, now, &sw);
        assert_eq!(s.live(Entity::Lead).count(), 30);
        assert_eq!(s.live(Entity::Contact).count(), 10);
        assert!(s.records.keys().all(|id| *id > u32::MAX as u64));
        assert_eq!(s.lists.len(), LIST_NAMES.len());
        assert!(
            s.records
                .values()
                .all(|r| r.updated_at <= now && r.updated_at <= r.created_at.max(now))
        );
    }

    #[test]
    fn emails_forms_and_primary() {
        let (mut s, sw) = store();
        let now = datetime!(2024-01-01 0:00 UTC);
        let id = s
            .create(
                Entity::Contact,
                &obj(json!({"emails": "a@x.example"})),
                &sw,
                now,
                1,
            )
            .unwrap();
        s.update(
            Entity::Contact,
            id,
            &obj(json!({"emails": [{"value": "b@x.example", "is_primary": true}]})),
            &sw,
            now,
            1,
        )
        .unwrap();
        let r = s.get(Entity::Contact, id).unwrap();
        assert_eq!(r.primary_email(), Some("b@x.example"));
        assert_eq!(r.emails.len(), 2);
        let a_id = r
            .emails
            .iter()
            .find(|e| e.value == "a@x.example")
            .unwrap()
            .id;
        s.update(
            Entity::Contact,
            id,
            &obj(json!({"emails": [{"id": a_id, "_destroy": true}]})),
            &sw,
            now,
            1,
        )
        .unwrap();
        assert_eq!(s.get(Entity::Contact, id).unwrap().emails.len(), 1);
        let err = s
            .create(Entity::Contact, &obj(json!({"email": "nope"})), &sw, now, 1)
            .unwrap_err();
        assert_eq!(err.messages, vec!["Email is invalid"]);
    }

    #[test]
    fn updated_at_moves_only_on_change() {
        let (mut s, sw) = store();
        let t0 = datetime!(2024-01-01 0:00 UTC);
        let id = s
            .create(
                Entity::Contact,
                &obj(json!({"first_name": "A"})),
                &sw,
                t0,
                1,
            )
            .unwrap();
        let t1 = t0 + time::Duration::minutes(5);
        s.update(
            Entity::Contact,
            id,
            &obj(json!({"first_name": "A"})),
            &sw,
            t1,
            1,
        )
        .unwrap();
        assert_eq!(s.get(Entity::Contact, id).unwrap().updated_at, t0);
        s.update(
            Entity::Contact,
            id,
            &obj(json!({"first_name": "B"})),
            &sw,
            t1,
            1,
        )
        .unwrap();
        assert_eq!(s.get(Entity::Contact, id).unwrap().updated_at, t1);
    }

    #[test]
    fn upsert_matches_case_insensitively_and_oldest_first() {
        let (mut s, sw) = store();
        let t0 = datetime!(2024-01-01 0:00 UTC);
        let a = s
            .create(
                Entity::Contact,
                &obj(json!({"email": "Dup@X.example"})),
                &sw,
                t0,
                1,
            )
            .unwrap();
        let _b = s
            .create(
                Entity::Contact,
                &obj(json!({"email": "dup@x.example"})),
                &sw,
                t0 + time::Duration::seconds(1),
                1,
            )
            .unwrap();
        let (id, inserted) = s
            .upsert(
                Entity::Contact,
                &obj(json!({"emails": "DUP@x.example"})),
                &obj(json!({"last_name": "Z"})),
                &sw,
                t0,
                1,
            )
            .unwrap();
        assert_eq!((id, inserted), (a, false));
        assert_eq!(
            s.get(Entity::Contact, a).unwrap().primary_email(),
            Some("Dup@X.example"),
            "the matched address keeps its case"
        );
    }
}
