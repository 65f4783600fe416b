//! Table tests of the policies that leave something to the operator: the
//! `prefer-X-unless-blank` and `manual` conflict rules (sync-rules F5, F8),
//! the "stop matching" actions when a record leaves its scope (sync-rules E14, E15), and the
//! loop detector (sync-rules W6), with the operator's answers (`take`, `release`).

use super::*;
use crate::sync::baseline::WriteMark;
use crate::sync::plan::{release, take};
use crate::sync::policy::{LeaveAction, Scope};

fn prefer(side: Side) -> SyncPolicy {
    let mut p = policy(Direction::TwoWay);
    p.conflict.winner = match side {
        Side::A => Winner::PreferAUnlessBlank,
        Side::B => Winner::PreferBUnlessBlank,
    };
    p
}

/// sync-rules F5 with a base "Jane": A holds `a`, B holds `b`.
fn row5(p: &SyncPolicy, a: Value, b: Value) -> Plan {
    run(
        p,
        Some(link(&[(NAME, base(t("Jane")))])),
        vec![fa("a1", a)],
        vec![fb("b1", b)],
    )
}

// ---------- prefer-X-unless-blank ----------

#[test]
fn row5_prefer_a_unless_blank_a_wins_when_set() {
    let plan = row5(&prefer(Side::A), t("Ann"), t("Bea"));
    assert_eq!(update_to(&plan, Side::B).unwrap()["first_name"], t("Ann"));
    assert!(update_to(&plan, Side::A).is_none());
    assert_eq!(plan.conflicts[0].winner, Some(Side::A));
    assert!(plan.conflicts[0].decision.contains("prefer-a-unless-blank"));
}

#[test]
fn row5_prefer_a_unless_blank_b_wins_when_a_is_blank() {
    let plan = row5(&prefer(Side::A), Value::Null, t("Bea"));
    assert_eq!(update_to(&plan, Side::A).unwrap()["first_name"], t("Bea"));
    assert!(
        update_to(&plan, Side::B).is_none(),
        "the blank never erases B"
    );
    assert_eq!(plan.conflicts[0].winner, Some(Side::B));
    assert!(
        plan.conflicts[0].decision.contains("blank"),
        "{:?}",
        plan.conflicts
    );
    assert_eq!(op_base(&plan, Side::A, NAME), Some(t("Bea")));
}

#[test]
fn row5_prefer_b_unless_blank_mirrors() {
    let plan = row5(&prefer(Side::B), t("Ann"), t("Bea"));
    assert_eq!(update_to(&plan, Side::A).unwrap()["first_name"], t("Bea"));
    let plan = row5(&prefer(Side::B), t("Ann"), t("  "));
    assert_eq!(update_to(&plan, Side::B).unwrap()["first_name"], t("Ann"));
    assert!(update_to(&plan, Side::A).is_none());
}

#[test]
fn row8_first_sync_prefer_unless_blank_picks_the_preferred_side() {
    let plan = first_sync(&prefer(Side::B), t("Ann"), t("Bea"));
    assert_eq!(update_to(&plan, Side::A).unwrap()["first_name"], t("Bea"));
    assert_eq!(plan.conflicts[0].base, None);
    // A blank side is sync-rules F7 whatever the rule: filled, never erased.
    let plan = first_sync(&prefer(Side::B), t("Ann"), Value::Null);
    assert_eq!(update_to(&plan, Side::B).unwrap()["first_name"], t("Ann"));
}

#[test]
fn per_field_rule_replaces_the_sync_default_and_an_owner_comes_first() {
    let mut p = policy(Direction::TwoWay);
    p.conflict.winner = Winner::AWins;
    p.conflict
        .fields
        .insert("first-name".into(), Winner::PreferBUnlessBlank);
    let plan = row5(&p, t("Ann"), t("Bea"));
    assert_eq!(update_to(&plan, Side::A).unwrap()["first_name"], t("Bea"));
    p.conflict.owners.insert("first_name".into(), Side::A);
    let plan = row5(&p, t("Ann"), t("Bea"));
    assert_eq!(update_to(&plan, Side::B).unwrap()["first_name"], t("Ann"));
}

// ---------- manual ----------

fn manual() -> SyncPolicy {
    let mut p = policy(Direction::TwoWay);
    p.conflict
        .fields
        .insert("first-name".into(), Winner::Manual);
    p
}

fn phone(r: Record, field: &str, v: &str) -> Record {
    let mut r = r;
    r.fields.insert(field.into(), t(v));
    r
}

