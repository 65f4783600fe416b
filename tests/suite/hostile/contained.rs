//! Hostile plugins: attacks that are contained, each kept under test so that it stays so,
//! and the smaller breaks closed in this pass (storage after the grant is gone, the
//! storage namespace's key, special address ranges, plugin text reaching the terminal, a
//! closed stdout).

use super::*;

use tandem::runtime::text::is_hidden;
use tandem::runtime::{Allocator, ConnectorClient, PolicyClass};

/// Escape sequences, forged lines and invisible reordering in one string.
const NASTY: &str =
    "evil\x1b]0;owned\x07\x1b[2J\u{9b}31m\rforged\nline\u{2028}x\u{202E}txt\u{200B}\u{2066}end";
/// What is left of [`NASTY`] once cleaned into one line.
const NASTY_CLEANED: &str = "evil]0;owned[2J31m forged line xtxtend";

fn storage_grant(plugin: Option<&str>) -> Grant {
    Grant {
        storage: Some(StorageGrant::default()),
        plugin: plugin.map(str::to_owned),
        ..Grant::default()
    }
}

async fn client_with(id: &str, settings: &[(&str, &str)], grant: Grant) -> ConnectorClient {
    runtime()
        .connector(&plugin(HOSTILE).await, connection(id, settings, grant))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_ip_spellings_are_judged_as_the_address_they_name() {
    let (server, hits) = counting_server().await;
    let port = server.addr.port();
    // The manifest requests `setting:other-url` = the server's origin; the operator grants
    // every requested origin but not loopback. Every spelling of 127.0.0.1 is refused.
    let client = client_with(
        "spellings",
        &[("other-url", &server.origin())],
        Grant {
            http: vec!["*".into()],
            ..Grant::default()
        },
    )
    .await;
    for host in [
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "017700000001",
        "127.1",
        "0x7f.1",
        "127.0.0.1.",
    ] {
        let fields = attack(&client, "http", &format!("http://{host}:{port}/"))
            .await
            .unwrap();
        assert_eq!(
            fields["error"],
            "HttpError::Denied(\"127.0.0.1 is a loopback address, which plugins may not reach\")",
            "{host}"
        );
    }
    // The manifest's literal http://10.0.0.1, spelled otherwise.
    for host in ["167772161", "012.0.0.1", "0xa.0.0.1", "10.1", "0x0a000001"] {
        let fields = attack(&client, "http", &format!("http://{host}/"))
            .await
            .unwrap();
        assert_eq!(
            fields["error"],
            "HttpError::Denied(\"10.0.0.1 is a private address, which plugins may not reach\")",
            "{host}"
        );
    }
    // IPv4-mapped and SIIT IPv6 spellings of the server's address.
    for host in ["[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::ffff:0:7f00:1]"] {
        let url = format!("http://{host}:{port}");
        let client = client_with(
            "mapped",
            &[("other-url", &url)],
            Grant {
                http: vec!["*".into()],
                ..Grant::default()
            },
        )
        .await;
        let fields = attack(&client, "http", &format!("{url}/")).await.unwrap();
        assert!(
            fields["error"].contains("embeds 127.0.0.1, a loopback address"),
            "{host}: {fields:?}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the server was reached");
}

/// `private-networks` does not open link-local: the cloud metadata endpoint stays out of
/// reach however it is spelled (all refused before any connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_networks_never_reach_the_metadata_endpoint() {
    for url in [
        "http://169.254.169.254",
        "http://2852039166",
        "http://[::ffff:169.254.169.254]",
        "http://[64:ff9b::a9fe:a9fe]",
        "http://[2002:a9fe:a9fe::1]",
        "http://[fe80::1]",
    ] {
        let client = client_with(
            "metadata",
            &[("other-url", url)],
            Grant {
                http: vec!["*".into()],
                allow_loopback: true,
                allow_private: true,
                ..Grant::default()
            },
        )
        .await;
        let fields = attack(&client, "http", &format!("{url}/latest/meta-data/"))
            .await
            .unwrap();
        assert!(
            fields["error"].starts_with("HttpError::Denied(")
                && fields["error"].contains("link-local"),
            "{url}: {fields:?}"
        );
    }
    // Documentation and other special-purpose ranges are refused too.
    for (url, range) in [
        ("http://192.0.2.1", "documentation"),
        ("http://[2001:db8::1]", "documentation"),
        ("http://[2001:0:4136:e378::1]", "Teredo"),
        ("http://198.18.0.1", "benchmarking"),
    ] {
        let client = client_with(
            "special",
            &[("other-url", url)],
            Grant {
                http: vec!["*".into()],
                allow_private: true,
                ..Grant::default()
            },
        )
        .await;
        let fields = attack(&client, "http", &format!("{url}/")).await.unwrap();
        assert!(fields["error"].contains(range), "{url}: {fields:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_storage_grant_hides_what_was_stored() {
    let granted = client_with("revoked", &[], storage_grant(Some("crm"))).await;
    assert_eq!(
        attack(&granted, "set", "cursor=kept").await.unwrap()["set"],
        "cursor"
    );
    // The operator removes the grant: reads see nothing, writes are refused.
    let revoked = client_with(
        "revoked",
        &[],
        Grant {
            plugin: Some("crm".into()),
            ..Grant::default()
        },
    )
    .await;
    assert_eq!(
        attack(&revoked, "get", "cursor").await.unwrap()["value"],
        "<none>"
    );
    assert_eq!(attack(&revoked, "list", "").await.unwrap()["keys"], "");
    assert!(
        attack(&revoked, "set", "cursor=x").await.unwrap()["error"].contains("no storage grant")
    );
    // Given back, the data is still there.
    let again = client_with("revoked", &[], storage_grant(Some("crm"))).await;
    assert_eq!(
        attack(&again, "get", "cursor").await.unwrap()["value"],
        "kept"
    );
}

/// A plugin pointed at a connection by another `[plugins.NAME]` entry does not inherit the
/// first one's storage, even when it declares the same name in its manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_belongs_to_the_operators_plugin_entry() {
    let crm = client_with("shared-conn", &[], storage_grant(Some("crm"))).await;
    attack(&crm, "set", "token=crm-data").await.unwrap();
    let other = client_with("shared-conn", &[], storage_grant(Some("impostor"))).await;
    assert_eq!(
        attack(&other, "get", "token").await.unwrap()["value"],
        "<none>"
    );
    assert_eq!(attack(&other, "list", "").await.unwrap()["keys"], "");
    assert_eq!(
        attack(&crm, "get", "token").await.unwrap()["value"],
        "crm-data"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_edge_keys_stay_inside_the_namespace() {
    let a = client_with("edge-a", &[], storage_grant(None)).await;
    let b = client_with("edge-b", &[], storage_grant(None)).await;
    let fields = attack(&a, "set", "=empty-key").await.unwrap();
    assert!(
        fields["error"].starts_with("StorageError::InvalidKey("),
        "{fields:?}"
    );
    let longest = "k".repeat(512);
    assert_eq!(
        attack(&a, "set", &format!("{longest}=v")).await.unwrap()["set"],
        longest
    );
    let fields = attack(&a, "set", &format!("{longest}k=v")).await.unwrap();
    assert!(
        fields["error"].starts_with("StorageError::TooLarge(\"key of 513 bytes"),
        "{fields:?}"
    );
    for key in [
        "..",
        "../edge-b/x",
        "/etc/passwd",
        "a\0b",
        "ключ/🔑",
        "\u{202E}rtl",
    ] {
        attack(&a, "set", &format!("{key}=value of {key}"))
            .await
            .unwrap();
        assert_eq!(
            attack(&a, "get", key).await.unwrap()["value"],
            format!("value of {key}"),
            "{key:?}"
        );
        assert_eq!(
            attack(&b, "get", key).await.unwrap()["value"],
            "<none>",
            "{key:?}"
        );
    }
    assert_eq!(attack(&b, "list", "").await.unwrap()["keys"], "");
    assert_eq!(
        attack(&b, "get", "x").await.unwrap()["value"],
        "<none>",
        "`../edge-b/x` is a key, not a path"
    );
    assert_eq!(
        attack(&a, "list", "").await.unwrap()["keys"]
            .split(',')
            .count(),
        7
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_overflow_and_exit_end_only_that_instance() {
    let client = hostile_client(
        "stack-exit",
        "http://127.0.0.1:1",
        ConnectorLimits::default(),
    )
    .await;
    // Rust keeps its stack in linear memory: running off it is an access just below
    // address 0, which the host reports as the stack overflow it is (not as a fault).
    let err = attack(&client, "stack", "").await.unwrap_err();
    assert_eq!(trap(&err).0, TrapKind::StackOverflow, "{err}");
    assert!(err.to_string().contains("stack overflow"), "{err}");
    assert_eq!(attack(&client, "ok", "").await.unwrap()["ok"], "yes");
    let err = attack(&client, "exit", "7").await.unwrap_err();
    assert_eq!(trap(&err).0, TrapKind::Exit, "{err}");
    assert!(err.to_string().contains("trapped (exit)"), "{err}");
    assert_eq!(attack(&client, "ok", "").await.unwrap()["ok"], "yes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_results_stop_at_the_memory_limit() {
    let limits = ConnectorLimits {
        memory_mib: 32,
        ..ConnectorLimits::default()
    };
    let client = hostile_client("big-results", "http://127.0.0.1:1", limits).await;
    // More than the instance may hold: the guest dies building it; the host never sees it.
    for (command, arg) in [("big-result", "48"), ("many-fields", "2000000")] {
        let err = attack(&client, command, arg).await.unwrap_err();
        assert_eq!(trap(&err).0, TrapKind::Memory, "{command}: {err}");
    }
    // What fits is returned whole.
    let fields = attack(&client, "big-result", "4").await.unwrap();
    assert_eq!(fields["big"].len(), 4 * 1024 * 1024);
    let fields = attack(&client, "many-fields", "1000").await.unwrap();
    assert_eq!(fields["f"], "999");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_handle_flood_stops_at_the_store_limit() {
    let client = hostile_client("handles", "http://127.0.0.1:1", ConnectorLimits::default()).await;
    let err = attack(&client, "handles", "").await.unwrap_err();
    let (kind, detail) = trap(&err);
    assert!(
        matches!(kind, TrapKind::Host | TrapKind::Fault) && detail.contains("handle"),
        "{err}"
    );
    assert_eq!(attack(&client, "ok", "").await.unwrap()["ok"], "yes");
}

/// A `Write` that appends to a shared buffer, for capturing the log.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.chars().any(|c| is_hidden(c) && c != '\n'),
        "{what} carries control or invisible characters: {text:?}"
    );
}

/// Escape sequences in errors, the stderr tail and log lines never reach the terminal or
/// the log raw; log fields are quoted so that no value passes for another field.
#[tokio::test(flavor = "current_thread")]
async fn plugin_text_reaches_terminal_and_log_cleaned() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let client = hostile_client("inject", "http://127.0.0.1:1", ConnectorLimits::default()).await;
    let err = attack(&client, "inject-panic", NASTY).await.unwrap_err();
    let msg = err.to_string();
    assert_clean("the error", &msg);
    assert_clean("the stderr tail", err.stderr());
    // The stderr tail keeps its lines apart with ` | `.
    assert!(
        msg.contains("evil]0;owned[2J31m forged | line | xtxtend"),
        "{msg}"
    );

    attack(&client, "inject-log", NASTY).await.unwrap();
    let mapper = runtime()
        .mapper(
            &plugin(HOSTILE_MAPPER).await,
            MapperLimits::default(),
            "inject",
        )
        .unwrap();
    let out = mapper
        .map(&ctx("inject", NASTY), &records(2))
        .await
        .unwrap();
    for result in &out {
        match result {
            Err(tandem::runtime::types::Error::Invalid(m)) => assert_eq!(m, NASTY_CLEANED),
            other => panic!("expected the mapper's error, got {other:?}"),
        }
    }

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("tandem::plugin"))
        .collect();
    assert_eq!(lines.len(), 2, "one line per plugin log call: {log}");
    for line in &lines {
        assert_clean("a log line", line);
        // The message, then the quoted fields: the value cannot forge `connection=`.
        assert!(
            line.contains(
                "fields=note=\"evil]0;owned[2J31m forged line xtxtend\" \"evil]0;owned[2J31m forged line xtxtend\"=\"v\""
            ) || line.contains("fields=note=\"evil]0;owned[2J31m forged line xtxtend\""),
            "{line}"
        );
    }
}

/// `tandem plugin inspect … | head`: the reader is gone before the first line; the
/// command ends quietly instead of panicking.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_a_printing_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let wasm = tandem_plugins::wasm_path(HOSTILE).unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(crate::user_errors::tandem())
        .args(["plugin", "inspect"])
        .arg(&wasm)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), None, "{:?}: {stderr}", out.status);
    // Ended by SIGPIPE (13), as `cat` is.
    assert_eq!(out.status.signal(), Some(13), "{stderr}");
}

/// A connector answering a push with a reference it was not given, twice for one write,
/// and not at all for the others: only answers to the writes sent come back, one each; the
/// engine fails the unanswered writes ("the connector returned no result for this write").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_missing_push_refs_are_dropped() {
    use tandem::sync::Source;
    use tandem::sync::source::{Write, WriteOp};
    let client = hostile_client(
        "push-refs",
        "http://127.0.0.1:1",
        ConnectorLimits::default(),
    )
    .await;
    let entities = client.describe().await.unwrap().entities;
    let source = tandem::app::ConnectorSource::new(
        client,
        tandem::sync::model::Side::A,
        &entities,
        Arc::new(tandem::app::RequestGate::unpaused()),
        tandem::app::RetrySettings::default(),
    );
    let writes: Vec<Write> = (0..3)
        .map(|i| Write {
            reference: format!("op-{i}"),
            op: WriteOp::Delete(format!("r{i}")),
        })
        .collect();
    let results = source.push("forge-refs", writes).await.unwrap();
    let refs: Vec<&str> = results.iter().map(|r| r.reference.as_str()).collect();
    assert_eq!(refs, ["op-0"], "{results:?}");
}

