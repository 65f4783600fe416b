//! The breakers (sync-rules §10): a plan that would empty a side, or delete or overwrite more
//! than the policy allows, is halted before anything is recorded; the operator
//! reviews it in a dry run and forces it.

use crate::sync::baseline::Baseline;
use crate::sync::model::Side;
use crate::sync::policy::SyncPolicy;

use super::{EntityInput, Halt, OpKind, Plan, Planner};

/// Whether the breakers could judge `plan` (made with no link counted) otherwise once they
/// know how many links the sync has. Counting reads every link key of the sync, so the
/// engine counts only then, and plans again: a ratio halts only from `min-linked` links
/// up, so a side's deletes or updates within that share of `min-linked` cannot trip it
/// whatever the count, and an empty side halts only when a complete listing is empty.
pub fn needs_link_counts(policy: &SyncPolicy, plan: &Plan, entities: &[EntityInput]) -> bool {
    let b = &policy.breaker;
    if plan.halted.is_some() {
        return true;
    }
    let empty_side = b.side_empty
        && entities.iter().any(|e| {
            Side::BOTH.into_iter().any(|side| {
                let obs = e.obs.get(side);
                obs.complete && !obs.records.values().any(|o| o.in_scope)
            })
        });
    if empty_side {
        return true;
    }
    let floor = b.min_linked as f64;
    Side::BOTH.into_iter().any(|side| {
        let (deletes, updates) = weighed(plan, side);
        deletes as f64 > b.max_delete_ratio * floor
            || updates as f64 > b.max_overwrite_ratio * floor
    })
}

/// The ops of `side` the ratios weigh: (deletions and list removals, updates).
fn weighed(plan: &Plan, side: Side) -> (usize, usize) {
    let ops = plan.ops.iter().filter(|o| o.side == side);
    let deletes = ops
        .clone()
        .filter(|o| {
            matches!(
                o.kind,
                OpKind::Delete { .. } | OpKind::RemoveFromContainer { .. }
            )
        })
        .count();
    let updates = ops
        .filter(|o| matches!(o.kind, OpKind::Update { .. }))
        .count();
    (deletes, updates)
}

impl<'a> Planner<'a> {
    /// The safety breakers (sync-rules §10), checked before anything is executed.
    pub(super) fn breaker(&mut self, baseline: &Baseline) {
        let b = &self.policy.breaker;
        let mut halt: Option<Halt> = None;
        if b.side_empty {
            for (ix, e) in self.entities.iter().enumerate() {
                for side in Side::BOTH {
                    let obs = e.obs.get(side);
                    let listed = obs.records.values().filter(|o| o.in_scope).count();
                    if halt.is_none() && obs.complete && listed == 0 && baseline.count(ix) > 0 {
                        halt = Some(Halt {
                            reason: "side-empty".into(),
                            message: format!(
                                "side {side} lists no `{}` records while {} are linked: halted instead of deleting; check the connection, then run with --force",
                                e.pair.name(side),
                                baseline.count(ix)
                            ),
                        });
                    }
                }
            }
        }
        let linked: usize = baseline.counts.values().sum();
        for side in Side::BOTH {
            let (deletes, updates) = weighed(&self.plan, side);
            let over = |count: usize, ratio: f64, cap: Option<usize>| {
                cap.is_some_and(|c| count > c)
                    || (linked >= b.min_linked && count as f64 > ratio * linked as f64)
            };
            if halt.is_none() && over(deletes, b.max_delete_ratio, b.max_deletes) {
                halt = Some(Halt {
                    reason: "too-many-deletes".into(),
                    message: format!(
                        "{deletes} deletions/removals planned on side {side} for {linked} links: halted; review the dry run, then run with --force"
                    ),
                });
            }
            if halt.is_none() && over(updates, b.max_overwrite_ratio, b.max_overwrites) {
                halt = Some(Halt {
                    reason: "too-many-overwrites".into(),
                    message: format!(
                        "{updates} updates planned on side {side} for {linked} links: halted; review the dry run, then run with --force"
                    ),
                });
            }
        }
        let Some(halt) = halt else { return };
        // Consent changes are never held back (sync-rules K5, B4): keep only their fields.
        let before = self.plan.ops.len();
        let mut kept = Vec::new();
        for mut op in std::mem::take(&mut self.plan.ops) {
            if !op.consent || !baseline.links.contains_key(&op.link) {
                continue;
            }
            let OpKind::Update { fields, .. } = &mut op.kind else {
                continue;
            };
            let e = &self.entities[op.entity];
            let consent_pair = e.mapping.consent_pair();
            let Some(pair) = consent_pair else { continue };
            fields.retain(|(n, _)| *n == pair.def(op.side).name);
            op.base.retain(|k, _| *k == pair.key);
            op.joint.clear();
            op.reason = format!("{} (consent change kept while halted)", op.reason);
            kept.push(op);
        }
        self.plan.withheld = before - kept.len();
        self.plan.ops = kept;
        self.plan.links.clear();
        self.plan.unlink.clear();
        self.plan.halted = Some(halt);
    }
}
