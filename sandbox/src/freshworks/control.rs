//! Freshworks part of the control API (under `/_sandbox/`, next to the generic endpoints of
//! [`crate::common::control`]). All JSON; `{entity}` is `contacts` or `leads`.
//!
//! | Method + path | Body | Effect / reply |
//! |---|---|---|
//! | `GET /info` | — | kind, API base path, keys, switches |
//! | `POST /seed` | `{"seed"?:N,"count"?:N}` | replace all state with freshly seeded data (later resets reuse these) |
//! | `GET /state` | — | everything: records (deleted included, with `list_ids`), lists with members, jobs, events, list unsubscribes, rate windows |
//! | `GET /records/{entity}` | — | all records of the entity, deleted included |
//! | `GET /records/{entity}/{id}` | — | one record (deleted included) |
//! | `POST /records/{entity}` | fields | create as a user in the app |
//! | `PATCH /records/{entity}/{id}` | fields | edit as a user in the app (moves `updated_at`) |
//! | `DELETE /records/{entity}/{id}` | `?forget=true` for a hard delete | delete as a user (recycle bin) |
//! | `POST /records/{entity}/{id}/restore` | — | restore from the recycle bin |
//! | `POST /records/{entity}/{id}/consent` | `{"do_not_disturb"?:bool,"subscription_status"?:0-4,"unsubscription_reason"?:str}` | set DND / unsubscribe as a user |
//! | `POST /records/{entity}/timestamps` | `{"ids":[..],"updated_at":RFC3339}` | force `updated_at` (ties, odd data) |
//! | `PUT /lists/{id}/members` | `{"add"?:[ids],"remove"?:[ids]}` | change list membership as a user |
//! | `GET` / `PUT /switches` | partial switches | read / change behaviour switches |
//! | `POST /auth/revoke` | — | every key answers 401 |
//! | `POST /auth/rotate` | — | `{"api_key":new}`; the old key answers 401 |
//! | `POST /auth/restore` | — | original keys back |
//! | `GET` / `POST /page_quirks` | `{"short_pages"?:N,"unordered_pages"?:N}` | next N pages short / unordered |
//! | `GET` / `DELETE /rate_limit` | — | read / clear the rate-limit windows |
//! | `GET /workflows` | — | `{"workflows":[..],"deliveries":[..]}`: workflow webhooks and the last calls made |
//! | `POST /workflows` | `{"url","entity"?,"on"?,"method"?,"headers"?,"fields"?,"skip_api_user"?}` | add a workflow "on create/update → Trigger Webhook" ([`super::workflows`]) |
//! | `DELETE /workflows` / `DELETE /workflows/{id}` | — | remove all / one |

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::api::query;
use super::error::ApiError;
use super::fields::Entity;
use super::render;
use super::store::{PageQuirks, Store, as_u64};
use super::switches::Switches;
use super::{Account, SeedParams};
use crate::common::clock::parse_rfc3339;
use crate::common::control_error;

type St = State<Arc<Account>>;

/// A control-API error: `{"error":"…"}` with a status.
#[derive(Debug)]
struct Ctl(StatusCode, String);

impl IntoResponse for Ctl {
    fn into_response(self) -> Response {
        control_error(self.0, self.1)
    }
}

impl From<ApiError> for Ctl {
    fn from(e: ApiError) -> Self {
        Ctl(e.status, e.messages.join("; "))
    }
}

type CtlResult = Result<Response, Ctl>;

fn bad(msg: impl Into<String>) -> Ctl {
    Ctl(StatusCode::BAD_REQUEST, msg.into())
}

fn body_json(b: &Bytes) -> Result<Value, Ctl> {
    if b.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(b).map_err(|e| bad(format!("body is not JSON: {e}")))
}

fn entity(a: &Account, s: &str) -> Result<Entity, Ctl> {
    match Entity::parse(s) {
        Some(e) if a.flavor.entities().contains(&e) => Ok(e),
        _ => Err(Ctl(
            StatusCode::NOT_FOUND,
            format!("this account has no entity {s:?}"),
        )),
    }
}

