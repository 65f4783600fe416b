//! Phase 1, recover: ops an interrupted run left `planned` or `sent` are resolved
//! before anything is read or planned again (sync-rules P1).
//! A `sent` create is looked up by the engine's marker, then by e-mail, so that a
//! create the app received is never made twice; an update is re-planned; a create
//! that reached the app but not its list joins the list. Expired tombstones are
//! purged here too, before observation can match against them.

use std::collections::{BTreeMap, BTreeSet};

use crate::sync::model::{Record, Side};
use crate::sync::plan::{OpKind, PlannedOp, apply_ack};
use crate::sync::source::{Lookup, Mappers, Source, SourceError, Write, WriteOp};
use crate::sync::state::{OpStatus, OutboxEntry, Tombstone, TombstoneKey};

use super::{Engine, EngineError, RunOptions, write_op};

/// Records a recovery lookup found, per ((side, entity), marker or e-mail).
type Found = BTreeMap<((Side, String), String), Vec<Record>>;

impl<'a, S: Source, M: Mappers> Engine<'a, S, M> {
    /// Resolves ops an interrupted run left `planned` or `sent`.
    pub(super) async fn recover(&self, opts: &RunOptions) -> Result<(), EngineError> {
        let sync = self.sync();
        let stale: Vec<OutboxEntry> = self
            .store
            .outbox(sync)?
            .into_iter()
            .filter(|e| match e.status {
                OpStatus::Planned | OpStatus::Sent => true,
                // A failed create may have reached the app (a lost response).
                OpStatus::Failed => matches!(e.op.kind, OpKind::Create { .. }),
                OpStatus::Acked | OpStatus::Parked => false,
            })
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        // List membership is not re-derived by the next plan (a link matched
        // outside the list is stored before its add is acked): replay it.
        let (membership, stale): (Vec<OutboxEntry>, Vec<OutboxEntry>) =
            stale.into_iter().partition(|e| {
                matches!(e.status, OpStatus::Planned | OpStatus::Sent)
                    && matches!(
                        e.op.kind,
                        OpKind::AddToContainer { .. } | OpKind::RemoveFromContainer { .. }
                    )
            });
        self.replay_membership(membership, opts).await?;
        // The lookups of every create that may have been sent, in batches: markers
        // first, then the e-mails of those no marker found.
        let (by_marker, by_email) = self.recovery_lookups(&stale).await?;
        let mut resolved: Vec<(OutboxEntry, Option<Record>)> = Vec::new();
        for e in stale {
            let found = self.find_created(&e, &by_marker, &by_email)?;
            resolved.push((e, found));
        }
        // A create is the record *and* its list membership (the connector adds it
        // after creating it): a create found here may have missed its list.
        let unlisted = self.complete_membership(&resolved).await?;
        for (e, found) in resolved {
            let op = &e.op;
            if unlisted.contains(&op.id) {
                // Its list add failed for now: the row stays, the next run finds it again.
                continue;
            }
            let mapping = match &found {
                Some(_) => Some(self.mapping_for(op.entity).await?),
                None => None,
            };
            self.store.write(sync, |t| {
                match (&found, &mapping) {
                    (Some(r), Some(m)) => {
                        if let Some(mut link) = t.link(&op.link)? {
                            apply_ack(&mut link, op, Some(r), m, op.joint.is_empty());
                            let names = self.entity_names(op.entity);
                            t.put_link(&link, (names.a.as_str(), names.b.as_str()))?;
                            // Done: its records wait for no retry any more.
                            for s in Side::BOTH {
                                if let Some(id) = link.id(s) {
                                    t.remove_retry(op.entity, s, id)?;
                                }
                            }
                        }
                        // Found: acknowledged; the outbox row goes.
                        t.remove_op(&op.id)?;
                    }
                    // A failed create not found stays failed: its retry entry
                    // and back-off still apply; it is re-planned when due.
                    _ if e.status == OpStatus::Failed => {}
                    _ => t.remove_op(&op.id)?,
                }
                Ok(())
            })?;
        }
        // Runs that never finished are marked interrupted.
        let runs = self.store.runs(sync)?;
        self.store.write(sync, |t| {
            for mut r in runs.into_iter().filter(|r| r.outcome == "running") {
                r.outcome = "interrupted".into();
                r.ended_at = Some(opts.now);
                t.put_run(&r)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// The record an interrupted or unanswered create made, if it reached the app:
    /// found by its marker, then by its e-mail (one unlinked hit only), in the
    /// lookups [`Self::recovery_lookups`] made for the whole batch.
    pub(super) fn find_created(
        &self,
        e: &OutboxEntry,
        by_marker: &Found,
        by_email: &Found,
    ) -> Result<Option<Record>, EngineError> {
        let op = &e.op;
        // A `planned` create too: its `sent` mark is flushed with the run's
        // final commit, so after a crash it may have been sent all the same.
        let (OpStatus::Planned | OpStatus::Sent | OpStatus::Failed, OpKind::Create { marker, .. }) =
            (e.status, &op.kind)
        else {
            return Ok(None);
        };
        let sync = self.sync();
        let key = (op.side, op.entity_name.clone());
        if let Some(hits) = by_marker.get(&(key.clone(), marker.clone()))
            && hits.len() == 1
        {
            return Ok(hits.first().cloned());
        }
        if let Some(link) = self.store.link(sync, &op.link)?
            && let Some(email) = &link.match_key
            && let Some(hits) = by_email.get(&(key, email.clone()))
        {
            // Checked now, not when looked up: an earlier op of this recovery may
            // have linked the record meanwhile.
            let names = self.entity_names(op.entity);
            let linked = self.store.links_for(
                sync,
                hits.iter()
                    .map(|r| (op.side, names.get(op.side).as_str(), r.id.as_str())),
            )?;
            if hits.len() == 1 && linked.is_empty() {
                return Ok(hits.first().cloned());
            }
        }
        Ok(None)
    }

    /// Adds the records of found creates to the lists their create named (adding a
    /// member twice is harmless), one push per entity and side so that the
    /// connector batches them. Returns the creates whose add failed for now.
    pub(super) async fn complete_membership(
        &self,
        resolved: &[(OutboxEntry, Option<Record>)],
    ) -> Result<BTreeSet<String>, EngineError> {
        let mut groups: BTreeMap<(usize, Side), Vec<(String, Write)>> = BTreeMap::new();
        for (e, found) in resolved {
            let (Some(r), OpKind::Create { containers, .. }) = (found, &e.op.kind) else {
                continue;
            };
            for (i, c) in containers.iter().enumerate() {
                groups.entry((e.op.entity, e.op.side)).or_default().push((
                    e.op.id.clone(),
                    Write {
                        reference: format!("{}/{i}", e.op.id),
                        op: WriteOp::AddToContainer {
                            container: c.clone(),
                            ids: vec![r.id.clone()],
                        },
                    },
                ));
            }
        }
        let mut failed = BTreeSet::new();
        for ((ix, side), writes) in groups {
            let names = self.entity_names(ix);
            let ops: Vec<(String, String)> = writes
                .iter()
                .map(|(op, w)| (op.clone(), w.reference.clone()))
                .collect();
            let results = self
                .source(side)
                .push(
                    names.get(side),
                    writes.into_iter().map(|(_, w)| w).collect(),
                )
                .await
                .map_err(self.source_err(side, "push"))?;
            let by_ref: BTreeMap<String, Result<Option<Record>, SourceError>> = results
                .into_iter()
                .map(|r| (r.reference, r.outcome))
                .collect();
            for (op, reference) in ops {
                match by_ref.get(&reference) {
                    Some(Ok(_)) | Some(Err(SourceError::NotFound(_))) => {
                        tracing::info!(sync = self.sync(), op = %op, "recovered create added to its list");
                    }
                    Some(Err(e)) if !e.is_retryable() => {
                        tracing::warn!(sync = self.sync(), op = %op, error = %e, "recovered create: its list refused it");
                    }
                    _ => {
                        failed.insert(op);
                    }
                }
            }
        }
        Ok(failed)
    }

    /// What the app holds for the creates among `stale` (ops an interrupted run may
    /// have sent): the records per marker, then per match e-mail for the creates whose
    /// marker found no single record, each side and entity in one batch
    /// ([`Source::find_many`]).
    pub(super) async fn recovery_lookups(
        &self,
        stale: &[OutboxEntry],
    ) -> Result<(Found, Found), EngineError> {
        let creates: Vec<(&PlannedOp, &String)> = stale
            .iter()
            .filter_map(|e| match (&e.op.kind, e.status) {
                (
                    OpKind::Create { marker, .. },
                    OpStatus::Planned | OpStatus::Sent | OpStatus::Failed,
                ) => Some((&e.op, marker)),
                _ => None,
            })
            .collect();
        let mut markers: BTreeMap<(Side, String), BTreeSet<String>> = BTreeMap::new();
        for (op, marker) in &creates {
            markers
                .entry((op.side, op.entity_name.clone()))
                .or_default()
                .insert((*marker).clone());
        }
        let by_marker = self.lookup_batches(markers, Lookup::Marker).await?;
        let mut emails: BTreeMap<(Side, String), BTreeSet<String>> = BTreeMap::new();
        for (op, marker) in &creates {
            let key = (op.side, op.entity_name.clone());
            if by_marker
                .get(&(key.clone(), (*marker).clone()))
                .is_some_and(|hits| hits.len() == 1)
            {
                continue;
            }
            if let Some(link) = self.store.link(self.sync(), &op.link)?
                && let Some(email) = link.match_key
            {
                emails.entry(key).or_default().insert(email);
            }
        }
        let by_email = self.lookup_batches(emails, Lookup::Email).await?;
        Ok((by_marker, by_email))
    }

    /// Looks up `values` per (side, entity), as `lookup(value)`, one batch each.
    pub(super) async fn lookup_batches(
        &self,
        values: BTreeMap<(Side, String), BTreeSet<String>>,
        lookup: fn(String) -> Lookup,
    ) -> Result<Found, EngineError> {
        let mut out = BTreeMap::new();
        for ((side, entity), values) in values {
            if values.is_empty() {
                continue;
            }
            let values: Vec<String> = values.into_iter().collect();
            let found = self
                .source(side)
                .find_many(&entity, values.iter().cloned().map(lookup).collect())
                .await
                .map_err(self.source_err(side, "find"))?;
            for (value, records) in values.into_iter().zip(found) {
                out.insert(((side, entity.clone()), value), records);
            }
        }
        Ok(out)
    }

    /// Sends again the add/remove-membership ops an interrupted run left
    /// `planned` or `sent` (both are idempotent) and commits each result as
    /// the run would have: the link takes the op's effect, the row goes. A
    /// retryable failure stops here (rows kept, replayed by the next run); a
    /// permanent one drops the row, as the app refused it.
    pub(super) async fn replay_membership(
        &self,
        ops: Vec<OutboxEntry>,
        opts: &RunOptions,
    ) -> Result<(), EngineError> {
        let sync = self.sync();
        let mut groups: BTreeMap<(usize, Side), Vec<PlannedOp>> = BTreeMap::new();
        for e in ops {
            groups
                .entry((e.op.entity, e.op.side))
                .or_default()
                .push(e.op);
        }
        for ((ix, side), ops) in groups {
            let mapping = self.mapping_for(ix).await?;
            let names = self.entity_names(ix);
            let writes: Vec<Write> = ops
                .iter()
                .map(|op| Write {
                    reference: op.id.clone(),
                    op: write_op(&op.kind),
                })
                .collect();
            let results = self
                .source(side)
                .push(names.get(side), writes)
                .await
                .map_err(self.source_err(side, "push"))?;
            let mut by_ref: BTreeMap<String, Result<Option<Record>, SourceError>> = results
                .into_iter()
                .map(|r| (r.reference, r.outcome))
                .collect();
            let mut retry: Option<SourceError> = None;
            self.store.write(sync, |t| {
                for op in &ops {
                    let outcome = by_ref.remove(&op.id).unwrap_or_else(|| {
                        Err(SourceError::Transient(
                            "the connector returned no result for this write".into(),
                        ))
                    });
                    match outcome {
                        Ok(_) | Err(SourceError::NotFound(_)) => {}
                        Err(e) if e.is_retryable() => {
                            retry.get_or_insert(e);
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(sync, op = %op.id, error = %e, "replayed {} refused: dropped", op.kind.label());
                            t.remove_op(&op.id)?;
                            continue;
                        }
                    }
                    if let Some(mut link) = t.link(&op.link)? {
                        let entities = (names.a.as_str(), names.b.as_str());
                        if apply_ack(&mut link, op, None, &mapping, true) {
                            t.put_link(&link, entities)?;
                        } else {
                            t.remove_link(&op.link, entities)?;
                            if let Some(id) = link.id(op.side) {
                                t.put_tombstone(
                                    op.entity,
                                    op.side,
                                    id,
                                    &self.tombstone(op.link.clone(), opts.now, op.reason.clone()),
                                )?;
                            }
                        }
                    }
                    tracing::info!(sync, op = %op.id, "replayed {} of an interrupted run", op.kind.label());
                    t.remove_op(&op.id)?;
                }
                Ok(())
            })?;
            if let Some(e) = retry {
                return Err(self.source_err(side, "push")(e));
            }
        }
        Ok(())
    }

    /// Purges expired tombstones (sync-rules I7), at the start of a run. A link deleted
    /// on both sides is dropped with them once every one of its tombstones
    /// has expired (until then they all stay, so the link is not re-examined).
    pub(super) fn purge_tombstones(&self, now: i64) -> Result<(), EngineError> {
        let sync = self.sync();
        let rows = self.store.tombstone_rows(sync)?;
        let expired = |t: &Tombstone| t.expires_at.is_some_and(|e| e <= now);
        if !rows.iter().any(|(_, t)| expired(t)) {
            return Ok(());
        }
        let mut by_link: BTreeMap<&str, Vec<&(TombstoneKey, Tombstone)>> = BTreeMap::new();
        for row in &rows {
            by_link.entry(row.1.link.as_str()).or_default().push(row);
        }
        self.store.write(sync, |t| {
            for (key, rows) in by_link {
                if !rows.iter().any(|(_, tb)| expired(tb)) {
                    continue;
                }
                let link = t.link(key)?;
                let gone = link.as_ref().is_some_and(|l| {
                    let ids: Vec<(Side, &str)> = Side::BOTH
                        .into_iter()
                        .filter_map(|s| l.id(s).map(|i| (s, i)))
                        .collect();
                    !ids.is_empty()
                        && ids.iter().all(|(s, i)| {
                            rows.iter()
                                .any(|((e, rs, ri), _)| *e == l.entity && rs == s && ri == i)
                        })
                });
                let all_expired = rows.iter().all(|(_, tb)| expired(tb));
                if gone && !all_expired {
                    continue;
                }
                if let (true, Some(l)) = (gone, &link) {
                    let names = self.entity_names(l.entity);
                    t.remove_link(key, (names.a.as_str(), names.b.as_str()))?;
                    tracing::info!(
                        sync,
                        link = key,
                        "deleted on both sides: tombstones expired, link dropped"
                    );
                }
                for ((e, s, id), tb) in rows {
                    if expired(tb) {
                        t.remove_tombstone(*e, *s, id)?;
                    }
                }
            }
            Ok(())
        })?;
        Ok(())
    }
}
