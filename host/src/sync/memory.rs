//! An in-memory app implementing [`Source`]: records with versions and change
//! times, deletions with tombstones, containers, opaque cursors that expire,
//! lookups by e-mail, marker and ids, its own reformatting of stored values,
//! and fault injection. A test double for the engine's unit tests only.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;

use tandem_well_known as wk;

use super::model::{Record, Value};
use super::source::{
    Container, EntityInfo, FieldDef, Lookup, Page, PullRequest, Source, SourceError, Write,
    WriteOp, WriteResult,
};

/// How the app rewrites stored fields (phone formats, capitalisation...).
pub type Normaliser = fn(&mut BTreeMap<String, Value>);

/// One simulated app account with one entity.
pub struct MemoryApp {
    entity: String,
    schema: Vec<FieldDef>,
    prefix: String,
    normalise: Normaliser,
    batch: u32,
    page: u32,
    /// List membership changes move `updated_at` (as Freshworks does).
    member_stamps: bool,
    state: Mutex<State>,
}

impl std::fmt::Debug for MemoryApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryApp({})", self.prefix)
    }
}

#[derive(Default)]
struct State {
    records: BTreeMap<String, Stored>,
    containers: BTreeMap<String, (String, BTreeSet<String>)>,
    seq: u64,
    next_id: u64,
    deleted: Vec<(u64, String)>,
    /// Cursors at or below this change number are expired.
    expired_below: u64,
    faults: Faults,
    /// Calls made, by kind.
    calls: BTreeMap<&'static str, usize>,
}

#[derive(Clone)]
struct Stored {
    record: Record,
    marker: Option<String>,
    seq: u64,
}

/// Injected failures.
#[derive(Default)]
struct Faults {
    /// Errors returned by the next `push` calls, whole-call.
    push_calls: VecDeque<SourceError>,
    /// Per-write errors: by record id (updates, deletes) or by e-mail (creates).
    writes: BTreeMap<String, VecDeque<SourceError>>,
    /// Apply the next push, then answer with this error (a lost response).
    lose_response: Option<SourceError>,
    /// Errors returned by the next `pull` calls.
    pulls: VecDeque<SourceError>,
}

fn no_normalise(_: &mut BTreeMap<String, Value>) {}

impl MemoryApp {
    /// An app with one entity; ids start with `prefix`.
    pub fn new(entity: &str, prefix: &str, schema: Vec<FieldDef>) -> Self {
        MemoryApp {
            entity: entity.into(),
            schema,
            prefix: prefix.into(),
            normalise: no_normalise,
            batch: 50,
            page: 25,
            member_stamps: false,
            state: Mutex::new(State::default()),
        }
    }

    /// Sets how the app rewrites what it stores.
    pub fn with_normaliser(mut self, n: Normaliser) -> Self {
        self.normalise = n;
        self
    }

    /// Sets the push batch size it reports.
    pub fn with_batch(mut self, n: u32) -> Self {
        self.batch = n;
        self
    }

    /// List membership changes move the record's change time and version.
    pub fn with_membership_stamps(mut self) -> Self {
        self.member_stamps = true;
        self
    }

