//! A fleet of daemons on one PostgreSQL state (docs/fleet.md §3): each sync is owned by at
//! most one daemon at a time through a lease row in `tandem_leases`.
//!
//! - Every `ttl / 3` a daemon heartbeats: one statement renews all its leases for
//!   `2 ttl / 3` (so that a dead daemon's syncs are claimed within one `ttl` of its
//!   last heartbeat: the lease runs out, then the others' next heartbeat comes; a live
//!   owner has one heartbeat of margin), and reads
//!   the wake-ups other daemons left for its syncs), one marks it alive and counts the
//!   live daemons; then it claims free or expired leases up to its fair share
//!   (`ceil(syncs / live daemons)`, at most `capacity`) with `FOR UPDATE SKIP LOCKED`, so
//!   daemons claiming together never wait for or take the same row, and it releases,
//!   between runs, what it holds above its share: a new daemon gets work within one
//!   heartbeat after the others see it, a dead daemon's syncs once their leases expire.
//! - Each claim bumps the lease's `epoch`. A run's store is fenced by the epoch it was
//!   claimed with ([`crate::sync::state::Fence`]): every commit checks it in its own
//!   transaction, so a daemon that was paused or cut off past its lease writes nothing
//!   after another took over.
//! - Before each step of a run (and so before each batch of app writes) the daemon also
//!   checks, by its own monotonic clock, that it renewed the lease less than a TTL ago:
//!   a daemon resumed after a long pause stops before sending what it planned.
//! - `trigger` and webhooks reach the owner through the database: `wake_at` on the lease
//!   row, read by the owner's next heartbeat.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::FleetConfig;
use crate::db::pg::{Pg, PgError, params};
use crate::sync::state::Fence;

/// A lease this daemon holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: i64,
    /// When it was last renewed (or claimed), by this process's monotonic clock.
    renewed: Instant,
}

/// What one heartbeat changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Beat {
    /// Leases claimed (their syncs should run now).
    pub claimed: Vec<String>,
    /// Leases lost: another daemon took them over, or they expired.
    pub lost: Vec<String>,
    /// Leases released to make room for other daemons.
    pub released: Vec<String>,
    /// Syncs another daemon asked to run now.
    pub woken: Vec<String>,
}

/// A sync's lease as `tandem sync status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseInfo {
    /// The owning daemon, if any.
    pub owner: Option<String>,
    /// Seconds since it was claimed.
    pub age_secs: Option<f64>,
    /// Whether it has expired (the owner stopped renewing).
    pub expired: bool,
}

/// This daemon's part in the fleet.
#[derive(Debug)]
pub struct Fleet {
    pg: Arc<Pg>,
    id: String,
    ttl: Duration,
    capacity: usize,
    syncs: Vec<String>,
    held: Mutex<BTreeMap<String, Held>>,
    /// Syncs above the fair share whose run was in progress at a heartbeat: no new run
    /// starts, and the next heartbeat gives them back.
    draining: Mutex<BTreeSet<String>>,
}

impl Fleet {
    /// Registers this daemon and the config's syncs (a lease row each).
    pub fn join(
        pg: Arc<Pg>,
        id: String,
        cfg: &FleetConfig,
        syncs: Vec<String>,
    ) -> Result<Fleet, PgError> {
        let c = pg.client_blocking()?;
        pg.execute(
            &c,
            "INSERT INTO tandem_daemons (id, host, pid, version, capacity) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, \
             version = EXCLUDED.version, capacity = EXCLUDED.capacity, started_at = now(), seen_at = now()",
            params![
                id.clone(),
                host_name(),
                std::process::id() as i32,
                env!("CARGO_PKG_VERSION").to_string(),
                cfg.capacity.min(i32::MAX as usize) as i32
            ],
        )?;
        pg.execute(
            &c,
            "INSERT INTO tandem_leases (sync) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
            params![syncs.clone()],
        )?;
        Ok(Fleet {
            pg,
            id,
            ttl: cfg.lease_ttl,
            capacity: cfg.capacity,
            syncs,
            held: Mutex::new(BTreeMap::new()),
            draining: Mutex::new(BTreeSet::new()),
        })
    }

    /// This daemon's name in the fleet.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The lease time.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How often to heartbeat.
    pub fn period(&self) -> Duration {
        self.ttl / 3
    }

    /// How long a renewal keeps a lease: two heartbeats, so that a takeover comes within
    /// one `ttl`.
    fn lease_time(&self) -> Duration {
        self.ttl * 2 / 3
    }

