//! The field table (sync-rules F1-F10): per mapped field of a linked pair, against
//! the field's base (or a side's recorded alias): which side changed, who wins a
//! conflict (`winner`, `manual`, union of sets), consent that only tightens,
//! one-way flows, and the first sync of a newly linked pair.

use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::sync::baseline::{FieldBase, Link, LinkState, Touch};
use crate::sync::mapping::{FieldPair, ResolvedMapping};
use crate::sync::model::{CanonKind, Consent, Record, RecordKey, Side, SidePair, Value};
use crate::sync::policy::{OneWayEdits, RemoveAction, Winner};
use crate::sync::rules;

use super::{
    ConflictNote, EntityInput, FieldDecision, LinkEffect, Observed, OpKind, Pending, Planner,
    side_digest,
};

impl<'a> Planner<'a> {
    pub(super) fn changed_since_base(
        &self,
        e: &EntityInput,
        link: &Link,
        side: Side,
        r: &Record,
    ) -> bool {
        e.mapping
            .pairs
            .iter()
            .any(|p| match (link.fields.get(&p.key), p.read(side, r)) {
                (Some(fb), Some(v)) => !fb.matches(side, &v),
                _ => false,
            })
    }

    pub(super) fn merge(
        &mut self,
        ix: usize,
        e: &EntityInput,
        mut link: Link,
        obs: SidePair<Option<&Observed>>,
        new_link: bool,
    ) {
        let recs = SidePair::new(obs.a.map(|o| &o.record), obs.b.map(|o| &o.record));
        let mut pending: SidePair<Pending> = SidePair::default();
        let mut stored = false;
        let mut opted_out_now: Option<Side> = None;
        if link.review.recheck {
            // The operator asked for this link: read both records, then plan it.
            self.fetch_unseen(ix, &link, recs);
            link.review.recheck = recs.a.is_none() || recs.b.is_none();
        }
        let times = SidePair::new(
            change_time(&e.mapping, &link, Side::A, recs.a),
            change_time(&e.mapping, &link, Side::B, recs.b),
        );
        for pair in &e.mapping.pairs {
            stored |= self.merge_field(
                ix,
                &mut link,
                pair,
                recs,
                times,
                &mut pending,
                &mut opted_out_now,
            );
        }
        let skipped = self.apply_rules(ix, e, &link, recs, &mut pending);
        let (effect, mut extra) =
            self.opt_out_removal(e, &link, opted_out_now, skipped, &mut pending);
        if new_link {
            self.join_lists(e, obs, skipped, &mut extra);
        }
        self.guard_loops(ix, e, &mut link, &mut pending, &mut extra);
        self.emit(
            ix,
            e,
            link,
            recs,
            pending,
            extra,
            effect,
            stored || new_link,
        );
    }

