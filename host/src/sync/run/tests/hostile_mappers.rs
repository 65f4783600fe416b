//! A mapper answering out of line — forged ids, results for records it was not given,
//! too few results — cannot move data between records: the engine pairs results with
//! its inputs by position and keeps the inputs' ids.

use super::*;

/// Renames every record, adds two results nobody asked for.
struct Forger;

impl Mappers for Forger {
    async fn map(
        &self,
        _mapper: &str,
        _ctx: &MapContext,
        records: Vec<Record>,
    ) -> Vec<Result<Option<Record>, SourceError>> {
        let mut out: Vec<_> = records
            .into_iter()
            .map(|mut r| {
                r.id = "forged".into();
                Ok(Some(r))
            })
            .collect();
        let extra = Record {
            id: "extra".into(),
            version: None,
            updated_at: None,
            fields: [
                ("email".to_owned(), t("injected@x.io")),
                ("first_name".to_owned(), t("Injected")),
            ]
            .into(),
        };
        out.push(Ok(Some(extra)));
        out.push(Err(SourceError::Fatal("spare".into())));
        out
    }
}

/// Answers for every record but the last.
struct Short;

impl Mappers for Short {
    async fn map(
        &self,
        _mapper: &str,
        _ctx: &MapContext,
        records: Vec<Record>,
    ) -> Vec<Result<Option<Record>, SourceError>> {
        let mut out: Vec<_> = records.into_iter().map(|r| Ok(Some(r))).collect();
        out.pop();
        out
    }
}

async fn run_with<M: Mappers>(w: &World, mappers: &M, now: i64) -> RunReport {
    Engine::new(&w.policy, &w.store, SidePair::new(&w.fs, &w.fm), mappers)
        .with_names("freshsales", "freshmarketer")
        .run(RunOptions {
            now,
            full: true,
            ..RunOptions::default()
        })
        .await
        .unwrap()
}

on_both_backends! {
fn forged_ids_and_extra_results_change_nothing_but_the_records_given() {
    rt().block_on(async {
        let mut w = world(Direction::AToB, 50);
        w.policy.mappers = vec!["forger".into()];
        w.fs_lead("jane@x.io", "Jane");
        w.fs_lead("joe@x.io", "Joe");
        run_with(&w, &Forger, 1000).await;
        let fm = World::by_email(&w.fm, "emails");
        assert_eq!(
            fm.keys().cloned().collect::<Vec<_>>(),
            ["jane@x.io", "joe@x.io"],
            "no record for the mapper's extra result"
        );
        assert_eq!(fm["jane@x.io"][0].fields["first_name"], t("Jane"));
        assert_eq!(fm["joe@x.io"][0].fields["first_name"], t("Joe"));
        w.assert_no_duplicates();
        // The links hold the real ids: the next run has nothing to do.
        let again = run_with(&w, &Forger, 2000).await;
        assert!(again.plan.ops.is_empty(), "{:#?}", again.plan.ops);
    });
}
}

on_both_backends! {
fn a_missing_mapper_result_fails_that_record_only() {
    rt().block_on(async {
        let mut w = world(Direction::AToB, 50);
        w.policy.mappers = vec!["short".into()];
        w.fs_lead("a@x.io", "A");
        w.fs_lead("b@x.io", "B");
        w.fs_lead("c@x.io", "C");
        run_with(&w, &Short, 1000).await;
        let fm = World::by_email(&w.fm, "emails");
        // One record (whichever the mapper saw last) had no result and was not written;
        // the others were written as themselves.
        assert_eq!(fm.len(), 2, "{fm:#?}");
        for (email, records) in &fm {
            let name = email[..1].to_uppercase();
            assert_eq!(records[0].fields["first_name"], t(&name), "{email}");
        }
    });
}
}

/// Moves Jane to another address; only upper-cases Joe's (the same match e-mail).
struct Readdress;

impl Mappers for Readdress {
    async fn map(
        &self,
        _mapper: &str,
        _ctx: &MapContext,
        records: Vec<Record>,
    ) -> Vec<Result<Option<Record>, SourceError>> {
        records
            .into_iter()
            .map(|mut r| {
                let email = match &r.fields["email"] {
                    Value::Text(e) if e.starts_with("jane") => "someone-else@x.io".to_owned(),
                    Value::Text(e) => e.to_uppercase(),
                    other => panic!("{other:?}"),
                };
                r.fields.insert("email".into(), t(&email));
                r.fields.insert("first_name".into(), t("Mapped"));
                Ok(Some(r))
            })
            .collect()
    }
}

on_both_backends! {
fn a_mapper_may_not_change_a_records_match_email() {
    rt().block_on(async {
        let mut w = world(Direction::AToB, 50);
        w.policy.mappers = vec!["readdress".into()];
        let jane = w.fs_lead("jane@x.io", "Jane");
        w.fs_lead("joe@x.io", "Joe");
        let report = run_with(&w, &Readdress, 1000).await;
        let fm = World::by_email(&w.fm, "emails");
        // Joe's address only changed case: the same match key, the mapper's output written.
        assert_eq!(fm.keys().cloned().collect::<Vec<_>>(), ["joe@x.io"], "{fm:#?}");
        assert_eq!(fm["joe@x.io"][0].fields["first_name"], t("Mapped"));
        // Jane's result was refused and counted as her record's failure, named.
        let failed: Vec<_> = report
            .failures
            .iter()
            .filter(|(_, e)| e.contains("changed the record's match e-mail"))
            .collect();
        assert_eq!(failed.len(), 1, "{:?}", report.failures);
        assert!(failed[0].0.contains(&jane), "{failed:?}");
        assert!(failed[0].1.contains("mapper `readdress`"), "{failed:?}");
    });
}
}
