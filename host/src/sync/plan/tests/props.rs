//! Property tests of the planner against an in-memory model of two apps:
//! random records and random edits on both sides, then plan + apply until
//! quiescent. Invariants: it terminates; a second sync with no edits plans
//! nothing; linked records agree on every mapped field; no duplicates are
//! created; consent never loosens. Side A has a read-only `company` (paired
//! with B's writable `org`) that its write answers leave out, as a CRM's
//! account name: a field the sync cannot write or did not see must never
//! look changed.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// Side B's app reformats what it stores (as real apps do): names get a
/// capital first letter, phones get spaces. The engine must not echo these.
fn app_normalise(side: Side, fields: &mut BTreeMap<String, Value>) {
    if side != Side::B {
        return;
    }
    if let Some(Value::Text(s)) = fields.get("first_name") {
        let mut c = s.chars();
        let v = c
            .next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
            .unwrap_or_default();
        fields.insert("first_name".into(), Value::Text(v));
    }
    if let Some(Value::Text(s)) = fields.get("mobile") {
        let spaced: String = s.chars().flat_map(|c| [c, ' ']).collect();
        fields.insert("mobile".into(), Value::Text(spaced.trim().to_string()));
    }
}

#[derive(Default)]
struct World {
    apps: SidePair<BTreeMap<String, Record>>,
    links: BTreeMap<String, Link>,
    next: u64,
    /// Every consent value the engine wrote to an existing record.
    consent_writes: Vec<Value>,
    /// Writes that emptied B's `org`: only a user emptying A's company may cause one.
    org_wipes: usize,
    /// Runs so far (the loop detector's clock).
    runs: u64,
}

impl World {
    fn insert(&mut self, side: Side, mut fields: BTreeMap<String, Value>) -> Record {
        self.next += 1;
        app_normalise(side, &mut fields);
        let r = Record {
            id: format!("{}{}", side.as_str(), self.next),
            version: Some("1".into()),
            updated_at: Some(format!(
                "2024-01-01T00:{:02}:{:02}Z",
                (self.next / 60) % 60,
                self.next % 60
            )),
            fields,
        };
        self.apps.get_mut(side).insert(r.id.clone(), r.clone());
        r
    }

    fn input(&self, p: &SyncPolicy) -> EntityInput {
        let mut e = input(
            p,
            self.apps.a.values().cloned().collect(),
            self.apps.b.values().cloned().collect(),
        );
        e.mapping = company_mapping(p);
        // A complete listing that lacks a linked id: the executor's lookup by
        // id would say "deleted" (scope is all records).
        for l in self.links.values() {
            for side in Side::BOTH {
                if let Some(id) = l.id(side)
                    && !self.apps.get(side).contains_key(id)
                {
                    e.obs.get_mut(side).deleted.insert(id.to_string());
                }
            }
        }
        e
    }

    /// One run: plan, then apply every op as the executor would.
    fn sync(&mut self, p: &SyncPolicy) -> Plan {
        let e = self.input(p);
        self.runs += 1;
        let mut baseline = Baseline::from_links(self.links.values().cloned());
        baseline.run = self.runs;
        let plan = plan(p, &baseline, std::slice::from_ref(&e));
        for l in &plan.links {
            self.links.insert(l.key.clone(), l.clone());
        }
        for k in &plan.unlink {
            self.links.remove(k);
        }
        for op in &plan.ops {
            let readback = self.apply(op);
            let Some(link) = self.links.get_mut(&op.link) else {
                continue;
            };
            if !apply_ack(link, op, readback.as_ref(), &e.mapping, true) {
                self.links.remove(&op.link);
            }
        }
        plan
    }

    fn apply(&mut self, op: &PlannedOp) -> Option<Record> {
        match &op.kind {
            OpKind::Create { fields, .. } => {
                let mut r = self.insert(op.side, fields.iter().cloned().collect());
                if op.side == Side::A {
                    // The app lists the read-only company (empty) but its answer omits it.
                    assert!(!r.fields.contains_key("company"), "company is read-only");
                    self.apps
                        .a
                        .get_mut(&r.id)?
                        .fields
                        .insert("company".into(), Value::Null);
                    r.fields.remove("company");
                }
                Some(r)
            }
            OpKind::Update { id, fields, .. } => {
                if op.side == Side::B && fields.iter().any(|(n, v)| n == "org" && v.is_empty()) {
                    self.org_wipes += 1;
                }
                if let Some(v) = fields
                    .iter()
                    .find(|(n, _)| n == "do_not_disturb" || n == "subscription_status")
                {
                    self.consent_writes.push(v.1.clone());
                }
                let app = self.apps.get_mut(op.side);
                let r = app.get_mut(id)?;
                for (n, v) in fields {
                    r.fields.insert(n.clone(), v.clone());
                }
                app_normalise(op.side, &mut r.fields);
                let v: u64 = r.version.as_deref().unwrap_or("0").parse().unwrap_or(0);
                r.version = Some((v + 1).to_string());
                let mut answer = r.clone();
                answer.fields.remove("company");
                Some(answer)
            }
            OpKind::Delete { id } => {
                self.apps.get_mut(op.side).remove(id);
                None
            }
            OpKind::AddToContainer { .. } | OpKind::RemoveFromContainer { .. } => None,
        }
    }

