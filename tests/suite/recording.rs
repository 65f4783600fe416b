//! Record and replay (`tandem plugin test --record DIR` / `--replay DIR`, issue 15 item 8):
//! a kit run against a live API is saved with its credentials scrubbed, and replayed with
//! the server gone to the same report; a plugin that sends another request fails the
//! check that sent it, naming the request; a changed or unknown recording is refused.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use tandem::conformance::{self, KitOptions, Outcome, Recording, Report, Target};
use tandem::runtime::{Credentials, Plugin, PluginSource, Secret};
use tandem_sandbox::AccountKind;
use tandem_tests::host::{plugin, runtime};
use tandem_tests::polyglot;
use tandem_tests::template_api::FakeApi;

const TEMPLATE: &str = "tandem-plugin-template";
const FRESHSALES: &str = "tandem-plugin-freshsales";
const GOOGLE: &str = "tandem-plugin-google-contacts";

/// The rows of a report, without the target (a replay names the recording).
fn rows(report: &Report) -> Vec<(String, String, Outcome, String)> {
    report
        .checks
        .iter()
        .map(|c| {
            (
                c.scope.clone(),
                c.name.clone(),
                c.outcome.clone(),
                c.detail.clone(),
            )
        })
        .collect()
}

/// Every file of a recording, as text.
fn files(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            (
                path.display().to_string(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect()
}

/// No file of the recording holds `secret` in any spelling an app could echo it in.
fn assert_no_secret(dir: &Path, secret: &str) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let spellings = [
        secret.to_owned(),
        b64.encode(secret),
        b64.encode(format!("Bearer {secret}")),
        url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
    ];
    for (path, text) in files(dir) {
        for s in &spellings {
            assert!(!text.contains(s.as_str()), "{path} holds `{s}`");
        }
    }
}

/// Records the kit on `plugin` against the template's API, then replays it with the API
/// gone: the same rows. Returns the recording's directory.
async fn record_and_replay_the_template(plugin: &Arc<Plugin>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let recorded = {
        let api = FakeApi::start(true).await;
        let target = Target::base_url(
            &api.server.origin(),
            Credentials::ApiKey(Secret::new(FakeApi::KEY)),
        );
        let (report, recording) =
            conformance::record(runtime(), plugin, &target, &KitOptions::default()).await;
        assert!(report.passed(), "{}", report.table(false));
        recording.save(dir.path()).unwrap();
        report
        // The API stops here.
    };
    let recording = Recording::load(dir.path()).unwrap();
    assert_eq!(recording.plugin().sha256, plugin.sha256_hex());
    let started = Instant::now();
    let replay = conformance::replay(runtime(), plugin, &recording).await;
    let took = started.elapsed();
    assert_replayed_as_recorded(&replay, &recorded);
    assert!(replay.report.target.starts_with("recording "));
    // The recorded run waits for the app's clock and the timeout check: seconds more.
    assert!(took.as_secs() < 20, "the replay took {took:?}");
    assert_no_secret(dir.path(), FakeApi::KEY);
    dir
}

/// The template connector, recorded against its API, replays hermetically; nothing of the
/// key is saved, although the API echoes it in a header and a body; a modified plugin
/// that sends another request fails exactly the check that sent it, naming the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_replays_its_recording_without_the_server() {
    let original = plugin(TEMPLATE).await;
    let dir = record_and_replay_the_template(&original).await;
    let exchanges = std::fs::read_to_string(dir.path().join("exchanges.json")).unwrap();
    // The echo was recorded, scrubbed (the template's check reads /me).
    assert!(
        exchanges.contains("x-echo-authorization: [redacted]"),
        "{exchanges}"
    );
    assert!(exchanges.contains("\"url\": \"/me\""), "{exchanges}");

    // The same template, its marker lookup now sending `externalXid=` (same length, so
    // the component stays valid).
    let path = tandem_plugins::wasm_path(TEMPLATE).unwrap();
    let mut wasm = std::fs::read(path).unwrap();
    let needle = b"external_id=";
    let at: Vec<usize> = wasm
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| w == needle)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "the template spells the marker query once");
    wasm[at[0]..at[0] + needle.len()].copy_from_slice(b"externalXid=");
    let modified = runtime()
        .load(
            PluginSource::Bytes {
                name: "template-modified".into(),
                wasm: wasm.into(),
                manifest: None,
            },
            None,
        )
        .await
        .unwrap();
    let recording = Recording::load(dir.path()).unwrap();
    let replay = conformance::replay(runtime(), &modified, &recording).await;
    let failures: Vec<(&str, &str)> = replay
        .report
        .failures()
        .map(|c| (c.scope.as_str(), c.name.as_str()))
        .collect();
    assert_eq!(
        failures,
        vec![("contacts", "find by marker")],
        "{}",
        replay.report.table(false)
    );
    let Some(check) = replay.report.check("contacts", "find by marker") else {
        unreachable!()
    };
    let Outcome::Fail(reason) = &check.outcome else {
        unreachable!()
    };
    assert!(
        reason.starts_with(
            "replay: the plugin sent `GET /contacts?limit=100&externalXid=tandem-kit-"
        ) && reason.contains("which the recording does not have")
            && reason.contains(
                "the next one recorded on it is `GET /contacts?limit=100&external_id=tandem-kit-"
            )
            && reason.contains("record again with `tandem plugin test --record`")
            && !reason.contains('\n'),
        "{reason}"
    );
    // The recorded answer to the lookup it no longer makes is reported, not silently kept.
    assert!(
        replay
            .unused
            .iter()
            .any(|u| u.contains("external_id=tandem-kit-")),
        "{:?}",
        replay.unused
    );
}

