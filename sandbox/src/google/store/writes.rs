//! Contact writes: create, update and delete, one at a time and in batches.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::google::error::ApiError;
use crate::google::person;
use crate::google::person::{FieldMask, PersonData, PersonInput, RenderOpts};

use super::groups::ADDABLE_SYSTEM_GROUPS;
use super::people::person_response;
use super::{Contact, MAX_BATCH_DELETE, MAX_BATCH_WRITE, Store};

impl Store {
    /// Validate a requested membership set against the current one (docs/google-people-api.md §2.2 memberships).
    pub(super) fn resolve_memberships(
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

    pub(super) fn insert_contact(
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

    pub(super) fn apply_update(
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
    pub(super) fn tombstone(&mut self, rn: &str, now: OffsetDateTime) {
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
}

/// What a batch item turned into.
#[derive(Debug, Clone)]
enum ItemOutcome {
    Ok(String),
    Err(ApiError),
}

/// The error of an atomic batch: the failing item's status, its message prefixed with the
/// item's position.
fn batch_error(e: &ApiError, at: &str) -> ApiError {
    let mut out = e.clone();
    out.message = format!("{at}: {}", e.message);
    out
}
