//! HTTP handlers of the CRM tree (`/crm/sales/api/...` or `/api/...`): parse the request,
//! call [`Store`], render. Routes are registered per entity so that request counters name
//! them (`GET /crm/sales/api/contacts/{id}`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use serde_json::{Map, Value, json};

use super::Account;
use super::error::{ApiError, ApiResult};
use super::fields::Entity;
use super::gate::{User, token_gate};
use super::render;
use super::store::{BulkItem, FilterRule, PageRequest, Store, as_u64};
use super::switches::{DeleteReply, SortType, Switches};

type St = State<Arc<Account>>;

/// Parsed query string (last value wins).
pub fn query(raw: Option<String>) -> HashMap<String, String> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// Paging and sorting from a query (`page` 1-based, `per_page` default 25 capped at 100).
pub fn page_request(q: &HashMap<String, String>) -> PageRequest {
    let page = q
        .get("page")
        .and_then(|p| p.trim().parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let per_page = q
        .get("per_page")
        .and_then(|p| p.trim().parse::<usize>().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(25)
        .min(100);
    PageRequest {
        page,
        per_page,
        sort: q.get("sort").cloned(),
        sort_type: q.get("sort_type").and_then(|s| parse_sort_type(s)),
    }
}

fn parse_sort_type(s: &str) -> Option<SortType> {
    match s.trim().to_ascii_lowercase().as_str() {
        "asc" => Some(SortType::Asc),
        "desc" => Some(SortType::Desc),
        _ => None,
    }
}

/// `include=a,b` as a list.
pub fn includes(q: &HashMap<String, String>) -> Vec<String> {
    q.get("include")
        .map(|s| {
            s.split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Parse a JSON body; an empty body is `{}`.
pub fn json_body(body: &Bytes) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|_| ApiError::bad_request("Request body is not valid JSON"))
}

/// The record fields of a write body: wrapped (`{"contact":{...}}`) or unwrapped
/// (docs/freshworks-api.md §2.4).
pub fn record_input(body: &Value, entity: Entity) -> ApiResult<Map<String, Value>> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::bad_request("Request body must be a JSON object"));
    };
    if let Some(Value::Object(inner)) = obj.get(entity.singular()) {
        return Ok(inner.clone());
    }
    let mut m = obj.clone();
    m.remove("unique_identifier");
    Ok(m)
}

fn parse_id(s: &str) -> ApiResult<u64> {
    s.trim().parse::<u64>().map_err(|_| ApiError::not_found())
}

/// 404 for any path no route matches.
pub async fn not_found() -> Response {
    ApiError::not_found().into_response()
}

fn with_sideloads(
    mut body: Map<String, Value>,
    store: &Store,
    recs: &[u64],
    inc: &[String],
) -> Value {
    let recs: Vec<_> = recs
        .iter()
        .filter_map(|id| store.records().get(id))
        .collect();
    body.extend(render::sideloads(store, &recs, inc));
    Value::Object(body)
}

/// Render one record wrapped in its singular key, plus side-loads.
fn one(
    acct: &Account,
    store: &Store,
    sw: &Switches,
    entity: Entity,
    id: u64,
    inc: &[String],
) -> Value {
    let ctx = acct.ctx(sw);
    let rec = store
        .records()
        .get(&id)
        .map(|r| render::record(store, &ctx, r, inc.iter().any(|i| i == "lists")));
    let mut m = Map::new();
    m.insert(entity.singular().into(), rec.unwrap_or(Value::Null));
    with_sideloads(m, store, &[id], inc)
}

/// [`one`] for the answer of a write: the embedded `sales_accounts` only when asked for
/// (`include=sales_accounts`), as docs/freshworks-api.md §3.6 shows them, unless the switch says.
fn written(
    acct: &Account,
    store: &Store,
    sw: &Switches,
    entity: Entity,
    id: u64,
    inc: &[String],
) -> Value {
    let mut out = one(acct, store, sw, entity, id, inc);
    let asked = inc
        .iter()
        .any(|i| i == "sales_accounts" || i == "sales_account");
    if !asked
        && !sw.sales_accounts_on_write
        && let Some(Value::Object(rec)) = out.get_mut(entity.singular())
    {
        rec.remove("sales_accounts");
    }
    out
}

