//! Connectors in TypeScript and Python (issue 15, item 9): the templates in
//! `plugins/template-ts` and `plugins/template-py`, built with componentize-js and
//! componentize-py from the public registries (`tandem_tests::polyglot`), pass the
//! conformance kit as the Rust template does; the TypeScript one syncs end to end; and
//! hostile plugins in both languages, whose components import `wasi:filesystem`,
//! `wasi:sockets` and `wasi:cli/environment`, get nothing from them: no file, no
//! environment variable, no socket, no name lookup, and no origin the operator did not
//! grant.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::json;
use tandem::conformance::{self, KitOptions, NEEDS_SANDBOX, Outcome, Report, Target};
use tandem::runtime::{Credentials, Plugin, PluginSource, Secret};
use tandem_tests::e2e::{App, completed, small};
use tandem_tests::host::{attack, connection, counting_server, loopback_grant, runtime};
use tandem_tests::polyglot;
use tandem_tests::template_api::FakeApi;

async fn load(path: &Path) -> Arc<Plugin> {
    let path = path.to_path_buf();
    runtime()
        .load(PluginSource::Path(path.clone()), None)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn outcome<'a>(report: &'a Report, scope: &str, name: &str) -> &'a Outcome {
    &report
        .check(scope, name)
        .unwrap_or_else(|| panic!("no check {scope} / {name} in\n{}", report.table(false)))
        .outcome
}

