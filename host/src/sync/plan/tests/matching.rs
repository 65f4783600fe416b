//! Matching unlinked records (sync-rules E1-E6, I2, I3): every address of a record against
//! every address of the other side's records, ambiguity, and the operator's
//! `link` / `keep-apart` decisions.

use super::*;
use crate::sync::baseline::{Decision, Decisions};

/// Both sides with a secondary-addresses field (tagged `emails`), as the
/// Freshworks and Google connectors describe it.
fn schemas() -> SidePair<Vec<FieldDef>> {
    let more = || {
        let mut d = FieldDef::new("all_emails", FieldType::Email, Some("emails"));
        d.multi_value = true;
        d
    };
    let mut a = fs_schema();
    a.push(more());
    let mut b = fm_schema();
    b.push(more());
    SidePair::new(a, b)
}

fn input2(p: &SyncPolicy, a: Vec<Record>, b: Vec<Record>) -> EntityInput {
    let s = schemas();
    let mapping = resolve(p, SidePair::new("leads", "contacts"), &s.a, &s.b).unwrap();
    let mut e = input(p, a, b);
    e.mapping = mapping;
    e
}

fn texts(v: &[&str]) -> Value {
    Value::Texts(v.iter().map(|s| s.to_string()).collect())
}

/// A record of `side` with a primary address and every address.
fn person(side: Side, id: &str, primary: &str, all: &[&str]) -> Record {
    let email = if side == Side::A { "email" } else { "emails" };
    rec(
        id,
        &[
            (email, Value::Text(primary.into())),
            ("all_emails", texts(all)),
            ("first_name", Value::Text("Sam".into())),
        ],
    )
}

fn plan_with(p: &SyncPolicy, e: EntityInput, decisions: Decisions) -> Plan {
    let baseline = Baseline {
        decisions,
        ..Baseline::default()
    };
    plan(p, &baseline, &[e])
}

fn creates(plan: &Plan) -> usize {
    plan.ops
        .iter()
        .filter(|o| matches!(o.kind, OpKind::Create { .. }))
        .count()
}

fn linked(plan: &Plan) -> Vec<(Option<String>, Option<String>)> {
    plan.links
        .iter()
        .map(|l| (l.ids.a.clone(), l.ids.b.clone()))
        .collect()
}

fn pair(a: &str, b: &str) -> (Option<String>, Option<String>) {
    (Some(a.into()), Some(b.into()))
}

#[test]
fn a_secondary_address_on_b_matches_the_primary_on_a() {
    let p = policy(Direction::TwoWay);
    let e = input2(
        &p,
        vec![person(Side::A, "a1", "sam.work@x.io", &["sam.work@x.io"])],
        vec![person(
            Side::B,
            "b1",
            "sam.home@x.io",
            &["sam.home@x.io", "Sam.Work@x.io "],
        )],
    );
    let plan = plan_with(&p, e, Decisions::new());
    assert_eq!(linked(&plan), vec![pair("a1", "b1")]);
    assert_eq!(plan.links[0].match_key.as_deref(), Some("sam.work@x.io"));
    assert_eq!(creates(&plan), 0, "{:#?}", plan.ops);
    assert!(plan.ambiguous.is_empty());
}

#[test]
fn a_secondary_address_on_a_matches_the_primary_on_b() {
    let p = policy(Direction::TwoWay);
    let e = input2(
        &p,
        vec![person(
            Side::A,
            "a1",
            "sam.home@x.io",
            &["sam.home@x.io", "sam.work@x.io"],
        )],
        vec![person(Side::B, "b1", "sam.work@x.io", &["sam.work@x.io"])],
    );
    let plan = plan_with(&p, e, Decisions::new());
    assert_eq!(linked(&plan), vec![pair("a1", "b1")]);
    assert_eq!(creates(&plan), 0);
}

#[test]
fn two_distinct_candidates_by_different_addresses_are_ambiguous() {
    let p = policy(Direction::TwoWay);
    let e = input2(
        &p,
        vec![person(Side::A, "a1", "p@x.io", &["p@x.io", "s@x.io"])],
        vec![
            person(Side::B, "b1", "p@x.io", &["p@x.io"]),
            person(Side::B, "b2", "s@x.io", &["s@x.io"]),
        ],
    );
    let plan = plan_with(&p, e, Decisions::new());
    assert!(plan.ops.is_empty() && plan.links.is_empty(), "{plan:#?}");
    assert_eq!(plan.ambiguous.len(), 1, "{:#?}", plan.ambiguous);
    assert_eq!(plan.ambiguous[0].a, vec!["a1".to_string()]);
    assert_eq!(
        plan.ambiguous[0].b,
        vec!["b1".to_string(), "b2".to_string()]
    );
}