/// Render a page of records with `meta`.
fn many(
    acct: &Account,
    store: &Store,
    sw: &Switches,
    entity: Entity,
    (ids, total): (&[u64], usize),
    per_page: usize,
    inc: &[String],
) -> Value {
    let ctx = acct.ctx(sw);
    let lists = inc.iter().any(|i| i == "lists");
    let recs: Vec<Value> = ids
        .iter()
        .filter_map(|id| store.records().get(id))
        .map(|r| render::record(store, &ctx, r, lists))
        .collect();
    let mut m = Map::new();
    m.insert(entity.plural().into(), Value::Array(recs));
    m.insert(
        "meta".into(),
        json!({"total_pages": total.div_ceil(per_page.max(1)), "total": total}),
    );
    with_sideloads(m, store, ids, inc)
}

fn delete_reply(sw: &Switches) -> Response {
    match sw.delete_reply {
        DeleteReply::TrueBody => (StatusCode::OK, Json(json!(true))).into_response(),
        DeleteReply::Empty => StatusCode::OK.into_response(),
        DeleteReply::NoContent => StatusCode::NO_CONTENT.into_response(),
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
}

// ----- handlers -----

async fn list_views(
    State(a): St,
    Extension(u): Extension<User>,
    entity: Entity,
) -> ApiResult<Json<Value>> {
    let sw = a.switches();
    let ctx = a.ctx(&sw);
    Ok(Json(a.with_store(|s, _, _| {
        let owner_name = s
            .refs
            .selector("owners")
            .and_then(|o| o.items.first())
            .and_then(|o| o["display_name"].as_str())
            .unwrap_or_default()
            .to_owned();
        let created = s
            .lists
            .values()
            .map(|l| l.created_at)
            .min()
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let views: Vec<Value> = s
            .views
            .iter()
            .filter(|v| v.entity == entity)
            .map(|v| render::view(&ctx, v, u.0, &owner_name, created))
            .collect();
        json!({"filters": views})
    })))
}

async fn view_records(
    State(a): St,
    Extension(u): Extension<User>,
    Path(view): Path<String>,
    RawQuery(q): RawQuery,
    entity: Entity,
) -> ApiResult<Json<Value>> {
    let q = query(q);
    let req = page_request(&q);
    let inc = includes(&q);
    let view = parse_id(&view)?;
    a.with_store(|s, sw, now| {
        let Some(v) = s
            .views
            .iter()
            .find(|v| v.id == view && v.entity == entity)
            .cloned()
        else {
            return Err(ApiError::not_found());
        };
        let ids = s.view_ids(&v, now, u.0);
        let (page, total) = s.page(ids, &req, sw);
        Ok(Json(many(
            &a,
            s,
            sw,
            entity,
            (&page, total),
            req.per_page,
            &inc,
        )))
    })
}

async fn show(
    State(a): St,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    entity: Entity,
) -> ApiResult<Json<Value>> {
    let inc = includes(&query(q));
    let id = parse_id(&id)?;
    a.with_store(|s, sw, _| {
        s.get(entity, id).ok_or_else(ApiError::not_found)?;
        Ok(Json(one(&a, s, sw, entity, id, &inc)))
    })
}

async fn create(
    State(a): St,
    Extension(u): Extension<User>,
    RawQuery(q): RawQuery,
    body: Bytes,
    entity: Entity,
) -> ApiResult<Response> {
    let inc = includes(&query(q));
    let input = record_input(&json_body(&body)?, entity)?;
    a.with_store(|s, sw, now| {
        let id = s.create(entity, &input, sw, now, u.0)?;
        Ok((
            status(sw.create_status),
            Json(written(&a, s, sw, entity, id, &inc)),
        )
            .into_response())
    })
}

async fn update(
    State(a): St,
    Extension(u): Extension<User>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
    entity: Entity,
) -> ApiResult<Json<Value>> {
    let inc = includes(&query(q));
    let id = parse_id(&id)?;
    let input = record_input(&json_body(&body)?, entity)?;
    a.with_store(|s, sw, now| {
        s.update(entity, id, &input, sw, now, u.0)?;
        Ok(Json(written(&a, s, sw, entity, id, &inc)))
    })
}

async fn destroy(
    State(a): St,
    Extension(u): Extension<User>,
    Path(id): Path<String>,
    entity: Entity,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    a.with_store(|s, sw, now| {
        s.soft_delete(entity, id, now, u.0)?;
        Ok(delete_reply(sw))
    })
}

async fn forget(State(a): St, Path(id): Path<String>, entity: Entity) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    a.with_store(|s, sw, _| {
        s.forget(entity, id)?;
        Ok(delete_reply(sw))
    })
}