/// The user control edits act as (the second owner: not the API key's user).
fn app_user(s: &Store) -> u64 {
    let ids = s.refs.user_ids();
    ids.get(1).copied().unwrap_or(ids[0])
}

fn render_all(a: &Account, s: &Store, sw: &Switches, e: Entity) -> Vec<Value> {
    let ctx = a.ctx(sw);
    s.records()
        .values()
        .filter(|r| r.entity == e)
        .map(|r| render::record(s, &ctx, r, true))
        .collect()
}

async fn info(State(a): St) -> Json<Value> {
    let k = a.keys();
    Json(json!({
        "kind": a.kind, "api_prefix": a.flavor.prefix,
        "entities": a.flavor.entities(),
        "api_key": k.api_key, "restricted_api_key": k.restricted_api_key, "revoked": k.revoked,
        "switches": a.switches(),
    }))
}

async fn seed(State(a): St, body: Bytes) -> CtlResult {
    let b = body_json(&body)?;
    let seed = b.get("seed").and_then(Value::as_u64);
    let count = b.get("count").and_then(Value::as_u64).map(|c| c as usize);
    if count.is_some_and(|c| c > 100_000) {
        return Err(bad("count must be at most 100000"));
    }
    let base = a.seed_params();
    let params = SeedParams {
        seed: seed.unwrap_or(base.seed),
        count: count.unwrap_or(base.count),
    };
    a.reseed(params);
    let (contacts, leads) = a.with_store(|s, _, _| {
        (
            s.live(Entity::Contact).count(),
            s.live(Entity::Lead).count(),
        )
    });
    Ok(Json(
        json!({"seed": params.seed, "count": params.count, "contacts": contacts, "leads": leads}),
    )
    .into_response())
}

async fn state(State(a): St) -> Json<Value> {
    a.with_store(|s, sw, _| {
        let ctx = a.ctx(sw);
        let lists: Vec<Value> = s
            .lists
            .values()
            .map(|l| {
                let members: Vec<u64> = s
                    .records()
                    .values()
                    .filter(|r| r.list_ids.contains(&l.id))
                    .map(|r| r.id)
                    .collect();
                json!({"id": l.id, "name": l.name, "created_at": ctx.ts(l.created_at),
                       "updated_at": ctx.ts(l.updated_at), "contact_ids": members})
            })
            .collect();
        let jobs: Vec<Value> = s.jobs.values().map(|j| render::job(&ctx, j)).collect();
        let unsubs: Vec<Value> = s
            .list_unsubscribes
            .iter()
            .map(|(l, c)| json!({"list_id": l, "contact_id": c}))
            .collect();
        let mut m = Map::new();
        m.insert("kind".into(), json!(a.kind));
        for e in a.flavor.entities() {
            m.insert(e.plural().into(), json!(render_all(&a, s, sw, *e)));
        }
        m.insert("lists".into(), json!(lists));
        m.insert("jobs".into(), json!(jobs));
        m.insert("events".into(), json!(s.events));
        m.insert("list_unsubscribes".into(), json!(unsubs));
        m.insert("rate_limit".into(), json!(a.rate_windows()));
        Json(Value::Object(m))
    })
}

async fn records(State(a): St, Path(e): Path<String>) -> CtlResult {
    let e = entity(&a, &e)?;
    Ok(a.with_store(|s, sw, _| {
        Json(json!({ e.plural(): render_all(&a, s, sw, e) })).into_response()
    }))
}

fn one(a: &Account, s: &Store, sw: &Switches, e: Entity, id: u64) -> CtlResult {
    let ctx = a.ctx(sw);
    let r = s.get(e, id).ok_or_else(ApiError::not_found)?;
    Ok(Json(json!({ e.singular(): render::record(s, &ctx, r, true) })).into_response())
}