/// Records `name` against a fresh simulated account of `kind` (the kit's own options),
/// checks that no secret of the account is in the saved recording, and replays it with
/// the account gone: the same report, every recorded exchange used. Returns the
/// recording's directory and the replay.
async fn replays_its_simulated_account_run(
    name: &str,
    kind: AccountKind,
) -> (tempfile::TempDir, conformance::Replay) {
    let plugin = plugin(name).await;
    let dir = tempfile::tempdir().unwrap();
    let (sandbox, target) = conformance::start_sandbox(kind, conformance::kit_sandbox_options())
        .await
        .unwrap();
    let secrets = match &sandbox.account(kind).unwrap().credentials {
        tandem_sandbox::Credentials::ApiKey {
            api_key,
            restricted_api_key,
        } => [api_key.clone(), restricted_api_key.clone()],
        tandem_sandbox::Credentials::OAuth2 {
            client_secret,
            refresh_token,
            ..
        } => [client_secret.clone(), refresh_token.clone()],
    };
    let (recorded, recording) =
        conformance::record(runtime(), &plugin, &target, &KitOptions::default()).await;
    sandbox.shutdown().await;
    assert!(recorded.passed(), "{}", recorded.table(false));
    recording.save(dir.path()).unwrap();
    for secret in &secrets {
        assert_no_secret(dir.path(), secret);
    }

    let replay =
        conformance::replay(runtime(), &plugin, &Recording::load(dir.path()).unwrap()).await;
    assert_replayed_as_recorded(&replay, &recorded);
    (dir, replay)
}

/// A first-party connector against a simulated account: the control API's answers (live
/// ids, a user's edit, revoked credentials) are recorded too, and the replay, with the
/// account gone, gives the same report; neither key of the account is in the recording.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshsales_replays_its_simulated_account_run() {
    let (_dir, replay) =
        replays_its_simulated_account_run(FRESHSALES, AccountKind::FreshsalesSuite).await;
    // The checks that need the account ran, from the recording.
    for (scope, name) in [
        ("contacts", "pull full: complete"),
        ("contacts", "pull after user edit"),
        ("plugin", "error: revoked credentials -> unauthorized"),
        ("plugin", "check: restricted credentials -> forbidden"),
        ("plugin", "error: timeout -> transient"),
    ] {
        assert_eq!(
            replay.report.check(scope, name).map(|c| &c.outcome),
            Some(&Outcome::Pass),
            "{scope} / {name}"
        );
    }
}

/// OAuth2: the host's token refreshes are not the plugin's and need no replay; what the
/// token endpoint said when it refused the kit's made-up refresh token is part of the
/// plugin's `unauthorized` error, and comes back the same. Neither the client secret nor
/// the refresh token is saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_contacts_replays_its_oauth2_run() {
    let (dir, _) = replays_its_simulated_account_run(GOOGLE, AccountKind::GooglePeople).await;
    let manifest = std::fs::read_to_string(dir.path().join("recording.json")).unwrap();
    assert!(manifest.contains("\"kind\": \"oauth2\""), "{manifest}");
}

