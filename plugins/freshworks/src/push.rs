//! `push`: creates, updates, deletes and list membership, batched where the API allows.
//!
//! | Write                          | Requests                                                        |
//! |--------------------------------|-----------------------------------------------------------------|
//! | creates with email             | first, per 100: `POST filtered_search/<entity>` (`email is_in [...]`): who holds each address now |
//! | ≥ 4 contact creates with email held by nobody | per 100: `POST contacts/bulk_upsert`, `GET job_statuses/<id>` about every second until the job is done (1 poll when it finishes within a second), `POST filtered_search/contact` (read-back by email); up to `bulk-jobs-in-flight` jobs (default 4) are submitted before the first poll and share each wait, which adds no request |
//! | other create with email held by nobody | `POST <entity>/upsert` keyed by email (a retried create updates, never duplicates) |
//! | create whose email a record carrying its marker holds | `PUT <entity>/<id>` (an earlier attempt of the same create) |
//! | create whose email another record holds, or without email | `POST <entity>` (never merges) |
//! | create into lists              | + `PUT lists/<id>/add_contacts` per list (once per list for a bulk batch) |
//! | ≥ 2 updates with `if-version`  | per 100: `POST filtered_search/<entity>` (`id is_in [...]`) for the versions, then `PUT <entity>/<id>` each |
//! | other update                   | `PUT <entity>/<id>` (+ `GET <entity>/<id>` first when `if-version` is set) |
//! | ≥ 2 deletes                    | per 100: `POST <entity>/bulk_destroy`                            |
//! | one delete                     | `DELETE <entity>/<id>` (404 counts as done)                      |
//! | add / remove list members      | per list and direction, the ids of all such writes of the call together: `PUT lists/<id>/add_contacts` / `remove_contacts` per `list-batch-size` ids (default 100) |
//!
//! Every create and update returns the stored record (the API's answer, or the bulk
//! read-back). DND and consent are ordinary field updates (`do_not_disturb`,
//! `subscription_status`).
//!
//! # A create never merges
//!
//! An upsert always resolves to an existing record that holds its address (the oldest,
//! by any of its addresses): sent for a person whose address another record already
//! holds (two people sharing an address that the operator kept apart, a record linked
//! to someone else) it would overwrite that record. So the addresses of a call's creates
//! are looked up first, and only a create whose address nobody holds (or only an earlier
//! attempt of the same create, found by its marker) is sent as an upsert; the others are
//! plain creates, which cannot merge. An account that refuses a second record with the
//! same address answers `invalid`, with the operator's options, and nothing is written.
//!
//! When a request fails for the whole account (429, 401, 403) the writes not yet sent get
//! that same error without being sent: the host retries them after the wait. When the
//! bulk endpoints refuse a batch (not found, invalid) the batch falls back to one request
//! per write.
//!
//! # Stale writes
//!
//! Freshworks has no conditional update, so an update with `if-version` compares the
//! record's current `updated_at` with the version first and answers `conflict` without
//! writing when they differ (`not-found` when the record is gone). The current versions
//! of a call's updates are read together: one filtered search on `id` per 100 ids. An id
//! the search does not return (deleted, or not yet in the search index) is read with
//! `GET <entity>/<id>` as before, and when the account refuses the search the updates
//! fall back to one `GET` each; so the answer is the same as with one `GET` per update.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json, json};
use tandem_sdk::{CreateOp, Error, MembershipOp, Op, Record, UpdateOp, Write, WriteResult};

use crate::api::Client;
use crate::errors;
use crate::find;
use crate::meta;
use crate::model::{App, Entity};
use crate::record::{self, FieldTypes};
use crate::settings::Settings;
use tandem_sdk::timestamp as instant;

/// The most writes one request carries (bulk upsert, bulk destroy, list membership).
pub const MAX_BATCH: usize = 100;

/// The most contact writes one push call accepts: room for
/// [`crate::settings::MAX_BULK_JOBS_IN_FLIGHT`] bulk jobs of [`MAX_BATCH`] creates.
pub const MAX_CALL: usize = MAX_BATCH * crate::settings::MAX_BULK_JOBS_IN_FLIGHT;

/// Below this many creates one upsert per record costs no more than a bulk job
/// (upsert + status + read-back).
pub const BULK_MIN: usize = 4;

/// From this many updates with `if-version` in one call, their versions are read with
/// one search per [`MAX_BATCH`] instead of one `GET` each (for one update, both cost one
/// request; the `GET` reads the record itself, not a search index).
pub const VERSION_SEARCH_MIN: usize = 2;

/// Waits before each job-status poll, in milliseconds (8 s in all). The job is
/// asynchronous, so the first poll waits too: a job that finishes within a second costs
/// one poll.
const JOB_WAITS_MS: [u64; 5] = [1000, 1000, 2000, 2000, 2000];

type Outcome = Result<Option<Record>, Error>;

/// The wait before a job's poll number `polls` (0-based).
fn wait(polls: usize) -> Duration {
    Duration::from_millis(JOB_WAITS_MS[polls.min(JOB_WAITS_MS.len() - 1)])
}

