//! JSON shapes of the Freshworks API (docs/freshworks-api.md): records (§3), side-loads
//! (docs/freshworks-api.md §3.6), lists, views, jobs and search hits.

use serde_json::{Map, Value, json};
use time::{OffsetDateTime, UtcOffset};

use super::fields::{Entity, FieldType};
use super::store::{Job, List, Record, Store, View};
use crate::common::clock::format_seconds;

/// Rendering settings of one request.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// Account time zone.
    pub offset: UtcOffset,
    /// `do_not_disturb` offered.
    pub dnd: bool,
}

impl Ctx {
    /// Format an instant in the account time zone.
    pub fn ts(&self, t: OffsetDateTime) -> String {
        format_seconds(t, self.offset)
    }
}

/// Render a record as the API returns it. `list_ids` adds the record's lists (`include=lists`).
pub fn record(store: &Store, ctx: &Ctx, r: &Record, list_ids: bool) -> Value {
    let f = |k: &str| r.fields.get(k).cloned().unwrap_or(Value::Null);
    let lifecycle = store.flavor.lifecycle;
    let mut m = Map::new();
    m.insert("id".into(), json!(r.id));
    for k in ["first_name", "last_name"] {
        m.insert(k.into(), f(k));
    }
    m.insert("display_name".into(), json!(r.display_name()));
    m.insert("avatar".into(), Value::Null);
    for k in [
        "job_title",
        "department",
        "city",
        "state",
        "zipcode",
        "country",
    ] {
        if k == "department" && lifecycle {
            continue;
        }
        m.insert(k.into(), f(k));
    }
    m.insert(
        "email".into(),
        r.primary_email().map_or(Value::Null, |e| json!(e)),
    );
    let emails: Vec<Value> = r
        .emails
        .iter()
        .map(|e| json!({"id": e.id, "value": e.value, "is_primary": e.is_primary, "label": e.label, "_destroy": false}))
        .collect();
    m.insert("emails".into(), Value::Array(emails));
    for k in ["time_zone", "work_number", "mobile_number", "address"] {
        m.insert(k.into(), f(k));
    }
    if lifecycle {
        m.insert("phone_numbers".into(), json!([]));
    }
    m.insert("last_seen".into(), Value::Null);
    m.insert(
        "lead_score".into(),
        r.fields.get("lead_score").cloned().unwrap_or(json!(0)),
    );
    m.insert("last_contacted".into(), Value::Null);
    let (open_amt, won_amt) = if lifecycle {
        (Value::Null, Value::Null)
    } else {
        (json!("0.0"), json!("0.0"))
    };
    m.insert("open_deals_amount".into(), open_amt);
    m.insert("won_deals_amount".into(), won_amt);
    let plural = r.entity.plural();
    m.insert(
        "links".into(),
        json!({
            "conversations": format!("/{plural}/{}/conversations/all?include=email_conversation_recipients%2Ctargetable&per_page=3", r.id),
            "timeline_feeds": format!("/{plural}/{}/timeline_feeds", r.id),
            "document_associations": format!("/{plural}/{}/document_associations", r.id),
            "notes": format!("/{plural}/{}/notes?include=creater", r.id),
            "tasks": format!("/{plural}/{}/tasks?include=creater,owner,updater,targetable,users,task_type", r.id),
            "appointments": format!("/{plural}/{}/appointments?include=creater,owner,updater,targetable,appointment_attendees,conference,note", r.id),
        }),
    );
    m.insert("last_contacted_sales_activity_mode".into(), Value::Null);
    m.insert("custom_field".into(), custom_fields(store, ctx, r));
    m.insert("created_at".into(), json!(ctx.ts(r.created_at)));
    m.insert("updated_at".into(), json!(ctx.ts(r.updated_at)));
    for k in ["keyword", "medium"] {
        m.insert(k.into(), f(k));
    }
    m.insert("last_contacted_mode".into(), Value::Null);
    m.insert("recent_note".into(), Value::Null);
    m.insert(
        "won_deals_count".into(),
        if lifecycle { Value::Null } else { json!(0) },
    );
    m.insert(
        "open_deals_count".into(),
        if lifecycle { Value::Null } else { json!(0) },
    );
    m.insert("last_assigned_at".into(), Value::Null);
    m.insert(
        "tags".into(),
        r.fields.get("tags").cloned().unwrap_or(json!([])),
    );
    for k in ["facebook", "twitter", "linkedin"] {
        m.insert(k.into(), f(k));
    }
    m.insert("is_deleted".into(), json!(r.deleted));
    m.insert("team_user_ids".into(), Value::Null);
    m.insert("external_id".into(), f("external_id"));
    if lifecycle {
        m.insert("work_email".into(), f("work_email"));
    }
    m.insert(
        "subscription_status".into(),
        r.fields
            .get("subscription_status")
            .cloned()
            .unwrap_or(json!(2)),
    );
    for k in [
        "subscription_types",
        "unsubscription_reason",
        "other_unsubscription_reason",
    ] {
        m.insert(k.into(), f(k));
    }
    if ctx.dnd {
        m.insert(
            "do_not_disturb".into(),
            r.fields
                .get("do_not_disturb")
                .cloned()
                .unwrap_or(json!(false)),
        );
    }
    if lifecycle {
        m.insert("customer_fit".into(), json!(0));
        m.insert("record_type_id".into(), json!("71000000001"));
        m.insert("whatsapp_subscription_status".into(), json!(2));
        m.insert("sms_subscription_status".into(), json!(2));
        m.insert("locale".into(), Value::Null);
        m.insert("total_sessions".into(), Value::Null);
        m.insert("system_tags".into(), json!([]));
        for k in [
            "first_campaign",
            "first_medium",
            "first_source",
            "last_campaign",
            "last_medium",
            "last_source",
            "latest_campaign",
            "latest_medium",
            "latest_source",
        ] {
            m.insert(k.into(), Value::Null);
        }
        m.insert("mcr_id".into(), json!(r.id + 1));
    } else {
        m.insert(
            "has_authority".into(),
            r.fields
                .get("has_authority")
                .cloned()
                .unwrap_or(json!(false)),
        );
        m.insert("lead_quality".into(), f("lead_quality"));
        m.insert(
            "email_status".into(),
            json!(if r.emails.is_empty() {
                "Unknown"
            } else {
                "Active"
            }),
        );
        m.insert("last_contacted_via_chat".into(), Value::Null);
        m.insert("last_contacted_via_sales_activity".into(), Value::Null);
        m.insert("web_form_ids".into(), Value::Null);
    }
    for k in ["owner_id", "lead_source_id", "territory_id", "campaign_id"] {
        m.insert(k.into(), f(k));
    }
    m.insert("creater_id".into(), json!(r.creater_id));
    m.insert("updater_id".into(), json!(r.updater_id));
    match r.entity {
        Entity::Contact => {
            if lifecycle {
                m.insert("lifecycle_stage_id".into(), f("lifecycle_stage_id"));
            }
            m.insert("contact_status_id".into(), f("contact_status_id"));
            let accounts: Vec<Value> = r
                .sales_accounts
                .iter()
                .map(|(id, primary)| {
                    let a = store.refs.sales_account(*id);
                    json!({"partial": true, "id": id, "name": a.map(|a| a.name.clone()),
                           "avatar": null, "website": a.and_then(|a| a.website.clone()),
                           "last_contacted": null, "record_type_id": "71000000002", "is_primary": primary})
                })
                .collect();
            m.insert("sales_accounts".into(), Value::Array(accounts));
        }
        Entity::Lead => {
            for k in ["lead_stage_id", "lead_reason_id"] {
                m.insert(k.into(), f(k));
            }
            m.insert("stage_updated_time".into(), json!(ctx.ts(r.created_at)));
            m.insert(
                "company".into(),
                if r.company.is_empty() {
                    Value::Null
                } else {
                    Value::Object(r.company.clone().into_iter().collect())
                },
            );
            m.insert(
                "deal".into(),
                if r.deal.is_empty() {
                    Value::Null
                } else {
                    Value::Object(r.deal.clone().into_iter().collect())
                },
            );
        }
    }
    if list_ids {
        m.insert("list_ids".into(), json!(r.list_ids));
    }
    Value::Object(m)
}