#[test]
fn a_secondary_address_of_a_linked_record_blocks_the_create() {
    let p = policy(Direction::TwoWay);
    let mut l = link(&[(NAME, base(t("Sam")))]);
    l.ids = SidePair::new(Some("a9".into()), Some("b9".into()));
    l.key = "0/a/a9".into();
    let e = input2(
        &p,
        vec![person(Side::A, "a1", "p@x.io", &["p@x.io"])],
        vec![person(Side::B, "b9", "q@x.io", &["q@x.io", "p@x.io"])],
    );
    let plan = plan(&p, &Baseline::from_links([l]), &[e]);
    assert_eq!(creates(&plan), 0, "{:#?}", plan.ops);
    assert_eq!(plan.ambiguous.len(), 1);
    assert!(plan.ambiguous[0].reason.contains("already linked"));
}

#[test]
fn a_create_waits_until_every_address_was_looked_up() {
    let p = policy(Direction::TwoWay);
    let mut e = input2(
        &p,
        vec![person(Side::A, "a1", "p@x.io", &["p@x.io", "s@x.io"])],
        vec![],
    );
    e.obs.b.complete = false;
    e.obs.b.searched.insert("p@x.io".into());
    let first = plan_with(&p, e.clone(), Decisions::new());
    assert_eq!(creates(&first), 0);
    assert!(first.skips[0].reason.contains("looked up"));
    e.obs.b.searched.insert("s@x.io".into());
    assert_eq!(creates(&plan_with(&p, e, Decisions::new())), 1);
}

#[test]
fn two_creates_sharing_a_secondary_address_are_not_both_made() {
    // Two entity pairs create on the same B entity: a1 (leads) and c1
    // (contacts) are the same person by a secondary address.
    let mut p = policy(Direction::TwoWay);
    p.entities = vec![
        EntityPair::new("leads", "contacts"),
        EntityPair::new("contacts", "contacts"),
    ];
    p.entities[1].create_b = Some(true);
    let mut e0 = input2(
        &p,
        vec![person(Side::A, "a1", "p@x.io", &["p@x.io", "s@x.io"])],
        vec![],
    );
    e0.pair = p.entities[0].clone();
    let mut e1 = input2(
        &p,
        vec![person(Side::A, "c1", "s@x.io", &["s@x.io"])],
        vec![],
    );
    e1.pair = p.entities[1].clone();
    let plan = plan(&p, &Baseline::default(), &[e0, e1]);
    assert_eq!(creates(&plan), 1, "{:#?}", plan.ops);
    assert!(plan.ambiguous[0].reason.contains("already being created"));
}

#[test]
fn keep_apart_removes_a_candidate_and_is_not_reported_again() {
    let p = policy(Direction::TwoWay);
    let e = input2(
        &p,
        vec![person(Side::A, "a1", "p@x.io", &["p@x.io", "s@x.io"])],
        vec![
            person(Side::B, "b1", "p@x.io", &["p@x.io"]),
            person(Side::B, "b2", "s@x.io", &["s@x.io"]),
        ],
    );
    let apart: Decisions = [((0, "a1".to_string(), "b2".to_string()), Decision::KeepApart)].into();
    let plan = plan_with(&p, e, apart);
    assert!(plan.ambiguous.is_empty(), "{:#?}", plan.ambiguous);
    assert!(linked(&plan).contains(&pair("a1", "b1")));
    // b2 has no other candidate left: it follows the create rules (created on A).
    assert_eq!(creates(&plan), 1);
    assert!(
        plan.links
            .iter()
            .any(|l| l.ids.b.as_deref() == Some("b2") && l.ids.a.is_none())
    );
}

