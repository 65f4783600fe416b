//! Google-specific control routes, merged under `/_sandbox` next to the generic ones
//! (reset, faults, counters, clock) of [`crate::common::control`]. All JSON.
//!
//! | Method + path | Body | Reply |
//! |---|---|---|
//! | `GET /_sandbox/state` | — | people (deleted included) with etags, `updateTime`, memberships; groups with members; `seq`; `syncTokenGeneration` |
//! | `GET /_sandbox/changes?since=N` | — | `{"changes":[{seq, resourceName, kind: upsert/delete/group, time}]}` (last change per entity, after `since`) |
//! | `POST /_sandbox/seed` | `{"seed":N,"contacts":N}` (both optional) | `{"contacts":N}`: data replaced by the shared population's people; new reset baseline |
//! | `GET /_sandbox/settings` | — | [`GoogleSettings`] |
//! | `PATCH /_sandbox/settings` | partial [`GoogleSettings`] | the merged settings (reset restores the start settings) |
//! | `POST /_sandbox/people` | a Person | `{"resourceName":…}`: created as the user would in the app |
//! | `PATCH /_sandbox/people/{id}` | Person fields | `{"resourceName","etag"}`: every field present replaces the stored one, as a user edit; etag and `updateTime` move |
//! | `DELETE /_sandbox/people/{id}` | — | `{"deleted":true}` (tombstone for sync) |
//! | `POST /_sandbox/tokens/expire` | — | `{"expired":N}`: every issued access token now answers 401 ACCESS_TOKEN_EXPIRED |
//! | `POST /_sandbox/tokens/revoke` | `{"refresh_token":…}` (optional: all) | `{"revoked":N}`: `/token` answers `invalid_grant`; access tokens expire |
//! | `POST /_sandbox/tokens/refresh` | `{"scope":…}` (default contacts) | `{"refresh_token":…}`: a new grant |
//! | `POST /_sandbox/tokens/access` | `{"scope":…}` | the `/token` success body, minted without a refresh token |
//! | `POST /_sandbox/sync-tokens/expire` | — | `{"generation":N}`: every sync token issued so far answers EXPIRED_SYNC_TOKEN |
//! | `GET /_sandbox/mutations` | — | `{"in_flight":N,"held":bool}` |
//! | `POST /_sandbox/mutations/hold` | `{"hold":bool}` | same as `GET`: held mutations wait (in flight) until released |
//! | `POST /_sandbox/quota/reset` | — | `{"reset":true}`: quota windows emptied |
//! | `POST /_sandbox/google-faults` | `{"status":503,"count":N,"skip":N,"method":…,"path_prefix":…,"after_commit":bool}` | `{"id":N}`: a generic fault rule whose reply is the Google error JSON for that status (500 INTERNAL, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED, 409 ABORTED, 429 RESOURCE_EXHAUSTED "FBS" body); `after_commit` runs the handler first |
//!
//! `{id}` is the part after `people/` (e.g. `c1234…`). Errors are `{"error":"…"}`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::SCOPE_CONTACTS;
use super::settings::GoogleSettings;
use super::{GoogleAccount, person, rfc3339};
use crate::common::{FaultKind, FaultRule, Faults, control_error};

/// The Google control routes (paths relative to `/_sandbox`); `faults` is the account's
/// generic fault table (for `/google-faults`).
pub fn router(account: GoogleAccount, faults: Faults) -> Router {
    let google_faults = Router::new()
        .route("/google-faults", post(add_google_fault))
        .with_state(faults);
    Router::new()
        .route("/state", get(state))
        .route("/changes", get(changes))
        .route("/seed", post(seed))
        .route("/settings", get(get_settings).patch(patch_settings))
        .route("/people", post(create_person))
        .route("/people/{id}", patch(edit_person).delete(delete_person))
        .route("/tokens/expire", post(expire_tokens))
        .route("/tokens/revoke", post(revoke))
        .route("/tokens/refresh", post(new_refresh))
        .route("/tokens/access", post(new_access))
        .route("/sync-tokens/expire", post(expire_sync_tokens))
        .route("/mutations", get(mutations))
        .route("/mutations/hold", post(hold))
        .route("/quota/reset", post(quota_reset))
        .with_state(account)
        .merge(google_faults)
}

