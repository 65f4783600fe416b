//! Phases 5 (its second half) and 6, commit (sync-rules P5, P6): every write's result is committed
//! with its new baseline in one transaction (acknowledged, failed with back-off,
//! or parked); the cursors advance only in `finish`, once every op of the run is
//! settled, so that a crash before then re-reads from the old cursors.

use crate::sync::mapping::ResolvedMapping;
use crate::sync::model::{Record, RecordKey, Side};
use crate::sync::plan::{LinkEffect, OpKind, Plan, PlannedOp, apply_ack};
use crate::sync::source::{Mappers, Source, SourceError};
use crate::sync::state::{
    Counters, Flow, OpStatus, OutboxEntry, RetryEntry, StateError, SyncStatus, Txn,
};

use super::{Engine, EngineError, Gathered, Ledger, RunOptions, RunOutcome};

impl<'a, S: Source, M: Mappers> Engine<'a, S, M> {
    /// Commits one write's result with its new baseline.
    pub(super) fn commit(
        &self,
        t: &Txn<'_>,
        op: &PlannedOp,
        outcome: Result<Option<Record>, SourceError>,
        mapping: &ResolvedMapping,
        exec: &mut Ledger,
        opts: &RunOptions,
    ) -> Result<(), StateError> {
        let names = self.entity_names(op.entity);
        let entities = (names.a.as_str(), names.b.as_str());
        let outcome = match outcome {
            // Deleting or un-listing something already gone is done.
            Err(SourceError::NotFound(_))
                if matches!(
                    op.kind,
                    OpKind::Delete { .. } | OpKind::RemoveFromContainer { .. }
                ) =>
            {
                Ok(None)
            }
            // The app answered a create with a record another link already holds
            // (an upsert matched it by a secondary e-mail): linking it twice would
            // corrupt the baseline, so the write is reported for a person to merge.
            Ok(Some(r)) if op.effect == LinkEffect::SetId => {
                let entity = if op.side == Side::A {
                    entities.0
                } else {
                    entities.1
                };
                match t.link_of(op.side, entity, &r.id)? {
                    Some(other) if other != op.link => Err(SourceError::Invalid(format!(
                        "the app matched the create to its existing record {}:{}, already linked by `{other}` (a shared e-mail address): merge the two records in the app",
                        op.side.as_str(),
                        r.id
                    ))),
                    _ => Ok(Some(r)),
                }
            }
            other => other,
        };
        let entry = exec.entry(op, OpStatus::Sent);
        exec.queued.remove(&op.id);
        let link_ids: Vec<(Side, String)> = t
            .link(&op.link)?
            .map(|l| {
                Side::BOTH
                    .into_iter()
                    .filter_map(|s| l.id(s).map(|i| (s, i.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        match outcome {
            Ok(readback) => self.acknowledged(t, op, readback, mapping, &link_ids, exec, opts),
            Err(e) => self.failed(t, op, e, entry, &link_ids, exec, opts),
        }
    }

    /// A write the app acknowledged: the link takes the written values as its new
    /// base (or goes, for a delete), the record's retries and the outbox row go.
    #[allow(clippy::too_many_arguments)]
    fn acknowledged(
        &self,
        t: &Txn<'_>,
        op: &PlannedOp,
        readback: Option<Record>,
        mapping: &ResolvedMapping,
        link_ids: &[(Side, String)],
        exec: &mut Ledger,
        opts: &RunOptions,
    ) -> Result<(), StateError> {
        let names = self.entity_names(op.entity);
        let entities = (names.a.as_str(), names.b.as_str());
        let dir = Flow::to(op.side);
        if let Some(mut link) = t.link(&op.link)? {
            let joint_done =
                op.joint.is_empty() || exec.joint.contains(&(op.link.clone(), op.side.other()));
            if !op.joint.is_empty() {
                exec.joint.insert((op.link.clone(), op.side));
            }
            if apply_ack(&mut link, op, readback.as_ref(), mapping, joint_done) {
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
        for (s, id) in link_ids {
            t.remove_retry(op.entity, *s, id)?;
            exec.retries
                .remove(&RecordKey::new(op.entity, *s, id.clone()));
        }
        // Acknowledged: the outbox row goes; the event log keeps it.
        t.remove_op(&op.id)?;
        let (action, counter): (&str, fn(&mut Counters)) = match (&op.kind, op.effect) {
            (OpKind::Create { .. }, _) => ("created", |c| c.created += 1),
            (OpKind::Update { .. }, _) => ("updated", |c| c.updated += 1),
            (OpKind::Delete { .. }, _) => ("deleted", |c| c.removed += 1),
            (OpKind::RemoveFromContainer { .. }, _) => ("removed", |c| c.removed += 1),
            (OpKind::AddToContainer { .. }, _) => ("updated", |c| c.updated += 1),
        };
        exec.count(dir, counter);
        let mut records: Vec<String> = link_ids
            .iter()
            .map(|(s, i)| format!("{}:{i}", s.as_str()))
            .collect();
        if let (LinkEffect::SetId, Some(r)) = (op.effect, &readback) {
            records.push(format!("{}:{}", op.side.as_str(), r.id));
        }
        exec.event(
            t,
            dir,
            action,
            &op.entity_name,
            records,
            Some(&op.link),
            op.reason.clone(),
        )?;
        Ok(())
    }

    /// A write that failed: retried with back-off while it may still succeed,
    /// else parked until its record changes.
    #[allow(clippy::too_many_arguments)]
    fn failed(
        &self,
        t: &Txn<'_>,
        op: &PlannedOp,
        e: SourceError,
        mut entry: OutboxEntry,
        link_ids: &[(Side, String)],
        exec: &mut Ledger,
        opts: &RunOptions,
    ) -> Result<(), StateError> {
        let dir = Flow::to(op.side);
        let before = link_ids
            .iter()
            .filter_map(|(s, i)| exec.retries.get(&RecordKey::new(op.entity, *s, i.clone())))
            .map(|r| r.attempts)
            .max()
            .unwrap_or(0)
            .max(entry.attempts);
        let attempts = before + 1;
        let retryable = e.is_retryable() || matches!(e, SourceError::NotFound(_));
        let message = format!("{e}");
        entry.attempts = attempts;
        entry.error = Some(message.clone());
        let records: Vec<String> = link_ids
            .iter()
            .map(|(s, i)| format!("{}:{i}", s.as_str()))
            .collect();
        if retryable && attempts < self.policy.retry.max_attempts {
            let next = opts.now + self.policy.retry.backoff_seconds(attempts) as i64;
            entry.status = OpStatus::Failed;
            entry.next_attempt_at = Some(next);
            for (s, id) in link_ids {
                let r = RetryEntry {
                    entity: op.entity,
                    side: *s,
                    id: id.clone(),
                    link: Some(op.link.clone()),
                    attempts,
                    next_attempt_at: next,
                    error: message.clone(),
                };
                t.put_retry(&r)?;
                exec.retries
                    .insert(RecordKey::new(op.entity, *s, id.clone()), r);
            }
            exec.count(dir, |c| c.failed += 1);
            exec.event(
                t,
                dir,
                "failed",
                &op.entity_name,
                records,
                Some(&op.link),
                format!(
                    "{}: {message} (attempt {attempts}, retried later)",
                    op.reason
                ),
            )?;
        } else {
            entry.status = OpStatus::Parked;
            entry.next_attempt_at = None;
            for (s, id) in link_ids {
                t.remove_retry(op.entity, *s, id)?;
                exec.retries
                    .remove(&RecordKey::new(op.entity, *s, id.clone()));
            }
            exec.count(dir, |c| c.parked += 1);
            // Only an app's refusal of the input is the record's to fix; credentials,
            // permissions and the operator's grants are the config's (the message says which).
            let whose = match e {
                SourceError::Invalid(_) => "fix the record, it is retried when it changes",
                SourceError::Unauthorized(_) | SourceError::Forbidden(_) => {
                    "check the connection's credentials and permissions; it is retried when the record changes"
                }
                _ => "it is retried when the record changes",
            };
            exec.event(
                t,
                dir,
                "parked",
                &op.entity_name,
                records,
                Some(&op.link),
                format!(
                    "{}: {message} (after {attempts} attempt(s); {whose})",
                    op.reason
                ),
            )?;
        }
        exec.failures.push((op.id.clone(), message));
        t.put_op(&entry)?;
        Ok(())
    }

    pub(super) fn finish(
        &self,
        plan: &Plan,
        obs: &Gathered,
        exec: &mut Ledger,
        opts: &RunOptions,
    ) -> Result<RunOutcome, EngineError> {
        Ok(self
            .store
            .write(self.sync(), |t| self.finish_in(t, plan, obs, exec, opts))?)
    }

    /// Ends the run in transaction `t`: cursors, status and the run's record.
    pub(super) fn finish_in(
        &self,
        t: &Txn<'_>,
        plan: &Plan,
        obs: &Gathered,
        exec: &mut Ledger,
        opts: &RunOptions,
    ) -> Result<RunOutcome, StateError> {
        let unsettled = !exec.queued.is_empty();
        let outcome = match &plan.halted {
            Some(h) => RunOutcome::Halted(h.message.clone()),
            None => RunOutcome::Completed,
        };
        // A halted run withheld changes: the cursors stay, so that the run
        // after review (forced) plans them again.
        if !unsettled && plan.halted.is_none() {
            t.set_rescan(false)?;
            for (ix, c) in obs.cursors.iter().enumerate() {
                for side in Side::BOTH {
                    if let Some(cur) = c.get(side) {
                        t.set_cursor(ix, side, Some(cur))?;
                    }
                }
            }
        }
        exec.run.ended_at = Some(opts.now);
        exec.run.requests = self.run_requests();
        let status = match &outcome {
            RunOutcome::Halted(m) => {
                exec.run.outcome = "halted".into();
                exec.run.message = Some(m.clone());
                SyncStatus::Halted { reason: m.clone() }
            }
            _ => {
                exec.run.outcome = "ok".into();
                SyncStatus::Active
            }
        };
        // The status the run started with (its view) needs no write. Another is written
        // unless the operator paused the sync during the run: that pause outlives the
        // run's end (the run's own outcome is in its log).
        if self.store.status(self.sync())? != status && t.status()? != SyncStatus::Paused {
            t.set_status(&status)?;
        }
        t.put_run(&exec.run)?;
        Ok(outcome)
    }
}
