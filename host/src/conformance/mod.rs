//! The conformance kit behind `tandem plugin test`: runs a connector plugin through the
//! contract end to end, in the real sandbox, against an app account, and reports a pass,
//! fail or skip per check.
//!
//! Two kinds of target:
//!
//! * a **simulated account** ([`start_sandbox`]): the kit also drives the account's
//!   control API ([`sandbox_api`]) to edit and delete records as a user would and to
//!   revoke credentials; and it compares a full listing with the account's own record ids;
//! * a **base URL** with credentials ([`Target::base_url`]), e.g. a third party's test
//!   account: the checks that need the control API are listed as skipped ("needs
//!   --sandbox"), never silently dropped.
//!
//! The checks (see `plugins/README.md` §9 for the table authors read):
//! `describe`, `check` with good, wrong and (simulated Freshworks) restricted
//! credentials; per entity `schema` (well-known email, custom fields), `containers`,
//! `pull full` (every page, page sizes, cursors; complete against the simulated account;
//! again with pages of three),
//! `push create` / `find` (email in another case, marker, ids) / `push update` (new
//! version, stale `if-version` → `conflict`) / `push delete` (idempotent), `pull after
//! push` (incremental: the writes with their new versions, the deletion as a tombstone),
//! container membership, `pull after user edit` (simulated accounts); then error
//! mapping (429 with and without `Retry-After` → `rate-limited`, 503, truncated JSON and
//! a timeout → `transient`, revoked credentials → `unauthorized`), injected by the kit's
//! own proxy in front of the target's base URL ([`proxy`]), so against any target. The
//! records the kit creates are deleted again.
//!
//! ```no_run
//! # async fn demo(runtime: tandem::runtime::Runtime, plugin: std::sync::Arc<tandem::runtime::Plugin>)
//! # -> anyhow::Result<()> {
//! use tandem::conformance::{self, KitOptions};
//! let (sandbox, target) = conformance::start_sandbox(
//!     tandem_sandbox::AccountKind::FreshsalesSuite,
//!     conformance::kit_sandbox_options(),
//! ).await?;
//! let report = conformance::run(&runtime, &plugin, &target, &KitOptions::default()).await;
//! println!("{}", report.table(false));
//! sandbox.shutdown().await;
//! # Ok(()) }
//! ```

mod kit;
pub mod proxy;
pub mod recording;
pub mod report;
pub mod sandbox_api;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

#[cfg(feature = "sandbox")]
use tandem_sandbox::{AccountInfo, AccountKind, Sandbox, SandboxError, SandboxOptions};

pub use recording::{Recording, RecordingError};
pub use report::{Check, Outcome, Report};

use recording::{RecordedConnection, Tape};
pub use sandbox_api::{Fault, Flavor, SandboxApiError, SandboxControl};

#[cfg(feature = "sandbox")]
use crate::runtime::Secret;
use crate::runtime::{
    ConnectError, Connection, ConnectorClient, ConnectorLimits, Credentials, Grant, Plugin,
    Runtime, StorageGrant,
};

/// The note on checks that need a simulated account.
pub const NEEDS_SANDBOX: &str =
    "needs --sandbox (the simulated account's control API); not run against a plain base URL";

/// What the kit runs a plugin against.
#[derive(Clone)]
pub struct Target {
    /// For the report: `simulated freshsales account at http://…` or the base URL.
    pub label: String,
    /// The connection's settings (`base-url`, and whatever else the plugin reads).
    pub settings: BTreeMap<String, String>,
    /// Working credentials.
    pub credentials: Credentials,
    /// Credentials of a user without API permission (simulated Freshworks accounts).
    pub restricted_credentials: Option<Credentials>,
    /// Allow loopback addresses (simulated accounts, local test servers).
    pub allow_loopback: bool,
    /// Allow private network addresses.
    pub allow_private: bool,
    /// The simulated account's control API, when there is one.
    pub control: Option<SandboxControl>,
    /// Records the run, or answers it from a recording ([`record`], [`replay`]).
    tape: Option<Arc<Tape>>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("label", &self.label)
            .field("settings", &self.settings)
            .field("credentials", &self.credentials)
            .field("allow_loopback", &self.allow_loopback)
            .field("control", &self.control.is_some())
            .finish_non_exhaustive()
    }
}

