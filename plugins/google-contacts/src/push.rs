//! `push`: writes batched within the People API's limits, one request at a time.
//!
//! The writes are cut into segments of consecutive writes that touch distinct contacts
//! ([`segments`]); inside a segment the writes commute, so they are grouped by kind and
//! sent as few requests as the API allows (docs/google-people-api.md §4.4, §5.2):
//!
//! | writes                   | requests                                                   |
//! |--------------------------|------------------------------------------------------------|
//! | creates                  | one `batchCreateContacts` per 200 (`createContact` for one) |
//! | updates                  | one `getBatchGet` per 200 (the current contact: `updateContact` replaces fields wholesale, and the etag), then one `batchUpdateContacts` per 200 with the same `updateMask` (`updateContact` for one) |
//! | deletes                  | one `batchDeleteContacts` per 500 (`deleteContact` for one) |
//! | add/remove to container  | one `contactGroups/{id}/members:modify` per group and direction and 1000 ids (the ids of many writes together) |
//!
//! Order is kept where it matters: a write that touches a contact already touched
//! earlier in the push starts a new segment, which runs after the previous one.
//!
//! Failures: a batch that Google refuses as a whole (400/404, batches are atomic,
//! docs/google-people-api.md §10 #9) is retried one write at a time so that each write gets its own outcome; any
//! other failure of a batch request is the outcome of every write in it. After a
//! rate-limit, authorization or permission refusal nothing more is sent: the remaining
//! writes get the same error, for the host to retry later. Google checks the etag (the
//! update's `if-version`, else the one just read) and refuses a stale one: `conflict`.
//! An update whose `if-version` already differs from the contact just read is sent on its
//! own, so that its likely refusal fails no batch. A delete of a contact that is already
//! gone succeeds (retried deletes stay idempotent).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value as Json, json};
use tandem_sdk::http::Method;
use tandem_sdk::{CreateOp, Error, MembershipOp, Op, Record, UpdateOp, Write, WriteResult};

use crate::api::{self, Api, MAX_BATCH, MAX_BATCH_DELETE, MAX_MEMBERS_MODIFY, SOURCES};
use crate::mapping::{self, Draft, PERSON_FIELDS};

/// The outcome of one write.
type Outcome = Result<Option<Record>, Error>;
/// Updates waiting to be sent: (write index, resource name, body).
type Pending = Vec<(usize, String, Json)>;

/// The contacts a write touches (normalized ids; unparsable ids as given).
fn touched(op: &Op) -> Vec<String> {
    let norm = |id: &String| mapping::person_name(id).unwrap_or_else(|_| id.clone());
    match op {
        Op::Create(_) => Vec::new(),
        Op::Update(u) => vec![norm(&u.id)],
        Op::Delete(id) => vec![norm(id)],
        Op::AddToContainer(m) | Op::RemoveFromContainer(m) => m.ids.iter().map(norm).collect(),
    }
}

