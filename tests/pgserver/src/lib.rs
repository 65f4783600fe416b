//! A throwaway PostgreSQL server for Tandem's tests.
//!
//! The PostgreSQL state backend is tested against a real server, never a mock: what the
//! fleet relies on (row locks taken with `FOR UPDATE SKIP LOCKED`, advisory locks,
//! `LISTEN`/`NOTIFY`, transaction isolation, a server that restarts under load) is exactly
//! what a mock would get wrong or leave out. This crate starts such a server from the
//! system's PostgreSQL server binaries (`initdb` + `pg_ctl`), in a fresh temporary
//! directory, listening on a free loopback port, with durability switched off (`fsync=off`)
//! because the data is thrown away.
//!
//! - [`PgServer::shared`]: one server per test process, started on first use; each test
//!   takes its own database on it with [`PgServer::create_database`].
//! - [`PgServer::start`]: a server the test owns, for the scenarios that stop, restart or
//!   signal it; dropping it stops it and removes its directory.
//!
//! The binaries are looked up in `TANDEM_PG_BIN`, then the highest
//! `/usr/lib/postgresql/*/bin` (Debian/Ubuntu), then `PATH`. Where there are none, starting
//! fails with one line saying what to install ([`PgServerError::BinariesNotFound`]): the
//! tests fail rather than skip, so that CI cannot pass without having run them. Run as root
//! on a machine with `apt-get`, the first lookup that finds none installs the
//! distribution's `postgresql` package first ([`apt::install`]).
//!
//! PostgreSQL refuses to run as root. When the tests run as root (containers, CI), the
//! server programs run as the `postgres` user (through `runuser`, or `setpriv`), and the
//! temporary directory is created under `/tmp`, traversable by that user and owned by it.

pub mod apt;

use std::ffi::OsString;
use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// The superuser `initdb` creates; every URL connects as this role (trust authentication).
pub const SUPERUSER: &str = "tandem";

/// The operating-system user the server runs as when the tests run as root.
const SERVER_OS_USER: &str = "postgres";

/// How many fresh ports to try when the one picked was taken before the server bound it.
const PORT_ATTEMPTS: usize = 5;

/// Seconds `pg_ctl` waits for a start or stop to complete.
const PG_CTL_TIMEOUT_SECS: &str = "60";

/// Why a server could not be found, started, stopped or used. Each message is one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgServerError {
    /// No directory holding `initdb` and `pg_ctl`.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) not found {looked}: install the distribution's `postgresql` package (Debian/Ubuntu: apt-get install postgresql) or set TANDEM_PG_BIN to their directory"
    )]
    BinariesNotFound {
        /// Where they were looked for, e.g. `in TANDEM_PG_BIN=/opt/pg/bin`.
        looked: String,
    },
    /// Running as root with no unprivileged user to run the server as.
    #[error(
        "PostgreSQL refuses to run as root and there is no `postgres` user to run it as: create one (useradd --system postgres) or run the tests as an ordinary user"
    )]
    NoServerUser,
    /// A PostgreSQL program failed; `detail` is its most telling line.
    #[error("{step} failed: {detail}")]
    Step {
        /// What was being done, e.g. `initdb` or `pg_ctl start`.
        step: String,
        /// The program's error line and exit status.
        detail: String,
    },
    /// A file-system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PgServerError {
    let what = what.into();
    move |source| PgServerError::Io { what, source }
}

/// The directory holding the PostgreSQL server binaries: `TANDEM_PG_BIN` if set, else the
/// highest `/usr/lib/postgresql/*/bin` holding `initdb` and `pg_ctl`, else the directory
/// of `pg_ctl` on `PATH` (symbolic links followed, so that Debian's links in
/// `/usr/local/bin` or `/usr/bin` lead to the real directory).
pub fn find_bin_dir() -> Result<PathBuf, PgServerError> {
    match look_up_bin_dir() {
        Err(PgServerError::BinariesNotFound { looked })
            if std::env::var_os("TANDEM_PG_BIN").is_none() =>
        {
            match apt::install(&["postgresql"]) {
                Ok(()) => look_up_bin_dir(),
                Err(why) => Err(PgServerError::BinariesNotFound {
                    looked: format!("{looked} ({why})"),
                }),
            }
        }
        found => found,
    }
}

