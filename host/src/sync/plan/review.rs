//! The planner's policies that leave something to the operator, and the
//! operator's answers:
//! - `manual` conflicts (sync-rules F5): both candidates are kept on the link
//!   ([`Review::open`](crate::sync::baseline::Review)) and nothing is written
//!   to the field until [`take`] picks a side;
//! - the "stop matching" action when a record leaves its scope (sync-rules E14,
//!   `scope.on-leave`), and the way back when it returns;
//! - the loop detector (sync-rules W6): too many writes to one link within a
//!   window of runs, or a field flipping between two values, quarantine the
//!   link until [`release`].
//!
//! [`take`] and [`release`] are pure edits of a stored link: they set it up so
//! that the next run re-reads both records and plans it with the ordinary
//! field table (the chosen value looks like the only change).

use thiserror::Error;

use super::{
    EntityInput, FieldBase, Link, LinkEffect, LinkState, Observed, OpKind, Pending, Planner,
};
use crate::sync::baseline::OpenConflict;
use crate::sync::mapping::FieldPair;
use crate::sync::model::{Consent, Record, RecordKey, Side, SidePair, Value};
use crate::sync::policy::LeaveAction;

/// An operator's request that does not fit the link.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ReviewError {
    /// No open `manual` conflict on that field.
    #[error("link `{link}` has no open conflict on `{field}`{}", open_list(.open))]
    NoConflict {
        /// The link's id (what `tandem sync resolve` takes).
        link: String,
        /// The field asked for.
        field: String,
        /// The fields with open conflicts.
        open: Vec<String>,
    },
    /// The link is not quarantined.
    #[error("link `{0}` is not quarantined: nothing to release")]
    NotQuarantined(String),
}

fn open_list(open: &[String]) -> String {
    if open.is_empty() {
        "; it has none".into()
    } else {
        format!("; open: {}", open.join(", "))
    }
}

/// Whether `field` (a pair key `a~b`, or either side's field name) names `key`.
fn names(key: &str, field: &str) -> bool {
    key == field || key.split('~').any(|part| part == field)
}

/// Resolves an open `manual` conflict on `field` in favour of `side`: the base
/// becomes the other side's candidate, so the next run sees `side`'s value as
/// the change and writes it across (or, if the other side changed again
/// meanwhile, sees a new true conflict). Returns the pair key resolved.
pub fn take(link: &mut Link, field: &str, side: Side) -> Result<String, ReviewError> {
    let Some(key) = link.review.open.keys().find(|k| names(k, field)).cloned() else {
        return Err(ReviewError::NoConflict {
            link: link.key.clone(),
            field: field.into(),
            open: link.review.open.keys().cloned().collect(),
        });
    };
    let open = link.review.open.remove(&key).expect("found above");
    let loser = match side.other() {
        Side::A => open.a,
        Side::B => open.b,
    };
    link.fields.insert(key.clone(), FieldBase::new(loser));
    link.review.recheck = true;
    Ok(key)
}

/// Lifts a quarantine: the link is synced again from the next run, with a
/// fresh write history. Returns the reason it was quarantined for.
pub fn release(link: &mut Link) -> Result<String, ReviewError> {
    if link.state != LinkState::Quarantined {
        return Err(ReviewError::NotQuarantined(link.key.clone()));
    }
    link.state = LinkState::Linked;
    link.review.writes.clear();
    link.review.recheck = true;
    Ok(link.review.quarantine.take().unwrap_or_default())
}

/// For a field with an open `manual` conflict, a side not read in this run
/// still holds the candidate read before (it did not change since).
pub(super) fn fill_open(link: &Link, pair: &FieldPair, vals: &mut SidePair<Option<Value>>) {
    if let Some(open) = link.review.open.get(&pair.key) {
        for (side, v) in [(Side::A, &open.a), (Side::B, &open.b)] {
            if vals.get(side).is_none() {
                *vals.get_mut(side) = Some(v.clone());
            }
        }
    }
}

/// Keeps the link's open conflict on `pair` in step with this run's decision:
/// stored (or updated) when `manual`, dropped once the field is decided
/// otherwise (the sides agreed, or only one of them still differs).
pub(super) fn track_open(
    link: &mut Link,
    pair: &FieldPair,
    vals: &SidePair<Option<Value>>,
    manual: bool,
) {
    if manual {
        let open = OpenConflict {
            a: vals.a.clone().unwrap_or_default(),
            b: vals.b.clone().unwrap_or_default(),
            base: link.fields.get(&pair.key).map(|f| f.value.clone()),
        };
        link.review.open.insert(pair.key.clone(), open);
    } else if vals.a.is_some() && vals.b.is_some() {
        link.review.open.remove(&pair.key);
    }
}

