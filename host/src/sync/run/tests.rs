//! Engine tests against two in-memory apps: initial and incremental runs,
//! idle second runs, cursors, retries and parking, pause, disconnect, dry run,
//! breakers, mappers, the seed's opt-out behaviour, and crash tests that abort
//! a run at every point and restart it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::*;
use crate::db::testing::{fresh, on_both_backends};
use crate::sync::baseline::LinkState;
use crate::sync::memory::MemoryApp;
use crate::sync::model::Value;
use crate::sync::policy::{Direction, EntityPair, RemoveAction, Scope};
use crate::sync::source::{FieldDef, FieldType, MapContext, NoMappers};

mod footprint;
mod hostile_mappers;
mod loops;
mod recovery;

fn fs_schema() -> Vec<FieldDef> {
    vec![
        FieldDef::new("email", FieldType::Email, Some("email")),
        FieldDef::new("first_name", FieldType::Text, Some("first-name")),
        FieldDef::new("mobile_number", FieldType::Phone, Some("mobile")),
        FieldDef::new("do_not_disturb", FieldType::Boolean, Some("dnd")),
    ]
}

fn fm_schema() -> Vec<FieldDef> {
    vec![
        FieldDef::new("emails", FieldType::Email, Some("email")),
        FieldDef::new("first_name", FieldType::Text, Some("first-name")),
        FieldDef::new("mobile", FieldType::Phone, Some("mobile")),
        FieldDef::new("subscription_status", FieldType::Number, Some("consent")),
    ]
}

