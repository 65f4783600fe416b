//! A seeded account: records from the seed generator, spread over the entities and lists.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::freshworks::fields::Entity;
use crate::freshworks::switches::Switches;
use crate::seed::{Consent, LIST_NAMES, SeedRecord};
use crate::{AccountKind, seed};

use super::{List, Record, Store, secs};

impl Store {
    /// An account of `kind` seeded with `n` records from `seed` (Classic: `n` leads plus `n/3`
    /// contacts), timestamps relative to `now`.
    pub fn seeded(
        kind: AccountKind,
        seed: u64,
        n: usize,
        now: OffsetDateTime,
        sw: &Switches,
    ) -> Store {
        let mut s = Store::empty(kind);
        let now = secs(now);
        let user0 = s.refs.user_ids()[0];
        for name in LIST_NAMES {
            let id = s.alloc_id();
            s.lists.insert(
                id,
                List {
                    id,
                    name: (*name).to_owned(),
                    created_at: now - time::Duration::days(400),
                    updated_at: now - time::Duration::days(400),
                },
            );
        }
        let list_ids: Vec<u64> = s.lists.keys().copied().collect();
        let (leads, contacts) = if s.flavor.has_leads {
            (n, n / 3)
        } else {
            (0, n)
        };
        let recs = seed::account_records(seed, kind, leads + contacts);
        for (i, r) in recs.iter().enumerate() {
            let entity = if i < leads {
                Entity::Lead
            } else {
                Entity::Contact
            };
            let input = s.seed_input(entity, r);
            let id = s.alloc_id();
            let created = now - time::Duration::seconds(r.created_secs_ago);
            let mut rec = Record::blank(id, entity, created, user0);
            match s.apply(&mut rec, &input, sw) {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(?e, "sandbox seed record rejected; skipped");
                    continue;
                }
            }
            if entity == Entity::Contact {
                rec.list_ids = r
                    .lists
                    .iter()
                    .filter_map(|l| list_ids.get(*l).copied())
                    .collect();
            }
            rec.updated_at = now - time::Duration::seconds(r.updated_secs_ago);
            s.put(rec);
        }
        s
    }

    fn seed_input(&mut self, entity: Entity, r: &SeedRecord) -> Map<String, Value> {
        let p = &r.person;
        let mut m = Map::new();
        m.insert("first_name".into(), json!(p.first_name));
        m.insert("last_name".into(), json!(p.last_name));
        if !p.job_title.is_empty() {
            m.insert("job_title".into(), json!(p.job_title));
        }
        let mut emails = Vec::new();
        if let Some(e) = &r.email {
            emails.push(json!({"value": e, "is_primary": true}));
        }
        if let (Some(e), true) = (&p.secondary_email, r.duplicate_of.is_none()) {
            emails.push(json!({"value": e, "is_primary": false}));
        }
        if !emails.is_empty() {
            m.insert("emails".into(), Value::Array(emails));
        }
        if let Some(w) = &p.work_phone {
            m.insert("work_number".into(), json!(w));
        }
        if let Some(w) = &p.mobile_phone {
            m.insert("mobile_number".into(), json!(w));
        }
        m.insert("city".into(), json!(p.city));
        if let Some(st) = &p.state {
            m.insert("state".into(), json!(st));
        }
        m.insert("country".into(), json!(p.country));
        let users = self.refs.user_ids();
        m.insert("owner_id".into(), json!(users[r.owner % users.len()]));
        m.insert("lead_score".into(), json!(r.lead_score));
        m.insert(
            "subscription_status".into(),
            json!(r.consent.subscription_status()),
        );
        match r.consent {
            Consent::Subscribed => {
                m.insert("subscription_types".into(), json!("1;2;3"));
            }
            Consent::Unsubscribed => {
                m.insert("unsubscription_reason".into(), json!("Not interested"));
            }
            _ => {}
        }
        m.insert("do_not_disturb".into(), json!(r.do_not_disturb));
        let sources = self.refs.ids("lead_sources");
        m.insert(
            "lead_source_id".into(),
            json!(sources[p.index % sources.len()]),
        );
        if entity == Entity::Lead {
            let stages = self.refs.ids("lead_stages");
            m.insert(
                "lead_stage_id".into(),
                json!(stages[p.index % stages.len()]),
            );
            m.insert(
                "company".into(),
                json!({"name": p.company.name, "website": format!("https://{}", p.company.domain)}),
            );
        } else {
            if self.flavor.lifecycle {
                let stages = self
                    .refs
                    .selector("lifecycle_stages")
                    .map(|s| s.items.clone());
                if let Some(stages) = stages {
                    let st = &stages[p.index % stages.len()];
                    m.insert("lifecycle_stage_id".into(), st["id"].clone());
                    if let Some(first) = st["contact_status_ids"].get(0) {
                        m.insert("contact_status_id".into(), first.clone());
                    }
                }
            } else {
                let statuses = self.refs.ids("contact_statuses");
                m.insert(
                    "contact_status_id".into(),
                    json!(statuses[p.index % statuses.len()]),
                );
            }
            m.insert(
                "sales_accounts".into(),
                json!([{"name": p.company.name, "is_primary": true}]),
            );
        }
        if !self.flavor.lifecycle {
            m.insert("has_authority".into(), json!(p.index.is_multiple_of(3)));
        }
        let c = &r.custom;
        let mut cf = Map::new();
        if let Some(plan) = &c.plan {
            cf.insert(self.flavor.plan_field.into(), json!(plan));
        }
        if !c.interests.is_empty() {
            cf.insert("cf_interests".into(), json!(c.interests.join(";")));
        }
        if let Some(d) = c.renewal_date {
            cf.insert(
                "cf_renewal_date".into(),
                json!(format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)),
            );
        }
        if let Some(n) = c.seats {
            cf.insert("cf_seats".into(), json!(n));
        }
        cf.insert("cf_is_active".into(), json!(c.is_active));
        if let Some(rg) = &c.region {
            cf.insert("cf_region".into(), json!(rg));
        }
        m.insert("custom_field".into(), Value::Object(cf));
        m
    }
}
