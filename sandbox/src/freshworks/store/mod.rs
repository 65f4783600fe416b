//! State of one simulated Freshworks account and every operation on it, as plain functions of
//! (state, input, switches, now). The HTTP layer ([`super::api`]) only parses and renders.
//!
//! Records keep the writable fields in a map (absent = null), emails as entries with ids, custom
//! fields normalised (multi-select as a `;`-joined string, dates as `YYYY-MM-DD`), list
//! memberships, and second-precision `created_at` / `updated_at`. `updated_at` moves on every
//! change that alters the record (a write that changes nothing leaves it alone), including list
//! membership changes when [`Switches::list_change_bumps_updated_at`] is on, soft deletes and
//! restores.

mod jobs;
mod lists;
mod queries;
mod records;
mod seeding;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::AccountKind;
use crate::freshworks::fields::{Entity, FieldDef, FieldType, Flavor, Refs, field_defs};
use crate::freshworks::switches::{SortType, Switches};

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

/// Ids sorted for a page request, kept while the records do not change.
#[derive(Debug, Clone)]
struct Sorted {
    /// [`Store::generation`] when sorted.
    generation: u64,
    /// Sort field.
    field: String,
    /// Descending?
    desc: bool,
    /// The ids asked for, as given.
    input: Vec<u64>,
    /// The same ids, sorted.
    output: Vec<u64>,
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
    /// Contacts and leads by id (deleted ones included until forgotten). Changed only
    /// through [`Store::put`] and [`Store::take`], which keep `by_email` in step.
    records: BTreeMap<u64, Record>,
    /// Ids of the records (any entity, deleted included) holding each address, by the
    /// address lower-cased: the candidates of an email match, which is then checked
    /// exactly as before (case per switch), so that upserts and searches by email do not
    /// scan every record.
    by_email: HashMap<String, BTreeSet<u64>>,
    /// Moves on every change of `records` (what a cached sort depends on).
    generation: u64,
    /// The last sort of a page request (see [`Store::page`]).
    sorted: Option<Sorted>,
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
            by_email: HashMap::new(),
            generation: 0,
            sorted: None,
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

    /// Every record by id (contacts and leads, deleted ones included until forgotten).
    pub fn records(&self) -> &BTreeMap<u64, Record> {
        &self.records
    }

    /// Stores `rec` (new, or replacing the record with its id), keeping the email index.
    pub(crate) fn put(&mut self, rec: Record) {
        self.generation += 1;
        let id = rec.id;
        if let Some(old) = self.records.get(&id) {
            let old: Vec<String> = old.emails.iter().map(|e| e.value.to_lowercase()).collect();
            self.unindex(id, old);
        }
        for e in &rec.emails {
            self.by_email
                .entry(e.value.to_lowercase())
                .or_default()
                .insert(id);
        }
        self.records.insert(id, rec);
    }

    /// Removes the record with `id` (a hard delete), keeping the email index.
    pub(crate) fn take(&mut self, id: u64) -> Option<Record> {
        let rec = self.records.remove(&id)?;
        self.generation += 1;
        self.unindex(
            id,
            rec.emails.iter().map(|e| e.value.to_lowercase()).collect(),
        );
        Some(rec)
    }

    fn unindex(&mut self, id: u64, addresses: Vec<String>) {
        for a in addresses {
            if let Some(ids) = self.by_email.get_mut(&a) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_email.remove(&a);
                }
            }
        }
    }

    /// Ids (ascending; any entity, deleted included) of the records with an address equal
    /// to `address` ignoring case: a superset of every email match under any switch.
    pub fn with_address(&self, address: &str) -> impl Iterator<Item = u64> + '_ {
        self.by_email
            .get(&address.to_lowercase())
            .into_iter()
            .flatten()
            .copied()
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
}

