//! Simulated Freshsales, Freshmarketer and Google People accounts.
//!
//! Each simulated account is an axum server on 127.0.0.1 that answers like the real API (see
//! `docs/sandbox.md` and the `reference/` documents it follows), holds seeded data, and carries a
//! control API under `/_sandbox/` for tests and operators (reset, seed, inspect, fault
//! injection, request counters, clock, edits "as a user in the app", token expiry).
//!
//! ```no_run
//! # async fn demo() -> Result<(), tandem_sandbox::SandboxError> {
//! use tandem_sandbox::{Sandbox, SandboxOptions};
//! let sandbox = Sandbox::start(SandboxOptions::default()).await?;
//! for a in sandbox.accounts() {
//!     println!("{} {} {}", a.name, a.api_base, a.credentials);
//! }
//! sandbox.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Modules: [`common`] is the simulator framework every account uses (clock, faults, counters,
//! server, generic control API); [`seed`] the deterministic data generator; [`freshworks`] the
//! Freshsales (Suite and Classic) and Freshmarketer simulators; `google` the Google People
//! simulator.

pub mod common;
pub mod freshworks;
pub mod google;
pub mod seed;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Serialize;
use time::OffsetDateTime;

use common::{Clock, ControlPlane, ServerHandle};

/// Errors starting or driving the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}; pick another port or stop what uses it")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// An option is out of range.
    #[error("invalid sandbox option: {0}")]
    InvalidOption(String),
}

/// The kinds of simulated account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// Freshsales Suite (Freshworks CRM): `/crm/sales/api/...`, contacts, no leads.
    FreshsalesSuite,
    /// Freshsales Classic: `/api/...`, leads and contacts.
    FreshsalesClassic,
    /// Freshmarketer in the Freshworks bundle: the CRM contact API at `/crm/sales/api/...`
    /// plus lists and subscription states, marketing calls at `/crm/marketer/mas/api/v1/...`,
    /// and the legacy standalone tree at `/mas/api/v1/...` (`fm-token`).
    Freshmarketer,
    /// Google People API (contacts), with its OAuth2 token endpoint.
    GooglePeople,
}

impl AccountKind {
    /// Every kind, in port order (`base_port + position`).
    pub const ALL: [AccountKind; 4] = [
        AccountKind::FreshsalesSuite,
        AccountKind::FreshsalesClassic,
        AccountKind::Freshmarketer,
        AccountKind::GooglePeople,
    ];

    /// Short name used in output and config (`freshsales`, `freshsales-classic`,
    /// `freshmarketer`, `google`).
    pub fn name(self) -> &'static str {
        match self {
            AccountKind::FreshsalesSuite => "freshsales",
            AccountKind::FreshsalesClassic => "freshsales-classic",
            AccountKind::Freshmarketer => "freshmarketer",
            AccountKind::GooglePeople => "google",
        }
    }

    /// Position in [`AccountKind::ALL`] (port offset).
    pub fn position(self) -> u16 {
        match self {
            AccountKind::FreshsalesSuite => 0,
            AccountKind::FreshsalesClassic => 1,
            AccountKind::Freshmarketer => 2,
            AccountKind::GooglePeople => 3,
        }
    }
}

impl fmt::Display for AccountKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a client authenticates against an account. Sandbox credentials are fake, printed on
/// purpose, and valid only against this sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Credentials {
    /// Freshworks API key, sent as `Authorization: Token token=<api_key>` (the standalone
    /// Freshmarketer tree takes `fm-token: <api_key>`).
    ApiKey {
        /// Key of the account administrator (full access).
        api_key: String,
        /// Key of a user without API permission: every call answers 403.
        restricted_api_key: String,
    },
    /// OAuth2 refresh-token grant (Google).
    OAuth2 {
        /// Token endpoint (`grant_type=refresh_token`).
        token_url: String,
        /// OAuth client id.
        client_id: String,
        /// OAuth client secret.
        client_secret: String,
        /// A valid refresh token.
        refresh_token: String,
    },
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::ApiKey { api_key, .. } => write!(f, "api_key={api_key}"),
            Credentials::OAuth2 {
                token_url,
                client_id,
                client_secret,
                refresh_token,
            } => write!(
                f,
                "token_url={token_url} client_id={client_id} client_secret={client_secret} refresh_token={refresh_token}"
            ),
        }
    }
}

/// What a client needs to reach one simulated account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountInfo {
    /// Which simulator.
    pub kind: AccountKind,
    /// [`AccountKind::name`].
    pub name: String,
    /// Server root, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub base_url: String,
    /// Root of the main API tree, e.g. `http://127.0.0.1:41234/crm/sales/api`.
    pub api_base: String,
    /// Root of the control API: `{base_url}/_sandbox`.
    pub control_url: String,
    /// Credentials accepted by the account.
    pub credentials: Credentials,
}

