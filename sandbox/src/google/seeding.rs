//! Projection of the shared seed population ([`crate::seed`]) onto Person resources, so the
//! Google account holds the same people as the Freshworks accounts (with this account's
//! variations: email case, missing emails, duplicates, differing titles and phones).
//!
//! | Seed record | Person field |
//! |---|---|
//! | first / last name | `names[0].givenName` / `familyName` |
//! | account email, secondary email | `emailAddresses` (`work`, `home`) |
//! | work / mobile phone | `phoneNumbers` (`work`, `mobile`) |
//! | company, job title | `organizations[0]` (`name`, `title`, `domain`, `type: work`) |
//! | city, state, country | `addresses[0]` (`work`) |
//! | birthday | `birthdays[0].date` |
//! | custom values (plan, region, seats, interests) | `userDefined` (`Plan`, `Region`, `Seats`, `Interests`) |
//! | lists | user contact groups named after [`crate::seed::LIST_NAMES`], plus `myContacts` |
//! | lead score ≥ 90 | `starred` |
//! | updated_secs_ago | `metadata.sources[0].updateTime` (seeded in that order) |

use std::collections::BTreeSet;

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::auth::OAuthClient;
use super::person::PersonData;
use super::store::{Profile, Store};
use super::{ACCOUNT_EMAIL, ACCOUNT_ID, CLIENT_ID, CLIENT_SECRET, GoogleConfig, REFRESH_TOKEN};
use crate::AccountKind;
use crate::seed::{self, SeedRecord};

/// The Person data of one seed record; `groups[i]` is the resource name of list `i`.
pub fn project(r: &SeedRecord, groups: &[String]) -> PersonData {
    let p = &r.person;
    let mut d = PersonData::default();
    let mut put = |k: &str, v: Vec<Value>| {
        if !v.is_empty() {
            d.fields.insert(k.into(), v);
        }
    };
    put(
        "names",
        vec![json!({"givenName": p.first_name, "familyName": p.last_name})],
    );
    let mut emails = Vec::new();
    if let Some(e) = &r.email {
        emails.push(json!({"value": e, "type": "work"}));
    }
    if let Some(e) = &p.secondary_email {
        emails.push(json!({"value": e, "type": "home"}));
    }
    put("emailAddresses", emails);
    let mut phones = Vec::new();
    if let Some(ph) = &p.work_phone {
        phones.push(json!({"value": ph, "type": "work"}));
    }
    if let Some(ph) = &p.mobile_phone {
        phones.push(json!({"value": ph, "type": "mobile"}));
    }
    put("phoneNumbers", phones);
    put(
        "organizations",
        vec![json!({
            "name": p.company.name,
            "title": p.job_title,
            "domain": p.company.domain,
            "type": "work",
            "current": true
        })],
    );
    let mut addr = json!({"city": p.city, "country": p.country, "type": "work"});
    if let Some(s) = &p.state {
        addr["region"] = json!(s);
    }
    put("addresses", vec![addr]);
    if let Some(b) = p.birthday {
        put(
            "birthdays",
            vec![json!({"date": {"year": b.year, "month": b.month, "day": b.day}})],
        );
    }
    let c = &r.custom;
    let mut user = Vec::new();
    if let Some(plan) = &c.plan {
        user.push(json!({"key": "Plan", "value": plan}));
    }
    if let Some(region) = &c.region {
        user.push(json!({"key": "Region", "value": region}));
    }
    if let Some(seats) = c.seats {
        user.push(json!({"key": "Seats", "value": seats.to_string()}));
    }
    if !c.interests.is_empty() {
        user.push(json!({"key": "Interests", "value": c.interests.join(", ")}));
    }
    put("userDefined", user);
    let mut memberships = BTreeSet::from(["contactGroups/myContacts".to_owned()]);
    for &i in &r.lists {
        if let Some(g) = groups.get(i) {
            memberships.insert(g.clone());
        }
    }
    if r.lead_score >= 90 {
        memberships.insert("contactGroups/starred".into());
    }
    d.memberships = memberships;
    d
}

/// A store seeded per `config` at `now`.
pub fn seeded_store(config: &GoogleConfig, now: OffsetDateTime) -> Store {
    let mut store = Store::new(
        config.seed,
        config.settings.clone(),
        OAuthClient {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
        },
        REFRESH_TOKEN.into(),
        Profile {
            account_id: ACCOUNT_ID.into(),
            given_name: "Sandbox".into(),
            family_name: "User".into(),
            email: ACCOUNT_EMAIL.into(),
        },
        now,
    );
    let oldest = now - time::Duration::days(3 * 365);
    let groups: Vec<String> = seed::LIST_NAMES
        .iter()
        .map(|n| store.ensure_user_group(n, oldest))
        .collect();
    let mut records =
        seed::account_records(config.seed, AccountKind::GooglePeople, config.contacts);
    // Seed in update order so that LAST_MODIFIED order and the change sequence agree.
    records.sort_by_key(|r| std::cmp::Reverse(r.updated_secs_ago));
    for r in &records {
        let at = now - time::Duration::seconds(r.updated_secs_ago);
        store.insert_seeded(project(r, &groups), at);
    }
    store
}