fn custom_fields(store: &Store, ctx: &Ctx, r: &Record) -> Value {
    let mut cf = Map::new();
    for (name, ftype) in store.custom_defs(r.entity) {
        let v = match (r.custom.get(name), *ftype) {
            (Some(Value::String(s)), FieldType::Date) => {
                let off =
                    format_seconds(OffsetDateTime::UNIX_EPOCH.to_offset(ctx.offset), ctx.offset);
                // `2024-01-16T00:00:00+05:30`: the date at midnight in the account time zone.
                let suffix = off.get(19..).unwrap_or("Z");
                json!(format!("{s}T00:00:00{suffix}"))
            }
            (Some(v), _) => v.clone(),
            (None, _) => Value::Null,
        };
        cf.insert(name.clone(), v);
    }
    Value::Object(cf)
}

/// Top-level side-load arrays for `include=` (docs/freshworks-api.md §3.6): `users` (owner,
/// creater, updater), `sales_accounts`, `contact_status`, `lead_source`, `campaigns`,
/// `territories`.
pub fn sideloads(store: &Store, recs: &[&Record], include: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    let pick = |selector: &str, ids: Vec<u64>| -> Vec<Value> {
        let Some(s) = store.refs.selector(selector) else {
            return Vec::new();
        };
        s.items
            .iter()
            .filter(|i| i["id"].as_u64().is_some_and(|id| ids.contains(&id)))
            .cloned()
            .collect()
    };
    let field_ids = |k: &str| -> Vec<u64> {
        recs.iter()
            .filter_map(|r| r.fields.get(k).and_then(Value::as_u64))
            .collect()
    };
    for inc in include {
        match inc.as_str() {
            "owner" | "creater" | "updater" | "users" => {
                let mut ids = field_ids("owner_id");
                ids.extend(recs.iter().flat_map(|r| [r.creater_id, r.updater_id]));
                out.insert("users".into(), json!(pick("owners", ids)));
            }
            "sales_accounts" | "sales_account" => {
                let ids: Vec<u64> = recs
                    .iter()
                    .flat_map(|r| r.sales_accounts.iter().map(|(id, _)| *id))
                    .collect();
                let accounts: Vec<Value> = store
                    .refs
                    .sales_accounts
                    .iter()
                    .filter(|a| ids.contains(&a.id))
                    .map(|a| json!({"id": a.id, "name": a.name, "website": a.website, "avatar": null}))
                    .collect();
                out.insert("sales_accounts".into(), json!(accounts));
            }
            "contact_status" => {
                out.insert(
                    "contact_status".into(),
                    json!(pick("contact_statuses", field_ids("contact_status_id"))),
                );
            }
            "source" | "lead_source" => {
                out.insert(
                    "lead_source".into(),
                    json!(pick("lead_sources", field_ids("lead_source_id"))),
                );
            }
            "campaign" | "campaigns" => {
                out.insert(
                    "campaigns".into(),
                    json!(pick("campaigns", field_ids("campaign_id"))),
                );
            }
            "territory" | "territories" => {
                out.insert(
                    "territories".into(),
                    json!(pick("territories", field_ids("territory_id"))),
                );
            }
            _ => {}
        }
    }
    out
}

