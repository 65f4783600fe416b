//! HTTP layer of the simulated People API: routes with Google's verbs and colon-suffixed
//! custom methods (docs/google-people-api.md §1.1, §9.1), bearer / `access_token` auth (§9.1), query validation,
//! quotas (docs/google-people-api.md §9.7), the one-mutation-at-a-time check (§9.7) and the `/token` endpoint
//! (docs/google-people-api.md §9.1). Every operation itself lives in [`super::store`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};

use super::auth::{Access, TokenRequest};
use super::error::{ApiError, json_response};
use super::person::{self, FieldMask, PERSON_FIELDS, PersonInput};
use super::quota::Bucket;
use super::settings::Concurrency;
use super::store::{GroupListParams, ListParams, Store, check_keys};
use super::{GoogleAccount, Shared};
use time::OffsetDateTime;

/// Standard system parameters every method accepts (docs/google-people-api.md §1.2).
const SYSTEM_PARAMS: [&str; 11] = [
    "fields",
    "prettyPrint",
    "alt",
    "quotaUser",
    "access_token",
    "oauth_token",
    "key",
    "$.xgafv",
    "callback",
    "upload_protocol",
    "uploadType",
];

/// Valid values of the repeated `sources` parameter.
const READ_SOURCES: [&str; 4] = [
    "READ_SOURCE_TYPE_PROFILE",
    "READ_SOURCE_TYPE_CONTACT",
    "READ_SOURCE_TYPE_DOMAIN_CONTACT",
    "READ_SOURCE_TYPE_OTHER_CONTACT",
];

/// What one RPC needs: its name (quoted in ErrorInfo), scope and accepted query parameters.
#[derive(Debug, Clone, Copy)]
struct Spec {
    rpc: &'static str,
    access: Access,
    params: &'static [&'static str],
}

macro_rules! spec {
    ($rpc:literal, $access:ident, [$($p:literal),* $(,)?]) => {
        Spec { rpc: $rpc, access: Access::$access, params: &[$($p),*] }
    };
}

const LIST: Spec = spec!(
    "google.people.v1.PeopleService.ListConnections",
    Read,
    [
        "personFields",
        "pageSize",
        "pageToken",
        "sortOrder",
        "requestSyncToken",
        "syncToken",
        "sources",
        "requestMask.includeField"
    ]
);
const GET: Spec = spec!(
    "google.people.v1.PeopleService.GetPerson",
    Read,
    ["personFields", "sources", "requestMask.includeField"]
);
const BATCH_GET: Spec = spec!(
    "google.people.v1.PeopleService.GetPeople",
    Read,
    [
        "resourceNames",
        "personFields",
        "sources",
        "requestMask.includeField"
    ]
);
const SEARCH: Spec = spec!(
    "google.people.v1.PeopleService.SearchContacts",
    Read,
    ["query", "readMask", "pageSize", "sources"]
);
const CREATE: Spec = spec!(
    "google.people.v1.PeopleService.CreateContact",
    Write,
    ["personFields", "sources"]
);
const UPDATE: Spec = spec!(
    "google.people.v1.PeopleService.UpdateContact",
    Write,
    ["updatePersonFields", "personFields", "sources"]
);
const DELETE: Spec = spec!("google.people.v1.PeopleService.DeleteContact", Write, []);
const BATCH_CREATE: Spec = spec!(
    "google.people.v1.PeopleService.BatchCreateContacts",
    Write,
    []
);
const BATCH_UPDATE: Spec = spec!(
    "google.people.v1.PeopleService.BatchUpdateContacts",
    Write,
    []
);
const BATCH_DELETE: Spec = spec!(
    "google.people.v1.PeopleService.BatchDeleteContacts",
    Write,
    []
);
const GROUP_LIST: Spec = spec!(
    "google.people.v1.ContactGroupService.ListContactGroups",
    Read,
    ["pageSize", "pageToken", "syncToken", "groupFields"]
);
const GROUP_BATCH_GET: Spec = spec!(
    "google.people.v1.ContactGroupService.BatchGetContactGroups",
    Read,
    ["resourceNames", "maxMembers", "groupFields"]
);
const GROUP_GET: Spec = spec!(
    "google.people.v1.ContactGroupService.GetContactGroup",
    Read,
    ["maxMembers", "groupFields"]
);
const GROUP_CREATE: Spec = spec!(
    "google.people.v1.ContactGroupService.CreateContactGroup",
    Write,
    []
);
const GROUP_UPDATE: Spec = spec!(
    "google.people.v1.ContactGroupService.UpdateContactGroup",
    Write,
    []
);
const GROUP_DELETE: Spec = spec!(
    "google.people.v1.ContactGroupService.DeleteContactGroup",
    Write,
    ["deleteContacts"]
);
const GROUP_MODIFY: Spec = spec!(
    "google.people.v1.ContactGroupService.ModifyContactGroupMembers",
    Write,
    []
);

