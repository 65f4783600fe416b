//! `tandem demo`: the whole product in one command, against simulated accounts.
//!
//! It starts simulated Freshsales, Freshmarketer and Google accounts on loopback ports
//! (crate `tandem-sandbox`), seeded with overlapping people, points the connections of
//! `examples/demo.toml` at them, and runs that config's two syncs with the assembled host
//! ([`crate::app::Host`]): the initial loads, then a few edits made "as a user in the app"
//! through the accounts' control API, then the incremental runs that pick them up, with
//! the field-level decisions explained and the outcome read back from the apps.
//!
//! How the config reaches the accounts: the addresses come from `TANDEM_DEMO_*`
//! variables, set for this process only (through [`Env`], never the process
//! environment); the credentials — fake ones, valid only against these simulations — are
//! written to files under the demo's state directory, which the config references with
//! `{ file = ... }`. So after the demo, `tandem sync status|logs --config
//! examples/demo.toml` read its state. With `--serve` (fixed ports, which the config's
//! defaults name) the accounts keep running and a daemon over the demo's state serves the
//! operator console ([`DemoRun::serve_console`]) until Ctrl-C; `tandem sync` commands then
//! go through that daemon.
//!
//! [`run_demo`] is the library entry (the end-to-end test drives it, then inspects the
//! accounts); [`run`] is the command, which prints the story to stdout.

mod apps;
mod story;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use tandem_sandbox::{AccountKind, Credentials, Sandbox, SandboxOptions, Sizes};

use crate::app::daemon::Daemon;
use crate::app::state_file::DAEMON_COMMAND;
use crate::app::{Host, HostOptions};
use crate::app::{control, webhook};
use crate::config::{self, Catalog, Config, Env};
use crate::sync::RunReport;

pub use apps::{Apps, List, label};
pub use story::{
    CITY_IN_FRESHMARKETER, CUSTOMERS, Edits, MOBILE_IN_FRESHSALES, NEW_EMAIL, NEWSLETTER, Pair,
    TITLE_IN_FRESHMARKETER, TITLE_IN_FRESHSALES,
};

/// Freshsales <-> Freshmarketer, a sync of `examples/demo.toml`.
pub const SALES_MARKETING: &str = "sales-marketing";
/// Freshsales <-> Google Contacts.
pub const SALES_GOOGLE: &str = "sales-google";
/// With `--serve`, the accounts listen from this port on (the config's default
/// addresses): Freshsales on it, Freshmarketer on +2, Google on +3.
pub const SERVE_PORT: u16 = 7400;

/// The daemon's control token in the demo (`tandem run --config examples/demo.toml`).
pub const CONTROL_TOKEN: &str = "tandem-demo-control-token";

/// The demo config, embedded for when the binary runs away from the repository.
const EMBEDDED_CONFIG: &str = include_str!("../../../examples/demo.toml");

/// `tandem demo` options.
#[derive(Debug, Args)]
#[command(
    after_help = "It always runs examples/demo.toml (`--config` does not apply) and keeps its \
    state in examples/.tandem/demo/.\n\nExamples:\n  \
    tandem demo\n  \
    tandem demo --serve        # then keep the apps up and serve the operator console"
)]
pub struct DemoArgs {
    /// Seed of the generated people: the same seed tells the same story.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// After the story, keep the simulated apps running (until Ctrl-C) on fixed ports
    /// (7400, 7402, 7403) and serve the operator console over the demo's state (a daemon
    /// on the config's `[daemon] listen`, 127.0.0.1:7380).
    #[arg(long)]
    pub serve: bool,
}

/// How [`run_demo`] runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Seed of the generated people.
    pub seed: u64,
    /// Records per simulated account.
    pub sizes: Sizes,
    /// The config; `None`: `examples/demo.toml` (or the embedded copy).
    pub config: Option<PathBuf>,
    /// Where the state and credential files go instead of the config's `[state]`
    /// directory (tests).
    pub state_dir: Option<PathBuf>,
    /// Listen on [`SERVE_PORT`] and up instead of free ports.
    pub fixed_ports: bool,
    /// Draw progress bars on stderr (only ever on a terminal).
    pub progress: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            seed: 7,
            sizes: demo_sizes(),
            config: None,
            state_dir: None,
            fixed_ports: false,
            progress: std::io::stderr().is_terminal(),
        }
    }
}