async fn bulk_destroy(
    State(a): St,
    Extension(u): Extension<User>,
    body: Bytes,
    entity: Entity,
) -> ApiResult<Json<Value>> {
    let body = json_body(&body)?;
    let ids: Vec<u64> = body
        .get("selected_ids")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_request("selected_ids can't be blank"))?
        .iter()
        .filter_map(as_u64)
        .collect();
    a.with_store(|s, _, now| {
        let mut deleted = 0;
        for id in ids {
            if s.soft_delete(entity, id, now, u.0).is_ok() {
                deleted += 1;
            }
        }
        Ok(Json(json!({"message": format!("{deleted} {} deleted", entity.plural()), "deleted": deleted})))
    })
}

async fn upsert(
    State(a): St,
    Extension(u): Extension<User>,
    RawQuery(q): RawQuery,
    body: Bytes,
    entity: Entity,
) -> ApiResult<Response> {
    let inc = includes(&query(q));
    let body = json_body(&body)?;
    let ident = body
        .get("unique_identifier")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| ApiError::bad_request("Unique identifier can't be blank"))?;
    let input = record_input(&body, entity)?;
    a.with_store(|s, sw, now| {
        let (id, inserted) = s.upsert(entity, &ident, &input, sw, now, u.0)?;
        let code = if inserted {
            status(sw.upsert_insert_status)
        } else {
            StatusCode::OK
        };
        Ok((code, Json(written(&a, s, sw, entity, id, &inc))).into_response())
    })
}

/// Parse one bulk item: `{"emails":"x","data":{...}}` (identifier at top level, fields in
/// `data`) or `{"unique_identifier":{...},"contact":{...}}`.
fn bulk_item(v: &Value, entity: Entity) -> ApiResult<BulkItem> {
    let o = v
        .as_object()
        .ok_or_else(|| ApiError::bad_request("Each record must be a JSON object"))?;
    if let Some(ident) = o.get("unique_identifier").and_then(Value::as_object) {
        let data = o
            .get("data")
            .or(o.get(entity.singular()))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        return Ok(BulkItem {
            identifier: ident.clone(),
            data,
        });
    }
    let data = o
        .get("data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let identifier: Map<String, Value> = o
        .iter()
        .filter(|(k, _)| *k != "data")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(BulkItem { identifier, data })
}

async fn bulk_upsert(
    State(a): St,
    Extension(u): Extension<User>,
    body: Bytes,
    entity: Entity,
) -> ApiResult<Json<Value>> {
    let body = json_body(&body)?;
    let items = match &body {
        Value::Array(a) => a.clone(),
        Value::Object(o) => o
            .get(entity.plural())
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| ApiError::bad_request(format!("{} can't be blank", entity.plural())))?,
        _ => return Err(ApiError::bad_request("Request body must be a JSON object")),
    };
    let sw = a.switches();
    if items.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{} can't be blank",
            entity.plural()
        )));
    }
    if items.len() > sw.bulk_max_items {
        return Err(ApiError::bad_request(format!(
            "A bulk upsert accepts at most {} records; {} were sent",
            sw.bulk_max_items,
            items.len()
        )));
    }
    let parsed = items
        .iter()
        .map(|i| bulk_item(i, entity))
        .collect::<ApiResult<Vec<_>>>()?;
    let prefix = a.flavor.prefix;
    a.with_store(|s, sw, now| {
        let id = s.submit_job(entity, parsed, sw, now, u.0);
        Ok(Json(json!({"id": id, "job_id": id, "job_status_url": format!("{prefix}/job_statuses/{id}")})))
    })
}