/// A recording whose files changed, of another format or kit, or that is not one, is
/// refused with one line naming the file; saving refuses a directory holding other files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_and_unknown_recordings_are_refused_with_one_line() {
    let dir = record_and_replay_the_template(&plugin(TEMPLATE).await).await;
    let recording = Recording::load(dir.path()).unwrap();
    let refused = |dir: &Path| {
        let e = Recording::load(dir).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        e
    };

    // A hand-edited answer.
    let edited = tempfile::tempdir().unwrap();
    recording.save(edited.path()).unwrap();
    let file = edited.path().join("exchanges.json");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replacen("\"status\": 200", "\"status\": 201", 1),
    )
    .unwrap();
    let e = refused(edited.path());
    assert!(
        e.starts_with(&file.display().to_string()) && e.contains("changed since it was recorded"),
        "{e}"
    );

    // Another format, another kit.
    for (field, value, wanted) in [
        ("format", "99", "recording format 99 is not supported"),
        ("kit", "99", "version 99 of the conformance kit's checks"),
    ] {
        let other = tempfile::tempdir().unwrap();
        recording.save(other.path()).unwrap();
        let manifest = other.path().join("recording.json");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let from = format!("\"{field}\": 1,");
        assert!(text.contains(&from), "{text}");
        std::fs::write(
            &manifest,
            text.replacen(&from, &format!("\"{field}\": {value},"), 1),
        )
        .unwrap();
        let e = refused(other.path());
        assert!(e.contains(wanted) && e.contains("--record"), "{e}");
    }

    // Not JSON; not a recording at all.
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(
        broken.path().join("recording.json"),
        "{\n  \"format\": 1,\n  oops\n}",
    )
    .unwrap();
    let e = refused(broken.path());
    assert!(e.contains("recording.json: line 3 column"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    assert!(refused(empty.path()).contains("tandem plugin test --record"));

    // Saving over something that is not a recording.
    std::fs::write(empty.path().join("notes.txt"), "mine").unwrap();
    let e = recording.save(empty.path()).unwrap_err().to_string();
    assert!(e.contains("holds no recording"), "{e}");
    assert_eq!(files(empty.path()).len(), 1, "nothing written");
}

/// Through the real binary: `--record` against a base URL, then `--replay` with the API
/// gone (exit 0, the same summary), and a changed recording refused with one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_records_and_replays() {
    let wasm = tandem_plugins::wasm_path(TEMPLATE).unwrap();
    let wasm = wasm.to_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("recording");
    let dir_arg = dir.to_str().unwrap();
    let run = |args: Vec<String>| {
        let mut cmd = std::process::Command::new(crate::user_errors::tandem());
        cmd.args(args)
            .env_remove("RUST_LOG")
            .env("TANDEM_API_KEY", FakeApi::KEY);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    let recorded = {
        let api = FakeApi::start(true).await;
        let args = ["plugin", "test", wasm, "--base-url", &api.server.origin()];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend(["--record".into(), dir_arg.into()]);
        run(args).await.unwrap()
    };
    let stderr = String::from_utf8_lossy(&recorded.stderr);
    assert!(recorded.status.success(), "{stderr}");
    assert!(
        stderr.contains("exchanges into") && stderr.contains("--replay"),
        "{stderr}"
    );
    let summary = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        summary(&recorded).contains(" 0 failed"),
        "{}",
        summary(&recorded)
    );

    let args = |dir: &str| -> Vec<String> {
        ["plugin", "test", wasm, "--replay", dir]
            .iter()
            .map(|a| a.to_string())
            .collect()
    };
    let replayed = run(args(dir_arg)).await.unwrap();
    let stderr = String::from_utf8_lossy(&replayed.stderr);
    assert!(replayed.status.success(), "{stderr}");
    assert!(stderr.starts_with("replaying "), "{stderr}");
    assert_eq!(summary(&replayed), summary(&recorded));

    let file = dir.join("control.json");
    std::fs::write(&file, "[]\n\n").unwrap();
    let refused = run(args(dir_arg)).await.unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("error: ")
            && lines[0].contains("control.json: changed since it was recorded"),
        "{stderr}"
    );
}

/// The kit is language-agnostic: the TypeScript template records and replays the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_template_replays_its_recording() {
    let path = polyglot::template_ts();
    let plugin = runtime()
        .load(PluginSource::Path(path.clone()), None)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    record_and_replay_the_template(&plugin).await;
}

/// A replay gave the recorded run's report, row for row, and used every recorded exchange.
fn assert_replayed_as_recorded(replay: &conformance::Replay, recorded: &Report) {
    assert_eq!(
        rows(&replay.report),
        rows(recorded),
        "{}",
        replay.report.table(false)
    );
    assert!(replay.unused.is_empty(), "{:?}", replay.unused);
}
