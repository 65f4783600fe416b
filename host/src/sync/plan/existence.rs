//! The existence table (sync-rules E1-E18): what happens to records rather than fields. Matching
//! by every e-mail (with the operator's link / keep-apart decisions), ambiguity,
//! creates (and deferred creates), deletes and tombstones, scope exits and
//! returns, a gone record re-pointed to its namesake, and "modification beats
//! deletion".

use std::collections::{BTreeMap, BTreeSet};

use crate::sync::baseline::{
    Baseline, Decision, Decisions, FieldBase, Link, LinkOrigin, LinkState,
};
use crate::sync::model::{Consent, Record, Side, SidePair, Value};
use crate::sync::policy::RemoveAction;
use crate::sync::rules;

use super::{
    Ambiguity, Candidates, EntityInput, LinkEffect, Observed, OpKind, Pending, Planner, SideState,
    join, marker, shared,
};

impl<'a> Planner<'a> {
    pub(super) fn side_state<'o>(
        &self,
        e: &'o EntityInput,
        link: &Link,
        side: Side,
    ) -> SideState<'o> {
        let Some(id) = link.id(side) else {
            return SideState::Pending;
        };
        let obs = e.obs.get(side);
        if let Some(reason) = obs.failed.get(id) {
            SideState::Failed(reason)
        } else if let Some(o) = obs.records.get(id) {
            SideState::Present(o)
        } else if obs.deleted.contains(id) {
            SideState::Gone
        } else if obs.left_scope.contains(id) {
            SideState::Out
        } else {
            SideState::Unseen
        }
    }

    pub(super) fn link(&mut self, ix: usize, e: &EntityInput, link: &Link) {
        let sa = self.side_state(e, link, Side::A);
        let sb = self.side_state(e, link, Side::B);
        match link.state {
            LinkState::Linked | LinkState::Quarantined => self.linked(ix, e, link.clone(), sa, sb),
            LinkState::Detached(s) => {
                let st = if s == Side::A { &sa } else { &sb };
                if matches!(st, SideState::Present(o) if o.in_scope) {
                    let mut l = link.clone();
                    l.state = LinkState::Linked;
                    self.note(
                        ix,
                        &l.key,
                        format!("back in side {s}'s scope: syncing again"),
                    );
                    let (sa, sb) = self.rejoin(ix, e, &mut l, s, sa, sb);
                    self.linked(ix, e, l, sa, sb);
                }
            }
            LinkState::Deleted(s) => {
                let (st, other) = if s == Side::A { (&sa, &sb) } else { (&sb, &sa) };
                if let SideState::Gone = other {
                    self.note(
                        ix,
                        &link.key,
                        "deleted on both sides: link dropped when its tombstones expire".into(),
                    );
                    self.plan.unlink.push(link.key.clone());
                } else if let SideState::Present(_) = st {
                    let mut l = link.clone();
                    l.state = LinkState::Linked;
                    self.note(
                        ix,
                        &l.key,
                        format!("record on side {s} is back: syncing again"),
                    );
                    self.linked(ix, e, l, sa, sb);
                } else if let SideState::Present(o) = other
                    && self.changed_since_base(e, link, s.other(), &o.record)
                {
                    self.recreate(
                        ix,
                        e,
                        link,
                        s,
                        o,
                        "modified after its counterpart was deleted",
                    );
                }
            }
            LinkState::Removed(_) => {}
        }
    }

    pub(super) fn linked(
        &mut self,
        ix: usize,
        e: &EntityInput,
        link: Link,
        sa: SideState,
        sb: SideState,
    ) {
        use SideState::*;
        match (&sa, &sb) {
            (Failed(r), _) | (_, Failed(r)) => {
                let side = if matches!(sa, Failed(_)) {
                    Side::A
                } else {
                    Side::B
                };
                let id = link.id(side).unwrap_or_default().to_string();
                self.skip(ix, side, &id, format!("could not be read: {r}"));
            }
            (Gone, Gone) => {
                self.note(
                    ix,
                    &link.key,
                    "deleted on both sides: link dropped when its tombstones expire".into(),
                );
                self.plan.unlink.push(link.key.clone());
            }
            (Gone, _) => self.deleted(ix, e, link, Side::A, &sb),
            (_, Gone) => self.deleted(ix, e, link, Side::B, &sa),
            (Out, _) | (_, Out) => {
                let (side, other) = if matches!(sa, Out) {
                    (Side::A, &sb)
                } else {
                    (Side::B, &sa)
                };
                let other = if let Present(o) = other {
                    Some(*o)
                } else {
                    None
                };
                self.left_scope(ix, e, link, side, other);
            }
            (Pending, Present(o)) => self.create(ix, e, &link, Side::A, o, "pending create"),
            (Present(o), Pending) => self.create(ix, e, &link, Side::B, o, "pending create"),
            (Unseen, Unseen) if link.review.recheck => {
                self.fetch_unseen(ix, &link, SidePair::default())
            }
            (Pending, _) | (_, Pending) | (Unseen, Unseen) => {}
            _ => {
                let ra = if let Present(o) = &sa { Some(*o) } else { None };
                let rb = if let Present(o) = &sb { Some(*o) } else { None };
                self.merge(ix, e, link, SidePair::new(ra, rb), false);
            }
        }
    }

    /// A linked record was deleted on side `gone`; `survivor` is the other side.
    pub(super) fn deleted(
        &mut self,
        ix: usize,
        e: &EntityInput,
        link: Link,
        gone: Side,
        survivor: &SideState,
    ) {
        let keep = gone.other();
        let src = if let SideState::Present(o) = survivor {
            Some(*o)
        } else {
            None
        };
        if self.repoint(ix, e, &link, gone, src) {
            return;
        }
        let modified = match survivor {
            SideState::Present(o) => self.changed_since_base(e, &link, keep, &o.record),
            _ => false,
        };
        if modified && let SideState::Present(o) = survivor {
            if self.policy.flows(keep) && self.may_create(ix, e, gone) {
                self.recreate(ix, e, &link, gone, o, "modification beats deletion");
                return;
            }
            let mut l = link;
            l.state = LinkState::Deleted(gone);
            self.note(ix, &l.key, format!("deleted on side {gone}; its counterpart was modified since the last sync and is kept"));
            self.plan.links.push(l);
            return;
        }
        let action = if self.policy.flows(gone) {
            *self.policy.deletes.on_delete.get(gone)
        } else {
            RemoveAction::Keep
        };
        let target_id = link.id(keep).map(str::to_string);
        let container = e.containers.get(keep).clone();
        // With a delete or removal to make, the link changes only when it is
        // acknowledged: a crash before that re-plans it from the same tombstone.
        let mut l = link;
        match (action, target_id, container) {
            (RemoveAction::Delete, Some(id), _) => {
                let reason = format!("deleted on side {gone} (deletes.on-delete = delete)");
                self.push_op(
                    ix,
                    e,
                    &l,
                    keep,
                    OpKind::Delete { id },
                    reason,
                    Pending::default(),
                    LinkEffect::Drop,
                );
            }
            (RemoveAction::RemoveFromContainer, Some(id), Some(container)) => {
                let reason =
                    format!("deleted on side {gone} (deletes.on-delete = remove-from-list)");
                let kind = OpKind::RemoveFromContainer { container, id };
                self.push_op(
                    ix,
                    e,
                    &l,
                    keep,
                    kind,
                    reason,
                    Pending::default(),
                    LinkEffect::Drop,
                );
            }
            _ => {
                let why = if self.policy.flows(gone) {
                    "counterpart kept (deletes.on-delete = keep)"
                } else {
                    "one-way sync: deletions on this side do not flow"
                };
                l.state = LinkState::Deleted(gone);
                self.note(ix, &l.key, format!("deleted on side {gone}; {why}"));
                self.plan.links.push(l);
            }
        }
    }

    /// Creates the record of side `on` again from the other side's record.
    pub(super) fn recreate(
        &mut self,
        ix: usize,
        e: &EntityInput,
        link: &Link,
        on: Side,
        src: &Observed,
        why: &str,
    ) {
        if self.repoint(ix, e, link, on, Some(src))
            || !(self.policy.flows(on.other()) && self.may_create(ix, e, on))
        {
            return;
        }
        let emails = e.mapping.emails(on.other(), &src.record);
        if emails.first().is_some_and(|m| {
            self.creating
                .get(on)
                .contains(&(e.pair.name(on).to_string(), m.clone()))
        }) {
            self.skip(
                ix,
                on.other(),
                &src.record.id,
                format!("a record with this e-mail is already being created on side {on}"),
            );
            return;
        }
        let obs = e.obs.get(on);
        if !obs.complete && (emails.is_empty() || !emails.iter().all(|m| obs.searched.contains(m)))
        {
            self.skip(
                ix,
                on.other(),
                &src.record.id,
                format!("not yet looked up on side {on}: not re-created"),
            );
            return;
        }
        let mut l = link.clone();
        *l.ids.get_mut(on) = None;
        l.state = LinkState::Linked;
        l.fields.clear();
        *l.versions.get_mut(on) = None;
        self.note(ix, &l.key, format!("re-creating on side {on}: {why}"));
        self.plan.links.push(l.clone());
        self.create(ix, e, &l, on, src, why);
    }

    /// The record of side `gone` was deleted, but an unclaimed record with the
    /// same e-mail exists there (a merge, or a re-entry): re-point the link to
    /// it instead of deleting or re-creating (sync-rules E11). Returns whether it handled the link: re-pointed,
    /// or several candidates reported as an ambiguity (nothing else may happen to it then).
    pub(super) fn repoint(
        &mut self,
        ix: usize,
        e: &EntityInput,
        link: &Link,
        gone: Side,
        src: Option<&Observed>,
    ) -> bool {
        let keep = gone.other();
        let email = src
            .and_then(|o| e.mapping.match_key(keep, &o.record))
            .or_else(|| {
                match link
                    .fields
                    .get(&e.mapping.email_pair().key)
                    .map(|f| &f.value)
                {
                    Some(Value::Text(s)) => Some(s.clone()),
                    _ => link.match_key.clone(),
                }
            });
        let Some(email) = email else { return false };
        let entity = e.pair.name(gone).to_string();
        let candidates: Vec<&Observed> = e
            .obs
            .get(gone)
            .records
            .values()
            .filter(|o| {
                !self
                    .claimed
                    .get(gone)
                    .contains(&(entity.clone(), o.record.id.clone()))
            })
            .filter(|o| e.mapping.emails(gone, &o.record).contains(&email))
            .collect();
        match candidates.as_slice() {
            [] => false,
            [one] => {
                let mut l = link.clone();
                *l.ids.get_mut(gone) = Some(one.record.id.clone());
                l.state = LinkState::Linked;
                l.fields.clear();
                *l.versions.get_mut(gone) = None;
                self.claim(e, gone, &one.record.id);
                self.note(ix, &l.key, format!("side {gone} record was replaced by {} with the same e-mail: link re-pointed", one.record.id));
                let obs = match gone {
                    Side::A => SidePair::new(Some(*one), src),
                    Side::B => SidePair::new(src, Some(*one)),
                };
                if src.is_some() {
                    self.merge(ix, e, l, obs, true);
                } else {
                    self.plan.links.push(l);
                }
                true
            }
            many => {
                let ids: Vec<String> = many.iter().map(|o| o.record.id.clone()).collect();
                let (a, b) = match gone {
                    Side::A => (
                        ids,
                        link.id(Side::B).map(str::to_string).into_iter().collect(),
                    ),
                    Side::B => (
                        link.id(Side::A).map(str::to_string).into_iter().collect(),
                        ids,
                    ),
                };
                self.plan.ambiguous.push(Ambiguity { entity: ix, email, a, b, reason: format!("the linked record on side {gone} is gone and several records there share its e-mail") });
                // Handled: the operator picks one; neither a re-create (a third record
                // with that e-mail) nor a delete of the survivor happens meanwhile.
                true
            }
        }
    }

    pub(super) fn unlinked(&mut self, ix: usize, e: &EntityInput, baseline: &Baseline) {
        let decisions = &baseline.decisions;
        let (emails, holders, primaries) = self.index_emails(ix, e);
        self.operator_links(ix, e, decisions, &emails);
        let free: SidePair<BTreeSet<String>> = SidePair::new(
            self.free_ids(e, Side::A, emails.a.keys()),
            self.free_ids(e, Side::B, emails.b.keys()),
        );
        let mut partner: SidePair<BTreeMap<String, String>> = SidePair::default();
        for l in baseline.links.values().chain(&self.plan.links) {
            if let (true, Some(a), Some(b)) = (l.entity == ix, l.id(Side::A), l.id(Side::B)) {
                partner.a.insert(a.to_string(), b.to_string());
                partner.b.insert(b.to_string(), a.to_string());
            }
        }
        let m = Matcher {
            ix,
            decisions,
            emails,
            holders,
            primaries,
            free,
            partner,
        };
        let mut reported: SidePair<BTreeSet<String>> = SidePair::default();
        for s in Side::BOTH {
            for id in m.free.get(s) {
                self.match_one(e, &m, s, id, &mut reported);
            }
        }
    }

    /// Every e-mail of every record (primary and secondary addresses), the records
    /// holding each e-mail, and the records holding each primary address, per side.
    /// A record without an e-mail is skipped (sync-rules E1).
    #[allow(clippy::type_complexity)]
    fn index_emails(
        &mut self,
        ix: usize,
        e: &EntityInput,
    ) -> (
        SidePair<BTreeMap<String, Vec<String>>>,
        SidePair<BTreeMap<String, BTreeSet<String>>>,
        SidePair<BTreeMap<String, BTreeSet<String>>>,
    ) {
        let mut emails: SidePair<BTreeMap<String, Vec<String>>> = SidePair::default();
        let mut holders: SidePair<BTreeMap<String, BTreeSet<String>>> = SidePair::default();
        let mut primaries: SidePair<BTreeMap<String, BTreeSet<String>>> = SidePair::default();
        for side in Side::BOTH {
            for (id, o) in &e.obs.get(side).records {
                let ms = e.mapping.emails(side, &o.record);
                if ms.is_empty() {
                    if !self.is_claimed(e, side, id) && o.in_scope && self.policy.flows(side) {
                        self.skip(
                            ix,
                            side,
                            id,
                            "no e-mail: not matched or created (avoids duplicates)".into(),
                        );
                    }
                    continue;
                }
                for m in &ms {
                    holders
                        .get_mut(side)
                        .entry(m.clone())
                        .or_default()
                        .insert(id.clone());
                }
                primaries
                    .get_mut(side)
                    .entry(ms[0].clone())
                    .or_default()
                    .insert(id.clone());
                emails.get_mut(side).insert(id.clone(), ms);
            }
        }
        (emails, holders, primaries)
    }

    /// The operator's links first (sync-rules E6): they win over any e-mail match.
    fn operator_links(
        &mut self,
        ix: usize,
        e: &EntityInput,
        decisions: &Decisions,
        emails: &SidePair<BTreeMap<String, Vec<String>>>,
    ) {
        for ((dix, a, b), d) in decisions {
            if *dix != ix || *d != Decision::Link {
                continue;
            }
            let seen = emails.a.contains_key(a) && emails.b.contains_key(b);
            if seen && !self.is_claimed(e, Side::A, a) && !self.is_claimed(e, Side::B, b) {
                let key =
                    shared(&emails.a[a], &emails.b[b]).unwrap_or_else(|| emails.a[a][0].clone());
                self.new_link(ix, e, &key, a, b);
                self.note(
                    ix,
                    &format!("{ix}/a/{a}"),
                    "linked by the operator (tandem sync resolve --link)".into(),
                );
            }
        }
    }

    /// Matches one free record of side `s`: a link when it and its only candidate
    /// choose each other, else an ambiguity, else a create decided once every entity
    /// pair has matched (sync-rules E2-E5).
    fn match_one(
        &mut self,
        e: &EntityInput,
        m: &Matcher<'_>,
        s: Side,
        id: &String,
        reported: &mut SidePair<BTreeSet<String>>,
    ) {
        let ix = m.ix;
        let t = s.other();
        if self.is_claimed(e, s, id) {
            return;
        }
        if reported.get(s).contains(id) {
            self.held
                .get_mut(s)
                .insert((e.pair.name(s).to_string(), id.clone()));
            return;
        }
        let mine = &m.emails.get(s)[id];
        let c = m.candidates(s, id);
        let mut free_here = false;
        let mut ambiguous = |this: &mut Self, reason: String| {
            let ids_s: Vec<String> = std::iter::once(id.clone())
                .chain(c.free_s.iter().cloned())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let ids_t: Vec<String> = c.free_t.union(&c.taken_t).cloned().collect();
            reported.get_mut(s).extend(ids_s.iter().cloned());
            reported.get_mut(t).extend(c.free_t.iter().cloned());
            let (a, b) = match s {
                Side::A => (ids_s, ids_t),
                Side::B => (ids_t, ids_s),
            };
            this.plan.ambiguous.push(Ambiguity {
                entity: ix,
                email: mine[0].clone(),
                a,
                b,
                reason,
            });
        };
        if c.free_t.len() == 1 && c.taken_t.is_empty() {
            let y = c.free_t.iter().next().cloned().unwrap_or_default();
            let back = m.candidates(t, &y);
            if back.free_t.len() == 1 && back.taken_t.is_empty() {
                let key = shared(mine, &m.emails.get(t)[&y]).unwrap_or_else(|| mine[0].clone());
                let (a, b) = match s {
                    Side::A => (id.as_str(), y.as_str()),
                    Side::B => (y.as_str(), id.as_str()),
                };
                self.new_link(ix, e, &key, a, b);
            } else {
                let n = back.free_t.len() + back.taken_t.len();
                ambiguous(
                    self,
                    format!("side {t} record {y} matches {n} records on side {s} by e-mail"),
                );
            }
        } else if c.free_t.is_empty() {
            if !c.free_s.is_empty() {
                if self.policy.flows(s) {
                    ambiguous(
                        self,
                        format!("{} records on side {s} share an e-mail", c.free_s.len() + 1),
                    );
                }
            } else if !c.taken_t.is_empty() {
                if self.policy.flows(s) {
                    ambiguous(
                        self,
                        format!(
                            "side {t} record {} with this e-mail is already linked to another record",
                            join(&c.taken_t)
                        ),
                    );
                }
            } else if !c.taken_s.is_empty() {
                if self.policy.flows(s) {
                    ambiguous(
                        self,
                        format!(
                            "side {s} record {} with this e-mail is already linked: {id} looks like a duplicate",
                            join(&c.taken_s)
                        ),
                    );
                }
            } else {
                // Decided once every entity pair has matched (see `plan`).
                free_here = true;
                self.deferred.push((ix, s, id.clone(), mine.clone()));
            }
        } else {
            ambiguous(
                self,
                format!(
                    "{} candidates on side {t} ({} already linked) and {} other records on side {s} share its e-mails",
                    c.free_t.len() + c.taken_t.len(),
                    c.taken_t.len(),
                    c.free_s.len() + c.taken_s.len(),
                ),
            );
        }
        if !free_here {
            self.held
                .get_mut(s)
                .insert((e.pair.name(s).to_string(), id.clone()));
        }
    }

    /// A create deferred by [`Self::unlinked`], now that every entity pair has
    /// matched: made unless the record was linked, matched or reported by a pair
    /// of the same entity, or a record with its e-mail is already being created.
    pub(super) fn deferred_create(
        &mut self,
        ix: usize,
        e: &EntityInput,
        s: Side,
        id: &str,
        emails: &[String],
    ) {
        let t = s.other();
        let entities = self.entities;
        let name = e.pair.name(s);
        let key = (name.to_string(), id.to_string());
        if self.is_claimed(e, s, id) || self.held.get(s).contains(&key) {
            return;
        }
        // Another pair of the same entity creates it (only the first may, by default).
        let others: Vec<usize> = (0..entities.len())
            .filter(|j| *j != ix && entities[*j].pair.name(s) == name)
            .collect();
        if !self.may_create(ix, e, t)
            && self.deferred.iter().any(|(j, side, other, _)| {
                *side == s && other == id && self.may_create(*j, &entities[*j], t)
            })
        {
            return;
        }
        // Every pair of this entity must have looked for it on its side-t entity:
        // one that did not might hold the person (a contact, not a lead).
        for j in others {
            let obs = entities[j].obs.get(t);
            if !obs.complete && !emails.iter().all(|m| obs.searched.contains(m)) {
                let other = entities[j].pair.name(t).to_string();
                self.skip(
                    ix,
                    s,
                    id,
                    format!("not yet looked up among side {t}'s `{other}`"),
                );
                return;
            }
        }
        if self
            .creating
            .get(t)
            .contains(&(e.pair.name(t).to_string(), emails[0].clone()))
        {
            let ids = vec![id.to_string()];
            let (a, b) = match s {
                Side::A => (ids, Vec::new()),
                Side::B => (Vec::new(), ids),
            };
            self.plan.ambiguous.push(Ambiguity {
                entity: ix,
                email: emails[0].clone(),
                a,
                b,
                reason: format!("a record with this e-mail is already being created on side {t}"),
            });
            return;
        }
        self.maybe_create(ix, e, s, id, emails);
    }

    pub(super) fn is_claimed(&self, e: &EntityInput, side: Side, id: &str) -> bool {
        self.claimed
            .get(side)
            .contains(&(e.pair.name(side).to_string(), id.to_string()))
    }

    pub(super) fn free_ids<'i>(
        &self,
        e: &EntityInput,
        side: Side,
        ids: impl Iterator<Item = &'i String>,
    ) -> BTreeSet<String> {
        ids.filter(|id| !self.is_claimed(e, side, id))
            .cloned()
            .collect()
    }

    pub(super) fn new_link(&mut self, ix: usize, e: &EntityInput, email: &str, a: &str, b: &str) {
        let (oa, ob) = (&e.obs.a.records[a], &e.obs.b.records[b]);
        let link = Link {
            key: format!("{ix}/a/{a}"),
            entity: ix,
            ids: SidePair::new(Some(a.to_string()), Some(b.to_string())),
            state: LinkState::Linked,
            fields: BTreeMap::new(),
            versions: SidePair::new(oa.record.version.clone(), ob.record.version.clone()),
            match_key: Some(email.to_string()),
            origin: LinkOrigin::Email,
            review: Default::default(),
            touched: Default::default(),
        };
        self.claim(e, Side::A, a);
        self.claim(e, Side::B, b);
        self.note(ix, &link.key, format!("linked A:{a} and B:{b} by e-mail"));
        self.merge(ix, e, link, SidePair::new(Some(oa), Some(ob)), true);
    }

    pub(super) fn claim(&mut self, e: &EntityInput, side: Side, id: &str) {
        self.claimed
            .get_mut(side)
            .insert((e.pair.name(side).to_string(), id.to_string()));
    }

    /// Whether records are created on `side` for entity pair `ix`.
    pub(super) fn may_create(&self, ix: usize, e: &EntityInput, side: Side) -> bool {
        let explicit = match side {
            Side::A => e.pair.create_a,
            Side::B => e.pair.create_b,
        };
        explicit.unwrap_or_else(|| {
            let src = side.other();
            let first = self
                .entities
                .iter()
                .position(|p| p.pair.name(src) == e.pair.name(src));
            self.policy.create.on(side) && first == Some(ix)
        })
    }

    pub(super) fn excluded(&self, e: &EntityInput, side: Side, r: &Record) -> bool {
        let o = &self.policy.opt_out;
        let default = e
            .mapping
            .consent
            .get(side)
            .as_ref()
            .is_some_and(|d| d.is(tandem_well_known::CONSENT));
        let on =
            o.exclude.get(side).unwrap_or(default) || *o.on_opt_out.get(side) != RemoveAction::Keep;
        on && e.mapping.consent(side, r) == Some(Consent::OptedOut)
    }

    /// An unlinked record of side `s` with no candidate on the other side.
    pub(super) fn maybe_create(
        &mut self,
        ix: usize,
        e: &EntityInput,
        s: Side,
        id: &str,
        emails: &[String],
    ) {
        let t = s.other();
        let email = emails[0].as_str();
        let o = &e.obs.get(s).records[id];
        if !o.in_scope || !self.policy.flows(s) {
            return;
        }
        let reason = if !self.may_create(ix, e, t) {
            Some(format!(
                "creating records on side {t} is disabled for this entity"
            ))
        } else if self.excluded(e, s, &o.record) {
            Some(format!(
                "opted out on side {s}: excluded (opt-out settings)"
            ))
        } else if let Some(rule) =
            rules::evaluate(&self.policy.rules, s, &o.record, &e.mapping, true).skip
        {
            // Checked before the lookup: the engine does not look up what a rule skips.
            Some(format!("rule `{rule}`: not created on side {t}"))
        } else if !e.obs.get(t).complete
            && !emails.iter().all(|m| e.obs.get(t).searched.contains(m))
        {
            Some(format!("not yet looked up on side {t}"))
        } else {
            None
        };
        if let Some(r) = reason {
            self.skip(ix, s, id, r);
            return;
        }
        let link = Link {
            key: format!("{ix}/{}/{id}", s.as_str()),
            entity: ix,
            ids: match s {
                Side::A => SidePair::new(Some(id.to_string()), None),
                Side::B => SidePair::new(None, Some(id.to_string())),
            },
            state: LinkState::Linked,
            fields: BTreeMap::new(),
            versions: SidePair::default(),
            match_key: Some(email.to_string()),
            origin: LinkOrigin::Created(t),
            review: Default::default(),
            touched: Default::default(),
        };
        self.create(ix, e, &link, t, o, "no match on the other side");
    }

    /// Plans the create of `link`'s record on side `t` from `src` (a record of the other side).
    pub(super) fn create(
        &mut self,
        ix: usize,
        e: &EntityInput,
        link: &Link,
        t: Side,
        src: &Observed,
        why: &str,
    ) {
        let s = t.other();
        let out = rules::evaluate(&self.policy.rules, s, &src.record, &e.mapping, true);
        if let Some(rule) = out.skip {
            self.skip(
                ix,
                s,
                &src.record.id,
                format!("rule `{rule}`: not created on side {t}"),
            );
            return;
        }
        let mut p = Pending::default();
        for pair in &e.mapping.pairs {
            let v = pair.read(s, &src.record).unwrap_or(Value::Null);
            let base = if *pair.flows.get(s) && !v.is_empty() {
                p.set(&pair.def(t).name, pair.from_canonical(t, &v));
                p.consent |= pair.is_consent();
                FieldBase::new(v)
            } else {
                // Not written there (read-only, or nothing to write): what the new
                // record holds is known only from the app's answer or the next read.
                FieldBase::new(v).unseen_on(t)
            };
            p.base.insert(pair.key.clone(), base);
        }
        for (name, v) in out.writes {
            if let Some(pair) = e.mapping.pairs.iter().find(|p| p.def(t).name == name) {
                let canon = pair.to_canonical(t, &v);
                p.base.insert(pair.key.clone(), FieldBase::new(canon));
            }
            p.set(&name, v);
        }
        for n in out.notes {
            self.note(ix, &link.key, n);
        }
        self.claim(e, s, &src.record.id);
        for m in e.mapping.emails(s, &src.record) {
            self.creating
                .get_mut(t)
                .insert((e.pair.name(t).to_string(), m));
        }
        let mut l = link.clone();
        *l.versions.get_mut(s) = src.record.version.clone();
        // `recreate` pushed this link just before: replace it, don't scan.
        if self.plan.links.last().is_some_and(|x| x.key == l.key) {
            self.plan.links.pop();
        }
        self.plan.links.push(l.clone());
        let kind = OpKind::Create {
            fields: p.fields.clone(),
            marker: marker(&self.policy.name, &l.key),
            containers: e.containers.get(t).iter().cloned().collect(),
        };
        let reason = format!("create from side {s} record {} ({why})", src.record.id);
        self.push_op(ix, e, &l, t, kind, reason, p, LinkEffect::SetId);
    }
}

