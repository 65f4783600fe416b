//! The conformance kit (`tandem plugin test`): the first-party connectors pass it against
//! the simulated accounts (Freshsales Suite, Freshsales Classic with leads, Freshmarketer,
//! Google); wrong credentials are reported as such; the template connector passes it
//! against a plain base URL (a small fake of the API it speaks) with the checks that need
//! a simulated account listed as skipped; and a contract violation (an `if-version` that
//! is not honoured) fails exactly the check that covers it.

use serde_json::{Value as Json, json};
use tandem::conformance::{self, KitOptions, NEEDS_SANDBOX, Outcome, Report, Target};
use tandem::runtime::{Credentials, Secret};
use tandem_sandbox::AccountKind;
use tandem_tests::host::{plugin, runtime};
use tandem_tests::template_api::FakeApi;

/// A change to a kit target.
type Tweak<'a> = &'a dyn Fn(&mut Target);

const FRESHSALES: &str = "tandem-plugin-freshsales";
const FRESHMARKETER: &str = "tandem-plugin-freshmarketer";
const GOOGLE: &str = "tandem-plugin-google-contacts";
const TEMPLATE: &str = "tandem-plugin-template";

/// Runs the kit on `package` against a fresh simulated account of `kind`, after `tweak`
/// has had its way with the target.
async fn kit_on_sandbox(
    package: &str,
    kind: AccountKind,
    tweak: impl FnOnce(&mut Target),
) -> Report {
    let plugin = plugin(package).await;
    let (sandbox, mut target) =
        conformance::start_sandbox(kind, conformance::kit_sandbox_options())
            .await
            .unwrap();
    tweak(&mut target);
    let report = conformance::run(runtime(), &plugin, &target, &KitOptions::default()).await;
    sandbox.shutdown().await;
    report
}

fn outcome<'a>(report: &'a Report, scope: &str, name: &str) -> &'a Outcome {
    &report
        .check(scope, name)
        .unwrap_or_else(|| panic!("no check {scope} / {name} in\n{}", report.table(false)))
        .outcome
}

/// The report has no failure, and these checks passed (not skipped).
fn assert_passed(report: &Report, rows: &[(&str, &str)]) {
    assert!(report.passed(), "{}", report.table(false));
    for (scope, name) in rows {
        assert_eq!(
            outcome(report, scope, name),
            &Outcome::Pass,
            "{scope} / {name}\n{}",
            report.table(false)
        );
    }
}

/// What every connector must pass on every entity it serves in a simulated account.
const ENTITY_CHECKS: &[&str] = &[
    "schema",
    "schema: well-known email",
    "schema: custom fields",
    "containers",
    "pull full",
    "pull full: complete",
    "pull full: small pages",
    "push create",
    "find by email",
    "find by marker",
    "find by ids",
    "push update",
    "push update: stale version -> conflict",
    "push delete",
    "pull after push",
    "pull after user edit",
];

const PLUGIN_CHECKS: &[&str] = &[
    "describe",
    "check",
    "check: wrong credentials -> unauthorized",
    "error: 429 with Retry-After -> rate-limited",
    "error: 429 without Retry-After -> rate-limited",
    "error: 503 -> transient",
    "error: truncated JSON -> transient",
    "error: timeout -> transient",
    "error: revoked credentials -> unauthorized",
];

