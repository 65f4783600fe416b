//! The throwaway server against real PostgreSQL binaries: these tests fail (never skip) where
//! the binaries are missing, with the one line saying what to install.

use std::net::TcpListener;
use std::process::Command;

use tandem_pgserver::{PgServer, PgServerError};

/// The database name at the end of a URL.
fn db_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

/// `pg_isready` against one database over TCP: exit status 0 = accepting connections.
fn ready(server: &PgServer, db: &str) -> bool {
    Command::new(server.bin_dir().join("pg_isready"))
        .args(["-h", "127.0.0.1", "-p", &server.port().to_string()])
        .args(["-U", "tandem", "-d", db])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn a_server_serves_separate_databases_over_loopback() {
    let server = PgServer::start().unwrap_or_else(|e| panic!("{e}"));
    let first = server.create_database();
    let second = server.create_database();
    assert_ne!(first, second);
    let prefix = format!("postgres://tandem@127.0.0.1:{}/", server.port());
    assert!(first.starts_with(&prefix), "{first}");
    assert_eq!(server.url(db_name(&first)), first);

    for url in [&first, &second] {
        assert!(
            ready(&server, db_name(url)),
            "{url} not accepting connections"
        );
        assert_eq!(server.psql(db_name(url), "select 1").unwrap(), "1");
    }
    // Each test's database is its own: a table made in one is absent from the other.
    server
        .psql(
            db_name(&first),
            "create table t (x int); insert into t values (7)",
        )
        .unwrap();
    assert_eq!(
        server.psql(db_name(&first), "select x from t").unwrap(),
        "7"
    );
    let err = server
        .psql(db_name(&second), "select x from t")
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");

    // The settings this crate owns are in force.
    assert_eq!(
        server
            .psql(db_name(&first), "show max_connections")
            .unwrap(),
        "200"
    );
    assert_eq!(server.psql(db_name(&first), "show fsync").unwrap(), "off");
    assert_eq!(
        server
            .psql(db_name(&first), "show listen_addresses")
            .unwrap(),
        "127.0.0.1"
    );
}

#[test]
fn stop_frees_the_port_and_start_again_serves_the_same_data() {
    let server = PgServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.create_database();
    let db = db_name(&url);
    server
        .psql(
            db,
            "create table kept (x int); insert into kept values (42)",
        )
        .unwrap();
    let port = server.port();
    let first_pid = server.pid().expect("a running server has a postmaster pid");

    server.stop().unwrap();
    assert_eq!(server.pid(), None);
    assert!(!ready(&server, db));
    drop(TcpListener::bind(("127.0.0.1", port)).expect("the stopped server's port is free"));

    server.start_again().unwrap();
    assert_eq!(server.port(), port);
    assert!(ready(&server, db));
    assert_eq!(server.psql(db, "select x from kept").unwrap(), "42");
    let second_pid = server.pid().unwrap();
    assert_ne!(second_pid, first_pid);

    server.restart().unwrap();
    assert_ne!(server.pid().unwrap(), second_pid);
    assert_eq!(server.psql(db, "select x from kept").unwrap(), "42");
}

#[test]
fn dropping_a_server_stops_it_and_removes_its_directory() {
    let server = PgServer::start().unwrap_or_else(|e| panic!("{e}"));
    let port = server.port();
    let data = server.data_dir();
    assert!(data.join("postmaster.pid").is_file());
    drop(server);
    assert!(!data.exists(), "{} left behind", data.display());
    drop(TcpListener::bind(("127.0.0.1", port)).expect("the dropped server's port is free"));
}

#[test]
fn the_shared_server_is_one_per_process() {
    let a = PgServer::shared();
    let b = PgServer::shared();
    assert!(std::ptr::eq(a, b));
    let url = a.create_database();
    assert_eq!(a.psql(db_name(&url), "select 1").unwrap(), "1");
}

#[test]
fn missing_binaries_give_one_line_saying_what_to_install() {
    let empty = tempfile::tempdir().unwrap();
    let err = PgServer::start_with_bin(empty.path()).unwrap_err();
    assert!(
        matches!(err, PgServerError::BinariesNotFound { .. }),
        "{err:?}"
    );
    let line = err.to_string();
    assert!(!line.contains('\n'), "{line}");
    assert!(line.contains(&empty.path().display().to_string()), "{line}");
    assert!(line.contains("apt-get install postgresql"), "{line}");
    assert!(line.contains("TANDEM_PG_BIN"), "{line}");
}
