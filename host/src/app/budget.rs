//! One request budget per app account (sync-rules §11), shared by every sync that uses the account.
//!
//! - The limits come from the connector's `describe` (`rate-limits`: N requests per S
//!   seconds, possibly several windows). Each window is kept as a sliding log of send
//!   times, so that no interval of S seconds ever holds more than N requests: whatever
//!   the alignment of the app's own fixed windows, the budget never causes a 429.
//! - Requests are granted by priority: consent changes, then incremental changes,
//!   then retries, then initial loads. A lower priority waits while a higher one waits.
//! - A 429 blocks the whole account until its `Retry-After` (or, when the app sends none,
//!   an exponential back-off with jitter, or until the next clock hour as Syncari does
//!   for Freshworks — [`NoWaitPolicy`]); other accounts are untouched, and waiting is an
//!   async sleep, so no other sync is ever blocked by one that waits.
//! - The app's own count is read from every response (`X-RateLimit-Remaining`,
//!   `X-RateLimit-Limit`, `X-RateLimit-Reset`, or the IETF `RateLimit-*` names): other
//!   integrations spend the same account quota, so the app's count is the truth. Below
//!   `slow-below` requests left, requests are spread evenly until the reset; at `reserve`
//!   left, the account pauses until the reset — before the app answers 429 ([`RatePolicy`]).
//!   The reset's meaning (seconds from now, or a Unix time) is not documented for
//!   Freshworks, so it is a setting ([`ResetMeaning`]); `auto` reads small numbers as
//!   seconds and large ones as Unix seconds or milliseconds.
//!
//! ## A fleet (`[state] backend = "postgres"`): one budget across daemons
//!
//! [`Budgets::shared`] backs every account's budget with the database (migration 0003:
//! `tandem_budgets`, one row per account, and `tandem_budget_grants`, a log of granted
//! blocks), so that any number of daemons together stay within the account's windows.
//! The local budget above still paces, orders and blocks this daemon's requests; on top,
//! a request needs a token of a *block* this daemon leased:
//!
//! - `tandem_budget_lease` (one statement, one round trip) locks the account's row, reads
//!   the database's `clock_timestamp()` and grants up to the asked number of requests if,
//!   for every window of N per S, the blocks granted in the last S + L seconds plus this
//!   one stay within N, where L is a block's lifetime (an eighth of the shortest window,
//!   50 ms to 30 s). It logs the grant with that time and prunes older ones.
//! - A block may be spent only for L after the lease was *asked* (by this daemon's
//!   monotonic clock, so before the database's grant time); what is left then expires.
//!   Nothing is given back: unspent tokens can make the fleet use less than the quota,
//!   never more.
//! - **Guarantee**: for each window, no interval of S seconds (real time) holds more than
//!   N requests granted by all daemons together. (A request granted in [a, a + S) comes
//!   from a block granted in (a − L, a + S), an interval of S + L whose grants the
//!   database kept within N, since grants are made in time order under the row lock;
//!   grants older than the shortest window are merged per bucket and dated at its end,
//!   which only makes them count longer, so the log stays small.) It assumes the
//!   database's clock does not step back and the machines' clocks tick at the same rate
//!   over L; the price is that the fleet's windows are S + L long.
//! - Blocks are small against the limit, so that daemons share fairly: at most
//!   max(1, N / (8 × daemons that used the account within the window)) for the smallest
//!   window, and a daemon asks for what it spends (starting at 1, doubling while blocks
//!   run out, halving when one expires unspent). With blocks of B, a request costs 1/B
//!   statements (docs/fleet.md has the measured figure).
//! - A 429's wait and a low app count (at or below `slow-below`) are written to the
//!   account's row at once, without waiting; a plentiful count rides along the next
//!   lease. Every lease returns the row, so other daemons block or slow at their next
//!   lease (within one block: they spend what they hold first). The shared count is the
//!   newest one any daemon read, less the blocks granted since.
//! - A database failure while leasing holds the account's requests, retried with back-off
//!   (1 s doubling to 30 s, one log line per outage): never spending unshared quota.
//! - Priorities order requests within a daemon; across daemons, blocks go to whoever asks.
//!
//! [`RequestGate`] is what a connector client holds: it plugs the account's budget into
//! the runtime's [`RequestBudget`] hook, at the priority its adapter sets per call, and
//! holds every request while its sync is paused.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::header::HeaderMap;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use url::Url;

use crate::db::{Pg, PgError};
use crate::runtime::RequestBudget;

/// Who spends the budget first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Priority {
    /// DND / unsubscribe changes.
    Consent = 0,
    /// Changes users made since the last run.
    Incremental = 1,
    /// Re-reads and re-writes of failed records.
    Retry = 2,
    /// Initial loads and full listings.
    Initial = 3,
}

impl Priority {
    const ALL: [Priority; 4] = [
        Priority::Consent,
        Priority::Incremental,
        Priority::Retry,
        Priority::Initial,
    ];

    fn from_u8(v: u8) -> Self {
        Self::ALL
            .get(v as usize)
            .copied()
            .unwrap_or(Priority::Initial)
    }
}

pub use crate::config::rate_limit::{
    DEFAULT_MAX_RETRY_AFTER, DEFAULT_MIN_DECLARED_PER_HOUR, NoWaitPolicy, RatePolicy, ResetMeaning,
    Share, Window,
};

/// Wall time for Unix-time resets and clock hours: the system clock, or (tests) a fake
/// one that moves with tokio's clock — the Unix time at an anchor instant plus the
/// monotonic time since — so that a paused test clock moves it too.
#[derive(Clone, Copy, Debug)]
struct WallClock {
    fake: Option<(f64, Instant)>,
}

impl WallClock {
    fn system() -> Self {
        WallClock { fake: None }
    }

    fn unix(&self, now: Instant) -> f64 {
        match self.fake {
            Some((unix_at, at)) => unix_at + now.saturating_duration_since(at).as_secs_f64(),
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }

    /// How long from `now` until the next clock hour.
    fn until_next_hour(&self, now: Instant) -> Duration {
        let t = self.unix(now);
        let next = ((t / 3600.0).floor() + 1.0) * 3600.0;
        Duration::from_secs_f64((next - t).max(0.0))
    }
}

/// What the app said about its own count, in the last response that carried it.
#[derive(Clone, Copy, Debug)]
struct Observed {
    remaining: u32,
    limit: Option<u32>,
    /// When the app's window resets (`None`: it did not say).
    reset_at: Option<Instant>,
    /// Requests granted since (the app had not counted them yet).
    granted_since: u32,
}

/// This daemon's app count as `tandem_budget_lease` takes it (seconds from `now`).
fn app_arg(o: &Observed, seen: Instant, now: Instant) -> (i64, Option<i64>, Option<f64>, f64) {
    (
        i64::from(o.remaining.saturating_sub(o.granted_since)),
        o.limit.map(i64::from),
        o.reset_at
            .map(|r| r.saturating_duration_since(now).as_secs_f64()),
        now.saturating_duration_since(seen).as_secs_f64(),
    )
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 86_400.0))
}

/// The rate-limit headers of a response: (remaining, limit, reset).
fn rate_headers(headers: &HeaderMap) -> Option<(u32, Option<u32>, Option<f64>)> {
    let get = |names: [&str; 2]| {
        names
            .iter()
            .find_map(|n| headers.get(*n))
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let remaining = get(["x-ratelimit-remaining", "ratelimit-remaining"])?
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)? as u32;
    let limit = get(["x-ratelimit-limit", "ratelimit-limit"])
        // `RateLimit-Limit` may carry a policy after the number (`100, 100;w=60`).
        .and_then(|v| v.split([',', ';']).next())
        .and_then(|v| v.trim().parse::<u32>().ok());
    let reset = get(["x-ratelimit-reset", "ratelimit-reset"])
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0);
    Some((remaining, limit, reset))
}