/// The People API and token routes of `account`.
pub fn router(account: GoogleAccount) -> Router {
    Router::new()
        .route("/v1/people/me/connections", get(list_connections))
        .route(
            "/v1/people/{id}",
            get(get_person).patch(patch_person).delete(delete_person),
        )
        .route("/v1/people:batchGet", get(batch_get))
        .route("/v1/people:searchContacts", get(search))
        .route("/v1/people:createContact", post(create_contact))
        .route("/v1/people:batchCreateContacts", post(batch_create))
        .route("/v1/people:batchUpdateContacts", post(batch_update))
        .route("/v1/people:batchDeleteContacts", post(batch_delete))
        .route("/v1/contactGroups", get(list_groups).post(create_group))
        .route("/v1/contactGroups:batchGet", get(batch_get_groups))
        .route(
            "/v1/contactGroups/{id}",
            get(get_group).put(update_group).delete(delete_group),
        )
        .route(
            "/v1/contactGroups/{id}/members:modify",
            post(modify_members),
        )
        .route("/token", post(token))
        .fallback(not_found_html)
        .method_not_allowed_fallback(not_found_html)
        .with_state(account)
}

/// Google's front end answers unknown paths (and verbs) with an HTML 404 (docs/google-people-api.md §9.1).
async fn not_found_html(uri: Uri) -> Response {
    let path = uri.path().replace('<', "&lt;").replace('>', "&gt;");
    let body = format!(
        "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error 404 (Not Found)!!1</title>\n  <p><b>404.</b> <ins>That\u{2019}s an error.</ins>\n  <p>The requested URL <code>{path}</code> was not found on this server.  <ins>That\u{2019}s all we know.</ins>\n"
    );
    let mut resp = (StatusCode::NOT_FOUND, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    resp
}

/// The query string and credential of one call.
#[derive(Debug, Default)]
struct Call {
    query: Vec<(String, String)>,
    token: Option<String>,
}

impl Call {
    fn new(uri: &Uri, headers: &HeaderMap) -> Call {
        let query: Vec<(String, String)> = uri
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| rest.trim().to_owned())
            });
        let token = bearer.or_else(|| {
            query
                .iter()
                .find(|(k, _)| k == "access_token" || k == "oauth_token")
                .map(|(_, v)| v.clone())
        });
        Call { query, token }
    }

    /// The last value of `key` (Google takes the last of repeated singular parameters).
    fn get(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated parameter.
    fn all(&self, key: &str) -> Vec<String> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A field mask parameter: repeated values are joined.
    fn mask(&self, key: &str) -> Option<String> {
        let v = self.all(key);
        (!v.is_empty()).then(|| v.join(","))
    }

    fn int(&self, key: &str, proto: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::invalid_argument(format!(
                    "Invalid value at '{proto}' (TYPE_INT32), \"{v}\""
                ))
            }),
        }
    }

    fn bool(&self, key: &str, proto: &str) -> Result<bool, ApiError> {
        match self.get(key).map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(v) => Err(ApiError::invalid_argument(format!(
                "Invalid value at '{proto}' (TYPE_BOOL), \"{v}\""
            ))),
        }
    }
}

/// Mutations in flight; dropping the guard releases the slot.
struct MutationGuard(Arc<Shared>);