#[derive(Debug, Deserialize)]
struct GoogleFault {
    status: u16,
    #[serde(default = "one")]
    count: Option<u32>,
    #[serde(default)]
    skip: u32,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path_prefix: Option<String>,
    #[serde(default)]
    after_commit: bool,
}

fn one() -> Option<u32> {
    Some(1)
}

async fn add_google_fault(State(faults): State<Faults>, Json(f): Json<GoogleFault>) -> Json<Value> {
    let body =
        serde_json::to_string(&super::ApiError::injected(f.status).body()).unwrap_or_default();
    let fault = if f.after_commit {
        FaultKind::AfterCommit {
            status: Some(f.status),
            body: Some(body),
        }
    } else {
        FaultKind::Status {
            status: f.status,
            body: Some(body),
            content_type: Some(super::error::JSON_CONTENT_TYPE.into()),
            headers: Default::default(),
        }
    };
    let id = faults.add(FaultRule {
        id: 0,
        method: f.method,
        path_prefix: f.path_prefix,
        skip: f.skip,
        count: f.count,
        fault,
    });
    Json(json!({ "id": id }))
}

fn api_error(e: &super::ApiError) -> Response {
    control_error(e.http, e.message.clone())
}

async fn state(State(a): State<GoogleAccount>) -> Json<Value> {
    Json(a.store().inspect())
}

#[derive(Debug, Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
}

async fn changes(State(a): State<GoogleAccount>, Query(q): Query<Since>) -> Json<Value> {
    let store = a.store();
    let mut list: Vec<(u64, Value)> = store
        .contacts
        .values()
        .filter(|c| c.seq > q.since)
        .map(|c| {
            let kind = if c.deleted { "delete" } else { "upsert" };
            (
                c.seq,
                json!({"seq": c.seq, "resourceName": c.resource_name, "kind": kind, "time": rfc3339(c.update_time)}),
            )
        })
        .chain(store.groups.values().filter(|g| g.seq > q.since).map(|g| {
            let kind = if g.deleted { "group_delete" } else { "group_upsert" };
            (
                g.seq,
                json!({"seq": g.seq, "resourceName": g.resource_name, "kind": kind, "time": rfc3339(g.update_time)}),
            )
        }))
        .collect();
    list.sort_by_key(|(s, _)| *s);
    Json(
        json!({"changes": list.into_iter().map(|(_, v)| v).collect::<Vec<_>>(), "seq": store.seq()}),
    )
}

#[derive(Debug, Deserialize)]
struct SeedBody {
    seed: Option<u64>,
    contacts: Option<usize>,
}

async fn seed(State(a): State<GoogleAccount>, body: Option<Json<SeedBody>>) -> Json<Value> {
    let body = body.map(|b| b.0).unwrap_or(SeedBody {
        seed: None,
        contacts: None,
    });
    let live = a.store().contacts.values().filter(|c| !c.deleted).count();
    let seed = body.seed.unwrap_or(a.store().seed_value());
    let n = body.contacts.unwrap_or(live);
    a.reseed(seed, n);
    let count = a.store().contacts.values().filter(|c| !c.deleted).count();
    Json(json!({"contacts": count, "seed": seed}))
}

async fn get_settings(State(a): State<GoogleAccount>) -> Json<Value> {
    Json(json!(a.store().settings))
}

async fn patch_settings(State(a): State<GoogleAccount>, Json(patch): Json<Value>) -> Response {
    let mut store = a.store();
    let mut merged = json!(store.settings);
    let (Some(m), Some(p)) = (merged.as_object_mut(), patch.as_object()) else {
        return control_error(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object of settings",
        );
    };
    for (k, v) in p {
        if !m.contains_key(k) {
            return control_error(
                StatusCode::BAD_REQUEST,
                format!("unknown setting `{k}`; GET /_sandbox/settings lists them"),
            );
        }
        m.insert(k.clone(), v.clone());
    }
    match serde_json::from_value::<GoogleSettings>(merged) {
        Ok(s) => {
            store.settings = s;
            Json(json!(store.settings)).into_response()
        }
        Err(e) => control_error(StatusCode::BAD_REQUEST, format!("invalid settings: {e}")),
    }
}

