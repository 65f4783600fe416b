//! `tandem demo` end to end: the story runs against the simulated apps, and the apps'
//! records afterwards show what the story claims — the conflicting edit resolved by the
//! sync's policy field by field, DND and unsubscribe carried across (consent only
//! tightens), the deletion handled as configured, the new person created in the other
//! apps.

use serde_json::Value;
use tandem::cli::demo::{
    self, Apps, CITY_IN_FRESHMARKETER, DemoOptions, MOBILE_IN_FRESHSALES, NEW_EMAIL,
    TITLE_IN_FRESHMARKETER,
};
use tandem::sync::state::Flow;
use tandem::sync::{RunOptions, RunOutcome};

fn in_list(c: &Value, list: u64) -> bool {
    c["list_ids"]
        .as_array()
        .is_some_and(|ls| ls.iter().any(|i| i.as_u64() == Some(list)))
}

fn has_email(c: &Value, email: &str) -> bool {
    c["emails"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["value"].as_str() == Some(email))
}

async fn freshworks_with(apps: &Apps, fm: bool, email: &str) -> Vec<Value> {
    let account = if fm {
        &apps.freshmarketer
    } else {
        &apps.freshsales
    };
    apps.contacts(account)
        .await
        .unwrap()
        .into_values()
        .filter(|c| has_email(c, email) && c["is_deleted"].as_bool() != Some(true))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_brings_the_apps_in_step_and_handles_every_edit_per_policy() {
    let dir = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    let run = demo::run_demo(
        DemoOptions {
            state_dir: Some(dir.path().to_path_buf()),
            progress: false,
            ..DemoOptions::default()
        },
        &mut out,
    )
    .await
    .unwrap_or_else(|e| panic!("the demo failed: {e:#}"));
    let text = String::from_utf8(out).unwrap();

    // Every run completed without a failed write or a record a mapper failed on (the
    // normalize mapper once ran out of fuel on the 800 Google contacts of the first run).
    for r in run.initial.iter().chain(&run.incremental) {
        assert_eq!(r.outcome, RunOutcome::Completed, "{}", r.sync);
        assert!(r.failures.is_empty(), "{}: {:?}", r.sync, r.failures);
        for (dir, c) in &r.counters {
            assert_eq!(c.failed, 0, "{} {dir}: {c:?}", r.sync);
        }
    }
    // The initial runs created records on both sides of sales-marketing.
    let first = &run.initial[0].counters;
    assert!(
        first[&Flow::AToB].created > 0 && first[&Flow::BToA].created > 0,
        "{first:?}"
    );

    let apps = &run.apps;
    let (fs, fm) = (&apps.freshsales, &apps.freshmarketer);
    let e = &run.edits;

    // Conflict, most recent wins per field: Freshmarketer's later job title on both
    // sides; each side's other edit survives and reached the other side.
    let c_fs = apps.contact(fs, e.conflict.freshsales).await.unwrap();
    let c_fm = apps.contact(fm, e.conflict.freshmarketer).await.unwrap();
    assert_eq!(c_fs["job_title"], TITLE_IN_FRESHMARKETER);
    assert_eq!(c_fm["job_title"], TITLE_IN_FRESHMARKETER);
    assert_eq!(c_fm["mobile_number"], MOBILE_IN_FRESHSALES);
    assert_eq!(c_fs["mobile_number"], MOBILE_IN_FRESHSALES);
    assert_eq!(c_fs["city"], CITY_IN_FRESHMARKETER);

    // DND in Freshsales: unsubscribed in Freshmarketer and out of the synced list
    // (on-opt-out = remove-from-list), still in Freshmarketer; still DND in Freshsales.
    let d_fm = apps.contact(fm, e.dnd.freshmarketer).await.unwrap();
    assert_eq!(d_fm["subscription_status"], 0, "{d_fm}");
    assert!(!in_list(&d_fm, e.newsletter), "{d_fm}");
    assert_ne!(d_fm["is_deleted"], true);
    let d_fs = apps.contact(fs, e.dnd.freshsales).await.unwrap();
    assert_eq!(d_fs["do_not_disturb"], true);

    // Unsubscribed in Freshmarketer: DND in Freshsales; nobody re-subscribed.
    let u_fs = apps.contact(fs, e.unsubscribe.freshsales).await.unwrap();
    assert_eq!(u_fs["do_not_disturb"], true, "{u_fs}");
    let u_fm = apps.contact(fm, e.unsubscribe.freshmarketer).await.unwrap();
    assert_eq!(u_fm["subscription_status"], 0);

    // Deleted in Freshsales: removed from the list (on-delete = remove-from-list), not
    // deleted from Freshmarketer.
    let g_fs = apps.contact(fs, e.deletion.freshsales).await.unwrap();
    assert_eq!(g_fs["is_deleted"], true);
    let g_fm = apps.contact(fm, e.deletion.freshmarketer).await.unwrap();
    assert_ne!(g_fm["is_deleted"], true, "{g_fm}");
    assert!(!in_list(&g_fm, e.newsletter), "{g_fm}");

    // The person added in Freshmarketer: created once in Freshsales (Enterprise plan
    // carried over), then in Google Contacts by the other sync.
    let maya = freshworks_with(apps, false, NEW_EMAIL).await;
    assert_eq!(maya.len(), 1, "{maya:?}");
    assert_eq!(maya[0]["custom_field"]["cf_plan"], "Enterprise");
    assert_eq!(freshworks_with(apps, true, NEW_EMAIL).await.len(), 1);
    let google = apps.google_state().await.unwrap();
    let in_google = google["people"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["deleted"].as_bool() != Some(true)
                && p["person"]["emailAddresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|m| m["value"].as_str() == Some(NEW_EMAIL))
        })
        .count();
    assert_eq!(in_google, 1);

    // The story says what it did and where to go next.
    for needle in [
        "sales-marketing",
        "sales-google",
        "Freshmarketer wins: Freshmarketer changed most recently",
        "remove-from-list",
        "demo.toml",
        "tandem sync status",
        "tandem sync logs sales-marketing",
        "tandem sync plan",
        "tandem config validate",
        "tandem sandbox",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
    assert!(run.state.starts_with(dir.path()));

    // In step: one more run of each sync, without edits, writes nothing.
    let host = run.host().unwrap();
    for name in [demo::SALES_MARKETING, demo::SALES_GOOGLE] {
        let r = host
            .run_sync(name, RunOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.outcome, RunOutcome::Completed);
        for (dir, c) in &r.counters {
            assert_eq!(
                (c.created, c.updated, c.removed, c.failed + c.parked),
                (0, 0, 0, 0),
                "{name} {dir} wrote again: {c:?}"
            );
        }
    }
    drop(host);

    // `--serve`: a daemon over the demo's state serves the operator console, and says
    // where and with which token; it holds the state file as the daemon does, so the CLI
    // goes through it.
    let mut out = Vec::new();
    let daemon = demo::serve(&run, Some("127.0.0.1:0".parse().unwrap()), &mut out)
        .await
        .unwrap_or_else(|e| panic!("the console is not served: {e:#}"));
    let text = String::from_utf8(out).unwrap();
    let url = text
        .split_whitespace()
        .find(|w| w.starts_with("http://") && w.ends_with("/console/"))
        .unwrap_or_else(|| panic!("no console address in:\n{text}"));
    let token_file = dir.path().join("control-token");
    for needle in [
        token_file.display().to_string(),
        "tandem sync status".into(),
        "Preview next run".into(),
    ] {
        assert!(text.contains(&needle), "`{needle}` missing from:\n{text}");
    }
    let http = reqwest::Client::new();
    let page = http.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("console.js"));
    let base = url.trim_end_matches("/console/");
    let token = std::fs::read_to_string(&token_file).unwrap();
    let signed_in = http
        .post(format!("{base}/console/session"))
        .header("origin", base)
        .json(&serde_json::json!({ "token": token.trim() }))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200, "the token the demo names signs in");
    let syncs: Value = http
        .get(format!("{base}/v1/syncs"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = syncs["syncs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["last_run"]["outcome"] == "ok")
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [demo::SALES_GOOGLE, demo::SALES_MARKETING],
        "{syncs}"
    );
    let held = run.host().expect_err("the daemon holds the state file");
    assert!(held.to_string().contains("tandem run"), "{held}");
    daemon.shutdown(std::time::Duration::from_secs(30)).await;
    run.sandbox.shutdown().await;
}
