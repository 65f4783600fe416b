//! Recovery finishes what an interrupted or unanswered run planned: a create found
//! by its marker joins the list its create named, records whose writes landed wait
//! for no retry, and the sync's own writes do not flip `most-recent` on a restart.

use super::*;

on_both_backends! {
/// A create reached the app, but its answer was lost and its list add never
/// happened (the connector adds a created record to its lists after creating it).
fn a_recovered_create_joins_its_list_and_waits_for_no_retry() {
    rt().block_on(async {
        let w = world(Direction::TwoWay, 50);
        w.fs_lead("jane@x.io", "Jane");
        w.fm.lose_next_response(SourceError::Transient("connection reset".into()));
        let r = w.run(1000).await;
        assert_eq!(r.counters[&Flow::AToB].failed, 1);
        let created =
            w.fm.records()
                .into_keys()
                .next()
                .expect("the create landed");
        w.fm.remove_member(&w.list, &created);
        assert_eq!(w.store.retries("fs-fm").unwrap().len(), 1);

        let r = w.run(5000).await;
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        w.assert_no_duplicates();
        assert!(
            w.fm.members(&w.list).contains(&created),
            "the recovered create is in the synced list"
        );
        assert_eq!(
            w.store.retries("fs-fm").unwrap(),
            Vec::new(),
            "nothing waits for a retry"
        );
        let r = w.run(6000).await;
        assert!(r.plan.ops.is_empty(), "{:#?}", r.plan.ops);
    });
}
}

on_both_backends! {
/// An update committed, its answer was lost: once the next run finds both apps
/// agreeing, no record is left "retrying".
fn a_lost_answer_to_an_update_leaves_nothing_retrying_once_the_apps_agree() {
    rt().block_on(async {
        let w = world(Direction::TwoWay, 50);
        let a = w.fs_lead("jane@x.io", "Jane");
        w.fm_contact("jane@x.io", "Jane");
        w.run(1000).await;
        w.fs.edit(&a, &[("first_name", t("Janet"))]);
        w.fm.lose_next_response(SourceError::Transient("connection reset".into()));
        let r = w.run(2000).await;
        assert_eq!(r.counters[&Flow::AToB].failed, 1);
        assert_eq!(w.store.retries("fs-fm").unwrap().len(), 2);

        let r = w.run(100_000).await;
        assert!(r.plan.ops.is_empty(), "{:#?}", r.plan.ops);
        assert_eq!(w.store.retries("fs-fm").unwrap(), Vec::new());
        let fm = World::by_email(&w.fm, "emails");
        assert_eq!(fm["jane@x.io"][0].fields["first_name"], t("Janet"));
    });
}
}

on_both_backends! {
/// Jane's Freshsales record changed after her Freshmarketer record, outside the
/// list: the first run plans to write her name to Freshmarketer and to add her to
/// the list. A crash before anything was sent makes recovery replay the list add,
/// which moves her Freshmarketer change time past Freshsales': the restart must
/// still let Freshsales win, as the first attempt decided.
fn a_crash_does_not_flip_most_recent() {
    rt().block_on(async {
        for crash in [None, Some(Point::Recorded), Some(Point::BeforeSend)] {
            let mut w = world(Direction::TwoWay, 50);
            w.fm = MemoryApp::new("contacts", "fm", fm_schema())
                .with_normaliser(fm_normalise)
                .with_membership_stamps();
            w.list = w.fm.add_container("Newsletter");
            let b = w.fm.insert(&[
                ("emails", t("jane@x.io")),
                ("first_name", t("Janie")),
                ("subscription_status", Value::Number(1.0)),
            ]);
            // Others' edits in Freshmarketer since (no e-mail: not synced).
            for _ in 0..3 {
                w.fm.insert(&[("first_name", t("nobody"))]);
            }
            let a = w.fs_lead("jane@x.io", "Jane");
            w.fs.edit(&a, &[("mobile_number", t("+4930"))]);
            assert!(w.fs.get(&a).unwrap().updated_at > w.fm.get(&b).unwrap().updated_at);

            if let Some(point) = crash {
                let hooks = AbortAt::new(point, 1);
                let res = w
                    .run_with(
                        RunOptions {
                            now: 1000,
                            ..RunOptions::default()
                        },
                        &hooks,
                    )
                    .await;
                assert!(matches!(res, Err(EngineError::Aborted(_))), "{crash:?}");
            }
            w.run(2000).await;
            w.run(3000).await;
            let fm = w.fm.get(&b).unwrap();
            let fs = w.fs.get(&a).unwrap();
            assert_eq!(fm.fields["first_name"], t("Jane"), "crash at {crash:?}");
            assert_eq!(fs.fields["first_name"], t("Jane"), "crash at {crash:?}");
            assert!(w.fm.members(&w.list).contains(&b), "crash at {crash:?}");
        }
    });
}
}