impl Drop for MutationGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl GoogleAccount {
    /// Auth, query validation and quota for one call.
    fn begin(&self, spec: &Spec, call: &Call, costs: &[(Bucket, u32)]) -> Result<(), ApiError> {
        let now = self.clock.now();
        let mut store = self.store();
        store
            .auth
            .check(call.token.as_deref(), now, spec.access, spec.rpc)?;
        if let Some((bad, _)) = call.query.iter().find(|(k, _)| {
            !SYSTEM_PARAMS.contains(&k.as_str()) && !spec.params.contains(&k.as_str())
        }) {
            return Err(ApiError::unknown_query_param(bad));
        }
        for (k, v) in &call.query {
            if k == "sources" && !READ_SOURCES.contains(&v.as_str()) {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid value at 'sources[0]' (type.googleapis.com/google.people.v1.ReadSourceType), \"{v}\""
                )));
            }
        }
        if let Some(limits) = store.settings.quotas.clone() {
            store.quota.charge(&limits, costs, now)?;
        }
        Ok(())
    }

    /// Runs a mutation whose checks passed (`prepared`: auth, query, quota, body), one at
    /// a time ([`Self::enter_mutation`]): `apply` gets the store, the checked input and
    /// the clock's time, and its result is the answer.
    async fn mutate<P>(
        &self,
        prepared: Result<P, ApiError>,
        apply: impl FnOnce(&mut Store, P, OffsetDateTime) -> Result<Value, ApiError>,
    ) -> Response {
        let input = match prepared {
            Ok(input) => input,
            Err(e) => return e.into_response(),
        };
        let _guard = match self.enter_mutation().await {
            Ok(guard) => guard,
            Err(e) => return e.into_response(),
        };
        let now = self.clock.now();
        reply(apply(&mut self.store(), input, now))
    }

    /// Enter a mutation: refuse it if another one is in flight and the switch says so
    /// (docs/google-people-api.md §9.7), then wait while mutations are held by the control API.
    async fn enter_mutation(&self) -> Result<MutationGuard, ApiError> {
        let mode = self.store().settings.concurrent_mutations;
        let before = self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = MutationGuard(self.shared.clone());
        if before > 0 {
            match mode {
                Concurrency::Allow => {}
                Concurrency::Aborted => return Err(ApiError::aborted()),
                Concurrency::Unavailable => return Err(ApiError::unavailable()),
            }
        }
        let mut rx = self.shared.hold.subscribe();
        // The sender lives as long as the account, so this only ends when released.
        let _ = rx.wait_for(|held| !*held).await;
        Ok(guard)
    }
}

fn ok(v: Value) -> Response {
    json_response(StatusCode::OK, &v)
}

fn reply(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => ok(v),
        Err(e) => e.into_response(),
    }
}

fn json_body(bytes: &Bytes) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid_argument(format!("Invalid JSON payload received. {e}")))
}

fn person_fields(call: &Call) -> Option<String> {
    call.mask("personFields")
        .or_else(|| call.mask("requestMask.includeField"))
}

/// An optional read mask (create/update responses): all fields when absent.
fn optional_mask(raw: Option<String>, param: &str, doc: &str) -> Result<FieldMask, ApiError> {
    match raw.filter(|r| !r.trim().is_empty()) {
        None => Ok(FieldMask::all()),
        Some(r) => FieldMask::parse(Some(&r), &PERSON_FIELDS, param, doc),
    }
}

/// Split `c123:updateContact` into (`people/c123`, `updateContact`).
fn split_custom(id: &str) -> (String, Option<&str>) {
    match id.split_once(':') {
        Some((id, verb)) => (format!("people/{id}"), Some(verb)),
        None => (format!("people/{id}"), None),
    }
}

// ----- people ------------------------------------------------------------------------

async fn list_connections(
    State(a): State<GoogleAccount>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let call = Call::new(&uri, &headers);
    reply((|| {
        let params = ListParams {
            person_fields: person_fields(&call),
            page_size: call.int("pageSize", "page_size")?,
            page_token: call.get("pageToken").map(str::to_owned),
            sort_order: call
                .get("sortOrder")
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            request_sync_token: call.bool("requestSyncToken", "request_sync_token")?,
            sync_token: call.get("syncToken").map(str::to_owned),
            sources: call.all("sources"),
        };
        let first_full_page = params.sync_token.as_deref().unwrap_or("").is_empty()
            && params.page_token.as_deref().unwrap_or("").is_empty();
        let mut costs = vec![(Bucket::CriticalRead, 1)];
        if first_full_page {
            costs.push((Bucket::FullSync, 1));
        }
        a.begin(&LIST, &call, &costs)?;
        let now = a.clock.now();
        a.store().list_connections(&params, now)
    })())
}