impl Planner<'_> {
    /// Asks the executor to read the records of `link` this run did not read.
    pub(super) fn fetch_unseen(&mut self, ix: usize, link: &Link, recs: SidePair<Option<&Record>>) {
        for side in Side::BOTH {
            if let (None, Some(id)) = (recs.get(side), link.id(side)) {
                self.plan.fetch.push(RecordKey::new(ix, side, id));
            }
        }
    }

    /// The linked record of side `side` left its scope (sync-rules E14): the link is
    /// detached, after the configured action on the other side's record.
    pub(super) fn left_scope(
        &mut self,
        ix: usize,
        e: &EntityInput,
        link: Link,
        side: Side,
        other: Option<&Observed>,
    ) {
        let t = side.other();
        let action = if self.policy.flows(side) {
            *self.policy.on_leave.get(side)
        } else {
            LeaveAction::Keep
        };
        let why = format!(
            "left side {side}'s scope (scope.on-leave = {})",
            action.label()
        );
        let target = link.id(t).map(str::to_string);
        let mut l = link;
        let detach = |this: &mut Self, l: &mut Link, note: String| {
            l.state = LinkState::Detached(side);
            this.note(ix, &l.key, note);
            this.plan.links.push(l.clone());
        };
        let Some(id) = target else {
            return detach(
                self,
                &mut l,
                format!("left side {side}'s scope: no longer synced"),
            );
        };
        match action {
            LeaveAction::Keep => {
                detach(
                    self,
                    &mut l,
                    format!("left side {side}'s scope: no longer synced"),
                );
            }
            LeaveAction::RemoveFromContainer => match e.containers.get(t) {
                Some(c) => {
                    // The link changes when the removal is acknowledged: a
                    // crash before that plans it again.
                    let kind = OpKind::RemoveFromContainer {
                        container: c.clone(),
                        id,
                    };
                    let reason = format!("{why}: removed from side {t}'s list");
                    self.push_op(
                        ix,
                        e,
                        &l,
                        t,
                        kind,
                        reason,
                        Pending::default(),
                        LinkEffect::Unlisted(side),
                    );
                }
                None => detach(
                    self,
                    &mut l,
                    format!("{why}: side {t} syncs no list, nothing to remove; no longer synced"),
                ),
            },
            LeaveAction::Unsubscribe => {
                let pair = e.mapping.consent_pair().filter(|p| *p.flows.get(side));
                let Some(pair) = pair else {
                    return detach(
                        self,
                        &mut l,
                        format!("{why}: no consent field flows to side {t}; no longer synced"),
                    );
                };
                let current = other.and_then(|o| pair.read(t, &o.record));
                if current.as_ref().and_then(Consent::of) == Some(Consent::OptedOut) {
                    return detach(
                        self,
                        &mut l,
                        format!("{why}: already opted out on side {t}; no longer synced"),
                    );
                }
                let out = Consent::OptedOut.value();
                let mut p = Pending::default();
                p.set(&pair.def(t).name, pair.from_canonical(t, &out));
                p.base.insert(pair.key.clone(), FieldBase::new(out));
                p.consent = true;
                let kind = OpKind::Update {
                    id,
                    if_version: other.and_then(|o| o.record.version.clone()),
                    fields: p.fields.clone(),
                };
                let reason = format!("{why}: opted out on side {t}");
                let fx = LinkEffect::State(LinkState::Detached(side));
                self.push_op(ix, e, &l, t, kind, reason, p, fx);
            }
        }
    }

    /// A detached link whose record came back into scope: if the sync took
    /// the counterpart out of its list when it left, put it back. Returns the
    /// side states to plan with (the counterpart counts as in scope again).
    pub(super) fn rejoin<'o>(
        &mut self,
        ix: usize,
        e: &EntityInput,
        link: &mut Link,
        back: Side,
        sa: super::SideState<'o>,
        sb: super::SideState<'o>,
    ) -> (super::SideState<'o>, super::SideState<'o>) {
        let t = back.other();
        if link.review.unlisted != Some(t) {
            return (sa, sb);
        }
        link.review.unlisted = None;
        if let (Some(id), Some(c)) = (link.id(t), e.containers.get(t)) {
            let kind = OpKind::AddToContainer {
                container: c.clone(),
                id: id.to_string(),
            };
            let reason = format!("back in side {back}'s scope: added back to side {t}'s list");
            self.push_op(
                ix,
                e,
                link,
                t,
                kind,
                reason,
                Pending::default(),
                LinkEffect::None,
            );
        }
        let unout = |s: super::SideState<'o>| match s {
            super::SideState::Out => super::SideState::Unseen,
            other => other,
        };
        match t {
            Side::A => (unout(sa), sb),
            Side::B => (sa, unout(sb)),
        }
    }

    /// The loop detector (sync-rules W6): quarantines a link about to be written too
    /// often, or with a field about to go back to a value it just left again;
    /// a quarantined link keeps only its consent tightening (sync-rules K5).
    pub(super) fn guard_loops(
        &mut self,
        ix: usize,
        e: &EntityInput,
        link: &mut Link,
        pending: &mut SidePair<Pending>,
        extra: &mut Vec<(Side, OpKind, String)>,
    ) {
        let writes = Side::BOTH
            .into_iter()
            .filter(|s| !pending.get(*s).fields.is_empty())
            .count();
        if writes > 0 && self.baseline.run > 0 {
            // Marks older than the window no longer count: drop them with this
            // write (the link is stored anyway), so rows stay small.
            let from = self.window_start();
            link.review.writes.retain(|m| m.run >= from);
        }
        if link.state != LinkState::Quarantined {
            if writes == 0 {
                return;
            }
            let Some(reason) = self.looping(link, pending, writes) else {
                return;
            };
            link.state = LinkState::Quarantined;
            link.review.quarantine = Some(reason.clone());
            self.note(
                ix,
                &link.key,
                format!(
                    "quarantined: {reason}; not written until released with `tandem sync resolve {} --release {}`",
                    self.policy.name,
                    link.id(Side::A).or(link.id(Side::B)).unwrap_or_default()
                ),
            );
        }
        let consent = e.mapping.consent_pair();
        for side in Side::BOTH {
            let p = pending.get_mut(side);
            let Some(pair) = consent.filter(|_| p.consent) else {
                *p = Pending::default();
                continue;
            };
            let name = pair.def(side).name.clone();
            p.fields.retain(|(n, _)| *n == name);
            p.base.retain(|k, _| *k == pair.key);
            p.joint.clear();
            p.why.retain(|w| w.starts_with(&name));
        }
        extra.retain(|(_, kind, _)| !matches!(kind, OpKind::AddToContainer { .. }));
    }

    /// The first run of the loop detector's window (the current run included).
    fn window_start(&self) -> u64 {
        let window = u64::from(self.policy.loops.window).saturating_sub(1);
        self.baseline.run.saturating_sub(window)
    }

    /// Why the writes planned for `link` look like a loop, if they do.
    fn looping(&self, link: &Link, pending: &SidePair<Pending>, writes: usize) -> Option<String> {
        let cfg = &self.policy.loops;
        let from = self.window_start();
        let recent: Vec<_> = link
            .review
            .writes
            .iter()
            .filter(|m| m.run >= from)
            .collect();
        let count = recent.len() + writes;
        if count > cfg.max_writes as usize {
            return Some(format!(
                "{count} writes within {} runs (loops.max-writes = {})",
                cfg.window, cfg.max_writes
            ));
        }
        if !cfg.alternation {
            return None;
        }
        for side in Side::BOTH {
            for (key, fb) in &pending.get(side).base {
                let hash = fb.hash.to_string();
                let mut seq: Vec<&str> = recent
                    .iter()
                    .filter_map(|m| m.fields.get(key).map(String::as_str))
                    .chain(std::iter::once(hash.as_str()))
                    .collect();
                seq.dedup();
                if let [.., w, x, y, z] = seq.as_slice()
                    && w == y
                    && x == z
                    && w != x
                {
                    let was = link
                        .fields
                        .get(key)
                        .map_or_else(String::new, |f| format!(" {} and", f.value));
                    return Some(format!(
                        "`{key}` keeps going back and forth between{was} {} (an app or mapper rewrites what the other side writes)",
                        fb.value
                    ));
                }
            }
        }
        None
    }
}