async fn record(State(a): St, Path((e, id)): Path<(String, u64)>) -> CtlResult {
    let e = entity(&a, &e)?;
    a.with_store(|s, sw, _| one(&a, s, sw, e, id))
}

async fn create(State(a): St, Path(e): Path<String>, body: Bytes) -> CtlResult {
    let e = entity(&a, &e)?;
    let input: Map<String, Value> = super::api::record_input(&body_json(&body)?, e)?;
    a.with_store(|s, sw, now| {
        let user = app_user(s);
        let id = s.create(e, &input, sw, now, user)?;
        one(&a, s, sw, e, id)
    })
}

async fn edit(State(a): St, Path((e, id)): Path<(String, u64)>, body: Bytes) -> CtlResult {
    let e = entity(&a, &e)?;
    let input = super::api::record_input(&body_json(&body)?, e)?;
    a.with_store(|s, sw, now| {
        let user = app_user(s);
        s.update(e, id, &input, sw, now, user)?;
        one(&a, s, sw, e, id)
    })
}

async fn remove(
    State(a): St,
    Path((e, id)): Path<(String, u64)>,
    RawQuery(q): RawQuery,
) -> CtlResult {
    let e = entity(&a, &e)?;
    let forget = query(q)
        .get("forget")
        .is_some_and(|v| v == "true" || v == "1");
    a.with_store(|s, _, now| {
        let user = app_user(s);
        if forget {
            s.forget(e, id)?;
        } else {
            s.soft_delete(e, id, now, user)?;
        }
        Ok(Json(json!({"deleted": true, "forgotten": forget})).into_response())
    })
}

async fn restore(State(a): St, Path((e, id)): Path<(String, u64)>) -> CtlResult {
    let e = entity(&a, &e)?;
    a.with_store(|s, sw, now| {
        let user = app_user(s);
        s.restore(e, id, now, user)?;
        one(&a, s, sw, e, id)
    })
}

async fn consent(State(a): St, Path((e, id)): Path<(String, u64)>, body: Bytes) -> CtlResult {
    let e = entity(&a, &e)?;
    let b = body_json(&body)?;
    let mut input = Map::new();
    for k in [
        "do_not_disturb",
        "subscription_status",
        "unsubscription_reason",
        "subscription_types",
    ] {
        if let Some(v) = b.get(k) {
            input.insert(k.into(), v.clone());
        }
    }
    if input.is_empty() {
        return Err(bad(
            "give do_not_disturb, subscription_status, unsubscription_reason or subscription_types",
        ));
    }
    a.with_store(|s, sw, now| {
        let user = app_user(s);
        // Consent is set even when the field is switched off for the API.
        let sw = Switches {
            do_not_disturb_field: true,
            ..sw.clone()
        };
        s.update(e, id, &input, &sw, now, user)?;
        one(&a, s, &sw, e, id)
    })
}

async fn timestamps(State(a): St, Path(e): Path<String>, body: Bytes) -> CtlResult {
    entity(&a, &e)?;
    let b = body_json(&body)?;
    let ids: Vec<u64> = b
        .get("ids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(as_u64).collect())
        .unwrap_or_default();
    let Some(at) = b
        .get("updated_at")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
    else {
        return Err(bad("updated_at must be an RFC 3339 timestamp"));
    };
    a.with_store(|s, _, _| {
        s.set_updated_at(&ids, at)?;
        Ok(Json(json!({"updated": ids.len()})).into_response())
    })
}

async fn members(State(a): St, Path(id): Path<u64>, body: Bytes) -> CtlResult {
    let b = body_json(&body)?;
    let ids = |k: &str| -> Vec<u64> {
        b.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(as_u64).collect())
            .unwrap_or_default()
    };
    let (add, rem) = (ids("add"), ids("remove"));
    a.with_store(|s, sw, now| {
        let user = app_user(s);
        // A user's list change moves `updated_at` exactly as an API one does (the switch).
        let bump = sw.list_change_bumps_updated_at;
        let added = s.change_membership(id, &add, true, bump, now, user)?;
        let removed = s.change_membership(id, &rem, false, bump, now, user)?;
        Ok(
            Json(json!({"added": added, "removed": removed, "contact_ids": s.list_members(id)}))
                .into_response(),
        )
    })
}