/// A few thousand people across the three accounts.
pub fn demo_sizes() -> Sizes {
    Sizes {
        freshsales: 150,
        freshsales_classic: 0,
        freshmarketer: 1200,
        google: 800,
    }
}

/// What the demo did, with the accounts still running.
#[derive(Debug)]
pub struct DemoRun {
    /// The simulated accounts (stop them with [`Sandbox::shutdown`]).
    pub sandbox: Sandbox,
    /// A client for their control API.
    pub apps: Apps,
    /// The config file used.
    pub config: PathBuf,
    /// The state file.
    pub state: PathBuf,
    /// The edits made in the apps.
    pub edits: Edits,
    /// The initial runs, in order.
    pub initial: Vec<RunReport>,
    /// The incremental runs, in order.
    pub incremental: Vec<RunReport>,
    /// The variables that point the config at the accounts.
    pub env: Vec<(String, String)>,
    /// The config as the demo ran it (state and credential files relocated in tests).
    pub resolved: Config,
}

impl DemoRun {
    /// The host over the demo's state again, pointed at its still running accounts (the
    /// demo closes its own before returning).
    pub fn host(&self) -> anyhow::Result<Host> {
        self.host_as("tandem demo", self.resolved.clone())
    }

    fn host_as(&self, command: &str, config: Config) -> anyhow::Result<Host> {
        let mut opts = HostOptions::new(command);
        opts.env = self
            .env
            .iter()
            .fold(Env::process(), |env, (k, v)| env.with(k.clone(), v.clone()));
        Ok(Host::open(config, opts)?)
    }

    /// The daemon over the demo's state, as `tandem run --config examples/demo.toml` would
    /// start it: it polls the demo's syncs and serves the control API and the operator
    /// console on `listen` (the config's `[daemon] listen` unless given). It holds the
    /// state file as the daemon, so `tandem sync status|logs|run` in another terminal go
    /// through it. Stop it with [`Daemon::shutdown`].
    pub async fn serve_console(
        &self,
        listen: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<(Daemon, std::net::SocketAddr)> {
        let mut config = self.resolved.clone();
        if let Some(l) = listen {
            config.daemon.listen = l;
        }
        let host = self.host_as(DAEMON_COMMAND, config)?;
        let daemon = Daemon::start(std::sync::Arc::new(host))?;
        // As `tandem run`: the webhook receiver too, when a connection has a `webhook` table.
        if let Err(e) = webhook::serve(&daemon).await {
            daemon.abort().await;
            return Err(e.into());
        }
        match control::serve(&daemon).await {
            Ok(Some(addr)) => Ok((daemon, addr)),
            Ok(None) => {
                daemon.abort().await;
                bail!("the demo config has no [daemon] token: the console is not served")
            }
            Err(e) => {
                daemon.abort().await;
                Err(e.into())
            }
        }
    }
}

/// Runs `tandem demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let opts = DemoOptions {
        seed: args.seed,
        fixed_ports: args.serve,
        ..DemoOptions::default()
    };
    let mut out = std::io::stdout();
    let demo = run_demo(opts, &mut out).await?;
    if args.serve {
        // The console's daemon; without it (its port taken) the apps still serve.
        let daemon = match serve(&demo, None, &mut out).await {
            Ok(daemon) => Some(daemon),
            Err(e) => {
                writeln!(
                    out,
                    "\nThe operator console is not served: {e:#}.\nThe apps keep running until Ctrl-C; start the daemon yourself: tandem run --config {}",
                    demo.config.display()
                )?;
                None
            }
        };
        out.flush()?;
        super::run::stop_signal().await;
        if let Some(d) = daemon {
            writeln!(out, "Stopping the daemon and the simulated apps…")?;
            d.shutdown(Duration::from_secs(10)).await;
        }
    }
    demo.sandbox.shutdown().await;
    Ok(())
}

