//! Freshmarketer-only trees (docs/freshworks-api.md §2.3, §10): bundle marketing calls under
//! `/crm/marketer/mas/api/v1/` (Token auth) and the legacy standalone API under `/mas/api/v1/`
//! (`fm-token` auth). Both work on the same records as the CRM tree.
//!
//! Only a few standalone calls are evidenced (docs/freshworks-api.md §10.2), so that tree is
//! small and its shapes follow the CRM ones: `GET /mas/api/v1/contacts`,
//! `GET /mas/api/v1/contacts/{id or email}`, `PUT /mas/api/v1/contacts` (create-or-update by
//! email with `status` and `lists`), and
//! `PATCH /mas/api/v1/lists/{list}/subscribers/{contact}/unsubscribe`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, patch, post};
use axum::{Extension, Json, Router};
use serde_json::{Map, Value, json};

use super::Account;
use super::api::{json_body, page_request, query};
use super::error::{ApiError, ApiResult};
use super::fields::Entity;
use super::gate::{User, fm_token_gate, token_gate};
use super::render;
use super::store::as_u64;

type St = State<Arc<Account>>;

/// Bundle marketing prefix.
pub const MARKETER_PREFIX: &str = "/crm/marketer/mas/api/v1";
/// Standalone Freshmarketer prefix.
pub const STANDALONE_PREFIX: &str = "/mas/api/v1";

/// `POST /crm/marketer/mas/api/v1/events?email=&event_name=&event_timestamp=` with optional
/// JSON properties. Recorded (see control `GET /_sandbox/state`); 404 for an unknown email.
async fn event(State(a): St, RawQuery(q): RawQuery, body: Bytes) -> ApiResult<Json<Value>> {
    let q = query(q);
    let (Some(email), Some(name)) = (q.get("email"), q.get("event_name")) else {
        return Err(ApiError::bad_request("email and event_name are required"));
    };
    let props = json_body(&body)?;
    a.with_store(|s, sw, now| {
        let id = s
            .find_by(Entity::Contact, "emails", &json!(email), sw)
            .first()
            .copied()
            .ok_or_else(ApiError::not_found)?;
        let ctx = a.ctx(sw);
        s.events.push(json!({
            "contact_id": id, "email": email, "event_name": name,
            "event_timestamp": q.get("event_timestamp").cloned().unwrap_or_else(|| ctx.ts(now)),
            "properties": props, "received_at": ctx.ts(now),
        }));
        Ok(Json(json!({"message": "Event recorded successfully"})))
    })
}

async fn sa_list(State(a): St, RawQuery(q): RawQuery) -> Json<Value> {
    let req = page_request(&query(q));
    a.with_store(|s, sw, _| {
        let ids: Vec<u64> = s.live(Entity::Contact).map(|r| r.id).collect();
        let (page, total) = s.page(ids, &req, sw);
        let ctx = a.ctx(sw);
        let recs: Vec<Value> = page
            .iter()
            .filter_map(|id| s.records().get(id))
            .map(|r| render::record(s, &ctx, r, true))
            .collect();
        Json(json!({"contacts": recs, "meta": {"total_pages": total.div_ceil(req.per_page), "total": total}}))
    })
}

async fn sa_show(State(a): St, Path(key): Path<String>) -> ApiResult<Json<Value>> {
    a.with_store(|s, sw, _| {
        let id = match key.parse::<u64>() {
            Ok(id) => s
                .get(Entity::Contact, id)
                .filter(|r| !r.deleted)
                .map(|r| r.id),
            Err(_) => s
                .find_by(Entity::Contact, "emails", &json!(key), sw)
                .first()
                .copied(),
        }
        .ok_or_else(ApiError::not_found)?;
        let ctx = a.ctx(sw);
        Ok(Json(
            json!({"contact": render::record(s, &ctx, &s.records()[&id], true)}),
        ))
    })
}

fn status_code(s: &str) -> Option<u8> {
    match s.trim().to_ascii_lowercase().replace(' ', "_").as_str() {
        "unsubscribed" => Some(0),
        "subscribed" => Some(1),
        "not_subscribed" => Some(2),
        "spam" | "reported_as_spam" => Some(3),
        "bounced" => Some(4),
        _ => None,
    }
}

async fn sa_put(
    State(a): St,
    Extension(u): Extension<User>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let body = json_body(&body)?;
    let mut input: Map<String, Value> = body
        .get("contact")
        .and_then(Value::as_object)
        .cloned()
        .or_else(|| body.as_object().cloned())
        .ok_or_else(|| ApiError::bad_request("Request body must be a JSON object"))?;
    let email = input
        .get("email")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ApiError::invalid(vec!["Email can't be blank".to_owned()]))?;
    if let Some(st) = input.remove("status") {
        let code = st
            .as_str()
            .and_then(status_code)
            .ok_or_else(|| ApiError::invalid(vec!["Status is invalid".to_owned()]))?;
        input.insert("subscription_status".into(), json!(code));
    }
    let lists: Vec<u64> = match input.remove("lists") {
        Some(Value::Array(l)) => l.iter().filter_map(as_u64).collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(_) => return Err(ApiError::invalid(vec!["Lists is invalid".to_owned()])),
    };
    a.with_store(|s, sw, now| {
        if let Some(bad) = lists.iter().find(|l| !s.lists.contains_key(l)) {
            return Err(ApiError::invalid(vec![format!(
                "List {bad} does not exist"
            )]));
        }
        let mut ident = Map::new();
        ident.insert("emails".into(), json!(email));
        let (id, _) = s.upsert(Entity::Contact, &ident, &input, sw, now, u.0)?;
        for l in lists {
            s.change_membership(l, &[id], true, sw.list_change_bumps_updated_at, now, u.0)?;
        }
        let ctx = a.ctx(sw);
        Ok(Json(
            json!({"contact": render::record(s, &ctx, &s.records()[&id], true)}),
        ))
    })
}

async fn sa_unsubscribe(
    State(a): St,
    Extension(u): Extension<User>,
    Path((list, contact)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (Ok(list), Ok(contact)) = (list.parse::<u64>(), contact.parse::<u64>()) else {
        return Err(ApiError::not_found());
    };
    a.with_store(|s, sw, now| {
        if s.get(Entity::Contact, contact)
            .filter(|r| !r.deleted)
            .is_none()
        {
            return Err(ApiError::not_found());
        }
        s.change_membership(
            list,
            &[contact],
            false,
            sw.list_change_bumps_updated_at,
            now,
            u.0,
        )?;
        s.list_unsubscribes.insert((list, contact));
        Ok(Json(
            json!({"message": "Contact unsubscribed from the list"}),
        ))
    })
}

/// The Freshmarketer-only routes of `acct`.
pub fn router(acct: Arc<Account>) -> Router {
    let bundle = Router::new()
        .route(&format!("{MARKETER_PREFIX}/events"), post(event))
        .layer(axum::middleware::from_fn_with_state(
            acct.clone(),
            token_gate,
        ));
    let standalone = Router::new()
        .route(
            &format!("{STANDALONE_PREFIX}/contacts"),
            get(sa_list).put(sa_put),
        )
        .route(
            &format!("{STANDALONE_PREFIX}/contacts/{{key}}"),
            get(sa_show),
        )
        .route(
            &format!("{STANDALONE_PREFIX}/lists/{{list}}/subscribers/{{contact}}/unsubscribe"),
            patch(sa_unsubscribe),
        )
        .layer(axum::middleware::from_fn_with_state(
            acct.clone(),
            fm_token_gate,
        ));
    bundle.merge(standalone).with_state(acct)
}
