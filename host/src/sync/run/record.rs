//! Phase 4, record (sync-rules P4): the plan's links, outbox entries (`planned`) and events are
//! written in one transaction before any write is sent, so that a crash after
//! this point is recovered from the outbox, never guessed.

use std::collections::{BTreeMap, BTreeSet};

use crate::sync::baseline::{Decision, Link, LinkState};
use crate::sync::model::{RecordKey, Side};
use crate::sync::plan::Plan;
use crate::sync::source::{Mappers, Source};
use crate::sync::state::{Flow, OpStatus, PendingAmbiguity, RetryEntry, RunKind, StateError, Txn};

use super::{Engine, EngineError, Gathered, Ledger, MapperFailure, RunOptions, lock, resolve_hint};

impl<'a, S: Source, M: Mappers> Engine<'a, S, M> {
    pub(super) fn record(
        &self,
        plan: &Plan,
        obs: &Gathered,
        opts: &RunOptions,
    ) -> Result<Ledger, EngineError> {
        Ok(self
            .store
            .write(self.sync(), |t| self.record_in(t, plan, obs, opts))?)
    }

    /// Records the plan in transaction `t` ([`Self::record`]; a run with nothing to send
    /// records and finishes in one transaction).
    pub(super) fn record_in(
        &self,
        t: &Txn<'_>,
        plan: &Plan,
        obs: &Gathered,
        opts: &RunOptions,
    ) -> Result<Ledger, StateError> {
        let sync = self.sync();
        let retries: BTreeMap<RecordKey, RetryEntry> = self
            .store
            .retries(sync)?
            .into_iter()
            .map(|r| (r.key(), r))
            .collect();
        let kind = if obs
            .inputs
            .iter()
            .any(|e| e.obs.a.complete || e.obs.b.complete)
        {
            RunKind::Full
        } else {
            RunKind::Incremental
        };
        t.purge_acked()?;
        for old in self
            .store
            .outbox(sync)?
            .into_iter()
            .filter(|e| e.status == OpStatus::Failed)
        {
            t.remove_op(&old.op.id)?;
        }
        let run = t.begin_run(kind, opts.now)?;
        let mut exec = Ledger {
            run,
            seq: 0,
            joint: BTreeSet::new(),
            retries,
            failures: Vec::new(),
            queued: BTreeMap::new(),
        };
        for (ix, fp) in obs.fingerprints.iter().enumerate() {
            t.set_mapping(ix, fp)?;
        }
        self.record_links(t, plan, obs, &mut exec, opts)?;
        self.record_ambiguities(t, plan, obs, exec.run.id)?;
        self.record_unlinks(t, plan, obs, opts)?;
        let mapper_failures = lock(&self.mapper_failures).clone();
        self.record_mapper_failures(t, &mapper_failures, obs, &mut exec, opts)?;
        self.record_notices(t, plan, &mapper_failures, &mut exec)?;
        self.record_ops(t, plan, obs, &mut exec, opts)?;
        self.settle_retries(t, plan, obs, &mut exec, opts)?;
        Ok(exec)
    }

    /// New and changed links; a link that has just matched is logged, and a record
    /// deleted while its counterpart is kept gets a tombstone.
    fn record_links(
        &self,
        t: &Txn<'_>,
        plan: &Plan,
        obs: &Gathered,
        exec: &mut Ledger,
        opts: &RunOptions,
    ) -> Result<(), StateError> {
        for l in &plan.links {
            let names = self.entity_names(l.entity);
            let before = obs.baseline.links.get(&l.key);
            t.put_link(l, (names.a.as_str(), names.b.as_str()))?;
            if before.is_none() && l.ids.a.is_some() && l.ids.b.is_some() {
                exec.count(Flow::Both, |c| c.linked += 1);
                let records = vec![
                    format!("a:{}", l.ids.a.as_deref().unwrap_or("")),
                    format!("b:{}", l.ids.b.as_deref().unwrap_or("")),
                ];
                exec.event(
                    t,
                    Flow::Both,
                    "linked",
                    &names.a,
                    records,
                    Some(&l.key),
                    format!("matched by e-mail {}", l.match_key.as_deref().unwrap_or("")),
                )?;
            }
            if let LinkState::Deleted(s) = l.state
                && before.map(|b| b.state) != Some(l.state)
                && let Some(id) = before.and_then(|b| b.id(s))
            {
                t.put_tombstone(
                    l.entity,
                    s,
                    id,
                    &self.tombstone(l.key.clone(), opts.now, "kept counterpart".into()),
                )?;
            }
        }
        Ok(())
    }

