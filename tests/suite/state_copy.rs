//! `tandem state copy` through the real binary, into a throwaway PostgreSQL server: an
//! install's redb file moves with every row (digests equal, the engine reads the same
//! state back); a second copy into the now non-empty database is refused and changes
//! nothing; a bad URL, an unset variable and a file a daemon holds are each one line
//! that never shows the password.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use tandem::db::copy::digests_in;
use tandem::db::{Pg, PgOptions, TlsMode};
use tandem::sync::baseline::{FieldBase, Link, LinkOrigin, LinkState};
use tandem::sync::model::{Side, SidePair, Value};
use tandem::sync::state::{Event, Flow, RunKind, SyncStore};
use tandem_pgserver::PgServer;

use crate::user_errors::tandem;

const PASSWORD: &str = "Sup3r-Secret-Pw";

fn run(args: &[&str], url: Option<&str>) -> Output {
    let mut cmd = Command::new(tandem());
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("TANDEM_DATABASE_URL");
    if let Some(url) = url {
        cmd.env("TANDEM_DATABASE_URL", url);
    }
    cmd.output().expect("tandem runs")
}

/// A failure with one line on stderr holding every needle and never the password.
fn one_line_error(out: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected a failure; stderr: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {stderr}");
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` missing from: {}", lines[0]);
    }
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(PASSWORD));
    lines[0].to_string()
}

fn link(key: &str, a: &str, b: &str) -> Link {
    Link {
        key: key.into(),
        entity: 0,
        ids: SidePair::new(Some(a.into()), Some(b.into())),
        state: LinkState::Linked,
        fields: [(
            "email".to_string(),
            FieldBase::new(Value::Text("a@x.test".into())),
        )]
        .into(),
        versions: SidePair::default(),
        match_key: None,
        origin: LinkOrigin::Email,
        review: Default::default(),
        touched: Default::default(),
    }
}

/// An install's state file: links, cursors, a run with its log, and a plugin's storage.
fn seed(path: &Path) {
    let db = Arc::new(redb::Database::create(path).unwrap());
    let store = SyncStore::open(db.clone()).unwrap();
    store
        .write("crm-mkt", |t| {
            t.put_link(&link("0/a/1", "1", "9"), ("leads", "contacts"))?;
            t.put_link(&link("0/a/2", "2", "8"), ("leads", "contacts"))?;
            t.set_cursor(0, Side::A, Some("2026-12-01T00:00:00Z"))?;
            t.set_cursor(0, Side::B, Some("page-7"))?;
            let run = t.begin_run(RunKind::Full, 1_700_000_000)?;
            t.put_event(&Event {
                run: run.id,
                seq: 0,
                direction: Flow::AToB,
                action: "created".into(),
                entity: "contacts".into(),
                records: vec!["a:1".into(), "b:9".into()],
                link: Some("0/a/1".into()),
                reason: "new on A".into(),
            })
        })
        .unwrap();
    let tx = db.begin_write().unwrap();
    {
        let store = redb::TableDefinition::<(&str, &str, &str), &[u8]>::new("runtime.plugin_store");
        let usage =
            redb::TableDefinition::<(&str, &str), (u64, u64)>::new("runtime.plugin_store_usage");
        tx.open_table(store)
            .unwrap()
            .insert(("plugin:crm", "fs-acme", "etag"), b"W/\"1\"".as_slice())
            .unwrap();
        tx.open_table(usage)
            .unwrap()
            .insert(("plugin:crm", "fs-acme"), (9, 1))
            .unwrap();
    }
    tx.commit().unwrap();
}

fn connect(url: &str) -> Arc<Pg> {
    let mut opts = PgOptions::new(url);
    opts.tls = TlsMode::Disable;
    opts.pool_size = 2;
    Pg::connect(&opts).unwrap()
}

#[test]
fn an_install_moves_with_every_row_and_a_second_copy_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    seed(&path);
    let from = path.to_str().unwrap();
    let url = PgServer::shared().create_database();
    let args = [
        "state",
        "copy",
        "--from",
        from,
        "--to-env",
        "TANDEM_DATABASE_URL",
        "--tls",
        "disable",
    ];
    let out = run(&args, Some(&url));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A header, one line per table (each "ok"), a summary.
    let rows: Vec<&str> = stdout.lines().skip(1).take(13).collect();
    assert_eq!(rows.len(), 13, "{stdout}");
    for r in &rows {
        assert!(r.ends_with("  ok"), "{stdout}");
    }
    for (table, n) in [
        ("tandem_sync_links", 2),
        ("tandem_sync_cursors", 2),
        ("tandem_sync_runs", 1),
        ("tandem_sync_events", 1),
        ("runtime.plugin_store", 1),
    ] {
        let line = rows.iter().find(|r| r.starts_with(table)).unwrap();
        assert_eq!(
            line.split_whitespace().nth(1),
            Some(n.to_string().as_str()),
            "{line}"
        );
    }
    assert!(stdout.contains("every table checks out"), "{stdout}");

    // The engine reads the same state from PostgreSQL as from the file.
    let pg = connect(&url);
    let copied = SyncStore::open(pg.clone()).unwrap();
    let original = SyncStore::open(Arc::new(redb::Database::open(&path).unwrap())).unwrap();
    assert_eq!(
        copied.links("crm-mkt").unwrap(),
        original.links("crm-mkt").unwrap()
    );
    assert_eq!(copied.links("crm-mkt").unwrap().len(), 2);
    assert_eq!(
        copied.runs("crm-mkt").unwrap(),
        original.runs("crm-mkt").unwrap()
    );
    assert_eq!(
        copied.events("crm-mkt", 1).unwrap(),
        original.events("crm-mkt", 1).unwrap()
    );
    assert_eq!(copied.events("crm-mkt", 1).unwrap().len(), 1);
    for side in [Side::A, Side::B] {
        assert_eq!(
            copied.cursor("crm-mkt", 0, side).unwrap(),
            original.cursor("crm-mkt", 0, side).unwrap()
        );
    }
    drop(original);

    // Again, into the now non-empty database: refused, nothing changed.
    let before = digests_in(&pg).unwrap();
    let out = run(&args, Some(&url));
    one_line_error(
        &out,
        &[
            "already holds tandem state",
            "tandem_kv",
            "nothing was written",
        ],
    );
    assert!(out.stdout.is_empty());
    assert_eq!(digests_in(&pg).unwrap(), before);
}

#[test]
fn a_bad_target_is_one_line_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    seed(&path);
    let from = path.to_str().unwrap();
    let args = [
        "state",
        "copy",
        "--from",
        from,
        "--to-env",
        "TANDEM_DATABASE_URL",
    ];
    // Nothing listens on that port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("postgres://tandem:{PASSWORD}@127.0.0.1:{port}/tandem");
    let out = run(&args, Some(&unreachable));
    one_line_error(&out, &["cannot reach", &format!("127.0.0.1:{port}")]);
    // Not a URL one can read.
    let garbled = format!("postgres://tandem:{PASSWORD}@127.0.0.1:notaport/tandem");
    one_line_error(&run(&args, Some(&garbled)), &["URL"]);
    // The same through --to.
    one_line_error(
        &run(&["state", "copy", "--from", from, "--to", &garbled], None),
        &["URL"],
    );
    // The variable is not set.
    one_line_error(&run(&args, None), &["TANDEM_DATABASE_URL", "not set"]);
}

#[test]
fn a_state_file_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    seed(&path);
    let url = PgServer::shared().create_database();
    // This test process holds the file, as a running daemon would.
    let held = redb::Database::create(&path).unwrap();
    let out = run(
        &[
            "state",
            "copy",
            "--from",
            path.to_str().unwrap(),
            "--to-env",
            "TANDEM_DATABASE_URL",
            "--tls",
            "disable",
        ],
        Some(&url),
    );
    one_line_error(&out, &["state.redb", "in use", "stop that process"]);
    drop(held);
    // Nothing reached the target: it takes a copy now.
    let pg = connect(&url);
    assert!(digests_in(&pg).unwrap().iter().all(|(_, d)| d.rows == 0));
}