/// One bulk upsert batch whose job is in flight.
struct Flight<'c> {
    /// The creates of the batch (positions).
    chunk: &'c [usize],
    /// The creates sent (position, lower-cased email).
    sent: Vec<(usize, String)>,
    /// The creates answered without being sent (their body could not be built).
    done: Vec<(usize, Outcome)>,
    /// The job id.
    job: String,
    /// Polls so far.
    polls: usize,
    /// When the job is polled next.
    due: Instant,
}

/// What submitting a batch gave.
enum Submitted<'c> {
    /// A job to poll.
    Job(Flight<'c>),
    /// An answer that is already the status (no job).
    Answered(Flight<'c>, Json),
    /// Nothing to send: these outcomes are final.
    Nothing(Vec<(usize, Outcome)>),
}

/// Runs one `push` call for `app`.
pub fn push(app: App, entity: &str, writes: Vec<Write>) -> Result<Vec<WriteResult>, Error> {
    let settings = Settings::load()?;
    let entity = app.entity(entity, settings.edition)?;
    let client = Client::new(settings);
    let types = meta::types(&client, entity)?;
    let writer = Writer {
        app,
        entity,
        client: &client,
        types: &types,
    };
    Ok(writer.apply(writes))
}

/// Which writes go through the bulk endpoints (pure).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Creates sent through `bulk_upsert`, by position.
    pub bulk_creates: Vec<usize>,
    /// Deletes sent through `bulk_destroy`, by position.
    pub bulk_deletes: Vec<usize>,
}

/// Plans a push: bulk upsert for contact creates that carry an email (when enabled and
/// there are at least [`BULK_MIN`]), bulk destroy for two deletes or more.
pub fn plan(entity: Entity, writes: &[Write], bulk_upsert: bool) -> Plan {
    let creates: Vec<usize> = writes
        .iter()
        .enumerate()
        .filter(|(_, w)| matches!(&w.op, Op::Create(c) if email_of(&c.fields).is_some()))
        .map(|(i, _)| i)
        .collect();
    let deletes: Vec<usize> = writes
        .iter()
        .enumerate()
        .filter(|(_, w)| matches!(&w.op, Op::Delete(id) if is_id(id)))
        .map(|(i, _)| i)
        .collect();
    Plan {
        bulk_creates: if bulk_upsert && entity == Entity::Contacts && creates.len() >= BULK_MIN {
            creates
        } else {
            Vec::new()
        },
        bulk_deletes: if deletes.len() >= 2 {
            deletes
        } else {
            Vec::new()
        },
    }
}

/// How a create with an email is sent (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
enum CreateKind {
    /// Nobody holds the address: an upsert keyed by it (a retry updates, never duplicates).
    Upsert,
    /// The record with this id carries the create's marker: an earlier attempt, updated.
    Again(String),
    /// Other records (these ids) hold the address: a plain create, which cannot merge.
    Plain(Vec<String>),
}

/// The `email` field of a write, trimmed, when it is a non-empty text.
pub fn email_of(fields: &[tandem_sdk::Field]) -> Option<String> {
    fields
        .iter()
        .find(|f| f.name == "email")
        .and_then(|f| f.value.as_text())
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
}

fn is_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
}

fn id_json(id: &str) -> Json {
    id.parse::<u64>()
        .map_or_else(|_| Json::String(id.to_owned()), |n| Json::Number(n.into()))
}

struct Writer<'a> {
    app: App,
    entity: Entity,
    client: &'a Client,
    types: &'a FieldTypes,
}