/// Records seeded per account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sizes {
    /// Freshsales Suite contacts.
    pub freshsales: usize,
    /// Freshsales Classic leads (and as many contacts again, a third of that).
    pub freshsales_classic: usize,
    /// Freshmarketer contacts.
    pub freshmarketer: usize,
    /// Google contacts.
    pub google: usize,
}

impl Default for Sizes {
    fn default() -> Self {
        Self {
            freshsales: 200,
            freshsales_classic: 120,
            freshmarketer: 200,
            google: 150,
        }
    }
}

/// Options of [`Sandbox::start`].
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Seed of the data generator: same seed, same data.
    pub seed: u64,
    /// Records per account.
    pub sizes: Sizes,
    /// Rate limits on (default) or off (benchmarks, bulk demos).
    pub rate_limits_enabled: bool,
    /// Address to bind; loopback by default.
    pub host: IpAddr,
    /// `None`: every account on a free port. `Some(p)`: account kind `k` listens on
    /// `p + k.position()` (freshsales, freshsales-classic, freshmarketer, google).
    pub base_port: Option<u16>,
    /// Which accounts to start (default: all four).
    pub kinds: Vec<AccountKind>,
    /// `None`: a system clock (wall time, advanceable). `Some(t)`: a manual clock frozen at
    /// `t` that moves only when advanced (deterministic tests).
    pub start_time: Option<OffsetDateTime>,
    /// Behaviour switches of the Freshworks simulators (documented defaults).
    pub freshworks: freshworks::Switches,
    /// Behaviour switches of the Google People simulator (documented defaults). With
    /// `rate_limits_enabled` and no `quotas` set, the default quota limits apply.
    pub google: google::GoogleSettings,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            sizes: Sizes::default(),
            rate_limits_enabled: true,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            base_port: None,
            kinds: AccountKind::ALL.to_vec(),
            start_time: None,
            freshworks: freshworks::Switches::default(),
            google: google::GoogleSettings::default(),
        }
    }
}

/// What [`Sandbox::start`] hands each account's start function.
#[derive(Debug)]
pub struct AccountContext<'a> {
    /// The sandbox options.
    pub options: &'a SandboxOptions,
    /// The shared clock.
    pub clock: Clock,
    /// Where this account must listen.
    pub addr: SocketAddr,
}

/// A running account: its public description, control handles and server.
#[derive(Debug)]
pub struct StartedAccount {
    /// Base URLs and credentials.
    pub info: AccountInfo,
    /// In-process handles of the generic control plane (faults, counters, clock, reset).
    pub control: ControlPlane,
    /// The server (shut down by [`Sandbox::shutdown`]).
    pub server: ServerHandle,
}

/// A set of running simulated accounts.
#[derive(Debug)]
pub struct Sandbox {
    clock: Clock,
    infos: Vec<AccountInfo>,
    accounts: Vec<StartedAccount>,
}

impl Sandbox {
    /// Start the accounts listed in `options.kinds`, seeded from `options.seed`. Must be called
    /// inside a tokio runtime.
    pub async fn start(options: SandboxOptions) -> Result<Sandbox, SandboxError> {
        let clock = match options.start_time {
            Some(t) => Clock::manual(t),
            None => Clock::system(),
        };
        let mut kinds = options.kinds.clone();
        kinds.sort();
        kinds.dedup();
        let mut accounts = Vec::with_capacity(kinds.len());
        for kind in kinds {
            let port = match options.base_port {
                Some(p) => p.checked_add(kind.position()).ok_or_else(|| {
                    SandboxError::InvalidOption(format!("base port {p} is too high"))
                })?,
                None => 0,
            };
            let ctx = AccountContext {
                options: &options,
                clock: clock.clone(),
                addr: SocketAddr::new(options.host, port),
            };
            let started = match kind {
                AccountKind::FreshsalesSuite
                | AccountKind::FreshsalesClassic
                | AccountKind::Freshmarketer => freshworks::start(&ctx, kind).await?,
                AccountKind::GooglePeople => google::start(&ctx).await?,
            };
            accounts.push(started);
        }
        let infos = accounts.iter().map(|a| a.info.clone()).collect();
        Ok(Sandbox {
            clock,
            infos,
            accounts,
        })
    }

    /// Every running account (kind, URLs, credentials).
    pub fn accounts(&self) -> &[AccountInfo] {
        &self.infos
    }

    /// The running account of `kind`, if started.
    pub fn account(&self, kind: AccountKind) -> Option<&AccountInfo> {
        self.infos.iter().find(|a| a.kind == kind)
    }

    /// In-process control handles of the account of `kind` (faults, counters, reset).
    pub fn control(&self, kind: AccountKind) -> Option<&ControlPlane> {
        self.accounts
            .iter()
            .find(|a| a.info.kind == kind)
            .map(|a| &a.control)
    }

    /// The clock shared by all accounts.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Stop every server (bounded; see [`common::server::SHUTDOWN_GRACE`]).
    pub async fn shutdown(self) {
        futures::future::join_all(self.accounts.into_iter().map(|a| a.server.shutdown())).await;
    }
}