/// u64 from a number or numeric string.
pub fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::LIST_NAMES;
    use serde_json::json;
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

    /// Every record whose addresses match `address` as the scans did before the index
    /// (case per switch), oldest first: what the indexed lookups must answer.
    fn scan(s: &Store, entity: Entity, address: &str, sw: &Switches) -> Vec<u64> {
        let mut hits: Vec<&Record> = s
            .live(entity)
            .filter(|r| {
                r.emails.iter().any(|e| {
                    if sw.email_case_insensitive {
                        e.value.eq_ignore_ascii_case(address)
                    } else {
                        e.value == address
                    }
                })
            })
            .collect();
        hits.sort_by_key(|r| (r.created_at, r.id));
        hits.into_iter().map(|r| r.id).collect()
    }

    /// The email index follows every write that changes addresses (create, update that
    /// replaces or removes one, upsert, soft delete, restore, forget), so that lookups
    /// and searches by email answer what a scan of every record answers, under either
    /// case switch.
    #[test]
    fn email_lookups_answer_what_a_scan_answers() {
        for ci in [true, false] {
            let (mut s, mut sw) = store();
            sw.email_case_insensitive = ci;
            let t0 = datetime!(2024-01-01 0:00 UTC);
            let offset = time::UtcOffset::UTC;
            let mut ids = Vec::new();
            for (i, e) in ["a@x.example", "A@X.example", "b@x.example", "c@x.example"]
                .iter()
                .enumerate()
            {
                let at = t0 + time::Duration::seconds(i as i64);
                ids.push(
                    s.create(Entity::Contact, &obj(json!({"emails": e})), &sw, at, 1)
                        .unwrap(),
                );
            }
            // b's primary address becomes d; c gets a second one, then loses its first.
            s.update(
                Entity::Contact,
                ids[2],
                &obj(json!({"emails": "d@x.example"})),
                &sw,
                t0,
                1,
            )
            .unwrap();
            s.update(
                Entity::Contact,
                ids[3],
                &obj(json!({"emails": [{"value": "E@x.example"}]})),
                &sw,
                t0,
                1,
            )
            .unwrap();
            let c_first = s.get(Entity::Contact, ids[3]).unwrap().emails[0].id;
            s.update(
                Entity::Contact,
                ids[3],
                &obj(json!({"emails": [{"id": c_first, "_destroy": true}]})),
                &sw,
                t0,
                1,
            )
            .unwrap();
            s.upsert(
                Entity::Contact,
                &obj(json!({"emails": "F@x.example"})),
                &obj(json!({"first_name": "F"})),
                &sw,
                t0,
                1,
            )
            .unwrap();
            s.soft_delete(Entity::Contact, ids[0], t0, 1).unwrap();
            s.soft_delete(Entity::Contact, ids[1], t0, 1).unwrap();
            s.restore(Entity::Contact, ids[1], t0, 1).unwrap();
            s.forget(Entity::Contact, ids[3]).unwrap();
            let addresses = [
                "a@x.example",
                "A@X.EXAMPLE",
                "b@x.example",
                "c@x.example",
                "d@x.example",
                "e@x.example",
                "E@x.example",
                "f@x.example",
                "F@x.example",
                "nobody@x.example",
            ];
            for a in addresses {
                let want = scan(&s, Entity::Contact, a, &sw);
                assert_eq!(
                    s.find_by(Entity::Contact, "emails", &json!(a), &sw),
                    want,
                    "{a} (case-insensitive: {ci})"
                );
                let rule = FilterRule {
                    attribute: "contact_email.email".into(),
                    operator: "is_in".into(),
                    value: json!([a]),
                };
                let mut found = s.filtered(Entity::Contact, &[rule], &sw, offset).unwrap();
                found.sort_unstable();
                let mut want = want;
                want.sort_unstable();
                assert_eq!(found, want, "search {a} (case-insensitive: {ci})");
            }
            // A deleted record is found by the `deleted` search, through the index too.
            let rules = [
                FilterRule {
                    attribute: "contact_email.email".into(),
                    operator: "is".into(),
                    value: json!("a@x.example"),
                },
                FilterRule {
                    attribute: "deleted".into(),
                    operator: "is".into(),
                    value: json!(1),
                },
            ];
            assert_eq!(
                s.filtered(Entity::Contact, &rules, &sw, offset).unwrap(),
                vec![ids[0]]
            );
            let by_id = FilterRule {
                attribute: "id".into(),
                operator: "is_in".into(),
                value: json!([ids[1], ids[2].to_string(), ids[3], "+1", 12]),
            };
            assert_eq!(
                s.filtered(Entity::Contact, &[by_id], &sw, offset).unwrap(),
                vec![ids[1], ids[2]]
            );
        }
    }

    /// Pages of one listing are sorted once, but a change to any record (a write, a
    /// forced timestamp, an erase) shows on the next page asked for.
    #[test]
    fn pages_follow_every_change() {
        let (mut s, sw) = store();
        let t0 = datetime!(2024-01-01 0:00 UTC);
        let ids: Vec<u64> = (0..5)
            .map(|i| {
                let at = t0 + time::Duration::seconds(i);
                s.create(
                    Entity::Contact,
                    &obj(json!({"first_name": "A"})),
                    &sw,
                    at,
                    1,
                )
                .unwrap()
            })
            .collect();
        let req = |page| PageRequest {
            page,
            per_page: 2,
            sort: Some("updated_at".into()),
            sort_type: Some(SortType::Desc),
        };
        let all = |s: &Store| s.live(Entity::Contact).map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(s.page(all(&s), &req(1), &sw), (vec![ids[4], ids[3]], 5));
        assert_eq!(s.page(all(&s), &req(3), &sw), (vec![ids[0]], 5));
        let t1 = t0 + time::Duration::minutes(1);
        s.update(
            Entity::Contact,
            ids[0],
            &obj(json!({"first_name": "B"})),
            &sw,
            t1,
            1,
        )
        .unwrap();
        assert_eq!(s.page(all(&s), &req(1), &sw), (vec![ids[0], ids[4]], 5));
        s.set_updated_at(&[ids[2]], t1 + time::Duration::minutes(1))
            .unwrap();
        assert_eq!(s.page(all(&s), &req(1), &sw), (vec![ids[2], ids[0]], 5));
        s.forget(Entity::Contact, ids[2]).unwrap();
        assert_eq!(s.page(all(&s), &req(1), &sw), (vec![ids[0], ids[4]], 4));
        // Other ids (a filtered search) are sorted on their own.
        assert_eq!(
            s.page(vec![ids[1], ids[3]], &req(1), &sw),
            (vec![ids[3], ids[1]], 2)
        );
        let asc = PageRequest {
            sort_type: Some(SortType::Asc),
            ..req(1)
        };
        assert_eq!(s.page(all(&s), &asc, &sw), (vec![ids[1], ids[3]], 4));
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