/// The longest wait without a `Retry-After`.
const MAX_BACKOFF: Duration = Duration::from_secs(120);
/// The first wait without a `Retry-After`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct State {
    /// Send times, oldest first, within the longest window.
    sent: VecDeque<Instant>,
    blocked_until: Option<Instant>,
    waiting: [usize; 4],
    /// 429s in a row (for the back-off without `Retry-After`).
    strikes: u32,
    requests: u64,
    rate_limited: u64,
    /// The app's own count, from the last response that carried it.
    observed: Option<Observed>,
    /// When the last request was granted (for pacing below `slow-below`).
    last_grant: Option<Instant>,
    /// Requests held back by the app's count (not by a 429), since start.
    held: u64,
    /// The fleet's share (PostgreSQL only): requests left of the block leased last.
    tokens: u32,
    /// Until when the block may be spent (its lifetime from before the lease was asked).
    tokens_until: Option<Instant>,
    /// The block to ask for next: doubles while blocks run out, halves when one expires
    /// unspent (so that a trickle of requests does not lock up the fleet's quota).
    want: u32,
    /// No lease before this: the windows are full fleet-wide, or the database failed.
    lease_after: Option<Instant>,
    /// Database failures in a row.
    lease_errors: u32,
    /// This daemon's newest app count, not yet written to the database, and when seen.
    unsent: Option<(Observed, Instant)>,
    /// The database time (Unix seconds) of the newest app count adopted from the fleet.
    adopted: f64,
}

/// What to do when the local budget has room but the fleet's share may not.
enum FleetHold {
    /// Wait this long (the fleet's windows are full, or the database failed).
    Wait(Duration),
    /// Lease a block first.
    Lease,
}

impl State {
    /// `None` when a request may go now by the fleet's share.
    fn fleet_hold(&mut self, now: Instant) -> Option<FleetHold> {
        if let Some(a) = self.lease_after {
            if a > now {
                return Some(FleetHold::Wait(a - now));
            }
            self.lease_after = None;
        }
        if self.tokens > 0 && self.tokens_until.is_some_and(|u| u > now) {
            return None;
        }
        Some(FleetHold::Lease)
    }
}

/// The fleet's side of an account's budget: the database that holds the account's row
/// and grant log (migration 0003), and this daemon's id in it.
#[derive(Debug)]
struct Shared {
    pg: Arc<Pg>,
    daemon: String,
    /// One lease at a time per account and daemon.
    leasing: tokio::sync::Mutex<()>,
    /// Writes under way (a 429, a low app count): [`AccountBudget::flush`] waits for them.
    notes: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The most requests asked for in one block.
const MAX_BLOCK: u32 = 10_000;
/// The longest a leased block may be spent.
const MAX_BLOCK_LIFE: Duration = Duration::from_secs(30);
/// The shortest a leased block may be spent.
const MIN_BLOCK_LIFE: Duration = Duration::from_millis(50);
/// The longest wait between leases after database failures.
const MAX_LEASE_BACKOFF: Duration = Duration::from_secs(30);

/// How long a leased block may be spent: an eighth of the shortest window (the fleet's
/// windows are effectively that much longer), within [`MIN_BLOCK_LIFE`, `MAX_BLOCK_LIFE`].
fn block_life(windows: &[Window]) -> Duration {
    windows
        .iter()
        .map(|w| w.period / 8)
        .min()
        .unwrap_or(MAX_BLOCK_LIFE)
        .clamp(MIN_BLOCK_LIFE, MAX_BLOCK_LIFE)
}

/// The arguments of `tandem_budget_lease` (migration 0003).
struct LeaseArgs {
    account: String,
    daemon: String,
    limits: Vec<i32>,
    periods: Vec<f64>,
    expiry: f64,
    want: i32,
    blocked: Option<f64>,
    /// remaining, limit, seconds to the reset, seconds since seen.
    app: Option<(i64, Option<i64>, Option<f64>, f64)>,
}

/// What `tandem_budget_lease` answers.
#[derive(Debug)]
struct LeaseReply {
    granted: u32,
    wait: f64,
    blocked: f64,
    app_remaining: Option<i64>,
    app_limit: Option<i64>,
    app_reset: Option<f64>,
    app_seen: Option<f64>,
    app_daemon: Option<String>,
}

const LEASE_SQL: &str =
    "SELECT * FROM tandem_budget_lease($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// One call of `tandem_budget_lease` (one round trip); polled on the pool's runtime.
async fn lease_call(pg: Arc<Pg>, a: LeaseArgs) -> Result<LeaseReply, PgError> {
    let c = pg.client().await?;
    let st = c.prepare_cached(LEASE_SQL).await.map_err(|e| pg.error(e))?;
    let (remaining, limit, reset, age) = match a.app {
        Some((r, l, z, age)) => (Some(r), l, z, Some(age)),
        None => (None, None, None, None),
    };
    let row = c
        .query_one(
            &st,
            &[
                &a.account, &a.daemon, &a.limits, &a.periods, &a.expiry, &a.want, &a.blocked,
                &remaining, &limit, &reset, &age,
            ],
        )
        .await
        .map_err(|e| pg.error(e))?;
    let granted: i32 = row.get(0);
    // The account's row, and the grant when there is one (expired grants are pruned too).
    let rows = 1 + u64::from(granted > 0);
    pg.count(1, rows);
    let stats = pg.stats();
    stats.budget_leases.fetch_add(1, Ordering::Relaxed);
    stats.budget_rows_written.fetch_add(rows, Ordering::Relaxed);
    Ok(LeaseReply {
        granted: granted.max(0) as u32,
        wait: row.get(1),
        blocked: row.get(2),
        app_remaining: row.get(3),
        app_limit: row.get(4),
        app_reset: row.get(5),
        app_seen: row.get(6),
        app_daemon: row.get(7),
    })
}

/// The budget of one app account.
#[derive(Debug)]
pub struct AccountBudget {
    account: String,
    windows: Mutex<Vec<Window>>,
    /// The windows were set by the operator (`rate-limit.limits`): connectors' declared
    /// limits no longer apply.
    operator_windows: std::sync::atomic::AtomicBool,
    policy: Mutex<RatePolicy>,
    clock: WallClock,
    state: Mutex<State>,
    notify: Notify,
    /// The fleet's share, when the state is in PostgreSQL.
    shared: Option<Shared>,
}

/// What a budget looks like now (for `tandem sync status` and the control API).
#[derive(Clone, Debug, Serialize)]
pub struct BudgetSnapshot {
    /// The account id `check` returned.
    pub account: String,
    /// The windows and how much of each is used.
    pub windows: Vec<WindowUse>,
    /// Milliseconds until a 429 back-off ends (0 when none).
    pub blocked_ms: u64,
    /// Requests waiting, per priority.
    pub waiting: BTreeMap<String, usize>,
    /// Requests granted since start.
    pub requests: u64,
    /// 429s seen since start.
    pub rate_limited: u64,
    /// What the app last said about its own count (`X-RateLimit-*`), if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<AppCount>,
    /// Times a request waited because the app's count was low (pacing or pause), since
    /// start.
    pub held: u64,
}

/// The app's own count, as its last rate-limit headers said.
#[derive(Clone, Debug, Serialize)]
pub struct AppCount {
    /// Requests left, less the ones sent since.
    pub remaining: u32,
    /// The limit, when the app says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Milliseconds until the app's window resets, when it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_ms: Option<u64>,
    /// Whether the account is paused until then (the count is at the reserve).
    pub paused: bool,
}

/// One window's use.
#[derive(Clone, Debug, Serialize)]
pub struct WindowUse {
    /// The window's limit (`requests` per `period`).
    #[serde(flatten)]
    pub window: Window,
    /// Requests in the last period.
    pub used: usize,
}

/// Decrements the waiting count of its priority when the request is granted or dropped.
struct Waiter<'a> {
    budget: &'a AccountBudget,
    priority: Priority,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.budget.state.lock() {
            s.waiting[self.priority as usize] -= 1;
        }
        self.budget.notify.notify_waiters();
    }
}