fn rows<'a>(entities: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    let mut rows: Vec<(&str, &str)> = PLUGIN_CHECKS.iter().map(|c| ("plugin", *c)).collect();
    for entity in entities {
        rows.extend(ENTITY_CHECKS.iter().map(|c| (*entity, *c)));
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshsales_suite_passes_the_kit() {
    let report = kit_on_sandbox(FRESHSALES, AccountKind::FreshsalesSuite, |_| ()).await;
    let mut expected = rows(&["contacts"]);
    expected.push(("plugin", "check: restricted credentials -> forbidden"));
    assert_passed(&report, &expected);
    // Suite has no leads: said so, not silently dropped.
    assert_eq!(
        outcome(&report, "leads", "all checks"),
        &Outcome::Skip("the simulated freshsales account has no leads".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshsales_classic_passes_the_kit_with_leads() {
    let report = kit_on_sandbox(FRESHSALES, AccountKind::FreshsalesClassic, |_| ()).await;
    let mut expected = rows(&["contacts", "leads"]);
    expected.push(("plugin", "check: restricted credentials -> forbidden"));
    assert_passed(&report, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshmarketer_passes_the_kit_with_lists() {
    let report = kit_on_sandbox(FRESHMARKETER, AccountKind::Freshmarketer, |_| ()).await;
    let mut expected = rows(&["contacts"]);
    expected.push(("contacts", "containers: add, list, remove"));
    expected.push(("plugin", "check: restricted credentials -> forbidden"));
    assert_passed(&report, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_contacts_passes_the_kit_with_groups() {
    let report = kit_on_sandbox(GOOGLE, AccountKind::GooglePeople, |_| ()).await;
    let mut expected = rows(&["contacts"]);
    expected.push(("contacts", "containers: add, list, remove"));
    assert_passed(&report, &expected);
    assert!(matches!(
        outcome(&report, "plugin", "check: restricted credentials -> forbidden"),
        Outcome::Skip(reason) if reason.contains("no restricted credentials")
    ));
}

/// The container round trip never uses a container the created record is already in:
/// a new Google contact is in My Contacts, and taking it out of its only group is refused
/// (a contact keeps at least one group). On an account whose groups are all empty, My
/// Contacts would otherwise be the smallest; the kit takes the smallest other group
/// (Starred or a user group), with and without a user group the test adds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_container_round_trip_keeps_the_contacts_last_group() {
    let plugin = plugin(GOOGLE).await;
    for user_group in [None, Some("Kit round trip")] {
        let mut options = conformance::kit_sandbox_options();
        options.sizes.google = 0;
        let (sandbox, target) = conformance::start_sandbox(AccountKind::GooglePeople, options)
            .await
            .unwrap();
        if let Some(name) = user_group {
            let info = sandbox.account(AccountKind::GooglePeople).unwrap();
            let http = reqwest::Client::new();
            let token: Json = http
                .post(format!("{}/tokens/access", info.control_url))
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let created = http
                .post(format!("{}/v1/contactGroups", info.base_url))
                .bearer_auth(token["access_token"].as_str().unwrap())
                .json(&json!({"contactGroup": {"name": name}}))
                .send()
                .await
                .unwrap();
            assert!(
                created.status().is_success(),
                "{}",
                created.text().await.unwrap()
            );
        }
        let report = conformance::run(runtime(), &plugin, &target, &KitOptions::default()).await;
        sandbox.shutdown().await;
        assert_eq!(
            outcome(&report, "contacts", "containers: add, list, remove"),
            &Outcome::Pass,
            "{}",
            report.table(false)
        );
        let row = report
            .check("contacts", "containers: add, list, remove")
            .unwrap();
        // Never My Contacts: the created contact is in it already, and taking it out
        // would take its last group away, which Google refuses.
        let used = row
            .detail
            .split_once("added to ")
            .and_then(|(_, rest)| rest.split_once(" ("))
            .map(|(name, _)| name)
            .unwrap_or_else(|| panic!("{}", row.detail));
        assert_ne!(used, "My Contacts", "{}", row.detail);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_reported_as_such() {
    // A made-up API key; a refresh token the account never issued.
    let wrong_key =
        |t: &mut Target| t.credentials = Credentials::ApiKey(Secret::new("not-the-key"));
    let wrong_refresh = |t: &mut Target| {
        if let Credentials::OAuth2 { refresh_token, .. } = &mut t.credentials {
            *refresh_token = Secret::new("1//never-issued");
        }
    };
    let cases: [(&str, AccountKind, Tweak); 2] = [
        (FRESHSALES, AccountKind::FreshsalesSuite, &wrong_key),
        (GOOGLE, AccountKind::GooglePeople, &wrong_refresh),
    ];
    for (package, kind, wrong) in cases {
        let report = kit_on_sandbox(package, kind, wrong).await;
        assert!(!report.passed(), "{}", report.table(false));
        match outcome(&report, "plugin", "check") {
            Outcome::Fail(reason) => assert!(
                reason.starts_with("unauthorized:")
                    && reason.ends_with("the credentials given to the kit are wrong or expired"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        // Nothing else is blamed on the plugin: the rest is skipped with the reason.
        assert_eq!(report.failures().count(), 1, "{}", report.table(false));
        assert_eq!(
            outcome(&report, "contacts", "all checks"),
            &Outcome::Skip("`check` failed with the kit's credentials".into())
        );
        assert_eq!(
            outcome(
                &report,
                "plugin",
                "check: wrong credentials -> unauthorized"
            ),
            &Outcome::Pass
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_passes_against_a_plain_base_url_and_lists_what_it_skipped() {
    let api = FakeApi::start(true).await;
    let target = Target::base_url(
        &api.server.origin(),
        Credentials::ApiKey(Secret::new(FakeApi::KEY)),
    );
    let report = conformance::run(
        runtime(),
        &plugin(TEMPLATE).await,
        &target,
        &KitOptions::default(),
    )
    .await;
    assert_passed(
        &report,
        &[
            ("plugin", "describe"),
            ("plugin", "check"),
            ("plugin", "check: wrong credentials -> unauthorized"),
            ("contacts", "schema"),
            ("contacts", "schema: custom fields"),
            ("contacts", "pull full"),
            ("contacts", "pull full: small pages"),
            ("contacts", "push create"),
            ("contacts", "find by email"),
            ("contacts", "find by marker"),
            ("contacts", "find by ids"),
            ("contacts", "push update"),
            ("contacts", "push update: stale version -> conflict"),
            ("contacts", "push delete"),
            ("contacts", "pull after push"),
            // The faults, through the kit's proxy in front of the base URL.
            ("plugin", "error: 429 with Retry-After -> rate-limited"),
            ("plugin", "error: 429 without Retry-After -> rate-limited"),
            ("plugin", "error: 503 -> transient"),
            ("plugin", "error: truncated JSON -> transient"),
            ("plugin", "error: timeout -> transient"),
            ("plugin", "error: revoked credentials -> unauthorized"),
        ],
    );
    for (scope, name) in [
        ("plugin", "check: restricted credentials -> forbidden"),
        ("contacts", "pull full: complete"),
        ("contacts", "pull after user edit"),
    ] {
        assert_eq!(
            outcome(&report, scope, name),
            &Outcome::Skip(NEEDS_SANDBOX.into()),
            "{scope} / {name}"
        );
    }
    assert!(report.table(false).contains("needs --sandbox"));
    // The kit cleaned up after itself: only the seeded contact is left.
    assert_eq!(api.live_emails(), vec!["seeded@example.com".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_if_version_that_is_not_honoured_fails_the_conflict_check() {
    let api = FakeApi::start(false).await;
    let target = Target::base_url(
        &api.server.origin(),
        Credentials::ApiKey(Secret::new(FakeApi::KEY)),
    );
    let report = conformance::run(
        runtime(),
        &plugin(TEMPLATE).await,
        &target,
        &KitOptions::default(),
    )
    .await;
    let failures: Vec<(&str, &str)> = report
        .failures()
        .map(|c| (c.scope.as_str(), c.name.as_str()))
        .collect();
    assert_eq!(
        failures,
        vec![("contacts", "push update: stale version -> conflict")],
        "{}",
        report.table(false)
    );
    match outcome(
        &report,
        "contacts",
        "push update: stale version -> conflict",
    ) {
        Outcome::Fail(reason) => assert!(reason.contains("honour if-version"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Later checks expect what the app really holds after the stale write.
    assert_eq!(
        outcome(&report, "contacts", "pull after push"),
        &Outcome::Pass
    );
}
