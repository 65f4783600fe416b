//! Helpers for tests that run plugins: one shared [`Runtime`] per test binary (compiling a
//! component in a debug build takes about a second, so each fixture is compiled once),
//! a resolver with test names, connections, and small HTTP servers on 127.0.0.1.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};

use futures::future::BoxFuture;
use tandem::runtime::types::{PullRequest, Value};
use tandem::runtime::{
    CallError, Connection, ConnectorClient, Credentials, Grant, Plugin, PluginSource, Resolve,
    Runtime, RuntimeOptions,
};

/// Names the test resolver knows; everything else is refused (tests never leave 127.0.0.1).
pub const BLOCKED_NAME: &str = "blocked.test";

/// Maps [`BLOCKED_NAME`] to 10.0.0.1 and `*.localhost.test` to 127.0.0.1.
#[derive(Debug, Default)]
pub struct TestResolver;

impl Resolve for TestResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            if host == BLOCKED_NAME {
                Ok(vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))])
            } else if host == "localhost.test" || host.ends_with(".localhost.test") {
                Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("test resolver does not know {host}"),
                ))
            }
        })
    }
}

struct Shared {
    runtime: Runtime,
    _dir: tempfile::TempDir,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = redb::Database::create(dir.path().join("state.redb")).expect("redb");
        let runtime = Runtime::new(RuntimeOptions {
            cache_dir: Some(dir.path().join("cache")),
            db: Arc::new(db).into(),
            resolver: Arc::new(TestResolver),
            pool: Default::default(),
        })
        .expect("runtime");
        Shared { runtime, _dir: dir }
    })
}

/// The runtime shared by the tests of this binary.
pub fn runtime() -> &'static Runtime {
    &shared().runtime
}

/// The loaded fixture or plugin built from cargo package `package` (loaded once).
pub async fn plugin(package: &str) -> Arc<Plugin> {
    type Cell = Arc<tokio::sync::OnceCell<Arc<Plugin>>>;
    static CELLS: OnceLock<Mutex<HashMap<String, Cell>>> = OnceLock::new();
    let cell = CELLS
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(package.to_owned())
        .or_default()
        .clone();
    cell.get_or_init(|| async {
        let path = tandem_plugins::wasm_path(package).unwrap_or_else(|e| panic!("{e}"));
        runtime()
            .load(PluginSource::Path(path), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .clone()
}

/// A connection with the given settings and grant, and no credentials.
pub fn connection(id: &str, settings: &[(&str, &str)], grant: Grant) -> Connection {
    Connection {
        id: id.to_owned(),
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        grant,
        credentials: Credentials::None,
        budget: None,
    }
}

/// A grant of `origins` with loopback allowed (test servers live on 127.0.0.1).
pub fn loopback_grant(origins: &[&str]) -> Grant {
    Grant {
        http: origins.iter().map(|s| s.to_string()).collect(),
        allow_loopback: true,
        ..Grant::default()
    }
}

/// Runs hostile command `command` with `arg` (see `tests/fixtures/hostile`) and returns
/// the text fields it reported.
pub async fn attack(
    client: &ConnectorClient,
    command: &str,
    arg: &str,
) -> Result<BTreeMap<String, String>, CallError> {
    let page = client
        .pull(&PullRequest {
            entity: command.to_owned(),
            container: None,
            cursor: Some(arg.to_owned()),
            full: false,
            page_size: 1,
        })
        .await?;
    let record = page.records.into_iter().next().expect("one record");
    Ok(record
        .fields
        .into_iter()
        .filter_map(|f| match f.value {
            Value::Text(t) => Some((f.name, t)),
            _ => None,
        })
        .collect())
}

/// A server answering every path with "hello" and counting the requests it gets.
pub async fn counting_server() -> (TestServer, Arc<std::sync::atomic::AtomicUsize>) {
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let router = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            "hello"
        }
    });
    (TestServer::start(router).await, hits)
}

/// An axum server on 127.0.0.1:0, shut down when dropped.
pub struct TestServer {
    /// Its address.
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    /// Serves `router` on a fresh port.
    pub async fn start(router: axum::Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Self {
            addr,
            shutdown: Some(tx),
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