    /// Sets the largest page it returns.
    pub fn with_page_size(mut self, n: u32) -> Self {
        self.page = n;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A user creates a record.
    pub fn insert(&self, fields: &[(&str, Value)]) -> String {
        let fields = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let mut s = self.lock();
        self.create(&mut s, fields, None)
    }

    /// A user edits fields of a record.
    pub fn edit(&self, id: &str, fields: &[(&str, Value)]) {
        let mut s = self.lock();
        s.seq += 1;
        let seq = s.seq;
        let st = s.records.get_mut(id).expect("edit of an existing record");
        for (k, v) in fields {
            st.record.fields.insert(k.to_string(), v.clone());
        }
        (self.normalise)(&mut st.record.fields);
        stamp(st, seq);
    }

    /// A user deletes a record.
    pub fn delete(&self, id: &str) {
        let mut s = self.lock();
        s.seq += 1;
        let seq = s.seq;
        s.records.remove(id);
        s.deleted.push((seq, id.to_string()));
        for (_, m) in s.containers.values_mut() {
            m.remove(id);
        }
    }

    /// Creates a container, returning its id.
    pub fn add_container(&self, name: &str) -> String {
        let mut s = self.lock();
        let id = format!("{}L{}", self.prefix, s.containers.len() + 1);
        s.containers
            .insert(id.clone(), (name.into(), BTreeSet::new()));
        id
    }

    /// A user adds a record to a container.
    pub fn add_member(&self, container: &str, id: &str) {
        let mut s = self.lock();
        touch_member(&mut s, container, id, true, self.member_stamps);
    }

    /// A user removes a record from a container.
    pub fn remove_member(&self, container: &str, id: &str) {
        let mut s = self.lock();
        touch_member(&mut s, container, id, false, self.member_stamps);
    }

    /// Members of a container.
    pub fn members(&self, container: &str) -> BTreeSet<String> {
        self.lock()
            .containers
            .get(container)
            .map(|c| c.1.clone())
            .unwrap_or_default()
    }

    /// Every record, by id.
    pub fn records(&self) -> BTreeMap<String, Record> {
        self.lock()
            .records
            .iter()
            .map(|(k, v)| (k.clone(), v.record.clone()))
            .collect()
    }

    /// One record.
    pub fn get(&self, id: &str) -> Option<Record> {
        self.lock().records.get(id).map(|s| s.record.clone())
    }

    /// Makes every cursor handed out so far invalid.
    pub fn expire_cursors(&self) {
        let mut s = self.lock();
        s.expired_below = s.seq + 1;
    }

    /// The next `push` call fails as a whole with `e`.
    pub fn fail_next_push(&self, e: SourceError) {
        self.lock().faults.push_calls.push_back(e);
    }

    /// The next write touching `key` (a record id, or a create's e-mail) fails with `e`.
    pub fn fail_write(&self, key: &str, e: SourceError) {
        self.lock()
            .faults
            .writes
            .entry(key.into())
            .or_default()
            .push_back(e);
    }

    /// The next push is applied but its answer is lost (the call fails with `e`).
    pub fn lose_next_response(&self, e: SourceError) {
        self.lock().faults.lose_response = Some(e);
    }

    /// The next `pull` fails with `e`.
    pub fn fail_next_pull(&self, e: SourceError) {
        self.lock().faults.pulls.push_back(e);
    }

    /// Calls made so far, by kind (`pull`, `find`, `push`, `write`).
    pub fn calls(&self, kind: &str) -> usize {
        self.lock().calls.get(kind).copied().unwrap_or(0)
    }

    fn email_of(&self, r: &Record) -> Option<String> {
        let f = self.schema.iter().find(|d| d.is(wk::EMAIL))?;
        r.fields
            .get(&f.name)?
            .as_text()
            .map(|s| s.trim().to_lowercase())
    }

    fn create(
        &self,
        s: &mut State,
        mut fields: BTreeMap<String, Value>,
        marker: Option<String>,
    ) -> String {
        s.seq += 1;
        s.next_id += 1;
        let id = format!("{}{}", self.prefix, s.next_id);
        (self.normalise)(&mut fields);
        let mut st = Stored {
            record: Record {
                id: id.clone(),
                version: None,
                updated_at: None,
                fields,
            },
            marker,
            seq: 0,
        };
        stamp(&mut st, s.seq);
        s.records.insert(id.clone(), st);
        id
    }

    fn apply(&self, s: &mut State, w: &Write) -> Result<Option<Record>, SourceError> {
        *s.calls.entry("write").or_default() += 1;
        let key = match &w.op {
            WriteOp::Create { fields, .. } => {
                let r = Record {
                    fields: fields.iter().cloned().collect(),
                    ..Record::default()
                };
                self.email_of(&r).unwrap_or_default()
            }
            WriteOp::Update { id, .. } | WriteOp::Delete(id) => id.clone(),
            WriteOp::AddToContainer { ids, .. } | WriteOp::RemoveFromContainer { ids, .. } => {
                ids.join(",")
            }
        };
        if let Some(e) = s.faults.writes.get_mut(&key).and_then(VecDeque::pop_front) {
            return Err(e);
        }
        match &w.op {
            WriteOp::Create {
                fields,
                marker,
                containers,
            } => {
                let id = self.create(s, fields.iter().cloned().collect(), marker.clone());
                for c in containers {
                    touch_member(s, c, &id, true, self.member_stamps);
                }
                Ok(Some(s.records[&id].record.clone()))
            }
            WriteOp::Update {
                id,
                if_version,
                fields,
            } => {
                s.seq += 1;
                let seq = s.seq;
                let st = s
                    .records
                    .get_mut(id)
                    .ok_or_else(|| SourceError::NotFound(id.clone()))?;
                if if_version.is_some() && *if_version != st.record.version {
                    return Err(SourceError::Conflict(format!("{id} changed")));
                }
                for (k, v) in fields {
                    st.record.fields.insert(k.clone(), v.clone());
                }
                (self.normalise)(&mut st.record.fields);
                stamp(st, seq);
                Ok(Some(st.record.clone()))
            }
            WriteOp::Delete(id) => {
                if !s.records.contains_key(id) {
                    return Err(SourceError::NotFound(id.clone()));
                }
                s.seq += 1;
                let seq = s.seq;
                s.records.remove(id);
                s.deleted.push((seq, id.clone()));
                for (_, m) in s.containers.values_mut() {
                    m.remove(id);
                }
                Ok(None)
            }
            WriteOp::AddToContainer { container, ids }
            | WriteOp::RemoveFromContainer { container, ids } => {
                if !s.containers.contains_key(container) {
                    return Err(SourceError::NotFound(container.clone()));
                }
                let add = matches!(w.op, WriteOp::AddToContainer { .. });
                for id in ids {
                    touch_member(s, container, id, add, self.member_stamps);
                }
                Ok(None)
            }
        }
    }
}

fn stamp(st: &mut Stored, seq: u64) {
    st.seq = seq;
    st.record.version = Some(seq.to_string());
    let t = time::OffsetDateTime::UNIX_EPOCH
        + time::Duration::seconds(1_700_000_000 + 120 * seq as i64);
    st.record.updated_at = t
        .format(&time::format_description::well_known::Rfc3339)
        .ok();
}

fn touch_member(s: &mut State, container: &str, id: &str, add: bool, stamps: bool) {
    s.seq += 1;
    let seq = s.seq;
    if let Some((_, m)) = s.containers.get_mut(container) {
        if add {
            m.insert(id.to_string());
        } else {
            m.remove(id);
        }
    }
    // A membership change shows in incremental listings of the container.
    if let Some(st) = s.records.get_mut(id) {
        if stamps {
            stamp(st, seq);
        } else {
            st.seq = seq;
        }
    }
}

/// Page cursors: `p:<since>:<offset>:<top>`; checkpoints: `c:<seq>`.
fn parse_cursor(c: &str) -> Option<(u64, usize, Option<u64>)> {
    let mut parts = c.split(':');
    match parts.next()? {
        "c" => Some((parts.next()?.parse().ok()?, 0, None)),
        "p" => Some((
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
            Some(parts.next()?.parse().ok()?),
        )),
        _ => None,
    }
}

impl Source for MemoryApp {
    async fn entities(&self) -> Result<Vec<EntityInfo>, SourceError> {
        Ok(vec![EntityInfo {
            name: self.entity.clone(),
            incremental: true,
            tombstones: true,
            containers: true,
            max_page_size: self.page,
            max_batch_size: self.batch,
        }])
    }