#[test]
fn keep_apart_with_every_candidate_creates_the_record() {
    let p = policy(Direction::TwoWay);
    let e = input2(
        &p,
        vec![person(Side::A, "a1", "p@x.io", &["p@x.io"])],
        vec![
            person(Side::B, "b1", "p@x.io", &["p@x.io"]),
            person(Side::B, "b2", "p@x.io", &["p@x.io"]),
        ],
    );
    let before = plan_with(&p, e.clone(), Decisions::new());
    assert_eq!(before.ambiguous.len(), 1);
    let apart: Decisions = [
        ((0, "a1".to_string(), "b1".to_string()), Decision::KeepApart),
        ((0, "a1".to_string(), "b2".to_string()), Decision::KeepApart),
    ]
    .into();
    let after = plan_with(&p, e, apart);
    // a1 is kept apart from both; b1 and b2 still share their address on B.
    assert!(
        after
            .ambiguous
            .iter()
            .all(|a| !a.a.contains(&"a1".to_string())),
        "{:#?}",
        after.ambiguous
    );
    let to_b: Vec<_> = after
        .ops
        .iter()
        .filter(|o| o.side == Side::B && matches!(o.kind, OpKind::Create { .. }))
        .collect();
    assert_eq!(to_b.len(), 1, "{:#?}", after.ops);
}

#[test]
fn an_operator_link_joins_records_without_a_shared_address() {
    let p = policy(Direction::TwoWay);
    let mut b = person(Side::B, "b1", "sam@home.io", &["sam@home.io"]);
    b.fields.insert("first_name".into(), Value::Null);
    let e = input2(
        &p,
        vec![person(Side::A, "a1", "sam@work.io", &["sam@work.io"])],
        vec![b],
    );
    let without = plan_with(&p, e.clone(), Decisions::new());
    assert_eq!(
        creates(&without),
        2,
        "each side creates the other: {:#?}",
        without.ops
    );
    let decided: Decisions = [((0, "a1".to_string(), "b1".to_string()), Decision::Link)].into();
    let plan = plan_with(&p, e, decided);
    assert_eq!(linked(&plan), vec![pair("a1", "b1")]);
    assert_eq!(creates(&plan), 0);
    assert_eq!(update_to(&plan, Side::B).unwrap()["first_name"], t("Sam"));
    assert!(plan.notes.iter().any(|n| n.text.contains("operator")));
}

#[test]
fn an_operator_link_is_ignored_for_a_record_linked_elsewhere() {
    let p = policy(Direction::TwoWay);
    let mut l = link(&[(NAME, base(t("Sam")))]);
    l.ids = SidePair::new(Some("a1".into()), Some("b9".into()));
    l.key = "0/a/a1".into();
    let e = input2(
        &p,
        vec![person(Side::A, "a1", "p@x.io", &["p@x.io"])],
        vec![person(Side::B, "b1", "q@x.io", &["q@x.io"])],
    );
    let decided: Decisions = [((0, "a1".to_string(), "b1".to_string()), Decision::Link)].into();
    let baseline = Baseline {
        decisions: decided,
        ..Baseline::from_links([l])
    };
    let plan = plan(&p, &baseline, &[e]);
    assert!(
        !linked(&plan).contains(&pair("a1", "b1")),
        "{:#?}",
        plan.links
    );
}

#[test]
fn kept_apart_from_a_linked_person_is_not_their_duplicate_either() {
    // a1 is linked to b1; b2 lists a1's address second and was kept apart from a1.
    let p = policy(Direction::TwoWay);
    let mut l = link(&[(NAME, base(t("Sam")))]);
    l.ids = SidePair::new(Some("a1".into()), Some("b1".into()));
    l.key = "0/a/a1".into();
    let e = input2(
        &p,
        vec![person(Side::A, "a1", "p@x.io", &["p@x.io"])],
        vec![
            person(Side::B, "b1", "p@x.io", &["p@x.io"]),
            person(Side::B, "b2", "q@x.io", &["q@x.io", "p@x.io"]),
        ],
    );
    let before = plan(
        &p,
        &Baseline::from_links([l.clone()]),
        std::slice::from_ref(&e),
    );
    assert_eq!(before.ambiguous.len(), 1, "{:#?}", before.ambiguous);
    assert_eq!(creates(&before), 0);
    let baseline = Baseline {
        decisions: [((0, "a1".to_string(), "b2".to_string()), Decision::KeepApart)].into(),
        ..Baseline::from_links([l])
    };
    let after = plan(&p, &baseline, &[e]);
    assert!(after.ambiguous.is_empty(), "{:#?}", after.ambiguous);
    assert_eq!(creates(&after), 1, "b2 is created on A: {:#?}", after.ops);
}

