//! Rate-limit headers against the simulated Freshworks accounts: the budget reads
//! `X-RateLimit-Remaining` / `X-RateLimit-Reset` from every answer and pauses the account
//! when the count runs out, until the app's window resets, instead of sending requests
//! the app would refuse with 429.

use std::time::Duration;

use tandem::sync::{RunOptions, RunOutcome};
use tandem_sandbox::AccountKind::{Freshmarketer, FreshsalesSuite};
use tandem_tests::e2e::{self, App, World};

/// Freshmarketer's contacts copied into Freshsales: far more requests than the tiny
/// hourly quota below allows.
const SYNCS: &str = r#"
[syncs.s]
a = "freshsales"
b = "freshmarketer"
entities = "contacts"
direction = "b-to-a"
interval = "1h"

[connections.freshsales.rate-limit]
slow-below = 0

[connections.freshmarketer.rate-limit]
slow-below = 0
"#;

/// Hourly quota of each simulated account in this test.
const HOURLY: u32 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_quota_pauses_the_account_until_the_reset_instead_of_hitting_429() {
    let mut opts = e2e::options(e2e::small());
    opts.kinds = vec![FreshsalesSuite, Freshmarketer];
    opts.rate_limits_enabled = true;
    opts.freshworks.hourly_limit = HOURLY;
    // Five seconds before the hour: `X-RateLimit-Reset` says 5 (seconds, the default).
    opts.start_time = Some(time::macros::datetime!(2024-05-01 12:59:55 UTC));
    let w = World::start_with(opts, SYNCS).await;
    let run = w.try_run("s", RunOptions::default());
    tokio::pin!(run);
    let mut paused_seen = false;
    let report = tokio::time::timeout(Duration::from_secs(180), async {
        loop {
            tokio::select! {
                r = &mut run => break r,
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            if paused_seen {
                continue;
            }
            let snaps = w.host().budgets().snapshots();
            if snaps
                .iter()
                .any(|b| b.app.as_ref().is_some_and(|a| a.paused))
            {
                paused_seen = true;
                // The account stopped at its last request: the app refused none.
                for app in [App::Fs, App::Fm] {
                    let statuses = w.statuses(app).await;
                    assert!(!statuses.contains_key("429"), "{app:?}: {statuses:?}");
                }
                // The app's hour turns; the budget goes on once its own reset passes.
                // The next hour's quota is the accounts' usual one: this test is about
                // the first pause (a second would wait a real hour for its reset).
                for app in [App::Fs, App::Fm] {
                    w.control(
                        app,
                        reqwest::Method::PUT,
                        "/switches",
                        Some(serde_json::json!({"hourly_limit": 1000})),
                    )
                    .await;
                }
                w.advance(30).await;
            }
        }
    })
    .await
    .expect("the run finishes");
    let report = report.unwrap_or_else(|e| panic!("the run failed: {e}"));
    assert!(
        paused_seen,
        "the quota of {HOURLY} was never reached: {:?} / {:?}",
        w.statuses(App::Fs).await,
        w.statuses(App::Fm).await
    );
    assert!(
        matches!(report.outcome, RunOutcome::Completed),
        "{:?}",
        report.outcome
    );
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    for app in [App::Fs, App::Fm] {
        let statuses = w.statuses(app).await;
        assert!(!statuses.contains_key("429"), "{app:?}: {statuses:?}");
    }
    let snaps = w.host().budgets().snapshots();
    assert!(snaps.iter().all(|b| b.rate_limited == 0), "{snaps:?}");
    assert!(snaps.iter().any(|b| b.held > 0), "{snaps:?}");
    // Everything reached Freshsales.
    let fm = w.by_email(App::Fm, "contacts").await;
    let fs = w.by_email(App::Fs, "contacts").await;
    let missing: Vec<&String> = fm.keys().filter(|e| !fs.contains_key(*e)).collect();
    assert!(missing.len() < fm.len(), "nothing was copied");
}