/// A mapper sees a stopped clock and a fixed random sequence: the same input gives the
/// same output on every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapper_clock_and_randomness_are_fixed() {
    let client = runtime()
        .mapper(
            &plugin(HOSTILE_MAPPER).await,
            MapperLimits::default(),
            "clock",
        )
        .unwrap();
    let first = client.map(&ctx("clock", ""), &records(2)).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            client.map(&ctx("clock", ""), &records(2)).await.unwrap(),
            first
        );
    }
    let Ok(Some(record)) = &first[0] else {
        panic!("{first:?}")
    };
    let field = |name: &str| {
        record
            .fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.clone())
    };
    assert_eq!(
        field("wall"),
        Some(Value::Text("946684800000000000".into()))
    );
    assert_eq!(field("elapsed"), Some(Value::Text("0".into())));
}

/// Too many results are cut, too few fail the records left without one: results never
/// shift onto other records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapper_result_counts_never_shift_records() {
    use tandem::sync::Mappers;
    use tandem::sync::model::Record as SyncRecord;
    let client = runtime()
        .mapper(
            &plugin(HOSTILE_MAPPER).await,
            MapperLimits::default(),
            "counts",
        )
        .unwrap();
    let mappers = tandem::app::PluginMappers::new([("m".to_owned(), client)].into());
    let input: Vec<SyncRecord> = (0..3)
        .map(|i| SyncRecord {
            id: format!("r{i}"),
            ..SyncRecord::default()
        })
        .collect();
    let sctx = |entity: &str| tandem::sync::source::MapContext {
        sync: "s".into(),
        source: "a".into(),
        target: "b".into(),
        entity: entity.into(),
    };
    let more = mappers.map("m", &sctx("more"), input.clone()).await;
    let ids: Vec<_> = more
        .iter()
        .map(|r| r.as_ref().unwrap().as_ref().unwrap().id.clone())
        .collect();
    assert_eq!(ids, ["r0", "r1", "r2"]);
    let fewer = mappers.map("m", &sctx("fewer"), input).await;
    assert_eq!(fewer.len(), 3);
    assert!(fewer[..2].iter().all(|r| r.is_ok()), "{fewer:?}");
    assert!(
        matches!(&fewer[2], Err(e) if e.to_string().contains("returned no result")),
        "{fewer:?}"
    );
}

