//! Phase 5, execute (sync-rules P5): per batch, mark the ops `sent`, push them, and commit every
//! result (`commit.rs`). A failed write is given a back-off and retried from the
//! retry index by a later run.

use std::collections::BTreeMap;

use crate::sync::baseline::Link;
use crate::sync::model::{Record, Side};
use crate::sync::plan::{Plan, PlannedOp};
use crate::sync::source::{Mappers, Source, SourceError, Write};
use crate::sync::state::{OpStatus, RetryEntry};

use super::{Engine, EngineError, Gathered, Ledger, Point, RunOptions, op_target_id, write_op};

impl<'a, S: Source, M: Mappers> Engine<'a, S, M> {
    /// When an op waits for its back-off to end: the latest retry time of its
    /// link's records, if in the future.
    pub(super) fn backoff(
        &self,
        retries: &BTreeMap<(usize, Side, String), RetryEntry>,
        op: &PlannedOp,
        links: &BTreeMap<&str, &Link>,
        now: i64,
    ) -> Option<i64> {
        if retries.is_empty() {
            return None;
        }
        let link = links.get(op.link.as_str());
        let ids: Vec<(Side, String)> = match link {
            Some(l) => Side::BOTH
                .into_iter()
                .filter_map(|s| l.id(s).map(|i| (s, i.to_string())))
                .collect(),
            None => op_target_id(op)
                .map(|i| vec![(op.side, i)])
                .unwrap_or_default(),
        };
        ids.into_iter()
            .filter_map(|(s, id)| retries.get(&(op.entity, s, id)))
            .map(|r| r.next_attempt_at)
            .filter(|t| *t > now)
            .max()
    }

    pub(super) async fn execute(
        &self,
        plan: &Plan,
        obs: &Gathered,
        exec: &mut Ledger,
        opts: &RunOptions,
    ) -> Result<(), EngineError> {
        let ops: Vec<&PlannedOp> = plan
            .ops
            .iter()
            .filter(|o| exec.queued.contains_key(&o.id))
            .collect();
        for group in ops.chunk_by(|x, y| x.side == y.side && x.entity == y.entity) {
            let (side, ix) = (group[0].side, group[0].entity);
            let size = obs.infos[ix].get(side).max_batch_size.max(1) as usize;
            for batch in group.chunks(size) {
                self.batch(batch, obs, exec, opts).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn batch(
        &self,
        batch: &[&PlannedOp],
        obs: &Gathered,
        exec: &mut Ledger,
        opts: &RunOptions,
    ) -> Result<(), EngineError> {
        let sync = self.sync();
        let (side, ix) = (batch[0].side, batch[0].entity);
        let entity = batch[0].entity_name.clone();
        self.store.write_unflushed(sync, |t| {
            for op in batch {
                t.put_op(&exec.entry(op, OpStatus::Sent))?;
            }
            Ok(())
        })?;
        self.hook(Point::BeforeSend)?;
        let writes: Vec<Write> = batch
            .iter()
            .map(|op| Write {
                reference: op.id.clone(),
                op: write_op(&op.kind),
            })
            .collect();
        let answer = self.source(side).push(&entity, writes).await;
        self.hook(Point::AfterSend)?;
        let mut outcomes: Vec<Result<Option<Record>, SourceError>> = Vec::new();
        match answer {
            Ok(results) => {
                let mut by_ref: BTreeMap<String, Result<Option<Record>, SourceError>> = results
                    .into_iter()
                    .map(|r| (r.reference, r.outcome))
                    .collect();
                for op in batch {
                    outcomes.push(by_ref.remove(&op.id).unwrap_or_else(|| {
                        Err(SourceError::Transient(
                            "the connector returned no result for this write".into(),
                        ))
                    }));
                }
            }
            Err(e) => outcomes.extend(batch.iter().map(|_| Err(e.clone()))),
        }
        let mapping = &obs.inputs[ix].mapping;
        self.store.write_unflushed(sync, |t| {
            for (op, outcome) in batch.iter().zip(outcomes) {
                self.commit(t, op, outcome, mapping, exec, opts)?;
            }
            Ok(())
        })?;
        self.hook(Point::Committed)?;
        Ok(())
    }
}