async fn get_person(
    State(a): State<GoogleAccount>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (rn, verb) = split_custom(&id);
    if verb.is_some() {
        return not_found_html(uri).await;
    }
    let call = Call::new(&uri, &headers);
    reply((|| {
        a.begin(&GET, &call, &[(Bucket::CriticalRead, 1)])?;
        a.store().get_person(&rn, person_fields(&call).as_deref())
    })())
}

async fn batch_get(State(a): State<GoogleAccount>, uri: Uri, headers: HeaderMap) -> Response {
    let call = Call::new(&uri, &headers);
    reply((|| {
        a.begin(&BATCH_GET, &call, &[(Bucket::CriticalRead, 1)])?;
        a.store()
            .batch_get(&call.all("resourceNames"), person_fields(&call).as_deref())
    })())
}

async fn search(State(a): State<GoogleAccount>, uri: Uri, headers: HeaderMap) -> Response {
    let call = Call::new(&uri, &headers);
    reply((|| {
        a.begin(&SEARCH, &call, &[(Bucket::CriticalRead, 1)])?;
        let mask = FieldMask::parse(
            call.mask("readMask").as_deref(),
            &PERSON_FIELDS,
            "readMask",
            "people/searchContacts",
        )?;
        let size = call.int("pageSize", "page_size")?;
        let query = call.get("query").unwrap_or("").to_owned();
        let now = a.clock.now();
        a.store().search(&query, &mask, size, now)
    })())
}

async fn create_contact(
    State(a): State<GoogleAccount>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = Call::new(&uri, &headers);
    let prepared = person_write(&a, &CREATE, &call, &body, "people/createContact");
    a.mutate(prepared, |store, (input, mask), now| {
        let rn = store.create_contact(&input, now)?;
        rendered(store, &rn, &mask)
    })
    .await
}

async fn patch_person(
    State(a): State<GoogleAccount>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (rn, verb) = split_custom(&id);
    if verb != Some("updateContact") {
        return not_found_html(uri).await;
    }
    let call = Call::new(&uri, &headers);
    let prepared = person_write(&a, &UPDATE, &call, &body, "people/updateContact");
    let update_fields = call.mask("updatePersonFields");
    a.mutate(prepared, |store, (input, mask), now| {
        store.update_contact(&rn, &input, update_fields.as_deref(), now)?;
        rendered(store, &rn, &mask)
    })
    .await
}

/// Auth, quota and body of a one-contact write (create or update): the person, and the
/// fields of the answer.
fn person_write(
    a: &GoogleAccount,
    spec: &Spec,
    call: &Call,
    body: &Bytes,
    doc: &str,
) -> Result<(PersonInput, FieldMask), ApiError> {
    a.begin(
        spec,
        call,
        &[
            (Bucket::CriticalRead, 1),
            (Bucket::CriticalWrite, 1),
            (Bucket::DailyWrites, 1),
        ],
    )?;
    let input = person::parse_person(&json_body(body)?, "person")?;
    let mask = optional_mask(person_fields(call), "personFields", doc)?;
    Ok((input, mask))
}

/// The live contact `rn` as the answer of a write.
fn rendered(store: &Store, rn: &str, mask: &FieldMask) -> Result<Value, ApiError> {
    let c = store.live(rn).ok_or_else(ApiError::not_found)?;
    Ok(store.render(c, mask, person::RenderOpts::default()))
}

async fn delete_person(
    State(a): State<GoogleAccount>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (rn, verb) = split_custom(&id);
    if verb != Some("deleteContact") {
        return not_found_html(uri).await;
    }
    let call = Call::new(&uri, &headers);
    let prepared = a.begin(&DELETE, &call, &[(Bucket::Write, 1)]);
    a.mutate(prepared, |store, (), now| {
        store.delete_contact(&rn, now).map(|()| json!({}))
    })
    .await
}