    fn until_quiet(&mut self, p: &SyncPolicy) -> Result<(), TestCaseError> {
        for _ in 0..8 {
            if self.sync(p).ops.is_empty() {
                let again = self.sync(p);
                prop_assert!(
                    again.is_empty(),
                    "second sync with no edits planned: {:#?}",
                    again
                );
                return Ok(());
            }
        }
        Err(TestCaseError::fail("no quiescence after 8 runs"))
    }

    fn count_by_email(&self, side: Side) -> BTreeMap<String, usize> {
        let key = if side == Side::A { "email" } else { "emails" };
        let mut m = BTreeMap::new();
        for r in self.apps.get(side).values() {
            if let Some(Value::Text(e)) = r.fields.get(key) {
                *m.entry(e.to_lowercase()).or_insert(0) += 1;
            }
        }
        m
    }

    fn opted_out(&self, side: Side) -> Vec<String> {
        self.apps
            .get(side)
            .values()
            .filter(|r| match side {
                Side::A => r.fields.get("do_not_disturb") == Some(&Value::Bool(true)),
                Side::B => matches!(r.fields.get("subscription_status"), Some(Value::Number(n)) if *n == 0.0 || *n >= 3.0),
            })
            .map(|r| r.id.clone())
            .collect()
    }
}

#[derive(Clone, Debug)]
struct Seed {
    email: u8,
    name: u8,
    phone: u8,
    consent: u8,
    tags: u8,
}

const NAMES: &[&str] = &["", "ann", "Bea", " cy ", "Dee"];
const TAGS_ALL: &[&str] = &["a", "b", "c"];

fn fields_for(side: Side, s: &Seed) -> BTreeMap<String, Value> {
    let mut f = BTreeMap::new();
    let (email, name, phone, consent, tags) = match side {
        Side::A => (
            "email",
            "first_name",
            "mobile_number",
            "do_not_disturb",
            "tags",
        ),
        Side::B => (
            "emails",
            "first_name",
            "mobile",
            "subscription_status",
            "tags",
        ),
    };
    let mail = if s.email % 7 == 6 {
        "MAIL0@X.IO".to_string()
    } else {
        format!("mail{}@x.io", s.email % 6)
    };
    f.insert(email.into(), Value::Text(mail));
    f.insert(
        name.into(),
        Value::Text(NAMES[s.name as usize % NAMES.len()].into()),
    );
    if !s.phone.is_multiple_of(3) {
        f.insert(phone.into(), Value::Text(format!("+1555{:04}", s.phone)));
    }
    f.insert(consent.into(), consent_value(side, s.consent));
    let t: Vec<String> = TAGS_ALL
        .iter()
        .enumerate()
        .filter(|(i, _)| s.tags & (1 << i) != 0)
        .map(|(_, t)| t.to_string())
        .collect();
    f.insert(tags.into(), Value::Texts(t));
    let company = COMPANIES[s.name as usize % COMPANIES.len()];
    let company = if company.is_empty() {
        Value::Null
    } else {
        Value::Text(company.into())
    };
    f.insert(
        if side == Side::A { "company" } else { "org" }.into(),
        company,
    );
    f
}

const COMPANIES: &[&str] = &["", "Acme", "Globex"];

fn consent_value(side: Side, c: u8) -> Value {
    match side {
        Side::A => Value::Bool(c.is_multiple_of(4)),
        Side::B => Value::Number([1.0, 0.0, 2.0, 4.0, 1.0][c as usize % 5]),
    }
}

#[derive(Clone, Debug)]
enum Edit {
    Name(Side, u8, u8),
    Phone(Side, u8, u8),
    Consent(Side, u8, u8),
    Tags(Side, u8, u8),
    Company(Side, u8, u8),
    Add(Side, Seed),
    Delete(Side, u8),
}