/// Cuts writes into runs of consecutive writes touching distinct contacts (indices).
pub fn segments(writes: &[Write]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (index, write) in writes.iter().enumerate() {
        let ids = touched(&write.op);
        let repeats = ids.iter().any(|id| seen.contains(id));
        if repeats && !current.is_empty() {
            out.push(std::mem::take(&mut current));
            seen.clear();
        }
        seen.extend(ids);
        current.push(index);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Whether an error concerns the whole account (stop sending).
fn halts(error: &Error) -> bool {
    matches!(
        error,
        Error::RateLimited(_) | Error::Unauthorized(_) | Error::Forbidden(_)
    )
}

/// Whether a refused batch should be retried one write at a time.
fn split_on(error: &Error) -> bool {
    matches!(
        error,
        Error::Invalid(_) | Error::NotFound(_) | Error::Conflict(_)
    )
}

/// Applies writes; one outcome per write, in order.
pub fn push(api: &Api, writes: Vec<Write>) -> Vec<WriteResult> {
    let mut pusher = Pusher {
        api,
        halt: None,
        outcomes: (0..writes.len()).map(|_| None).collect(),
        requests: 0,
    };
    for segment in segments(&writes) {
        let pick = |f: fn(&Op) -> bool| -> Vec<usize> {
            segment
                .iter()
                .copied()
                .filter(|i| f(&writes[*i].op))
                .collect()
        };
        let creates = pick(|op| matches!(op, Op::Create(_)));
        let updates = pick(|op| matches!(op, Op::Update(_)));
        let deletes = pick(|op| matches!(op, Op::Delete(_)));
        let members = pick(|op| matches!(op, Op::AddToContainer(_) | Op::RemoveFromContainer(_)));
        for chunk in creates.chunks(MAX_BATCH) {
            let ops: Vec<(usize, &CreateOp)> = chunk
                .iter()
                .filter_map(|&i| match &writes[i].op {
                    Op::Create(c) => Some((i, c)),
                    _ => None,
                })
                .collect();
            pusher.creates(&ops);
        }
        for chunk in updates.chunks(MAX_BATCH) {
            let ops: Vec<(usize, &UpdateOp)> = chunk
                .iter()
                .filter_map(|&i| match &writes[i].op {
                    Op::Update(u) => Some((i, u)),
                    _ => None,
                })
                .collect();
            pusher.updates(&ops);
        }
        for chunk in deletes.chunks(MAX_BATCH_DELETE) {
            let ops: Vec<(usize, &String)> = chunk
                .iter()
                .filter_map(|&i| match &writes[i].op {
                    Op::Delete(id) => Some((i, id)),
                    _ => None,
                })
                .collect();
            pusher.deletes(&ops);
        }
        // The contacts of a segment are distinct, so the writes of one group and direction
        // commute and share requests.
        let mut groups: BTreeMap<(&str, bool), Vec<(usize, &MembershipOp)>> = BTreeMap::new();
        for &i in &members {
            match &writes[i].op {
                Op::AddToContainer(m) => {
                    groups.entry((&m.container, true)).or_default().push((i, m))
                }
                Op::RemoveFromContainer(m) => {
                    groups
                        .entry((&m.container, false))
                        .or_default()
                        .push((i, m));
                }
                _ => {}
            }
        }
        for ((container, add), ops) in groups {
            pusher.memberships(container, &ops, add);
        }
    }
    tandem_sdk::debug!(
        "push: {} writes in {} requests",
        writes.len(),
        pusher.requests
    );
    let Pusher { outcomes, .. } = pusher;
    writes
        .into_iter()
        .zip(outcomes)
        .map(|(write, outcome)| WriteResult {
            ref_: write.ref_,
            outcome: outcome.unwrap_or_else(|| {
                Err(Error::fatal("the write was not attempted (connector bug)"))
            }),
        })
        .collect()
}

struct Pusher<'a> {
    api: &'a Api,
    /// The account-level error that stopped sending.
    halt: Option<Error>,
    outcomes: Vec<Option<Outcome>>,
    requests: usize,
}

impl Pusher<'_> {
    fn set(&mut self, index: usize, outcome: Outcome) {
        self.outcomes[index] = Some(outcome);
    }

    /// Sends one request unless sending has stopped.
    fn call(
        &mut self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Json>,
    ) -> Result<Json, Error> {
        if let Some(error) = &self.halt {
            return Err(error.clone());
        }
        self.requests += 1;
        let result = self.api.call(method, path, query, body);
        if let Err(error) = &result
            && halts(error)
        {
            self.halt = Some(error.clone());
        }
        result
    }

    /// The record of a person returned by a write.
    fn record(person: Result<Json, Error>) -> Outcome {
        let person = person?;
        mapping::to_record(&person)
            .map(Some)
            .ok_or_else(|| Error::transient("the reply's person has no resourceName"))
    }

    // ----- creates --------------------------------------------------------------------

    fn creates(&mut self, ops: &[(usize, &CreateOp)]) {
        let mut bodies: Vec<(usize, Json)> = Vec::new();
        for &(index, op) in ops {
            match create_body(op) {
                Ok(body) => bodies.push((index, body)),
                Err(message) => self.set(index, Err(Error::invalid(message))),
            }
        }
        if bodies.len() > 1 {
            let request = json!({
                "contacts": bodies.iter().map(|(_, b)| json!({"contactPerson": b})).collect::<Vec<_>>(),
                "readMask": PERSON_FIELDS,
                "sources": [SOURCES],
            });
            match self.call(
                Method::Post,
                "people:batchCreateContacts",
                &[],
                Some(&request),
            ) {
                Ok(reply) => {
                    let created = api::person_responses(reply.get("createdPeople"));
                    for (n, (index, _)) in bodies.iter().enumerate() {
                        let outcome = match created.get(n) {
                            Some((_, person)) => Self::record(person.clone()),
                            // Created or not, we cannot tell: the host looks for the marker.
                            None => Err(Error::transient(format!(
                                "batchCreateContacts answered for {} of {} contacts",
                                created.len(),
                                bodies.len()
                            ))),
                        };
                        self.set(*index, outcome);
                    }
                    return;
                }
                Err(error) if split_on(&error) => {}
                Err(error) => {
                    for (index, _) in &bodies {
                        self.set(*index, Err(error.clone()));
                    }
                    return;
                }
            }
        }
        for (index, body) in bodies {
            let person = self.call(
                Method::Post,
                "people:createContact",
                &[("personFields", PERSON_FIELDS), ("sources", SOURCES)],
                Some(&body),
            );
            self.set(index, Self::record(person));
        }
    }

    // ----- updates --------------------------------------------------------------------

    fn updates(&mut self, ops: &[(usize, &UpdateOp)]) {
        let mut named: Vec<(usize, String, &UpdateOp)> = Vec::new();
        for &(index, op) in ops {
            match mapping::person_name(&op.id) {
                Ok(name) => named.push((index, name, op)),
                Err(message) => self.set(index, Err(Error::invalid(message))),
            }
        }
        if named.is_empty() {
            return;
        }
        let names: Vec<String> = named.iter().map(|(_, n, _)| n.clone()).collect();
        let current = match self.batch_get(&names) {
            Ok(found) => found,
            Err(error) => {
                for (index, _, _) in &named {
                    self.set(*index, Err(error.clone()));
                }
                return;
            }
        };
        // Pending writes grouped by update mask; a write sent alone is its own group.
        let mut by_mask: BTreeMap<(String, Option<usize>), Pending> = BTreeMap::new();
        for (index, name, op) in named {
            match plan_update(&name, op, current.get(&name)) {
                Ok(Planned::Unchanged(record)) => self.set(index, Ok(Some(record))),
                Ok(Planned::Write { mask, body, alone }) => {
                    let key = alone.then_some(index);
                    by_mask
                        .entry((mask, key))
                        .or_default()
                        .push((index, name, body));
                }
                Err(error) => self.set(index, Err(error)),
            }
        }
        for ((mask, _), group) in by_mask {
            if group.len() > 1 {
                let contacts: serde_json::Map<String, Json> = group
                    .iter()
                    .map(|(_, name, body)| (name.clone(), body.clone()))
                    .collect();
                let request = json!({
                    "contacts": contacts,
                    "updateMask": mask,
                    "readMask": PERSON_FIELDS,
                    "sources": [SOURCES],
                });
                match self.call(
                    Method::Post,
                    "people:batchUpdateContacts",
                    &[],
                    Some(&request),
                ) {
                    Ok(reply) => {
                        for (index, name, _) in &group {
                            let outcome = match reply
                                .pointer(&format!("/updateResult/{}", pointer_escape(name)))
                            {
                                Some(item) => Self::record(api::person_response(item)),
                                None => Err(Error::transient(format!(
                                    "batchUpdateContacts did not answer for {name}"
                                ))),
                            };
                            self.set(*index, outcome);
                        }
                        continue;
                    }
                    Err(error) if split_on(&error) => {}
                    Err(error) => {
                        for (index, _, _) in &group {
                            self.set(*index, Err(error.clone()));
                        }
                        continue;
                    }
                }
            }
            for (index, name, body) in group {
                let person = self.call(
                    Method::Patch,
                    &format!("{name}:updateContact"),
                    &[
                        ("updatePersonFields", mask.as_str()),
                        ("personFields", PERSON_FIELDS),
                        ("sources", SOURCES),
                    ],
                    Some(&body),
                );
                self.set(index, Self::record(person));
            }
        }
    }

    /// The current persons for `names` (≤200): name → person or its error.
    fn batch_get(
        &mut self,
        names: &[String],
    ) -> Result<BTreeMap<String, Result<Json, Error>>, Error> {
        if let Some(error) = &self.halt {
            return Err(error.clone());
        }
        self.requests += 1;
        let result = self.api.batch_get(names);
        if let Err(error) = &result
            && halts(error)
        {
            self.halt = Some(error.clone());
        }
        Ok(result?.into_iter().collect())
    }

    // ----- deletes --------------------------------------------------------------------

    fn deletes(&mut self, ops: &[(usize, &String)]) {
        let mut named: Vec<(usize, String)> = Vec::new();
        for &(index, id) in ops {
            match mapping::person_name(id) {
                Ok(name) => named.push((index, name)),
                Err(message) => self.set(index, Err(Error::invalid(message))),
            }
        }
        match named.len() {
            0 => {}
            1 => {
                let (index, name) = named.remove(0);
                let outcome =
                    match self.call(Method::Delete, &format!("{name}:deleteContact"), &[], None) {
                        Ok(_) | Err(Error::NotFound(_)) => Ok(None),
                        Err(error) => Err(error),
                    };
                self.set(index, outcome);
            }
            _ => self.batch_delete(named, true),
        }
    }

    /// `batchDeleteContacts`; when Google refuses the batch because a contact is already
    /// gone, learns which still exist and deletes those.
    fn batch_delete(&mut self, named: Vec<(usize, String)>, retry: bool) {
        let request = json!({"resourceNames": named.iter().map(|(_, n)| n).collect::<Vec<_>>()});
        match self.call(
            Method::Post,
            "people:batchDeleteContacts",
            &[],
            Some(&request),
        ) {
            Ok(_) => {
                for (index, _) in named {
                    self.set(index, Ok(None));
                }
            }
            Err(Error::NotFound(_)) if retry => {
                let mut existing = Vec::new();
                for chunk in named.chunks(MAX_BATCH) {
                    let names: Vec<String> = chunk.iter().map(|(_, n)| n.clone()).collect();
                    match self.batch_get(&names) {
                        Ok(found) => {
                            for (index, name) in chunk {
                                match found.get(name) {
                                    Some(Ok(_)) => existing.push((*index, name.clone())),
                                    Some(Err(Error::NotFound(_))) | None => {
                                        self.set(*index, Ok(None))
                                    }
                                    Some(Err(error)) => self.set(*index, Err(error.clone())),
                                }
                            }
                        }
                        Err(error) => {
                            for (index, _) in chunk {
                                self.set(*index, Err(error.clone()));
                            }
                        }
                    }
                }
                if existing.len() == 1 {
                    let (index, name) = existing.remove(0);
                    self.deletes(&[(index, &name)]);
                } else if !existing.is_empty() {
                    self.batch_delete(existing, false);
                }
            }
            Err(error) => {
                for (index, _) in named {
                    self.set(index, Err(error.clone()));
                }
            }
        }
    }

    // ----- memberships ----------------------------------------------------------------

    /// Membership writes of one group and direction: the names of as many writes as fit
    /// in one `members:modify` (1000) go together; each write gets the outcome of its own
    /// names (a write with more names than that goes alone, in several requests).
    fn memberships(&mut self, container: &str, ops: &[(usize, &MembershipOp)], add: bool) {
        let group = match mapping::group_name(container) {
            Ok(group) => group,
            Err(e) => {
                for (index, _) in ops {
                    self.set(*index, Err(Error::invalid(e.clone())));
                }
                return;
            }
        };
        let mut packs: Vec<Vec<(usize, Vec<String>)>> = Vec::new();
        let mut size = 0;
        for (index, op) in ops {
            let names = match op
                .ids
                .iter()
                .map(|id| mapping::person_name(id))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(names) => names,
                Err(e) => {
                    self.set(*index, Err(Error::invalid(e)));
                    continue;
                }
            };
            let n = names.len();
            match packs.last_mut() {
                Some(pack) if size + n <= MAX_MEMBERS_MODIFY => pack.push((*index, names)),
                _ => {
                    packs.push(vec![(*index, names)]);
                    size = 0;
                }
            }
            size += n;
        }
        for pack in packs {
            let names: Vec<String> = pack.iter().flat_map(|(_, n)| n.iter().cloned()).collect();
            match self.modify_members(&group, &names, add) {
                Ok((missing, last_group)) => {
                    for (index, names) in pack {
                        let mine = |list: &[String]| -> Vec<String> {
                            list.iter().filter(|n| names.contains(n)).cloned().collect()
                        };
                        let outcome =
                            membership_outcome(&group, add, &mine(&missing), &mine(&last_group));
                        self.set(index, outcome);
                    }
                }
                Err(e) => {
                    for (index, _) in pack {
                        self.set(index, Err(e.clone()));
                    }
                }
            }
        }
    }

    /// `members:modify` of `names` in requests of 1000: the names Google did not find and
    /// those it would not remove from their last group.
    fn modify_members(
        &mut self,
        group: &str,
        names: &[String],
        add: bool,
    ) -> Result<(Vec<String>, Vec<String>), Error> {
        let key = if add {
            "resourceNamesToAdd"
        } else {
            "resourceNamesToRemove"
        };
        let mut missing: Vec<String> = Vec::new();
        let mut last_group: Vec<String> = Vec::new();
        for chunk in names.chunks(MAX_MEMBERS_MODIFY) {
            let reply = self.call(
                Method::Post,
                &format!("{group}/members:modify"),
                &[],
                Some(&json!({ key: chunk })),
            )?;
            let list = |k: &str| -> Vec<String> {
                reply
                    .get(k)
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            };
            missing.extend(list("notFoundResourceNames"));
            last_group.extend(list("canNotRemoveLastContactGroupResourceNames"));
        }
        Ok((missing, last_group))
    }
}

