//! Phase 2, observe (sync-rules P2): read both sides into what the planner needs. Pages are
//! pulled from the saved cursors (a full listing when a cursor expired or the
//! mapping changed), records due for retry and open ambiguities are re-read,
//! and unmatched e-mails are looked up on the other side. The read bounds of
//! `[syncs.NAME.limits]` are enforced here.

use std::collections::{BTreeMap, BTreeSet};

use crate::sync::baseline::{Baseline, Link, LinkState};
use crate::sync::mapping::ResolvedMapping;
use crate::sync::model::{Record, RecordKey, Side, SidePair, normalise_email};
use crate::sync::plan::{EntityInput, Observation, Observed};
use crate::sync::policy::Scope;
use crate::sync::source::{
    EntityInfo, Lookup, MapContext, Mappers, PullRequest, Source, SourceError,
};
use crate::sync::state::RetryEntry;

use super::{
    Engine, EngineError, Gathered, IDS_PER_FIND, MapperFailure, RunOptions, cursor_digest, lock,
    record_size,
};

impl<'a, S: Source, M: Mappers> Engine<'a, S, M> {
    /// Links deleted on both sides, waiting for their tombstones to expire.
    pub(super) fn gone_links(
        &self,
        links: &BTreeMap<String, Link>,
    ) -> Result<BTreeSet<String>, EngineError> {
        let tomb: BTreeSet<RecordKey> = self
            .store
            .tombstone_rows(self.sync())?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        Ok(links
            .values()
            .filter(|l| {
                let ids: Vec<(Side, &str)> = Side::BOTH
                    .into_iter()
                    .filter_map(|s| l.id(s).map(|i| (s, i)))
                    .collect();
                !ids.is_empty()
                    && ids
                        .iter()
                        .all(|(s, i)| tomb.contains(&RecordKey::new(l.entity, *s, *i)))
            })
            .map(|l| l.key.clone())
            .collect())
    }

    pub(super) async fn observe(&self, opts: &RunOptions) -> Result<Gathered, EngineError> {
        let sync = self.sync();
        let mut all_infos: SidePair<Option<Vec<EntityInfo>>> = SidePair::default();
        let mut out = Gathered {
            inputs: Vec::new(),
            baseline: Baseline::default(),
            cursors: Vec::new(),
            infos: Vec::new(),
            fingerprints: Vec::new(),
        };
        // A new operator decision: read everything once, so that the records
        // it names are planned again although they did not change.
        let rescan = self.store.rescan(sync)?;
        for (ix, pair) in self.policy.entities.iter().enumerate() {
            let mut infos: Vec<EntityInfo> = Vec::new();
            for side in Side::BOTH {
                if all_infos.get(side).is_none() {
                    let list = self
                        .source(side)
                        .entities()
                        .await
                        .map_err(self.source_err(side, "describe"))?;
                    *all_infos.get_mut(side) = Some(list);
                }
                let info = all_infos
                    .get(side)
                    .iter()
                    .flatten()
                    .find(|i| i.name == pair.name(side))
                    .cloned();
                let info = info.ok_or_else(|| EngineError::NoEntity {
                    sync: sync.into(),
                    side,
                    connection: self.names.get(side).clone(),
                    entity: pair.name(side).into(),
                })?;
                infos.push(info);
            }
            let infos = SidePair::new(infos[0].clone(), infos[1].clone());
            let mapping = self.mapping_for(ix).await?;
            let fingerprint = mapping.fingerprint();
            let full = opts.full
                || rescan
                || self.store.mapping(sync, ix)?.as_deref() != Some(fingerprint.as_str());
            let mut containers: SidePair<Option<String>> = SidePair::default();
            let mut obs: SidePair<Observation> = SidePair::default();
            let mut cursors: SidePair<Option<String>> = SidePair::default();
            for side in Side::BOTH {
                let container = self.container(side, pair.name(side)).await?;
                let cursor = if full {
                    None
                } else {
                    self.store.cursor(sync, ix, side)?
                };
                let (o, next) = self
                    .listing(
                        side,
                        ix,
                        infos.get(side),
                        &mapping,
                        container.clone(),
                        cursor,
                    )
                    .await?;
                *obs.get_mut(side) = o;
                *cursors.get_mut(side) = next;
                *containers.get_mut(side) = container;
            }
            out.inputs.push(EntityInput {
                pair: pair.clone(),
                mapping,
                containers,
                obs,
            });
            out.cursors.push(cursors);
            out.infos.push(infos);
            out.fingerprints.push(fingerprint);
        }
        self.reread_retries(&mut out, opts).await?;
        self.reread_ambiguous(&mut out).await?;
        let mut links = self.load_links(&out)?;
        self.lookups(&mut out, &mut links).await?;
        self.missing(&mut out, &links).await?;
        let gone = self.gone_links(&links)?;
        // The breakers weigh a plan against the number of links, which reads every link
        // key: the engine counts them after planning, only when the plan needs it
        // (`plan::needs_link_counts`).
        out.baseline = Baseline {
            links,
            counts: BTreeMap::new(),
            run: self.store.next_run(sync)?,
            decisions: self.store.decisions(sync)?,
            gone,
        };
        Ok(out)
    }