fn seed() -> impl Strategy<Value = Seed> {
    (0u8..8, 0u8..5, 0u8..9, 0u8..8, 0u8..8).prop_map(|(email, name, phone, consent, tags)| Seed {
        email,
        name,
        phone,
        consent,
        tags,
    })
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::A), Just(Side::B)]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (side(), any::<u8>(), 0u8..5).prop_map(|(s, i, v)| Edit::Name(s, i, v)),
        1 => (side(), any::<u8>(), 0u8..9).prop_map(|(s, i, v)| Edit::Phone(s, i, v)),
        2 => (side(), any::<u8>(), 0u8..8).prop_map(|(s, i, v)| Edit::Consent(s, i, v)),
        1 => (side(), any::<u8>(), 0u8..8).prop_map(|(s, i, v)| Edit::Tags(s, i, v)),
        1 => (side(), any::<u8>(), 0u8..3).prop_map(|(s, i, v)| Edit::Company(s, i, v)),
        1 => (side(), seed()).prop_map(|(s, x)| Edit::Add(s, x)),
        1 => (side(), any::<u8>()).prop_map(|(s, i)| Edit::Delete(s, i)),
    ]
}

fn apply_edit(w: &mut World, e: &Edit) {
    let pick = |w: &World, s: Side, i: u8| -> Option<String> {
        let ids: Vec<&String> = w.apps.get(s).keys().collect();
        (!ids.is_empty()).then(|| ids[i as usize % ids.len()].clone())
    };
    let set = |w: &mut World, s: Side, i: u8, a: &str, b: &str, v: Value| {
        if let Some(id) = pick(w, s, i) {
            let r = w.apps.get_mut(s).get_mut(&id).expect("picked");
            r.fields.insert(if s == Side::A { a } else { b }.into(), v);
            r.version = Some(format!("{}e", r.version.clone().unwrap_or_default()));
        }
    };
    match e {
        Edit::Name(s, i, v) => set(
            w,
            *s,
            *i,
            "first_name",
            "first_name",
            Value::Text(NAMES[*v as usize].into()),
        ),
        Edit::Phone(s, i, v) => set(
            w,
            *s,
            *i,
            "mobile_number",
            "mobile",
            Value::Text(format!("+1555{v:04}")),
        ),
        Edit::Consent(s, i, v) => set(
            w,
            *s,
            *i,
            "do_not_disturb",
            "subscription_status",
            consent_value(*s, *v),
        ),
        Edit::Tags(s, i, v) => {
            let t: Vec<String> = TAGS_ALL
                .iter()
                .enumerate()
                .filter(|(k, _)| v & (1 << k) != 0)
                .map(|(_, t)| t.to_string())
                .collect();
            set(w, *s, *i, "tags", "tags", Value::Texts(t));
        }
        Edit::Company(s, i, v) => {
            let c = COMPANIES[*v as usize];
            let c = if c.is_empty() {
                Value::Null
            } else {
                Value::Text(c.into())
            };
            set(w, *s, *i, "company", "org", c);
        }
        Edit::Add(s, x) => {
            w.insert(*s, fields_for(*s, x));
        }
        Edit::Delete(s, i) => {
            if let Some(id) = pick(w, *s, *i) {
                w.apps.get_mut(*s).remove(&id);
            }
        }
    }
}

fn policy_strategy() -> impl Strategy<Value = SyncPolicy> {
    let dir = prop_oneof![
        Just(Direction::TwoWay),
        Just(Direction::AToB),
        Just(Direction::BToA)
    ];
    let win = prop_oneof![
        Just(Winner::AWins),
        Just(Winner::BWins),
        Just(Winner::MostRecent),
        Just(Winner::PreferAUnlessBlank),
        Just(Winner::PreferBUnlessBlank),
        Just(Winner::Manual)
    ];
    let edits = prop_oneof![Just(OneWayEdits::Ignore), Just(OneWayEdits::Revert)];
    let del = prop_oneof![Just(RemoveAction::Keep), Just(RemoveAction::Delete)];
    (dir, win, edits, del).prop_map(|(d, w, e, del)| {
        let mut p = policy(d);
        p.conflict.winner = w;
        p.one_way_edits = e;
        p.deletes.on_delete = SidePair::both(del);
        p.breaker.side_empty = false;
        p.breaker.min_linked = usize::MAX;
        p
    })
}