#[test]
fn row5_manual_writes_nothing_keeps_both_values_and_syncs_other_fields() {
    let l = link(&[(NAME, base(t("Jane"))), (PHONE, base(t("+15550001")))]);
    let a = phone(fa("a1", t("Ann")), "mobile_number", "+15550002");
    let b = fb("b1", t("Bea"));
    let plan = run(&manual(), Some(l), vec![a], vec![b]);
    let to_b = update_to(&plan, Side::B).expect("the phone still flows");
    assert_eq!(to_b.get("mobile"), Some(&t("+15550002")));
    assert!(!to_b.contains_key("first_name"), "{to_b:?}");
    assert!(update_to(&plan, Side::A).is_none());
    let c = &plan.conflicts[0];
    assert_eq!((c.winner, c.field.as_str()), (None, NAME));
    assert!(c.decision.contains("manual"), "{}", c.decision);
    let stored = plan.links.iter().find(|l| l.key == "0/a/a1").unwrap();
    let open = &stored.review.open[NAME];
    assert_eq!((&open.a, &open.b), (&t("Ann"), &t("Bea")));
    assert_eq!(open.base, Some(t("Jane")));
    assert_eq!(stored.fields[NAME].value, t("Jane"), "the base stays");
}

#[test]
fn row8_manual_on_a_first_sync_writes_nothing() {
    let plan = first_sync(&manual(), t("Ann"), t("Bea"));
    assert!(plan.ops.is_empty(), "{:#?}", plan.ops);
    let l = &plan.links[0];
    assert_eq!(l.review.open[NAME].base, None);
    assert!(!l.fields.contains_key(NAME));
}

#[test]
fn manual_open_conflict_is_not_overwritten_while_one_side_is_unseen() {
    let first = row5(&manual(), t("Ann"), t("Bea"));
    let l = first.links[0].clone();
    // Next incremental run: only A is read (another field changed there).
    let a = phone(fa("a1", t("Ann")), "mobile_number", "+15550009");
    let plan = run(&manual(), Some(l), vec![a], vec![]);
    let to_b = update_to(&plan, Side::B).unwrap_or_default();
    assert!(
        !to_b.contains_key("first_name"),
        "A's name must not win: {to_b:?}"
    );
    assert!(
        plan.conflicts
            .iter()
            .any(|c| c.field == NAME && c.winner.is_none())
    );
}

#[test]
fn manual_take_writes_the_chosen_value_on_the_next_run() {
    let first = row5(&manual(), t("Ann"), t("Bea"));
    let mut l = first.links[0].clone();
    assert_eq!(take(&mut l, "first_name", Side::B).unwrap(), NAME);
    assert!(l.review.open.is_empty() && l.review.recheck);
    // The next run reads both (recheck) and writes B's value to A.
    let plan = run(
        &manual(),
        Some(l.clone()),
        vec![fa("a1", t("Ann"))],
        vec![fb("b1", t("Bea"))],
    );
    assert_eq!(update_to(&plan, Side::A).unwrap()["first_name"], t("Bea"));
    assert!(update_to(&plan, Side::B).is_none());
    assert!(plan.conflicts.is_empty(), "{:?}", plan.conflicts);
    // Not read yet: the planner asks for both records.
    let plan = run(&manual(), Some(l), vec![], vec![]);
    assert_eq!(plan.fetch.len(), 2, "{:?}", plan.fetch);
    // Unknown field: one line naming the open ones.
    let mut l = first.links[0].clone();
    let err = take(&mut l, "mobile", Side::A).unwrap_err().to_string();
    assert!(err.contains(NAME), "{err}");
}

#[test]
fn manual_open_conflict_closes_when_the_sides_agree() {
    let first = row5(&manual(), t("Ann"), t("Bea"));
    let plan = run(
        &manual(),
        Some(first.links[0].clone()),
        vec![fa("a1", t("Bea"))],
        vec![fb("b1", t("Bea"))],
    );
    assert!(plan.ops.is_empty());
    let l = &plan.links[0];
    assert!(l.review.open.is_empty());
    assert_eq!(l.fields[NAME].value, t("Bea"));
}

#[test]
fn consent_ignores_manual_opted_out_wins() {
    let mut p = policy(Direction::TwoWay);
    p.conflict.winner = Winner::Manual;
    let l = consent_link(inn());
    let a = with_consent(fa("a1", t("Jane")), "do_not_disturb", Value::Bool(true));
    let b = with_consent(
        fb("b1", t("Jane")),
        "subscription_status",
        Value::Number(2.0),
    );
    let plan = run(&p, Some(l), vec![a], vec![b]);
    assert_eq!(
        update_to(&plan, Side::B).unwrap()["subscription_status"],
        Value::Number(0.0)
    );
}

// ---------- scope.on-leave (sync-rules E14, E15) ----------