    /// One mapped field of a linked pair, through the field table: the writes go
    /// into `pending`, a base decided without writes into the link. Returns
    /// whether the link's stored bases changed.
    #[allow(clippy::too_many_arguments)]
    fn merge_field(
        &mut self,
        ix: usize,
        link: &mut Link,
        pair: &FieldPair,
        recs: SidePair<Option<&Record>>,
        times: Times,
        pending: &mut SidePair<Pending>,
        opted_out_now: &mut Option<Side>,
    ) -> bool {
        let mut stored = false;
        let mut vals = SidePair::new(
            recs.a.and_then(|r| pair.read(Side::A, r)),
            recs.b.and_then(|r| pair.read(Side::B, r)),
        );
        super::review::fill_open(link, pair, &mut vals);
        let fb = link.fields.get(&pair.key);
        if fb.is_none() {
            for side in Side::BOTH {
                let unseen = recs.get(side).is_none()
                    && vals
                        .get(side.other())
                        .as_ref()
                        .is_some_and(|v| !v.is_empty());
                if let (true, Some(id)) = (unseen, link.id(side)) {
                    self.plan.fetch.push(RecordKey::new(ix, side, id));
                }
            }
        }
        if pair.is_consent()
            && let Some(fb) = fb
        {
            for side in Side::BOTH {
                let v = vals.get(side).as_ref();
                if v.is_some_and(|v| {
                    !fb.matches(side, v) && Consent::of(v) == Some(Consent::OptedOut)
                }) {
                    *opted_out_now = Some(side);
                }
            }
        }
        let read = SidePair::new(recs.a.is_some(), recs.b.is_some());
        let d = self.decide(pair, fb, vals.clone(), read, times);
        if let Some((winner, decision)) = d.conflict {
            self.plan.conflicts.push(ConflictNote {
                entity: ix,
                link: link.key.clone(),
                field: pair.key.clone(),
                a: vals.a.clone().unwrap_or_default(),
                b: vals.b.clone().unwrap_or_default(),
                base: fb.map(|f| f.value.clone()),
                winner,
                decision,
            });
        }
        if let Some(n) = d.note {
            self.note(ix, &link.key, format!("{}: {n}", pair.key));
        }
        // The base the link holds while this run's writes are sent: a base decided
        // without writes is stored first (a first sync's, say); one that comes with
        // writes only once they are acknowledged.
        let held = if d.write.a.is_none() && d.write.b.is_none() {
            d.base.as_ref().or(fb)
        } else {
            fb
        };
        if let Some(fb) = held.filter(|_| !d.manual) {
            for side in Side::BOTH {
                let same = vals.get(side).as_ref().is_some_and(|v| fb.matches(side, v));
                if same && d.write.get(side).is_none() {
                    pending.get_mut(side).kept.insert(pair.key.clone());
                }
            }
        }
        super::review::track_open(link, pair, &vals, d.manual);
        let writes: Vec<Side> = Side::BOTH
            .into_iter()
            .filter(|s| d.write.get(*s).is_some())
            .collect();
        match (writes.is_empty(), d.base) {
            (true, Some(b)) if link.fields.get(&pair.key) != Some(&b) => {
                link.fields.insert(pair.key.clone(), b);
                stored = true;
            }
            (false, Some(b)) => {
                for side in &writes {
                    let v = d.write.get(*side).clone().unwrap_or_default();
                    let p = pending.get_mut(*side);
                    p.set(&pair.def(*side).name, pair.from_canonical(*side, &v));
                    p.base.insert(pair.key.clone(), b.clone());
                    p.why.push(format!("{} ({})", pair.def(*side).name, d.why));
                    p.consent |= pair.is_consent();
                    if writes.len() == 2 {
                        p.joint.insert(pair.key.clone());
                    }
                }
            }
            _ => {}
        }
        stored
    }

    /// The operator's rules on records flowing from one side to the other: a
    /// `skip` drops the writes to the other side, a `set` adds its own. Returns the
    /// sides written to by nothing because a rule skipped them.
    fn apply_rules(
        &mut self,
        ix: usize,
        e: &EntityInput,
        link: &Link,
        recs: SidePair<Option<&Record>>,
        pending: &mut SidePair<Pending>,
    ) -> SidePair<bool> {
        let mut skipped: SidePair<bool> = SidePair::default();
        for from in Side::BOTH {
            let to = from.other();
            let Some(src) = recs.get(from) else { continue };
            if !self.policy.flows(from) || self.policy.rules.is_empty() || link.id(to).is_none() {
                continue;
            }
            let out = rules::evaluate(&self.policy.rules, from, src, &e.mapping, false);
            for n in &out.notes {
                self.note(ix, &link.key, n.clone());
            }
            if let Some(rule) = out.skip {
                *skipped.get_mut(to) = true;
                *pending.get_mut(to) = Pending::default();
                let id = src.id.clone();
                self.skip(
                    ix,
                    from,
                    &id,
                    format!("rule `{rule}`: not synced to side {to}"),
                );
                continue;
            }
            for (name, v) in out.writes {
                let current = recs.get(to).and_then(|r| r.fields.get(&name));
                if current == Some(&v)
                    || current.is_some_and(|c| same_consent(&e.mapping, to, &name, c, &v))
                {
                    continue;
                }
                let p = pending.get_mut(to);
                if let Some(pair) = e.mapping.pairs.iter().find(|p| p.def(to).name == name) {
                    let canon = pair.to_canonical(to, &v);
                    if pair.is_consent() && Consent::of(&canon) != Some(Consent::OptedOut) {
                        continue;
                    }
                    let b = p.base.remove(&pair.key).unwrap_or_else(|| {
                        link.fields
                            .get(&pair.key)
                            .cloned()
                            .unwrap_or_else(|| FieldBase::new(canon.clone()))
                    });
                    let mut b = FieldBase {
                        value: canon.clone(),
                        hash: crate::sync::model::ValueHash::of(&canon),
                        ..b
                    };
                    *b.unseen.get_mut(to) = false;
                    p.base.insert(pair.key.clone(), b);
                    p.consent |= pair.is_consent();
                }
                p.set(&name, v);
                p.why.push(format!("{name} (rule)"));
            }
        }
        skipped
    }