/// A mapper that spins until its CPU deadline fails its records for good (fatal, like
/// running out of fuel): the same records would spin again, so they are not retried as
/// passing failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapper_timeout_is_fatal_like_running_out_of_fuel() {
    use tandem::sync::Mappers;
    use tandem::sync::model::Record as SyncRecord;
    use tandem::sync::source::SourceError;
    let mapper = plugin(HOSTILE_MAPPER).await;
    let input: Vec<SyncRecord> = (0..2)
        .map(|i| SyncRecord {
            id: format!("r{i}"),
            ..SyncRecord::default()
        })
        .collect();
    let sctx = tandem::sync::source::MapContext {
        sync: "s".into(),
        source: "a".into(),
        target: "b".into(),
        entity: "spin".into(),
    };
    for (limits, what) in [
        (
            MapperLimits {
                fuel: u64::MAX / 2,
                timeout: Duration::from_millis(200),
                ..MapperLimits::default()
            },
            // The epoch deadline or the wall-time backstop, whichever strikes first.
            ["CPU deadline", "did not finish within 200ms"],
        ),
        (
            MapperLimits {
                fuel: 1_000_000,
                ..MapperLimits::default()
            },
            ["out of fuel", "out of fuel"],
        ),
    ] {
        let client = runtime().mapper(&mapper, limits, "spin").unwrap();
        let mappers = tandem::app::PluginMappers::new([("m".to_owned(), client)].into());
        let out = mappers.map("m", &sctx, input.clone()).await;
        assert_eq!(out.len(), 2);
        for result in out {
            let Err(e @ SourceError::Fatal(message)) = &result else {
                panic!("{what:?}: expected a fatal error, got {result:?}")
            };
            assert!(!e.is_retryable());
            assert!(what.iter().any(|w| message.contains(w)), "{message}");
        }
    }
}