fn look_up_bin_dir() -> Result<PathBuf, PgServerError> {
    if let Some(dir) = std::env::var_os("TANDEM_PG_BIN").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if holds_server_binaries(&dir) {
            Ok(dir)
        } else {
            Err(PgServerError::BinariesNotFound {
                looked: format!("in TANDEM_PG_BIN={}", dir.display()),
            })
        };
    }
    if let Some(dir) = highest_versioned_bin(Path::new("/usr/lib/postgresql")) {
        return Ok(dir);
    }
    if let Some(dir) = on_path() {
        return Ok(dir);
    }
    Err(PgServerError::BinariesNotFound {
        looked: "in /usr/lib/postgresql/*/bin or on PATH".to_owned(),
    })
}

fn holds_server_binaries(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()
}

/// `<base>/<version>/bin` for the highest version (compared numerically: 9.6 < 10 < 15)
/// that holds the server binaries.
fn highest_versioned_bin(base: &Path) -> Option<PathBuf> {
    let mut found: Vec<(Vec<u32>, PathBuf)> = fs::read_dir(base)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            let bin = entry.path().join("bin");
            holds_server_binaries(&bin).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|dir| {
        let pg_ctl = dir.join("pg_ctl");
        if !pg_ctl.is_file() {
            return None;
        }
        let real = fs::canonicalize(&pg_ctl)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        match real {
            Some(real) if holds_server_binaries(&real) => Some(real),
            _ => holds_server_binaries(&dir).then_some(dir),
        }
    })
}

/// Runs the server programs as an unprivileged user (we are root).
#[derive(Debug, Clone)]
struct RunAs {
    /// `runuser -u postgres --` or `setpriv --reuid=... --regid=... --init-groups`.
    prefix: Vec<OsString>,
    uid: u32,
    gid: u32,
}

impl RunAs {
    /// `None` when not root: the programs then run as we do.
    fn detect() -> Result<Option<RunAs>, PgServerError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(None);
        }
        let uid = id_of("-u").ok_or(PgServerError::NoServerUser)?;
        let gid = id_of("-g").ok_or(PgServerError::NoServerUser)?;
        let prefix: Vec<OsString> = if let Some(runuser) = find_program("runuser") {
            vec![
                runuser.into(),
                "-u".into(),
                SERVER_OS_USER.into(),
                "--".into(),
            ]
        } else if let Some(setpriv) = find_program("setpriv") {
            vec![
                setpriv.into(),
                format!("--reuid={uid}").into(),
                format!("--regid={gid}").into(),
                "--init-groups".into(),
            ]
        } else {
            return Err(PgServerError::Step {
                step: "dropping root for the PostgreSQL server".to_owned(),
                detail: "neither runuser nor setpriv (util-linux) is installed".to_owned(),
            });
        };
        Ok(Some(RunAs { prefix, uid, gid }))
    }
}