/// A list as `GET /lists` shows it.
pub fn list(ctx: &Ctx, l: &List, members: usize) -> Value {
    json!({"id": l.id, "name": l.name, "contacts_count": members,
           "created_at": ctx.ts(l.created_at), "updated_at": ctx.ts(l.updated_at)})
}

/// A saved view as `GET /contacts/filters` shows it.
pub fn view(ctx: &Ctx, v: &View, owner: u64, owner_name: &str, updated: OffsetDateTime) -> Value {
    json!({"id": v.id, "name": v.name, "model_class_name": v.entity.base_model(),
           "user_id": owner, "is_default": true, "is_public": true,
           "updated_at": ctx.ts(updated), "user_name": owner_name, "current_user_permissions": []})
}

/// A bulk job's status (`GET /job_statuses/{id}`).
pub fn job(ctx: &Ctx, j: &Job) -> Value {
    let data = if j.completed {
        json!({"record_status": {"succeeded": j.succeeded, "failed": j.failed},
               "detailed_failure_report": j.failures})
    } else {
        Value::Null
    };
    json!({
        "id": j.id,
        "status": if j.completed { "completed" } else { "in_progress" },
        "job_type_name": format!("{}_bulk_upsert", j.entity.singular()),
        "created_at": ctx.ts(j.created_at),
        "status_updated_at": ctx.ts(j.status_updated_at),
        "progress": if j.completed { 100 } else { 0 },
        "data": data,
    })
}

/// A `/search` hit (id as a string, docs/freshworks-api.md §4.6).
pub fn search_hit(store: &Store, ctx: &Ctx, r: &Record) -> Value {
    let owner_id = r.fields.get("owner_id").and_then(Value::as_u64);
    let owner = owner_id.and_then(|id| {
        store
            .refs
            .selector("owners")?
            .items
            .iter()
            .find(|u| u["id"].as_u64() == Some(id))
            .cloned()
    });
    let company = r
        .sales_accounts
        .first()
        .and_then(|(id, _)| store.refs.sales_account(*id))
        .map(|a| a.name.clone())
        .or_else(|| {
            r.company
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    json!({
        "id": r.id.to_string(),
        "type": r.entity.singular(),
        "name": r.display_name(),
        "email": r.primary_email(),
        "avatar": null,
        "company_name": company,
        "mcr_id": r.id + 1,
        "owner": owner.map(|o| json!({"id": o["id"], "name": o["display_name"]})),
        "record_type_id": "71000000001",
        "updated_at": ctx.ts(r.updated_at),
    })
}