/// The outcome of a membership write from what `members:modify` reported of its names.
fn membership_outcome(
    group: &str,
    add: bool,
    missing: &[String],
    last_group: &[String],
) -> Outcome {
    // Removing a contact that no longer exists leaves it out of the group: done.
    if add && !missing.is_empty() {
        return Err(Error::not_found(format!(
            "cannot add to {group}: no such contacts: {}",
            missing.join(", ")
        )));
    }
    if !last_group.is_empty() {
        return Err(Error::invalid(format!(
            "cannot remove from {group}: a contact must keep at least one contact group ({}); add it to another group first",
            last_group.join(", ")
        )));
    }
    Ok(None)
}

/// The body of a create.
fn create_body(op: &CreateOp) -> Result<Json, String> {
    let mut draft = Draft::new();
    draft.apply_all(&op.fields)?;
    let groups: Vec<String> = op
        .containers
        .iter()
        .map(|c| mapping::group_name(c))
        .collect::<Result<_, _>>()?;
    Ok(draft.create_body(op.marker.as_deref(), &groups))
}

/// What an update needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Planned {
    /// Nothing changes: the contact as it is.
    Unchanged(Record),
    /// Send `body` with `updatePersonFields=mask`.
    Write {
        /// `updatePersonFields`.
        mask: String,
        /// The Person body, with the etag to check (`if-version`, else the one just read).
        body: Json,
        /// `if-version` differs from the etag just read: most likely a conflict, which
        /// Google decides. Sent on its own, so that its refusal fails no batch.
        alone: bool,
    },
}

