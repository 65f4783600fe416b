//! Simulated Google People API (Google Contacts) account, with its OAuth2 token endpoint.
//!
//! Follows `docs/google-people-api.md`; §9 of that document ("What the simulated account
//! reproduces") is the checklist, and every point it marks uncertain (docs/google-people-api.md §10) is a switch in
//! [`GoogleSettings`] with a documented default. The account serves on one server:
//! * the People API under `/v1/...` (connections, get, batchGet, create/update/delete,
//!   batch create/update/delete, search, contact groups and `members:modify`);
//! * the token endpoint `POST /token` (`grant_type=refresh_token`);
//! * the control API under `/_sandbox/` (generic part from [`crate::common::control`], the
//!   Google part in [`control`]).
//!
//! Layout: [`store`] holds the state and every operation as pure functions of
//! (state, request, now); [`api`] is the thin HTTP layer (auth, quotas, query parsing);
//! [`person`] the Person resource (masks, validation, projection, etags); [`cursor`] the
//! page and sync tokens; [`auth`] OAuth; [`quota`] the per-minute buckets; [`error`] the
//! Google error JSON; [`settings`] the switches; [`seeding`] the projection of the shared
//! seed population onto Person resources.

pub mod api;
pub mod auth;
pub mod control;
pub mod cursor;
pub mod error;
pub mod person;
pub mod quota;
pub mod seeding;
pub mod settings;
pub mod store;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use time::OffsetDateTime;

use crate::common::{self, Clock, ControlPlane};
use crate::{AccountContext, AccountInfo, AccountKind, Credentials, SandboxError, StartedAccount};

pub use auth::{OAuthClient, SCOPE_CONTACTS, SCOPE_CONTACTS_READONLY};
pub use error::ApiError;
pub use settings::GoogleSettings;
pub use store::{Profile, Store};

/// Client id of the seeded OAuth client.
pub const CLIENT_ID: &str = "tandem-sandbox-client.apps.googleusercontent.com";
/// Client secret of the seeded OAuth client.
pub const CLIENT_SECRET: &str = "GOCSPX-tandem-sandbox-secret";
/// The seeded refresh token (scope `contacts`).
pub const REFRESH_TOKEN: &str = "1//tandem-sandbox-refresh-token";
/// Email of the signed-in user (`people/me`).
pub const ACCOUNT_EMAIL: &str = "sandbox.user@tandem-sandbox.example";
/// Numeric id of the signed-in user.
pub const ACCOUNT_ID: &str = "104857600000000000001";

/// RFC 3339 with milliseconds in UTC, as Google writes timestamps.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).unwrap_or_default()
}

/// How to build a Google account.
#[derive(Debug, Clone)]
pub struct GoogleConfig {
    /// Seed of the shared data generator (same people as the Freshworks accounts).
    pub seed: u64,
    /// Contacts to seed.
    pub contacts: usize,
    /// Behaviour switches.
    pub settings: GoogleSettings,
}

impl Default for GoogleConfig {
    fn default() -> Self {
        GoogleConfig {
            seed: 1,
            contacts: 150,
            settings: GoogleSettings::default(),
        }
    }
}

/// Shared state of a running account: the store, its seeded baseline (for reset) and the
/// mutation gate used to test concurrent writes.
#[derive(Debug)]
pub struct Shared {
    store: Mutex<Store>,
    baseline: Mutex<Store>,
    in_flight: AtomicUsize,
    hold: tokio::sync::watch::Sender<bool>,
}

/// A simulated Google account (cheap to clone): state plus the sandbox clock.
#[derive(Debug, Clone)]
pub struct GoogleAccount {
    shared: Arc<Shared>,
    clock: Clock,
}

impl GoogleAccount {
    /// Build an account seeded per `config`, at the clock's current time.
    pub fn new(config: &GoogleConfig, clock: Clock) -> Self {
        let store = seeding::seeded_store(config, clock.now());
        let (hold, _) = tokio::sync::watch::channel(false);
        GoogleAccount {
            shared: Arc::new(Shared {
                baseline: Mutex::new(store.clone()),
                store: Mutex::new(store),
                in_flight: AtomicUsize::new(0),
                hold,
            }),
            clock,
        }
    }

    /// The sandbox clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Lock the state (a poisoned lock still holds consistent data: every operation
    /// validates before it mutates).
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.shared.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Restore the seeded state, settings included. Access tokens already issued stay valid
    /// so that running clients keep working; revoked refresh tokens are restored.
    pub fn reset(&self) {
        let baseline = self
            .shared
            .baseline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut store = self.store();
        let access = std::mem::take(&mut store.auth.access);
        *store = baseline;
        store.auth.access = access.into_iter().filter(|(_, g)| !g.revoked).collect();
    }

    /// Replace the data with `contacts` people of the shared population for `seed` (also
    /// the new reset baseline). The start settings and issued access tokens are kept.
    pub fn reseed(&self, seed: u64, contacts: usize) {
        let mut baseline = self
            .shared
            .baseline
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let config = GoogleConfig {
            seed,
            contacts,
            settings: baseline.settings.clone(),
        };
        *baseline = seeding::seeded_store(&config, self.clock.now());
        drop(baseline);
        self.reset();
    }

    /// Mutations currently being handled.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Hold (true) or release (false) mutations: a held mutation waits, counted as in
    /// flight, until released (to test concurrent-write behaviour deterministically).
    pub fn hold_mutations(&self, hold: bool) {
        self.shared.hold.send_replace(hold);
    }

    /// Whether mutations are held.
    pub fn mutations_held(&self) -> bool {
        *self.shared.hold.borrow()
    }

    /// The API router (`/v1/...`, `/token`), without instrumentation.
    pub fn api_router(&self) -> Router {
        api::router(self.clone())
    }

    /// The whole app: instrumented API plus the generic and Google control routes.
    pub fn app(&self, plane: &ControlPlane) -> Router {
        let api = common::instrument(self.api_router(), plane);
        common::mount(
            api,
            plane.clone(),
            control::router(self.clone(), plane.faults.clone()),
        )
    }

    /// A control plane whose reset restores this account.
    pub fn control_plane(&self) -> ControlPlane {
        let me = self.clone();
        ControlPlane::new(self.clock.clone(), move || me.reset())
    }
}

/// OAuth2 credentials of the seeded account for a server at `base_url`.
pub fn credentials(base_url: &str) -> Credentials {
    Credentials::OAuth2 {
        token_url: format!("{base_url}/token"),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        refresh_token: REFRESH_TOKEN.into(),
    }
}

/// Start the Google account of a [`crate::Sandbox`].
pub async fn start(ctx: &AccountContext<'_>) -> Result<StartedAccount, SandboxError> {
    let mut settings = ctx.options.google.clone();
    if ctx.options.rate_limits_enabled && settings.quotas.is_none() {
        settings.quotas = Some(settings::QuotaLimits::default());
    }
    let config = GoogleConfig {
        seed: ctx.options.seed,
        contacts: ctx.options.sizes.google,
        settings,
    };
    let account = GoogleAccount::new(&config, ctx.clock.clone());
    let plane = account.control_plane();
    let server = common::serve(ctx.addr, account.app(&plane)).await?;
    let base = server.base_url();
    Ok(StartedAccount {
        info: AccountInfo {
            kind: AccountKind::GooglePeople,
            name: AccountKind::GooglePeople.name().to_owned(),
            api_base: format!("{base}/v1"),
            control_url: format!("{base}{}", common::CONTROL_PREFIX),
            credentials: credentials(&base),
            base_url: base,
        },
        control: plane,
        server,
    })
}