async fn get_switches(State(a): St) -> Json<Value> {
    Json(json!(a.switches()))
}

async fn put_switches(State(a): St, body: Bytes) -> CtlResult {
    let s = a
        .switches()
        .merged(&body_json(&body)?)
        .map_err(|e| bad(e.to_string()))?;
    a.set_switches(s.clone());
    Ok(Json(json!(s)).into_response())
}

async fn revoke(State(a): St) -> Json<Value> {
    a.revoke_keys();
    Json(json!({"revoked": true}))
}

async fn rotate(State(a): St) -> Json<Value> {
    Json(json!({"api_key": a.rotate_key()}))
}

async fn restore_keys(State(a): St) -> Json<Value> {
    a.restore_keys();
    let k = a.keys();
    Json(json!({"api_key": k.api_key, "restricted_api_key": k.restricted_api_key}))
}

async fn get_quirks(State(a): St) -> Json<Value> {
    a.with_store(|s, _, _| Json(json!(s.quirks)))
}

async fn set_quirks(State(a): St, body: Bytes) -> CtlResult {
    let q: PageQuirks =
        serde_json::from_value(body_json(&body)?).map_err(|e| bad(e.to_string()))?;
    Ok(a.with_store(|s, _, _| {
        s.quirks = q;
        Json(json!(s.quirks)).into_response()
    }))
}

async fn rate(State(a): St) -> Json<Value> {
    Json(json!(a.rate_windows()))
}

async fn clear_rate(State(a): St) -> Json<Value> {
    a.reset_rate();
    Json(json!({"cleared": true}))
}

async fn get_workflows(State(a): St) -> Json<Value> {
    Json(a.workflows.describe())
}

async fn add_workflow(State(a): St, body: Bytes) -> CtlResult {
    let w: super::workflows::Workflow =
        serde_json::from_value(body_json(&body)?).map_err(|e| bad(e.to_string()))?;
    let w = a.workflows.add(&a, w).map_err(|e| bad(e.to_string()))?;
    Ok((StatusCode::CREATED, Json(json!(w))).into_response())
}

async fn clear_workflows(State(a): St) -> Json<Value> {
    a.workflows.clear();
    Json(json!({"cleared": true}))
}

async fn remove_workflow(State(a): St, Path(id): Path<u64>) -> CtlResult {
    if a.workflows.remove(id) {
        Ok(Json(json!({"removed": id})).into_response())
    } else {
        Err(Ctl(StatusCode::NOT_FOUND, format!("no workflow {id}")))
    }
}

/// The Freshworks control routes (relative; mounted under `/_sandbox`).
pub fn router(acct: Arc<Account>) -> Router {
    Router::new()
        .route("/info", get(info))
        .route("/seed", post(seed))
        .route("/state", get(state))
        .route("/records/{entity}", get(records).post(create))
        .route("/records/{entity}/timestamps", post(timestamps))
        .route(
            "/records/{entity}/{id}",
            get(record).patch(edit).delete(remove),
        )
        .route("/records/{entity}/{id}/restore", post(restore))
        .route("/records/{entity}/{id}/consent", post(consent))
        .route("/lists/{id}/members", put(members))
        .route("/switches", get(get_switches).put(put_switches))
        .route("/auth/revoke", post(revoke))
        .route("/auth/rotate", post(rotate))
        .route("/auth/restore", post(restore_keys))
        .route("/page_quirks", get(get_quirks).post(set_quirks))
        .route("/rate_limit", get(rate).delete(clear_rate))
        .route(
            "/workflows",
            get(get_workflows)
                .post(add_workflow)
                .delete(clear_workflows),
        )
        .route("/workflows/{id}", axum::routing::delete(remove_workflow))
        .with_state(acct)
}
