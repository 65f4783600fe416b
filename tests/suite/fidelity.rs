//! Writes the sync must never make, against the simulated accounts: a create never lands
//! on a record that already holds the address (the operator's keep-apart).

use serde_json::{Value, json};
use tandem::sync::baseline::Decision;
use tandem_sandbox::AccountKind::{Freshmarketer, FreshsalesSuite};
use tandem_tests::e2e::{App, World, completed, small};

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