impl AccountBudget {
    /// A budget for `account` under `windows` (none: unlimited, 429s still back off).
    pub fn new(account: &str, windows: Vec<Window>) -> Self {
        Self::with_policy(account, windows, RatePolicy::default())
    }

    /// A budget with a [`RatePolicy`].
    pub fn with_policy(account: &str, windows: Vec<Window>, policy: RatePolicy) -> Self {
        AccountBudget {
            account: account.into(),
            windows: Mutex::new(normalise(windows)),
            operator_windows: std::sync::atomic::AtomicBool::new(false),
            policy: Mutex::new(policy),
            clock: WallClock::system(),
            state: Mutex::new(State {
                want: 1,
                ..State::default()
            }),
            notify: Notify::new(),
            shared: None,
        }
    }

    /// The same budget shared with every daemon using `pg` (see the module docs):
    /// requests are spent from blocks leased from the database, 429s and the app's count
    /// are written there. `daemon` names this process in the grant log.
    pub fn shared_by(mut self, pg: Arc<Pg>, daemon: &str) -> Self {
        self.shared = Some(Shared {
            pg,
            daemon: daemon.into(),
            leasing: tokio::sync::Mutex::new(()),
            notes: Mutex::new(Vec::new()),
        });
        self
    }

    /// Waits until what this budget wrote to the shared database (a 429, a low app
    /// count) is there. Nothing to wait for without one.
    pub async fn flush(&self) {
        let Some(sh) = &self.shared else { return };
        let notes = std::mem::take(&mut *lock(&sh.notes));
        for n in notes {
            let _ = n.await;
        }
    }

    /// Writes a 429's wait or this daemon's app count to the account's row now, without
    /// waiting (the other daemons read it at their next lease).
    fn note(&self, blocked: Option<Duration>, app: Option<(Observed, Instant)>) {
        let Some(sh) = &self.shared else { return };
        let args = LeaseArgs {
            want: 0,
            blocked: blocked.map(|d| d.as_secs_f64()),
            app: app.map(|(o, seen)| app_arg(&o, seen, Instant::now())),
            ..self.lease_args(sh, &[])
        };
        let pg = sh.pg.clone();
        let account = self.account.clone();
        let handle = sh.pg.spawn(move |_| async move {
            if let Err(e) = lease_call(pg, args).await {
                tracing::warn!(account = %account, error = %e, "cannot share a rate limit with the fleet");
            }
        });
        let mut notes = lock(&sh.notes);
        notes.retain(|h| !h.is_finished());
        notes.push(handle);
    }

    fn lease_args(&self, sh: &Shared, windows: &[Window]) -> LeaseArgs {
        LeaseArgs {
            account: self.account.clone(),
            daemon: sh.daemon.clone(),
            limits: windows
                .iter()
                .map(|w| i32::try_from(w.requests).unwrap_or(i32::MAX))
                .collect(),
            periods: windows.iter().map(|w| w.period.as_secs_f64()).collect(),
            expiry: block_life(windows).as_secs_f64(),
            want: 0,
            blocked: None,
            app: None,
        }
    }

    /// Leases a block of requests from the fleet's share (one round trip), unless another
    /// waiter just did; adopts what the fleet saw (429s, the app's count).
    async fn lease(&self, sh: &Shared) {
        let _one = sh.leasing.lock().await;
        let windows = lock(&self.windows).clone();
        let (want, app) = {
            let mut s = lock(&self.state);
            if s.fleet_hold(Instant::now()).is_none() || s.lease_after.is_some() {
                return;
            }
            if s.tokens_until.is_some() {
                s.want = if s.tokens == 0 {
                    s.want.saturating_mul(2).min(MAX_BLOCK)
                } else {
                    (s.want / 2).max(1)
                };
            }
            let waiting = s.waiting.iter().sum::<usize>().min(MAX_BLOCK as usize) as u32;
            (s.want.max(waiting), s.unsent.take())
        };
        let sent = Instant::now();
        let args = LeaseArgs {
            want: want as i32,
            app: app.map(|(o, seen)| app_arg(&o, seen, sent)),
            ..self.lease_args(sh, &windows)
        };
        let pg = sh.pg.clone();
        let reply = sh
            .pg
            .spawn(move |_| lease_call(pg, args))
            .await
            .unwrap_or_else(|e| {
                Err(PgError::Query {
                    target: sh.pg.target().into(),
                    message: e.to_string(),
                })
            });
        let got = Instant::now();
        let mut s = lock(&self.state);
        match reply {
            Ok(r) => {
                if s.lease_errors > 0 {
                    tracing::info!(account = %self.account, "the shared budget is reachable again");
                }
                s.lease_errors = 0;
                // Spendable from before the grant (the database's clock read it later).
                s.tokens = r.granted;
                s.tokens_until = (r.granted > 0).then(|| sent + block_life(&windows));
                if r.blocked > 0.0 {
                    let until = got + secs(r.blocked);
                    s.blocked_until = Some(s.blocked_until.map_or(until, |b| b.max(until)));
                }
                if r.granted == 0 && r.blocked <= 0.0 {
                    s.lease_after = Some(got + secs(r.wait).max(Duration::from_millis(10)));
                }
                if let (Some(remaining), Some(seen)) = (r.app_remaining, r.app_seen)
                    && seen > s.adopted
                    && r.app_daemon.as_deref() != Some(sh.daemon.as_str())
                {
                    s.adopted = seen;
                    s.observed = Some(Observed {
                        remaining: remaining.clamp(0, i64::from(u32::MAX)) as u32,
                        limit: r.app_limit.and_then(|l| u32::try_from(l).ok()),
                        reset_at: r.app_reset.filter(|z| *z > 0.0).map(|z| got + secs(z)),
                        granted_since: 0,
                    });
                }
            }
            Err(e) => {
                // Never spend unshared quota: wait and try again.
                s.lease_errors = s.lease_errors.saturating_add(1);
                let backoff = Duration::from_secs(1)
                    .saturating_mul(1 << (s.lease_errors - 1).min(5))
                    .min(MAX_LEASE_BACKOFF);
                s.lease_after = Some(got + backoff);
                if s.unsent.is_none() {
                    s.unsent = app;
                }
                if s.lease_errors == 1 {
                    tracing::warn!(account = %self.account, error = %e, "cannot lease requests from the shared budget; its requests wait and it tries again");
                }
            }
        }
        drop(s);
        self.notify.notify_waiters();
    }

    /// The same budget on a wall clock that reads `unix_secs` now (tests: with tokio's
    /// paused clock, a fake clock for Unix times, reset epochs and clock hours).
    pub fn at_unix_time(mut self, unix_secs: f64) -> Self {
        self.clock = WallClock {
            fake: Some((unix_secs, Instant::now())),
        };
        self
    }

    /// The account id.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The policy in force.
    pub fn policy(&self) -> RatePolicy {
        *lock(&self.policy)
    }

    /// Merges the policy another connection of the same account sets (the stricter wins).
    pub fn merge_policy(&self, more: RatePolicy) {
        let mut p = lock(&self.policy);
        *p = p.stricter(more);
    }