/// `--serve` after the story: the daemon over the demo's state serving the operator
/// console ([`DemoRun::serve_console`]), and where it is written to `out`.
pub async fn serve(
    demo: &DemoRun,
    listen: Option<std::net::SocketAddr>,
    out: &mut dyn Write,
) -> anyhow::Result<Daemon> {
    let (daemon, addr) = demo.serve_console(listen).await?;
    story::console(out, demo, addr)?;
    Ok(daemon)
}

/// The demo's story, written to `out`. Returns with the accounts still running.
pub async fn run_demo(opts: DemoOptions, out: &mut dyn Write) -> anyhow::Result<DemoRun> {
    let started = Instant::now();
    let file = config_file(opts.config.as_deref())?;
    story::title(out, opts.seed)?;
    let sandbox = Sandbox::start(SandboxOptions {
        seed: opts.seed,
        sizes: opts.sizes,
        kinds: vec![
            AccountKind::FreshsalesSuite,
            AccountKind::Freshmarketer,
            AccountKind::GooglePeople,
        ],
        base_port: opts.fixed_ports.then_some(SERVE_PORT),
        // The connectors keep to each app's published budget themselves; the simulated
        // apps need not refuse them as well.
        rate_limits_enabled: false,
        ..SandboxOptions::default()
    })
    .await
    .context("cannot start the simulated apps")?;
    let apps = Apps::new(&sandbox)?;
    story::accounts(out, &apps).await?;

    let vars = apps.env_vars();
    let mut env = Env::process();
    for (k, v) in &vars {
        env = env.with(k.clone(), v.clone());
    }
    // The state directory is the demo's own: credentials, state and compile cache.
    let mut config = parse_config(&file, &env)?;
    if let Some(dir) = &opts.state_dir {
        config.state.path = dir.join("state.redb");
        redirect_secrets(&mut config, dir);
    }
    write_secrets(&config, &apps)?;
    let problems = config::check(&config, &env, &Catalog::builtin());
    if !problems.is_empty() {
        return Err(one_line(&file, problems));
    }
    let state = config.state.path.clone();
    fresh_state(&state)?;
    let mut host_opts = HostOptions::new("tandem demo");
    host_opts.env = env;
    let host = Host::open(config.clone(), host_opts)?;
    story::config(out, &file, &host).await?;

    let mut initial = Vec::new();
    for (n, name) in [(3, SALES_MARKETING), (4, SALES_GOOGLE)] {
        let title = format!("Initial sync {name}");
        writeln!(out, "\n── {n}/6  {title}")?;
        let report = story::run_sync(out, &host, &apps, name, opts.progress).await?;
        story::completed(&report)?;
        initial.push(report);
    }
    let edits = story::edit_apps(out, &host, &apps).await?;
    writeln!(
        out,
        "\n── 6/6  Incremental runs: each reads only what changed since its last run"
    )?;
    let mut incremental = Vec::new();
    // Freshmarketer's new person reaches Freshsales first, then Google.
    for name in [SALES_MARKETING, SALES_GOOGLE] {
        writeln!(out, "\n{name}:")?;
        let report = story::run_sync(out, &host, &apps, name, opts.progress).await?;
        story::completed(&report)?;
        incremental.push(report);
    }
    story::decisions(out, &host, &apps, &edits, &incremental).await?;
    drop(host);
    let demo = DemoRun {
        sandbox,
        apps,
        config: file,
        state,
        edits,
        initial,
        incremental,
        env: vars,
        resolved: config,
    };
    story::epilogue(out, &demo, started.elapsed(), opts.fixed_ports)?;
    Ok(demo)
}