impl Target {
    /// A plain base URL (the plugin's `base-url` setting) with credentials. Loopback is
    /// allowed when the URL's host is a loopback address or `localhost`.
    pub fn base_url(url: &str, credentials: Credentials) -> Self {
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let loopback = host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        Self {
            label: url.to_owned(),
            settings: [("base-url".to_owned(), url.to_owned())].into(),
            credentials,
            restricted_credentials: None,
            allow_loopback: loopback,
            allow_private: false,
            control: None,
            tape: None,
        }
    }

    /// A running simulated account: its API base as `base-url`, its credentials, its
    /// control API.
    #[cfg(feature = "sandbox")]
    pub fn simulated(info: &AccountInfo) -> Self {
        let (credentials, restricted) = match &info.credentials {
            tandem_sandbox::Credentials::ApiKey {
                api_key,
                restricted_api_key,
            } => (
                Credentials::ApiKey(Secret::new(api_key.clone())),
                Some(Credentials::ApiKey(Secret::new(restricted_api_key.clone()))),
            ),
            tandem_sandbox::Credentials::OAuth2 {
                token_url,
                client_id,
                client_secret,
                refresh_token,
            } => (
                Credentials::OAuth2 {
                    client_id: client_id.clone(),
                    client_secret: Secret::new(client_secret.clone()),
                    refresh_token: Secret::new(refresh_token.clone()),
                    token_url: Some(token_url.clone()),
                },
                None,
            ),
        };
        Self {
            label: format!("simulated {} account at {}", info.name, info.base_url),
            settings: [("base-url".to_owned(), info.api_base.clone())].into(),
            credentials,
            restricted_credentials: restricted,
            allow_loopback: true,
            allow_private: false,
            control: Some(SandboxControl::for_account(info)),
            tape: None,
        }
    }

    /// A connector client for this target with `credentials`: HTTP and credentials go to
    /// the origin of `base-url` only.
    pub fn connect(
        &self,
        runtime: &Runtime,
        plugin: &Arc<Plugin>,
        id: &str,
        credentials: Credentials,
    ) -> Result<ConnectorClient, ConnectError> {
        self.connect_with(runtime, plugin, id, credentials, ConnectorLimits::default())
    }

    /// [`Target::connect`] under `limits` (the timeout check waits less than the default).
    pub fn connect_with(
        &self,
        runtime: &Runtime,
        plugin: &Arc<Plugin>,
        id: &str,
        credentials: Credentials,
        limits: ConnectorLimits,
    ) -> Result<ConnectorClient, ConnectError> {
        let given = RecordedConnection {
            settings: self.settings.clone(),
            allow_loopback: self.allow_loopback,
            allow_private: self.allow_private,
        };
        // A recording keeps what each connection was given; a replay gives it again.
        let (given, tap) = match &self.tape {
            Some(tape) => {
                let given = tape.connection(id, given);
                let tap = tape.tap(id, &given.settings);
                (given, Some(tap))
            }
            None => (given, None),
        };
        runtime.connector_tapped(
            plugin,
            Connection {
                id: id.to_owned(),
                settings: given.settings,
                // Only the base URL's origin, for requests and credentials alike: a real
                // key must not go to another origin the plugin happens to request.
                grant: Grant {
                    http: vec!["setting:base-url".to_owned()],
                    allow_loopback: given.allow_loopback,
                    allow_private: given.allow_private,
                    storage: Some(StorageGrant::default()),
                    limits,
                    ..Grant::default()
                },
                credentials,
                budget: None,
            },
            tap,
        )
    }

    /// Whether this target answers from a recording.
    fn replaying(&self) -> bool {
        self.tape.as_ref().is_some_and(|t| t.replaying())
    }
}

impl Target {
    /// The same target through `proxy`: its `base-url` is the proxy's, on loopback.
    pub fn through(&self, proxy: &proxy::FaultProxy) -> Self {
        let mut t = self.clone();
        t.settings.insert("base-url".to_owned(), proxy.url());
        t.allow_loopback = true;
        t.control = None;
        t
    }
}

/// Options of one kit run.
#[derive(Debug, Clone)]
pub struct KitOptions {
    /// Entities to test; empty = every entity the plugin describes (on a simulated
    /// account: those the account serves, the others listed as skipped).
    pub entities: Vec<String>,
    /// Records the kit creates per entity (at least 3: one is updated, one edited by the
    /// user, one deleted).
    pub creates: usize,
}