/// Freshmarketer reformats phones with spaces (read-back normalisation).
fn fm_normalise(f: &mut BTreeMap<String, Value>) {
    if let Some(Value::Text(s)) = f.get("mobile") {
        let digits: String = s
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect();
        let spaced = digits
            .chars()
            .collect::<Vec<_>>()
            .chunks(3)
            .map(|c| c.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join(" ");
        f.insert("mobile".into(), Value::Text(spaced));
    }
}

/// Both apps' records by e-mail (fields only) and the list's size.
type Snapshot = (
    BTreeMap<String, Vec<BTreeMap<String, Value>>>,
    BTreeMap<String, Vec<BTreeMap<String, Value>>>,
    usize,
);

struct World {
    fs: MemoryApp,
    fm: MemoryApp,
    list: String,
    store: SyncStore,
    policy: SyncPolicy,
}

fn t(s: &str) -> Value {
    Value::Text(s.into())
}

fn world(dir: Direction, batch: u32) -> World {
    let fs = MemoryApp::new("leads", "fs", fs_schema()).with_batch(batch);
    let fm = MemoryApp::new("contacts", "fm", fm_schema())
        .with_normaliser(fm_normalise)
        .with_batch(batch);
    let list = fm.add_container("Newsletter");
    let mut policy = SyncPolicy::new("fs-fm", vec![EntityPair::new("leads", "contacts")], dir);
    policy.scope.b = Scope::Container("Newsletter".into());
    let store = SyncStore::open(fresh()).unwrap();
    World {
        fs,
        fm,
        list,
        store,
        policy,
    }
}

impl World {
    fn fs_lead(&self, email: &str, name: &str) -> String {
        self.fs.insert(&[
            ("email", t(email)),
            ("first_name", t(name)),
            ("do_not_disturb", Value::Bool(false)),
        ])
    }

    fn fm_contact(&self, email: &str, name: &str) -> String {
        let id = self.fm.insert(&[
            ("emails", t(email)),
            ("first_name", t(name)),
            ("subscription_status", Value::Number(1.0)),
        ]);
        self.fm.add_member(&self.list, &id);
        id
    }

    async fn run_with(
        &self,
        opts: RunOptions,
        hooks: &dyn Hooks,
    ) -> Result<RunReport, EngineError> {
        Engine::new(
            &self.policy,
            &self.store,
            SidePair::new(&self.fs, &self.fm),
            &NoMappers,
        )
        .with_names("freshsales", "freshmarketer")
        .with_hooks(hooks)
        .run(opts)
        .await
    }

    async fn run(&self, now: i64) -> RunReport {
        self.run_with(
            RunOptions {
                now,
                ..RunOptions::default()
            },
            &NoHooks,
        )
        .await
        .expect("run")
    }

    fn by_email(app: &MemoryApp, key: &str) -> BTreeMap<String, Vec<Record>> {
        let mut m: BTreeMap<String, Vec<Record>> = BTreeMap::new();
        for r in app.records().into_values() {
            let e = r
                .fields
                .get(key)
                .and_then(Value::as_text)
                .unwrap_or_default()
                .to_lowercase();
            m.entry(e).or_default().push(r);
        }
        m
    }

    /// What both apps hold, by e-mail, ids left out (for comparing runs).
    fn snapshot(&self) -> Snapshot {
        let strip = |m: BTreeMap<String, Vec<Record>>| {
            m.into_iter()
                .map(|(k, v)| (k, v.into_iter().map(|r| r.fields).collect()))
                .collect()
        };
        (
            strip(Self::by_email(&self.fs, "email")),
            strip(Self::by_email(&self.fm, "emails")),
            self.fm.members(&self.list).len(),
        )
    }

    fn assert_no_duplicates(&self) {
        for (app, key) in [(&self.fs, "email"), (&self.fm, "emails")] {
            for (email, rs) in Self::by_email(app, key) {
                assert_eq!(rs.len(), 1, "{email} duplicated: {rs:#?}");
            }
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

on_both_backends! {
fn initial_two_way_sync_links_creates_and_the_second_run_writes_nothing() {
    rt().block_on(async {
        let w = world(Direction::TwoWay, 50);
        w.fs_lead("jane@x.io", "Jane");
        w.fs_lead("bob@x.io", "Bob");
        w.fm_contact("JANE@x.io", "");
        w.fm_contact("carol@x.io", "Carol");
        let r = w.run(1000).await;
        assert_eq!(r.outcome, RunOutcome::Completed);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        w.assert_no_duplicates();
        assert_eq!(w.fs.records().len(), 3);
        assert_eq!(w.fm.records().len(), 3);
        assert_eq!(
            w.fm.members(&w.list).len(),
            3,
            "created contacts join the list"
        );
        let fm = World::by_email(&w.fm, "emails");
        assert_eq!(
            fm["jane@x.io"][0].fields["first_name"],
            t("Jane"),
            "empty filled, never erased"
        );
        assert_eq!(
            fm["bob@x.io"][0].fields["subscription_status"],
            Value::Number(1.0),
            "consent sent explicitly"
        );
        let c = &r.counters;
        assert_eq!(c[&Flow::AToB].created, 1);
        assert_eq!(c[&Flow::BToA].created, 1);
        assert_eq!(c[&Flow::AToB].updated, 1);
        assert_eq!(c[&Flow::Both].linked, 1);

        let pushes = (w.fs.calls("push"), w.fm.calls("push"));
        let r2 = w.run(2000).await;
        assert!(r2.plan.ops.is_empty(), "{:#?}", r2.plan.ops);
        assert_eq!(
            (w.fs.calls("push"), w.fm.calls("push")),
            pushes,
            "idle run pushed"
        );
        assert_eq!(w.store.links("fs-fm").unwrap().len(), 3);
    });
}
}

/// A run's record counts the requests that run made on each side, not those of earlier
/// runs through the same sources.
#[tokio::test]
async fn a_run_records_the_requests_it_made_on_each_side() {
    let w = world(Direction::TwoWay, 50);
    w.fs_lead("jane@x.io", "Jane");
    w.fm_contact("bob@x.io", "Bob");
    let calls = |app: &MemoryApp| -> u64 {
        ["pull", "find", "push"]
            .iter()
            .map(|k| app.calls(k) as u64)
            .sum()
    };
    let mut seen = (0, 0);
    for now in [1000, 2000] {
        let r = w.run(now).await;
        let made = (calls(&w.fs) - seen.0, calls(&w.fm) - seen.1);
        seen = (calls(&w.fs), calls(&w.fm));
        let req = r.requests.expect("counted");
        assert_eq!((req.a.sent, req.b.sent), made, "run at {now}");
        let stored = w.store.runs("fs-fm").unwrap().pop().unwrap();
        assert_eq!(stored.requests.map(|q| (q.a.sent, q.b.sent)), Some(made));
    }
    assert!(w.fm.calls("push") > 0, "the first run wrote");
}

/// The fleet's cost goal (docs/fleet.md §5): a run that finds nothing to do reads the
/// sync's state once and commits once, fence check included, and writes only its run
/// record and run counter.
#[test]
fn an_idle_run_on_postgres_costs_one_read_and_one_commit() {
    use crate::db::pg::params;
    use std::sync::atomic::Ordering::Relaxed;
    rt().block_on(async {
        let pg = crate::db::testing::postgres();
        let c = pg.client_blocking().unwrap();
        pg.execute(
            &c,
            "INSERT INTO tandem_leases (sync, owner, epoch) VALUES ('fs-fm', 'd1', 7)",
            params![],
        )
        .unwrap();
        drop(c);
        let mut w = world(Direction::TwoWay, 50);
        w.store = SyncStore::open(crate::db::Db::Postgres(pg.clone()))
            .unwrap()
            .fenced(crate::sync::state::Fence {
                sync: "fs-fm".into(),
                owner: "d1".into(),
                epoch: 7,
            });
        w.fs_lead("jane@x.io", "Jane");
        w.fm_contact("bob@x.io", "Bob");
        w.run(1000).await;
        // The second run reads back what the first one wrote (the apps' echo).
        w.run(2000).await;
        let stats = pg.stats();
        let before = (
            stats.round_trips.load(Relaxed),
            stats.rows_written.load(Relaxed),
        );
        let r = w.run(3000).await;
        assert!(r.plan.ops.is_empty(), "{:#?}", r.plan.ops);
        let after = (
            stats.round_trips.load(Relaxed),
            stats.rows_written.load(Relaxed),
        );
        assert_eq!(after.0 - before.0, 2, "round trips of an idle run");
        assert_eq!(
            after.1 - before.1,
            2,
            "rows written: the run and the run counter"
        );
        let runs = w.store.runs("fs-fm").unwrap();
        assert_eq!(
            runs.iter()
                .map(|r| (r.id, r.outcome.as_str()))
                .collect::<Vec<_>>(),
            [(1, "ok"), (2, "ok"), (3, "ok")]
        );
        assert_eq!(runs[2].daemon.as_deref(), Some("d1"));
    });
}

on_both_backends! {
fn incremental_edits_flow_both_ways_and_reformatting_is_not_echoed() {
    rt().block_on(async {
        let w = world(Direction::TwoWay, 50);
        let jane = w.fs_lead("jane@x.io", "Jane");
        let bob = w.fm_contact("bob@x.io", "Bob");
        w.run(1000).await;
        w.fs.edit(&jane, &[("mobile_number", t("+15550100"))]);
        let fm_bob = bob.clone();
        w.fm.edit(&fm_bob, &[("first_name", t("Robert"))]);
        let pulls = w.fs.calls("pull");
        let r = w.run(2000).await;
        assert!(
            w.fs.calls("pull") - pulls <= 2,
            "incremental pulls are small"
        );
        assert_eq!(r.counters[&Flow::AToB].updated, 1);
        assert_eq!(r.counters[&Flow::BToA].updated, 1);
        let fm = World::by_email(&w.fm, "emails");
        assert_eq!(
            fm["jane@x.io"][0].fields["mobile"],
            t("+15 550 100"),
            "FM stored its own format"
        );
        let fs = World::by_email(&w.fs, "email");
        assert_eq!(fs["bob@x.io"][0].fields["first_name"], t("Robert"));
        // FM's reformatted phone is not taken for a user edit.
        let r3 = w.run(3000).await;
        assert!(r3.plan.ops.is_empty(), "{:#?}", r3.plan.ops);
    });
}
}

on_both_backends! {
fn expired_cursor_falls_back_to_a_full_listing_compared_with_the_baseline() {
    rt().block_on(async {
        let mut w = world(Direction::TwoWay, 50);
        w.policy.deletes.on_delete.b = RemoveAction::Delete;
        w.fs_lead("jane@x.io", "Jane");
        let bob = w.fm_contact("bob@x.io", "Bob");
        w.run(1000).await;
        w.fm.delete(&bob);
        w.fm.expire_cursors();
        w.fs.expire_cursors();
        let r = w.run(2000).await;
        assert_eq!(r.counters[&Flow::BToA].removed, 1, "{:#?}", r.plan);
        assert!(!World::by_email(&w.fs, "email").contains_key("bob@x.io"));
        assert_eq!(w.fs.records().len(), 1);
        assert!(w.run(3000).await.plan.ops.is_empty());
    });
}
}

on_both_backends! {
fn removed_from_the_list_detaches_instead_of_deleting() {
    rt().block_on(async {
        let mut w = world(Direction::TwoWay, 50);
        w.policy.deletes.on_delete.b = RemoveAction::Delete;
        let bob = w.fm_contact("bob@x.io", "Bob");
        w.fm_contact("stays@x.io", "Stays");
        w.run(1000).await;
        w.fm.remove_member(&w.list, &bob);
        let r = w
            .run_with(
                RunOptions {
                    now: 2000,
                    full: true,
                    ..RunOptions::default()
                },
                &NoHooks,
            )
            .await
            .unwrap();
        assert!(r.plan.ops.is_empty(), "{:#?}", r.plan.ops);
        assert_eq!(w.fs.records().len(), 2, "nothing deleted");
        let links = w.store.links("fs-fm").unwrap();
        let bob_link = links
            .iter()
            .find(|l| l.id(Side::B) == Some(bob.as_str()))
            .unwrap();
        assert_eq!(bob_link.state, LinkState::Detached(Side::B));
    });
}
}

on_both_backends! {
fn failed_writes_are_retried_with_backoff_then_parked() {
    rt().block_on(async {
        let mut w = world(Direction::TwoWay, 50);
        w.policy.retry.max_attempts = 3;
        let jane = w.fs_lead("jane@x.io", "Jane");
        w.run(1000).await;
        let fm_jane = w.fm.records().into_keys().next().unwrap();
        w.fs.edit(&jane, &[("first_name", t("Janet"))]);
        for _ in 0..3 {
            w.fm.fail_write(&fm_jane, SourceError::Transient("503".into()));
        }
        let r = w.run(2000).await;
        assert_eq!(r.counters[&Flow::AToB].failed, 1);
        let retries = w.store.retries("fs-fm").unwrap();
        assert_eq!(
            retries.len(),
            2,
            "both records of the link are re-read later"
        );
        assert_eq!(retries[0].next_attempt_at, 2060);
        // Before the back-off ends: withheld, nothing sent.
        let writes = w.fm.calls("write");
        w.run(2030).await;
        assert_eq!(w.fm.calls("write"), writes);
        // After: retried (the cursor moved on; the retry index re-reads it).
        let r = w.run(2100).await;
        assert_eq!(r.counters[&Flow::AToB].failed, 1);
        let r = w.run(5000).await;
        assert_eq!(r.counters[&Flow::AToB].parked, 1);
        assert!(w.store.retries("fs-fm").unwrap().is_empty());
        let parked: Vec<_> = w
            .store
            .outbox("fs-fm")
            .unwrap()
            .into_iter()
            .filter(|e| e.status == OpStatus::Parked)
            .collect();
        assert_eq!(parked.len(), 1);
        assert!(parked[0].error.as_deref().unwrap().contains("503"));
        let events = w.store.events("fs-fm", r.run.unwrap()).unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.action == "parked" && e.reason.contains("503")),
            "{events:#?}"
        );
        // A later change of the record tries again and succeeds.
        w.fs.edit(&jane, &[("first_name", t("Janine"))]);
        let r = w.run(6000).await;
        assert_eq!(r.counters[&Flow::AToB].updated, 1);
        assert_eq!(
            w.fm.get(&fm_jane).unwrap().fields["first_name"],
            t("Janine")
        );
    });
}
}

on_both_backends! {
fn a_failing_pull_stops_the_run_without_state_changes() {
    rt().block_on(async {
        let w = world(Direction::TwoWay, 50);
        let jane = w.fs_lead("jane@x.io", "Jane");
        w.run(1000).await;
        let cursor = w.store.cursor("fs-fm", 0, Side::A).unwrap();
        w.fs.edit(&jane, &[("first_name", t("Janet"))]);
        w.fm.fail_next_pull(SourceError::Unauthorized("API key revoked".into()));
        let err = w
            .run_with(
                RunOptions {
                    now: 2000,
                    ..RunOptions::default()
                },
                &NoHooks,
            )
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("side B (freshmarketer) pull failed: unauthorized: API key revoked"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
        assert_eq!(w.store.cursor("fs-fm", 0, Side::A).unwrap(), cursor);
        let r = w.run(3000).await;
        assert_eq!(r.counters[&Flow::AToB].updated, 1);
    });
}
}

on_both_backends! {
fn invalid_writes_are_parked_at_once() {
    rt().block_on(async {
        let w = world(Direction::TwoWay, 50);
        w.fs_lead("jane@x.io", "Jane");
        w.fm.fail_write(
            "jane@x.io",
            SourceError::Invalid("first_name too long".into()),
        );
        let r = w.run(1000).await;
        assert_eq!(r.counters[&Flow::AToB].parked, 1);
        assert!(w.fm.records().is_empty());
    });
}
}

on_both_backends! {
fn lost_create_response_is_found_by_marker_not_duplicated() {
    rt().block_on(async {
        let w = world(Direction::TwoWay, 50);
        w.fs_lead("jane@x.io", "Jane");
        w.fm.lose_next_response(SourceError::Transient("connection reset".into()));
        let r = w.run(1000).await;
        assert_eq!(r.counters[&Flow::AToB].failed, 1);
        assert_eq!(w.fm.records().len(), 1, "the create reached the app");
        let r = w.run(5000).await;
        assert!(
            r.plan
                .ops
                .iter()
                .all(|o| !matches!(o.kind, OpKind::Create { .. })),
            "{:#?}",
            r.plan.ops
        );
        w.assert_no_duplicates();
        let links = w.store.links("fs-fm").unwrap();
        assert!(links[0].ids.b.is_some());
        assert!(w.run(6000).await.plan.ops.is_empty());
    });
}
}

on_both_backends! {
fn pause_stops_reads_and_writes_until_resume() {
    rt().block_on(async {
        let w = world(Direction::TwoWay, 50);
        w.fs_lead("jane@x.io", "Jane");
        w.store.set_status("fs-fm", &SyncStatus::Paused).unwrap();
        let r = w.run(1000).await;
        assert_eq!(r.outcome, RunOutcome::Paused);
        assert_eq!(w.fs.calls("pull") + w.fm.calls("pull"), 0);
        assert!(w.fm.records().is_empty());
        w.store.set_status("fs-fm", &SyncStatus::Active).unwrap();
        w.run(2000).await;
        assert_eq!(w.fm.records().len(), 1);
    });
}
}

on_both_backends! {
/// The operator pauses while a run is in progress (between its writes and its
/// cursors): the sync stays paused after the run ends, it is not set active again.
fn a_pause_during_a_run_outlives_the_run() {
    struct PauseAt<'a>(&'a SyncStore);
    impl Hooks for PauseAt<'_> {
        fn at(&self, point: Point) -> Result<(), Aborted> {
            if point == Point::BeforeCursors {
                self.0.set_status("fs-fm", &SyncStatus::Paused).unwrap();
            }
            Ok(())
        }
    }
    rt().block_on(async {
        let w = world(Direction::TwoWay, 50);
        w.fs_lead("jane@x.io", "Jane");
        let r = w
            .run_with(
                RunOptions {
                    now: 1000,
                    ..RunOptions::default()
                },
                &PauseAt(&w.store),
            )
            .await
            .unwrap();
        assert_eq!(r.outcome, RunOutcome::Completed);
        assert_eq!(w.fm.records().len(), 1);
        assert_eq!(w.store.status("fs-fm").unwrap(), SyncStatus::Paused);
    });
}
}

on_both_backends! {
fn dry_run_reads_but_writes_nothing() {
    rt().block_on(async {
        let w = world(Direction::TwoWay, 50);
        w.fs_lead("jane@x.io", "Jane");
        w.fm_contact("bob@x.io", "Bob");
        let r = w
            .run_with(
                RunOptions {
                    dry_run: true,
                    now: 1,
                    ..RunOptions::default()
                },
                &NoHooks,
            )
            .await
            .unwrap();
        assert_eq!(r.outcome, RunOutcome::DryRun);
        let s = r.plan.summary();
        assert_eq!((s.a.create, s.b.create), (1, 1));
        assert_eq!(w.fs.calls("push") + w.fm.calls("push"), 0);
        assert!(w.store.runs("fs-fm").unwrap().is_empty());
        assert!(w.store.links("fs-fm").unwrap().is_empty());
    });
}
}

on_both_backends! {
fn disconnect_wipes_state_and_a_new_sync_relinks_without_duplicates() {
    rt().block_on(async {
        let w = world(Direction::TwoWay, 50);
        w.fs_lead("jane@x.io", "Jane");
        w.fm_contact("bob@x.io", "Bob");
        w.run(1000).await;
        assert!(w.store.disconnect("fs-fm").unwrap() > 0);
        assert!(w.store.links("fs-fm").unwrap().is_empty());
        assert!(w.store.runs("fs-fm").unwrap().is_empty());
        let r = w.run(2000).await;
        assert_eq!(r.counters[&Flow::Both].linked, 2);
        assert!(
            r.plan
                .ops
                .iter()
                .all(|o| !matches!(o.kind, OpKind::Create { .. }))
        );
        w.assert_no_duplicates();
    });
}
}

on_both_backends! {
fn breaker_halts_when_the_list_is_emptied_and_force_resumes() {
    rt().block_on(async {
        let mut w = world(Direction::TwoWay, 50);
        w.policy.deletes.on_delete.b = RemoveAction::Delete;
        for i in 0..3 {
            w.fm_contact(&format!("p{i}@x.io"), "P");
        }
        w.run(1000).await;
        for id in w.fm.members(&w.list) {
            w.fm.delete(&id);
        }
        w.fm.expire_cursors();
        let r = w.run(2000).await;
        assert!(
            matches!(r.outcome, RunOutcome::Halted(ref m) if m.contains("lists no")),
            "{:?}",
            r.outcome
        );
        assert_eq!(w.fs.records().len(), 3, "nothing deleted");
        assert!(matches!(
            w.store.status("fs-fm").unwrap(),
            SyncStatus::Halted { .. }
        ));
        let r = w.run(3000).await;
        assert!(matches!(r.outcome, RunOutcome::Halted(_)));
        assert!(r.run.is_none(), "a halted sync does not run without force");
        let r = w
            .run_with(
                RunOptions {
                    force: true,
                    now: 4000,
                    ..RunOptions::default()
                },
                &NoHooks,
            )
            .await
            .unwrap();
        assert_eq!(r.outcome, RunOutcome::Completed);
        assert!(w.fs.records().is_empty());
        assert_eq!(w.store.status("fs-fm").unwrap(), SyncStatus::Active);
    });
}
}

on_both_backends! {
fn halted_run_keeps_its_cursors_so_a_forced_run_applies_the_withheld_changes() {
    rt().block_on(async {
        let w = world(Direction::TwoWay, 50);
        let ids: Vec<String> = (0..25)
            .map(|i| w.fs_lead(&format!("p{i}@x.io"), "Old"))
            .collect();
        w.run(1000).await;
        for id in &ids[..20] {
            w.fs.edit(id, &[("first_name", t("New"))]);
        }
        let r = w.run(2000).await;
        assert!(
            matches!(r.outcome, RunOutcome::Halted(ref m) if m.contains("20 updates")),
            "{:?}",
            r.outcome
        );
        let fm = World::by_email(&w.fm, "emails");
        assert!(
            fm.values().all(|v| v[0].fields["first_name"] == t("Old")),
            "nothing written while halted"
        );
        let r = w
            .run_with(
                RunOptions {
                    force: true,
                    now: 3000,
                    ..RunOptions::default()
                },
                &NoHooks,
            )
            .await
            .unwrap();
        assert_eq!(r.counters[&Flow::AToB].updated, 20);
        let fm = World::by_email(&w.fm, "emails");
        assert_eq!(
            fm.values()
                .filter(|v| v[0].fields["first_name"] == t("New"))
                .count(),
            20
        );
    });
}
}

on_both_backends! {
fn seed_dnd_in_freshsales_unsubscribes_and_removes_from_the_list() {
    rt().block_on(async {
        let mut w = world(Direction::TwoWay, 50);
        w.policy.opt_out.on_opt_out.a = RemoveAction::RemoveFromContainer;
        let jane = w.fs_lead("jane@x.io", "Jane");
        w.run(1000).await;
        let fm_jane = w.fm.records().into_keys().next().unwrap();
        w.fs.edit(&jane, &[("do_not_disturb", Value::Bool(true))]);
        w.run(2000).await;
        let r = w.fm.get(&fm_jane).unwrap();
        assert_eq!(r.fields["subscription_status"], Value::Number(0.0));
        assert!(w.fm.members(&w.list).is_empty());
        // Re-subscribing in Freshsales does not re-subscribe in Freshmarketer.
        w.fs.edit(&jane, &[("do_not_disturb", Value::Bool(false))]);
        let r = w.run(3000).await;
        assert!(r.plan.ops.is_empty(), "{:#?}", r.plan.ops);
        assert_eq!(
            w.fm.get(&fm_jane).unwrap().fields["subscription_status"],
            Value::Number(0.0)
        );
    });
}
}

on_both_backends! {
fn seed_unsubscribe_in_freshmarketer_becomes_dnd_in_one_way_fm_to_fs() {
    rt().block_on(async {
        let w = world(Direction::BToA, 50);
        let bob = w.fm_contact("bob@x.io", "Bob");
        w.run(1000).await;
        let fs_bob = w.fs.records().into_keys().next().unwrap();
        w.fm.edit(&bob, &[("subscription_status", Value::Number(4.0))]);
        w.run(2000).await;
        assert_eq!(
            w.fs.get(&fs_bob).unwrap().fields["do_not_disturb"],
            Value::Bool(true)
        );
        // DND changes in Freshsales do not flow back in this direction.
        let w2 = world(Direction::BToA, 50);
        let carol = w2.fm_contact("carol@x.io", "Carol");
        w2.run(1000).await;
        let fs_carol = w2.fs.records().into_keys().next().unwrap();
        w2.fs
            .edit(&fs_carol, &[("do_not_disturb", Value::Bool(true))]);
        w2.run(2000).await;
        assert_eq!(
            w2.fm.get(&carol).unwrap().fields["subscription_status"],
            Value::Number(1.0)
        );
    });
}
}

on_both_backends! {
fn run_log_has_per_direction_events_with_reasons() {
    rt().block_on(async {
        let w = world(Direction::TwoWay, 50);
        w.fs_lead("jane@x.io", "Jane");
        w.fs.insert(&[("first_name", t("No Mail"))]);
        let r = w.run(1000).await;
        let events = w.store.events("fs-fm", r.run.unwrap()).unwrap();
        let created = events.iter().find(|e| e.action == "created").unwrap();
        assert_eq!(created.direction, Flow::AToB);
        assert!(created.reason.contains("create from side A"));
        let skipped = events.iter().find(|e| e.action == "skipped").unwrap();
        assert!(skipped.reason.contains("no e-mail"));
        let runs = w.store.runs("fs-fm").unwrap();
        assert_eq!(runs[0].outcome, "ok");
        assert_eq!(runs[0].counters[&Flow::AToB].created, 1);
    });
}
}

struct Upper;

impl Mappers for Upper {
    async fn map(
        &self,
        mapper: &str,
        ctx: &MapContext,
        records: Vec<Record>,
    ) -> Vec<Result<Option<Record>, SourceError>> {
        assert_eq!(mapper, "upper");
        records
            .into_iter()
            .map(|mut r| {
                if ctx.source != "freshsales" {
                    return Ok(Some(r));
                }
                match r.fields.get("first_name").and_then(Value::as_text) {
                    Some(n) if n == "Drop" => Ok(None),
                    Some(n) if n == "Bad" => Err(SourceError::Invalid("cannot map".into())),
                    Some(n) => {
                        r.fields
                            .insert("first_name".into(), Value::Text(n.to_uppercase()));
                        Ok(Some(r))
                    }
                    None => Ok(Some(r)),
                }
            })
            .collect()
    }
}

on_both_backends! {
fn mappers_transform_drop_and_fail_records() {
    rt().block_on(async {
        let mut w = world(Direction::TwoWay, 50);
        w.policy.mappers = vec!["upper".into()];
        w.fs_lead("jane@x.io", "Jane");
        w.fs_lead("drop@x.io", "Drop");
        w.fs_lead("bad@x.io", "Bad");
        let engine = Engine::new(&w.policy, &w.store, SidePair::new(&w.fs, &w.fm), &Upper)
            .with_names("freshsales", "freshmarketer");
        engine
            .run(RunOptions {
                now: 1000,
                ..RunOptions::default()
            })
            .await
            .unwrap();
        let fm = World::by_email(&w.fm, "emails");
        assert_eq!(fm.len(), 1);
        assert_eq!(fm["jane@x.io"][0].fields["first_name"], t("JANE"));
        let again = engine
            .run(RunOptions {
                now: 2000,
                full: true,
                ..RunOptions::default()
            })
            .await
            .unwrap();
        assert!(
            again.plan.ops.is_empty(),
            "mapped values are stable: {:#?}",
            again.plan.ops
        );
    });
}
}

// ---------- crash tests ----------

/// Aborts the run the `nth` time (1-based) it reaches `point`.
struct AbortAt {
    point: Point,
    nth: usize,
    seen: Mutex<usize>,
    fired: Mutex<bool>,
}

impl AbortAt {
    fn new(point: Point, nth: usize) -> Self {
        AbortAt {
            point,
            nth,
            seen: Mutex::new(0),
            fired: Mutex::new(false),
        }
    }
}

impl Hooks for AbortAt {
    fn at(&self, point: Point) -> Result<(), Aborted> {
        if point != self.point {
            return Ok(());
        }
        let mut seen = self.seen.lock().unwrap();
        *seen += 1;
        if *seen == self.nth {
            *self.fired.lock().unwrap() = true;
            return Err(Aborted);
        }
        Ok(())
    }
}

/// Two phases: an initial sync with links and creates both ways, then edits on
/// both sides (names, phones, an opt-out, a deletion, a new record). A crash
/// may hit either phase's first run; the run is restarted until it completes.
async fn scenario(crash: Option<(usize, &AbortAt)>) -> (World, bool) {
    let mut w = world(Direction::TwoWay, 2);
    w.policy.deletes.on_delete.a = RemoveAction::Delete;
    let a1 = w.fs_lead("ann@x.io", "Ann");
    w.fs_lead("ben@x.io", "Ben");
    w.fs_lead("cy@x.io", "Cy");
    w.fs_lead("dee@x.io", "Dee");
    let b1 = w.fm_contact("ANN@x.io", "");
    w.fm_contact("eve@x.io", "Eve");
    w.fm_contact("fay@x.io", "Fay");
    let mut fired = false;
    let mut now = 1000;
    for phase in 0..2 {
        if phase == 1 {
            w.fs.edit(
                &a1,
                &[("first_name", t("Anne")), ("mobile_number", t("+4930123"))],
            );
            w.fm.edit(&b1, &[("subscription_status", Value::Number(0.0))]);
            let fm = World::by_email(&w.fm, "emails");
            w.fm.edit(&fm["eve@x.io"][0].id, &[("first_name", t("Evelyn"))]);
            let fs = World::by_email(&w.fs, "email");
            w.fs.delete(&fs["dee@x.io"][0].id);
            w.fs_lead("gus@x.io", "Gus");
        }
        if let Some((p, hooks)) = crash
            && p == phase
        {
            now += 10;
            let res = w
                .run_with(
                    RunOptions {
                        now,
                        ..RunOptions::default()
                    },
                    hooks,
                )
                .await;
            fired |= *hooks.fired.lock().unwrap();
            if res.is_ok() {
                assert!(!*hooks.fired.lock().unwrap());
            }
        }
        // Restart until a run completes with nothing left to do. Back-off
        // does not hold a crash recovery back (time moves past it).
        for _ in 0..4 {
            now += 10_000;
            w.run(now).await;
        }
    }
    (w, fired)
}

on_both_backends! {
fn crash_at_any_point_converges_without_loss_or_duplicates() {
    rt().block_on(async {
        let (reference, _) = scenario(None).await;
        reference.assert_no_duplicates();
        let expected = reference.snapshot();
        assert_eq!(expected.0.len(), 6, "{:#?}", expected.0.keys());
        let mut fired_count = 0;
        let points = [
            Point::Observed,
            Point::Recorded,
            Point::BeforeSend,
            Point::AfterSend,
            Point::Committed,
            Point::BeforeCursors,
        ];
        for phase in 0..2 {
            for point in points {
                for nth in 1..=6 {
                    let hooks = AbortAt::new(point, nth);
                    let (w, fired) = scenario(Some((phase, &hooks))).await;
                    fired_count += usize::from(fired);
                    w.assert_no_duplicates();
                    assert_eq!(
                        w.snapshot(),
                        expected,
                        "crash at {point:?} #{nth} in phase {phase}"
                    );
                    let last = w.run(1_000_000).await;
                    assert!(
                        last.plan.ops.is_empty(),
                        "crash at {point:?} #{nth} phase {phase}: still planning {:#?}",
                        last.plan.ops
                    );
                    let open: Vec<_> = w
                        .store
                        .outbox("fs-fm")
                        .unwrap()
                        .into_iter()
                        .filter(|e| e.status != OpStatus::Parked)
                        .collect();
                    assert!(
                        open.is_empty(),
                        "crash at {point:?} #{nth}: outbox {open:#?}"
                    );
                }
            }
        }
        assert!(
            fired_count >= 25,
            "only {fired_count} crashes were injected"
        );
    });
}
}

on_both_backends! {
fn tombstones_expire_after_the_retention_and_drop_a_link_deleted_on_both_sides() {
    rt().block_on(async {
        const DAY: i64 = 86_400;
        let mut w = world(Direction::TwoWay, 50);
        w.policy.deletes.tombstone_retention_days = 7;
        let jane_fs = w.fs_lead("jane@x.io", "Jane");
        let jane_fm = w.fm_contact("jane@x.io", "Jane");
        w.fs_lead("bob@x.io", "Bob");
        w.fm_contact("carol@x.io", "Carol");
        let t0 = 100 * DAY;
        w.run(t0).await;
        assert_eq!(w.store.links("fs-fm").unwrap().len(), 3);
        let bob_fm = World::by_email(&w.fm, "emails")["bob@x.io"][0].id.clone();
        // Jane is deleted in both apps; Bob only in Freshmarketer (kept in Freshsales).
        w.fs.delete(&jane_fs);
        w.fm.delete(&jane_fm);
        w.fm.delete(&bob_fm);
        w.run(t0 + DAY).await;
        let expiry = t0 + 8 * DAY;
        let rows = w.store.tombstone_rows("fs-fm").unwrap();
        assert_eq!(rows.len(), 3, "{rows:#?}");
        assert!(
            rows.iter().all(|(_, t)| t.expires_at == Some(expiry)),
            "{rows:#?}"
        );
        assert_eq!(
            w.store.links("fs-fm").unwrap().len(),
            3,
            "a link deleted on both sides is kept until its tombstones expire"
        );
        // Before the expiry, a full run leaves the dead link alone and keeps the expiry.
        let full = |now| RunOptions {
            now,
            full: true,
            ..RunOptions::default()
        };
        let r = w.run_with(full(expiry - 1), &NoHooks).await.unwrap();
        assert!(r.plan.ops.is_empty() && r.plan.unlink.is_empty(), "{r:#?}");
        let rows = w.store.tombstone_rows("fs-fm").unwrap();
        assert!(rows.iter().all(|(_, t)| t.expires_at == Some(expiry)));
        // At the expiry: purged at the start of the run; Jane's link goes, Bob's stays
        // (deleted on one side only), and nothing is re-created.
        let r = w.run_with(full(expiry), &NoHooks).await.unwrap();
        assert!(r.plan.ops.is_empty(), "{:#?}", r.plan.ops);
        assert!(w.store.tombstone_rows("fs-fm").unwrap().is_empty());
        let links = w.store.links("fs-fm").unwrap();
        assert_eq!(links.len(), 2, "{links:#?}");
        assert!(
            links
                .iter()
                .all(|l| l.id(Side::A) != Some(jane_fs.as_str()))
        );
        assert_eq!(w.fs.records().len(), 2, "Bob and Carol");
        assert_eq!(w.fm.records().len(), 1, "Carol");
    });
}
}

on_both_backends! {
/// An ambiguous match stays ambiguous when a later incremental run reads only one of
/// its candidates (the one that changed): the others are read again, so the match is
/// never guessed from part of them.
fn an_ambiguity_is_judged_on_all_its_candidates_in_an_incremental_run() {
    rt().block_on(async {
        let w = world(Direction::TwoWay, 50);
        w.fs_lead("kim@x.io", "Kim");
        let first = w.fm_contact("kim@x.io", "Kim");
        w.fm_contact("kim@x.io", "Kim B");
        let r = w.run(1000).await;
        assert_eq!(r.plan.ambiguous.len(), 1, "{:#?}", r.plan.ambiguous);
        w.fm.edit(&first, &[("first_name", t("Kimberly"))]);
        let r2 = w.run(2000).await;
        assert!(r2.plan.ops.is_empty(), "{:#?}", r2.plan.ops);
        assert_eq!(r2.plan.ambiguous.len(), 1, "{:#?}", r2.plan.ambiguous);
        assert!(w.store.links("fs-fm").unwrap().is_empty());
    });
}
}