/// `examples/demo.toml` here or in the source tree, else the embedded copy written to
/// `.tandem/demo/demo.toml`.
fn config_file(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(f) = explicit {
        return Ok(f.to_path_buf());
    }
    let here = PathBuf::from("examples/demo.toml");
    if here.is_file() {
        return Ok(here);
    }
    let source_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo.toml");
    if source_tree.is_file() {
        return Ok(source_tree);
    }
    let dir = PathBuf::from(".tandem/demo");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let copy = dir.join("demo.toml");
    std::fs::write(&copy, EMBEDDED_CONFIG)
        .with_context(|| format!("cannot write {}", copy.display()))?;
    Ok(copy)
}

fn one_line(file: &Path, errors: Vec<config::ConfigError>) -> anyhow::Error {
    let first = errors.first().map(ToString::to_string).unwrap_or_default();
    anyhow::anyhow!(
        "{first} ({} problem(s) in all; `tandem config validate --config {}` lists them)",
        errors.len(),
        file.display()
    )
}

/// Pass 1 only: where the state directory is, before the credential files exist.
fn parse_config(file: &Path, env: &Env) -> anyhow::Result<Config> {
    let src = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the demo config {}", file.display()))?;
    config::parse_str(file, &src, env).map_err(|e| one_line(file, e))
}

/// The credential files the config references: what each account accepts. They hold
/// the simulations' fake credentials only; they are written readable by this user alone.
fn write_secrets(config: &Config, apps: &Apps) -> anyhow::Result<()> {
    use config::{CredentialsConfig as C, SecretRef, SecretSource};
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let mut add = |r: &'_ SecretRef, secret: &str| {
        if let SecretSource::File(p) = &r.source {
            files.push((p.clone(), secret.to_string()));
        }
    };
    for (name, conn) in &config.connections {
        let account = match name.as_str() {
            "freshsales" => &apps.freshsales,
            "freshmarketer" => &apps.freshmarketer,
            "google" => &apps.google,
            _ => continue,
        };
        match (&conn.credentials, &account.credentials) {
            (C::ApiKey(r), Credentials::ApiKey { api_key, .. }) => add(r, api_key),
            (
                C::OAuth2 {
                    client_secret,
                    refresh_token,
                    ..
                },
                Credentials::OAuth2 {
                    client_secret: secret,
                    refresh_token: token,
                    ..
                },
            ) => {
                add(client_secret, secret);
                add(refresh_token, token);
            }
            _ => {}
        }
    }
    if let Some(r) = &config.daemon.token {
        add(r, CONTROL_TOKEN);
    }
    for (path, secret) in files {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        write_private(&path, &secret)?;
    }
    Ok(())
}

/// A credential file of the demo config, moved into `dir` (the state directory, which
/// tests relocate).
fn redirected(path: &Path, dir: &Path) -> PathBuf {
    match path.file_name() {
        Some(name) => dir.join(name),
        None => path.to_path_buf(),
    }
}

/// Points the config's credential files at `dir` (tests relocate the state directory).
fn redirect_secrets(config: &mut Config, dir: &Path) {
    use config::{CredentialsConfig as C, SecretSource};
    let fix = |r: &mut config::SecretRef| {
        if let SecretSource::File(p) = &mut r.source {
            *p = redirected(p, dir);
        }
    };
    for conn in config.connections.values_mut() {
        match &mut conn.credentials {
            C::ApiKey(r) | C::Basic { password: r, .. } => fix(r),
            C::OAuth2 {
                client_secret,
                refresh_token,
                ..
            } => {
                fix(client_secret);
                fix(refresh_token);
            }
            C::None => {}
        }
    }
    if let Some(r) = &mut config.daemon.token {
        fix(r);
    }
}

fn write_private(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{secret}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The demo starts from nothing: its own state file goes (never one another process
/// holds: a locked file is refused first).
fn fresh_state(state: &Path) -> anyhow::Result<()> {
    if !state.exists() {
        return Ok(());
    }
    match crate::app::StateFile::open(state, "tandem demo") {
        Ok(f) => drop(f),
        Err(e) => bail!("{e}"),
    }
    std::fs::remove_file(state)
        .with_context(|| format!("cannot remove the previous demo state {}", state.display()))
}

/// How often progress bars are refreshed.
const PROGRESS_TICK: Duration = Duration::from_millis(100);