/// Both sides scoped to a list; A's record a1 left A's list.
fn leaves(action: LeaveAction, dir: Direction) -> (SyncPolicy, Plan) {
    let mut p = policy(dir);
    p.scope = SidePair::new(Scope::Container("LA".into()), Scope::Container("LB".into()));
    p.on_leave.a = action;
    let b = with_consent(
        fb("b1", t("Jane")),
        "subscription_status",
        Value::Number(1.0),
    );
    let mut e = input(&p, vec![], vec![b]);
    e.containers = SidePair::new(Some("LA".into()), Some("LB".into()));
    e.obs.a.left_scope.insert("a1".into());
    let l = consent_link(inn());
    let out = plan(&p, &Baseline::from_links([l]), &[e]);
    (p, out)
}

#[test]
fn on_leave_keep_only_detaches() {
    let (_, plan) = leaves(LeaveAction::Keep, Direction::TwoWay);
    assert!(plan.ops.is_empty());
    assert_eq!(plan.links[0].state, LinkState::Detached(Side::A));
}

#[test]
fn on_leave_remove_from_list_takes_the_counterpart_out_and_back_in() {
    let (p, left) = leaves(LeaveAction::RemoveFromContainer, Direction::TwoWay);
    assert_eq!(left.ops.len(), 1, "{:#?}", left.ops);
    let op = &left.ops[0];
    assert_eq!(
        op.kind,
        OpKind::RemoveFromContainer {
            container: "LB".into(),
            id: "b1".into()
        }
    );
    assert_eq!(op.effect, LinkEffect::Unlisted(Side::A));
    // Acknowledged: detached, remembering the removal.
    let mut l = consent_link(inn());
    let e = input(&p, vec![], vec![]);
    apply_ack(&mut l, op, None, &e.mapping, true);
    assert_eq!(l.state, LinkState::Detached(Side::A));
    assert_eq!(l.review.unlisted, Some(Side::B));
    // a1 back in A's list; b1 is outside B's list (we took it out): put back.
    let a = with_consent(fa("a1", t("Jane")), "do_not_disturb", Value::Bool(false));
    let mut e = input(&p, vec![a], vec![]);
    e.containers = SidePair::new(Some("LA".into()), Some("LB".into()));
    e.obs.b.left_scope.insert("b1".into());
    let plan = plan(&p, &Baseline::from_links([l]), &[e]);
    assert!(
        plan.ops.iter().any(|o| o.kind
            == OpKind::AddToContainer {
                container: "LB".into(),
                id: "b1".into()
            }),
        "{:#?}",
        plan.ops
    );
    let back = &plan.links[0];
    assert_eq!(
        (back.state, back.review.unlisted),
        (LinkState::Linked, None)
    );
}

