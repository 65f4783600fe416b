//! Writes the sync must never make, against the simulated accounts: a run with nothing
//! changed in the apps writes nothing (every connector pair, every direction, the default
//! mapping); a create never lands on a record that already holds the address (the
//! operator's keep-apart); with leads and contacts, a person is a lead or a contact,
//! never both.

use serde_json::{Value, json};
use tandem::sync::RunOptions;
use tandem::sync::baseline::Decision;
use tandem_sandbox::AccountKind::{
    self, Freshmarketer, FreshsalesClassic, FreshsalesSuite, GooglePeople,
};
use tandem_tests::e2e::{App, World, completed, no_duplicates, small, totals};

/// A sync `s` between connections `a` and `b` on every record, default mapping.
fn sync(a: &str, b: &str, direction: &str, extra: &str) -> String {
    let (a, entities) = a.split_once(':').unwrap_or((a, "contacts"));
    format!(
        r#"
[syncs.s]
a = "{a}"
b = "{b}"
entities = "{entities}"
direction = "{direction}"
{extra}

# Accounts that never met differ in many fields: allow the first run's overwrites.
[syncs.s.breaker]
max-overwrite-ratio = 1.0
"#
    )
}

/// The people of the Google account: (e-mail, company) of every contact.
async fn google_companies(w: &World) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = w
        .google_people()
        .await
        .into_iter()
        .flat_map(|(e, ps)| {
            ps.into_iter()
                .map(move |p| (e.clone(), p["person"]["organizations"][0]["name"].clone()))
        })
        .collect();
    out.sort_by(|x, y| {
        x.0.cmp(&y.0)
            .then_with(|| x.1.to_string().cmp(&y.1.to_string()))
    });
    out
}

