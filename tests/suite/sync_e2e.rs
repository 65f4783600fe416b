//! The seed behaviours of the Freshmarketer–Freshsales integration and the PieSync
//! Freshsales–Google sync, end to end: the built connector plugins, the assembled host
//! and engine, against the simulated accounts. Each test acts "as a user in the app"
//! through the accounts' control API and asserts what the apps hold afterwards.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use tandem::sync::RunOutcome;
use tandem::sync::state::Flow;
use tandem_sandbox::AccountKind::{
    self, Freshmarketer, FreshsalesClassic, FreshsalesSuite, GooglePeople,
};
use tandem_tests::e2e::{
    App, World, completed, ids, no_duplicates, opted_out, small, totals, unsubscribed,
};

const FS_FM: &[AccountKind] = &[FreshsalesSuite, Freshmarketer];

/// A Freshsales–Freshmarketer sync named `s` on the Newsletter list, plus `extra` lines.
fn fs_fm(direction: &str, extra: &str) -> String {
    format!(
        r#"
[syncs.s]
a = "freshsales"
b = "freshmarketer"
entities = "contacts"
direction = "{direction}"
scope = {{ b = "Newsletter" }}
{extra}
"#
    )
}

/// Every address of a Freshworks record (`email` and the `emails` list), lower-cased.
fn addresses(r: &Value) -> Vec<String> {
    let list = r["emails"].as_array().into_iter().flatten();
    list.filter_map(|e| e["value"].as_str())
        .chain(r["email"].as_str())
        .map(str::to_lowercase)
        .collect()
}

fn id(r: &Value) -> u64 {
    r["id"].as_u64().expect("numeric id")
}

/// A linked pair (by the sync's own links) whose records are live, alone with their
/// e-mail and not opted out on either side, skipping e-mails in `not`: (e-mail, FS id,
/// FM id).
fn pair(
    w: &World,
    fs: &BTreeMap<String, Vec<Value>>,
    fm: &BTreeMap<String, Vec<Value>>,
    not: &[&str],
) -> (String, u64, u64) {
    let links = w.links("s");
    fs.iter()
        .filter(|(e, rs)| rs.len() == 1 && !not.contains(&e.as_str()) && !opted_out(&rs[0]))
        .find_map(|(e, rs)| {
            let other = fm.get(e).filter(|o| o.len() == 1 && !opted_out(&o[0]))?;
            let ids = (id(&rs[0]), id(&other[0]));
            links.contains(&ids).then(|| (e.clone(), ids.0, ids.1))
        })
        .expect("a linked pair")
}