async fn job_status(State(a): St, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    a.with_store(|s, sw, _| {
        let j = s.jobs.get(&id).ok_or_else(ApiError::not_found)?;
        Ok(Json(render::job(&a.ctx(sw), j)))
    })
}

async fn fields(State(a): St, entity: Entity) -> Json<Value> {
    a.with_store(|s, sw, _| {
        let defs = s.defs(entity, sw);
        let base = s.flavor.id_base / 1000 * 1000 + 900_000;
        let list: Vec<Value> = defs
            .iter()
            .enumerate()
            .map(|(i, d)| d.to_json(base + i as u64, i + 1))
            .collect();
        Json(json!({"fields": list}))
    })
}

fn filter_rules(body: &Value) -> ApiResult<Vec<FilterRule>> {
    let rules = match body.get("filter_rule") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(ApiError::bad_request("filter_rule must be an array")),
    };
    rules
        .iter()
        .map(|r| {
            let attribute = r.get("attribute").and_then(Value::as_str);
            let operator = r.get("operator").and_then(Value::as_str);
            match (attribute, operator) {
                (Some(a), Some(o)) => Ok(FilterRule {
                    attribute: a.to_owned(),
                    operator: o.to_owned(),
                    value: r.get("value").cloned().unwrap_or(Value::Null),
                }),
                _ => Err(ApiError::bad_request(
                    "Each filter rule needs an attribute and an operator",
                )),
            }
        })
        .collect()
}

async fn filtered_search(
    State(a): St,
    RawQuery(q): RawQuery,
    body: Bytes,
    entity: Entity,
) -> ApiResult<Json<Value>> {
    let q = query(q);
    let mut req = page_request(&q);
    let inc = includes(&q);
    let body = json_body(&body)?;
    let rules = filter_rules(&body)?;
    if let Some(sort) = body.get("sort").and_then(Value::as_str) {
        req.sort = Some(sort.to_owned());
    }
    if let Some(st) = body.get("sort_type").and_then(Value::as_str) {
        req.sort_type = parse_sort_type(st);
    }
    let offset = a.offset(&a.switches());
    a.with_store(|s, sw, _| {
        let ids = s.filtered(entity, &rules, sw, offset)?;
        let (page, total) = s.page(ids, &req, sw);
        Ok(Json(many(
            &a,
            s,
            sw,
            entity,
            (&page, total),
            req.per_page,
            &inc,
        )))
    })
}

fn lookup_entities(q: &HashMap<String, String>, has_leads: bool) -> ApiResult<Vec<Entity>> {
    let raw = q.get("entities").map(String::as_str).unwrap_or("contact");
    let mut out = Vec::new();
    for e in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match Entity::parse(e) {
            Some(Entity::Lead) if !has_leads => {
                return Err(ApiError::bad_request(format!("Invalid entity {e}")));
            }
            Some(x) => out.push(x),
            None if e == "sales_account" || e == "deal" => {}
            None => return Err(ApiError::bad_request(format!("Invalid entity {e}"))),
        }
    }
    Ok(out)
}