/// Checks every invariant after a sync reached quiescence.
fn check(
    w: &World,
    p: &SyncPolicy,
    before: &SidePair<BTreeMap<String, usize>>,
    out_before: &SidePair<Vec<String>>,
) -> Result<(), TestCaseError> {
    let e = w.input(p);
    // Convergence: every linked pair agrees with the base on every mapped field.
    for l in w.links.values().filter(|l| l.state == LinkState::Linked) {
        let (Some(a), Some(b)) = (
            l.id(Side::A).and_then(|id| w.apps.a.get(id)),
            l.id(Side::B).and_then(|id| w.apps.b.get(id)),
        ) else {
            continue;
        };
        for pair in &e.mapping.pairs {
            if l.review.open.contains_key(&pair.key) {
                // A `manual` conflict waits for the operator: both values stay.
                continue;
            }
            let (va, vb) = (pair.read(Side::A, a), pair.read(Side::B, b));
            let fb = l.fields.get(&pair.key);
            if let (Some(fb), Some(va), Some(vb)) = (fb, &va, &vb) {
                prop_assert!(
                    fb.matches(Side::A, va) && fb.matches(Side::B, vb),
                    "{} diverged on {}: A {va} B {vb} base {fb:?}",
                    l.key,
                    pair.key
                );
                if p.direction == Direction::TwoWay
                    && pair.flows.a
                    && pair.flows.b
                    && !pair.is_consent()
                    && pair.kind != CanonKind::Set
                {
                    prop_assert_eq!(
                        va.as_text().map(|s| s.to_lowercase()),
                        vb.as_text().map(|s| s.to_lowercase()),
                        "{} {}",
                        l.key,
                        pair.key
                    );
                }
            }
        }
    }
    // No duplicates: a side that had a record with an e-mail never gets a second one.
    for side in Side::BOTH {
        for (email, n) in w.count_by_email(side) {
            let had = before.get(side).get(&email).copied().unwrap_or(0);
            prop_assert!(
                n <= had.max(1),
                "side {side} has {n} records for {email}, had {had}"
            );
        }
    }
    // Consent never loosens: opted out before the sync stays opted out, and no
    // write to an existing record ever carried an opt-in.
    for side in Side::BOTH {
        let now = w.opted_out(side);
        for id in out_before.get(side) {
            if w.apps.get(side).contains_key(id) {
                prop_assert!(
                    now.contains(id),
                    "side {side} record {id} was re-subscribed"
                );
            }
        }
    }
    for v in &w.consent_writes {
        prop_assert!(
            matches!(v, Value::Bool(true)) || *v == Value::Number(0.0),
            "an existing record was written consent {v}"
        );
    }
    // Two-way: a linked pair where either side is opted out is opted out on both.
    if p.direction == Direction::TwoWay {
        let out_a = w.opted_out(Side::A);
        let out_b = w.opted_out(Side::B);
        for l in w.links.values().filter(|l| l.state == LinkState::Linked) {
            let (Some(a), Some(b)) = (l.id(Side::A), l.id(Side::B)) else {
                continue;
            };
            if w.apps.a.contains_key(a) && w.apps.b.contains_key(b) {
                let (oa, ob) = (out_a.iter().any(|x| x == a), out_b.iter().any(|x| x == b));
                let loosened = l
                    .fields
                    .get(CONSENT)
                    .is_some_and(|f| f.alias.a.is_some() || f.alias.b.is_some());
                prop_assert!(
                    oa == ob || loosened,
                    "{}: consent A out={oa} B out={ob}",
                    l.key
                );
            }
        }
    }
    Ok(())
}

proptest! {
    // 96 cases by default; `PROPTEST_CASES=5000` searches harder.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(96),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_edits_converge_without_duplicates_or_loosened_consent(
        p in policy_strategy(),
        seeds_a in prop::collection::vec(seed(), 0..6),
        seeds_b in prop::collection::vec(seed(), 0..6),
        rounds in prop::collection::vec(prop::collection::vec(edit(), 0..6), 1..4),
    ) {
        let mut w = World::default();
        for s in &seeds_a {
            let f = fields_for(Side::A, s);
            w.insert(Side::A, f);
        }
        for s in &seeds_b {
            let f = fields_for(Side::B, s);
            w.insert(Side::B, f);
        }
        let before = SidePair::new(w.count_by_email(Side::A), w.count_by_email(Side::B));
        let out_before = SidePair::new(w.opted_out(Side::A), w.opted_out(Side::B));
        w.until_quiet(&p)?;
        check(&w, &p, &before, &out_before)?;
        prop_assert_eq!(w.org_wipes, 0, "nobody emptied a company, yet B's org was emptied");
        for edits in &rounds {
            for e in edits {
                apply_edit(&mut w, e);
            }
            w.consent_writes.clear();
            w.org_wipes = 0;
            let before = SidePair::new(w.count_by_email(Side::A), w.count_by_email(Side::B));
            let out_before = SidePair::new(w.opted_out(Side::A), w.opted_out(Side::B));
            w.until_quiet(&p)?;
            check(&w, &p, &before, &out_before)?;
            let emptied = edits.iter().any(|e| matches!(e, Edit::Company(Side::A, _, 0)));
            prop_assert!(
                emptied || w.org_wipes == 0,
                "nobody emptied a company, yet B's org was emptied {} times",
                w.org_wipes
            );
        }
    }
}