    async fn schema(&self, entity: &str) -> Result<Vec<FieldDef>, SourceError> {
        if entity != self.entity {
            return Err(SourceError::NotFound(entity.into()));
        }
        Ok(self.schema.clone())
    }

    async fn containers(&self, _entity: &str) -> Result<Vec<Container>, SourceError> {
        let s = self.lock();
        Ok(s.containers
            .iter()
            .map(|(id, (name, m))| Container {
                id: id.clone(),
                name: name.clone(),
                member_count: Some(m.len() as u64),
            })
            .collect())
    }

    async fn pull(&self, req: PullRequest) -> Result<Page, SourceError> {
        let mut s = self.lock();
        *s.calls.entry("pull").or_default() += 1;
        if let Some(e) = s.faults.pulls.pop_front() {
            return Err(e);
        }
        let (since, offset, top) = match (&req.cursor, req.full) {
            (Some(c), _) => {
                parse_cursor(c).ok_or_else(|| SourceError::Invalid(format!("bad cursor {c}")))?
            }
            (None, _) => (0, 0, None),
        };
        let (since, offset, top) = if req.full && top.is_none() {
            (0, 0, None)
        } else {
            (since, offset, top)
        };
        if since > 0 && since < s.expired_below {
            return Err(SourceError::CursorExpired("cursor too old".into()));
        }
        let top = top.unwrap_or(s.seq);
        let members = match &req.container {
            Some(c) => Some(
                s.containers
                    .get(c)
                    .ok_or_else(|| SourceError::NotFound(c.clone()))?
                    .1
                    .clone(),
            ),
            None => None,
        };
        let mut hits: Vec<&Stored> = s
            .records
            .values()
            .filter(|st| st.seq > since && st.seq <= top)
            .filter(|st| members.as_ref().is_none_or(|m| m.contains(&st.record.id)))
            .collect();
        hits.sort_by(|x, y| (x.seq, &x.record.id).cmp(&(y.seq, &y.record.id)));
        let size = req.page_size.clamp(1, self.page) as usize;
        let page: Vec<Record> = hits
            .iter()
            .skip(offset)
            .take(size)
            .map(|st| st.record.clone())
            .collect();
        let more = hits.len() > offset + page.len();
        let deleted = if offset == 0 && since > 0 {
            s.deleted
                .iter()
                .filter(|(q, _)| *q > since && *q <= top)
                .map(|(_, id)| id.clone())
                .collect()
        } else {
            Vec::new()
        };
        let next = if more {
            format!("p:{since}:{}:{top}", offset + page.len())
        } else {
            format!("c:{top}")
        };
        Ok(Page {
            records: page,
            deleted,
            next_cursor: Some(next),
            more,
        })
    }