    /// Opt-out removal (`opt-out.on-opt-out`): a record that opted out on one side
    /// is deleted from, or taken off the list of, the other.
    fn opt_out_removal(
        &self,
        e: &EntityInput,
        link: &Link,
        opted_out_now: Option<Side>,
        skipped: SidePair<bool>,
        pending: &mut SidePair<Pending>,
    ) -> (SidePair<LinkEffect>, Vec<(Side, OpKind, String)>) {
        let mut effect: SidePair<LinkEffect> = SidePair::both(LinkEffect::None);
        let mut extra: Vec<(Side, OpKind, String)> = Vec::new();
        if let Some(s) = opted_out_now {
            let t = s.other();
            let action = *self.policy.opt_out.on_opt_out.get(s);
            if self.policy.flows(s)
                && !*skipped.get(t)
                && let Some(id) = link.id(t).map(str::to_string)
            {
                let why = format!(
                    "opted out on side {s} (opt-out.on-opt-out = {})",
                    match action {
                        RemoveAction::Delete => "delete",
                        RemoveAction::RemoveFromContainer => "remove-from-list",
                        RemoveAction::Keep => "keep",
                    }
                );
                match (action, e.containers.get(t)) {
                    (RemoveAction::Delete, _) => {
                        *pending.get_mut(t) = Pending::default();
                        extra.push((t, OpKind::Delete { id }, why));
                    }
                    (RemoveAction::RemoveFromContainer, Some(c)) => {
                        extra.push((
                            t,
                            OpKind::RemoveFromContainer {
                                container: c.clone(),
                                id,
                            },
                            why,
                        ));
                    }
                    _ => {}
                }
                if !extra.is_empty() {
                    *effect.get_mut(t) = LinkEffect::State(LinkState::Removed(t));
                }
            }
        }
        (effect, extra)
    }

    /// A record matched by lookup has unknown list membership: it is added to the
    /// synced list of its side.
    fn join_lists(
        &self,
        e: &EntityInput,
        obs: SidePair<Option<&Observed>>,
        skipped: SidePair<bool>,
        extra: &mut Vec<(Side, OpKind, String)>,
    ) {
        for t in Side::BOTH {
            let (Some(o), Some(c)) = (obs.get(t), e.containers.get(t)) else {
                continue;
            };
            if !o.in_scope && self.policy.flows(t.other()) && !*skipped.get(t) {
                let kind = OpKind::AddToContainer {
                    container: c.clone(),
                    id: o.record.id.clone(),
                };
                extra.push((
                    t,
                    kind,
                    "matched by e-mail: added to the synced list".into(),
                ));
            }
        }
    }

