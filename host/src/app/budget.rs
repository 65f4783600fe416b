//! One request budget per app account (§2.11), shared by every sync that uses the account.
//!
//! - The limits come from the connector's `describe` (`rate-limits`: N requests per S
//!   seconds, possibly several windows). Each window is kept as a sliding log of send
//!   times, so that no interval of S seconds ever holds more than N requests: whatever
//!   the alignment of the app's own fixed windows, the budget never causes a 429.
//! - Requests are granted by priority: consent changes, then incremental changes,
//!   then retries, then initial loads. A lower priority waits while a higher one waits.
//! - A 429 blocks the whole account until its `Retry-After` (or an exponential back-off
//!   with jitter when the app sends none); other accounts are untouched, and waiting is
//!   an async sleep, so no other sync is ever blocked by one that waits.
//!
//! [`RequestGate`] is what a connector client holds: it plugs the account's budget into
//! the runtime's [`RequestBudget`] hook, at the priority its adapter sets per call, and
//! holds every request while its sync is paused.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use url::Url;

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

/// One rate window: at most `requests` per `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    /// Requests allowed in one period.
    pub requests: u32,
    /// The period.
    #[serde(serialize_with = "secs")]
    pub period: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
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
}

/// The budget of one app account.
#[derive(Debug)]
pub struct AccountBudget {
    account: String,
    windows: Mutex<Vec<Window>>,
    state: Mutex<State>,
    notify: Notify,
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
}

/// One window's use.
#[derive(Clone, Debug, Serialize)]
pub struct WindowUse {
    /// The limit.
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
        AccountBudget {
            account: account.into(),
            windows: Mutex::new(normalise(windows)),
            state: Mutex::new(State::default()),
            notify: Notify::new(),
        }
    }

    /// The account id.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Adds windows another connector of the same account reports (the stricter wins).
    pub fn merge(&self, more: &[Window]) {
        let mut w = lock(&self.windows);
        let mut all = w.clone();
        all.extend_from_slice(more);
        *w = normalise(all);
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
            let wait = {
                let windows = lock(&self.windows).clone();
                let mut s = lock(&self.state);
                match s.check(now, priority, &windows) {
                    Ok(free) => {
                        if take {
                            s.sent.push_back(now);
                            s.requests += 1;
                        }
                        return free.max(1);
                    }
                    Err(wait) => wait,
                }
            };
            match wait {
                Some(d) => {
                    tokio::select! {
                        () = tokio::time::sleep(d) => {}
                        () = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Records a 429: the account is blocked for `retry_after`, or an exponential back-off
    /// with jitter when the app gave none. Returns the wait.
    pub fn rate_limited(&self, retry_after: Option<Duration>) -> Duration {
        let mut s = lock(&self.state);
        s.rate_limited += 1;
        // Only refusals without a Retry-After escalate the back-off: when the app says
        // how long to wait, that wait is exact and says nothing about the next one.
        if retry_after.is_none() {
            s.strikes = s.strikes.saturating_add(1);
        }
        let wait = retry_after.unwrap_or_else(|| {
            let exp = FIRST_BACKOFF.saturating_mul(1 << (s.strikes - 1).min(10));
            let base = exp.min(MAX_BACKOFF);
            // Up to 25 % jitter, so that syncs do not come back in lockstep.
            base + base.mul_f64(jitter() * 0.25)
        });
        let until = Instant::now() + wait;
        s.blocked_until = Some(s.blocked_until.map_or(until, |b| b.max(until)));
        drop(s);
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

    /// `Ok(free slots)` when a request at `p` may go now, else how long to wait
    /// (`None`: until notified, a higher priority is waiting).
    fn check(
        &mut self,
        now: Instant,
        p: Priority,
        windows: &[Window],
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
            None => Ok(free),
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
}

impl Budgets {
    /// The budget of `account`, created with `windows` or merged with them.
    pub fn account(&self, account: &str, windows: &[Window]) -> Arc<AccountBudget> {
        let mut map = lock(&self.map);
        match map.get(account) {
            Some(b) => {
                b.merge(windows);
                b.clone()
            }
            None => {
                let b = Arc::new(AccountBudget::new(account, windows.to_vec()));
                map.insert(account.into(), b.clone());
                b
            }
        }
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
}

impl RequestGate {
    /// A gate following `paused` (a sync's pause switch).
    pub fn new(paused: watch::Receiver<bool>) -> Self {
        RequestGate {
            budget: OnceLock::new(),
            priority: AtomicU8::new(Priority::Incremental as u8),
            paused,
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
        })
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
}
