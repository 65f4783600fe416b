//! Simulated Freshworks accounts: Freshsales Suite, Freshsales Classic and Freshmarketer,
//! following `docs/freshworks-api.md` (its §12's uncertain facts are [`Switches`]).
//!
//! One server per account. Trees served:
//! * Suite and Freshmarketer: the CRM API under `/crm/sales/api/...` (contacts; no leads:
//!   `/leads/...` answers 404);
//! * Classic: the CRM API under `/api/...` with leads (and contacts);
//! * Freshmarketer also: marketing calls under `/crm/marketer/mas/api/v1/...` and the legacy
//!   standalone tree `/mas/api/v1/...` authenticated with `fm-token` ([`marketer`]);
//! * every account: its control API under `/_sandbox/...` ([`control`]), including
//!   workflow webhooks on record create/update ([`workflows`]).
//!
//! Every API path also accepts a `.json` suffix. Layout: [`store`] holds the state and all
//! operations; [`api`] parses and renders HTTP; [`gate`] does auth and rate limits;
//! [`render`] the JSON shapes; [`fields`] metadata and reference data.

pub mod api;
pub mod control;
pub mod error;
pub mod fields;
pub mod gate;
pub mod marketer;
pub mod render;
pub mod store;
pub mod switches;
pub mod workflows;

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use axum::Router;
use axum::extract::Request;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use time::{OffsetDateTime, UtcOffset};
use tower::Layer;

use crate::common::{self, Clock, ControlPlane};
use crate::{AccountContext, AccountInfo, AccountKind, Credentials, SandboxError, StartedAccount};

pub use error::ApiError;
pub use fields::{Entity, Flavor};
pub use store::Store;
pub use switches::Switches;

/// API keys of an account.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Administrator key (full access).
    pub api_key: String,
    /// Key of a user without API permission (403).
    pub restricted_api_key: String,
    /// All keys refused while true (control `auth/revoke`).
    pub revoked: bool,
}

/// Rate-limit windows (fixed clock hour and clock minute).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RateWindows {
    /// Unix hour of `hour_count`.
    pub hour: i64,
    /// Requests in that hour.
    pub hour_count: u32,
    /// Unix minute of `minute_count`.
    pub minute: i64,
    /// Requests in that minute.
    pub minute_count: u32,
}

/// What seeds the account on start and reset.
#[derive(Debug, Clone, Copy)]
pub struct SeedParams {
    /// Generator seed.
    pub seed: u64,
    /// Records (Classic: leads; contacts are a third of that).
    pub count: usize,
}