/// The kit against the template's API, as the Rust template passes it
/// (`conformance::the_template_passes_against_a_plain_base_url_and_lists_what_it_skipped`).
async fn template_passes_the_kit(plugin: Arc<Plugin>) {
    let api = FakeApi::start(true).await;
    let target = Target::base_url(
        &api.server.origin(),
        Credentials::ApiKey(Secret::new(FakeApi::KEY)),
    );
    let report = conformance::run(runtime(), &plugin, &target, &KitOptions::default()).await;
    assert!(report.passed(), "{}", report.table(false));
    for (scope, name) in [
        ("plugin", "describe"),
        ("plugin", "check"),
        ("plugin", "check: wrong credentials -> unauthorized"),
        ("contacts", "schema"),
        ("contacts", "schema: custom fields"),
        ("contacts", "pull full"),
        ("contacts", "push create"),
        ("contacts", "find by email"),
        ("contacts", "find by marker"),
        ("contacts", "find by ids"),
        ("contacts", "push update"),
        ("contacts", "push update: stale version -> conflict"),
        ("contacts", "push delete"),
        ("contacts", "pull after push"),
        ("contacts", "pull full: small pages"),
        // The faults, through the kit's proxy in front of the base URL.
        ("plugin", "error: 429 with Retry-After -> rate-limited"),
        ("plugin", "error: 429 without Retry-After -> rate-limited"),
        ("plugin", "error: 503 -> transient"),
        ("plugin", "error: truncated JSON -> transient"),
        ("plugin", "error: timeout -> transient"),
        ("plugin", "error: revoked credentials -> unauthorized"),
    ] {
        assert_eq!(
            outcome(&report, scope, name),
            &Outcome::Pass,
            "{scope} / {name}\n{}",
            report.table(false)
        );
    }
    assert_eq!(
        outcome(&report, "contacts", "pull after user edit"),
        &Outcome::Skip(NEEDS_SANDBOX.into())
    );
    assert_eq!(api.live_emails(), vec!["seeded@example.com".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_template_passes_the_conformance_kit() {
    let plugin = load(&polyglot::template_ts()).await;
    assert_eq!(plugin.manifest().name, "template-ts", "embedded manifest");
    template_passes_the_kit(plugin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_template_passes_the_conformance_kit() {
    let plugin = load(&polyglot::template_py()).await;
    assert_eq!(plugin.manifest().name, "template-py", "embedded manifest");
    template_passes_the_kit(plugin).await;
}

/// Freshsales contacts reach the TypeScript template's app through a pinned,
/// config-loaded component, once each; a later edit follows; a run with nothing changed
/// writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_template_syncs_end_to_end() {
    let api = FakeApi::start(true).await;
    let path = polyglot::template_ts();
    let plugin = load(&path).await;
    let w = api
        .world_from_freshsales("tpl-ts", &path, &plugin.sha256_hex())
        .await;
    completed(&w.run("t").await);
    let copied = api.live_emails();
    let unique: BTreeSet<&String> = copied.iter().collect();
    assert!(
        copied.len() > small().freshsales / 2,
        "Freshsales contacts reached the TypeScript connector's app: {copied:?}"
    );
    assert_eq!(unique.len(), copied.len(), "no duplicates: {copied:?}");

    w.advance(60).await;
    w.create(
        App::Fs,
        "contacts",
        json!({"first_name": "Tess", "last_name": "Script", "emails": "tess.script@shape.example"}),
    )
    .await;
    completed(&w.run("t").await);
    let emails = api.live_emails();
    assert_eq!(
        emails
            .iter()
            .filter(|e| *e == "tess.script@shape.example")
            .count(),
        1,
        "{emails:?}"
    );
    let again = w.run("t").await;
    completed(&again);
    assert!(again.plan.ops.is_empty(), "{:?}", again.plan.ops);
}

/// Every attack of the hostile fixtures, and what each must come to.
async fn hostile_gets_nothing(plugin: Arc<Plugin>) {
    // The granted origin is the base URL; the counting server is another origin.
    let (granted, _) = counting_server().await;
    let (other, hits) = counting_server().await;
    let conn = connection(
        plugin.manifest().name.as_str(),
        &[("base-url", &granted.origin())],
        loopback_grant(&["setting:base-url"]),
    );
    let client = runtime().connector(&plugin, conn).unwrap();
    let name = plugin.manifest().name.clone();

    let ok = attack(&client, "ok", "").await.unwrap();
    assert_eq!(ok["ok"], "yes", "{name}");

    // No directory is preopened: the root, /etc/passwd and the working directory are out
    // of reach, and the list of directories is empty.
    let dirs = attack(&client, "preopens", "").await.unwrap();
    assert_eq!(dirs["count"], "0", "{name}: {dirs:?}");
    for path in ["/etc/passwd", "Cargo.toml", "/"] {
        let read = attack(&client, "read-file", path).await.unwrap();
        assert_eq!(read["outcome"], "error", "{name} read {path}: {read:?}");
        assert!(!read["detail"].contains("root:"), "{name}: {read:?}");
    }

    // No environment and no arguments, though the host process has both.
    assert!(std::env::var_os("PATH").is_some());
    let env = attack(&client, "env", "").await.unwrap();
    assert_eq!(
        (env["vars"].as_str(), env["args"].as_str()),
        ("0", "0"),
        "{name}: {env:?}"
    );

    // No socket reaches the server; no name is looked up.
    let connect = attack(&client, "connect", &other.addr.to_string())
        .await
        .unwrap();
    assert_eq!(connect["outcome"], "error", "{name}: {connect:?}");
    let lookup = attack(&client, "lookup", "localhost").await.unwrap();
    assert_eq!(lookup["outcome"], "error", "{name}: {lookup:?}");

    // The contract's http: an origin not granted is denied by the host, and the
    // granted one answers.
    let denied = attack(&client, "http", &other.url("/")).await.unwrap();
    assert_eq!(denied["outcome"], "denied", "{name}: {denied:?}");
    let allowed = attack(&client, "http", &granted.url("/")).await.unwrap();
    assert_eq!(
        (allowed["outcome"].as_str(), allowed["detail"].as_str()),
        ("200", "hello"),
        "{name}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "{name} reached an origin not granted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_typescript_plugin_gets_no_file_env_socket_or_origin() {
    let plugin = load(&polyglot::hostile_ts()).await;
    for import in [
        "wasi:filesystem/preopens@",
        "wasi:sockets/tcp-create-socket@",
        "wasi:cli/environment@",
    ] {
        assert!(
            plugin.imports().iter().any(|i| i.starts_with(import)),
            "{import} in {:?}",
            plugin.imports()
        );
    }
    hostile_gets_nothing(plugin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_python_plugin_gets_no_file_env_socket_or_origin() {
    let plugin = load(&polyglot::hostile_py()).await;
    hostile_gets_nothing(plugin).await;
}

/// The quoted values of `block`: from its first line to the first line that closes it.
fn quoted_values(text: &str, start: &str, end: &str, quote: char) -> BTreeSet<String> {
    let from = text.find(start).unwrap_or_else(|| panic!("no `{start}`"));
    let block = &text[from..];
    let block = &block[..block.find(end).unwrap_or(block.len())];
    block
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(quote)?;
            let (value, _) = rest.split_once(quote)?;
            Some(value.to_owned())
        })
        .collect()
}

/// The TypeScript and Python SDKs carry the well-known vocabulary of the contract, all of
/// it and nothing else (`plugins/well-known`, pinned to `wit/types.wit` by its own test).
#[test]
fn the_sdks_carry_the_well_known_vocabulary() {
    let root = polyglot::root();
    let expected: BTreeSet<String> = tandem_well_known::ALL
        .iter()
        .map(|s| s.to_string())
        .collect();
    let ts = std::fs::read_to_string(root.join("plugins/sdk-ts/src/index.ts")).unwrap();
    assert_eq!(
        quoted_values(&ts, "export const wellKnown = {", "} as const;", '\''),
        expected
    );
    let py = std::fs::read_to_string(root.join("plugins/sdk-py/tandem_sdk/__init__.py")).unwrap();
    let py_block = quoted_values(&py, "class well_known:", "\n\n\n", '"');
    // The class's docstring (empty between its opening quotes) is not a tag.
    let py_tags: BTreeSet<String> = py_block
        .into_iter()
        .filter(|v| !v.is_empty() && !v.contains(' '))
        .collect();
    assert_eq!(py_tags, expected);
}