/// Another plugin's compiled artifact copied over the pinned plugin's cache entry (both
/// valid artifacts of this very host): the pinned plugin still runs its own code, and
/// the planted entry is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_cache_entry_never_runs_instead_of_the_pinned_plugin() {
    use sha2::{Digest, Sha256};
    use tandem::runtime::{Runtime, RuntimeOptions};
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let open = || {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        Runtime::new(RuntimeOptions {
            cache_dir: Some(cache.clone()),
            db: Arc::new(db).into(),
            resolver: Arc::new(tandem_tests::host::TestResolver),
            pool: Default::default(),
        })
        .unwrap()
    };
    let pinned = tandem_plugins::wasm_path(HOSTILE).unwrap();
    let other = tandem_plugins::wasm_path("tandem-plugin-template").unwrap();
    let sha = |path: &std::path::Path| hex::encode(Sha256::digest(std::fs::read(path).unwrap()));
    let (pin, other_sha) = (sha(&pinned), sha(&other));
    {
        let runtime = open();
        runtime
            .load(PluginSource::Path(pinned.clone()), Some(&pin))
            .await
            .unwrap();
        runtime
            .load(PluginSource::Path(other.clone()), None)
            .await
            .unwrap();
    }
    let entry = |prefix: &str| {
        std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
            .unwrap()
    };
    let (target, planted) = (entry(&pin), entry(&other_sha));
    std::fs::copy(&planted, &target).unwrap();

    let runtime = open();
    let plugin = runtime
        .load(PluginSource::Path(pinned), Some(&pin))
        .await
        .unwrap();
    let client = runtime
        .connector(&plugin, connection("planted", &[], Grant::default()))
        .unwrap();
    assert_eq!(client.describe().await.unwrap().name, "hostile");
    assert_ne!(
        std::fs::read(&target).unwrap(),
        std::fs::read(&planted).unwrap(),
        "the planted entry was replaced"
    );
}