async fn create_person(State(a): State<GoogleAccount>, Json(body): Json<Value>) -> Response {
    let input = match person::parse_person(&body, "person") {
        Ok(i) => i,
        Err(e) => return api_error(&e),
    };
    let now = a.clock().now();
    let mut store = a.store();
    match store.create_contact(&input, now) {
        Ok(rn) => Json(json!({"resourceName": rn})).into_response(),
        Err(e) => api_error(&e),
    }
}

async fn edit_person(
    State(a): State<GoogleAccount>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let rn = format!("people/{id}");
    let now = a.clock().now();
    let mut store = a.store();
    match store.user_edit(&rn, &body, now) {
        Ok(()) => {
            let c = &store.contacts[&rn];
            let etag = person::person_etag(
                &person::FieldMask::all(),
                c.source_etag,
                store.settings.etag_varies_by_mask,
            );
            Json(json!({"resourceName": rn, "etag": etag, "updateTime": rfc3339(c.update_time)}))
                .into_response()
        }
        Err(e) => api_error(&e),
    }
}

async fn delete_person(State(a): State<GoogleAccount>, Path(id): Path<String>) -> Response {
    let now = a.clock().now();
    match a.store().user_delete(&format!("people/{id}"), now) {
        Ok(()) => Json(json!({"deleted": true})).into_response(),
        Err(e) => api_error(&e),
    }
}

async fn expire_tokens(State(a): State<GoogleAccount>) -> Json<Value> {
    Json(json!({"expired": a.store().auth.expire_access_tokens()}))
}

#[derive(Debug, Default, Deserialize)]
struct RevokeBody {
    refresh_token: Option<String>,
}

async fn revoke(State(a): State<GoogleAccount>, body: Option<Json<RevokeBody>>) -> Json<Value> {
    let body = body.map(|b| b.0).unwrap_or_default();
    Json(json!({"revoked": a.store().auth.revoke_refresh(body.refresh_token.as_deref())}))
}

#[derive(Debug, Default, Deserialize)]
struct ScopeBody {
    scope: Option<String>,
}

async fn new_refresh(State(a): State<GoogleAccount>, body: Option<Json<ScopeBody>>) -> Json<Value> {
    let scope = body
        .and_then(|b| b.0.scope)
        .unwrap_or_else(|| SCOPE_CONTACTS.into());
    let token = a.store().issue_refresh_token(&scope);
    Json(json!({"refresh_token": token, "scope": scope}))
}

async fn new_access(State(a): State<GoogleAccount>, body: Option<Json<ScopeBody>>) -> Response {
    let scope = body
        .and_then(|b| b.0.scope)
        .unwrap_or_else(|| SCOPE_CONTACTS.into());
    let now = a.clock().now();
    let mut store = a.store();
    let refresh = store.issue_refresh_token(&scope);
    let req = super::auth::TokenRequest {
        grant_type: Some("refresh_token".into()),
        client_id: Some(store.auth.client.client_id.clone()),
        client_secret: Some(store.auth.client.client_secret.clone()),
        refresh_token: Some(refresh.clone()),
    };
    let result = store.oauth_token(&req, now);
    // The grant was only a vehicle: the access token stands alone.
    store.auth.refresh.remove(&refresh);
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => control_error(e.http, e.description),
    }
}

async fn expire_sync_tokens(State(a): State<GoogleAccount>) -> Json<Value> {
    let mut store = a.store();
    store.expire_sync_tokens();
    Json(json!({"generation": store.sync_generation()}))
}

fn mutations_json(a: &GoogleAccount) -> Json<Value> {
    Json(json!({"in_flight": a.in_flight(), "held": a.mutations_held()}))
}

async fn mutations(State(a): State<GoogleAccount>) -> Json<Value> {
    mutations_json(&a)
}

#[derive(Debug, Deserialize)]
struct HoldBody {
    hold: bool,
}

async fn hold(State(a): State<GoogleAccount>, Json(b): Json<HoldBody>) -> Json<Value> {
    a.hold_mutations(b.hold);
    mutations_json(&a)
}

async fn quota_reset(State(a): State<GoogleAccount>) -> Json<Value> {
    a.store().quota.clear();
    Json(json!({"reset": true}))
}