    /// The container id of a side's scope.
    pub(super) async fn container(
        &self,
        side: Side,
        entity: &str,
    ) -> Result<Option<String>, EngineError> {
        let Scope::Container(want) = self.policy.scope.get(side) else {
            return Ok(None);
        };
        let list = self
            .source(side)
            .containers(entity)
            .await
            .map_err(self.source_err(side, "containers"))?;
        let hit = list
            .iter()
            .find(|c| c.id == *want)
            .or_else(|| list.iter().find(|c| c.name == *want));
        match hit {
            Some(c) => Ok(Some(c.id.clone())),
            None => Err(EngineError::NoContainer {
                sync: self.sync().into(),
                side,
                connection: self.names.get(side).clone(),
                entity: entity.into(),
                container: want.clone(),
                available: list
                    .iter()
                    .map(|c| format!("`{}`", c.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Pulls every page from `cursor` (a full listing when `None`, or when the
    /// cursor expired). Returns the observation and the checkpoint to save.
    pub(super) async fn listing(
        &self,
        side: Side,
        ix: usize,
        info: &EntityInfo,
        mapping: &ResolvedMapping,
        container: Option<String>,
        cursor: Option<String>,
    ) -> Result<(Observation, Option<String>), EngineError> {
        let mut cursor = cursor;
        'restart: loop {
            let full = cursor.is_none();
            let mut obs = Observation {
                complete: full,
                ..Observation::default()
            };
            let mut next = cursor.clone();
            let limits = &self.policy.limits;
            // Cursors already asked for in this listing (digests, so that long ones cost
            // nothing): asking again would go round in a circle.
            let mut asked: BTreeSet<[u8; 32]> = BTreeSet::new();
            let (mut records_n, mut bytes_n) = (0u64, 0u64);
            // Without rules the engine reads only some of a record's fields: the others
            // (an app's dozens of system and custom fields) are dropped once the mappers
            // ran, which on a first sync of a large pair is most of the records' memory.
            let keep = self
                .policy
                .rules
                .is_empty()
                .then(|| mapping.read_fields(side));
            loop {
                if !asked.insert(cursor_digest(next.as_deref())) {
                    return Err(self.read_limit(
                        side,
                        format!(
                            "the connector's listing of `{}` did not advance (it returned a cursor it had returned before, with more pages to come): its pagination is broken",
                            info.name
                        ),
                    ));
                }
                let req = PullRequest {
                    entity: info.name.clone(),
                    container: container.clone(),
                    cursor: next.clone(),
                    full,
                    page_size: info.max_page_size.clamp(1, 1000),
                };
                let page = match self.source(side).pull(req).await {
                    Ok(p) => p,
                    Err(SourceError::CursorExpired(_)) if cursor.is_some() => {
                        tracing::info!(sync = self.sync(), %side, entity = %info.name, "cursor expired: full listing compared with the baseline");
                        cursor = None;
                        continue 'restart;
                    }
                    Err(e) => return Err(self.source_err(side, "pull")(e)),
                };
                if let Some(c) = &page.next_cursor
                    && c.len() as u64 > limits.cursor_bytes
                {
                    return Err(self.read_limit(
                        side,
                        format!(
                            "the connector returned a cursor of {} bytes for `{}`, more than {} (limits.cursor-size)",
                            c.len(),
                            info.name,
                            limits.cursor_bytes
                        ),
                    ));
                }
                self.tally(side, &page.records, page.deleted.len())?;
                records_n += (page.records.len() + page.deleted.len()) as u64;
                bytes_n += page.records.iter().map(record_size).sum::<u64>()
                    + 32 * page.deleted.len() as u64;
                if records_n > limits.listing_records {
                    return Err(self.read_limit(
                        side,
                        format!(
                            "the listing of `{}` returned more than {} records (limits.listing-records)",
                            info.name, limits.listing_records
                        ),
                    ));
                }
                if bytes_n > limits.listing_bytes {
                    return Err(self.read_limit(
                        side,
                        format!(
                            "the listing of `{}` returned more than {} bytes (limits.listing-size)",
                            info.name, limits.listing_bytes
                        ),
                    ));
                }
                obs.deleted.extend(page.deleted);
                let (records, failed) = self.map_records(side, ix, mapping, page.records).await;
                for mut r in records {
                    if let Some(keep) = &keep {
                        r.fields = std::mem::take(&mut r.fields)
                            .into_iter()
                            .filter(|(name, _)| keep.contains(name))
                            .collect();
                    }
                    obs.deleted.remove(&r.id);
                    obs.listed(r);
                }
                obs.failed.extend(failed);
                next = page.next_cursor.or(next);
                if !page.more {
                    return Ok((obs, next));
                }
            }
        }
    }

    /// Runs the sync's mappers over records read from `side`.
    ///
    /// A mapper may reshape any field but the record's match e-mail (the normalised
    /// value of the field paired as `email`, by which records are matched across the
    /// apps): a result that changes it is refused and fails that record, as a mapper
    /// error does. Changing it would re-match the record to another person, or create a
    /// duplicate of it, with nothing in the source app to show why.
    pub(super) async fn map_records(
        &self,
        side: Side,
        ix: usize,
        mapping: &ResolvedMapping,
        records: Vec<Record>,
    ) -> (Vec<Record>, BTreeMap<String, String>) {
        let mut failed = BTreeMap::new();
        if self.policy.mappers.is_empty() || records.is_empty() {
            return (records, failed);
        }
        let ctx = MapContext {
            sync: self.sync().into(),
            source: self.names.get(side).clone(),
            target: self.names.get(side.other()).clone(),
            entity: self.policy.entities[ix].name(side).into(),
        };
        let mut current = records;
        for name in &self.policy.mappers {
            let keys: Vec<(String, Option<String>)> = current
                .iter()
                .map(|r| (r.id.clone(), mapping.match_key(side, r)))
                .collect();
            let mut results = self.mappers.map(name, &ctx, current).await.into_iter();
            let mut next = Vec::new();
            for (id, key) in keys {
                match results.next() {
                    Some(Ok(Some(mut r))) if mapping.match_key(side, &r) == key => {
                        r.id = id;
                        next.push(r);
                    }
                    Some(Ok(None)) => {
                        failed.insert(id, format!("dropped by mapper `{name}`"));
                    }
                    Some(outcome) => {
                        let error = match outcome {
                            Err(e) => format!("mapper `{name}` failed: {e}"),
                            Ok(_) => format!(
                                "mapper `{name}` changed the record's match e-mail (the field paired as `email`): refused; a mapper may reshape other fields, but records are matched by that address"
                            ),
                        };
                        lock(&self.mapper_failures).push(MapperFailure {
                            entity: ix,
                            side,
                            id: id.clone(),
                            error: error.clone(),
                        });
                        failed.insert(id, error);
                    }
                    None => {
                        failed.insert(id, format!("mapper `{name}` returned no result"));
                    }
                }
            }
            current = next;
        }
        (current, failed)
    }

    /// Re-reads records whose writes failed earlier (the retry index), so that
    /// they are planned again although the cursor moved past them.
    pub(super) async fn reread_retries(
        &self,
        out: &mut Gathered,
        opts: &RunOptions,
    ) -> Result<(), EngineError> {
        let due: Vec<RetryEntry> = self
            .store
            .retries(self.sync())?
            .into_iter()
            .filter(|r| r.next_attempt_at <= opts.now)
            .collect();
        let mut by: BTreeMap<(usize, Side), Vec<String>> = BTreeMap::new();
        for r in due {
            if r.entity < out.inputs.len()
                && !out.inputs[r.entity]
                    .obs
                    .get(r.side)
                    .records
                    .contains_key(&r.id)
            {
                by.entry((r.entity, r.side)).or_default().push(r.id);
            }
        }
        for ((ix, side), ids) in by {
            let entity = self.policy.entities[ix].name(side).to_string();
            for chunk in ids.chunks(IDS_PER_FIND) {
                let found = self.find_ids(side, &entity, chunk).await?;
                self.tally(side, &found, 0)?;
                let (records, failed) = self
                    .map_records(side, ix, &out.inputs[ix].mapping, found)
                    .await;
                let obs = out.inputs[ix].obs.get_mut(side);
                let seen: BTreeSet<String> = records
                    .iter()
                    .map(|r| r.id.clone())
                    .chain(failed.keys().cloned())
                    .collect();
                for r in records {
                    obs.listed(r);
                }
                obs.failed.extend(failed);
                for id in chunk.iter().filter(|id| !seen.contains(*id)) {
                    obs.deleted.insert(id.clone());
                }
            }
        }
        Ok(())
    }

    /// Reads the other candidates of an unresolved ambiguity when this run read one of
    /// them: an incremental listing shows only what changed, and judged on part of its
    /// candidates the match would look unique and be guessed (invariant 8).
    pub(super) async fn reread_ambiguous(&self, out: &mut Gathered) -> Result<(), EngineError> {
        let mut by: BTreeMap<(usize, Side), BTreeSet<String>> = BTreeMap::new();
        for p in self.store.pending_ambiguities(self.sync())? {
            let Some(e) = out.inputs.get(p.entity) else {
                continue;
            };
            let ids = SidePair::new(&p.a, &p.b);
            let read = |s: Side| {
                ids.get(s)
                    .iter()
                    .any(|i| e.obs.get(s).records.contains_key(i.as_str()))
            };
            if !read(Side::A) && !read(Side::B) {
                continue;
            }
            for s in Side::BOTH {
                let o = e.obs.get(s);
                for id in ids.get(s).iter() {
                    if !o.records.contains_key(id.as_str())
                        && !o.deleted.contains(id.as_str())
                        && !o.failed.contains_key(id.as_str())
                    {
                        by.entry((p.entity, s)).or_default().insert(id.clone());
                    }
                }
            }
        }
        for ((ix, side), ids) in by {
            // Read by id, its list membership is unknown (as for a lookup).
            let in_scope = *self.policy.scope.get(side) == Scope::All;
            let ids: Vec<String> = ids.into_iter().collect();
            self.read_ids(out, ix, side, &ids, in_scope).await?;
        }
        Ok(())
    }

    /// Reads records of entity pair `ix`'s side by id into the run's observations
    /// (a record the listing gave stays as listed).
    pub(super) async fn read_ids(
        &self,
        out: &mut Gathered,
        ix: usize,
        side: Side,
        ids: &[String],
        in_scope: bool,
    ) -> Result<(), EngineError> {
        let entity = self.policy.entities[ix].name(side).to_string();
        for chunk in ids.chunks(IDS_PER_FIND) {
            let found = self.find_ids(side, &entity, chunk).await?;
            self.tally(side, &found, 0)?;
            let (records, failed) = self
                .map_records(side, ix, &out.inputs[ix].mapping, found)
                .await;
            let obs = out.inputs[ix].obs.get_mut(side);
            for r in records {
                obs.records.entry(r.id.clone()).or_insert(Observed {
                    record: r,
                    in_scope,
                });
            }
            obs.failed.extend(failed);
        }
        Ok(())
    }

    /// Records that exist by id (re-reads, fetches): through `find-many`, where a
    /// connector can read many ids with one search.
    pub(super) async fn find_ids(
        &self,
        side: Side,
        entity: &str,
        ids: &[String],
    ) -> Result<Vec<Record>, EngineError> {
        let found = self
            .source(side)
            .find_many(entity, vec![Lookup::Ids(ids.to_vec())])
            .await
            .map_err(self.source_err(side, "find"))?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Reads linked records the planner asked for (fields without a base).
    pub(super) async fn fetch(
        &self,
        out: &mut Gathered,
        wanted: &[RecordKey],
    ) -> Result<(), EngineError> {
        let mut by: BTreeMap<(usize, Side), Vec<String>> = BTreeMap::new();
        for k in wanted {
            by.entry((k.entity, k.side)).or_default().push(k.id.clone());
        }
        for ((ix, side), ids) in by {
            self.read_ids(out, ix, side, &ids, true).await?;
        }
        Ok(())
    }

    /// The links touching anything observed (all links when a side was listed in full).
    pub(super) fn load_links(&self, out: &Gathered) -> Result<BTreeMap<String, Link>, EngineError> {
        let sync = self.sync();
        let any_full = out
            .inputs
            .iter()
            .any(|e| e.obs.a.complete || e.obs.b.complete);
        let links = if any_full {
            self.store.links(sync)?
        } else {
            let mut keys: Vec<(Side, String, String)> = Vec::new();
            for e in &out.inputs {
                for side in Side::BOTH {
                    let o = e.obs.get(side);
                    let entity = e.pair.name(side).to_string();
                    for id in o
                        .records
                        .keys()
                        .chain(o.deleted.iter())
                        .chain(o.left_scope.iter())
                        .chain(o.failed.keys())
                    {
                        keys.push((side, entity.clone(), id.clone()));
                    }
                }
            }
            self.store.links_for(
                sync,
                keys.iter().map(|(s, e, i)| (*s, e.as_str(), i.as_str())),
            )?
        };
        // Links the operator acted on (`tandem sync resolve`) are planned
        // although their records did not change.
        let rechecks = self.store.rechecks(sync)?;
        Ok(links
            .into_iter()
            .chain(rechecks)
            .map(|l| (l.key.clone(), l))
            .collect())
    }

    /// Looks up, on the other side, the e-mails of unlinked records, when that
    /// side was not listed in full (sync-rules E5: match before create).
    pub(super) async fn lookups(
        &self,
        out: &mut Gathered,
        links: &mut BTreeMap<String, Link>,
    ) -> Result<(), EngineError> {
        for ix in 0..out.inputs.len() {
            for side in Side::BOTH {
                let other = side.other();
                // A complete listing of a list (not of the whole app) can still miss a
                // record the app holds outside the list: creating it there would
                // overwrite that record (an upsert), consent included.
                let scoped = *self.policy.scope.get(other) != Scope::All;
                if (out.inputs[ix].obs.get(other).complete && !scoped) || !self.policy.flows(side) {
                    continue;
                }
                let listed: BTreeSet<String> = if out.inputs[ix].obs.get(other).complete {
                    let e = &out.inputs[ix];
                    e.obs
                        .get(other)
                        .records
                        .values()
                        .flat_map(|o| e.mapping.emails(other, &o.record))
                        .collect()
                } else {
                    BTreeSet::new()
                };
                let linked: BTreeSet<&str> = links.values().filter_map(|l| l.id(side)).collect();
                let e = &out.inputs[ix];
                let emails: BTreeSet<String> = e
                    .obs
                    .get(side)
                    .records
                    .values()
                    .filter(|o| o.in_scope && !linked.contains(o.record.id.as_str()))
                    // A record the rules keep from the other side needs no counterpart
                    // there: looking it up would only spend the other app's budget.
                    .filter(|o| {
                        crate::sync::rules::evaluate(
                            &self.policy.rules,
                            side,
                            &o.record,
                            &e.mapping,
                            true,
                        )
                        .skip
                        .is_none()
                    })
                    // Every address, secondary ones too: the other side may know
                    // the person by any of them.
                    .flat_map(|o| e.mapping.emails(side, &o.record))
                    .filter(|m| !listed.contains(m))
                    .collect();
                // A linked record deleted on `other`: a record with the same
                // e-mail there may replace it (re-pointed, not re-created).
                let email_key = e.mapping.email_pair().key.clone();
                let replaced: Vec<String> = links
                    .values()
                    .filter(|l| {
                        l.entity == ix
                            && l.id(other)
                                .is_some_and(|id| e.obs.get(other).deleted.contains(id))
                    })
                    .filter_map(|l| match l.fields.get(&email_key).map(|f| &f.value) {
                        Some(crate::sync::model::Value::Text(m)) => Some(m.clone()),
                        _ => l.match_key.clone(),
                    })
                    .collect();
                let emails: BTreeSet<String> = emails.into_iter().chain(replaced).collect();
                let entity = e.pair.name(other).to_string();
                let other_all = *self.policy.scope.get(other) == Scope::All;
                let emails: Vec<String> = emails
                    .into_iter()
                    .filter(|m| !out.inputs[ix].obs.get(other).searched.contains(m))
                    .collect();
                if emails.is_empty() {
                    continue;
                }
                // One batch for every address (a few requests for connectors with
                // `lookup-api`, one `find` per address for the others).
                let found = self
                    .source(other)
                    .find_many(
                        &entity,
                        emails
                            .iter()
                            .map(|m| Lookup::Email(normalise_email(m)))
                            .collect(),
                    )
                    .await
                    .map_err(self.source_err(other, "find"))?;
                // A record found by several addresses is mapped and kept once.
                let mut unique: BTreeMap<String, Record> = BTreeMap::new();
                for r in found.into_iter().flatten() {
                    unique.entry(r.id.clone()).or_insert(r);
                }
                let found: Vec<Record> = unique.into_values().collect();
                self.tally(other, &found, 0)?;
                let (records, failed) = self
                    .map_records(other, ix, &out.inputs[ix].mapping, found)
                    .await;
                let more = self.store.links_for(
                    self.sync(),
                    records
                        .iter()
                        .map(|r| (other, entity.as_str(), r.id.as_str())),
                )?;
                for l in more {
                    links.entry(l.key.clone()).or_insert(l);
                }
                let obs = out.inputs[ix].obs.get_mut(other);
                for r in records {
                    obs.records.entry(r.id.clone()).or_insert(Observed {
                        record: r,
                        in_scope: other_all,
                    });
                }
                obs.failed.extend(failed);
                obs.searched.extend(emails);
            }
        }
        Ok(())
    }

    /// Linked records missing from a complete listing: deleted, or out of scope?
    pub(super) async fn missing(
        &self,
        out: &mut Gathered,
        links: &BTreeMap<String, Link>,
    ) -> Result<(), EngineError> {
        for ix in 0..out.inputs.len() {
            for side in Side::BOTH {
                let obs = out.inputs[ix].obs.get(side);
                if !obs.complete {
                    continue;
                }
                let ids: Vec<String> = links
                    .values()
                    .filter(|l| {
                        l.entity == ix && !matches!(l.state, LinkState::Removed(s) if s == side)
                    })
                    .filter_map(|l| l.id(side))
                    .filter(|id| {
                        !obs.records.contains_key(*id)
                            && !obs.deleted.contains(*id)
                            && !obs.failed.contains_key(*id)
                    })
                    .map(str::to_string)
                    .collect();
                let entity = self.policy.entities[ix].name(side).to_string();
                let scoped = *self.policy.scope.get(side) != Scope::All;
                for chunk in ids.chunks(IDS_PER_FIND) {
                    let found = self
                        .source(side)
                        .find(&entity, Lookup::Ids(chunk.to_vec()))
                        .await
                        .map_err(self.source_err(side, "find"))?;
                    let present: BTreeMap<String, Record> =
                        found.into_iter().map(|r| (r.id.clone(), r)).collect();
                    let obs = out.inputs[ix].obs.get_mut(side);
                    for id in chunk {
                        match present.get(id) {
                            Some(_) if scoped => {
                                obs.left_scope.insert(id.clone());
                            }
                            Some(r) => obs.listed(r.clone()),
                            None => {
                                obs.deleted.insert(id.clone());
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
