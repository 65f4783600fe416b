//! Bulk upsert jobs: queued, then run when the clock reaches their time.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::freshworks::fields::Entity;
use crate::freshworks::switches::Switches;

use super::{BulkItem, Job, Store, secs};

impl Store {
    /// Queue a bulk upsert job; it completes `bulk_job_delay_secs` later on the clock.
    pub fn submit_job(
        &mut self,
        entity: Entity,
        items: Vec<BulkItem>,
        sw: &Switches,
        now: OffsetDateTime,
        user: u64,
    ) -> u64 {
        let id = self.alloc_id();
        let now = secs(now);
        self.jobs.insert(
            id,
            Job {
                id,
                entity,
                created_at: now,
                ready_at: now + time::Duration::seconds(sw.bulk_job_delay_secs as i64),
                items,
                completed: false,
                status_updated_at: now,
                succeeded: 0,
                failed: 0,
                failures: Vec::new(),
                user,
            },
        );
        id
    }

    /// Process every job whose time has come.
    pub fn run_due_jobs(&mut self, sw: &Switches, now: OffsetDateTime) {
        let due: Vec<u64> = self
            .jobs
            .values()
            .filter(|j| !j.completed && j.ready_at <= now)
            .map(|j| j.id)
            .collect();
        for id in due {
            let Some(mut job) = self.jobs.remove(&id) else {
                continue;
            };
            for item in std::mem::take(&mut job.items) {
                match self.upsert(job.entity, &item.identifier, &item.data, sw, now, job.user) {
                    Ok(_) => job.succeeded += 1,
                    Err(e) => {
                        job.failed += 1;
                        let mut f = Map::new();
                        f.insert(
                            "emails".into(),
                            item.identifier
                                .get("emails")
                                .or(item.identifier.get("email"))
                                .cloned()
                                .unwrap_or(Value::Null),
                        );
                        f.insert(
                            "mobile_number".into(),
                            item.identifier
                                .get("mobile_number")
                                .cloned()
                                .unwrap_or(Value::Null),
                        );
                        f.insert("error_message".into(), json!(e.messages));
                        job.failures.push(Value::Object(f));
                    }
                }
            }
            job.completed = true;
            job.status_updated_at = secs(now);
            self.jobs.insert(id, job);
        }
    }
}