impl Writer<'_> {
    fn apply(&self, writes: Vec<Write>) -> Vec<WriteResult> {
        let mut plan = plan(self.entity, &writes, self.client.settings().bulk_upsert);
        let mut outcomes: Vec<Option<Outcome>> = writes.iter().map(|_| None).collect();
        let mut halt: Option<Error> = None;
        let kinds = self.create_kinds(&writes, &mut outcomes, &mut halt);
        // Only creates whose address nobody holds may go through the (upserting) bulk job.
        plan.bulk_creates
            .retain(|i| matches!(kinds.get(i), Some(CreateKind::Upsert)));
        if plan.bulk_creates.len() < BULK_MIN {
            plan.bulk_creates.clear();
        }

        self.bulk_creates(&writes, &plan.bulk_creates, &mut outcomes, &mut halt);

        let bulk_deletes: BTreeSet<usize> = plan.bulk_deletes.iter().copied().collect();
        let mut current = if halt.is_none() {
            self.read_versions(&writes, &mut outcomes, &mut halt)
        } else {
            BTreeMap::new()
        };
        for (i, write) in writes.iter().enumerate() {
            // Membership writes go together below (after the updates, which were read
            // before this call changed anything).
            if matches!(write.op, Op::AddToContainer(_) | Op::RemoveFromContainer(_)) {
                continue;
            }
            if halt.is_some() || outcomes[i].is_some() || bulk_deletes.contains(&i) {
                continue;
            }
            let outcome = match &write.op {
                Op::Update(update) => self.update(update, current.get(&update.id)),
                Op::Create(create) => self.create(create, kinds.get(&i)),
                op => self.single(op),
            };
            // What this call wrote is newer than what was read before it: a later update
            // of the same record checks its version against this write.
            match (&write.op, &outcome) {
                (_, Ok(Some(record))) => {
                    current.insert(record.id.clone(), record.clone());
                }
                (Op::Update(UpdateOp { id, .. }) | Op::Delete(id), _) => {
                    current.remove(id);
                }
                _ => {}
            }
            if let Err(e) = &outcome
                && errors::is_account_wide(e)
            {
                halt = Some(e.clone());
            }
            outcomes[i] = Some(outcome);
        }

        if halt.is_none() {
            self.memberships(&writes, &mut outcomes, &mut halt);
        }
        // Lists where one id is both added and removed: one write at a time, in order.
        for (i, write) in writes.iter().enumerate() {
            if halt.is_some() || outcomes[i].is_some() {
                continue;
            }
            if matches!(write.op, Op::AddToContainer(_) | Op::RemoveFromContainer(_)) {
                let outcome = self.single(&write.op);
                if let Err(e) = &outcome
                    && errors::is_account_wide(e)
                {
                    halt = Some(e.clone());
                }
                outcomes[i] = Some(outcome);
            }
        }

        for chunk in plan.bulk_deletes.chunks(MAX_BATCH) {
            if halt.is_some() {
                break;
            }
            let ids: Vec<&str> = chunk
                .iter()
                .filter_map(|&i| match &writes[i].op {
                    Op::Delete(id) => Some(id.as_str()),
                    _ => None,
                })
                .collect();
            match self.bulk_delete(&ids) {
                Ok(()) => chunk.iter().for_each(|&i| outcomes[i] = Some(Ok(None))),
                Err(e) if errors::is_account_wide(&e) => halt = Some(e),
                Err(e @ Error::Transient(_)) => chunk
                    .iter()
                    .for_each(|&i| outcomes[i] = Some(Err(e.clone()))),
                Err(e) => {
                    tandem_sdk::log::warn(&format!(
                        "bulk delete refused ({}); deleting one by one",
                        e.message()
                    ));
                    for &i in chunk {
                        if halt.is_some() {
                            break;
                        }
                        let outcome = self.single(&writes[i].op);
                        if let Err(e) = &outcome
                            && errors::is_account_wide(e)
                        {
                            halt = Some(e.clone());
                        }
                        outcomes[i] = Some(outcome);
                    }
                }
            }
        }

        writes
            .into_iter()
            .zip(outcomes)
            .map(|(write, outcome)| WriteResult {
                ref_: write.ref_,
                outcome: outcome.unwrap_or_else(|| {
                    Err(halt
                        .clone()
                        .unwrap_or_else(|| Error::transient("the write was not sent; retry")))
                }),
            })
            .collect()
    }

    /// How each create with an email is sent, by position, from one search per
    /// [`MAX_BATCH`] addresses of who holds them now (see the module documentation). An
    /// account-wide error halts the call; a transient one fails those creates; when the
    /// account refuses the search every create is a plain create (it cannot merge).
    fn create_kinds(
        &self,
        writes: &[Write],
        outcomes: &mut [Option<Outcome>],
        halt: &mut Option<Error>,
    ) -> BTreeMap<usize, CreateKind> {
        let creates: Vec<(usize, &CreateOp, String)> = writes
            .iter()
            .enumerate()
            .filter_map(|(i, w)| match &w.op {
                Op::Create(c) => email_of(&c.fields).map(|e| (i, c, e.to_lowercase())),
                _ => None,
            })
            .collect();
        let mut emails: Vec<String> = creates.iter().map(|(_, _, e)| e.clone()).collect();
        emails.sort();
        emails.dedup();
        let mut holders: BTreeMap<String, Vec<Record>> = BTreeMap::new();
        let mut known = true;
        for chunk in emails.chunks(MAX_BATCH) {
            let values: Vec<Json> = chunk.iter().map(|e| Json::String(e.clone())).collect();
            match self.search(self.entity.email_attribute(), values) {
                Ok(found) => {
                    for record in found {
                        for email in record::emails_of(&record) {
                            if chunk.contains(&email) {
                                holders.entry(email).or_default().push(record.clone());
                            }
                        }
                    }
                }
                Err(e) if errors::is_account_wide(&e) => {
                    *halt = Some(e);
                    return BTreeMap::new();
                }
                Err(e @ Error::Transient(_)) => {
                    for (i, _, email) in &creates {
                        if chunk.contains(email) {
                            outcomes[*i] = Some(Err(e.clone()));
                        }
                    }
                }
                Err(e) => {
                    tandem_sdk::log::warn(&format!(
                        "looking up the addresses of new records refused ({}); creating without upsert",
                        e.message()
                    ));
                    known = false;
                    break;
                }
            }
        }
        let field = &self.client.settings().marker_field;
        creates
            .into_iter()
            .filter(|(i, _, _)| outcomes[*i].is_none())
            .map(|(i, create, email)| {
                let held = holders.remove(&email).unwrap_or_default();
                let own = create
                    .marker
                    .as_deref()
                    .and_then(|m| held.iter().find(|r| find::has_marker(r, field, m)));
                let kind = match own {
                    Some(record) => CreateKind::Again(record.id.clone()),
                    None if known && held.is_empty() => CreateKind::Upsert,
                    None => CreateKind::Plain(held.iter().map(|r| r.id.clone()).collect()),
                };
                holders.insert(email, held);
                (i, kind)
            })
            .collect()
    }

    /// One write, one (or a few) requests.
    fn single(&self, op: &Op) -> Outcome {
        match op {
            Op::Create(create) => self.create(create, None),
            Op::Update(update) => self.update(update, None),
            Op::Delete(id) => self.delete(id),
            Op::AddToContainer(m) => self.membership(m, true),
            Op::RemoveFromContainer(m) => self.membership(m, false),
        }
    }

    fn body(&self, create: &CreateOp) -> Result<Map<String, Json>, Error> {
        if !create.containers.is_empty() && !self.app.has_lists() {
            return Err(Error::invalid(format!(
                "{} records have no containers; create without containers",
                self.app.label()
            )));
        }
        let mut body = record::to_body(self.entity, &create.fields)?;
        if let Some(marker) = &create.marker {
            let field = &self.client.settings().marker_field;
            if field.starts_with("cf_") {
                let custom = body
                    .entry("custom_field".to_owned())
                    .or_insert_with(|| Json::Object(Map::new()));
                if let Json::Object(custom) = custom {
                    custom.insert(field.clone(), Json::String(marker.clone()));
                }
            } else {
                body.insert(field.clone(), Json::String(marker.clone()));
            }
        }
        Ok(body)
    }

    /// One create, sent as `kind` says (`None`: a plain create, which cannot merge).
    fn create(&self, create: &CreateOp, kind: Option<&CreateKind>) -> Outcome {
        let body = self.body(create)?;
        let (plural, singular) = (self.entity.plural(), self.entity.singular());
        let answer = match (email_of(&create.fields), kind) {
            (Some(email), Some(CreateKind::Upsert)) => self.client.post(
                &format!("{plural}/upsert"),
                &json!({"unique_identifier": {"emails": email}, singular: body}),
            )?,
            (_, Some(CreateKind::Again(id))) => self
                .client
                .put(&format!("{plural}/{id}"), &json!({singular: body}))?,
            (email, kind) => match self.client.post(plural, &json!({singular: body})) {
                Ok(answer) => answer,
                Err(Error::Invalid(message)) => {
                    let held = match (email, kind) {
                        (Some(email), Some(CreateKind::Plain(ids))) if !ids.is_empty() => {
                            format!(
                                " ({} {} {} already has {email}; it is not overwritten: if they are the same person, link the two records with `tandem sync resolve --link`, otherwise give one of them another address)",
                                self.app.label(),
                                singular,
                                ids.join(", ")
                            )
                        }
                        _ => String::new(),
                    };
                    return Err(Error::invalid(format!("{message}{held}")));
                }
                Err(e) => return Err(e),
            },
        };
        let record = self.record_of(&answer)?;
        for list in &create.containers {
            self.change_members(list, std::slice::from_ref(&record.id), true)?;
        }
        Ok(Some(record))
    }

    /// One update; `current` is the record as just read by [`Self::read_versions`], if it
    /// was.
    fn update(&self, update: &UpdateOp, current: Option<&Record>) -> Outcome {
        let id = update.id.as_str();
        if !is_id(id) {
            return Err(Error::not_found(format!(
                "no {} with id `{id}` (ids are numeric)",
                self.entity.singular()
            )));
        }
        let missing = || {
            Error::not_found(format!(
                "{} {id} does not exist or is deleted",
                self.entity.singular()
            ))
        };
        if let Some(expected) = &update.if_version {
            let current = match current {
                Some(record) => record.clone(),
                None => {
                    find::by_id(self.client, self.entity, id, self.types)?.ok_or_else(missing)?
                }
            };
            if !same_version(current.version.as_deref(), expected) {
                return Err(Error::conflict(format!(
                    "{} {id} changed since version {expected} (now {})",
                    self.entity.singular(),
                    current.version.as_deref().unwrap_or("unknown")
                )));
            }
            if update.fields.is_empty() {
                return Ok(Some(current));
            }
        }
        if update.fields.is_empty() {
            return find::by_id(self.client, self.entity, id, self.types)?
                .ok_or_else(missing)
                .map(Some);
        }
        let body = record::to_body(self.entity, &update.fields)?;
        let answer = self.client.put(
            &format!("{}/{id}", self.entity.plural()),
            &json!({self.entity.singular(): body}),
        )?;
        self.record_of(&answer).map(Some)
    }

    fn delete(&self, id: &str) -> Outcome {
        if !is_id(id) {
            return Ok(None); // Cannot exist, so it is gone.
        }
        match self
            .client
            .delete(&format!("{}/{id}", self.entity.plural()))
        {
            Ok(_) | Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn bulk_delete(&self, ids: &[&str]) -> Result<(), Error> {
        let selected: Vec<Json> = ids.iter().map(|id| id_json(id)).collect();
        self.client
            .post(
                &format!("{}/bulk_destroy", self.entity.plural()),
                &json!({"selected_ids": selected}),
            )
            .map(|_| ())
    }

    fn membership(&self, op: &MembershipOp, add: bool) -> Outcome {
        self.check_membership(op)?;
        self.change_members(&op.container, &op.ids, add)?;
        Ok(None)
    }

    /// Refuses a membership write that cannot be sent (no lists, or an id that is not
    /// numeric).
    fn check_membership(&self, op: &MembershipOp) -> Result<(), Error> {
        if !self.app.has_lists() || self.entity != Entity::Contacts {
            return Err(Error::invalid(format!(
                "{} {} have no containers",
                self.app.label(),
                self.entity.plural()
            )));
        }
        if let Some(bad) = op.ids.iter().find(|id| !is_id(id)) {
            return Err(Error::invalid(format!(
                "`{bad}` is not a contact id (ids are numeric)"
            )));
        }
        Ok(())
    }

    /// `PUT lists/<id>/add_contacts|remove_contacts` in chunks of the `list-batch-size`
    /// setting.
    fn change_members(&self, list: &str, ids: &[String], add: bool) -> Result<(), Error> {
        if !is_id(list) {
            return Err(Error::not_found(format!(
                "no list with id `{list}` (ids are numeric)"
            )));
        }
        let action = if add {
            "add_contacts"
        } else {
            "remove_contacts"
        };
        for chunk in ids.chunks(self.client.settings().list_batch) {
            let ids: Vec<Json> = chunk.iter().map(|id| id_json(id)).collect();
            self.client
                .put(&format!("lists/{list}/{action}"), &json!({"ids": ids}))?;
            // The next listing's member-count check expects these (see `pull`).
            let n = i64::try_from(chunk.len()).unwrap_or(i64::MAX);
            crate::pull::note_own_membership_changes(list, if add { n } else { -n });
        }
        Ok(())
    }

    /// The record of a write answer (`{"contact": {...}}`).
    fn record_of(&self, answer: &Json) -> Result<Record, Error> {
        let object = answer
            .get(self.entity.singular())
            .and_then(Json::as_object)
            .ok_or_else(|| {
                Error::transient(format!(
                    "the write answer has no `{}` object; the write may have happened, retry to read it back",
                    self.entity.singular()
                ))
            })?;
        record::to_record(object, self.types)
    }

    /// The bulk creates of the call (positions), per [`MAX_BATCH`], in rounds: up to
    /// `bulk-jobs-in-flight` jobs submitted, one wait until each of them is due (its own
    /// [`JOB_WAITS_MS`] step after its submission or its last poll), one poll of each in
    /// order, then the finished ones read back in order; the places they free go to the
    /// next batches. So one wait serves every job in flight, and each batch sends the
    /// requests it would alone (upsert, polls, read-back, list adds). A batch's error
    /// fails only its writes (transient), or sends them one by one (refused), or halts
    /// the call (account-wide).
    fn bulk_creates(
        &self,
        writes: &[Write],
        creates: &[usize],
        outcomes: &mut [Option<Outcome>],
        halt: &mut Option<Error>,
    ) {
        let in_flight = self.client.settings().bulk_jobs_in_flight.max(1);
        let mut batches = creates.chunks(MAX_BATCH);
        let mut flying: Vec<Flight> = Vec::new();
        let settle = |chunk: &[usize],
                      result: Result<Vec<(usize, Outcome)>, Error>,
                      outcomes: &mut [Option<Outcome>],
                      halt: &mut Option<Error>| match result {
            Ok(done) => {
                for (i, outcome) in done {
                    outcomes[i] = Some(outcome);
                }
            }
            Err(e) if errors::is_account_wide(&e) => *halt = Some(e),
            Err(e @ Error::Transient(_)) => {
                for &i in chunk {
                    outcomes[i] = Some(Err(e.clone()));
                }
            }
            // The endpoint or its shape is refused: one request per write instead.
            Err(e) => tandem_sdk::log::warn(&format!(
                "bulk upsert refused ({}); creating one by one",
                e.message()
            )),
        };
        loop {
            while halt.is_none() && flying.len() < in_flight {
                let Some(chunk) = batches.next() else {
                    break;
                };
                match self.submit_bulk(writes, chunk) {
                    Ok(Submitted::Job(flight)) => flying.push(flight),
                    Ok(Submitted::Answered(flight, status)) => {
                        let result = self.finish_bulk(writes, flight.sent, flight.done, &status);
                        settle(chunk, result, outcomes, halt);
                    }
                    Ok(Submitted::Nothing(done)) => settle(chunk, Ok(done), outcomes, halt),
                    Err(e) => settle(chunk, Err(e), outcomes, halt),
                }
            }
            // Writes of jobs still in flight at a halt get the halt's error (retried by
            // the host; creates are keyed by email, so a retry never duplicates).
            if halt.is_some() {
                return;
            }
            // One wait for every job in flight: until the last of them is due (so none
            // is polled before its time, and the polls go in a known order).
            let Some(due) = flying.iter().map(|f| f.due).max() else {
                return;
            };
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let mut finished: Vec<(Flight, Result<Json, Error>)> = Vec::new();
            let mut waiting = Vec::with_capacity(flying.len());
            for mut flight in flying {
                if halt.is_some() {
                    waiting.push(flight);
                    continue;
                }
                let status = self.client.get(&format!("job_statuses/{}", flight.job));
                flight.polls += 1;
                match status {
                    Ok(status)
                        if JobReport::parse(&status).state == JobState::Running
                            && flight.polls < JOB_WAITS_MS.len() =>
                    {
                        flight.due = Instant::now() + wait(flight.polls);
                        waiting.push(flight);
                    }
                    Err(e) if errors::is_account_wide(&e) => *halt = Some(e),
                    other => finished.push((flight, other)),
                }
            }
            flying = waiting;
            for (flight, status) in finished {
                let result = match status {
                    _ if halt.is_some() => continue,
                    Ok(status) => self.finish_bulk(writes, flight.sent, flight.done, &status),
                    Err(e) => Err(e),
                };
                settle(flight.chunk, result, outcomes, halt);
            }
        }
    }

    /// Submits one bulk upsert batch (the writes whose body cannot be built are answered
    /// at once). Errors of the upsert request itself are returned for the caller to
    /// decide (fallback or halt).
    fn submit_bulk<'c>(
        &self,
        writes: &[Write],
        chunk: &'c [usize],
    ) -> Result<Submitted<'c>, Error> {
        let mut done: Vec<(usize, Outcome)> = Vec::new();
        let mut sent: Vec<(usize, String)> = Vec::new();
        let mut items = Vec::new();
        for &i in chunk {
            let Op::Create(create) = &writes[i].op else {
                continue;
            };
            let Some(email) = email_of(&create.fields) else {
                continue;
            };
            match self.body(create) {
                Ok(body) => {
                    items.push(json!({"emails": email, "data": body}));
                    sent.push((i, email.to_lowercase()));
                }
                Err(e) => done.push((i, Err(e))),
            }
        }
        let mut flight = Flight {
            chunk,
            sent,
            done,
            job: String::new(),
            polls: 0,
            due: Instant::now(),
        };
        if items.is_empty() {
            return Ok(Submitted::Nothing(flight.done));
        }
        let answer = self
            .client
            .post("contacts/bulk_upsert", &json!({"contacts": items}))?;
        Ok(match job_id(&answer) {
            Some(job) => {
                flight.job = job;
                // The job is asynchronous: the first poll waits too, so that a job that
                // finishes within a second costs one poll.
                flight.due = Instant::now() + wait(0);
                Submitted::Job(flight)
            }
            None => Submitted::Answered(flight, answer),
        })
    }

    /// Ends one bulk batch from its job's last status (or the synchronous answer):
    /// failures, read-back, list membership.
    fn finish_bulk(
        &self,
        writes: &[Write],
        sent: Vec<(usize, String)>,
        mut done: Vec<(usize, Outcome)>,
        status: &Json,
    ) -> Result<Vec<(usize, Outcome)>, Error> {
        let report = JobReport::parse(status);
        // A job that failed but names its failed records (all of them invalid, say) is
        // read like a finished one: those records are refused with the app's reason, which
        // no retry changes; the others are read back (and retried when not found).
        let named = report.state == JobState::Failed && !report.failures.is_empty();
        if report.state != JobState::Done && !named {
            let error = Error::transient(match report.state {
                JobState::Failed => format!("the bulk upsert job failed: {}", report.message),
                _ => {
                    "the bulk upsert job did not finish in time; retry (creates are keyed by email)"
                        .to_owned()
                }
            });
            done.extend(sent.iter().map(|(i, _)| (*i, Err(error.clone()))));
            return Ok(done);
        }
        let wanted: Vec<String> = sent
            .iter()
            .filter(|(_, email)| !report.failures.contains_key(email))
            .map(|(_, email)| email.clone())
            .collect();
        let found = self.search_emails(&wanted)?;
        let mut members: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (i, email) in &sent {
            let outcome = match (report.failures.get(email), found.get(email)) {
                (Some(reason), _) => {
                    Err(Error::invalid(format!("bulk upsert of {email}: {reason}")))
                }
                (None, Some(record)) => {
                    if let Op::Create(create) = &writes[*i].op {
                        for list in &create.containers {
                            members
                                .entry(list.as_str())
                                .or_default()
                                .push(record.id.clone());
                        }
                    }
                    Ok(Some(record.clone()))
                }
                (None, None) => Err(Error::transient(format!(
                    "the bulk upsert job finished but no contact with {email} was found; retry"
                ))),
            };
            done.push((*i, outcome));
        }
        for (list, ids) in members {
            if let Err(e) = self.change_members(list, &ids, true) {
                for (i, outcome) in done.iter_mut() {
                    let in_list = matches!(&writes[*i].op, Op::Create(c) if c.containers.iter().any(|c| c == list));
                    if in_list && outcome.is_ok() {
                        *outcome = Err(e.clone());
                    }
                }
            }
        }
        Ok(done)
    }

    /// Live contacts by email (lower-cased), through `filtered_search` with `is_in`; when
    /// several records share an email the most recently updated wins.
    fn search_emails(&self, emails: &[String]) -> Result<BTreeMap<String, Record>, Error> {
        let mut found: BTreeMap<String, Record> = BTreeMap::new();
        for chunk in emails.chunks(MAX_BATCH) {
            let values: Vec<Json> = chunk.iter().map(|e| Json::String(e.clone())).collect();
            for record in self.search(self.entity.email_attribute(), values)? {
                for email in record::emails_of(&record) {
                    if !chunk.contains(&email) {
                        continue;
                    }
                    let newer = found.get(&email).is_none_or(|seen| {
                        match (
                            seen.updated_at.as_deref().and_then(instant::parse),
                            record.updated_at.as_deref().and_then(instant::parse),
                        ) {
                            (Some(seen), Some(this)) => this > seen,
                            (None, Some(_)) => true,
                            _ => false,
                        }
                    });
                    if newer {
                        found.insert(email, record.clone());
                    }
                }
            }
        }
        Ok(found)
    }

    /// Live records whose `attribute` is one of `values` (at most [`MAX_BATCH`]): a
    /// complete search answer or an error ([`crate::find::Searcher::search`]).
    fn search(&self, attribute: &str, values: Vec<Json>) -> Result<Vec<Record>, Error> {
        crate::find::Searcher {
            client: self.client,
            entity: self.entity,
            types: self.types,
        }
        .search(attribute, values)
    }

    /// The current records of the updates that carry `if-version` (at least
    /// [`VERSION_SEARCH_MIN`] distinct ids), by id: one filtered search on `id` per
    /// [`MAX_BATCH`] ids instead of one `GET` each. Ids it does not return are left to
    /// `update` (a `GET`). An account-wide error halts the call; a transient one fails
    /// those updates; any other (the account refuses the search) leaves them all to one
    /// `GET` each.
    fn read_versions(
        &self,
        writes: &[Write],
        outcomes: &mut [Option<Outcome>],
        halt: &mut Option<Error>,
    ) -> BTreeMap<String, Record> {
        // Each id once, in the order of its first update.
        let mut ids: Vec<&str> = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, write) in writes.iter().enumerate() {
            if let Op::Update(u) = &write.op
                && outcomes[i].is_none()
                && u.if_version.is_some()
                && is_id(&u.id)
                && seen.insert(u.id.as_str())
            {
                ids.push(u.id.as_str());
            }
        }
        let mut current = BTreeMap::new();
        if ids.len() < VERSION_SEARCH_MIN {
            return current;
        }
        for chunk in ids.chunks(MAX_BATCH) {
            let values: Vec<Json> = chunk.iter().map(|id| id_json(id)).collect();
            match self.search("id", values) {
                Ok(found) => {
                    for record in found {
                        if chunk.contains(&record.id.as_str()) {
                            current.insert(record.id.clone(), record);
                        }
                    }
                }
                Err(e) if errors::is_account_wide(&e) => {
                    *halt = Some(e);
                    break;
                }
                Err(e @ Error::Transient(_)) => {
                    for (i, write) in writes.iter().enumerate() {
                        if let Op::Update(u) = &write.op
                            && u.if_version.is_some()
                            && chunk.contains(&u.id.as_str())
                            && outcomes[i].is_none()
                        {
                            outcomes[i] = Some(Err(e.clone()));
                        }
                    }
                }
                Err(e) => {
                    tandem_sdk::log::warn(&format!(
                        "reading versions by id refused ({}); reading one by one",
                        e.message()
                    ));
                    break;
                }
            }
        }
        current
    }

    /// The membership writes of the call, grouped by list and direction so that the ids
    /// of many writes share a request (`list-batch-size` ids each). A list where one id is
    /// both added and removed is left to the writes one by one, in their order. Each
    /// write gets the outcome of the request that carried its ids.
    fn memberships(
        &self,
        writes: &[Write],
        outcomes: &mut [Option<Outcome>],
        halt: &mut Option<Error>,
    ) {
        let mut groups: BTreeMap<(&str, bool), Vec<usize>> = BTreeMap::new();
        for (i, write) in writes.iter().enumerate() {
            let (op, add) = match &write.op {
                Op::AddToContainer(op) => (op, true),
                Op::RemoveFromContainer(op) => (op, false),
                _ => continue,
            };
            if outcomes[i].is_some() {
                continue;
            }
            match self.check_membership(op).and_then(|()| {
                is_id(&op.container).then_some(()).ok_or_else(|| {
                    Error::not_found(format!(
                        "no list with id `{}` (ids are numeric)",
                        op.container
                    ))
                })
            }) {
                Ok(()) => groups
                    .entry((op.container.as_str(), add))
                    .or_default()
                    .push(i),
                Err(e) => outcomes[i] = Some(Err(e)),
            }
        }
        let ids_of = |i: usize| match &writes[i].op {
            Op::AddToContainer(op) | Op::RemoveFromContainer(op) => op.ids.as_slice(),
            _ => &[],
        };
        let both: BTreeSet<&str> = groups
            .keys()
            .filter(|(list, add)| {
                *add && groups.get(&(*list, false)).is_some_and(|removes| {
                    let added: BTreeSet<&String> = groups[&(*list, true)]
                        .iter()
                        .flat_map(|&i| ids_of(i))
                        .collect();
                    removes
                        .iter()
                        .flat_map(|&i| ids_of(i))
                        .any(|id| added.contains(id))
                })
            })
            .map(|(list, _)| *list)
            .collect();
        let batch = self.client.settings().list_batch;
        for ((list, add), members) in groups {
            if both.contains(list) {
                continue;
            }
            // Writes packed in order while their ids fit one request (a write with more
            // ids than that goes alone, in several requests).
            let mut packs: Vec<Vec<usize>> = Vec::new();
            let mut size = 0;
            for i in members {
                let n = ids_of(i).len();
                match packs.last_mut() {
                    Some(pack) if size + n <= batch => pack.push(i),
                    _ => {
                        packs.push(vec![i]);
                        size = 0;
                    }
                }
                size += n;
            }
            for pack in packs {
                if halt.is_some() {
                    return;
                }
                let ids: Vec<String> = pack.iter().flat_map(|&i| ids_of(i)).cloned().collect();
                match self.change_members(list, &ids, add) {
                    Ok(()) => pack.iter().for_each(|&i| outcomes[i] = Some(Ok(None))),
                    Err(e) if errors::is_account_wide(&e) => *halt = Some(e),
                    Err(e) => pack
                        .iter()
                        .for_each(|&i| outcomes[i] = Some(Err(e.clone()))),
                }
            }
        }
    }
}

