//! Per-minute, per-user quota buckets (docs/google-people-api.md §7.1, §9.7). Windows are aligned to whole minutes
//! (and whole days for the daily bucket) of the sandbox clock, so advancing the clock refills
//! them. The costs per call follow the table of docs/google-people-api.md §7.1; the metric and limit names of buckets
//! other than "Critical write requests" (the only one captured) follow the same pattern.

use time::OffsetDateTime;

use super::error::ApiError;
use super::settings::QuotaLimits;

/// A quota bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Critical read requests (Contact and Profile Reads).
    CriticalRead,
    /// Critical write requests (Contact Creates and Updates).
    CriticalWrite,
    /// Write requests (Contact Deletes and Contact Group Writes).
    Write,
    /// Read requests (Contact Group Reads).
    GroupRead,
    /// Daily Contact Writes (Total), per contact.
    DailyWrites,
    /// First page of a full sync (optional extra bucket).
    FullSync,
}

impl Bucket {
    fn index(self) -> usize {
        self as usize
    }

    fn limit(self, l: &QuotaLimits) -> Option<u32> {
        match self {
            Bucket::CriticalRead => Some(l.critical_reads_per_minute),
            Bucket::CriticalWrite => Some(l.critical_writes_per_minute),
            Bucket::Write => Some(l.writes_per_minute),
            Bucket::GroupRead => Some(l.group_reads_per_minute),
            Bucket::DailyWrites => Some(l.daily_contact_writes),
            Bucket::FullSync => l.full_sync_first_pages_per_minute,
        }
    }

    /// (metric title, limit title, quota_limit id, metric id) for the 429 body.
    fn names(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Bucket::CriticalRead => (
                "Critical read requests",
                "Critical read requests per minute per user",
                "CriticalReadsPerMinutePerProjectPerUser",
                "people.googleapis.com/critical_read_requests",
            ),
            Bucket::CriticalWrite => (
                "Critical write requests",
                "Critical write requests per minute per user",
                "CriticalWritesPerMinutePerProjectPerUser",
                "people.googleapis.com/critical_write_requests",
            ),
            Bucket::Write => (
                "Write requests",
                "Write requests per minute per user",
                "WritesPerMinutePerProjectPerUser",
                "people.googleapis.com/write_requests",
            ),
            Bucket::GroupRead => (
                "Read requests",
                "Read requests per minute per user",
                "ReadsPerMinutePerProjectPerUser",
                "people.googleapis.com/read_requests",
            ),
            Bucket::DailyWrites => (
                "Daily Contact Writes",
                "Daily Contact Writes per day per user",
                "DailyContactWritesPerDayPerProjectPerUser",
                "people.googleapis.com/contact_writes",
            ),
            Bucket::FullSync => (
                "Full sync requests",
                "Full sync requests per minute per user",
                "FullSyncRequestsPerMinutePerProjectPerUser",
                "people.googleapis.com/full_sync_requests",
            ),
        }
    }
}

/// Usage of the current windows.
#[derive(Debug, Clone, Default)]
pub struct QuotaState {
    minute: i64,
    day: i64,
    used: [u64; 6],
}

impl QuotaState {
    /// Charge `costs` at `now`, all or nothing: the first bucket that would overflow answers
    /// 429 RESOURCE_EXHAUSTED and nothing is charged.
    pub fn charge(
        &mut self,
        limits: &QuotaLimits,
        costs: &[(Bucket, u32)],
        now: OffsetDateTime,
    ) -> Result<(), ApiError> {
        let unix = now.unix_timestamp();
        let (minute, day) = (unix.div_euclid(60), unix.div_euclid(86_400));
        if minute != self.minute {
            self.minute = minute;
            for b in [
                Bucket::CriticalRead,
                Bucket::CriticalWrite,
                Bucket::Write,
                Bucket::GroupRead,
                Bucket::FullSync,
            ] {
                self.used[b.index()] = 0;
            }
        }
        if day != self.day {
            self.day = day;
            self.used[Bucket::DailyWrites.index()] = 0;
        }
        for &(bucket, cost) in costs {
            if let Some(limit) = bucket.limit(limits)
                && self.used[bucket.index()] + u64::from(cost) > u64::from(limit)
            {
                let (title, limit_title, quota_limit, metric) = bucket.names();
                return Err(ApiError::quota_exceeded(
                    title,
                    limit_title,
                    quota_limit,
                    metric,
                ));
            }
        }
        for &(bucket, cost) in costs {
            self.used[bucket.index()] += u64::from(cost);
        }
        Ok(())
    }

    /// Forget all usage.
    pub fn clear(&mut self) {
        *self = QuotaState::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_overflow_then_refill_next_minute() {
        let limits = QuotaLimits {
            critical_writes_per_minute: 2,
            ..QuotaLimits::default()
        };
        let mut q = QuotaState::default();
        let t0 = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(600);
        let cost = [(Bucket::CriticalRead, 1), (Bucket::CriticalWrite, 1)];
        q.charge(&limits, &cost, t0).unwrap();
        q.charge(&limits, &cost, t0).unwrap();
        let e = q.charge(&limits, &cost, t0).unwrap_err();
        assert_eq!(e.http.as_u16(), 429);
        assert_eq!(
            e.details[0]["metadata"]["quota_limit"],
            "CriticalWritesPerMinutePerProjectPerUser"
        );
        q.charge(&limits, &cost, t0 + time::Duration::seconds(60))
            .unwrap();
    }
}