async fn lookup(State(a): St, RawQuery(q): RawQuery) -> ApiResult<Json<Value>> {
    let q = query(q);
    let (Some(term), Some(field)) = (
        q.get("q").filter(|s| !s.is_empty()),
        q.get("f").filter(|s| !s.is_empty()),
    ) else {
        return Err(ApiError::bad_request("q and f are required"));
    };
    let field = match field.as_str() {
        "email" | "emails" => "emails",
        "phone" => "mobile_number",
        other => other,
    }
    .to_owned();
    let entities = lookup_entities(&q, a.flavor.has_leads)?;
    a.with_store(|s, sw, _| {
        let ctx = a.ctx(sw);
        let mut out = Map::new();
        for e in entities {
            let ids: Vec<u64> = if field == "name" {
                s.live(e)
                    .filter(|r| r.display_name().eq_ignore_ascii_case(term))
                    .map(|r| r.id)
                    .collect()
            } else {
                s.find_by(e, &field, &json!(term), sw)
            };
            let recs: Vec<Value> = ids
                .iter()
                .filter_map(|id| s.records().get(id))
                .map(|r| render::record(s, &ctx, r, false))
                .collect();
            out.insert(e.plural().into(), json!({ e.plural(): recs }));
        }
        Ok(Json(Value::Object(out)))
    })
}

async fn search(State(a): St, RawQuery(q): RawQuery) -> ApiResult<Json<Value>> {
    let q = query(q);
    let term = q
        .get("q")
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_default();
    if term.is_empty() {
        return Err(ApiError::bad_request("q can't be blank"));
    }
    let per_page = page_request(&q).per_page;
    let mut entities = Vec::new();
    for e in q
        .get("include")
        .map(String::as_str)
        .unwrap_or("contact")
        .split(',')
    {
        match Entity::parse(e.trim()) {
            Some(Entity::Lead) if !a.flavor.has_leads => {}
            Some(x) => entities.push(x),
            None => {}
        }
    }
    a.with_store(|s, sw, _| {
        let ctx = a.ctx(sw);
        let mut hits = Vec::new();
        for e in entities {
            for r in s.live(e) {
                let hay = [
                    Some(r.display_name()),
                    r.primary_email().map(str::to_owned),
                    r.field_str("mobile_number"),
                    r.field_str("work_number"),
                ];
                if hay
                    .iter()
                    .flatten()
                    .any(|h| h.to_lowercase().contains(&term))
                {
                    hits.push(render::search_hit(s, &ctx, r));
                }
                if hits.len() >= per_page {
                    break;
                }
            }
        }
        Ok(Json(Value::Array(hits)))
    })
}

async fn selector(State(a): St, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    a.with_store(|s, _, _| {
        let sel = s.refs.selector(&name).ok_or_else(ApiError::not_found)?;
        Ok(Json(json!({ sel.key: sel.items })))
    })
}

async fn lists(State(a): St, RawQuery(q): RawQuery) -> Json<Value> {
    let req = page_request(&query(q));
    a.with_store(|s, sw, _| {
        let ctx = a.ctx(sw);
        let all: Vec<Value> = s
            .lists
            .values()
            .map(|l| render::list(&ctx, l, s.list_members(l.id).len()))
            .collect();
        let total = all.len();
        let page: Vec<Value> = all.into_iter().skip((req.page - 1) * req.per_page).take(req.per_page).collect();
        Json(json!({"lists": page, "meta": {"total_pages": total.div_ceil(req.per_page), "total": total}}))
    })
}

fn list_name(body: &Value) -> ApiResult<String> {
    body.get("name")
        .or_else(|| body.get("list").and_then(|l| l.get("name")))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ApiError::invalid(vec!["Name can't be blank".to_owned()]))
}

async fn create_list(State(a): St, body: Bytes) -> ApiResult<Response> {
    let name = list_name(&json_body(&body)?)?;
    a.with_store(|s, sw, now| {
        let id = s.create_list(&name, now)?;
        let l = &s.lists[&id];
        Ok((
            status(sw.create_status),
            Json(json!({"list": render::list(&a.ctx(sw), l, 0)})),
        )
            .into_response())
    })
}

async fn update_list(State(a): St, Path(id): Path<String>, body: Bytes) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let name = list_name(&json_body(&body)?)?;
    a.with_store(|s, sw, now| {
        s.rename_list(id, &name, now)?;
        let l = &s.lists[&id];
        Ok(Json(
            json!({"list": render::list(&a.ctx(sw), l, s.list_members(id).len())}),
        ))
    })
}