/// Versions are `updated_at` instants: equal when they name the same instant.
fn same_version(current: Option<&str>, expected: &str) -> bool {
    match (current.and_then(instant::parse), instant::parse(expected)) {
        (Some(a), Some(b)) => a == b,
        _ => current == Some(expected),
    }
}

/// The job id of a bulk answer: `job_id`, `id`, `job.id`, or the last segment of
/// `job_status_url`.
pub fn job_id(answer: &Json) -> Option<String> {
    let text = |v: &Json| match v {
        Json::Number(n) => Some(n.to_string()),
        Json::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    };
    ["/job_id", "/job/id", "/id", "/job_status_id"]
        .iter()
        .find_map(|p| answer.pointer(p).and_then(text))
        .or_else(|| {
            let url = answer.get("job_status_url")?.as_str()?;
            let path = url.split(['?', '#']).next()?;
            path.trim_end_matches('/')
                .rsplit('/')
                .next()
                .map(|s| s.trim_end_matches(".json").to_owned())
                .filter(|s| !s.is_empty())
        })
}

/// Where a bulk job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Still queued or running.
    Running,
    /// Finished (some records may have failed).
    Done,
    /// The whole job failed.
    Failed,
}

/// A job status answer, read defensively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    /// Where the job is: running, done, or failed as a whole.
    pub state: JobState,
    /// Per-record failures: lower-cased email → reason.
    pub failures: BTreeMap<String, String>,
    /// The job's own message, if any.
    pub message: String,
}