/// Resolve the `readMask` of a batch write: 400 when empty unless the switch says the read
/// is skipped (then `None`).
fn batch_read_mask(
    a: &GoogleAccount,
    body: &Value,
    doc: &str,
) -> Result<Option<FieldMask>, ApiError> {
    let raw = body.get("readMask").and_then(Value::as_str).unwrap_or("");
    if raw.trim().is_empty() && a.store().settings.batch_empty_read_mask_skips_read {
        return Ok(None);
    }
    FieldMask::parse(Some(raw), &PERSON_FIELDS, "readMask", doc).map(Some)
}

async fn batch_create(
    State(a): State<GoogleAccount>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = Call::new(&uri, &headers);
    let prepared = (|| {
        // Auth first, then the body; quota is charged once the contact count is known.
        a.begin(&BATCH_CREATE, &call, &[])?;
        let body = json_body(&body)?;
        check_keys(&body, &["contacts", "readMask", "sources"], "")?;
        let mask = batch_read_mask(&a, &body, "people/batchCreateContacts")?;
        let contacts = body
            .get("contacts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let inputs: Vec<Result<PersonInput, ApiError>> = contacts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                check_keys(c, &["contactPerson"], &format!("contacts[{i}]"))?;
                person::parse_person(
                    c.get("contactPerson").unwrap_or(&json!({})),
                    &format!("contacts[{i}].contact_person"),
                )
            })
            .collect();
        charge_batch(&a, inputs.len())?;
        Ok::<_, ApiError>((inputs, mask))
    })();
    a.mutate(prepared, |store, (inputs, mask), now| {
        store.batch_create(&inputs, mask.as_ref(), now)
    })
    .await
}

fn charge_batch(a: &GoogleAccount, n: usize) -> Result<(), ApiError> {
    let now = a.clock.now();
    let mut store = a.store();
    if let Some(limits) = store.settings.quotas.clone() {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        store.quota.charge(
            &limits,
            &[
                (Bucket::CriticalRead, 6),
                (Bucket::CriticalWrite, 6),
                (Bucket::DailyWrites, n),
            ],
            now,
        )?;
    }
    Ok(())
}

async fn batch_update(
    State(a): State<GoogleAccount>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = Call::new(&uri, &headers);
    let prepared = (|| {
        a.begin(&BATCH_UPDATE, &call, &[])?;
        let body = json_body(&body)?;
        check_keys(
            &body,
            &["contacts", "updateMask", "readMask", "sources"],
            "",
        )?;
        let mask = batch_read_mask(&a, &body, "people/batchUpdateContacts")?;
        let contacts = body
            .get("contacts")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let inputs: Vec<(String, Result<PersonInput, ApiError>)> = contacts
            .iter()
            .map(|(rn, p)| {
                (
                    rn.clone(),
                    person::parse_person(p, &format!("contacts[{rn}]")),
                )
            })
            .collect();
        let update_mask = body
            .get("updateMask")
            .and_then(Value::as_str)
            .map(str::to_owned);
        charge_batch(&a, inputs.len())?;
        Ok::<_, ApiError>((inputs, update_mask, mask))
    })();
    a.mutate(prepared, |store, (inputs, update_mask, mask), now| {
        store.batch_update(&inputs, update_mask.as_deref(), mask.as_ref(), now)
    })
    .await
}

fn string_list(body: &Value, key: &str) -> Result<Vec<String>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    ApiError::invalid_argument(format!("Invalid value at '{key}', {v}"))
                })
            })
            .collect(),
        Some(v) => Err(ApiError::invalid_argument(format!(
            "Invalid value at '{key}', {v}"
        ))),
    }
}

async fn batch_delete(
    State(a): State<GoogleAccount>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = Call::new(&uri, &headers);
    let prepared = (|| {
        a.begin(&BATCH_DELETE, &call, &[(Bucket::Write, 10)])?;
        let body = json_body(&body)?;
        check_keys(&body, &["resourceNames"], "")?;
        string_list(&body, "resourceNames")
    })();
    a.mutate(prepared, |store, names, now| {
        store.batch_delete(&names, now)
    })
    .await
}

// ----- contact groups ----------------------------------------------------------------