impl Default for KitOptions {
    fn default() -> Self {
        Self {
            entities: Vec::new(),
            // Four, so that connectors that batch creates from a few records up (the
            // Freshworks bulk upsert) run that path too.
            creates: 4,
        }
    }
}

/// Options for a simulated account the kit runs against: a small seed, rate limits off
/// (the kit injects its own 429s), the system clock (bulk jobs complete in real time).
#[cfg(feature = "sandbox")]
pub fn kit_sandbox_options() -> SandboxOptions {
    SandboxOptions {
        sizes: tandem_sandbox::Sizes {
            freshsales: 150,
            freshsales_classic: 120,
            freshmarketer: 150,
            google: 150,
        },
        rate_limits_enabled: false,
        ..SandboxOptions::default()
    }
}

/// Starts the simulated account `kind` (only that one) and the kit's target for it.
#[cfg(feature = "sandbox")]
pub async fn start_sandbox(
    kind: AccountKind,
    options: SandboxOptions,
) -> Result<(Sandbox, Target), SandboxError> {
    let sandbox = Sandbox::start(SandboxOptions {
        kinds: vec![kind],
        ..options
    })
    .await?;
    let info = sandbox
        .account(kind)
        .ok_or_else(|| SandboxError::InvalidOption(format!("account {kind} did not start")))?;
    let target = Target::simulated(info);
    Ok((sandbox, target))
}

/// Parses a simulated account name (`freshsales`, `freshsales-classic`, `freshmarketer`,
/// `google`).
#[cfg(feature = "sandbox")]
pub fn account_kind(name: &str) -> Option<AccountKind> {
    AccountKind::ALL.into_iter().find(|k| k.name() == name)
}

/// Runs every check of the kit. Never fails as a whole: problems are rows of the report.
pub async fn run(
    runtime: &Runtime,
    plugin: &Arc<Plugin>,
    target: &Target,
    options: &KitOptions,
) -> Report {
    kit::Kit::new(runtime, plugin, target, options).run().await
}

/// [`run`], recording every HTTP exchange of the plugin and the kit's control-API calls,
/// with the target's credentials scrubbed (see [`recording`]); save the recording with
/// [`Recording::save`].
pub async fn record(
    runtime: &Runtime,
    plugin: &Arc<Plugin>,
    target: &Target,
    options: &KitOptions,
) -> (Report, Recording) {
    let mut credentials = vec![&target.credentials];
    credentials.extend(&target.restricted_credentials);
    let tape = Tape::recorder(&credentials);
    let mut taped = target.clone();
    taped.tape = Some(tape.clone());
    taped.control = taped.control.map(|c| c.taped(tape.clone()));
    let report = kit::Kit::new(runtime, plugin, &taped, options).run().await;
    let recording = tape.recording(plugin, target, options, &report);
    (report, recording)
}

/// A replay's findings.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The kit's report: the same checks as the recorded run, answered from the recording.
    pub report: Report,
    /// Recorded exchanges the plugin never asked for (one line each): a plugin that now
    /// sends fewer requests, or other ones.
    pub unused: Vec<String>,
}

/// Runs the kit's checks on `plugin` against `recording`, hermetically: the recorded
/// settings, nonce and options; every request answered from the recording (a request it
/// does not have fails the check that sent it, naming the request); no server, no
/// network, no waiting for the app's clock.
pub async fn replay(runtime: &Runtime, plugin: &Arc<Plugin>, recording: &Recording) -> Replay {
    let tape = Tape::player(recording);
    let main = recording
        .connection(kit::CONNECTION)
        .cloned()
        .unwrap_or_default();
    let stand_in = recording.credentials().stand_in();
    let target = Target {
        label: recording.label(),
        settings: main.settings,
        credentials: stand_in.clone(),
        restricted_credentials: recording.restricted_credentials().then_some(stand_in),
        allow_loopback: main.allow_loopback,
        allow_private: main.allow_private,
        control: recording
            .control()
            .map(|c| SandboxControl::replayed(c, tape.clone())),
        tape: Some(tape.clone()),
    };
    let options = KitOptions {
        entities: recording.entities().to_vec(),
        creates: recording.creates(),
    };
    let report = kit::Kit::new(runtime, plugin, &target, &options)
        .run()
        .await;
    Replay {
        report,
        unused: tape.unused(),
    }
}