    /// Stores the link if anything about it changed and plans the update of each
    /// side (and the extra ops), remembering what each record will hold.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        ix: usize,
        e: &EntityInput,
        mut link: Link,
        recs: SidePair<Option<&Record>>,
        mut pending: SidePair<Pending>,
        extra: Vec<(Side, OpKind, String)>,
        effect: SidePair<LinkEffect>,
        mut stored: bool,
    ) {
        // Remember what this plan writes to each record, before it is sent.
        for side in Side::BOTH {
            let Some(r) = recs.get(side) else { continue };
            let writes = (!pending.get(side).fields.is_empty() && link.id(side).is_some())
                || extra.iter().any(|(s, _, _)| *s == side);
            let written = writes.then(|| &pending.get(side).base);
            *link.touched.get_mut(side) = touch(&e.mapping, &link, side, r, written);
        }

        for side in Side::BOTH {
            if let Some(r) = recs.get(side)
                && link.versions.get(side) != &r.version
                && pending.get(side).fields.is_empty()
            {
                *link.versions.get_mut(side) = r.version.clone();
                stored = true;
            }
        }
        if stored || self.baseline.links.get(&link.key) != Some(&link) {
            self.plan.links.push(link.clone());
        }
        for side in Side::BOTH {
            let p = std::mem::take(pending.get_mut(side));
            if p.fields.is_empty() {
                continue;
            }
            let Some(id) = link.id(side).map(str::to_string) else {
                continue;
            };
            let if_version = recs.get(side).and_then(|r| r.version.clone());
            let reason = format!("update {}", p.why.join(", "));
            let mut p = p;
            p.kept
                .retain(|k| !p.base.contains_key(k) && !link.review.open.contains_key(k));
            let kind = OpKind::Update {
                id,
                if_version,
                fields: p.fields.clone(),
            };
            self.push_op(ix, e, &link, side, kind, reason, p, LinkEffect::None);
        }
        for (side, kind, why) in extra {
            let fx = *effect.get(side);
            self.push_op(ix, e, &link, side, kind, why, Pending::default(), fx);
        }
    }

    /// The field table (sync-rules §3) for one field.
    pub(super) fn decide(
        &self,
        pair: &FieldPair,
        fb: Option<&FieldBase>,
        vals: SidePair<Option<Value>>,
        read: SidePair<bool>,
        times: Times,
    ) -> FieldDecision {
        let Some(fb) = fb else {
            return self.first_sync(pair, vals, times);
        };
        // A side whose value was never seen takes what it holds now as its
        // alias: an empty read-only field or an app default is not a change.
        let adopted = fb.adopt(&vals, read);
        let fb = adopted.as_ref().unwrap_or(fb);
        let mut d = self.decide_known(pair, fb, vals, times);
        if d.base.is_none() {
            d.base = adopted;
        }
        d
    }

    /// [`Self::decide`] against a base whose sides have both been seen (or are not read now).
    pub(super) fn decide_known(
        &self,
        pair: &FieldPair,
        fb: &FieldBase,
        vals: SidePair<Option<Value>>,
        times: Times,
    ) -> FieldDecision {
        let changed = |side: Side| {
            vals.get(side)
                .as_ref()
                .is_some_and(|v| !fb.matches(side, v))
        };
        match (changed(Side::A), changed(Side::B), vals.a, vals.b) {
            // sync-rules F1 (and F10: ABSENT counts as unchanged).
            (false, false, _, _) => FieldDecision::default(),
            // sync-rules F2 and F3 (and F9 when the flow is not allowed).
            (true, false, Some(a), b) => self.flow(pair, fb, Side::A, a, b),
            (false, true, a, Some(b)) => self.flow(pair, fb, Side::B, b, a),
            (true, true, Some(a), Some(b)) if a == b => FieldDecision {
                // sync-rules F4: false conflict.
                base: Some(FieldBase::new(a)),
                ..FieldDecision::default()
            },
            // sync-rules F5: true conflict.
            (true, true, Some(a), Some(b)) => self.conflict(pair, Some(fb), a, b, times),
            _ => FieldDecision::default(),
        }
    }

    /// Side `s` changed to `v`; the other side did not (its value is `other`, if read).
    pub(super) fn flow(
        &self,
        pair: &FieldPair,
        fb: &FieldBase,
        s: Side,
        v: Value,
        other: Option<Value>,
    ) -> FieldDecision {
        let t = s.other();
        if pair.is_consent() && Consent::of(&v) != Some(Consent::OptedOut) {
            // Consent only tightens: a re-subscribe or a cleared status stays on its side.
            let note = (Consent::of(&fb.value) == Some(Consent::OptedOut)).then(|| {
                format!("side {s} loosened consent to {v}; not propagated (consent only tightens)")
            });
            return FieldDecision {
                base: Some(fb.clone().with_alias(s, v)),
                note,
                ..FieldDecision::default()
            };
        }
        if *pair.flows.get(s) {
            let mut d = FieldDecision {
                base: Some(FieldBase::new(v.clone())),
                why: "changed on the other side",
                ..FieldDecision::default()
            };
            if other.as_ref() != Some(&v) {
                *d.write.get_mut(t) = Some(v);
            }
            return d;
        }
        // sync-rules F9: the target of a one-way field changed.
        let revert = self.policy.one_way_edits == OneWayEdits::Revert
            && !pair.is_consent()
            && !fb.value.is_empty();
        if revert {
            // Side `s` will hold the base again; side `t` keeps its alias (an empty
            // read-only field there is still no edit).
            let mut base = fb.clone();
            *base.alias.get_mut(s) = None;
            let mut d = FieldDecision {
                base: Some(base),
                why: "one-way field reverted",
                ..FieldDecision::default()
            };
            *d.write.get_mut(s) = Some(fb.value.clone());
            return d;
        }
        FieldDecision {
            base: Some(fb.clone().with_alias(s, v)),
            ..FieldDecision::default()
        }
    }

    /// sync-rules F6-F8: no base yet (first sync of this pair, or a new mapping).
    pub(super) fn first_sync(
        &self,
        pair: &FieldPair,
        vals: SidePair<Option<Value>>,
        times: Times,
    ) -> FieldDecision {
        let (Some(a), Some(b)) = (vals.a, vals.b) else {
            return FieldDecision::default();
        };
        if a == b {
            return FieldDecision {
                base: Some(FieldBase::new(a)),
                ..FieldDecision::default()
            };
        }
        let fill = |empty: Side, full: Value, had: Value| {
            let consent_loosening =
                pair.is_consent() && Consent::of(&full) != Some(Consent::OptedOut);
            if *pair.flows.get(empty.other()) && !consent_loosening {
                let mut d = FieldDecision {
                    base: Some(FieldBase::new(full.clone())),
                    why: "filled an empty field",
                    ..FieldDecision::default()
                };
                *d.write.get_mut(empty) = Some(full);
                d
            } else {
                FieldDecision {
                    base: Some(FieldBase::new(full).with_alias(empty, had)),
                    ..FieldDecision::default()
                }
            }
        };
        match (a.is_empty(), b.is_empty()) {
            (true, _) => fill(Side::A, b, a),
            (_, true) => fill(Side::B, a, b),
            _ => self.conflict(pair, None, a, b, times),
        }
    }

    /// sync-rules F5 and F8: both sides hold different non-equal values.
    pub(super) fn conflict(
        &self,
        pair: &FieldPair,
        fb: Option<&FieldBase>,
        a: Value,
        b: Value,
        times: Times,
    ) -> FieldDecision {
        let vals = SidePair::new(a, b);
        if pair.is_consent() {
            let out = |s: Side| Consent::of(vals.get(s)) == Some(Consent::OptedOut);
            return match (out(Side::A), out(Side::B)) {
                (true, _) => self.won(
                    pair,
                    Side::A,
                    vals,
                    "opted-out wins (consent only tightens)",
                ),
                (_, true) => self.won(
                    pair,
                    Side::B,
                    vals,
                    "opted-out wins (consent only tightens)",
                ),
                _ => {
                    let keep = if vals.a.is_empty() { Side::B } else { Side::A };
                    FieldDecision {
                        base: Some(
                            FieldBase::new(vals.get(keep).clone())
                                .with_alias(keep.other(), vals.get(keep.other()).clone()),
                        ),
                        ..FieldDecision::default()
                    }
                }
            };
        }
        if let (Some(fb), CanonKind::Set) = (fb, pair.kind) {
            return self.merge_sets(pair, fb, vals);
        }
        match self.winner(pair, times, &vals) {
            Some((winner, why)) => self.won(pair, winner, vals, &why),
            None => FieldDecision {
                manual: true,
                conflict: Some((
                    None,
                    "manual: nothing written; both values kept until `tandem sync resolve`".into(),
                )),
                ..FieldDecision::default()
            },
        }
    }

    pub(super) fn won(
        &self,
        pair: &FieldPair,
        w: Side,
        vals: SidePair<Value>,
        why: &str,
    ) -> FieldDecision {
        let l = w.other();
        let wv = vals.get(w).clone();
        let mut d = FieldDecision {
            why: "conflict won by the other side",
            ..FieldDecision::default()
        };
        if *pair.flows.get(w) {
            d.base = Some(FieldBase::new(wv.clone()));
            *d.write.get_mut(l) = Some(wv);
            d.conflict = Some((Some(w), format!("side {w} wins: {why}")));
        } else {
            d.base = Some(FieldBase::new(wv).with_alias(l, vals.get(l).clone()));
            d.conflict = Some((
                Some(w),
                format!("side {w} wins: {why}; side {l} keeps its value (one-way)"),
            ));
        }
        d
    }

    /// Three-way set merge: additions on either side kept, removals on either side applied.
    pub(super) fn merge_sets(
        &self,
        pair: &FieldPair,
        fb: &FieldBase,
        vals: SidePair<Value>,
    ) -> FieldDecision {
        let set = |v: &Value| -> BTreeSet<String> {
            match v {
                Value::Texts(items) => items.iter().cloned().collect(),
                Value::Null => BTreeSet::new(),
                other => other.as_text().into_iter().collect(),
            }
        };
        let (base, a, b) = (set(&fb.value), set(&vals.a), set(&vals.b));
        let removed: BTreeSet<String> = base
            .difference(&a)
            .chain(base.difference(&b))
            .cloned()
            .collect();
        let merged: Vec<String> = a
            .union(&b)
            .filter(|x| !removed.contains(*x))
            .cloned()
            .collect();
        let m = if merged.is_empty() {
            Value::Null
        } else {
            Value::Texts(merged)
        };
        let mut d = FieldDecision {
            conflict: Some((None, "both sides changed the set: merged".into())),
            why: "sets merged",
            ..FieldDecision::default()
        };
        let mut base = FieldBase::new(m.clone());
        for side in Side::BOTH {
            if *vals.get(side) == m {
                continue;
            }
            if *pair.flows.get(side.other()) {
                *d.write.get_mut(side) = Some(m.clone());
            } else {
                base = base.with_alias(side, vals.get(side).clone());
            }
        }
        d.base = Some(base);
        d
    }

    /// Who wins a conflict on `pair`, and why; `None` when the rule is `manual`.
    pub(super) fn winner(
        &self,
        pair: &FieldPair,
        times: Times,
        vals: &SidePair<Value>,
    ) -> Option<(Side, String)> {
        if let Some(owner) = pair.owner {
            return Some((owner, format!("side {owner} owns this field")));
        }
        let c = &self.policy.conflict;
        let rule = pair.rule.unwrap_or(c.winner);
        Some(match rule {
            Winner::Manual => return None,
            Winner::PreferAUnlessBlank | Winner::PreferBUnlessBlank => {
                let (w, label) = if rule == Winner::PreferAUnlessBlank {
                    (Side::A, "prefer-a-unless-blank")
                } else {
                    (Side::B, "prefer-b-unless-blank")
                };
                if vals.get(w).is_empty() {
                    let l = w.other();
                    (
                        l,
                        format!("side {w}'s value is blank, so side {l}'s wins ({label})"),
                    )
                } else {
                    (w, format!("conflict policy {label}"))
                }
            }
            Winner::AWins => (Side::A, "conflict policy a-wins".into()),
            Winner::BWins => (Side::B, "conflict policy b-wins".into()),
            Winner::MostRecent => match (times.a, times.b) {
                (Some(ta), Some(tb))
                    if (ta - tb).whole_seconds().unsigned_abs() > u64::from(c.skew_seconds) =>
                {
                    let w = if ta > tb { Side::A } else { Side::B };
                    (w, format!("side {w} changed most recently"))
                }
                (Some(_), Some(_)) => (
                    c.fallback,
                    format!(
                        "changes within {}s: fallback side {}",
                        c.skew_seconds, c.fallback
                    ),
                ),
                _ => (
                    c.fallback,
                    format!("a change time is missing: fallback side {}", c.fallback),
                ),
            },
        })
    }
}