/// The hostile component with one more core module instantiated at its end: `module`'s
/// memories and tables then exist in every instance of the plugin. (A Rust guest cannot
/// declare extra memories or tables; a hand-made component can.)
fn with_extra_module(module: &wasm_encoder::Module) -> Vec<u8> {
    use wasmparser::{Parser, Payload};
    let mut wasm = std::fs::read(tandem_plugins::wasm_path(HOSTILE).unwrap()).unwrap();
    // Index of the next core module: the top-level module sections (wit-component's
    // output aliases no core modules at the top level).
    let (mut depth, mut modules) = (0i32, 0u32);
    for payload in Parser::new(0).parse_all(&wasm) {
        match payload.unwrap() {
            Payload::ModuleSection { .. } => {
                modules += u32::from(depth == 0);
                depth += 1;
            }
            Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth -= 1,
            _ => {}
        }
    }
    let module = module.clone().finish();
    // Section 1: a core module; section 2: one core instance of it, without imports.
    wasm.push(1);
    leb(&mut wasm, module.len() as u64);
    wasm.extend_from_slice(&module);
    let mut instance = vec![1, 0];
    leb(&mut instance, u64::from(modules));
    instance.push(0);
    wasm.push(2);
    leb(&mut wasm, instance.len() as u64);
    wasm.extend_from_slice(&instance);
    wasm
}