    /// Reads the app's rate-limit headers from a response (any status): the account
    /// slows down or pauses by them before the app refuses anything.
    pub fn observe(&self, headers: &HeaderMap) {
        let policy = self.policy();
        if !policy.headers {
            return;
        }
        let Some((remaining, limit, reset)) = rate_headers(headers) else {
            return;
        };
        let now = Instant::now();
        let reset_at = reset.and_then(|r| {
            let secs = match policy.reset {
                ResetMeaning::Seconds => r,
                ResetMeaning::Epoch => r - self.clock.unix(now),
                ResetMeaning::Auto if r > 1e12 => r / 1000.0 - self.clock.unix(now),
                ResetMeaning::Auto if r > 1e9 => r - self.clock.unix(now),
                ResetMeaning::Auto => r,
            };
            // A reset in the past says the window is over: the count no longer holds.
            (secs > 0.0).then(|| now + Duration::from_secs_f64(secs.min(86_400.0)))
        });
        let mut s = lock(&self.state);
        let mut urgent = None;
        if reset.is_some() && reset_at.is_none() {
            s.observed = None;
        } else {
            let o = Observed {
                remaining,
                limit,
                reset_at,
                granted_since: 0,
            };
            s.observed = Some(o);
            if self.shared.is_some() {
                // A low count is written at once (below slow-below requests are paced, so
                // these are few); a plentiful one rides along the next lease.
                let spare = remaining.saturating_sub(policy.reserve.of(limit));
                if spare <= policy.slow_below.of(limit) {
                    urgent = Some((o, now));
                    s.unsent = None;
                } else {
                    s.unsent = Some((o, now));
                }
            }
        }
        drop(s);
        if urgent.is_some() {
            self.note(None, urgent);
        }
        self.notify.notify_waiters();
    }

    /// Adds windows another connector of the same account reports (the stricter wins).
    pub fn merge(&self, more: &[Window]) {
        let mut w = lock(&self.windows);
        if self.operator_windows.load(Ordering::Relaxed) {
            return;
        }
        let mut all = w.clone();
        all.extend_from_slice(more);
        *w = normalise(all);
    }

    /// The operator's limits for the account (`[connections.NAME.rate-limit] limits`, the
    /// account's plan): they replace what connectors declare, which may be lower or
    /// higher. Several connections' operator limits merge (the stricter wins).
    pub fn set_operator_windows(&self, windows: &[Window]) {
        let mut w = lock(&self.windows);
        if self.operator_windows.swap(true, Ordering::Relaxed) {
            let mut all = w.clone();
            all.extend_from_slice(windows);
            *w = normalise(all);
        } else {
            *w = normalise(windows.to_vec());
        }
    }

    /// Waits for a slot at `priority` and takes it (one request).
    pub async fn acquire(&self, priority: Priority) {
        self.wait(priority, true).await;
    }

    /// Waits until a request at `priority` could go out now; returns how many could go
    /// out at once (at least 1). Takes nothing: callers size their batches with it.
    pub async fn ready(&self, priority: Priority) -> usize {
        self.wait(priority, false).await
    }

    async fn wait(&self, priority: Priority, take: bool) -> usize {
        lock(&self.state).waiting[priority as usize] += 1;
        let _waiter = Waiter {
            budget: self,
            priority,
        };
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = Instant::now();
            // `Ok(None)`: wait until notified; `Err(())`: lease a block first.
            let wait: Result<Option<Duration>, ()> = {
                let windows = lock(&self.windows).clone();
                let policy = self.policy();
                let mut s = lock(&self.state);
                match s.check(now, priority, &windows, &policy, &self.clock) {
                    Err(wait) => Ok(wait),
                    // The local budget has room: with a fleet, its share decides too.
                    Ok(free) => match self.shared.as_ref().and_then(|_| s.fleet_hold(now)) {
                        Some(FleetHold::Wait(d)) => Ok(Some(d)),
                        Some(FleetHold::Lease) => Err(()),
                        None => {
                            let free = match self.shared {
                                Some(_) => free.min(s.tokens as usize),
                                None => free,
                            };
                            if take {
                                s.sent.push_back(now);
                                s.requests += 1;
                                s.last_grant = Some(now);
                                if let Some(o) = &mut s.observed {
                                    o.granted_since = o.granted_since.saturating_add(1);
                                }
                                if self.shared.is_some() {
                                    s.tokens -= 1;
                                }
                            }
                            return free.max(1);
                        }
                    },
                }
            };
            match wait {
                Err(()) => {
                    if let Some(sh) = &self.shared {
                        self.lease(sh).await;
                    }
                }
                Ok(Some(d)) => {
                    tokio::select! {
                        () = tokio::time::sleep(d) => {}
                        () = &mut notified => {}
                    }
                }
                Ok(None) => notified.await,
            }
        }
    }

    /// Records a 429: the account is blocked for `retry_after`, or, when the app gave
    /// none, by the policy's [`NoWaitPolicy`]. Returns the wait.
    pub fn rate_limited(&self, retry_after: Option<Duration>) -> Duration {
        let policy = self.policy();
        let now = Instant::now();
        let mut s = lock(&self.state);
        s.rate_limited += 1;
        let wait = match retry_after {
            Some(w) => w.min(policy.max_retry_after),
            None => s.no_wait(now, &policy, &self.clock),
        };
        let until = now + wait;
        s.blocked_until = Some(s.blocked_until.map_or(until, |b| b.max(until)));
        drop(s);
        self.note(Some(wait), None);
        self.notify.notify_waiters();
        tracing::warn!(account = %self.account, wait_ms = wait.as_millis() as u64, "rate limited: the account's requests wait");
        wait
    }

    /// A call went through without a 429: the back-off starts over next time.
    pub fn succeeded(&self) {
        lock(&self.state).strikes = 0;
    }

    /// The budget now.
    pub fn snapshot(&self) -> BudgetSnapshot {
        let windows = lock(&self.windows).clone();
        let s = lock(&self.state);
        let now = Instant::now();
        BudgetSnapshot {
            account: self.account.clone(),
            windows: windows
                .iter()
                .map(|w| WindowUse {
                    window: *w,
                    used: s.in_window(now, w.period),
                })
                .collect(),
            blocked_ms: s
                .blocked_until
                .map_or(0, |b| b.saturating_duration_since(now).as_millis() as u64),
            waiting: Priority::ALL
                .iter()
                .map(|p| (format!("{p:?}").to_lowercase(), s.waiting[*p as usize]))
                .collect(),
            requests: s.requests,
            rate_limited: s.rate_limited,
            app: s.observed.map(|o| {
                let reserve = self.policy().reserve.of(o.limit);
                let remaining = o.remaining.saturating_sub(o.granted_since);
                AppCount {
                    remaining,
                    limit: o.limit,
                    reset_ms: o
                        .reset_at
                        .map(|r| r.saturating_duration_since(now).as_millis() as u64),
                    paused: remaining <= reserve,
                }
            }),
            held: s.held,
        }
    }
}

impl State {
    fn in_window(&self, now: Instant, period: Duration) -> usize {
        self.sent
            .iter()
            .rev()
            .take_while(|t| now.saturating_duration_since(**t) < period)
            .count()
    }

    /// The wait when the app gives none: only these escalate the back-off (when the app
    /// says how long to wait, that wait is exact and says nothing about the next one).
    fn no_wait(&mut self, now: Instant, policy: &RatePolicy, clock: &WallClock) -> Duration {
        self.strikes = self.strikes.saturating_add(1);
        match policy.no_wait {
            NoWaitPolicy::Backoff => {
                let exp = FIRST_BACKOFF.saturating_mul(1 << (self.strikes - 1).min(10));
                let base = exp.min(MAX_BACKOFF);
                // Up to 25 % jitter, so that syncs do not come back in lockstep.
                base + base.mul_f64(jitter() * 0.25)
            }
            // Up to a second late, so the first request lands in the new hour.
            NoWaitPolicy::NextHour => {
                clock.until_next_hour(now) + Duration::from_millis(100 + (jitter() * 900.0) as u64)
            }
        }
    }