/// The first run syncs; then two runs with nothing changed in the apps (an incremental
/// one and a full listing) write nothing, and the Google companies stay as they were.
async fn nothing_changed_writes_nothing(kinds: &[AccountKind], a: &str, b: &str, extra: &str) {
    for direction in ["two-way", "a-to-b", "b-to-a"] {
        let w = World::start(kinds, small(), &sync(a, b, direction, extra)).await;
        completed(&w.run("s").await);
        let google = if kinds.contains(&GooglePeople) {
            google_companies(&w).await
        } else {
            Vec::new()
        };
        for full in [false, true] {
            w.advance(60).await;
            let r = w
                .try_run(
                    "s",
                    RunOptions {
                        full,
                        ..RunOptions::default()
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("{a}<->{b} {direction}: {e}"));
            completed(&r);
            assert!(
                r.plan.ops.is_empty(),
                "{a}<->{b} {direction} (full: {full}): nothing changed, yet planned {:#?}",
                r.plan.ops
            );
            assert_eq!(totals(&r), (0, 0, 0, 0), "{:?}", r.counters);
        }
        if kinds.contains(&GooglePeople) {
            assert_eq!(
                google_companies(&w).await,
                google,
                "{a}<->{b} {direction}: Google's companies"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_changed_writes_nothing_freshsales_freshmarketer() {
    nothing_changed_writes_nothing(
        &[FreshsalesSuite, Freshmarketer],
        "freshsales",
        "freshmarketer",
        "",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_changed_writes_nothing_freshsales_google() {
    nothing_changed_writes_nothing(&[FreshsalesSuite, GooglePeople], "freshsales", "google", "")
        .await;
}

/// The demo's policy: Freshsales wins every conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_changed_writes_nothing_freshsales_google_a_wins() {
    nothing_changed_writes_nothing(
        &[FreshsalesSuite, GooglePeople],
        "freshsales",
        "google",
        "conflict = { winner = \"a-wins\" }",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_changed_writes_nothing_freshmarketer_google() {
    nothing_changed_writes_nothing(
        &[Freshmarketer, GooglePeople],
        "freshmarketer",
        "google",
        "",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_changed_writes_nothing_classic_freshmarketer() {
    nothing_changed_writes_nothing(
        &[FreshsalesClassic, Freshmarketer],
        "classic",
        "freshmarketer",
        "",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_changed_writes_nothing_classic_google() {
    nothing_changed_writes_nothing(&[FreshsalesClassic, GooglePeople], "classic", "google", "")
        .await;
}

/// Freshsales Classic leads, and leads and contacts together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_changed_writes_nothing_classic_leads() {
    for entities in ["leads", "both"] {
        let a = format!("classic:{entities}");
        nothing_changed_writes_nothing(
            &[FreshsalesClassic, Freshmarketer],
            &a,
            "freshmarketer",
            "",
        )
        .await;
        nothing_changed_writes_nothing(&[FreshsalesClassic, GooglePeople], &a, "google", "").await;
    }
}

/// `resolve --link A B1` then `--keep-apart A B2`, where B1 and B2 both carry A's
/// address as their own: B2 is created in Freshsales as a record of its own (the account
/// allows two contacts with one address) or refused with the operator's options (it does
/// not); A and B1 are never written.
async fn keep_apart_never_overwrites_the_linked_person(duplicates: &str) {
    let mut opts = tandem_tests::e2e::options(small());
    opts.kinds = vec![FreshsalesSuite, Freshmarketer];
    let syncs = r#"
[syncs.s]
a = "freshsales"
b = "freshmarketer"
entities = "contacts"
direction = "two-way"
scope = { b = "Newsletter" }
"#;
    let w = World::start_with(opts, syncs).await;
    w.control(
        App::Fs,
        reqwest::Method::PUT,
        "/switches",
        Some(json!({"duplicate_email": duplicates})),
    )
    .await;
    let list = w.list_id(App::Fm, "Newsletter").await;
    let kim = w
        .create(
            App::Fs,
            "contacts",
            json!({"first_name": "Kim", "last_name": "Shared", "emails": "kim@shared.example",
                "job_title": "Owner"}),
        )
        .await;
    let b1 = w
        .create(
            App::Fm,
            "contacts",
            json!({"first_name": "Kim", "last_name": "Shared", "subscription_status": 1,
                "job_title": "Owner", "emails": [{"value": "kim@shared.example", "is_primary": true}]}),
        )
        .await;
    let b2 = w
        .create(
            App::Fm,
            "contacts",
            json!({"first_name": "Pat", "last_name": "Partner", "subscription_status": 1,
                "job_title": "Partner", "emails": [{"value": "kim@shared.example", "is_primary": true}]}),
        )
        .await;
    w.add_to_list(App::Fm, list, &[b1, b2]).await;
    completed(&w.run("s").await);
    w.host()
        .resolve("s", &kim.to_string(), &b1.to_string(), Decision::Link)
        .unwrap();
    w.host()
        .resolve("s", &kim.to_string(), &b2.to_string(), Decision::KeepApart)
        .unwrap();
    for _ in 0..2 {
        w.advance(60).await;
        completed(&w.run("s").await);
    }
    let a = w.record(App::Fs, "contacts", kim).await;
    assert_eq!(
        (&a["first_name"], &a["last_name"], &a["job_title"]),
        (&json!("Kim"), &json!("Shared"), &json!("Owner")),
        "the linked Freshsales record is not overwritten: {a}"
    );
    let fm1 = w.record(App::Fm, "contacts", b1).await;
    assert_eq!(
        (&fm1["first_name"], &fm1["job_title"]),
        (&json!("Kim"), &json!("Owner")),
        "{fm1}"
    );
    assert!(w.links("s").contains(&(kim, b1)), "{:?}", w.links("s"));
    let shared: Vec<Value> = w
        .by_email(App::Fs, "contacts")
        .await
        .remove("kim@shared.example")
        .unwrap_or_default();
    let pats: Vec<&Value> = shared
        .iter()
        .filter(|r| r["first_name"] == json!("Pat"))
        .collect();
    if duplicates == "allow" {
        assert_eq!(pats.len(), 1, "Pat is created beside Kim: {shared:#?}");
        let pat = pats[0]["id"].as_u64().unwrap();
        assert!(w.links("s").contains(&(pat, b2)), "{:?}", w.links("s"));
    } else {
        assert!(pats.is_empty(), "{shared:#?}");
        assert_eq!(shared.len(), 1);
        let logs = w.host().logs("s", None, 5).unwrap();
        assert!(
            logs.iter().flat_map(|l| &l.events).any(|e| e
                .records
                .iter()
                .any(|r| r.ends_with(&b2.to_string()))
                && e.reason
                    .contains(&format!("{kim} already has kim@shared.example"))
                && e.reason.contains("tandem sync resolve")),
            "the refusal names the record and the operator's options: {:#?}",
            logs.iter().flat_map(|l| &l.events).collect::<Vec<_>>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_apart_creates_beside_the_linked_person_never_over_it() {
    keep_apart_never_overwrites_the_linked_person("allow").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_apart_refused_by_the_app_writes_nothing() {
    keep_apart_never_overwrites_the_linked_person("reject").await;
}

/// `entities = "both"`: Freshmarketer list members who exist as Freshsales contacts are
/// linked to them; only the others become leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_entities_never_make_a_contact_a_lead_too() {
    let sync = r#"
[syncs.s]
a = "classic"
b = "freshmarketer"
entities = "both"
direction = "b-to-a"
scope = { b = "Newsletter" }
"#;
    let w = World::start(&[FreshsalesClassic, Freshmarketer], small(), sync).await;
    let list = w.list_id(App::Fm, "Newsletter").await;
    // Make sure some list members are Freshsales contacts.
    let contacts_before = w.by_email(App::Classic, "contacts").await;
    let mut shared = Vec::new();
    for (i, e) in contacts_before.keys().take(5).enumerate() {
        let id = w
            .create(
                App::Fm,
                "contacts",
                json!({"first_name": format!("Both{i}"), "last_name": "Entities", "subscription_status": 1,
                    "emails": [{"value": e, "is_primary": true}]}),
            )
            .await;
        shared.push(id);
    }
    w.add_to_list(App::Fm, list, &shared).await;
    let members = w.list_members(App::Fm, list).await;
    let leads_before = w.by_email(App::Classic, "leads").await;
    w.settle("s", 3).await;
    let leads = w.by_email(App::Classic, "leads").await;
    let contacts = w.by_email(App::Classic, "contacts").await;
    let mut linked_contacts = 0;
    for e in members.keys() {
        if contacts_before.contains_key(e) {
            linked_contacts += 1;
            assert_eq!(
                leads.get(e).map(Vec::len),
                leads_before.get(e).map(Vec::len),
                "{e} is a Freshsales contact: no lead is created for it"
            );
        }
    }
    assert!(linked_contacts >= 5, "{linked_contacts}");
    no_duplicates(&leads_before, &leads, "leads");
    no_duplicates(&contacts_before, &contacts, "contacts");
}

/// A Google contact without phones gets a Freshsales contact's mobile number: Google
/// makes it the contact's primary phone too (its first phone). That is the sync's own
/// doing, not an edit: the next runs write nothing (the Freshsales work number stays
/// empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mobile_number_that_becomes_the_first_phone_is_no_edit() {
    let w = World::start(
        &[FreshsalesSuite, GooglePeople],
        small(),
        &sync("freshsales", "google", "two-way", ""),
    )
    .await;
    let fs = w
        .create(
            App::Fs,
            "contacts",
            json!({"first_name": "Mo", "last_name": "Bile", "emails": "mo@phones.example",
                "mobile_number": "+15550100"}),
        )
        .await;
    w.control(
        App::Google,
        reqwest::Method::POST,
        "/people",
        Some(json!({"names": [{"givenName": "Mo", "familyName": "Bile"}],
            "emailAddresses": [{"value": "mo@phones.example"}]})),
    )
    .await;
    completed(&w.run("s").await);
    let people = w.google_people().await;
    let phones = &people["mo@phones.example"][0]["person"]["phoneNumbers"];
    assert_eq!(phones[0]["value"], json!("+15550100"), "{phones}");
    for full in [false, true] {
        w.advance(60).await;
        let r = w
            .try_run(
                "s",
                RunOptions {
                    full,
                    ..RunOptions::default()
                },
            )
            .await
            .unwrap();
        completed(&r);
        assert!(r.plan.ops.is_empty(), "full: {full}: {:#?}", r.plan.ops);
    }
    let fs = w.record(App::Fs, "contacts", fs).await;
    assert_eq!(fs["work_number"], Value::Null, "{fs}");
}