#[test]
fn two_records_of_one_app_sharing_only_a_secondary_address_are_both_created() {
    let p = policy(Direction::TwoWay);
    let e = input2(
        &p,
        vec![
            person(Side::A, "a1", "p@x.io", &["p@x.io", "office@x.io"]),
            person(Side::A, "a2", "q@x.io", &["q@x.io", "office@x.io"]),
        ],
        vec![],
    );
    let plan = plan_with(&p, e, Decisions::new());
    assert!(plan.ambiguous.is_empty(), "{:#?}", plan.ambiguous);
    assert_eq!(creates(&plan), 2, "{:#?}", plan.ops);
}

/// `entities = "both"`: a B contact is matched against A's leads AND A's contacts.
fn both(p: &mut SyncPolicy, leads: Vec<Record>, contacts: Vec<Record>, b: Vec<Record>) -> Plan {
    p.entities = vec![
        EntityPair::new("leads", "contacts"),
        EntityPair::new("contacts", "contacts"),
    ];
    let mut e0 = input2(p, leads, b.clone());
    e0.pair = p.entities[0].clone();
    let mut e1 = input2(p, contacts, b);
    e1.pair = p.entities[1].clone();
    plan(p, &Baseline::default(), &[e0, e1])
}

#[test]
fn a_person_who_is_a_contact_is_not_also_created_as_a_lead() {
    let mut p = policy(Direction::TwoWay);
    let plan = both(
        &mut p,
        vec![],
        vec![person(Side::A, "c1", "p@x.io", &["p@x.io"])],
        vec![person(Side::B, "b1", "p@x.io", &["p@x.io"])],
    );
    assert_eq!(creates(&plan), 0, "{:#?}", plan.ops);
    assert!(
        linked(&plan).contains(&pair("c1", "b1")),
        "{:#?}",
        plan.links
    );
    assert!(
        plan.links.iter().all(|l| l.entity == 1),
        "{:#?}",
        plan.links
    );
    // Nobody is skipped as "creating disabled" either: it is linked.
    assert!(plan.skips.is_empty(), "{:#?}", plan.skips);
}

#[test]
fn a_person_ambiguous_among_contacts_is_not_created_as_a_lead() {
    let mut p = policy(Direction::TwoWay);
    let plan = both(
        &mut p,
        vec![],
        vec![
            person(Side::A, "c1", "p@x.io", &["p@x.io"]),
            person(Side::A, "c2", "p@x.io", &["p@x.io"]),
        ],
        vec![person(Side::B, "b1", "p@x.io", &["p@x.io"])],
    );
    assert_eq!(creates(&plan), 0, "{:#?}", plan.ops);
    assert_eq!(plan.ambiguous.len(), 1, "{:#?}", plan.ambiguous);
}

#[test]
fn a_person_in_neither_entity_becomes_a_lead_once() {
    let mut p = policy(Direction::TwoWay);
    let plan = both(
        &mut p,
        vec![],
        vec![],
        vec![person(Side::B, "b1", "p@x.io", &["p@x.io"])],
    );
    let to_a: Vec<_> = plan
        .ops
        .iter()
        .filter(|o| o.side == Side::A && matches!(o.kind, OpKind::Create { .. }))
        .collect();
    assert_eq!(to_a.len(), 1, "{:#?}", plan.ops);
    assert_eq!(to_a[0].entity_name, "leads");
    assert!(plan.skips.is_empty(), "{:#?}", plan.skips);
}

#[test]
fn a_lead_create_waits_until_the_contacts_were_looked_up() {
    let mut p = policy(Direction::TwoWay);
    p.entities = vec![
        EntityPair::new("leads", "contacts"),
        EntityPair::new("contacts", "contacts"),
    ];
    let b = vec![person(Side::B, "b1", "p@x.io", &["p@x.io"])];
    let mut e0 = input2(&p, vec![], b.clone());
    e0.pair = p.entities[0].clone();
    let mut e1 = input2(&p, vec![], b);
    e1.pair = p.entities[1].clone();
    e1.obs.a.complete = false;
    let plan = plan(&p, &Baseline::default(), &[e0, e1]);
    assert_eq!(creates(&plan), 0, "{:#?}", plan.ops);
    assert!(
        plan.skips
            .iter()
            .any(|s| s.id == "b1" && s.reason.contains("not yet looked up")),
        "{:#?}",
        plan.skips
    );
}