/// What matching the free records of one entity pair looks up: every record's
/// e-mails, who holds each address, which records are free, and the operator's
/// keep-apart decisions.
struct Matcher<'d> {
    ix: usize,
    decisions: &'d Decisions,
    emails: SidePair<BTreeMap<String, Vec<String>>>,
    holders: SidePair<BTreeMap<String, BTreeSet<String>>>,
    /// Same-side duplicates are judged on the match key (primary address) only:
    /// two records of one app that share a secondary address are two people as far
    /// as creating them elsewhere goes.
    primaries: SidePair<BTreeMap<String, BTreeSet<String>>>,
    /// Candidates are decided against the records free before this pass, so that
    /// the links it makes are disjoint and the result does not depend on order.
    free: SidePair<BTreeSet<String>>,
    /// The linked counterpart of each linked record, so that a record kept apart
    /// from a person is not reported as a duplicate of that person's record on its
    /// own side either.
    partner: SidePair<BTreeMap<String, String>>,
}

impl Matcher<'_> {
    /// Whether the operator keeps `id` (of `side`) apart from `other`.
    fn apart(&self, side: Side, id: &str, other: &str) -> bool {
        let (a, b) = match side {
            Side::A => (id, other),
            Side::B => (other, id),
        };
        self.decisions.get(&(self.ix, a.to_string(), b.to_string())) == Some(&Decision::KeepApart)
    }

    /// The records sharing an e-mail with free record `id` of `side`.
    fn candidates(&self, side: Side, id: &str) -> Candidates {
        let t = side.other();
        let mut c = Candidates::default();
        for m in &self.emails.get(side)[id] {
            for other in self.holders.get(t).get(m).into_iter().flatten() {
                let (a, b) = match side {
                    Side::A => (id, other.as_str()),
                    Side::B => (other.as_str(), id),
                };
                let key = (self.ix, a.to_string(), b.to_string());
                if self.decisions.get(&key) == Some(&Decision::KeepApart) {
                    continue;
                }
                if self.free.get(t).contains(other) {
                    c.free_t.insert(other.clone());
                } else {
                    c.taken_t.insert(other.clone());
                }
            }
        }
        let first = &self.emails.get(side)[id][0];
        for other in self.primaries.get(side).get(first).into_iter().flatten() {
            if other == id {
                continue;
            }
            if self.free.get(side).contains(other) {
                c.free_s.insert(other.clone());
            } else if !self
                .partner
                .get(side)
                .get(other)
                .is_some_and(|p| self.apart(side, id, p))
            {
                c.taken_s.insert(other.clone());
            }
        }
        c
    }
}