fn member_ids(body: &Value, s: &Store, from: Option<u64>) -> ApiResult<Vec<u64>> {
    if body.get("all").and_then(Value::as_bool) == Some(true) {
        return Ok(match from {
            Some(f) => s.list_members(f),
            None => Vec::new(),
        });
    }
    let ids = body
        .get("ids")
        .or_else(|| body.get("contact_ids"))
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_request("ids can't be blank"))?;
    Ok(ids.iter().filter_map(as_u64).collect())
}

#[derive(Clone, Copy)]
enum MemberOp {
    Add,
    Remove,
    Move,
}

async fn change_members(
    State(a): St,
    Extension(u): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
    op: MemberOp,
) -> ApiResult<Json<Value>> {
    let list = parse_id(&id)?;
    let body = json_body(&body)?;
    a.with_store(|s, sw, now| {
        if !s.lists.contains_key(&list) {
            return Err(ApiError::not_found());
        }
        let bump = sw.list_change_bumps_updated_at;
        let msg = match op {
            MemberOp::Add => {
                let ids = member_ids(&body, s, None)?;
                let n = s.change_membership(list, &ids, true, bump, now, u.0)?;
                format!("{n} contacts added to the list")
            }
            MemberOp::Remove => {
                let ids = member_ids(&body, s, Some(list))?;
                let n = s.change_membership(list, &ids, false, bump, now, u.0)?;
                format!("{n} contacts removed from the list")
            }
            MemberOp::Move => {
                let from = body
                    .get("from_list_id")
                    .and_then(as_u64)
                    .ok_or_else(|| ApiError::bad_request("from_list_id can't be blank"))?;
                if !s.lists.contains_key(&from) {
                    return Err(ApiError::not_found());
                }
                let ids = member_ids(&body, s, Some(from))?;
                s.change_membership(from, &ids, false, bump, now, u.0)?;
                let n = s.change_membership(list, &ids, true, bump, now, u.0)?;
                format!("{n} contacts moved to the list")
            }
        };
        Ok(Json(json!({"message": msg})))
    })
}

async fn list_contacts(
    State(a): St,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let q = query(q);
    let req = page_request(&q);
    let inc = includes(&q);
    let list = parse_id(&id)?;
    a.with_store(|s, sw, _| {
        if !s.lists.contains_key(&list) {
            return Err(ApiError::not_found());
        }
        let ids = s.list_members(list);
        let (page, total) = s.page(ids, &req, sw);
        Ok(Json(many(
            &a,
            s,
            sw,
            Entity::Contact,
            (&page, total),
            req.per_page,
            &inc,
        )))
    })
}

/// `POST /leads/{id}/convert`: the lead becomes a contact (with the given fields applied);
/// the lead leaves the leads module. Replies `{"contact":{...}}`.
async fn convert_lead(
    State(a): St,
    Extension(u): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let input = record_input(&json_body(&body)?, Entity::Lead)?;
    a.with_store(|s, sw, now| {
        let lead = s
            .get(Entity::Lead, id)
            .filter(|r| !r.deleted)
            .cloned()
            .ok_or_else(ApiError::not_found)?;
        let mut fields: Map<String, Value> = lead
            .fields
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "lead_stage_id" | "lead_reason_id"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        fields.insert(
            "emails".into(),
            json!(
                lead.emails
                    .iter()
                    .map(|e| json!({"value": e.value, "is_primary": e.is_primary}))
                    .collect::<Vec<_>>()
            ),
        );
        fields.insert("custom_field".into(), json!(lead.custom));
        if let Some(name) = lead.company.get("name") {
            fields.insert(
                "sales_accounts".into(),
                json!([{"name": name, "is_primary": true}]),
            );
        }
        for (k, v) in input {
            if k != "company" && k != "deal" {
                fields.insert(k, v);
            }
        }
        let cid = s.create(Entity::Contact, &fields, sw, now, u.0)?;
        s.forget(Entity::Lead, id)?;
        Ok(Json(one(&a, s, sw, Entity::Contact, cid, &[])))
    })
}

