//! The operator console (docs/console.md) in a real browser: headless Chromium driven by
//! ChromeDriver against a daemon syncing the simulated accounts. Sign-in (a wrong token
//! refused), a run appearing on the overview, an ambiguity resolved with a button and
//! applied by the next run, the preview, pause and resume, the person and connections
//! pages, and forged cross-site requests refused. The screenshots in docs/console/ are
//! this test's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem::app::Host;
use tandem::app::control;
use tandem::app::daemon::Daemon;
use tandem_sandbox::AccountKind::{Freshmarketer, FreshsalesSuite};
use tandem_tests::browser::Browser;
use tandem_tests::e2e::{self, App, CONTROL_TOKEN, World};

const SYNCS: &str = r#"
[syncs.s]
a = "freshsales"
b = "freshmarketer"
entities = "contacts"
direction = "two-way"
scope = { b = "Newsletter" }
interval = "1h"
"#;

fn shot(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/console")
        .join(name)
}

fn status(daemon: &Daemon) -> String {
    daemon.summaries(Some("s")).unwrap()[0].status.clone()
}

/// A page on another port of the same machine (same-site for the browser, so its
/// requests carry the console's cookie) with a form that posts to the console's API.
async fn forger(target: String) -> SocketAddr {
    let page = format!(
        "<!doctype html><form method=post action=\"{target}\"><button id=go>win a prize</button></form>"
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_steers_a_sync_from_the_console_in_a_real_browser() {
    let browser = Browser::start().await;
    let mut w = World::start(&[FreshsalesSuite, Freshmarketer], e2e::small(), SYNCS).await;
    w.close();
    let config =
        tandem::config::load(&w.config_path, &w.env, &tandem::config::Catalog::builtin()).unwrap();
    let daemon = Daemon::start(Arc::new(
        Host::open(config, e2e::host_options(&w.env)).unwrap(),
    ))
    .unwrap();
    let addr = control::serve(&daemon).await.unwrap().expect("a token");
    let base = format!("http://{addr}");
    let b = &browser;

    // Sign-in: a wrong token is refused and leaves no session.
    b.goto(&format!("{base}/console/")).await;
    b.wait_for("#sign-in:not([hidden])").await;
    b.type_into("#token", "not-the-token").await;
    b.click("#sign-in-button").await;
    b.wait_text("#sign-in-error", "wrong token").await;
    assert!(
        b.cookies()
            .await
            .iter()
            .all(|c| c["name"] != "tandem_session"),
        "no session for a wrong token"
    );
    b.screenshot(&shot("sign-in.png")).await;
    b.type_into("#token", CONTROL_TOKEN).await;
    b.click("#sign-in-button").await;

    // The overview shows the daemon's first run appear.
    b.wait_text("#syncs tr[data-sync='s']", "#1 ok").await;
    let health = b
        .wait_text("#syncs tr[data-sync='s'] [data-health]", "")
        .await;
    let summary = &daemon.summaries(Some("s")).unwrap()[0];
    let expected = if summary.ambiguous.is_empty() && summary.attention.is_empty() {
        "in sync"
    } else {
        "waiting for a decision"
    };
    assert_eq!(health, expected, "{summary:?}");
    let cookie = b
        .cookies()
        .await
        .into_iter()
        .find(|c| c["name"] == "tandem_session")
        .expect("a session cookie");
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Strict");
    assert_ne!(
        cookie["value"], CONTROL_TOKEN,
        "the cookie is not the token"
    );
    b.screenshot(&shot("overview.png")).await;

    // An ambiguity: Kim's e-mail is on two Freshmarketer contacts. A run started with
    // the console's button reports it; the attention page offers the CLI's actions.
    let (kim, kim_fm, lee_fm) = w.kim_and_lee_apart().await;
    b.goto(&format!("{base}/console/#/sync/s")).await;
    b.click("#run-button").await;
    b.wait_text("#flash", "scheduled").await;
    b.wait_text("#runs tr[data-run='2']", "ok").await;
    b.goto(&format!("{base}/console/#/attention")).await;
    let link = format!("button[data-link='{kim} {kim_fm}']");
    b.wait_for(&link).await;
    b.wait_for(&format!("button[data-link='{kim} {lee_fm}']"))
        .await;
    let row = b
        .wait_text("tr[data-email='kim@apart.example']", "Keep apart")
        .await;
    assert!(
        row.contains(&kim_fm.to_string()) && row.contains(&lee_fm.to_string()),
        "{row}"
    );
    b.screenshot(&shot("attention.png")).await;
    b.click(&link).await;
    b.wait_text("#flash", "will be linked").await;
    b.wait_gone(&link).await;

    // The next run applies the decision.
    b.goto(&format!("{base}/console/#/sync/s")).await;
    b.wait_for("#run-button").await;
    let before = (w.requests(App::Fs).await, w.requests(App::Fm).await);
    b.click("#run-button").await;
    b.wait_text("#runs tr[data-run='3']", "ok").await;
    // Its API requests per side are what the accounts saw meanwhile (nothing else runs),
    // in its record, the runs table, the run's header and the chart.
    let seen = (
        w.requests(App::Fs).await - before.0,
        w.requests(App::Fm).await - before.1,
    );
    let run3 = daemon.host().store().runs("s").unwrap().pop().unwrap();
    let req = run3.requests.expect("the run recorded its requests");
    assert_eq!((run3.id, req.a.sent, req.b.sent), (3, seen.0, seen.1));
    b.wait_text(
        "#runs tr[data-run='3'] [data-requests]",
        &format!("{} / {}", seen.0, seen.1),
    )
    .await;
    b.wait_text(
        "#run-requests",
        &format!("API requests: {} to freshsales (A", seen.0),
    )
    .await;
    b.wait_for("#requests-chart rect[data-side='a']").await;
    b.wait_for("#requests-chart circle").await;
    let linked = daemon.host().store().links("s").unwrap().iter().any(|l| {
        l.ids.a.as_deref() == Some(kim.to_string().as_str())
            && l.ids.b.as_deref() == Some(kim_fm.to_string().as_str())
    });
    assert!(linked, "the run after the decision linked Kim to Kim");
    b.wait_text("#events", &format!("a:{kim}")).await;
    b.wait_for("#runs-chart rect").await;
    b.screenshot(&shot("sync.png")).await;

    // A preview of the next run, written nowhere.
    b.click("#preview-button").await;
    b.wait_text("#preview-summary", "writes").await;
    b.screenshot(&shot("preview.png")).await;
    assert_eq!(
        daemon.host().store().runs("s").unwrap().len(),
        3,
        "a preview records no run"
    );
    // A preview that fails (Freshmarketer refuses the key) says so on the page only: the
    // sync's health and status stay as they were.
    let health = b.wait_text("h1 [data-health]", "").await;
    w.fault(
        App::Fm,
        serde_json::json!({"count": 1, "fault": {"kind": "status", "status": 401,
        "body": "{\"message\": \"Invalid API key\"}", "content_type": "application/json"}}),
    )
    .await;
    b.click("#preview-button").await;
    b.wait_for("#preview.error").await;
    assert_eq!(b.wait_text("h1 [data-health]", "").await, health);
    let s = &daemon.summaries(Some("s")).unwrap()[0];
    assert!(
        s.status == "active" && s.last_error.is_none() && !s.running,
        "{s:?}"
    );

    // Pause and resume.
    b.click("#pause-button").await;
    b.wait_for("#status[data-status='paused']").await;
    assert_eq!(status(&daemon), "paused");
    b.click("#resume-button").await;
    b.wait_for("#status[data-status='active']").await;
    assert_eq!(status(&daemon), "active");

    // A person: the linked pair and what the sync wrote to it.
    b.goto(&format!("{base}/console/#/person/s/kim%40apart.example"))
        .await;
    let card = b
        .wait_text("#person-result .card", &format!("a:{kim}"))
        .await;
    assert!(card.contains(&format!("b:{kim_fm}")), "{card}");
    // Its history has the run that linked it, and why.
    b.wait_for("#person-result tr[data-action='linked']").await;
    b.screenshot(&shot("person.png")).await;

    // Connections: plugin, version, digest, grants, budgets; no secret anywhere.
    b.goto(&format!("{base}/console/#/connections")).await;
    let conns = b.wait_text("#connections", "freshsales").await;
    assert!(conns.contains("+loopback"), "{conns}");
    b.wait_for("#budgets").await;
    let page = b
        .eval(
            "return document.documentElement.outerHTML;",
            serde_json::json!([]),
        )
        .await;
    assert!(
        !page.as_str().unwrap().contains(CONTROL_TOKEN),
        "the page never shows the token"
    );
    b.screenshot(&shot("connections.png")).await;

    // A forged cross-site POST: a page on another port of the same host posts a form
    // to the API. The browser sends the session cookie (same site), and the console
    // refuses it for its Origin; nothing changes.
    let evil = forger(format!("{base}/v1/syncs/s/pause")).await;
    b.goto(&format!("http://{evil}/")).await;
    b.click("#go").await;
    b.wait_text("body", "cross-site request refused").await;
    assert_eq!(status(&daemon), "active", "the forged pause was refused");

    // The cookie alone does not change anything: a request from the right origin
    // without the CSRF token is refused, and so is one from a foreign origin with it.
    let http = reqwest::Client::new();
    let cookie = format!("tandem_session={}", cookie["value"].as_str().unwrap());
    let r = http
        .post(format!("{base}/v1/syncs/s/pause"))
        .header("cookie", &cookie)
        .header("origin", &base)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body = r.text().await.unwrap();
    assert!(body.contains("CSRF token"), "{body}");
    let csrf: serde_json::Value = http
        .get(format!("{base}/console/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let csrf = csrf["csrf"].as_str().unwrap();
    let r = http
        .post(format!("{base}/v1/syncs/s/pause"))
        .header("cookie", &cookie)
        .header("origin", format!("http://{evil}"))
        .header("x-tandem-csrf", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(status(&daemon), "active");
    // The page's headers forbid inline script and framing.
    let r = http.get(format!("{base}/console/")).send().await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    // A wrong bearer token is refused even with a session cookie.
    let r = http
        .get(format!("{base}/v1/syncs"))
        .bearer_auth("wrong")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Signing out ends the session.
    b.goto(&format!("{base}/console/")).await;
    b.click("#sign-out").await;
    b.wait_for("#sign-in:not([hidden])").await;
    let start = Instant::now();
    loop {
        let r = http
            .get(format!("{base}/v1/syncs"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        if r.status() == 401 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the session ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.quit().await;
    daemon.shutdown(Duration::from_secs(30)).await;
}