    fn held(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Held>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn draining(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.draining
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The fence for a new run of `sync`, if this daemon holds a live lease on it (and is
    /// not about to give it back).
    pub fn fence(&self, sync: &str) -> Option<Fence> {
        if self.draining().contains(sync) {
            return None;
        }
        let held = self.held();
        let h = held.get(sync)?;
        (h.renewed.elapsed() < self.lease_time()).then(|| Fence {
            sync: sync.into(),
            owner: self.id.clone(),
            epoch: h.epoch,
        })
    }

    /// Whether the lease behind `fence` is still this daemon's, as far as it knows: same
    /// epoch, renewed less than a TTL ago. Checked before each step of a run.
    pub fn still_holds(&self, fence: &Fence) -> bool {
        self.held()
            .get(&fence.sync)
            .is_some_and(|h| h.epoch == fence.epoch && h.renewed.elapsed() < self.lease_time())
    }

    /// The syncs this daemon holds.
    pub fn holding(&self) -> Vec<String> {
        self.held().keys().cloned().collect()
    }

    /// One heartbeat: renew, count the live daemons, claim up to the fair share, release
    /// above it (except `busy` syncs, whose runs are in progress).
    pub fn beat(&self, busy: &BTreeSet<String>) -> Result<Beat, PgError> {
        let pg = &self.pg;
        let c = pg.client_blocking()?;
        let ttl = self.lease_time().as_secs_f64();
        let started = Instant::now();
        let mut beat = Beat::default();

        // Renew: one statement for all of this daemon's leases.
        let rows = pg.query(
            &c,
            // RETURNING shows new values: the wake-up is read from the row as it was.
            "UPDATE tandem_leases l SET expires_at = clock_timestamp() + make_interval(secs => $2), \
             wake_at = NULL \
             FROM (SELECT sync, wake_at FROM tandem_leases WHERE owner = $1 FOR UPDATE) old \
             WHERE l.sync = old.sync RETURNING l.sync, l.epoch, old.wake_at IS NOT NULL",
            params![self.id.clone(), ttl],
        )?;
        let renewed: BTreeMap<String, (i64, bool)> = rows
            .iter()
            .map(|r| (r.get::<_, String>(0), (r.get(1), r.get(2))))
            .collect();
        {
            let mut held = self.held();
            for (sync, h) in held.iter_mut() {
                if let Some((epoch, _)) = renewed.get(sync)
                    && *epoch == h.epoch
                {
                    h.renewed = started;
                }
            }
            let before: Vec<String> = held.keys().cloned().collect();
            held.retain(|sync, h| renewed.get(sync).is_some_and(|(e, _)| *e == h.epoch));
            beat.lost = before
                .into_iter()
                .filter(|s| !held.contains_key(s))
                .collect();
            // A lease row this daemon owns but did not know of (a restart with the same
            // id): keep it, at the epoch the database has.
            for (sync, (epoch, _)) in &renewed {
                if self.syncs.contains(sync) && !held.contains_key(sync) {
                    held.insert(
                        sync.clone(),
                        Held {
                            epoch: *epoch,
                            renewed: started,
                        },
                    );
                    beat.claimed.push(sync.clone());
                }
            }
        }
        beat.woken = renewed
            .iter()
            .filter(|(_, (_, woken))| *woken)
            .map(|(s, _)| s.clone())
            .collect();

        // A draining sync no longer held (taken over, expired) is forgotten.
        {
            let held = self.held();
            self.draining().retain(|s| held.contains_key(s));
        }

        // Alive, and how many daemons share the work.
        let live: i64 = pg
            .query(
                &c,
                "WITH me AS (UPDATE tandem_daemons SET seen_at = clock_timestamp() WHERE id = $1) \
                 SELECT count(*) FROM tandem_daemons \
                 WHERE id <> $1 AND seen_at > clock_timestamp() - make_interval(secs => $2)",
                params![self.id.clone(), ttl],
            )?
            .first()
            .map(|r| r.get(0))
            .unwrap_or(0);
        let daemons = live as usize + 1;
        let share = self.syncs.len().div_ceil(daemons).min(self.capacity);
        let holding = self.held().len();

        if holding < share {
            let rows = pg.query(
                &c,
                "UPDATE tandem_leases l SET owner = $1, epoch = l.epoch + 1, \
                 expires_at = clock_timestamp() + make_interval(secs => $2), \
                 claimed_at = clock_timestamp(), wake_at = NULL \
                 WHERE l.sync IN (SELECT sync FROM tandem_leases \
                   WHERE sync = ANY($3) AND (owner IS NULL OR expires_at < clock_timestamp()) \
                   ORDER BY sync LIMIT $4 FOR UPDATE SKIP LOCKED) \
                 RETURNING l.sync, l.epoch",
                params![
                    self.id.clone(),
                    ttl,
                    self.syncs.clone(),
                    (share - holding) as i64
                ],
            )?;
            let mut held = self.held();
            for r in rows {
                let sync: String = r.get(0);
                held.insert(
                    sync.clone(),
                    Held {
                        epoch: r.get(1),
                        renewed: started,
                    },
                );
                beat.claimed.push(sync);
            }
        } else if holding > share {
            // Make room for a daemon that joined: give back syncs above the share, idle
            // ones first; a sync whose run is in progress starts no new run and goes at
            // the next heartbeat (so a daemon whose syncs are always busy still shares).
            let give: Vec<(String, i64)> = {
                let mut held = self.held();
                let mut draining = self.draining();
                let mut order: Vec<String> = held.keys().rev().cloned().collect();
                // Draining ones first, then idle ones, then busy ones.
                order.sort_by_key(|s| (!draining.contains(s), busy.contains(s)));
                let mut give = Vec::new();
                for s in order.into_iter().take(holding - share) {
                    if busy.contains(&s) {
                        draining.insert(s);
                    } else if let Some(h) = held.remove(&s) {
                        draining.remove(&s);
                        give.push((s, h.epoch));
                    }
                }
                give
            };
            if !give.is_empty() {
                let (syncs, epochs): (Vec<String>, Vec<i64>) = give.into_iter().unzip();
                pg.execute(
                    &c,
                    "UPDATE tandem_leases l SET owner = NULL, expires_at = NULL \
                     FROM unnest($2::text[], $3::bigint[]) AS g(sync, epoch) \
                     WHERE l.sync = g.sync AND l.epoch = g.epoch AND l.owner = $1",
                    params![self.id.clone(), syncs.clone(), epochs],
                )?;
                beat.released = syncs;
            }
        }
        Ok(beat)
    }

    /// Gives every lease back (a clean shutdown): the others take them at their next
    /// heartbeat instead of after the TTL.
    pub fn leave(&self) -> Result<(), PgError> {
        let c = self.pg.client_blocking()?;
        self.held().clear();
        self.draining().clear();
        self.pg.execute(
            &c,
            "UPDATE tandem_leases SET owner = NULL, expires_at = NULL WHERE owner = $1",
            params![self.id.clone()],
        )?;
        self.pg.execute(
            &c,
            "DELETE FROM tandem_daemons WHERE id = $1",
            params![self.id.clone()],
        )?;
        Ok(())
    }
}

/// Asks the owner of `sync` to run it now (its next heartbeat reads this).
pub fn wake(pg: &Pg, sync: &str) -> Result<(), PgError> {
    let c = pg.client_blocking()?;
    pg.execute(
        &c,
        "UPDATE tandem_leases SET wake_at = clock_timestamp() WHERE sync = $1",
        params![sync.to_string()],
    )?;
    Ok(())
}

/// Every sync's lease, by sync.
pub fn leases(pg: &Pg) -> Result<BTreeMap<String, LeaseInfo>, PgError> {
    let c = pg.client_blocking()?;
    let rows = pg.query(
        &c,
        "SELECT sync, owner, extract(epoch FROM clock_timestamp() - claimed_at)::float8, \
         coalesce(expires_at < clock_timestamp(), false) FROM tandem_leases",
        params![],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let owner: Option<String> = r.get(1);
            (
                r.get::<_, String>(0),
                LeaseInfo {
                    age_secs: owner.as_ref().and(r.get(2)),
                    owner,
                    expired: r.get(3),
                },
            )
        })
        .collect())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// `host-pid-random`: unique across restarts on one machine.
pub(crate) fn default_id() -> String {
    let mut r = [0u8; 3];
    let _ = getrandom::fill(&mut r);
    format!("{}-{}-{}", host_name(), std::process::id(), hex::encode(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::postgres;
    use crate::sync::SyncStore;
    use crate::sync::state::{StateError, SyncStatus};

    fn member(pg: &Arc<Pg>, id: &str, syncs: &[&str]) -> Fleet {
        let cfg = FleetConfig {
            lease_ttl: Duration::from_secs(30),
            capacity: 1000,
            id: Some(id.into()),
        };
        Fleet::join(
            pg.clone(),
            id.into(),
            &cfg,
            syncs.iter().map(|s| s.to_string()).collect(),
        )
        .unwrap()
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s{i}")).collect()
    }

    #[test]
    fn a_newcomer_gets_its_fair_share_and_no_sync_has_two_owners() {
        let pg = postgres();
        let all = names(10);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let a = member(&pg, "a", &refs);
        let idle = BTreeSet::new();
        assert_eq!(a.beat(&idle).unwrap().claimed.len(), 10, "alone: all");
        let b = member(&pg, "b", &refs);
        assert!(b.beat(&idle).unwrap().claimed.is_empty(), "all held");
        // `a` sees two daemons and gives back what is above its share, except a sync
        // whose run is in progress.
        let busy: BTreeSet<String> = [a.holding()[9].clone()].into();
        let released = a.beat(&busy).unwrap().released;
        assert_eq!(released.len(), 5);
        assert!(!released.contains(&a.holding().last().cloned().unwrap_or_default()));
        assert!(a.holding().contains(&busy.first().unwrap().clone()));
        assert_eq!(b.beat(&idle).unwrap().claimed.len(), 5);
        let (ha, hb) = (a.holding(), b.holding());
        assert_eq!((ha.len(), hb.len()), (5, 5));
        assert!(ha.iter().all(|s| !hb.contains(s)), "{ha:?} / {hb:?}");
        let leases = leases(&pg).unwrap();
        assert_eq!(leases.len(), 10);
        assert!(leases.values().all(|l| l.owner.is_some() && !l.expired));
        // A daemon whose syncs are all busy still shares: the busy ones start no new run
        // and go at the next heartbeat.
        let c = member(&pg, "c", &refs);
        c.beat(&idle).unwrap();
        let all_busy: BTreeSet<String> = a.holding().into_iter().collect();
        assert!(a.beat(&all_busy).unwrap().released.is_empty());
        let draining: Vec<String> = a
            .holding()
            .into_iter()
            .filter(|s| a.fence(s).is_none())
            .collect();
        assert_eq!(draining.len(), 1, "5 held, a share of 4: {draining:?}");
        assert_eq!(a.beat(&idle).unwrap().released, draining);
        assert_eq!(a.holding().len(), 4);
        assert_eq!(c.beat(&idle).unwrap().claimed.len(), 1);
        // A clean stop gives everything back at once.
        a.leave().unwrap();
        c.leave().unwrap();
        assert_eq!(b.beat(&idle).unwrap().claimed.len(), 5);
        assert_eq!(b.holding().len(), 10);
    }

    #[test]
    fn a_stale_owner_cannot_commit_after_a_takeover() {
        let pg = postgres();
        let store = SyncStore::open(pg.clone()).unwrap();
        let a = member(&pg, "a", &["s"]);
        a.beat(&BTreeSet::new()).unwrap();
        let fence = a.fence("s").expect("a holds s");
        let fenced = store.fenced(fence.clone());
        fenced
            .write("s", |t| t.set_status(&SyncStatus::Paused))
            .unwrap();

        // `a` stops renewing (paused, partitioned): its lease expires; `b` claims it.
        let c = pg.client_blocking().unwrap();
        pg.execute(
            &c,
            "UPDATE tandem_leases SET expires_at = clock_timestamp() - interval '1 second'",
            params![],
        )
        .unwrap();
        let b = member(&pg, "b", &["s"]);
        assert_eq!(b.beat(&BTreeSet::new()).unwrap().claimed, ["s"]);
        let taken = b.fence("s").unwrap();
        assert_eq!(taken.epoch, fence.epoch + 1);

        // `a`'s late commit is refused and writes nothing.
        let err = fenced
            .write("s", |t| t.set_status(&SyncStatus::Active))
            .unwrap_err();
        assert!(matches!(err, StateError::Fenced { .. }), "{err}");
        assert!(err.to_string().contains("taken over"), "{err}");
        assert_eq!(store.status("s").unwrap(), SyncStatus::Paused);
        // `b`'s commits go through; `a` learns it lost the lease at its next beat.
        store
            .fenced(taken)
            .write("s", |t| t.set_status(&SyncStatus::Active))
            .unwrap();
        assert_eq!(store.status("s").unwrap(), SyncStatus::Active);
        assert_eq!(a.beat(&BTreeSet::new()).unwrap().lost, ["s"]);
        assert!(!a.still_holds(&fence));
        assert!(a.fence("s").is_none());
        // Writes for other syncs (the operator's, through any daemon) are not fenced.
        fenced
            .write("other", |t| t.set_status(&SyncStatus::Paused))
            .unwrap();
    }

    #[test]
    fn a_wake_up_left_by_another_daemon_reaches_the_owner() {
        let pg = postgres();
        let a = member(&pg, "a", &["s", "t"]);
        a.beat(&BTreeSet::new()).unwrap();
        wake(&pg, "t").unwrap();
        let beat = a.beat(&BTreeSet::new()).unwrap();
        assert_eq!(beat.woken, ["t"]);
        assert!(a.beat(&BTreeSet::new()).unwrap().woken.is_empty(), "once");
    }
}
