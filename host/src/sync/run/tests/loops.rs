//! The loop detector end to end through the engine: a tenant mapper that
//! rewrites names one way for each app makes every write look like a new edit
//! on the other side, so values ping-pong run after run until the link is
//! quarantined; the operator's release re-reads the pair on the next run.

use super::*;
use crate::sync::baseline::LinkState;

/// Lower-cases names read from Freshsales and capitalises names read from
/// Freshmarketer: a value never reads back the way it was written.
struct Flip;

impl Mappers for Flip {
    async fn map(
        &self,
        _mapper: &str,
        ctx: &MapContext,
        records: Vec<Record>,
    ) -> Vec<Result<Option<Record>, SourceError>> {
        records
            .into_iter()
            .map(|mut r| {
                if let Some(n) = r.fields.get("first_name").and_then(Value::as_text) {
                    let v = if ctx.source == "freshsales" {
                        n.to_lowercase()
                    } else {
                        let mut c = n.chars();
                        c.next()
                            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                            .unwrap_or_default()
                    };
                    r.fields.insert("first_name".into(), Value::Text(v));
                }
                Ok(Some(r))
            })
            .collect()
    }
}

on_both_backends! {
fn a_mapper_ping_pong_is_quarantined_and_writes_stop() {
    rt().block_on(async {
        let mut w = world(Direction::TwoWay, 50);
        w.policy.mappers = vec!["flip".into()];
        w.policy.conflict.winner = crate::sync::policy::Winner::AWins;
        w.fs_lead("jane@x.io", "Jane");
        w.fm_contact("jane@x.io", "Jane");
        let engine = Engine::new(&w.policy, &w.store, SidePair::new(&w.fs, &w.fm), &Flip)
            .with_names("freshsales", "freshmarketer");
        let mut updates = Vec::new();
        for i in 0..8 {
            let r = engine
                .run(RunOptions {
                    now: 1000 + i * 100,
                    ..RunOptions::default()
                })
                .await
                .unwrap();
            updates.push(r.plan.summary().a.update + r.plan.summary().b.update);
        }
        let links = w.store.links("fs-fm").unwrap();
        assert_eq!(links.len(), 1);
        let l = &links[0];
        assert_eq!(l.state, LinkState::Quarantined, "{l:#?}");
        let why = l.review.quarantine.as_deref().unwrap();
        assert!(why.contains("first_name"), "{why}");
        // The flips: jane to B, Jane to A, jane to B; the fourth is withheld.
        assert_eq!(updates, vec![1, 1, 1, 0, 0, 0, 0, 0], "writes stop");
        let events: Vec<Event> = (1..=8)
            .flat_map(|run| w.store.events("fs-fm", run).unwrap())
            .collect();
        assert!(
            events
                .iter()
                .any(|e| e.action == "note" && e.reason.contains("--release")),
            "the log says how to release it"
        );

        // Released: the pair is read again at once and synced (and flips again).
        let mut l = l.clone();
        crate::sync::plan::release(&mut l).unwrap();
        w.store
            .write("fs-fm", |t| t.put_link(&l, ("leads", "contacts")))
            .unwrap();
        let r = engine
            .run(RunOptions {
                now: 5000,
                ..RunOptions::default()
            })
            .await
            .unwrap();
        assert_eq!(r.plan.ops.len(), 1, "{:#?}", r.plan);
        let l = &w.store.links("fs-fm").unwrap()[0];
        assert_eq!(l.state, LinkState::Linked);
        assert!(!l.review.recheck, "read and planned: no longer pending");
    });
}
}