/// The CRM tree of `acct` (routes under its prefix), behind the token gate.
pub fn crm_router(acct: Arc<Account>) -> Router {
    let p = acct.flavor.prefix;
    let mut r: Router<Arc<Account>> = Router::new();
    for &e in acct.flavor.entities() {
        let n = e.plural();
        let s = e.singular();
        r = r
            .route(
                &format!("{p}/{n}/filters"),
                get(move |st: St, u: Extension<User>| list_views(st, u, e)),
            )
            .route(
                &format!("{p}/{n}/view/{{view_id}}"),
                get(
                    move |st: St, u: Extension<User>, v: Path<String>, q: RawQuery| {
                        view_records(st, u, v, q, e)
                    },
                ),
            )
            .route(
                &format!("{p}/{n}"),
                post(move |st: St, u: Extension<User>, q: RawQuery, b: Bytes| {
                    create(st, u, q, b, e)
                }),
            )
            .route(
                &format!("{p}/{n}/{{id}}"),
                get(move |st: St, id: Path<String>, q: RawQuery| show(st, id, q, e))
                    .put(
                        move |st: St,
                              u: Extension<User>,
                              id: Path<String>,
                              q: RawQuery,
                              b: Bytes| { update(st, u, id, q, b, e) },
                    )
                    .delete(move |st: St, u: Extension<User>, id: Path<String>| {
                        destroy(st, u, id, e)
                    }),
            )
            .route(
                &format!("{p}/{n}/{{id}}/forget"),
                delete(move |st: St, id: Path<String>| forget(st, id, e)),
            )
            .route(
                &format!("{p}/{n}/upsert"),
                post(move |st: St, u: Extension<User>, q: RawQuery, b: Bytes| {
                    upsert(st, u, q, b, e)
                }),
            )
            .route(
                &format!("{p}/{n}/bulk_upsert"),
                post(move |st: St, u: Extension<User>, b: Bytes| bulk_upsert(st, u, b, e)),
            )
            .route(
                &format!("{p}/{n}/bulk_destroy"),
                post(move |st: St, u: Extension<User>, b: Bytes| bulk_destroy(st, u, b, e)),
            )
            .route(
                &format!("{p}/settings/{n}/fields"),
                get(move |st: St| fields(st, e)),
            )
            .route(
                &format!("{p}/filtered_search/{s}"),
                post(move |st: St, q: RawQuery, b: Bytes| filtered_search(st, q, b, e)),
            );
    }
    if acct.flavor.has_leads {
        r = r.route(&format!("{p}/leads/{{id}}/convert"), post(convert_lead));
    }
    r = r
        .route(
            &format!("{p}/contacts/lists/{{list_id}}"),
            get(list_contacts),
        )
        .route(&format!("{p}/lookup"), get(lookup))
        .route(&format!("{p}/search"), get(search))
        .route(&format!("{p}/selector/{{name}}"), get(selector))
        .route(&format!("{p}/job_statuses/{{id}}"), get(job_status))
        .route(&format!("{p}/lists"), get(lists).post(create_list))
        .route(&format!("{p}/lists/{{id}}"), put(update_list))
        .route(
            &format!("{p}/lists/{{id}}/add_contacts"),
            put(
                move |st: St, u: Extension<User>, id: Path<String>, b: Bytes| {
                    change_members(st, u, id, b, MemberOp::Add)
                },
            ),
        )
        .route(
            &format!("{p}/lists/{{id}}/remove_contacts"),
            put(
                move |st: St, u: Extension<User>, id: Path<String>, b: Bytes| {
                    change_members(st, u, id, b, MemberOp::Remove)
                },
            ),
        )
        .route(
            &format!("{p}/lists/{{id}}/move_contacts"),
            put(
                move |st: St, u: Extension<User>, id: Path<String>, b: Bytes| {
                    change_members(st, u, id, b, MemberOp::Move)
                },
            ),
        );
    r.layer(axum::middleware::from_fn_with_state(
        acct.clone(),
        token_gate,
    ))
    .with_state(acct)
}