    /// What the app's own count allows now: `Ok(free)` or how long to wait.
    fn by_app_count(
        &mut self,
        now: Instant,
        policy: &RatePolicy,
        clock: &WallClock,
    ) -> Result<usize, Duration> {
        let Some(o) = self.observed else {
            return Ok(usize::MAX);
        };
        if o.reset_at.is_some_and(|r| r <= now) {
            // The app's window is over: its count no longer holds.
            self.observed = None;
            return Ok(usize::MAX);
        }
        let reserve = policy.reserve.of(o.limit);
        let left = o.remaining.saturating_sub(o.granted_since);
        if left <= reserve {
            let reset_at = match o.reset_at {
                Some(r) => r,
                None => {
                    // No reset said: wait as after a 429 without Retry-After, then try.
                    let r = now + self.no_wait(now, policy, clock);
                    if let Some(obs) = &mut self.observed {
                        obs.reset_at = Some(r);
                    }
                    r
                }
            };
            return Err(reset_at - now);
        }
        let spare = left - reserve;
        if let (Some(reset_at), Some(last)) = (o.reset_at, self.last_grant)
            && spare <= policy.slow_below.of(o.limit)
        {
            // Spread what is left evenly over the time until the reset.
            let gap = (reset_at - now) / (spare + 1);
            if last + gap > now {
                return Err(last + gap - now);
            }
        }
        Ok(spare as usize)
    }

    /// `Ok(free slots)` when a request at `p` may go now, else how long to wait
    /// (`None`: until notified, a higher priority is waiting).
    fn check(
        &mut self,
        now: Instant,
        p: Priority,
        windows: &[Window],
        policy: &RatePolicy,
        clock: &WallClock,
    ) -> Result<usize, Option<Duration>> {
        if let Some(b) = self.blocked_until {
            if b > now {
                return Err(Some(b - now));
            }
            self.blocked_until = None;
        }
        if self.waiting[..p as usize].iter().any(|n| *n > 0) {
            return Err(None);
        }
        let by_app = match self.by_app_count(now, policy, clock) {
            Ok(free) => free,
            Err(wait) => {
                self.held += 1;
                return Err(Some(wait.max(Duration::from_millis(1))));
            }
        };
        let longest = windows.iter().map(|w| w.period).max().unwrap_or_default();
        while self
            .sent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= longest)
        {
            self.sent.pop_front();
        }
        let mut free = usize::MAX;
        let mut wait: Option<Duration> = None;
        for w in windows {
            let limit = w.requests as usize;
            let used = self.in_window(now, w.period);
            if used >= limit {
                // When the oldest request that keeps the window full leaves it.
                let oldest = self.sent[self.sent.len() - limit];
                let d = (oldest + w.period).saturating_duration_since(now);
                wait = Some(wait.map_or(d, |x| x.max(d)).max(Duration::from_millis(1)));
            } else {
                free = free.min(limit - used);
            }
        }
        match wait {
            Some(d) => Err(Some(d)),
            None => Ok(free.min(by_app)),
        }
    }
}

/// Drops empty windows and keeps the smallest limit per period.
fn normalise(windows: Vec<Window>) -> Vec<Window> {
    let mut by: BTreeMap<Duration, u32> = BTreeMap::new();
    for w in windows {
        if w.requests == 0 || w.period.is_zero() {
            continue;
        }
        let e = by.entry(w.period).or_insert(w.requests);
        *e = (*e).min(w.requests);
    }
    by.into_iter()
        .map(|(period, requests)| Window { requests, period })
        .collect()
}

/// A number in [0, 1) that differs between calls (std's per-instance random hash keys);
/// good enough to spread retries, with no extra dependency.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every account budget of a host, by account id.
#[derive(Debug, Default)]
pub struct Budgets {
    map: Mutex<BTreeMap<String, Arc<AccountBudget>>>,
    /// The fleet's database and this daemon's id, when budgets are shared.
    shared: Option<(Arc<Pg>, String)>,
}

impl Budgets {
    /// Budgets shared with every daemon on `pg` (`[state] backend = "postgres"`), this one
    /// named `daemon` (its fleet id): see the module docs.
    pub fn shared(pg: Arc<Pg>, daemon: String) -> Self {
        Budgets {
            map: Mutex::default(),
            shared: Some((pg, daemon)),
        }
    }

    /// The budget of `account`, created with `windows` or merged with them.
    pub fn account(&self, account: &str, windows: &[Window]) -> Arc<AccountBudget> {
        self.account_with(account, windows, None, None)
    }

    /// [`Budgets::account`] with a connection's [`RatePolicy`] (merged, stricter wins) and
    /// the operator's own limits for the account, which replace the declared `windows`.
    pub fn account_with(
        &self,
        account: &str,
        windows: &[Window],
        policy: Option<RatePolicy>,
        operator: Option<&[Window]>,
    ) -> Arc<AccountBudget> {
        let mut map = lock(&self.map);
        let b = match map.get(account) {
            Some(b) => {
                if let Some(p) = policy {
                    b.merge_policy(p);
                }
                b.merge(&b.policy().floored(windows));
                b.clone()
            }
            None => {
                let policy = policy.unwrap_or_default();
                let mut b = AccountBudget::with_policy(account, policy.floored(windows), policy);
                if let Some((pg, daemon)) = &self.shared {
                    b = b.shared_by(pg.clone(), daemon);
                }
                let b = Arc::new(b);
                map.insert(account.into(), b.clone());
                b
            }
        };
        if let Some(w) = operator {
            b.set_operator_windows(w);
        }
        b
    }

    /// Every budget now.
    pub fn snapshots(&self) -> Vec<BudgetSnapshot> {
        lock(&self.map).values().map(|b| b.snapshot()).collect()
    }
}

/// The runtime hook of one connector client: the account budget (bound once `check`
/// named the account), at the priority its adapter set for the current call, held while
/// the sync is paused.
#[derive(Debug)]
pub struct RequestGate {
    budget: OnceLock<Arc<AccountBudget>>,
    priority: AtomicU8,
    paused: watch::Receiver<bool>,
    /// Requests let out through this gate (a run's count: each run has its own gates).
    sent: AtomicU64,
}

impl RequestGate {
    /// A gate following `paused` (a sync's pause switch).
    pub fn new(paused: watch::Receiver<bool>) -> Self {
        RequestGate {
            budget: OnceLock::new(),
            priority: AtomicU8::new(Priority::Incremental as u8),
            paused,
            sent: AtomicU64::new(0),
        }
    }

    /// A gate that is never paused.
    pub fn unpaused() -> Self {
        let (tx, rx) = watch::channel(false);
        // The sender is dropped: the value stays `false` forever.
        drop(tx);
        Self::new(rx)
    }

    /// Binds the account's budget (once; later calls are ignored).
    pub fn bind(&self, budget: Arc<AccountBudget>) {
        let _ = self.budget.set(budget);
    }

    /// The bound budget.
    pub fn budget(&self) -> Option<&Arc<AccountBudget>> {
        self.budget.get()
    }

    /// Requests let out through this gate so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The priority of the requests that follow.
    pub fn set_priority(&self, p: Priority) {
        self.priority.store(p as u8, Ordering::Relaxed);
    }

    /// The current priority.
    pub fn priority(&self) -> Priority {
        Priority::from_u8(self.priority.load(Ordering::Relaxed))
    }

    /// Resolves once the sync is not paused.
    pub async fn unpaused_now(&self) {
        let mut rx = self.paused.clone();
        // An error means the switch is gone, which leaves the last value: not paused
        // unless it was paused when dropped, and then nothing can resume it but a restart.
        let _ = rx.wait_for(|p| !*p).await;
    }

    /// Waits for the sync to be unpaused and for the budget to have room; returns how
    /// many requests could go out at once.
    pub async fn ready(&self) -> usize {
        self.unpaused_now().await;
        match self.budget.get() {
            Some(b) => b.ready(self.priority()).await,
            None => usize::MAX,
        }
    }
}