/// One simulated Freshworks account: state plus the handles the HTTP layers share.
#[derive(Debug)]
pub struct Account {
    /// Kind.
    pub kind: AccountKind,
    /// Flavour facts.
    pub flavor: Flavor,
    /// Shared sandbox clock.
    pub clock: Clock,
    seed: Mutex<SeedParams>,
    initial_switches: Switches,
    switches: RwLock<Switches>,
    store: Mutex<Store>,
    keys: Mutex<Keys>,
    original_keys: Keys,
    rate: Mutex<RateWindows>,
    key_counter: Mutex<u64>,
    /// Workflow webhooks (control API).
    pub workflows: workflows::Workflows,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // State stays usable after a panicking handler: the sandbox is a test tool.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A 22-character URL-safe key, like real Freshworks API keys.
fn make_key(seed: u64, salt: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (0..22)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Account {
    /// A seeded account of `kind` (a Freshworks kind).
    pub fn new(kind: AccountKind, clock: Clock, seed: SeedParams, switches: Switches) -> Account {
        let salt = kind.position() as u64 + 1;
        let keys = Keys {
            api_key: make_key(seed.seed, salt),
            restricted_api_key: make_key(seed.seed, salt + 100),
            revoked: false,
        };
        let store = Store::seeded(kind, seed.seed, seed.count, clock.now(), &switches);
        Account {
            kind,
            flavor: Flavor::of(kind),
            clock,
            seed: Mutex::new(seed),
            initial_switches: switches.clone(),
            switches: RwLock::new(switches),
            store: Mutex::new(store),
            original_keys: keys.clone(),
            keys: Mutex::new(keys),
            rate: Mutex::new(RateWindows::default()),
            key_counter: Mutex::new(0),
            workflows: workflows::Workflows::default(),
        }
    }

    /// Current switches.
    pub fn switches(&self) -> Switches {
        self.switches
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replace the switches.
    pub fn set_switches(&self, s: Switches) {
        *self.switches.write().unwrap_or_else(|e| e.into_inner()) = s;
    }

    /// Account time zone (switch override or the flavour's).
    pub fn offset(&self, sw: &Switches) -> UtcOffset {
        sw.utc_offset
            .as_deref()
            .and_then(switches::parse_offset)
            .unwrap_or(self.flavor.offset)
    }

    /// Rendering settings.
    pub fn ctx(&self, sw: &Switches) -> render::Ctx {
        render::Ctx {
            offset: self.offset(sw),
            dnd: sw.do_not_disturb_field,
        }
    }

    /// Run `f` on the store after processing due bulk jobs.
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store, &Switches, OffsetDateTime) -> R) -> R {
        let sw = self.switches();
        let now = self.clock.now();
        let mut st = lock(&self.store);
        st.run_due_jobs(&sw, now);
        f(&mut st, &sw, now)
    }

    /// Current keys.
    pub fn keys(&self) -> Keys {
        lock(&self.keys).clone()
    }

    /// Refuse every key (control API).
    pub fn revoke_keys(&self) {
        lock(&self.keys).revoked = true;
    }

    /// Issue a new administrator key; the old one stops working. Returns the new key.
    pub fn rotate_key(&self) -> String {
        let n = {
            let mut c = lock(&self.key_counter);
            *c += 1;
            *c
        };
        let seed = lock(&self.seed).seed;
        let key = make_key(seed, 1000 + n + self.kind.position() as u64 * 10_000);
        let mut k = lock(&self.keys);
        k.api_key = key.clone();
        k.revoked = false;
        key
    }

    /// Back to the original keys, not revoked.
    pub fn restore_keys(&self) {
        *lock(&self.keys) = self.original_keys.clone();
    }

    /// Count one request against the rate windows. `None` when rate limits are off.
    pub fn rate_tick(&self, sw: &Switches) -> Option<gate::RateStatus> {
        if !sw.rate_limits {
            return None;
        }
        let now = self.clock.unix_seconds();
        let mut w = lock(&self.rate);
        let (hour, minute) = (now.div_euclid(3600), now.div_euclid(60));
        if w.hour != hour {
            w.hour = hour;
            w.hour_count = 0;
        }
        if w.minute != minute {
            w.minute = minute;
            w.minute_count = 0;
        }
        w.hour_count = w.hour_count.saturating_add(1);
        w.minute_count = w.minute_count.saturating_add(1);
        let minute_over = w.minute_count > sw.minute_limit;
        let hour_over = w.hour_count > sw.hourly_limit;
        Some(if minute_over && !hour_over {
            gate::RateStatus {
                limit: sw.minute_limit,
                remaining: 0,
                reset_in: 60 - now.rem_euclid(60),
                reset_at: (minute + 1) * 60,
                exceeded: true,
            }
        } else {
            gate::RateStatus {
                limit: sw.hourly_limit,
                remaining: sw.hourly_limit.saturating_sub(w.hour_count),
                reset_in: 3600 - now.rem_euclid(3600),
                reset_at: (hour + 1) * 3600,
                exceeded: hour_over,
            }
        })
    }

    /// The rate windows (control API).
    pub fn rate_windows(&self) -> RateWindows {
        lock(&self.rate).clone()
    }

    /// Clear the rate windows.
    pub fn reset_rate(&self) {
        *lock(&self.rate) = RateWindows::default();
    }

    /// The seed parameters in force.
    pub fn seed_params(&self) -> SeedParams {
        *lock(&self.seed)
    }

    /// Replace the state with a fresh seed (control `seed`); later resets use these params.
    pub fn reseed(&self, params: SeedParams) {
        *lock(&self.seed) = params;
        let sw = self.switches();
        let st = Store::seeded(self.kind, params.seed, params.count, self.clock.now(), &sw);
        *lock(&self.store) = st;
    }

    /// Back to the seeded start: state, switches, keys, rate windows.
    pub fn reset(&self) {
        self.set_switches(self.initial_switches.clone());
        let params = *lock(&self.seed);
        self.reseed(params);
        self.restore_keys();
        self.reset_rate();
        self.workflows.clear();
    }

    /// The app: API trees (instrumented, `.json`-tolerant) plus the control API.
    pub fn app(self: &Arc<Self>, plane: &ControlPlane) -> Router {
        let mut api = Router::new().merge(api::crm_router(self.clone()));
        if self.kind == AccountKind::Freshmarketer {
            api = api.merge(marketer::router(self.clone()));
        }
        let api = common::instrument(api.fallback(api::not_found), plane);
        let strip = axum::middleware::map_request(strip_json_suffix);
        let api = Router::new().fallback_service(strip.layer(api));
        common::mount(api, plane.clone(), control::router(self.clone())).layer(
            axum::middleware::from_fn_with_state(self.clone(), workflows::after_request),
        )
    }

    /// Public description.
    pub fn info(&self, base: &str) -> AccountInfo {
        let keys = &self.original_keys;
        AccountInfo {
            kind: self.kind,
            name: self.kind.name().to_owned(),
            base_url: base.to_owned(),
            api_base: format!("{base}{}", self.flavor.prefix),
            control_url: format!("{base}{}", common::CONTROL_PREFIX),
            credentials: Credentials::ApiKey {
                api_key: keys.api_key.clone(),
                restricted_api_key: keys.restricted_api_key.clone(),
            },
        }
    }
}

/// `/contacts/5.json` → `/contacts/5` (docs/freshworks-api.md §2.4), query kept.
async fn strip_json_suffix(mut req: Request) -> Request {
    let path = req.uri().path();
    if let Some(stripped) = path.strip_suffix(".json") {
        let pq = match req.uri().query() {
            Some(q) => format!("{stripped}?{q}"),
            None => stripped.to_owned(),
        };
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = pq.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

/// Seed size of `kind` from the sandbox options.
fn size_of(ctx: &AccountContext<'_>, kind: AccountKind) -> usize {
    let s = &ctx.options.sizes;
    match kind {
        AccountKind::FreshsalesClassic => s.freshsales_classic,
        AccountKind::Freshmarketer => s.freshmarketer,
        _ => s.freshsales,
    }
}

/// Start one Freshworks account of `kind` on `ctx.addr`.
pub async fn start(
    ctx: &AccountContext<'_>,
    kind: AccountKind,
) -> Result<StartedAccount, SandboxError> {
    let mut sw = ctx.options.freshworks.clone();
    sw.rate_limits = sw.rate_limits && ctx.options.rate_limits_enabled;
    let account = Arc::new(Account::new(
        kind,
        ctx.clock.clone(),
        SeedParams {
            seed: ctx.options.seed,
            count: size_of(ctx, kind),
        },
        sw,
    ));
    let reset_target = account.clone();
    let plane = ControlPlane::new(ctx.clock.clone(), move || reset_target.reset());
    let server = common::serve(ctx.addr, account.app(&plane)).await?;
    Ok(StartedAccount {
        info: account.info(&server.base_url()),
        control: plane,
        server,
    })
}

/// Start a single Freshworks account outside a [`crate::Sandbox`] (tests, benchmarks).
/// Returns the account handle too, for direct state access.
pub async fn start_account(
    kind: AccountKind,
    clock: Clock,
    seed: SeedParams,
    switches: Switches,
    addr: std::net::SocketAddr,
) -> Result<(StartedAccount, Arc<Account>), SandboxError> {
    let account = Arc::new(Account::new(kind, clock.clone(), seed, switches));
    let reset_target = account.clone();
    let plane = ControlPlane::new(clock, move || reset_target.reset());
    let server = common::serve(addr, account.app(&plane)).await?;
    Ok((
        StartedAccount {
            info: account.info(&server.base_url()),
            control: plane,
            server,
        },
        account,
    ))
}