    async fn find(&self, _entity: &str, lookup: Lookup) -> Result<Vec<Record>, SourceError> {
        let mut s = self.lock();
        *s.calls.entry("find").or_default() += 1;
        let hits = s.records.values().filter(|st| match &lookup {
            Lookup::Email(e) => {
                self.email_of(&st.record).as_deref() == Some(e.trim().to_lowercase().as_str())
            }
            Lookup::Marker(m) => st.marker.as_deref() == Some(m.as_str()),
            Lookup::Ids(ids) => ids.contains(&st.record.id),
        });
        Ok(hits.map(|st| st.record.clone()).collect())
    }

    async fn push(
        &self,
        _entity: &str,
        writes: Vec<Write>,
    ) -> Result<Vec<WriteResult>, SourceError> {
        let mut s = self.lock();
        *s.calls.entry("push").or_default() += 1;
        if let Some(e) = s.faults.push_calls.pop_front() {
            return Err(e);
        }
        let results: Vec<WriteResult> = writes
            .iter()
            .map(|w| WriteResult {
                reference: w.reference.clone(),
                outcome: self.apply(&mut s, w),
            })
            .collect();
        if let Some(e) = s.faults.lose_response.take() {
            return Err(e);
        }
        Ok(results)
    }

    /// Every `pull`, `find` and `push` call counts as one request to the app.
    fn requests(&self) -> Option<crate::sync::state::Requests> {
        Some(crate::sync::state::Requests {
            sent: ["pull", "find", "push"]
                .iter()
                .map(|k| self.calls(k) as u64)
                .sum(),
            ..Default::default()
        })
    }
}