impl JobReport {
    /// Reads `{"status": "completed", "progress": 100, "data": {"detailed_failure_report": [...]}}`
    /// (also wrapped in `job` / `job_status`).
    pub fn parse(answer: &Json) -> Self {
        let job = answer
            .get("job")
            .or_else(|| answer.get("job_status"))
            .filter(|j| j.is_object())
            .unwrap_or(answer);
        let status = job
            .get("status")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        let progress = job.get("progress").and_then(Json::as_f64);
        let state = match status.as_str() {
            "completed"
            | "complete"
            | "success"
            | "succeeded"
            | "done"
            | "finished"
            | "partially_completed" => JobState::Done,
            "failed" | "failure" | "error" => JobState::Failed,
            "" if progress.is_none() => JobState::Done, // A synchronous answer without a job.
            _ if progress.is_some_and(|p| p >= 100.0) => JobState::Done,
            _ => JobState::Running,
        };
        let mut failures = BTreeMap::new();
        let report = job
            .pointer("/data/detailed_failure_report")
            .or_else(|| job.get("detailed_failure_report"))
            .and_then(Json::as_array);
        for entry in report.into_iter().flatten() {
            let email = entry
                .get("emails")
                .or_else(|| entry.get("email"))
                .and_then(|e| match e {
                    Json::String(s) => Some(s.trim().to_lowercase()),
                    Json::Array(list) => list
                        .first()
                        .and_then(Json::as_str)
                        .map(|s| s.trim().to_lowercase()),
                    _ => None,
                });
            let reason = entry
                .get("error_message")
                .or_else(|| entry.get("errors"))
                .map(|m| match m {
                    Json::Array(list) => list
                        .iter()
                        .filter_map(Json::as_str)
                        .collect::<Vec<_>>()
                        .join("; "),
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_else(|| "rejected".to_owned());
            if let Some(email) = email {
                failures.insert(email, reason);
            }
        }
        let message = job
            .get("message")
            .or_else(|| job.get("error_message"))
            .and_then(Json::as_str)
            .unwrap_or(&status)
            .to_owned();
        JobReport {
            state,
            failures,
            message,
        }
    }
}