#[test]
fn on_leave_unsubscribe_opts_the_counterpart_out() {
    let (_, plan) = leaves(LeaveAction::Unsubscribe, Direction::TwoWay);
    assert_eq!(plan.ops.len(), 1, "{:#?}", plan.ops);
    let op = &plan.ops[0];
    assert!(op.consent);
    match &op.kind {
        OpKind::Update { id, fields, .. } => {
            assert_eq!(id, "b1");
            assert_eq!(
                fields,
                &vec![("subscription_status".to_string(), Value::Number(0.0))]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(op.effect, LinkEffect::State(LinkState::Detached(Side::A)));
}

#[test]
fn on_leave_does_not_act_against_the_flow() {
    for action in [LeaveAction::RemoveFromContainer, LeaveAction::Unsubscribe] {
        let (_, plan) = leaves(action, Direction::BToA);
        assert!(plan.ops.is_empty(), "{action:?}: {:#?}", plan.ops);
        assert_eq!(plan.links[0].state, LinkState::Detached(Side::A));
    }
}

#[test]
fn on_leave_needs_a_list_on_the_side_that_is_left() {
    let mut p = policy(Direction::TwoWay);
    p.on_leave.a = LeaveAction::Unsubscribe;
    let err = p.validate().unwrap_err().to_string();
    assert!(err.contains("scope.on-leave.a"), "{err}");
    p.scope.a = Scope::Container("LA".into());
    p.validate().unwrap();
    p.on_leave.a = LeaveAction::RemoveFromContainer;
    let err = p.validate().unwrap_err().to_string();
    assert!(err.contains("scope.b"), "{err}");
}

// ---------- loop detector (sync-rules W6) ----------

fn mark(run: u64, side: Side, v: &str) -> WriteMark {
    WriteMark {
        run,
        side,
        fields: [(NAME.to_string(), t(v).hash())].into(),
    }
}

/// A linked pair whose base is `base`, A changed to `a`, planned as run `run`.
fn loop_case(p: &SyncPolicy, marks: Vec<WriteMark>, run_no: u64, base_v: &str, a: &str) -> Plan {
    let mut l = link(&[(NAME, base(t(base_v)))]);
    l.review.writes = marks;
    let e = input(p, vec![fa("a1", t(a))], vec![fb("b1", t(base_v))]);
    let mut b = Baseline::from_links([l]);
    b.run = run_no;
    plan(p, &b, &[e])
}

#[test]
fn loop_field_flipping_between_two_values_quarantines_the_link() {
    let p = policy(Direction::TwoWay);
    // Written: jane to B (run 1), Jane to A (2), jane to B (3); now A went to Jane again.
    let marks = vec![
        mark(1, Side::B, "jane"),
        mark(2, Side::A, "Jane"),
        mark(3, Side::B, "jane"),
    ];
    let plan = loop_case(&p, marks.clone(), 4, "jane", "Jane");
    assert!(plan.ops.is_empty(), "writes stop: {:#?}", plan.ops);
    let l = &plan.links[0];
    assert_eq!(l.state, LinkState::Quarantined);
    let why = l.review.quarantine.as_deref().unwrap();
    assert!(why.contains(NAME), "{why}");
    assert!(
        plan.notes.iter().any(|n| n.text.contains("--release a1")),
        "{:?}",
        plan.notes
    );
    // Off: the same history writes.
    let mut off = p.clone();
    off.loops.alternation = false;
    assert_eq!(loop_case(&off, marks, 4, "jane", "Jane").ops.len(), 1);
    // Outside the window, old flips do not count.
    let mut short = p.clone();
    short.loops.window = 2;
    let marks = vec![
        mark(1, Side::B, "jane"),
        mark(2, Side::A, "Jane"),
        mark(3, Side::B, "jane"),
    ];
    assert_eq!(loop_case(&short, marks, 4, "jane", "Jane").ops.len(), 1);
}

#[test]
fn loop_too_many_writes_in_the_window_quarantines_the_link() {
    let mut p = policy(Direction::TwoWay);
    p.loops.max_writes = 3;
    let names = ["A1", "A2", "A3"];
    let marks: Vec<WriteMark> = names
        .iter()
        .enumerate()
        .map(|(i, n)| mark(i as u64 + 1, Side::B, n))
        .collect();
    let plan = loop_case(&p, marks.clone(), 4, "A3", "A4");
    assert!(plan.ops.is_empty());
    assert_eq!(plan.links[0].state, LinkState::Quarantined);
    assert!(
        plan.links[0]
            .review
            .quarantine
            .as_deref()
            .unwrap()
            .contains("4 writes")
    );
    // The same writes spread over more runs than the window: fine.
    p.loops.window = 2;
    assert_eq!(loop_case(&p, marks, 10, "A3", "A4").ops.len(), 1);
}

#[test]
fn quarantined_link_keeps_consent_tightening_only_until_released() {
    let p = policy(Direction::TwoWay);
    let mut l = consent_link(inn());
    l.state = LinkState::Quarantined;
    l.review.quarantine = Some("test".into());
    let a = with_consent(fa("a1", t("Ann")), "do_not_disturb", Value::Bool(true));
    let b = with_consent(
        fb("b1", t("Jane")),
        "subscription_status",
        Value::Number(1.0),
    );
    let plan = run(&p, Some(l.clone()), vec![a.clone()], vec![b.clone()]);
    let to_b = update_to(&plan, Side::B).expect("the opt-out still flows");
    assert_eq!(to_b.len(), 1, "only consent: {to_b:?}");
    assert_eq!(to_b["subscription_status"], Value::Number(0.0));
    // Released: the name flows again, and the history starts afresh.
    l.review.writes = vec![mark(1, Side::B, "x")];
    assert!(release(&mut l).unwrap() == "test");
    assert_eq!((l.state, l.review.writes.len()), (LinkState::Linked, 0));
    let plan = run(&p, Some(l.clone()), vec![a], vec![b]);
    assert_eq!(update_to(&plan, Side::B).unwrap()["first_name"], t("Ann"));
    assert!(release(&mut l).is_err(), "not quarantined any more");
}

#[test]
fn acknowledged_writes_are_remembered_with_their_run() {
    let p = policy(Direction::TwoWay);
    let plan = loop_case(&p, vec![], 7, "Jane", "Janet");
    let op = &plan.ops[0];
    assert_eq!(op.run, 7);
    let mut l = link(&[(NAME, base(t("Jane")))]);
    let e = input(&p, vec![], vec![]);
    apply_ack(&mut l, op, None, &e.mapping, true);
    assert_eq!(l.review.writes, vec![mark(7, Side::B, "Janet")]);
}