/// Change times per side, as `most-recent` compares them.
pub(super) type Times = SidePair<Option<OffsetDateTime>>;

/// When a user last changed side `side`'s record: the app's change time, unless the
/// record still holds what it held when the sync planned its own write to it (or what
/// that write left), whose change time is then the sync's, not a user's.
pub(super) fn change_time(
    m: &ResolvedMapping,
    link: &Link,
    side: Side,
    r: Option<&Record>,
) -> Option<OffsetDateTime> {
    let r = r?;
    match link.touched.get(side) {
        Some(t) if t.values.contains(&side_digest(m, side, r, None)) => t
            .before
            .as_deref()
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok()),
        _ => r.updated_at(),
    }
}

/// The mark to keep for side `side`'s record `r` after this plan: with `written`
/// (the bases of the fields this plan writes there; empty for list membership), a
/// new mark carrying the user's change time forward; without, an earlier mark only
/// while the record still matches it (a user's edit since retires it).
pub(super) fn touch(
    m: &ResolvedMapping,
    link: &Link,
    side: Side,
    r: &Record,
    written: Option<&BTreeMap<String, FieldBase>>,
) -> Option<Touch> {
    let now = side_digest(m, side, r, None);
    let old = link
        .touched
        .get(side)
        .as_ref()
        .filter(|t| t.values.contains(&now));
    let written = match written {
        Some(w) => w,
        None => return old.cloned(),
    };
    let mut values: BTreeSet<String> = old.map(|t| t.values.clone()).unwrap_or_default();
    values.insert(side_digest(m, side, r, Some(written)));
    values.insert(now);
    Some(Touch {
        before: match old {
            Some(t) => t.before.clone(),
            None => r.updated_at.clone(),
        },
        values,
    })
}

/// Whether a rule's consent write would not change `current` (same opt-out state).
pub(super) fn same_consent(
    m: &ResolvedMapping,
    side: Side,
    name: &str,
    current: &Value,
    v: &Value,
) -> bool {
    match m.consent.get(side) {
        Some(def) if def.name == name => {
            let c = crate::sync::mapping::decode_consent(def, current);
            c.is_some() && c == crate::sync::mapping::decode_consent(def, v)
        }
        _ => false,
    }
}