fn leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn memories(count: usize, pages: u64) -> wasm_encoder::Module {
    let mut section = wasm_encoder::MemorySection::new();
    for _ in 0..count {
        section.memory(wasm_encoder::MemoryType {
            minimum: pages,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
    }
    let mut module = wasm_encoder::Module::new();
    module.section(&section);
    module
}

fn tables(count: usize, elements: u64) -> wasm_encoder::Module {
    let mut section = wasm_encoder::TableSection::new();
    for _ in 0..count {
        section.table(wasm_encoder::TableType {
            element_type: wasm_encoder::RefType::FUNCREF,
            table64: false,
            minimum: elements,
            maximum: None,
            shared: false,
        });
    }
    let mut module = wasm_encoder::Module::new();
    module.section(&section);
    module
}

/// Extra memories count against the memory limit together; too many memories or tables,
/// or too large a table, stop the plugin before it runs: the instance pool refuses the
/// component when it is loaded (on-demand allocation, where the OS refused the pool,
/// refuses the instance when it is made).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_memories_and_tables_are_capped() {
    let limits = ConnectorLimits {
        memory_mib: 32,
        ..ConnectorLimits::default()
    };
    let pooled = runtime().allocator(PolicyClass::Connector) == Allocator::Pooling;
    for (what, module, kind) in [
        // 31.5 MiB fits alone, not beside the plugin's own memory.
        (
            "a memory of 31.5 MiB",
            memories(1, 504),
            Some(TrapKind::Memory),
        ),
        ("40 memories", memories(40, 0), None),
        ("a table of 1M elements", tables(1, 1_000_000), None),
        ("100 tables", tables(100, 1), None),
    ] {
        let wasm = with_extra_module(&module);
        let loaded = runtime()
            .load(
                PluginSource::Bytes {
                    name: what.into(),
                    wasm: wasm.into(),
                    manifest: None,
                },
                None,
            )
            .await;
        let plugin = match loaded {
            Err(e) if pooled && kind.is_none() => {
                assert!(matches!(e.reason, LoadFailure::Compile(_)), "{what}: {e}");
                let text = e.to_string();
                assert!(
                    text.starts_with("plugin hostile 0.1.0: wasmtime refused the component: ")
                        && text.contains("pooling allocator"),
                    "{what}: {text}"
                );
                continue;
            }
            loaded => loaded.unwrap_or_else(|e| panic!("{what}: {e}")),
        };
        let mut grant = loopback_grant(&[]);
        grant.limits = limits.clone();
        let client = runtime()
            .connector(&plugin, connection("extra", &[], grant))
            .unwrap();
        let err = attack(&client, "ok", "").await.unwrap_err();
        let (found, _) = trap(&err);
        if let Some(kind) = kind {
            assert_eq!(found, kind, "{what}: {err}");
        }
        assert!(
            err.to_string()
                .starts_with("plugin hostile 0.1.0: `pull` trapped"),
            "{what}: {err}"
        );
    }
    // Without the extra module the same plugin runs.
    let client = hostile_client("extra-none", "http://127.0.0.1:1", limits).await;
    assert_eq!(attack(&client, "ok", "").await.unwrap()["ok"], "yes");
}

/// A fresh instance per call, also now that instances reuse the slots of a pool whose
/// written pages are reset in place: nothing a call leaves in memory (static data, heap
/// grown past the image) is there for the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_call_sees_what_an_earlier_call_left_in_memory() {
    let client = hostile_client(
        "leftovers",
        "http://127.0.0.1:1",
        ConnectorLimits::default(),
    )
    .await;
    for call in 0..20 {
        let seen = attack(&client, "leftovers", "").await.unwrap();
        assert_eq!(seen["calls"], "1", "call {call}: {seen:?}");
        assert_eq!(seen["heap-byte"], "0", "call {call}: {seen:?}");
    }
}