/// `id -u postgres` / `id -g postgres` (through NSS, like every other tool).
fn id_of(flag: &str) -> Option<u32> {
    let out = Command::new("id")
        .args([flag, SERVER_OS_USER])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// A program on `PATH` or in the system directories root's `PATH` may lack.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// How the server's programs are run: where they are, as whom, and from where.
#[derive(Debug)]
struct Tools {
    bin: PathBuf,
    run_as: Option<RunAs>,
    /// The temporary directory: the data directory, the socket and the log live here.
    root: PathBuf,
}

impl Tools {
    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn log(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// A server program (`initdb`, `pg_ctl`), run as the server's user.
    fn server(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut cmd = match &self.run_as {
            None => Command::new(program),
            Some(run_as) => {
                let mut cmd = Command::new(&run_as.prefix[0]);
                cmd.args(&run_as.prefix[1..]).arg(program);
                cmd
            }
        };
        self.hygiene(&mut cmd);
        cmd
    }

    /// A client program (`createdb`, `psql`, `pg_isready`): from the server's directory
    /// when it is there, else from `PATH`. Clients may run as root.
    fn client(&self, program: &str) -> Command {
        let beside = self.bin.join(program);
        let mut cmd = Command::new(if beside.is_file() {
            beside.into_os_string()
        } else {
            program.into()
        });
        self.hygiene(&mut cmd);
        cmd
    }

    /// The caller's `PG*` variables (PGHOST, PGPORT, PGDATA, PGOPTIONS, ...) must not reach
    /// the throwaway server or its clients, and English messages keep errors readable.
    fn hygiene(&self, cmd: &mut Command) {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                cmd.env_remove(key);
            }
        }
        cmd.env("LC_ALL", "C")
            .current_dir(&self.root)
            .stdin(Stdio::null());
    }

    fn pg_ctl(&self, action: &str, mode: Option<&str>) -> Command {
        let mut cmd = self.server("pg_ctl");
        cmd.arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.log())
            .args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "-s"]);
        if let Some(mode) = mode {
            cmd.args(["-m", mode]);
        }
        cmd.arg(action);
        cmd
    }

    /// Writes the settings this crate owns (see `tandem.conf` in the data directory).
    fn write_settings(&self, port: u16) -> Result<(), PgServerError> {
        let socket_dir = self.root.display().to_string().replace('\'', "''");
        let settings = format!(
            "# Written by tandem-pgserver: a throwaway server for tests.\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{socket_dir}'\n\
             # The fleet tests run three daemons, each with a connection pool.\n\
             max_connections = 200\n\
             shared_buffers = '16MB'\n\
             # The data is thrown away: no durability.\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n"
        );
        let path = self.data().join("tandem.conf");
        fs::write(&path, settings).map_err(io_err(format!("writing {}", path.display())))?;
        self.give_to_server_user(&path)
    }

    fn give_to_server_user(&self, path: &Path) -> Result<(), PgServerError> {
        match &self.run_as {
            None => Ok(()),
            Some(run_as) => {
                std::os::unix::fs::chown(path, Some(run_as.uid), Some(run_as.gid)).map_err(io_err(
                    format!("giving {} to {SERVER_OS_USER}", path.display()),
                ))
            }
        }
    }

    /// Starts the server; on failure, the log's telling line since this attempt.
    fn start(&self, step: &str) -> Result<(), StartError> {
        let log_len = fs::metadata(self.log()).map(|m| m.len()).unwrap_or(0);
        match run(self.pg_ctl("start", None), step) {
            Ok(_) => Ok(()),
            Err(err) => {
                let log = fs::read(self.log()).unwrap_or_default();
                let new = String::from_utf8_lossy(log.get(log_len as usize..).unwrap_or(&[]));
                let port_taken =
                    new.contains("could not bind") || new.contains("Address already in use");
                // A start that timed out may have left a postmaster behind.
                let _ = run(self.pg_ctl("stop", Some("immediate")), "pg_ctl stop");
                let err = match telling_line(&new) {
                    Some(line) => PgServerError::Step {
                        step: step.to_owned(),
                        detail: format!("{line} (log: {})", self.log().display()),
                    },
                    None => err,
                };
                Err(StartError { err, port_taken })
            }
        }
    }
}

struct StartError {
    err: PgServerError,
    port_taken: bool,
}

/// Runs a program to completion; its stdout on success, else its telling line.
fn run(mut cmd: Command, step: &str) -> Result<String, PgServerError> {
    let out = cmd.output().map_err(io_err(format!(
        "cannot run {step} ({:?})",
        cmd.get_program()
    )))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = telling_line(&stderr)
        .or_else(|| telling_line(&stdout))
        .unwrap_or_else(|| "no output".to_owned());
    Err(PgServerError::Step {
        step: step.to_owned(),
        detail: format!("{line} ({})", out.status),
    })
}

/// The first line that reports an error, else the last non-empty line.
fn telling_line(output: &str) -> Option<String> {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .find(|l| {
            ["FATAL", "PANIC", "ERROR", "error:", "could not"]
                .iter()
                .any(|m| l.contains(m))
        })
        .or(lines.last())
        .map(|l| l.to_string())
}

/// A free loopback port: bound, read, released. Another process may take it before the
/// server binds it; [`PgServer::start`] then retries on a fresh one.
fn free_port() -> Result<u16, PgServerError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io_err("finding a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io_err("finding a free port"))?
        .port())
}

/// Names of databases created by this process: unique on any server it started.
static DATABASES: AtomicU64 = AtomicU64::new(0);