impl RequestBudget for RequestGate {
    fn acquire<'a>(&'a self, _url: &'a Url) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.unpaused_now().await;
            if let Some(b) = self.budget.get() {
                b.acquire(self.priority()).await;
            }
            self.sent.fetch_add(1, Ordering::Relaxed);
        })
    }

    fn observe(&self, _url: &Url, _status: u16, headers: &HeaderMap) {
        if let Some(b) = self.budget.get() {
            b.observe(headers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(requests: u32, secs: u64) -> Window {
        Window {
            requests,
            period: Duration::from_secs(secs),
        }
    }

    /// A plugin's made-up `Retry-After` of years waits the cap; a declared limit of one
    /// request a day is raised to the floor, pro rata; sane limits are kept.
    #[tokio::test(start_paused = true)]
    async fn retry_after_is_capped_and_declared_limits_have_a_floor() {
        let policy = RatePolicy {
            max_retry_after: Duration::from_secs(60),
            ..RatePolicy::default()
        };
        let b = AccountBudget::with_policy("a", vec![], policy);
        let years = Duration::from_secs(10 * 365 * 86_400);
        assert_eq!(b.rate_limited(Some(years)), Duration::from_secs(60));
        assert_eq!(b.snapshot().blocked_ms, 60_000);
        assert_eq!(
            RatePolicy::default().floored(&[w(1, 86_400), w(5000, 3600), w(1, 1)]),
            vec![w(1440, 86_400), w(5000, 3600), w(1, 1)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_period_ever_holds_more_than_the_limit() {
        let b = Arc::new(AccountBudget::new("acct", vec![w(5, 60), w(8, 3600)]));
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..20 {
            b.acquire(Priority::Incremental).await;
            times.push(Instant::now() - start);
        }
        for (i, t) in times.iter().enumerate() {
            let in_minute = times[i..]
                .iter()
                .filter(|u| **u - *t < Duration::from_secs(60))
                .count();
            let in_hour = times[i..]
                .iter()
                .filter(|u| **u - *t < Duration::from_secs(3600))
                .count();
            assert!(
                in_minute <= 5,
                "{in_minute} requests within a minute from {t:?}"
            );
            assert!(in_hour <= 8, "{in_hour} requests within an hour from {t:?}");
        }
        // The first five go at once, the next three a minute later, then an hour passes.
        assert_eq!(times[4], Duration::ZERO);
        assert_eq!(times[5], Duration::from_secs(60));
        assert_eq!(times[8], Duration::from_secs(3600));
    }

    #[tokio::test(start_paused = true)]
    async fn higher_priorities_are_served_first_when_the_budget_is_short() {
        let b = Arc::new(AccountBudget::new("acct", vec![w(1, 10)]));
        b.acquire(Priority::Initial).await; // the window is now full for 10 s
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for p in [
            Priority::Initial,
            Priority::Retry,
            Priority::Incremental,
            Priority::Consent,
        ] {
            let (b, order) = (b.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                b.acquire(p).await;
                order.lock().unwrap().push(p);
            }));
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            vec![
                Priority::Consent,
                Priority::Incremental,
                Priority::Retry,
                Priority::Initial
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_blocks_the_account_for_retry_after_and_not_other_accounts() {
        let budgets = Budgets::default();
        let a = budgets.account("a", &[]);
        let other = budgets.account("b", &[]);
        assert_eq!(
            a.rate_limited(Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        let start = Instant::now();
        other.acquire(Priority::Initial).await;
        assert_eq!(Instant::now(), start, "another account never waits");
        a.acquire(Priority::Consent).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(7));
        // Without Retry-After: exponential back-off, 1 s then 2 s (+ up to 25 % jitter).
        let first = a.rate_limited(None);
        let second = a.rate_limited(None);
        assert!(
            first >= Duration::from_secs(1) && first <= Duration::from_millis(1250),
            "{first:?}"
        );
        assert!(
            second >= Duration::from_secs(2) && second <= Duration::from_millis(2500),
            "{second:?}"
        );
        a.succeeded();
        let again = a.rate_limited(None);
        assert!(again <= Duration::from_millis(1250), "{again:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn syncs_of_one_account_share_one_budget_and_the_stricter_limit_wins() {
        let budgets = Budgets::default();
        let one = budgets.account("freshworks:acme", &[w(1000, 3600)]);
        let two = budgets.account("freshworks:acme", &[w(400, 60), w(500, 3600)]);
        assert!(Arc::ptr_eq(&one, &two));
        let snap = one.snapshot();
        let windows: Vec<(u32, u64)> = snap
            .windows
            .iter()
            .map(|u| (u.window.requests, u.window.period.as_secs()))
            .collect();
        assert_eq!(windows, vec![(400, 60), (500, 3600)]);
        for _ in 0..3 {
            one.acquire(Priority::Incremental).await;
        }
        two.acquire(Priority::Incremental).await;
        assert_eq!(two.snapshot().windows[0].used, 4);
        assert_eq!(two.ready(Priority::Incremental).await, 396);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_gate_holds_requests_until_resumed() {
        let (tx, rx) = watch::channel(true);
        let gate = Arc::new(RequestGate::new(rx));
        gate.bind(Arc::new(AccountBudget::new("acct", vec![])));
        let url = Url::parse("http://127.0.0.1/").unwrap();
        let g = gate.clone();
        let task = tokio::spawn(async move { g.acquire(&url).await });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!task.is_finished(), "a paused sync sends nothing");
        assert_eq!(gate.budget().unwrap().snapshot().requests, 0);
        tx.send(false).unwrap();
        task.await.unwrap();
        assert_eq!(gate.budget().unwrap().snapshot().requests, 1);
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    /// Acquires `n` requests one after the other; returns when each was granted.
    async fn times(b: &AccountBudget, n: usize) -> Vec<Duration> {
        let start = Instant::now();
        let mut out = Vec::new();
        for _ in 0..n {
            b.acquire(Priority::Incremental).await;
            out.push(Instant::now() - start);
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn a_count_at_the_reserve_pauses_the_account_until_the_reset() {
        let policy = RatePolicy {
            slow_below: Share::Requests(0),
            reserve: Share::Requests(1),
            ..RatePolicy::default()
        };
        let b = AccountBudget::with_policy("acct", vec![w(1000, 3600)], policy);
        b.observe(&headers(&[
            ("x-ratelimit-limit", "1000"),
            ("x-ratelimit-remaining", "4"),
            ("x-ratelimit-reset", "60"),
        ]));
        // Three go at once (one is left to the app's other users); the fourth waits for
        // the app's window to reset, although the connector's own limit has room.
        let t = times(&b, 4).await;
        assert_eq!(t[..3], [Duration::ZERO; 3]);
        assert_eq!(t[3], Duration::from_secs(60));
        let snap = b.snapshot();
        assert!(snap.held >= 1, "{snap:?}");
        assert_eq!(snap.rate_limited, 0, "paused before any 429");
        assert!(snap.app.is_none(), "the count expired with its window");
    }

    #[tokio::test(start_paused = true)]
    async fn a_low_count_spreads_the_rest_evenly_until_the_reset() {
        let b = AccountBudget::new("acct", vec![]);
        b.observe(&headers(&[
            ("X-RateLimit-Limit", "1000"),
            ("X-RateLimit-Remaining", "4"),
            ("X-RateLimit-Reset", "100"),
        ]));
        let snap = b.snapshot();
        let app = snap.app.as_ref().unwrap();
        assert_eq!(
            (app.remaining, app.limit, app.paused),
            (4, Some(1000), false)
        );
        // 4 left of 1000 is below the default slow-below (10 %): one every 25 s, then
        // the pause at 0 until the reset.
        let t = times(&b, 5).await;
        let secs: Vec<u64> = t.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [0, 25, 50, 75, 100]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_plentiful_count_does_not_slow_anything() {
        let b = AccountBudget::new("acct", vec![]);
        b.observe(&headers(&[
            ("x-ratelimit-limit", "1000"),
            ("x-ratelimit-remaining", "900"),
            ("x-ratelimit-reset", "3000"),
        ]));
        assert_eq!(times(&b, 50).await.last(), Some(&Duration::ZERO));
        assert_eq!(b.ready(Priority::Incremental).await, 850);
        assert_eq!(b.snapshot().held, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_reset_is_read_as_configured_on_a_fake_wall_clock() {
        const NOW: f64 = 1_700_000_000.0;
        let zero =
            |reset: &str| headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", reset)]);
        let paused_for = |meaning: ResetMeaning, reset: &str| {
            let policy = RatePolicy {
                reset: meaning,
                ..RatePolicy::default()
            };
            let b = AccountBudget::with_policy("acct", vec![], policy).at_unix_time(NOW);
            b.observe(&zero(reset));
            b.snapshot().app.and_then(|a| a.reset_ms)
        };
        // Auto: small numbers are seconds from now; large ones Unix seconds or ms.
        assert_eq!(paused_for(ResetMeaning::Auto, "30"), Some(30_000));
        assert_eq!(paused_for(ResetMeaning::Auto, "1700000010"), Some(10_000));
        assert_eq!(
            paused_for(ResetMeaning::Auto, "1700000010000"),
            Some(10_000)
        );
        assert_eq!(paused_for(ResetMeaning::Epoch, "1700000045"), Some(45_000));
        assert_eq!(paused_for(ResetMeaning::Seconds, "45"), Some(45_000));
        // A reset in the past: the window is over, the count does not hold.
        assert_eq!(paused_for(ResetMeaning::Epoch, "1699999990"), None);
        assert_eq!(paused_for(ResetMeaning::Epoch, "30"), None);

        let b = AccountBudget::with_policy(
            "acct",
            vec![],
            RatePolicy {
                reset: ResetMeaning::Epoch,
                ..RatePolicy::default()
            },
        )
        .at_unix_time(NOW);
        b.observe(&zero("1700000020"));
        assert_eq!(times(&b, 1).await, [Duration::from_secs(20)]);
    }

    #[tokio::test(start_paused = true)]
    async fn headers_are_ignored_when_switched_off() {
        let b = AccountBudget::with_policy(
            "acct",
            vec![],
            RatePolicy {
                headers: false,
                ..RatePolicy::default()
            },
        );
        b.observe(&headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "600"),
        ]));
        assert_eq!(times(&b, 3).await, [Duration::ZERO; 3]);
        assert!(b.snapshot().app.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_without_retry_after_can_wait_until_the_next_clock_hour() {
        // 50 minutes past the hour on the fake wall clock.
        let hour = 1_699_999_200.0; // a multiple of 3600
        let b = AccountBudget::with_policy(
            "acct",
            vec![],
            RatePolicy {
                no_wait: NoWaitPolicy::NextHour,
                ..RatePolicy::default()
            },
        )
        .at_unix_time(hour + 3000.0);
        let wait = b.rate_limited(None);
        assert!(
            wait >= Duration::from_secs(600) && wait <= Duration::from_secs(601),
            "{wait:?}"
        );
        // A Retry-After is still exact.
        assert_eq!(
            b.rate_limited(Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        let t = times(&b, 1).await;
        assert!(t[0] >= Duration::from_secs(600), "{t:?}");
        // A count at 0 with no reset said waits the same way, then lets one through.
        let b = AccountBudget::with_policy(
            "acct",
            vec![],
            RatePolicy {
                no_wait: NoWaitPolicy::NextHour,
                ..RatePolicy::default()
            },
        )
        .at_unix_time(hour + 3590.0);
        b.observe(&headers(&[("x-ratelimit-remaining", "0")]));
        let t = times(&b, 2).await;
        assert!(
            t[0] >= Duration::from_secs(10) && t[0] <= Duration::from_secs(11),
            "{t:?}"
        );
        assert_eq!(t[1], t[0], "the count no longer holds after the wait");
    }

    #[test]
    fn connections_of_one_account_merge_to_the_stricter_policy() {
        let a = RatePolicy {
            reserve: Share::Requests(10),
            ..RatePolicy::default()
        };
        let b = RatePolicy {
            reserve: Share::Requests(50),
            reset: ResetMeaning::Epoch,
            no_wait: NoWaitPolicy::NextHour,
            ..RatePolicy::default()
        };
        let m = a.stricter(b);
        assert_eq!(m.reserve, Share::Requests(50));
        assert_eq!(m.reset, ResetMeaning::Epoch);
        assert_eq!(m.no_wait, NoWaitPolicy::NextHour);
        assert_eq!(Share::Of(0.05).of(Some(1000)), 50);
        assert_eq!(Share::Of(0.05).of(None), 0);
    }

    #[test]
    fn the_operators_limits_replace_what_connectors_declare() {
        let budgets = Budgets::default();
        // An Enterprise plan: 5,000 an hour, more than the connector's default 1,000.
        let b = budgets.account_with(
            "freshworks:acme",
            &[w(1000, 3600), w(400, 60)],
            None,
            Some(&[w(5000, 3600), w(400, 60)]),
        );
        let limits = |b: &AccountBudget| -> Vec<(u32, u64)> {
            b.snapshot()
                .windows
                .iter()
                .map(|u| (u.window.requests, u.window.period.as_secs()))
                .collect()
        };
        assert_eq!(limits(&b), [(400, 60), (5000, 3600)]);
        // Another connector of the account declares its defaults: the plan still holds.
        budgets.account("freshworks:acme", &[w(1000, 3600)]);
        assert_eq!(limits(&b), [(400, 60), (5000, 3600)]);
        // Two operator settings for one account: the stricter wins.
        budgets.account_with("freshworks:acme", &[], None, Some(&[w(2000, 3600)]));
        assert_eq!(limits(&b), [(400, 60), (2000, 3600)]);
    }
}

/// The fleet's shared budget, against a real PostgreSQL server (real time: the database's
/// clock is real, so these use windows of a second or two).
#[cfg(test)]
mod fleet_tests {
    use super::*;

    fn w(requests: u32, millis: u64) -> Window {
        Window {
            requests,
            period: Duration::from_millis(millis),
        }
    }

    /// Two daemons hammer one account of N per S: no interval of S holds more than N of
    /// their grants together, both make progress, and a lease is far rarer than a request.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_daemons_together_never_exceed_the_accounts_limit() {
        const N: usize = 64;
        const S: Duration = Duration::from_secs(1);
        const TOTAL: usize = 4 * N;
        let pg = crate::db::testing::postgres();
        let daemons = [
            Budgets::shared(pg.clone(), "d1".into()),
            Budgets::shared(pg.clone(), "d2".into()),
        ];
        let budgets: Vec<Arc<AccountBudget>> = daemons
            .iter()
            .map(|d| d.account("acct", &[w(N as u32, S.as_millis() as u64)]))
            .collect();
        let before = pg.stats().queries.load(Ordering::Relaxed);
        let grants = Arc::new(Mutex::new(Vec::<(usize, Instant)>::new()));
        let mut tasks = Vec::new();
        for (d, b) in budgets.iter().enumerate() {
            for _ in 0..3 {
                let (b, grants) = (b.clone(), grants.clone());
                tasks.push(tokio::spawn(async move {
                    loop {
                        b.acquire(Priority::Initial).await;
                        let mut g = grants.lock().unwrap();
                        g.push((d, Instant::now()));
                        if g.len() >= TOTAL {
                            return;
                        }
                    }
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let queries = pg.stats().queries.load(Ordering::Relaxed) - before;
        let mut times: Vec<(usize, Instant)> = grants.lock().unwrap().clone();
        times.sort_by_key(|(_, t)| *t);
        for (i, (_, t)) in times.iter().enumerate() {
            let within = times[i..].iter().filter(|(_, u)| *u - *t < S).count();
            assert!(within <= N, "{within} requests within {S:?} (limit {N})");
        }
        let per = |d: usize| times.iter().filter(|(x, _)| *x == d).count();
        assert!(
            per(0) > 0 && per(1) > 0,
            "both progress: {} and {}",
            per(0),
            per(1)
        );
        let requests: u64 = budgets.iter().map(|b| b.snapshot().requests).sum();
        println!(
            "fleet budget: {requests} requests, {queries} statements ({:.3} per request), split {}/{}",
            queries as f64 / requests as f64,
            per(0),
            per(1)
        );
        assert!(
            queries < requests,
            "{queries} statements for {requests} requests"
        );
    }

    /// A 429 one daemon saw holds the other's requests until its Retry-After.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_429_seen_by_one_daemon_blocks_the_other_until_retry_after() {
        let pg = crate::db::testing::postgres();
        let one = AccountBudget::new("acct", vec![w(100, 1000)]).shared_by(pg.clone(), "d1");
        let two = AccountBudget::new("acct", vec![w(100, 1000)]).shared_by(pg.clone(), "d2");
        let retry_after = Duration::from_millis(1500);
        let start = Instant::now();
        assert_eq!(one.rate_limited(Some(retry_after)), retry_after);
        one.flush().await;
        two.acquire(Priority::Consent).await;
        assert!(
            Instant::now() >= start + retry_after,
            "the other daemon waited for the Retry-After"
        );
        assert_eq!(two.snapshot().rate_limited, 0, "it saw no 429 itself");
        // Unlimited accounts (no windows) share 429s too.
        let three = AccountBudget::new("free", vec![]).shared_by(pg.clone(), "d1");
        let four = AccountBudget::new("free", vec![]).shared_by(pg.clone(), "d2");
        let start = Instant::now();
        three.rate_limited(Some(retry_after));
        three.flush().await;
        four.acquire(Priority::Consent).await;
        assert!(Instant::now() >= start + retry_after);
    }

    /// An app count at the reserve that one daemon read pauses the other until the reset.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_low_app_count_seen_by_one_daemon_pauses_the_other() {
        let pg = crate::db::testing::postgres();
        let policy = RatePolicy {
            reserve: Share::Requests(1),
            ..RatePolicy::default()
        };
        let budget = |daemon: &str| {
            AccountBudget::with_policy("acct", vec![w(1000, 60_000)], policy)
                .shared_by(pg.clone(), daemon)
        };
        let (one, two) = (budget("d1"), budget("d2"));
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-limit", "1000".parse().unwrap());
        h.insert("x-ratelimit-remaining", "1".parse().unwrap());
        h.insert("x-ratelimit-reset", "2".parse().unwrap());
        let start = Instant::now();
        one.observe(&h);
        one.flush().await;
        two.acquire(Priority::Incremental).await;
        assert!(
            Instant::now() >= start + Duration::from_secs(2),
            "the other daemon paused until the app's reset"
        );
        let snap = two.snapshot();
        assert!(snap.held >= 1, "{snap:?}");
        assert_eq!(snap.rate_limited, 0);
    }

    /// While the database fails, the account's requests wait (never unshared quota);
    /// once it answers again they go.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_failure_holds_requests_until_it_answers_again() {
        const SIG: &str = "(text, text, integer[], double precision[], double precision, integer, double precision, bigint, bigint, double precision, double precision)";
        let pg = crate::db::testing::postgres();
        let sql = |q: String| {
            pg.run(move |pool| async move {
                pool.get().await.unwrap().batch_execute(&q).await.unwrap();
            })
        };
        sql(format!(
            "ALTER FUNCTION tandem_budget_lease{SIG} RENAME TO tandem_budget_lease_away"
        ));
        let b =
            Arc::new(AccountBudget::new("acct", vec![w(100, 1000)]).shared_by(pg.clone(), "d1"));
        let task = tokio::spawn({
            let b = b.clone();
            async move { b.acquire(Priority::Incremental).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!task.is_finished(), "no request without the shared budget");
        assert_eq!(b.snapshot().requests, 0);
        sql(format!(
            "ALTER FUNCTION tandem_budget_lease_away{SIG} RENAME TO tandem_budget_lease"
        ));
        task.await.unwrap();
        assert_eq!(b.snapshot().requests, 1);
    }

    /// The cost per request on a Freshworks-like plan (400 a minute, 1,000 an hour), two
    /// daemons spending 300 requests between them: printed for docs/fleet.md.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn statements_per_request_on_a_realistic_plan() {
        let pg = crate::db::testing::postgres();
        let windows = [w(400, 60_000), w(1000, 3_600_000)];
        let budgets: Vec<Arc<AccountBudget>> = ["d1", "d2"]
            .iter()
            .map(|d| Budgets::shared(pg.clone(), (*d).into()).account("acct", &windows))
            .collect();
        let before = pg.stats().queries.load(Ordering::Relaxed);
        let mut tasks = Vec::new();
        for b in &budgets {
            for _ in 0..3 {
                let b = b.clone();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..50 {
                        b.acquire(Priority::Initial).await;
                    }
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let queries = pg.stats().queries.load(Ordering::Relaxed) - before;
        let requests: u64 = budgets.iter().map(|b| b.snapshot().requests).sum();
        assert_eq!(requests, 300);
        println!(
            "fleet budget (400/min, 1000/h, 2 daemons): {requests} requests, {queries} statements ({:.3} per request)",
            queries as f64 / requests as f64
        );
        assert!(
            queries * 4 < requests,
            "{queries} statements for {requests} requests"
        );
    }

    /// A plentiful app count is not written on its own: it rides along the next lease,
    /// and the other daemon adopts it (less the blocks granted since) at its next lease.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_plentiful_app_count_rides_along_the_next_lease() {
        let pg = crate::db::testing::postgres();
        let one = AccountBudget::new("acct", vec![w(1000, 60_000)]).shared_by(pg.clone(), "d1");
        let two = AccountBudget::new("acct", vec![w(1000, 60_000)]).shared_by(pg.clone(), "d2");
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-limit", "1000".parse().unwrap());
        h.insert("x-ratelimit-remaining", "900".parse().unwrap());
        h.insert("x-ratelimit-reset", "600".parse().unwrap());
        let before = pg.stats().queries.load(Ordering::Relaxed);
        one.observe(&h);
        one.flush().await;
        assert_eq!(
            pg.stats().queries.load(Ordering::Relaxed),
            before,
            "nothing written for a plentiful count"
        );
        one.acquire(Priority::Incremental).await;
        two.acquire(Priority::Incremental).await;
        let app = two.snapshot().app.expect("the fleet's count");
        // 900, less one's block of 1 and two's own request.
        assert_eq!(
            (app.remaining, app.limit, app.paused),
            (898, Some(1000), false)
        );
    }

    /// Grants older than the shortest window are merged per bucket, so that a long
    /// window with small blocks keeps few rows; none is lost (merging dates them later).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn old_grants_are_merged_and_none_is_lost() {
        let pg = crate::db::testing::postgres();
        // Blocks of 1 (8 per 100 ms), and a long window that keeps every grant.
        let b = AccountBudget::new("acct", vec![w(8, 100), w(100_000, 60_000)])
            .shared_by(pg.clone(), "d1");
        for _ in 0..200 {
            b.acquire(Priority::Initial).await;
        }
        let (rows, granted, merged): (i64, i64, i64) = pg.run(|pool| async move {
            let c = pool.get().await.unwrap();
            let r = c
                .query_one(
                    "SELECT count(*), sum(n)::bigint, count(*) FILTER (WHERE daemon = '') \
                     FROM tandem_budget_grants WHERE account = 'acct'",
                    &[],
                )
                .await
                .unwrap();
            (r.get(0), r.get(1), r.get(2))
        });
        assert!(granted >= 200, "{granted} granted for 200 requests");
        assert!(merged > 0, "old grants merged");
        assert!(rows < 100, "{rows} rows for {granted} grants");
    }
}