/// Plans one update against the contact just read (`None`: absent from the reply).
pub fn plan_update(
    name: &str,
    op: &UpdateOp,
    current: Option<&Result<Json, Error>>,
) -> Result<Planned, Error> {
    let person = match current {
        Some(Ok(person)) => person,
        Some(Err(Error::NotFound(_))) | None => {
            return Err(Error::not_found(format!("contact {name} does not exist")));
        }
        Some(Err(error)) => return Err(error.clone()),
    };
    let etag = person
        .get("etag")
        .and_then(Json::as_str)
        .unwrap_or_default();
    let version = op.if_version.as_deref().unwrap_or(etag);
    let mut draft = Draft::from_person(person);
    draft.apply_all(&op.fields).map_err(Error::invalid)?;
    let changed = draft.changed();
    if changed.is_empty() {
        return mapping::to_record(person)
            .map(Planned::Unchanged)
            .ok_or_else(|| Error::transient("the contact read has no resourceName"));
    }
    Ok(Planned::Write {
        mask: mapping::update_mask(&changed),
        body: draft.update_body(version),
        alone: version != etag,
    })
}

/// Escapes a JSON pointer token (`people/c1` → `people~1c1`).
fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_sdk::{Field, Value};

    fn write(r: &str, op: Op) -> Write {
        Write { ref_: r.into(), op }
    }
    fn update(id: &str) -> Op {
        Op::Update(UpdateOp {
            id: id.into(),
            if_version: None,
            fields: vec![],
        })
    }
    fn create() -> Op {
        Op::Create(CreateOp {
            fields: vec![],
            marker: None,
            containers: vec![],
        })
    }
    fn add(container: &str, ids: &[&str]) -> Op {
        Op::AddToContainer(MembershipOp {
            container: container.into(),
            ids: ids.iter().map(|s| s.to_string()).collect(),
        })
    }

    type Segments = Vec<Vec<usize>>;

    #[test]
    fn segments_cut_where_a_contact_repeats() {
        // (case, ops, expected segments)
        let cases: Vec<(&str, Vec<Op>, Segments)> = vec![
            ("nothing", vec![], vec![]),
            (
                "creates never repeat",
                vec![create(), create(), create()],
                vec![vec![0, 1, 2]],
            ),
            (
                "distinct contacts form one segment",
                vec![
                    update("people/c1"),
                    Op::Delete("people/c2".into()),
                    add("g", &["people/c3"]),
                    create(),
                ],
                vec![vec![0, 1, 2, 3]],
            ),
            (
                "an update then a delete of the same contact run in order",
                vec![
                    update("people/c1"),
                    update("people/c2"),
                    Op::Delete("c1".into()),
                ],
                vec![vec![0, 1], vec![2]],
            ),
            (
                "membership ids count",
                vec![
                    update("people/c1"),
                    add("g", &["people/c2", "people/c1"]),
                    update("people/c2"),
                ],
                vec![vec![0], vec![1], vec![2]],
            ),
            (
                "an id twice in one membership write does not loop",
                vec![add("g", &["people/c1", "people/c1"]), update("people/c3")],
                vec![vec![0, 1]],
            ),
        ];
        for (case, ops, want) in cases {
            let writes: Vec<Write> = ops
                .into_iter()
                .enumerate()
                .map(|(i, op)| write(&i.to_string(), op))
                .collect();
            assert_eq!(segments(&writes), want, "{case}");
        }
    }

    fn person() -> Json {
        json!({"resourceName": "people/c1", "etag": "%E1",
               "names": [{"givenName": "Ada", "familyName": "Lovelace", "metadata": {"primary": true}}]})
    }

    #[test]
    fn updates_are_planned_against_the_current_contact() {
        let op = |version: Option<&str>, fields: Vec<Field>| UpdateOp {
            id: "people/c1".into(),
            if_version: version.map(Into::into),
            fields,
        };
        let current = Ok(person());
        let planned = plan_update(
            "people/c1",
            &op(
                Some("%E1"),
                vec![Field::new(mapping::GIVEN_NAME, "Augusta")],
            ),
            Some(&current),
        )
        .unwrap();
        assert_eq!(
            planned,
            Planned::Write {
                mask: "names".into(),
                body: json!({"etag": "%E1", "names": [{"givenName": "Augusta", "familyName": "Lovelace"}]}),
                alone: false,
            }
        );
        // No version given: the etag just read is sent.
        let planned = plan_update(
            "people/c1",
            &op(None, vec![Field::new(mapping::NOTES, "x")]),
            Some(&current),
        )
        .unwrap();
        assert!(
            matches!(planned, Planned::Write { ref mask, ref body, alone: false } if mask == "biographies" && body["etag"] == "%E1")
        );
        // Nothing to change: no write, the record as it is.
        let planned = plan_update(
            "people/c1",
            &op(Some("%E1"), vec![Field::new(mapping::GIVEN_NAME, "Ada")]),
            Some(&current),
        )
        .unwrap();
        assert!(
            matches!(planned, Planned::Unchanged(ref r) if r.version.as_deref() == Some("%E1"))
        );
        // A version other than the one just read is sent as is, on its own: Google
        // decides (etags are compared by the server, whatever their form).
        let planned = plan_update(
            "people/c1",
            &op(Some("%E0"), vec![Field::new(mapping::NOTES, "x")]),
            Some(&current),
        )
        .unwrap();
        assert!(
            matches!(planned, Planned::Write { ref body, alone: true, .. } if body["etag"] == "%E0"),
            "{planned:?}"
        );
        // Gone, or a bad field.
        let gone = Err(Error::not_found("x"));
        assert!(matches!(
            plan_update("people/c1", &op(None, vec![]), Some(&gone)),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            plan_update("people/c1", &op(None, vec![]), None),
            Err(Error::NotFound(_))
        ));
        let bad = vec![Field::new(mapping::DISPLAY_NAME, Value::text("x"))];
        assert!(matches!(
            plan_update("people/c1", &op(None, bad), Some(&current)),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn create_bodies_validate_containers() {
        let op = CreateOp {
            fields: vec![Field::new(mapping::EMAIL, "a@x.io")],
            marker: Some("m".into()),
            containers: vec!["friends2".into()],
        };
        let body = create_body(&op).unwrap();
        assert_eq!(
            body["memberships"][1]["contactGroupMembership"]["contactGroupResourceName"],
            "contactGroups/friends2"
        );
        assert_eq!(body["clientData"][0]["value"], "m");
        let bad = CreateOp {
            containers: vec!["a/b".into()],
            ..op
        };
        assert!(
            create_body(&bad)
                .unwrap_err()
                .contains("not a contact group id")
        );
    }

    #[test]
    fn pointer_escapes_resource_names() {
        assert_eq!(pointer_escape("people/c1"), "people~1c1");
        let reply = json!({"updateResult": {"people/c1": {"person": {}}}});
        assert!(
            reply
                .pointer(&format!("/updateResult/{}", pointer_escape("people/c1")))
                .is_some()
        );
    }
}