async fn list_groups(State(a): State<GoogleAccount>, uri: Uri, headers: HeaderMap) -> Response {
    let call = Call::new(&uri, &headers);
    reply((|| {
        a.begin(&GROUP_LIST, &call, &[(Bucket::GroupRead, 1)])?;
        let p = GroupListParams {
            page_size: call.int("pageSize", "page_size")?,
            page_token: call.get("pageToken").map(str::to_owned),
            sync_token: call.get("syncToken").map(str::to_owned),
            group_fields: call.mask("groupFields"),
        };
        let now = a.clock.now();
        a.store().list_groups(&p, now)
    })())
}

async fn batch_get_groups(
    State(a): State<GoogleAccount>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let call = Call::new(&uri, &headers);
    reply((|| {
        a.begin(&GROUP_BATCH_GET, &call, &[(Bucket::GroupRead, 1)])?;
        let max = call.int("maxMembers", "max_members")?;
        a.store().batch_get_groups(
            &call.all("resourceNames"),
            max,
            call.mask("groupFields").as_deref(),
        )
    })())
}

async fn get_group(
    State(a): State<GoogleAccount>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let call = Call::new(&uri, &headers);
    reply((|| {
        a.begin(&GROUP_GET, &call, &[(Bucket::GroupRead, 1)])?;
        let max = call.int("maxMembers", "max_members")?;
        a.store().get_group(
            &format!("contactGroups/{id}"),
            max,
            call.mask("groupFields").as_deref(),
        )
    })())
}

async fn create_group(
    State(a): State<GoogleAccount>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = Call::new(&uri, &headers);
    let prepared = a
        .begin(&GROUP_CREATE, &call, &[(Bucket::Write, 1)])
        .and_then(|()| json_body(&body));
    a.mutate(prepared, |store, body, now| store.create_group(&body, now))
        .await
}

async fn update_group(
    State(a): State<GoogleAccount>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = Call::new(&uri, &headers);
    let prepared = a
        .begin(&GROUP_UPDATE, &call, &[(Bucket::Write, 1)])
        .and_then(|()| json_body(&body));
    a.mutate(prepared, |store, body, now| {
        store.update_group(&format!("contactGroups/{id}"), &body, now)
    })
    .await
}

async fn delete_group(
    State(a): State<GoogleAccount>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let call = Call::new(&uri, &headers);
    let prepared = a
        .begin(&GROUP_DELETE, &call, &[(Bucket::Write, 1)])
        .and_then(|()| call.bool("deleteContacts", "delete_contacts"));
    a.mutate(prepared, |store, delete_contacts, now| {
        store
            .delete_group(&format!("contactGroups/{id}"), delete_contacts, now)
            .map(|()| json!({}))
    })
    .await
}

async fn modify_members(
    State(a): State<GoogleAccount>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = Call::new(&uri, &headers);
    let prepared = (|| {
        a.begin(&GROUP_MODIFY, &call, &[(Bucket::Write, 1)])?;
        let body = json_body(&body)?;
        check_keys(&body, &["resourceNamesToAdd", "resourceNamesToRemove"], "")?;
        Ok::<_, ApiError>((
            string_list(&body, "resourceNamesToAdd")?,
            string_list(&body, "resourceNamesToRemove")?,
        ))
    })();
    a.mutate(prepared, |store, (add, remove), now| {
        store.modify_members(&format!("contactGroups/{id}"), &add, &remove, now)
    })
    .await
}

// ----- OAuth -------------------------------------------------------------------------

/// `POST /token` (form-encoded; client credentials in the form or by HTTP Basic auth).
async fn token(State(a): State<GoogleAccount>, headers: HeaderMap, body: Bytes) -> Response {
    let mut req = TokenRequest::default();
    for (k, v) in url::form_urlencoded::parse(&body) {
        let v = Some(v.into_owned());
        match k.as_ref() {
            "grant_type" => req.grant_type = v,
            "client_id" => req.client_id = v,
            "client_secret" => req.client_secret = v,
            "refresh_token" => req.refresh_token = v,
            _ => {}
        }
    }
    if let Some((id, secret)) = basic_auth(&headers) {
        req.client_id.get_or_insert(id);
        req.client_secret.get_or_insert(secret);
    }
    let now = a.clock.now();
    let result = a.store().oauth_token(&req, now);
    match result {
        Ok(v) => {
            let mut resp = ok(v);
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, no-store, max-age=0, must-revalidate"),
            );
            resp
        }
        Err(e) => e.into_response(),
    }
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}