    /// Links deleted on both sides.
    fn record_unlinks(
        &self,
        t: &Txn<'_>,
        plan: &Plan,
        obs: &Gathered,
        opts: &RunOptions,
    ) -> Result<(), StateError> {
        for k in &plan.unlink {
            // Deleted on both sides: the link is kept until its tombstones
            // expire (sync-rules E12), so a record restored meanwhile syncs again;
            // a tombstone already there keeps its expiry.
            if let Some(l) = obs.baseline.links.get(k) {
                for s in Side::BOTH {
                    if let Some(id) = l.id(s)
                        && t.tombstone(l.entity, s, id)?.is_none()
                    {
                        let why = "deleted on both sides: the link is dropped when this expires";
                        t.put_tombstone(
                            l.entity,
                            s,
                            id,
                            &self.tombstone(k.clone(), opts.now, why.into()),
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The plan's skips, conflicts, ambiguities, notes and halt, as events.
    fn record_notices(
        &self,
        t: &Txn<'_>,
        plan: &Plan,
        mapper_failures: &[MapperFailure],
        exec: &mut Ledger,
    ) -> Result<(), StateError> {
        for s in &plan.skips {
            // A record a mapper failed on is reported once, as failed.
            if mapper_failures
                .iter()
                .any(|f| f.entity == s.entity && f.side == s.side && f.id == s.id)
            {
                continue;
            }
            let entity = self.policy.entities[s.entity].name(s.side).to_string();
            exec.count(Flow::to(s.side.other()), |c| c.skipped += 1);
            exec.event(
                t,
                Flow::to(s.side.other()),
                "skipped",
                &entity,
                vec![format!("{}:{}", s.side.as_str(), s.id)],
                None,
                s.reason.clone(),
            )?;
        }
        for c in &plan.conflicts {
            exec.count(Flow::Both, |x| x.conflicts += 1);
            let reason = format!("{}: A {} / B {}: {}", c.field, c.a, c.b, c.decision);
            exec.event(
                t,
                Flow::Both,
                "conflict",
                &self.policy.entities[c.entity].a,
                vec![],
                Some(&c.link),
                reason,
            )?;
        }
        for a in &plan.ambiguous {
            let records =
                a.a.iter()
                    .map(|i| format!("a:{i}"))
                    .chain(a.b.iter().map(|i| format!("b:{i}")))
                    .collect();
            let hint = resolve_hint(self.sync(), &a.a, &a.b);
            exec.event(
                t,
                Flow::Both,
                "ambiguous",
                &self.policy.entities[a.entity].a,
                records,
                None,
                format!("{}: {}; {hint}", a.email, a.reason),
            )?;
        }
        for n in &plan.notes {
            exec.event(
                t,
                Flow::Both,
                "note",
                &self.policy.entities[n.entity].a,
                vec![],
                Some(&n.link),
                n.text.clone(),
            )?;
        }
        if let Some(h) = &plan.halted {
            exec.event(t, Flow::Both, "halted", "", vec![], None, h.message.clone())?;
        }
        Ok(())
    }

    /// The plan's ops go into the outbox as `planned`, but for those whose record
    /// waits for a retry's back-off, which are logged as skipped.
    fn record_ops(
        &self,
        t: &Txn<'_>,
        plan: &Plan,
        obs: &Gathered,
        exec: &mut Ledger,
        opts: &RunOptions,
    ) -> Result<(), StateError> {
        let links: BTreeMap<&str, &Link> = obs
            .baseline
            .links
            .iter()
            .map(|(k, l)| (k.as_str(), l))
            .chain(plan.links.iter().map(|l| (l.key.as_str(), l)))
            .collect();
        for op in &plan.ops {
            let waiting = self.backoff(&exec.retries, op, &links, opts.now);
            if let Some(until) = waiting {
                exec.count(Flow::to(op.side), |c| c.skipped += 1);
                exec.event(
                    t,
                    Flow::to(op.side),
                    "skipped",
                    &op.entity_name,
                    vec![],
                    Some(&op.link),
                    format!("{}: waiting to retry (not before {until})", op.reason),
                )?;
                continue;
            }
            let attempts = t.op(&op.id)?.map_or(0, |e| e.attempts);
            exec.queued.insert(op.id.clone(), attempts);
            t.put_op(&exec.entry(op, OpStatus::Planned))?;
        }
        Ok(())
    }

    /// Clears retries that no longer wait for anything.
    fn settle_retries(
        &self,
        t: &Txn<'_>,
        plan: &Plan,
        obs: &Gathered,
        exec: &mut Ledger,
        opts: &RunOptions,
    ) -> Result<(), StateError> {
        // A record re-read for a retry whose link needs no write any more (the
        // write landed although its answer was lost) waits for nothing.
        if plan.halted.is_none() {
            let planned: BTreeSet<&str> = plan.ops.iter().map(|o| o.link.as_str()).collect();
            let done: Vec<RecordKey> = exec
                .retries
                .iter()
                .filter(|(_, r)| {
                    r.next_attempt_at <= opts.now
                        && r.link.as_deref().is_some_and(|l| !planned.contains(l))
                        && !obs
                            .inputs
                            .get(r.entity)
                            .is_some_and(|e| e.obs.get(r.side).failed.contains_key(&r.id))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in done {
                t.remove_retry(k.entity, k.side, &k.id)?;
                exec.retries.remove(&k);
            }
        }
        Ok(())
    }

    /// Keeps the list of unresolved ambiguities (`tandem sync status`): an
    /// earlier one stays until a run reads one of its records again (then
    /// this plan says whether it still is); operator links now made are done.
    pub(super) fn record_ambiguities(
        &self,
        t: &Txn<'_>,
        plan: &Plan,
        obs: &Gathered,
        run: u64,
    ) -> Result<(), StateError> {
        for ((ix, a, b), d) in &obs.baseline.decisions {
            let made = plan.links.iter().any(|l| {
                l.entity == *ix
                    && l.id(Side::A) == Some(a.as_str())
                    && l.id(Side::B) == Some(b.as_str())
            });
            if *d == Decision::Link && made {
                t.remove_decision(*ix, a, b)?;
            }
        }
        let seen = |ix: usize, side: Side, ids: &[String]| {
            obs.inputs
                .get(ix)
                .is_some_and(|e| ids.iter().any(|i| e.obs.get(side).records.contains_key(i)))
        };
        let mut pending: Vec<PendingAmbiguity> = t
            .pending_ambiguities()?
            .into_iter()
            .filter(|p| !seen(p.entity, Side::A, &p.a) && !seen(p.entity, Side::B, &p.b))
            .collect();
        pending.extend(plan.ambiguous.iter().map(|a| PendingAmbiguity {
            entity: a.entity,
            email: a.email.clone(),
            a: a.a.clone(),
            b: a.b.clone(),
            reason: a.reason.clone(),
            run,
        }));
        t.set_pending_ambiguities(&pending)
    }

    /// Records the records a mapper failed on: a `failed` event each, counted as failed
    /// in the direction they would have flowed, and a retry entry without a link, so that
    /// a later run re-reads them although the cursor moves on (after `retry.max-attempts`
    /// they are parked: reported, no longer re-read until they change). Read retries of
    /// records that mapped cleanly this run are dropped.
    pub(super) fn record_mapper_failures(
        &self,
        t: &Txn<'_>,
        failures: &[MapperFailure],
        obs: &Gathered,
        exec: &mut Ledger,
        opts: &RunOptions,
    ) -> Result<(), StateError> {
        let healed: Vec<RecordKey> = exec
            .retries
            .values()
            .filter(|r| r.link.is_none())
            .filter(|r| {
                obs.inputs.get(r.entity).is_some_and(|e| {
                    let o = e.obs.get(r.side);
                    o.records.contains_key(&r.id) || o.deleted.contains(&r.id)
                })
            })
            .map(RetryEntry::key)
            .collect();
        for k in healed {
            t.remove_retry(k.entity, k.side, &k.id)?;
            exec.retries.remove(&k);
        }
        for f in failures {
            let dir = Flow::to(f.side.other());
            let key = RecordKey::new(f.entity, f.side, f.id.clone());
            let attempts = exec.retries.get(&key).map_or(0, |r| r.attempts) + 1;
            let entity = self.policy.entities[f.entity].name(f.side).to_string();
            let records = vec![format!("{}:{}", f.side.as_str(), f.id)];
            if attempts < self.policy.retry.max_attempts {
                let r = RetryEntry {
                    entity: f.entity,
                    side: f.side,
                    id: f.id.clone(),
                    link: None,
                    attempts,
                    next_attempt_at: opts.now + self.policy.retry.backoff_seconds(attempts) as i64,
                    error: f.error.clone(),
                };
                t.put_retry(&r)?;
                exec.retries.insert(key, r);
                exec.count(dir, |c| c.failed += 1);
                let why = format!("{} (attempt {attempts}, read again later)", f.error);
                exec.event(t, dir, "failed", &entity, records, None, why)?;
            } else {
                t.remove_retry(f.entity, f.side, &f.id)?;
                exec.retries.remove(&key);
                exec.count(dir, |c| c.parked += 1);
                let why = format!(
                    "{} (after {attempts} attempt(s); read again when the record changes)",
                    f.error
                );
                exec.event(t, dir, "parked", &entity, records, None, why)?;
            }
            exec.failures
                .push((format!("{}:{}", f.side.as_str(), f.id), f.error.clone()));
        }
        if let Some(first) = failures.first() {
            exec.run.message = Some(format!(
                "{} record(s) failed in a mapper and were left out; first: {}:{}: {}",
                failures.len(),
                first.side.as_str(),
                first.id,
                first.error
            ));
        }
        Ok(())
    }
}