async fn no_writes_on_second_run(w: &World, sync: &str) {
    let r = w.run(sync).await;
    completed(&r);
    assert!(
        r.plan.ops.is_empty(),
        "a run with no edits writes nothing, planned {:?}",
        r.plan.ops
    );
    assert_eq!(totals(&r), (0, 0, 0, 0), "{:?}", r.counters);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fm_to_fs_list_contacts_become_contacts_and_later_additions_follow() {
    let w = World::start(FS_FM, small(), &fs_fm("b-to-a", "")).await;
    let list = w.list_id(App::Fm, "Newsletter").await;
    let members = w.list_members(App::Fm, list).await;
    let fs_before = w.by_email(App::Fs, "contacts").await;
    let fm_before = w.by_email(App::Fm, "contacts").await;
    assert!(
        members.len() >= 5,
        "the seed puts people on the Newsletter list"
    );

    completed(&w.run("s").await);
    let fs = w.by_email(App::Fs, "contacts").await;
    // A member may be known in Freshsales by another of its addresses (matched, not copied).
    let fs_addresses: BTreeSet<String> = fs.values().flatten().flat_map(addresses).collect();
    let mut created = 0;
    for (e, rs) in &members {
        let excluded = rs.iter().all(opted_out);
        if !excluded {
            assert!(
                rs.iter()
                    .flat_map(addresses)
                    .any(|a| fs_addresses.contains(&a)),
                "list member {e} is in Freshsales"
            );
            created += usize::from(!fs_before.contains_key(e));
        } else if !fs_before.contains_key(e) {
            assert!(
                !fs.contains_key(e),
                "opted-out list member {e} is not created (exclude opt-outs is on by default)"
            );
        }
    }
    assert!(created > 0, "some list members were new to Freshsales");
    for e in fs.keys() {
        assert!(
            fs_before.contains_key(e) || members.contains_key(e),
            "only list members reach Freshsales: {e}"
        );
    }
    assert_eq!(
        w.by_email(App::Fm, "contacts").await.len(),
        fm_before.len(),
        "one-way: nothing is created in Freshmarketer"
    );
    no_duplicates(&fs_before, &fs, "freshsales");

    // Added to the list later: created too. Not on the list: not.
    w.advance(60).await;
    let joined = w.create(App::Fm, "contacts", json!({"first_name": "Lia", "last_name": "Late", "emails": "lia.late@joined.example", "subscription_status": 1})).await;
    w.add_to_list(App::Fm, list, &[joined]).await;
    w.create(App::Fm, "contacts", json!({"first_name": "Otto", "last_name": "Outside", "emails": "otto.outside@joined.example", "subscription_status": 1})).await;
    w.advance(60).await;
    completed(&w.run("s").await);
    let fs = w.by_email(App::Fs, "contacts").await;
    let lia = &fs
        .get("lia.late@joined.example")
        .expect("a contact added to the list later is created")[0];
    assert_eq!(lia["last_name"], json!("Late"));
    assert!(
        !fs.contains_key("otto.outside@joined.example"),
        "a contact outside the list stays out"
    );
    no_writes_on_second_run(&w, "s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fm_to_classic_list_contacts_become_leads() {
    let sync = r#"
[syncs.s]
a = "classic"
b = "freshmarketer"
entities = "leads"
direction = "b-to-a"
scope = { b = "Newsletter" }
"#;
    let w = World::start(&[FreshsalesClassic, Freshmarketer], small(), sync).await;
    let list = w.list_id(App::Fm, "Newsletter").await;
    let members = w.list_members(App::Fm, list).await;
    let leads_before = w.by_email(App::Classic, "leads").await;
    let contacts_before = w.by_email(App::Classic, "contacts").await;
    completed(&w.run("s").await);
    let leads = w.by_email(App::Classic, "leads").await;
    for (e, rs) in &members {
        if !rs.iter().all(opted_out) {
            assert!(
                leads.contains_key(e),
                "list member {e} is a lead in Freshsales Classic"
            );
        }
    }
    assert_eq!(
        w.by_email(App::Classic, "contacts").await.len(),
        contacts_before.len(),
        "contacts are not touched when the sync is on leads"
    );
    no_duplicates(&leads_before, &leads, "leads");
    no_writes_on_second_run(&w, "s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_to_fm_every_contact_goes_to_the_chosen_list_and_new_ones_follow() {
    let w = World::start(FS_FM, small(), &fs_fm("a-to-b", "")).await;
    let list = w.list_id(App::Fm, "Newsletter").await;
    let fs = w.by_email(App::Fs, "contacts").await;
    let fm_before = w.by_email(App::Fm, "contacts").await;
    let r = w.run("s").await;
    completed(&r);
    // Ambiguous matches (two records share an e-mail) are reported and left alone.
    let ambiguous: BTreeSet<&str> = r.plan.ambiguous.iter().map(|a| a.email.as_str()).collect();
    let members = w.list_members(App::Fm, list).await;
    for e in fs.keys().filter(|e| !ambiguous.contains(e.as_str())) {
        assert!(
            members.contains_key(e),
            "Freshsales contact {e} is on the Newsletter list"
        );
    }
    let fm = w.by_email(App::Fm, "contacts").await;
    no_duplicates(&fm_before, &fm, "freshmarketer");
    assert_eq!(
        w.by_email(App::Fs, "contacts").await.len(),
        fs.len(),
        "one-way: nothing is created in Freshsales"
    );

    w.advance(60).await;
    w.create(
        App::Fs,
        "contacts",
        json!({"first_name": "Nina", "last_name": "New", "emails": "nina.new@sales.example"}),
    )
    .await;
    w.advance(60).await;
    completed(&w.run("s").await);
    let members = w.list_members(App::Fm, list).await;
    assert!(
        members.contains_key("nina.new@sales.example"),
        "a contact created in Freshsales later reaches the list"
    );
    no_writes_on_second_run(&w, "s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_way_keeps_the_list_and_freshsales_in_step() {
    let w = World::start(FS_FM, small(), &fs_fm("two-way", "")).await;
    let list = w.list_id(App::Fm, "Newsletter").await;
    let fm_before = w.by_email(App::Fm, "contacts").await;
    let reports = w.settle("s", 3).await;
    let ambiguous: BTreeSet<String> = reports
        .iter()
        .flat_map(|r| r.plan.ambiguous.iter().map(|a| a.email.clone()))
        .collect();
    let fs = w.by_email(App::Fs, "contacts").await;
    let members = w.list_members(App::Fm, list).await;
    for e in fs.keys().filter(|e| !ambiguous.contains(*e)) {
        assert!(
            members.contains_key(e),
            "Freshsales contact {e} is on the list"
        );
    }
    for (e, rs) in members.iter().filter(|(e, _)| !ambiguous.contains(*e)) {
        if !rs.iter().all(opted_out) {
            assert!(fs.contains_key(e), "list member {e} is in Freshsales");
        }
    }
    // (People known by another address on the other side: see
    // a_person_known_by_a_second_address_on_the_other_side_is_not_duplicated.)
    no_duplicates(
        &fm_before,
        &w.by_email(App::Fm, "contacts").await,
        "freshmarketer",
    );

    // Edits on either side flow to the other.
    let fm_all = w.by_email(App::Fm, "contacts").await;
    let (e1, fs1, _) = pair(&w, &fs, &fm_all, &[]);
    let (e2, _, fm2) = pair(&w, &fs, &fm_all, &[&e1]);
    w.advance(120).await;
    w.edit(
        App::Fs,
        "contacts",
        fs1,
        json!({"job_title": "Head of Sales Ops"}),
    )
    .await;
    w.edit(App::Fm, "contacts", fm2, json!({"city": "Ghent"}))
        .await;
    w.advance(120).await;
    completed(&w.run("s").await);
    let fm_after = w.by_email(App::Fm, "contacts").await;
    let fs_after = w.by_email(App::Fs, "contacts").await;
    assert_eq!(fm_after[&e1][0]["job_title"], json!("Head of Sales Ops"));
    assert_eq!(fs_after[&e2][0]["city"], json!("Ghent"));
    no_writes_on_second_run(&w, "s").await;
}

/// Both sides edit the same field (a true conflict) and different fields of one linked
/// pair; returns (job title in FS, in FM, FS city in FM, FM last name in FS).
async fn conflict(winner: &str, fm_later: bool) -> (Value, Value, Value, Value) {
    let extra = format!("[syncs.s.conflict]\nwinner = \"{winner}\"\n");
    let w = World::start(FS_FM, small(), &fs_fm("two-way", &extra)).await;
    w.settle("s", 3).await;
    let fs = w.by_email(App::Fs, "contacts").await;
    let fm = w.by_email(App::Fm, "contacts").await;
    let (e, fs_id, fm_id) = pair(&w, &fs, &fm, &[]);
    w.advance(30).await;
    let fs_edit = json!({"job_title": "Chief Seller", "city": "Porto"});
    let fm_edit = json!({"job_title": "Chief Marketer", "last_name": "Marketed"});
    if fm_later {
        w.edit(App::Fs, "contacts", fs_id, fs_edit).await;
        w.advance(600).await;
        w.edit(App::Fm, "contacts", fm_id, fm_edit).await;
    } else {
        w.edit(App::Fm, "contacts", fm_id, fm_edit).await;
        w.advance(600).await;
        w.edit(App::Fs, "contacts", fs_id, fs_edit).await;
    }
    w.advance(30).await;
    let r = w.run("s").await;
    completed(&r);
    assert!(
        r.plan.conflicts.iter().any(|c| c.field.contains("job")),
        "the job title conflict is reported: {:?}",
        r.plan.conflicts
    );
    let fs = w.by_email(App::Fs, "contacts").await;
    let fm = w.by_email(App::Fm, "contacts").await;
    no_writes_on_second_run(&w, "s").await;
    (
        fs[&e][0]["job_title"].clone(),
        fm[&e][0]["job_title"].clone(),
        fm[&e][0]["city"].clone(),
        fs[&e][0]["last_name"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_freshsales_wins_per_field() {
    let (fs_job, fm_job, city, last) = conflict("a-wins", true).await;
    assert_eq!(
        (fs_job, fm_job),
        (json!("Chief Seller"), json!("Chief Seller"))
    );
    assert_eq!(
        (city, last),
        (json!("Porto"), json!("Marketed")),
        "edits of different fields both survive"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_freshmarketer_wins_per_field() {
    let (fs_job, fm_job, city, last) = conflict("b-wins", false).await;
    assert_eq!(
        (fs_job, fm_job),
        (json!("Chief Marketer"), json!("Chief Marketer"))
    );
    assert_eq!(
        (city, last),
        (json!("Porto"), json!("Marketed")),
        "edits of different fields both survive"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_most_recent_wins_per_field() {
    let (fs_job, fm_job, city, last) = conflict("most-recent", true).await;
    assert_eq!(
        (fs_job, fm_job),
        (json!("Chief Marketer"), json!("Chief Marketer")),
        "Freshmarketer edited last"
    );
    assert_eq!((city, last), (json!("Porto"), json!("Marketed")));
    let (fs_job, fm_job, _, _) = conflict("most-recent", false).await;
    assert_eq!(
        (fs_job, fm_job),
        (json!("Chief Seller"), json!("Chief Seller")),
        "Freshsales edited last"
    );
}

/// `manual` on one field (sync-rules F5): a true conflict writes nothing to that field, keeps both
/// values on the link and in `status`, while the pair's other fields keep syncing; the
/// operator's `resolve --take` writes the chosen value on the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_conflict_waits_for_the_operator_then_takes_the_chosen_side() {
    let extra = "[syncs.s.conflict]\nwinner = \"a-wins\"\nfields = { job_title = \"manual\" }\n";
    let w = World::start(FS_FM, small(), &fs_fm("two-way", extra)).await;
    w.settle("s", 3).await;
    let fs = w.by_email(App::Fs, "contacts").await;
    let fm = w.by_email(App::Fm, "contacts").await;
    let (_, fs_id, fm_id) = pair(&w, &fs, &fm, &[]);
    w.advance(30).await;
    w.edit(
        App::Fs,
        "contacts",
        fs_id,
        json!({"job_title": "Chief Seller", "city": "Porto"}),
    )
    .await;
    w.edit(
        App::Fm,
        "contacts",
        fm_id,
        json!({"job_title": "Chief Marketer"}),
    )
    .await;
    w.advance(30).await;
    let r = w.run("s").await;
    completed(&r);
    assert!(
        r.plan
            .conflicts
            .iter()
            .any(|c| c.field.contains("job_title") && c.winner.is_none()),
        "{:?}",
        r.plan.conflicts
    );
    let (fs_rec, fm_rec) = (
        w.record(App::Fs, "contacts", fs_id).await,
        w.record(App::Fm, "contacts", fm_id).await,
    );
    assert_eq!(
        fs_rec["job_title"],
        json!("Chief Seller"),
        "nothing written"
    );
    assert_eq!(
        fm_rec["job_title"],
        json!("Chief Marketer"),
        "nothing written"
    );
    assert_eq!(
        fm_rec["city"],
        json!("Porto"),
        "the other field still flows"
    );
    // `status` lists it (first-sync disagreements on job titles may be listed too).
    let mine = |w: &World| {
        w.host().status(Some("s")).unwrap()[0]
            .attention
            .iter()
            .filter(|a| a.records.contains(&format!("a:{fs_id}")))
            .cloned()
            .collect::<Vec<_>>()
    };
    let waiting = mine(&w);
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert!(
        waiting[0].detail.contains("Chief Marketer") && waiting[0].hint.contains("--take a|b"),
        "{:?}",
        waiting[0]
    );
    no_writes_on_second_run(&w, "s").await;

    // The operator takes Freshmarketer's value.
    w.host()
        .take(
            "s",
            &fs_id.to_string(),
            "job_title",
            tandem::sync::model::Side::B,
        )
        .unwrap();
    let r = w.run("s").await;
    completed(&r);
    assert_eq!(
        w.record(App::Fs, "contacts", fs_id).await["job_title"],
        json!("Chief Marketer")
    );
    assert!(mine(&w).is_empty(), "settled: {:?}", mine(&w));
    no_writes_on_second_run(&w, "s").await;
}

/// `scope.on-leave` (sync-rules E14) with the Freshmarketer list: a contact taken
/// off the Newsletter list is marked DND in Freshsales (`unsubscribe`), and the pair is
/// no longer synced while it stays off the list.
/// Requests `app` answered on routes containing `part`.
async fn route_requests(w: &World, app: App, part: &str) -> u64 {
    w.control(app, reqwest::Method::GET, "/counters", None)
        .await["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["route"].as_str().is_some_and(|r| r.contains(part)))
        .map(|e| e["count"].as_u64().unwrap_or(0))
        .sum()
}

/// Field-metadata reads of Freshsales and Freshmarketer.
async fn field_reads(w: &World) -> (u64, u64) {
    (
        route_requests(w, App::Fs, "fields").await,
        route_requests(w, App::Fm, "fields").await,
    )
}

/// Field definitions are read once per connection and reused by the next runs of the
/// same host (a third of an idle poll's requests otherwise); a new host reads them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_definitions_are_read_once_per_host_not_every_run() {
    let sync = r#"
[syncs.s]
a = "freshsales"
b = "freshmarketer"
entities = "contacts"
direction = "two-way"
scope = { b = "Newsletter" }
"#;
    let mut w = World::start(FS_FM, small(), sync).await;
    completed(&w.run("s").await);
    let first = field_reads(&w).await;
    assert!(
        first.0 > 0 && first.1 > 0,
        "the first run read them: {first:?}"
    );
    completed(&w.run("s").await);
    completed(&w.run("s").await);
    assert_eq!(
        field_reads(&w).await,
        first,
        "later runs of the host reuse them"
    );
    w.reopen();
    completed(&w.run("s").await);
    let again = field_reads(&w).await;
    assert!(
        again.0 > first.0 && again.1 > first.1,
        "a new host reads them again: {first:?} -> {again:?}"
    );
}

/// The daemon lists both sides in full every `full-every`, so a list exit (which no
/// change feed shows) is found without the operator asking for `--full`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemons_periodic_full_run_finds_a_list_exit() {
    let sync = r#"
[syncs.s]
a = "freshsales"
b = "freshmarketer"
entities = "contacts"
direction = "two-way"
scope = { b = "Newsletter", on-leave = { b = "unsubscribe" } }
interval = "1s"
full-every = "2s"
"#;
    let mut w = World::start(FS_FM, small(), sync).await;
    let list = w.list_id(App::Fm, "Newsletter").await;
    w.settle("s", 3).await;
    let fs = w.by_email(App::Fs, "contacts").await;
    let fm = w.by_email(App::Fm, "contacts").await;
    let (_, fs_id, fm_id) = pair(&w, &fs, &fm, &[]);
    w.control(
        App::Fm,
        reqwest::Method::PUT,
        &format!("/lists/{list}/members"),
        Some(json!({ "remove": [fm_id] })),
    )
    .await;
    let daemon = w.start_daemon();
    let mut dnd = json!(false);
    for _ in 0..300 {
        dnd = w.record(App::Fs, "contacts", fs_id).await["do_not_disturb"].clone();
        if dnd == json!(true) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    daemon.shutdown(std::time::Duration::from_secs(30)).await;
    assert_eq!(
        dnd,
        json!(true),
        "the exit was found and unsubscribed the CRM contact"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_the_list_unsubscribes_the_crm_contact_and_detaches() {
    let sync = r#"
[syncs.s]
a = "freshsales"
b = "freshmarketer"
entities = "contacts"
direction = "two-way"
scope = { b = "Newsletter", on-leave = { b = "unsubscribe" } }
"#;
    let w = World::start(FS_FM, small(), sync).await;
    let list = w.list_id(App::Fm, "Newsletter").await;
    w.settle("s", 3).await;
    let fs = w.by_email(App::Fs, "contacts").await;
    let fm = w.by_email(App::Fm, "contacts").await;
    let (_, fs_id, fm_id) = pair(&w, &fs, &fm, &[]);
    assert_eq!(
        w.record(App::Fs, "contacts", fs_id).await["do_not_disturb"],
        json!(false)
    );
    w.advance(60).await;
    w.control(
        App::Fm,
        reqwest::Method::PUT,
        &format!("/lists/{list}/members"),
        Some(json!({ "remove": [fm_id] })),
    )
    .await;
    w.advance(60).await;
    // A list's change feed does not show who left it: a full listing does.
    let full = tandem::sync::RunOptions {
        full: true,
        ..Default::default()
    };
    let r = w.try_run("s", full).await.unwrap();
    completed(&r);
    assert_eq!(
        w.record(App::Fs, "contacts", fs_id).await["do_not_disturb"],
        json!(true),
        "unsubscribed in Freshsales: {:?}",
        r.plan.ops
    );
    let links = w.host().store().links("s").unwrap();
    let l = links
        .iter()
        .find(|l| l.ids.b.as_deref() == Some(fm_id.to_string().as_str()))
        .unwrap();
    assert_eq!(
        l.state,
        tandem::sync::baseline::LinkState::Detached(tandem::sync::model::Side::B)
    );
    // Detached: a later edit in Freshsales does not reach the contact off the list.
    w.advance(60).await;
    w.edit(
        App::Fs,
        "contacts",
        fs_id,
        json!({"job_title": "Left Behind"}),
    )
    .await;
    w.advance(60).await;
    completed(&w.run("s").await);
    assert_ne!(
        w.record(App::Fm, "contacts", fm_id).await["job_title"],
        json!("Left Behind")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fm_opt_outs_are_excluded_unless_turned_off() {
    for (extra, excluded) in [
        ("", true),
        ("[syncs.s.opt-out]\nexclude = { b = false }\n", false),
    ] {
        let w = World::start(FS_FM, small(), &fs_fm("two-way", extra)).await;
        let list = w.list_id(App::Fm, "Newsletter").await;
        let fs_before = w.by_email(App::Fs, "contacts").await;
        // One opted-out and one subscribed newcomer on the list.
        let out = w.create(App::Fm, "contacts", json!({"first_name": "Una", "last_name": "Out", "emails": "una.out@optout.example", "subscription_status": 0})).await;
        let inn = w.create(App::Fm, "contacts", json!({"first_name": "Ida", "last_name": "In", "emails": "ida.in@optout.example", "subscription_status": 1})).await;
        w.add_to_list(App::Fm, list, &[out, inn]).await;
        w.settle("s", 3).await;
        let fs = w.by_email(App::Fs, "contacts").await;
        assert!(fs.contains_key("ida.in@optout.example"));
        assert_eq!(
            !fs.contains_key("una.out@optout.example"),
            excluded,
            "{extra:?}"
        );
        if !excluded {
            assert_eq!(
                fs["una.out@optout.example"][0]["do_not_disturb"],
                json!(true),
                "an unsubscribed contact arrives as DND"
            );
        }
        for (e, rs) in w.list_members(App::Fm, list).await {
            if excluded && rs.iter().all(opted_out) && !fs_before.contains_key(&e) {
                assert!(
                    !fs.contains_key(&e),
                    "opted-out member {e} stays out of Freshsales"
                );
            }
        }
    }
}

/// Two-way on the Newsletter list with `extra`; a linked pair gets `act` on its
/// Freshsales side; returns the Freshmarketer record afterwards and the list id.
async fn after_fs_change(extra: &str, act: &str) -> (Value, u64) {
    let w = World::start(FS_FM, small(), &fs_fm("two-way", extra)).await;
    let list = w.list_id(App::Fm, "Newsletter").await;
    w.settle("s", 3).await;
    let fs = w.by_email(App::Fs, "contacts").await;
    let fm = w.by_email(App::Fm, "contacts").await;
    let (_, fs_id, fm_id) = pair(&w, &fs, &fm, &[]);
    assert!(ids(&w.record(App::Fm, "contacts", fm_id).await["list_ids"]).contains(&list));
    w.advance(60).await;
    match act {
        "dnd" => {
            w.consent(App::Fs, "contacts", fs_id, json!({"do_not_disturb": true}))
                .await
        }
        "delete" => w.delete(App::Fs, "contacts", fs_id).await,
        other => panic!("{other}"),
    }
    w.advance(60).await;
    completed(&w.run("s").await);
    (w.record(App::Fm, "contacts", fm_id).await, list)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opted_out_fs_records_are_removed_from_fm_entirely() {
    let (fm, _) = after_fs_change(
        "[syncs.s.opt-out]\non-opt-out = { a = \"delete\" }\n",
        "dnd",
    )
    .await;
    assert_eq!(fm["is_deleted"], json!(true), "{fm}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opted_out_fs_records_are_removed_from_the_list_only() {
    let (fm, list) = after_fs_change(
        "[syncs.s.opt-out]\non-opt-out = { a = \"remove-from-list\" }\n",
        "dnd",
    )
    .await;
    assert_eq!(fm["is_deleted"], json!(false), "{fm}");
    assert!(!ids(&fm["list_ids"]).contains(&list), "off the list: {fm}");
    assert!(unsubscribed(&fm), "DND became unsubscribed: {fm}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_fs_records_are_removed_from_fm_entirely() {
    let (fm, _) = after_fs_change(
        "[syncs.s.deletes]\non-delete = { a = \"delete\" }\n",
        "delete",
    )
    .await;
    assert_eq!(fm["is_deleted"], json!(true), "{fm}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_fs_records_are_removed_from_the_list_only() {
    let (fm, list) = after_fs_change(
        "[syncs.s.deletes]\non-delete = { a = \"remove-from-list\" }\n",
        "delete",
    )
    .await;
    assert_eq!(fm["is_deleted"], json!(false), "{fm}");
    assert!(!ids(&fm["list_ids"]).contains(&list), "off the list: {fm}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_fs_records_are_kept_by_default() {
    let (fm, list) = after_fs_change("", "delete").await;
    assert_eq!(fm["is_deleted"], json!(false), "{fm}");
    assert!(ids(&fm["list_ids"]).contains(&list), "{fm}");
}

/// DND in Freshsales on one linked pair, unsubscribe in Freshmarketer on another, then a
/// run under `direction`: returns (FM side of the DND pair unsubscribed, FS side of the
/// unsubscribe pair DND).
async fn consent_flow(direction: &str) -> (bool, bool) {
    let w = World::start(FS_FM, small(), &fs_fm(direction, "")).await;
    w.settle("s", 3).await;
    let fs = w.by_email(App::Fs, "contacts").await;
    let fm = w.by_email(App::Fm, "contacts").await;
    let (e1, fs1, fm1) = pair(&w, &fs, &fm, &[]);
    let (_, fs2, fm2) = pair(&w, &fs, &fm, &[&e1]);
    w.advance(60).await;
    w.consent(App::Fs, "contacts", fs1, json!({"do_not_disturb": true}))
        .await;
    w.consent(App::Fm, "contacts", fm2, json!({"subscription_status": 0}))
        .await;
    w.advance(60).await;
    completed(&w.run("s").await);
    let fm_dnd_pair = w.record(App::Fm, "contacts", fm1).await;
    let fs_unsub_pair = w.record(App::Fs, "contacts", fs2).await;
    (
        unsubscribed(&fm_dnd_pair) || opted_out(&fm_dnd_pair),
        fs_unsub_pair["do_not_disturb"] == json!(true),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnd_and_unsubscribe_flow_both_ways_in_a_two_way_sync() {
    assert_eq!(consent_flow("two-way").await, (true, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_fs_to_fm_dnd_flows_but_unsubscribes_do_not_flow_back() {
    assert_eq!(consent_flow("a-to-b").await, (true, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_fm_to_fs_unsubscribes_flow_but_dnd_does_not() {
    assert_eq!(consent_flow("b-to-a").await, (false, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_only_tightens_and_nobody_is_resubscribed() {
    let w = World::start(FS_FM, small(), &fs_fm("two-way", "")).await;
    w.settle("s", 3).await;
    let fs = w.by_email(App::Fs, "contacts").await;
    let fm = w.by_email(App::Fm, "contacts").await;
    let (e1, fs1, fm1) = pair(&w, &fs, &fm, &[]);
    let (_, fs2, fm2) = pair(&w, &fs, &fm, &[&e1]);
    w.advance(60).await;
    w.consent(App::Fs, "contacts", fs1, json!({"do_not_disturb": true}))
        .await;
    w.consent(App::Fm, "contacts", fm2, json!({"subscription_status": 0}))
        .await;
    w.advance(60).await;
    w.settle("s", 3).await;
    assert!(unsubscribed(&w.record(App::Fm, "contacts", fm1).await));
    assert_eq!(
        w.record(App::Fs, "contacts", fs2).await["do_not_disturb"],
        json!(true)
    );
    // Users loosen consent on the other side: the sync never re-subscribes anybody.
    w.advance(60).await;
    w.consent(App::Fs, "contacts", fs1, json!({"do_not_disturb": false}))
        .await;
    w.consent(App::Fm, "contacts", fm2, json!({"subscription_status": 1}))
        .await;
    w.advance(60).await;
    w.settle("s", 3).await;
    assert!(
        unsubscribed(&w.record(App::Fm, "contacts", fm1).await),
        "Freshmarketer stays unsubscribed"
    );
    assert_eq!(
        w.record(App::Fs, "contacts", fs2).await["do_not_disturb"],
        json!(true),
        "Freshsales stays DND"
    );
}

/// Which Freshmarketer statuses are opt-outs, and a re-subscription in Freshmarketer
/// after an opt-out that came from Freshsales (docs/consent.md): "not subscribed" is no
/// opt-out (such a list member reaches Freshsales without DND); the re-subscription stays
/// in Freshmarketer (the sync does not unsubscribe the person again) and Freshsales keeps
/// its DND (a sync never re-subscribes anybody): the pair disagrees from then on, and
/// later runs write nothing for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freshmarketer_resubscribe_after_a_freshsales_opt_out_stays_in_freshmarketer() {
    let w = World::start(FS_FM, small(), &fs_fm("two-way", "")).await;
    let list = w.list_id(App::Fm, "Newsletter").await;
    let never_asked = w.create(App::Fm, "contacts", json!({"first_name": "Nell", "last_name": "Never", "emails": "nell.never@consent.example", "subscription_status": 2})).await;
    w.add_to_list(App::Fm, list, &[never_asked]).await;
    w.settle("s", 3).await;
    let fs = w.by_email(App::Fs, "contacts").await;
    let nell = &fs["nell.never@consent.example"][0];
    assert_eq!(
        nell["do_not_disturb"],
        json!(false),
        "not subscribed is no opt-out: {nell}"
    );
    assert_eq!(
        w.record(App::Fm, "contacts", never_asked).await["subscription_status"],
        json!(2),
        "and it stays not subscribed"
    );

    let fm = w.by_email(App::Fm, "contacts").await;
    let (_, fs_id, fm_id) = pair(&w, &fs, &fm, &["nell.never@consent.example"]);
    w.advance(60).await;
    w.consent(App::Fs, "contacts", fs_id, json!({"do_not_disturb": true}))
        .await;
    w.advance(60).await;
    w.settle("s", 3).await;
    assert!(unsubscribed(&w.record(App::Fm, "contacts", fm_id).await));

    // The person subscribes again in Freshmarketer.
    w.advance(60).await;
    w.consent(
        App::Fm,
        "contacts",
        fm_id,
        json!({"subscription_status": 1}),
    )
    .await;
    w.advance(60).await;
    w.settle("s", 3).await;
    let fm_after = w.record(App::Fm, "contacts", fm_id).await;
    assert_eq!(fm_after["subscription_status"], json!(1), "{fm_after}");
    assert_eq!(
        w.record(App::Fs, "contacts", fs_id).await["do_not_disturb"],
        json!(true),
        "Freshsales keeps its DND"
    );
    // Stable: the disagreement is accepted, nothing is written for it.
    w.advance(60).await;
    let r = w.run("s").await;
    completed(&r);
    assert_eq!(totals(&r), (0, 0, 0, 0), "{r:?}");
}

/// A write the app refuses as invalid (400 "… is invalid") cannot succeed when sent
/// again: it is parked at once with the app's message, not retried as if it might pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_write_is_parked_at_once_with_the_apps_message() {
    let w = World::start(FS_FM, small(), &fs_fm("two-way", "")).await;
    w.settle("s", 3).await;
    let list = w.list_id(App::Fm, "Newsletter").await;
    let vic = w.create(App::Fm, "contacts", json!({"first_name": "Vic", "last_name": "Invalid", "emails": "vic.invalid@parked.example", "subscription_status": 1})).await;
    w.add_to_list(App::Fm, list, &[vic]).await;
    // Freshsales refuses every create and update as invalid.
    let refusal =
        json!({"errors": {"code": 400, "message": ["Mobile number is invalid"]}}).to_string();
    w.fault(App::Fs, json!({"method": "POST", "path_prefix": "/crm/sales/api/contacts",
        "fault": {"kind": "status", "status": 400, "body": refusal, "content_type": "application/json"}}))
        .await;
    w.advance(60).await;
    let r = w.run("s").await;
    let (_, _, _, failed) = totals(&r);
    assert_eq!(failed, 1, "{:?}", r.counters);
    let parked: usize = r.counters.values().map(|c| c.parked).sum();
    assert_eq!(parked, 1, "parked at once: {:?}", r.counters);
    let logs = w.host().logs("s", None, 1).unwrap();
    let event = logs[0]
        .events
        .iter()
        .find(|e| e.action == "parked")
        .expect("a parked event");
    assert!(
        event.reason.contains("Mobile number is invalid")
            && event.reason.contains("after 1 attempt"),
        "{}",
        event.reason
    );
    assert_eq!(w.host().status(Some("s")).unwrap()[0].parked, 1);
    // The person fixes the record (the fault fired once): the next run writes it, and
    // status no longer counts it as parked, then or after later runs.
    w.edit(App::Fm, "contacts", vic, json!({"last_name": "Valid"}))
        .await;
    w.advance(60).await;
    let r = w.run("s").await;
    let (created, _, _, failed) = totals(&r);
    assert_eq!((created, failed), (1, 0), "{:?}", r.counters);
    assert_eq!(w.host().status(Some("s")).unwrap()[0].parked, 0);
    w.advance(60).await;
    w.run("s").await;
    assert_eq!(w.host().status(Some("s")).unwrap()[0].parked, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_and_google_with_if_then_rules() {
    let sync = r#"
[syncs.g]
a = "classic"
b = "google"
entities = "contacts"
direction = "two-way"

[syncs.g.conflict]
winner = "a-wins"

# Accounts that never met differ in many fields: allow the first run's overwrites.
[syncs.g.breaker]
max-overwrite-ratio = 1.0

[[syncs.g.rules]]
name = "no DND contacts in Google"
from = "a"
when = { all = [{ field = "dnd", value = true }] }
then = ["skip"]

[[syncs.g.rules]]
name = "from Google"
from = "b"
then = [{ set-medium = "Google Contacts" }]

[[syncs.g.rules]]
name = "directors decide"
from = "b"
when = { any = [{ field = "job-title", op = "contains", value = "Director" }] }
then = ["grant-authority"]
"#;
    // `has_authority` is a Freshsales Classic field (the PieSync era).
    let w = World::start(&[FreshsalesClassic, GooglePeople], small(), sync).await;
    w.control(
        App::Google,
        reqwest::Method::POST,
        "/people",
        Some(json!({
            "names": [{"givenName": "Dora", "familyName": "Director"}],
            "emailAddresses": [{"value": "dora.director@google.example"}],
            "organizations": [{"name": "Acme", "title": "Director of Sales"}],
        })),
    )
    .await;
    let fs_before = w.by_email(App::Classic, "contacts").await;
    let google_before = w.google_people().await;
    w.settle("g", 3).await;
    let fs = w.by_email(App::Classic, "contacts").await;
    let google = w.google_people().await;
    for (e, rs) in &fs_before {
        let dnd = rs.iter().all(|r| r["do_not_disturb"] == json!(true));
        if dnd && !google_before.contains_key(e) {
            assert!(
                !google.contains_key(e),
                "DND contact {e} is skipped by the IF/THEN rule"
            );
        } else if !dnd {
            assert!(google.contains_key(e), "contact {e} reaches Google");
        }
    }
    for e in google_before.keys() {
        assert!(fs.contains_key(e), "Google person {e} reaches Freshsales");
        if !fs_before.contains_key(e) {
            assert_eq!(
                fs[e][0]["medium"],
                json!("Google Contacts"),
                "THEN set-medium on {e}"
            );
        }
    }
    let dora = &fs["dora.director@google.example"][0];
    assert_eq!(
        dora["has_authority"],
        json!(true),
        "THEN grant-authority: {dora}"
    );
    no_duplicates(&fs_before, &fs, "freshsales");
    no_duplicates(&google_before, &google, "google");
    no_writes_on_second_run(&w, "g").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_all_reads_and_writes_until_resume() {
    let w = World::start(FS_FM, small(), &fs_fm("two-way", "")).await;
    w.settle("s", 3).await;
    let fs = w.by_email(App::Fs, "contacts").await;
    let fm = w.by_email(App::Fm, "contacts").await;
    let (e, fs_id, _) = pair(&w, &fs, &fm, &[]);
    w.advance(60).await;
    w.edit(
        App::Fs,
        "contacts",
        fs_id,
        json!({"job_title": "Paused Title"}),
    )
    .await;
    w.host().pause("s").unwrap();
    let requests = (w.requests(App::Fs).await, w.requests(App::Fm).await);
    let r = w.run("s").await;
    assert_eq!(r.outcome, RunOutcome::Paused);
    assert_eq!(
        (w.requests(App::Fs).await, w.requests(App::Fm).await),
        requests,
        "a paused sync sends no request"
    );
    assert_ne!(
        w.by_email(App::Fm, "contacts").await[&e][0]["job_title"],
        json!("Paused Title")
    );
    // A restarted process keeps the pause.
    let mut w = w;
    w.reopen();
    assert_eq!(w.run("s").await.outcome, RunOutcome::Paused);
    w.host().resume("s").unwrap();
    completed(&w.run("s").await);
    assert_eq!(
        w.by_email(App::Fm, "contacts").await[&e][0]["job_title"],
        json!("Paused Title")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_wipes_state_and_logs_and_a_fresh_start_duplicates_nothing() {
    let w = World::start(FS_FM, small(), &fs_fm("two-way", "")).await;
    w.settle("s", 3).await;
    let store = w.host().store();
    assert!(!store.links("s").unwrap().is_empty());
    assert!(!store.runs("s").unwrap().is_empty());
    let fs = w.by_email(App::Fs, "contacts").await;
    let fm = w.by_email(App::Fm, "contacts").await;
    let wiped = w.host().disconnect("s").unwrap();
    assert!(wiped > 0);
    assert!(store.links("s").unwrap().is_empty());
    assert!(store.runs("s").unwrap().is_empty());
    assert!(w.host().logs("s", None, 10).unwrap().is_empty());
    assert_eq!(
        w.run("s").await.outcome,
        RunOutcome::Paused,
        "a disconnected sync stays stopped"
    );
    w.host().resume("s").unwrap();
    let r = w.run("s").await;
    completed(&r);
    assert_eq!(
        totals(&r).0,
        0,
        "everything is linked again by e-mail, nothing created: {:?}",
        r.counters
    );
    no_duplicates(&fs, &w.by_email(App::Fs, "contacts").await, "freshsales");
    no_duplicates(&fm, &w.by_email(App::Fm, "contacts").await, "freshmarketer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_report_each_direction_and_each_record_with_its_reason() {
    let w = World::start(FS_FM, small(), &fs_fm("two-way", "")).await;
    // An unsubscribed list member: skipped (Freshmarketer opt-outs are excluded).
    let list = w.list_id(App::Fm, "Newsletter").await;
    let out = w.create(App::Fm, "contacts", json!({"first_name": "Sky", "last_name": "Skipped", "emails": "sky.skipped@logs.example", "subscription_status": 0})).await;
    w.add_to_list(App::Fm, list, &[out]).await;
    let r = w.run("s").await;
    completed(&r);
    let logs = w.host().logs("s", None, 1).unwrap();
    assert_eq!(logs.len(), 1);
    let log = &logs[0];
    assert_eq!(Some(log.run.id), r.run);
    assert!(
        log.run
            .counters
            .get(&Flow::AToB)
            .is_some_and(|c| c.created > 0),
        "{:?}",
        log.run.counters
    );
    assert!(
        log.run
            .counters
            .get(&Flow::BToA)
            .is_some_and(|c| c.created > 0),
        "{:?}",
        log.run.counters
    );
    for action in ["created", "linked", "skipped"] {
        assert!(
            log.events.iter().any(|e| e.action == action),
            "a `{action}` event"
        );
    }
    assert!(
        log.events.iter().all(|e| !e.reason.is_empty()),
        "every event has a reason"
    );
    let skip = log
        .events
        .iter()
        .find(|e| e.action == "skipped" && e.records.iter().any(|r| r.ends_with(&out.to_string())))
        .expect("the opt-out is logged");
    assert_eq!(skip.direction, Flow::BToA);
    assert!(skip.reason.contains("opted out"), "{}", skip.reason);
    let created = log.events.iter().filter(|e| e.action == "created").count();
    let counted: usize = log.run.counters.values().map(|c| c.created).sum();
    assert_eq!(created, counted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_known_by_a_second_address_on_the_other_side_is_not_duplicated() {
    let w = World::start(FS_FM, small(), &fs_fm("two-way", "")).await;
    let list = w.list_id(App::Fm, "Newsletter").await;
    // The same person: work address in Freshsales, home address first in Freshmarketer.
    w.create(
        App::Fs,
        "contacts",
        json!({"first_name": "Sam", "last_name": "Second", "emails": "sam.work@second.example"}),
    )
    .await;
    let fm = w.create(App::Fm, "contacts", json!({"first_name": "Sam", "last_name": "Second", "subscription_status": 1,
        "emails": [{"value": "sam.home@second.example", "is_primary": true}, {"value": "sam.work@second.example", "is_primary": false}]})).await;
    w.add_to_list(App::Fm, list, &[fm]).await;
    w.settle("s", 3).await;
    let fs = w.by_email(App::Fs, "contacts").await;
    let sams = fs.keys().filter(|e| e.ends_with("@second.example")).count();
    assert_eq!(
        sams,
        1,
        "one Sam in Freshsales: {:?}",
        fs.keys()
            .filter(|e| e.ends_with("@second.example"))
            .collect::<Vec<_>>()
    );
    let fm_sams: usize = w
        .by_email(App::Fm, "contacts")
        .await
        .iter()
        .filter(|(e, _)| e.ends_with("@second.example"))
        .map(|(_, r)| r.len())
        .sum();
    assert_eq!(fm_sams, 1, "one Sam in Freshmarketer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_match_waits_for_the_operator_who_links_or_keeps_apart() {
    use tandem::sync::baseline::Decision;
    let w = World::start(FS_FM, small(), &fs_fm("two-way", "")).await;
    let (kim, kim_fm, lee_fm) = w.kim_and_lee_apart().await;
    w.settle("s", 3).await;
    let apart = |m: BTreeMap<String, Vec<Value>>| -> usize {
        m.iter()
            .filter(|(e, _)| e.ends_with("@apart.example"))
            .map(|(_, r)| r.len())
            .sum()
    };
    // The seed has ambiguities of its own: only ours.
    let ours = |w: &World| -> Vec<tandem::sync::state::PendingAmbiguity> {
        let mut all = w.host().status(Some("s")).unwrap().remove(0).ambiguous;
        all.retain(|p| p.email.ends_with("@apart.example"));
        all
    };
    // Two candidates: nothing linked, nothing written, the operator is asked.
    assert_eq!(apart(w.by_email(App::Fs, "contacts").await), 1);
    assert!(!w.links("s").iter().any(|(a, _)| *a == kim));
    let pending = ours(&w);
    assert_eq!(pending.len(), 1, "{pending:#?}");
    assert_eq!(pending[0].a, vec![kim.to_string()]);
    let mut both = vec![kim_fm.to_string(), lee_fm.to_string()];
    both.sort();
    assert_eq!(pending[0].b, both);
    let logs = w.host().logs("s", None, 5).unwrap();
    assert!(
        logs.iter()
            .flat_map(|l| &l.events)
            .any(|e| e.action == "ambiguous"
                && e.reason
                    .contains(&format!("tandem sync resolve s --link {kim}"))),
        "the log says how to decide"
    );

    // The same person: linked (and merged) on the next run.
    w.host()
        .resolve("s", &kim.to_string(), &kim_fm.to_string(), Decision::Link)
        .unwrap();
    w.settle("s", 3).await;
    assert!(w.links("s").contains(&(kim, kim_fm)), "{:?}", w.links("s"));
    // Lee still shares Kim's address with a linked record: asked again, nothing written.
    let pending = ours(&w);
    assert_eq!(pending.len(), 1, "{pending:#?}");
    assert_eq!(pending[0].b, vec![lee_fm.to_string()]);
    assert!(pending[0].reason.contains("already linked"), "{pending:#?}");
    assert_eq!(apart(w.by_email(App::Fs, "contacts").await), 1);

    // A different person: never matched to Kim again, and not reported again.
    w.host()
        .resolve(
            "s",
            &kim.to_string(),
            &lee_fm.to_string(),
            Decision::KeepApart,
        )
        .unwrap();
    let r = w.run("s").await;
    assert!(
        r.plan
            .ambiguous
            .iter()
            .all(|a| !a.b.contains(&lee_fm.to_string())),
        "{:#?}",
        r.plan.ambiguous
    );
    assert!(ours(&w).is_empty());
    assert!(w.links("s").contains(&(kim, kim_fm)));
    assert!(!w.links("s").contains(&(kim, lee_fm)));
    // With no other candidate, Lee follows the create rules: created in Freshsales.
    assert!(
        w.links("s").iter().any(|(a, b)| *b == lee_fm && *a != kim),
        "{:?}",
        w.links("s")
    );
    assert_eq!(
        w.by_email(App::Fs, "contacts")
            .await
            .get("lee@apart.example")
            .map(Vec::len),
        Some(1)
    );
}