/// A running throwaway PostgreSQL server. See the crate documentation.
#[derive(Debug)]
pub struct PgServer {
    tools: Tools,
    port: u16,
    /// The detached process that stops the server and removes its directory once this
    /// process has exited (see [`PgServer::shared`]); killed by `Drop`, which does that itself.
    watcher: Mutex<Option<Child>>,
    /// Removed last, on drop, once the server is stopped.
    _dir: tempfile::TempDir,
}

impl PgServer {
    /// Starts a server of the test's own from the binaries [`find_bin_dir`] finds. Dropping
    /// it stops it and removes its directory.
    pub fn start() -> Result<PgServer, PgServerError> {
        Self::launch(find_bin_dir()?)
    }

    /// Starts a server from the binaries in `bin_dir`, which must hold `initdb` and `pg_ctl`.
    pub fn start_with_bin(bin_dir: impl Into<PathBuf>) -> Result<PgServer, PgServerError> {
        let bin = bin_dir.into();
        if !holds_server_binaries(&bin) {
            return Err(PgServerError::BinariesNotFound {
                looked: format!("in {}", bin.display()),
            });
        }
        Self::launch(bin)
    }

    /// The server of this test process, started on first use; each test creates its own
    /// database on it ([`PgServer::create_database`]). Panics with the one-line error
    /// when it cannot start (the tests fail; they never skip).
    ///
    /// A static is never dropped, so this server is stopped by the watcher every server
    /// starts with: a detached shell (`setsid`, so that a Ctrl-C or a signal to the test's
    /// process group does not take it down too) that polls this process once a second and,
    /// once it has exited — normally, by panic, or killed — runs `pg_ctl stop -m immediate`
    /// and removes the directory.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(|| PgServer::start().unwrap_or_else(|err| panic!("{err}")))
    }

    fn launch(bin: PathBuf) -> Result<PgServer, PgServerError> {
        let run_as = RunAs::detect()?;
        // The server's user must be able to reach the directory: /tmp rather than a
        // TMPDIR that may sit under root's home.
        let base = if run_as.is_some() {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("tandem-pg-")
            .permissions(fs::Permissions::from_mode(0o755))
            .tempdir_in(&base)
            .map_err(io_err(format!(
                "creating a temporary directory in {}",
                base.display()
            )))?;
        let tools = Tools {
            bin,
            run_as,
            root: dir.path().to_path_buf(),
        };
        tools.give_to_server_user(&tools.root)?;

        let mut initdb = tools.server("initdb");
        initdb
            .arg("-D")
            .arg(tools.data())
            .arg(format!("--username={SUPERUSER}"))
            .args(["--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C"]);
        run(initdb, "initdb")?;
        let conf = tools.data().join("postgresql.conf");
        fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| f.write_all(b"\ninclude = 'tandem.conf'\n"))
            .map_err(io_err(format!("writing {}", conf.display())))?;

        let mut attempt = 0;
        let port = loop {
            attempt += 1;
            let port = free_port()?;
            tools.write_settings(port)?;
            match tools.start("pg_ctl start") {
                Ok(()) => break port,
                Err(e) if e.port_taken && attempt < PORT_ATTEMPTS => continue,
                Err(e) => return Err(e.err),
            }
        };
        let server = PgServer {
            tools,
            port,
            watcher: Mutex::new(None),
            _dir: dir,
        };
        let watcher = server.spawn_watcher()?;
        *server.watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(watcher);
        Ok(server)
    }

    /// See [`PgServer::shared`]. Arguments go in as positional parameters, so no path is
    /// ever quoted into the script.
    fn spawn_watcher(&self) -> Result<Child, PgServerError> {
        const SCRIPT: &str = r#"pid=$1; root=$2; shift 2
while kill -0 "$pid" 2>/dev/null; do sleep 1; done
"$@" -D "$root/data" -w -s -m immediate stop >/dev/null 2>&1
rm -rf "$root""#;
        let mut argv: Vec<OsString> = vec![
            "sh".into(),
            "-c".into(),
            SCRIPT.into(),
            "tandem-pgserver-watcher".into(),
            std::process::id().to_string().into(),
            self.tools.root.clone().into(),
        ];
        if let Some(run_as) = &self.tools.run_as {
            argv.extend(run_as.prefix.iter().cloned());
        }
        argv.push(self.tools.bin.join("pg_ctl").into());
        let spawn = |program: &OsString, args: &[OsString], new_group: bool| {
            let mut cmd = Command::new(program);
            cmd.args(args)
                .current_dir("/")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if new_group {
                std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            }
            cmd.spawn()
        };
        match find_program("setsid") {
            Some(setsid) => spawn(&setsid.into_os_string(), &argv, false),
            // Without setsid, at least leave the test's process group.
            None => spawn(&argv[0], &argv[1..], true),
        }
        .map_err(io_err("starting the PostgreSQL watcher process"))
    }

    /// The loopback port the server listens on; the same across [`PgServer::start_again`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's process id (from `postmaster.pid`), for tests that signal it;
    /// `None` while the server is stopped.
    pub fn pid(&self) -> Option<u32> {
        let pidfile = fs::read_to_string(self.tools.data().join("postmaster.pid")).ok()?;
        pidfile.lines().next()?.trim().parse().ok()
    }

    /// The directory holding the server binaries in use.
    pub fn bin_dir(&self) -> &Path {
        &self.tools.bin
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.tools.data()
    }

    /// `postgres://tandem@127.0.0.1:<port>/<db>` (trust authentication: no password).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a fresh, uniquely named database and returns its URL. Panics with the
    /// one-line error when it cannot.
    pub fn create_database(&self) -> String {
        self.try_create_database()
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// [`PgServer::create_database`], returning the error.
    pub fn try_create_database(&self) -> Result<String, PgServerError> {
        let name = format!(
            "tandem_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        let mut createdb = self.tools.client("createdb");
        self.tcp_args(&mut createdb).arg(&name);
        run(createdb, "createdb")?;
        Ok(self.url(&name))
    }

    /// Runs `sql` with `psql` in database `db` (stopping at the first error) and returns
    /// its unaligned, tuples-only output, trimmed: `select 1` gives `1`.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, PgServerError> {
        let mut psql = self.tools.client("psql");
        self.tcp_args(&mut psql).args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db,
            "-c",
            sql,
        ]);
        Ok(run(psql, "psql")?.trim().to_owned())
    }

    fn tcp_args<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            SUPERUSER,
        ])
    }

    /// Stops the server (`pg_ctl stop -m fast`: connections are closed, open transactions
    /// rolled back) and waits until it has released its port.
    pub fn stop(&self) -> Result<(), PgServerError> {
        run(self.tools.pg_ctl("stop", Some("fast")), "pg_ctl stop").map(drop)
    }

    /// Starts a stopped server again on the same directory and port, its databases intact
    /// (the "database restarted under load" scenario).
    pub fn start_again(&self) -> Result<(), PgServerError> {
        self.tools.start("pg_ctl start").map_err(|e| e.err)
    }

    /// Stops the running server (fast: clients are disconnected) and starts it again.
    pub fn restart(&self) -> Result<(), PgServerError> {
        run(self.tools.pg_ctl("restart", Some("fast")), "pg_ctl restart").map(drop)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Immediate: the data is thrown away, so nothing needs a clean shutdown. Errors are
        // moot (the server may already be stopped); the directory goes with `_dir`.
        let _ = run(self.tools.pg_ctl("stop", Some("immediate")), "pg_ctl stop");
        let watcher = self.watcher.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut watcher) = watcher.take() {
            let _ = watcher.kill();
            let _ = watcher.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        let base = tempfile::tempdir().unwrap();
        for version in ["9.6", "10", "15", "16"] {
            let bin = base.path().join(version).join("bin");
            fs::create_dir_all(&bin).unwrap();
            if version != "16" {
                fs::write(bin.join("initdb"), "").unwrap();
                fs::write(bin.join("pg_ctl"), "").unwrap();
            }
        }
        fs::create_dir_all(base.path().join("not-a-version/bin")).unwrap();
        assert_eq!(
            highest_versioned_bin(base.path()),
            Some(base.path().join("15/bin")),
            "16 lacks the binaries; 15 > 10 > 9.6"
        );
    }

    #[test]
    fn telling_line_prefers_the_error() {
        let out =
            "waiting\nFATAL:  could not bind IPv4 address\nHINT: is another postmaster running?\n";
        assert_eq!(
            telling_line(out).as_deref(),
            Some("FATAL:  could not bind IPv4 address")
        );
        assert_eq!(telling_line("a\nb\n\n").as_deref(), Some("b"));
        assert_eq!(telling_line(""), None);
    }
}
