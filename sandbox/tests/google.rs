//! Wire-level tests of the simulated Google People account: every behaviour of docs/google-people-api.md §9 of
//! `docs/google-people-api.md` and every error reply, asserted on status, headers and
//! body shape with reqwest against a server on 127.0.0.1.

use std::collections::BTreeSet;

use reqwest::header::{CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Client, Method};
use serde_json::{Value, json};
use tandem_sandbox::google::settings::{
    Concurrency, ExpiredStatus, OverMax, QuotaLimits, SyncExpiryFrom,
};
use tandem_sandbox::google::{self, GoogleSettings};
use tandem_sandbox::{AccountKind, Credentials, Sandbox, SandboxOptions, Sizes};
use time::macros::datetime;

const PEOPLE_FIELDS: &str =
    "metadata,names,emailAddresses,phoneNumbers,memberships,clientData,externalIds";

struct Env {
    sandbox: Sandbox,
    base: String,
    http: Client,
    token: String,
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HeaderMap,
    text: String,
    body: Value,
}

impl Resp {
    fn content_type(&self) -> &str {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Assert the standard Google error envelope and return `error`.
    fn google_error(&self, code: u16, status: &str) -> &Value {
        assert_eq!(self.status, code, "{}", self.text);
        assert_eq!(self.content_type(), "application/json; charset=UTF-8");
        let e = &self.body["error"];
        assert_eq!(e["code"], code, "{}", self.text);
        assert_eq!(e["status"], status, "{}", self.text);
        assert!(e["message"].is_string());
        e
    }

    fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn start(settings: GoogleSettings, contacts: usize) -> Env {
    start_opts(settings, contacts, false).await
}

async fn start_opts(settings: GoogleSettings, contacts: usize, rate_limits: bool) -> Env {
    let options = SandboxOptions {
        seed: 7,
        sizes: Sizes {
            google: contacts,
            ..Sizes::default()
        },
        rate_limits_enabled: rate_limits,
        kinds: vec![AccountKind::GooglePeople],
        start_time: Some(datetime!(2024-06-01 12:00 UTC)),
        google: settings,
        ..SandboxOptions::default()
    };
    let sandbox = Sandbox::start(options).await.expect("sandbox starts");
    let info = sandbox
        .account(AccountKind::GooglePeople)
        .expect("google account")
        .clone();
    let http = Client::new();
    let mut env = Env {
        sandbox,
        base: info.base_url.clone(),
        http,
        token: String::new(),
    };
    env.token = env.refresh(google::REFRESH_TOKEN).await.body["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    env
}

impl Env {
    async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            body,
        }
    }

    async fn get(&self, path: &str) -> Resp {
        self.raw(Method::GET, path, Some(&self.token), None).await
    }

    async fn send(&self, method: Method, path: &str, body: Value) -> Resp {
        self.raw(method, path, Some(&self.token), Some(body)).await
    }

    async fn ctl(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let r = self
            .raw(method, &format!("/_sandbox{path}"), None, body)
            .await;
        assert_eq!(r.status, 200, "control {path}: {}", r.text);
        r.body
    }

    async fn refresh(&self, refresh_token: &str) -> Resp {
        self.token_form(&[
            ("grant_type", "refresh_token"),
            ("client_id", google::CLIENT_ID),
            ("client_secret", google::CLIENT_SECRET),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    async fn token_form(&self, form: &[(&str, &str)]) -> Resp {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let r = self
            .http
            .post(format!("{}/token", self.base))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("token request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        Resp {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    async fn advance(&self, seconds: u64) {
        self.ctl(
            Method::POST,
            "/clock/advance",
            Some(json!({"seconds": seconds})),
        )
        .await;
    }

    async fn settings(&self, patch: Value) {
        self.ctl(Method::PATCH, "/settings", Some(patch)).await;
    }

    async fn list(&self, query: &str) -> Resp {
        self.get(&format!("/v1/people/me/connections?{query}"))
            .await
    }

    /// Page through a full listing; returns (people, nextSyncToken).
    async fn full_sync(&self, fields: &str, page_size: usize) -> (Vec<Value>, Option<String>) {
        let mut people = Vec::new();
        let mut page = String::new();
        for _ in 0..100 {
            let mut q = format!("personFields={fields}&pageSize={page_size}&requestSyncToken=true");
            if !page.is_empty() {
                q.push_str(&format!("&pageToken={}", enc(&page)));
            }
            let r = self.list(&q).await;
            assert_eq!(r.status, 200, "{}", r.text);
            people.extend(
                r.body["connections"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
            match r.body["nextPageToken"].as_str() {
                Some(t) => {
                    assert!(
                        r.body.get("nextSyncToken").is_none(),
                        "sync token only on the last page"
                    );
                    page = t.to_owned();
                }
                None => return (people, r.body["nextSyncToken"].as_str().map(str::to_owned)),
            }
        }
        panic!("listing did not end");
    }

    async fn delta(&self, fields: &str, token: &str) -> Resp {
        self.list(&format!(
            "personFields={fields}&requestSyncToken=true&syncToken={}",
            enc(token)
        ))
        .await
    }

    async fn create(&self, person: Value) -> Value {
        let r = self
            .send(Method::POST, "/v1/people:createContact", person)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body
    }

    async fn person(&self, rn: &str, fields: &str) -> Resp {
        self.get(&format!("/v1/{rn}?personFields={fields}")).await
    }

    async fn update(&self, rn: &str, fields: &str, body: Value) -> Resp {
        self.send(
            Method::PATCH,
            &format!("/v1/{rn}:updateContact?updatePersonFields={fields}"),
            body,
        )
        .await
    }
}

fn ada() -> Value {
    json!({
        "names": [{"givenName": "Ada", "familyName": "Lovelace"}],
        "emailAddresses": [{"value": "ada@example.com", "type": "home"}],
        "phoneNumbers": [{"value": "+44 20 7946 0000", "type": "mobile"}],
        "organizations": [{"name": "Analytical Engines", "title": "Programmer"}],
        "clientData": [{"key": "tandem-uid", "value": "local-42"}],
        "externalIds": [{"value": "fs-1001", "type": "freshsales"}]
    })
}

// ----- docs/google-people-api.md §9.1 transport and authentication ----------------------------------------------

#[tokio::test]
async fn unknown_routes_and_verbs_answer_html_404() {
    let env = start(GoogleSettings::default(), 3).await;
    for (m, path) in [
        (Method::GET, "/v1/nothing"),
        (Method::PUT, "/v1/people:createContact"),
        (Method::GET, "/v1/people/c1:updateContact"),
        (Method::PATCH, "/v1/people/c1:frobnicate"),
    ] {
        let r = env.raw(m, path, Some(&env.token), None).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.content_type(), "text/html; charset=UTF-8");
        assert!(r.text.contains("Error 404 (Not Found)"));
    }
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn missing_unknown_and_expired_tokens_are_401_with_documented_bodies() {
    let env = start(GoogleSettings::default(), 3).await;
    let path = "/v1/people/me/connections?personFields=names";

    let r = env.raw(Method::GET, path, None, None).await;
    let e = r.google_error(401, "UNAUTHENTICATED");
    assert!(
        r.message()
            .starts_with("Request is missing required authentication credential.")
    );
    assert_eq!(e["details"][0]["reason"], "CREDENTIALS_MISSING");
    assert_eq!(
        r.headers[WWW_AUTHENTICATE],
        "Bearer realm=\"https://accounts.google.com/\""
    );

    let r = env.raw(Method::GET, path, Some("ya29.garbage"), None).await;
    let e = r.google_error(401, "UNAUTHENTICATED");
    assert_eq!(
        r.message(),
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
    );
    assert!(e.get("details").is_none());
    assert_eq!(
        r.headers[WWW_AUTHENTICATE],
        "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\""
    );

    // Issued tokens live 3599 s on the sandbox clock.
    assert_eq!(env.get(path).await.status, 200);
    env.advance(3600).await;
    let r = env.get(path).await;
    let e = r.google_error(401, "UNAUTHENTICATED");
    assert_eq!(
        e["details"][0]["@type"],
        "type.googleapis.com/google.rpc.ErrorInfo"
    );
    assert_eq!(e["details"][0]["reason"], "ACCESS_TOKEN_EXPIRED");
    assert_eq!(e["details"][0]["domain"], "googleapis.com");
    assert_eq!(
        e["details"][0]["metadata"]["service"],
        "people.googleapis.com"
    );
    assert_eq!(
        e["details"][0]["metadata"]["method"],
        "google.people.v1.PeopleService.ListConnections"
    );
    assert!(
        r.headers[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn access_token_query_parameter_is_accepted() {
    let env = start(GoogleSettings::default(), 3).await;
    let r = env
        .raw(
            Method::GET,
            &format!(
                "/v1/people/me/connections?personFields=names&access_token={}",
                env.token
            ),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.content_type(), "application/json; charset=UTF-8");
    assert_eq!(r.body["connections"].as_array().unwrap().len(), 3);
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn readonly_scope_reads_but_mutations_are_403() {
    let env = start(GoogleSettings::default(), 3).await;
    let grant = env
        .ctl(
            Method::POST,
            "/tokens/refresh",
            Some(json!({"scope": google::SCOPE_CONTACTS_READONLY})),
        )
        .await;
    let r = env.refresh(grant["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.body["scope"], google::SCOPE_CONTACTS_READONLY);
    let ro = r.body["access_token"].as_str().unwrap();
    let list = env
        .raw(
            Method::GET,
            "/v1/people/me/connections?personFields=names",
            Some(ro),
            None,
        )
        .await;
    assert_eq!(list.status, 200);
    let r = env
        .raw(
            Method::POST,
            "/v1/people:createContact",
            Some(ro),
            Some(ada()),
        )
        .await;
    let e = r.google_error(403, "PERMISSION_DENIED");
    assert_eq!(
        r.message(),
        "Request had insufficient authentication scopes."
    );
    assert_eq!(e["details"][0]["reason"], "ACCESS_TOKEN_SCOPE_INSUFFICIENT");
    assert_eq!(
        e["details"][0]["metadata"]["method"],
        "google.people.v1.PeopleService.CreateContact"
    );
    assert!(
        r.headers[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn token_endpoint_refresh_grant_and_its_errors() {
    let env = start(GoogleSettings::default(), 1).await;
    let r = env.refresh(google::REFRESH_TOKEN).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), "application/json; charset=UTF-8");
    assert_eq!(r.body["expires_in"], 3599);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["scope"], google::SCOPE_CONTACTS);
    assert!(
        r.body["access_token"]
            .as_str()
            .unwrap()
            .starts_with("ya29.")
    );
    assert!(
        r.body.get("refresh_token").is_none(),
        "no new refresh token"
    );

    // Client credentials by HTTP Basic auth work too.
    let basic = env
        .http
        .post(format!("{}/token", env.base))
        .basic_auth(google::CLIENT_ID, Some(google::CLIENT_SECRET))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=refresh_token&refresh_token={}",
            enc(google::REFRESH_TOKEN)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);

    let r = env.refresh("1//unknown").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
    );

    let r = env
        .token_form(&[("grant_type", "password"), ("client_id", google::CLIENT_ID)])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "unsupported_grant_type");

    let r = env
        .token_form(&[
            ("grant_type", "refresh_token"),
            ("client_id", google::CLIENT_ID),
            ("client_secret", "wrong"),
            ("refresh_token", google::REFRESH_TOKEN),
        ])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"], "invalid_client");

    let r = env
        .token_form(&[
            ("grant_type", "refresh_token"),
            ("client_id", google::CLIENT_ID),
            ("client_secret", google::CLIENT_SECRET),
        ])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "invalid_request");

    // Revocation (control API): the refresh grant is invalid_grant, access tokens expire.
    let v = env
        .ctl(Method::POST, "/tokens/revoke", Some(json!({})))
        .await;
    assert_eq!(v["revoked"], 1);
    let r = env.refresh(google::REFRESH_TOKEN).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "invalid_grant");
    let r = env
        .get("/v1/people/me/connections?personFields=names")
        .await;
    assert_eq!(
        r.google_error(401, "UNAUTHENTICATED")["details"][0]["reason"],
        "ACCESS_TOKEN_EXPIRED"
    );
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn control_can_expire_access_tokens_and_mint_new_ones() {
    let env = start(GoogleSettings::default(), 1).await;
    let v = env.ctl(Method::POST, "/tokens/expire", None).await;
    assert!(v["expired"].as_u64().unwrap() >= 1);
    let r = env
        .get("/v1/people/me/connections?personFields=names")
        .await;
    r.google_error(401, "UNAUTHENTICATED");
    let minted = env
        .ctl(Method::POST, "/tokens/access", Some(json!({})))
        .await;
    let r = env
        .raw(
            Method::GET,
            "/v1/people/me/connections?personFields=names",
            minted["access_token"].as_str(),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    // The seeded refresh token still works after the access tokens expired.
    assert_eq!(env.refresh(google::REFRESH_TOKEN).await.status, 200);
    env.sandbox.shutdown().await;
}

// ----- docs/google-people-api.md §9.2 masks and projection ------------------------------------------------------

#[tokio::test]
async fn person_fields_and_read_masks_are_required_and_validated() {
    let env = start(GoogleSettings::default(), 2).await;
    let required = "personFields mask is required. Please specify one or more valid paths. Valid paths are documented at https://developers.google.com/people/api/rest/v1/people/get.";
    let r = env.get("/v1/people/me/connections").await;
    let e = r.google_error(400, "INVALID_ARGUMENT");
    assert_eq!(r.message(), required);
    assert_eq!(e["errors"][0]["reason"], "badRequest");
    assert_eq!(e["errors"][0]["domain"], "global");

    let rn = env.list("personFields=names").await.body["connections"][0]["resourceName"]
        .as_str()
        .unwrap()
        .to_owned();
    env.get(&format!("/v1/{rn}"))
        .await
        .google_error(400, "INVALID_ARGUMENT");
    let r = env
        .get(&format!("/v1/people:batchGet?resourceNames={rn}"))
        .await;
    r.google_error(400, "INVALID_ARGUMENT");
    assert!(r.message().starts_with("personFields mask is required."));

    let r = env
        .get("/v1/people/me/connections?personFields=names,foo")
        .await;
    r.google_error(400, "INVALID_ARGUMENT");
    assert!(
        r.message()
            .starts_with("Invalid personFields mask path: \"foo\".")
    );

    // A `person.` prefix is accepted and stripped.
    let r = env
        .get("/v1/people/me/connections?personFields=person.names")
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body["connections"][0]["names"].is_array());

    let r = env.get("/v1/people:searchContacts?query=a").await;
    r.google_error(400, "INVALID_ARGUMENT");
    assert!(
        r.message()
            .starts_with("readMask is required. Please specify one or more valid paths.")
    );
    let r = env
        .send(
            Method::POST,
            "/v1/people:batchCreateContacts",
            json!({"contacts": [{"contactPerson": ada()}]}),
        )
        .await;
    r.google_error(400, "INVALID_ARGUMENT");
    assert!(r.message().starts_with("readMask is required."));
    let r = env
        .send(
            Method::POST,
            "/v1/people:batchUpdateContacts",
            json!({"contacts": {}, "updateMask": "names"}),
        )
        .await;
    r.google_error(400, "INVALID_ARGUMENT");
    assert!(r.message().starts_with("readMask is required."));

    // Typed query parameters are checked.
    let r = env
        .get(&format!(
            "/v1/{rn}?personFields=names&sources=READ_SOURCE_TYPE_NOPE"
        ))
        .await;
    r.google_error(400, "INVALID_ARGUMENT");
    assert!(r.message().contains("ReadSourceType"));
    let ok = env
        .get(&format!("/v1/{rn}?personFields=names&sources=READ_SOURCE_TYPE_CONTACT&sources=READ_SOURCE_TYPE_PROFILE"))
        .await;
    assert_eq!(ok.status, 200);
    let r = env
        .get("/v1/people/me/connections?personFields=names&requestSyncToken=yes")
        .await;
    r.google_error(400, "INVALID_ARGUMENT");
    assert!(r.message().contains("TYPE_BOOL"));
    let r = env
        .get("/v1/people/me/connections?personFields=names&pageSize=ten")
        .await;
    r.google_error(400, "INVALID_ARGUMENT");
    assert!(r.message().contains("TYPE_INT32"));

    // Unknown query parameters and body fields are refused as by Google's front end.
    let r = env
        .get("/v1/people/me/connections?personFields=names&personfields=names")
        .await;
    r.google_error(400, "INVALID_ARGUMENT");
    assert!(r.message().contains("Cannot bind query parameter"));
    let r = env
        .send(
            Method::POST,
            "/v1/people:createContact",
            json!({"name": [{"givenName": "X"}]}),
        )
        .await;
    let e = r.google_error(400, "INVALID_ARGUMENT");
    assert!(r.message().contains("Unknown name \"name\""));
    assert_eq!(
        e["details"][0]["@type"],
        "type.googleapis.com/google.rpc.BadRequest"
    );
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn responses_are_projected_by_mask_with_output_only_fields_computed() {
    let env = start(GoogleSettings::default(), 0).await;
    let created = env.create(ada()).await;
    let rn = created["resourceName"].as_str().unwrap();

    let r = env.person(rn, "names").await;
    let keys: BTreeSet<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["resourceName", "etag", "names"]));
    let name = &r.body["names"][0];
    assert_eq!(name["displayName"], "Ada Lovelace");
    assert_eq!(name["displayNameLastFirst"], "Lovelace, Ada");
    assert_eq!(name["unstructuredName"], "Ada Lovelace");
    assert_eq!(name["metadata"]["primary"], true);
    assert_eq!(name["metadata"]["source"]["type"], "CONTACT");

    let r = env
        .person(rn, "metadata,phoneNumbers,emailAddresses,birthdays")
        .await;
    assert!(
        r.body.get("birthdays").is_none(),
        "absent fields are omitted, not []"
    );
    assert_eq!(r.body["phoneNumbers"][0]["canonicalForm"], "+442079460000");
    assert_eq!(r.body["phoneNumbers"][0]["formattedType"], "Mobile");
    assert_eq!(r.body["emailAddresses"][0]["formattedType"], "Home");
    let src = &r.body["metadata"]["sources"][0];
    assert_eq!(src["type"], "CONTACT");
    assert!(src["etag"].as_str().unwrap().starts_with('#'));
    assert!(src["updateTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r.body["metadata"]["objectType"], "PERSON");
    env.sandbox.shutdown().await;
}

// ----- docs/google-people-api.md §9.3 identity and etags --------------------------------------------------------

#[tokio::test]
async fn resource_names_and_etags_have_google_shapes_and_move_on_every_mutation() {
    let env = start(GoogleSettings::default(), 0).await;
    let created = env.create(ada()).await;
    let rn = created["resourceName"].as_str().unwrap().to_owned();
    let digits = rn.strip_prefix("people/c").unwrap();
    assert_eq!(digits.len(), 19);
    assert!(digits.chars().all(|c| c.is_ascii_digit()));
    let meta = env.person(&rn, "metadata").await.body;
    let id = meta["metadata"]["sources"][0]["id"].as_str().unwrap();
    assert_eq!(id.len(), 16);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(meta["etag"].as_str().unwrap().starts_with('%'));

    let snapshot = |v: &Value| {
        (
            v["etag"].as_str().unwrap().to_owned(),
            v["metadata"]["sources"][0]["etag"]
                .as_str()
                .unwrap()
                .to_owned(),
            v["metadata"]["sources"][0]["updateTime"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
    };
    let mut last = snapshot(&meta);

    // updateContact
    env.advance(5).await;
    let r = env
        .update(
            &rn,
            "names",
            json!({"etag": last.0, "names": [{"givenName": "Augusta"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let now = snapshot(&env.person(&rn, "metadata").await.body);
    assert!(now.0 != last.0 && now.1 != last.1 && now.2 != last.2);
    last = now;

    // members:modify moves the etag too (docs/google-people-api.md §2.3).
    env.advance(5).await;
    let r = env
        .send(
            Method::POST,
            "/v1/contactGroups/starred/members:modify",
            json!({"resourceNamesToAdd": [rn]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let now = snapshot(&env.person(&rn, "metadata").await.body);
    assert!(now.0 != last.0 && now.1 != last.1 && now.2 != last.2);
    last = now;

    // A user edit in the app (control API) moves them as well.
    env.advance(5).await;
    let id = rn.strip_prefix("people/").unwrap();
    env.ctl(
        Method::PATCH,
        &format!("/people/{id}"),
        Some(json!({"organizations": [{"name": "Babbage & Co"}]})),
    )
    .await;
    let now = snapshot(&env.person(&rn, "metadata").await.body);
    assert!(now.0 != last.0 && now.1 != last.1 && now.2 != last.2);
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn person_etag_varies_by_mask_and_any_mask_etag_updates() {
    let env = start(GoogleSettings::default(), 0).await;
    let rn = env.create(ada()).await["resourceName"]
        .as_str()
        .unwrap()
        .to_owned();
    let narrow = env.person(&rn, "names").await.body["etag"]
        .as_str()
        .unwrap()
        .to_owned();
    let wide = env.person(&rn, "names,emailAddresses").await.body["etag"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(narrow, wide);
    // An etag read with a narrower mask is accepted (docs/google-people-api.md §2.3, n8n).
    let r = env
        .update(
            &rn,
            "emailAddresses",
            json!({"etag": narrow, "emailAddresses": [{"value": "a@b.example"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // With the switch off, etags no longer depend on the mask.
    env.settings(json!({"etag_varies_by_mask": false})).await;
    let a = env.person(&rn, "names").await.body["etag"].clone();
    let b = env.person(&rn, "names,emailAddresses").await.body["etag"].clone();
    assert_eq!(a, b);
    env.sandbox.shutdown().await;
}

// ----- docs/google-people-api.md §9.4 connections.list ----------------------------------------------------------

#[tokio::test]
async fn pagination_defaults_limits_totals_and_sort_order() {
    let env = start(GoogleSettings::default(), 150).await;
    let r = env.list("personFields=names,metadata").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["connections"].as_array().unwrap().len(),
        100,
        "default pageSize"
    );
    assert_eq!(r.body["totalItems"], 150);
    assert_eq!(r.body["totalPeople"], 150);
    assert!(r.body.get("nextSyncToken").is_none(), "not requested");
    let token = r.body["nextPageToken"].as_str().unwrap().to_owned();

    // Default order: last modified ascending.
    let times: Vec<String> = r.body["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["metadata"]["sources"][0]["updateTime"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);

    let r2 = env
        .list(&format!(
            "personFields=names,metadata&pageToken={}",
            enc(&token)
        ))
        .await;
    assert_eq!(r2.body["connections"].as_array().unwrap().len(), 50);
    assert_eq!(r2.body["totalItems"], 150, "totals on every page");
    assert!(r2.body.get("nextPageToken").is_none());

    // The page token is bound to the other parameters.
    for q in [
        format!("personFields=names&pageToken={}", enc(&token)),
        format!(
            "personFields=names,metadata&pageSize=10&pageToken={}",
            enc(&token)
        ),
        format!(
            "personFields=names,metadata&sortOrder=LAST_NAME_ASCENDING&pageToken={}",
            enc(&token)
        ),
        "personFields=names&pageToken=garbage".to_owned(),
    ] {
        let r = env.list(&q).await;
        r.google_error(400, "INVALID_ARGUMENT");
        assert_eq!(r.message(), "Request contains an invalid argument.");
    }

    // pageSize above 1000 is clamped by default; negative is refused.
    let r = env.list("personFields=names&pageSize=5000").await;
    assert_eq!(r.body["connections"].as_array().unwrap().len(), 150);
    env.list("personFields=names&pageSize=-1")
        .await
        .google_error(400, "INVALID_ARGUMENT");
    env.settings(json!({"page_size_over_max": "reject"})).await;
    env.list("personFields=names&pageSize=1001")
        .await
        .google_error(400, "INVALID_ARGUMENT");
    assert_eq!(
        env.list("personFields=names&pageSize=1000").await.status,
        200
    );

    // Other sort orders.
    let r = env
        .list("personFields=names&pageSize=1000&sortOrder=FIRST_NAME_ASCENDING")
        .await;
    let names: Vec<String> = r.body["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["names"][0]["givenName"]
                .as_str()
                .unwrap_or("")
                .to_lowercase()
        })
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    env.list("personFields=names&sortOrder=RANDOM")
        .await
        .google_error(400, "INVALID_ARGUMENT");
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn sync_tokens_deliver_changes_and_tombstones() {
    let env = start(GoogleSettings::default(), 30).await;
    let (people, token) = env.full_sync(PEOPLE_FIELDS, 7).await;
    assert_eq!(people.len(), 30);
    let token = token.expect("nextSyncToken on the last page");

    // Nothing changed: exactly {"nextSyncToken": …}, no connections key, no totals.
    let idle = env.delta(PEOPLE_FIELDS, &token).await;
    assert_eq!(idle.status, 200);
    let keys: Vec<&String> = idle.body.as_object().unwrap().keys().collect();
    assert_eq!(keys, vec!["nextSyncToken"]);
    let token = idle.body["nextSyncToken"].as_str().unwrap().to_owned();

    // Change one, delete one, create one.
    let changed = people[3]["resourceName"].as_str().unwrap().to_owned();
    let deleted = people[4]["resourceName"].as_str().unwrap().to_owned();
    let etag = people[3]["etag"].as_str().unwrap();
    assert_eq!(
        env.update(
            &changed,
            "names",
            json!({"etag": etag, "names": [{"givenName": "Changed"}]})
        )
        .await
        .status,
        200
    );
    let r = env
        .raw(
            Method::DELETE,
            &format!("/v1/{deleted}:deleteContact"),
            Some(&env.token),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({}));
    let created = env.create(ada()).await["resourceName"]
        .as_str()
        .unwrap()
        .to_owned();

    let d = env.delta(PEOPLE_FIELDS, &token).await;
    assert_eq!(d.status, 200, "{}", d.text);
    let conns = d.body["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 3);
    assert_eq!(d.body["totalItems"], 3);
    assert_eq!(d.body["totalPeople"], 3);
    let by_name = |rn: &str| {
        conns
            .iter()
            .find(|p| p["resourceName"] == rn)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name(&changed)["names"][0]["givenName"], "Changed");
    assert_eq!(by_name(&created)["clientData"][0]["value"], "local-42");
    let tomb = by_name(&deleted);
    let keys: BTreeSet<&str> = tomb
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["resourceName", "etag", "metadata"]));
    assert_eq!(tomb["metadata"]["deleted"], true);
    assert_eq!(tomb["metadata"]["sources"][0]["type"], "CONTACT");
    assert!(tomb["metadata"]["sources"][0]["id"].is_string());
    let next = d.body["nextSyncToken"].as_str().unwrap().to_owned();

    // A full listing never shows tombstones.
    let (all, _) = env.full_sync(PEOPLE_FIELDS, 1000).await;
    assert_eq!(all.len(), 30);
    assert!(all.iter().all(|p| p["resourceName"] != deleted.as_str()));

    // Lenient by default: an incremental call without requestSyncToken still gets a token;
    // strict mode gives one only when requested (docs/google-people-api.md §10 #3).
    let q = format!("personFields={PEOPLE_FIELDS}&syncToken={}", enc(&next));
    assert!(env.list(&q).await.body["nextSyncToken"].is_string());
    env.settings(json!({"strict_request_sync_token": true}))
        .await;
    assert!(env.list(&q).await.body.get("nextSyncToken").is_none());
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn incremental_pages_keep_the_sync_token_for_the_last_page() {
    let env = start(GoogleSettings::default(), 10).await;
    let (people, token) = env.full_sync(PEOPLE_FIELDS, 1000).await;
    let token = token.unwrap();
    for p in &people[..5] {
        let rn = p["resourceName"].as_str().unwrap();
        env.ctl(
            Method::PATCH,
            &format!("/people/{}", rn.strip_prefix("people/").unwrap()),
            Some(json!({"nicknames": [{"value": "nick"}]})),
        )
        .await;
    }
    let q = format!(
        "personFields={PEOPLE_FIELDS}&requestSyncToken=true&pageSize=2&syncToken={}",
        enc(&token)
    );
    let mut seen = 0;
    let mut page: Option<String> = None;
    for _ in 0..10 {
        let url = match &page {
            Some(p) => format!("{q}&pageToken={}", enc(p)),
            None => q.clone(),
        };
        let r = env.list(&url).await;
        assert_eq!(r.status, 200, "{}", r.text);
        seen += r.body["connections"].as_array().map_or(0, Vec::len);
        assert_eq!(r.body["totalItems"], 5);
        match r.body["nextPageToken"].as_str() {
            Some(t) => {
                assert!(r.body.get("nextSyncToken").is_none());
                page = Some(t.to_owned());
            }
            None => {
                assert!(r.body["nextSyncToken"].is_string());
                break;
            }
        }
    }
    assert_eq!(seen, 5);
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn expired_malformed_and_rebound_sync_tokens_answer_as_documented() {
    let env = start(GoogleSettings::default(), 3).await;
    let (_, token) = env.full_sync("names", 100).await;
    let token = token.unwrap();

    // Different parameters with the token.
    let r = env
        .list(&format!(
            "personFields=names,emailAddresses&requestSyncToken=true&syncToken={}",
            enc(&token)
        ))
        .await;
    r.google_error(400, "INVALID_ARGUMENT");
    assert_eq!(r.message(), "Request contains an invalid argument.");
    // Malformed.
    let r = env.delta("names", "CNDxnot-a-token").await;
    r.google_error(400, "INVALID_ARGUMENT");
    assert_eq!(r.message(), "Request contains an invalid argument.");

    // Still valid after 6 days, expired after 7 (from the full sync).
    env.advance(6 * 86_400).await;
    let mut fresh = env.refresh(google::REFRESH_TOKEN).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let delta = |tok: String, access: String| {
        let env = &env;
        async move {
            env.raw(
                Method::GET,
                &format!("/v1/people/me/connections?personFields=names&requestSyncToken=true&syncToken={}", enc(&tok)),
                Some(&access),
                None,
            )
            .await
        }
    };
    let r = delta(token.clone(), fresh.clone()).await;
    assert_eq!(r.status, 200);
    let newer = r.body["nextSyncToken"].as_str().unwrap().to_owned();
    env.advance(86_400 + 1).await;
    fresh = env.refresh(google::REFRESH_TOKEN).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for t in [token.clone(), newer] {
        let r = delta(t, fresh.clone()).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.content_type(), "application/json; charset=UTF-8");
        assert_eq!(
            r.body,
            json!({"error": {
                "code": 400,
                "message": "Sync token is expired. Clear local cache and retry call without the sync token.",
                "status": "FAILED_PRECONDITION",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                             "reason": "EXPIRED_SYNC_TOKEN", "domain": "people.googleapis.com"}]
            }})
        );
    }
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn sync_token_expiry_switches_and_control_hook() {
    let env = start(
        GoogleSettings {
            sync_token_expiry_from: SyncExpiryFrom::Issue,
            expired_sync_token_http: 410,
            expired_sync_token_status: ExpiredStatus::InvalidArgument,
            sync_token_ttl_secs: 100,
            ..GoogleSettings::default()
        },
        3,
    )
    .await;
    let (_, token) = env.full_sync("names", 100).await;
    let token = token.unwrap();
    // Counting from issue: a chain of incremental calls keeps going past the TTL.
    env.advance(60).await;
    let t2 = env.delta("names", &token).await.body["nextSyncToken"]
        .as_str()
        .unwrap()
        .to_owned();
    env.advance(60).await;
    let r = env.delta("names", &token).await;
    let e = r.google_error(410, "INVALID_ARGUMENT");
    assert_eq!(e["details"][0]["reason"], "EXPIRED_SYNC_TOKEN");
    let t3 = env.delta("names", &t2).await;
    assert_eq!(t3.status, 200);
    let t3 = t3.body["nextSyncToken"].as_str().unwrap().to_owned();

    // The control API expires every token issued so far.
    let v = env.ctl(Method::POST, "/sync-tokens/expire", None).await;
    assert_eq!(v["generation"], 1);
    let r = env.delta("names", &t3).await;
    assert_eq!(
        r.google_error(410, "INVALID_ARGUMENT")["details"][0]["reason"],
        "EXPIRED_SYNC_TOKEN"
    );
    // A new full sync gets a working token.
    let (_, t4) = env.full_sync("names", 100).await;
    assert_eq!(env.delta("names", &t4.unwrap()).await.status, 200);
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn propagation_lag_delays_deltas_but_not_get() {
    let env = start(
        GoogleSettings {
            propagation_lag_secs: 10,
            ..GoogleSettings::default()
        },
        2,
    )
    .await;
    let (_, token) = env.full_sync("names", 100).await;
    let token = token.unwrap();
    let rn = env.create(ada()).await["resourceName"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        env.person(&rn, "names").await.status,
        200,
        "read-your-writes on get"
    );
    let d = env.delta("names", &token).await;
    assert!(
        d.body.get("connections").is_none(),
        "not visible yet: {}",
        d.text
    );
    let token = d.body["nextSyncToken"].as_str().unwrap().to_owned();
    env.advance(11).await;
    let d = env.delta("names", &token).await;
    assert_eq!(d.body["connections"][0]["resourceName"], rn.as_str());
    env.sandbox.shutdown().await;
}

// ----- docs/google-people-api.md §9.5 writes --------------------------------------------------------------------

#[tokio::test]
async fn create_contact_validates_and_defaults() {
    let env = start(GoogleSettings::default(), 0).await;
    let r = env
        .send(
            Method::POST,
            "/v1/people:createContact",
            json!({"names": [{"givenName": "A"}, {"givenName": "B"}]}),
        )
        .await;
    r.google_error(400, "INVALID_ARGUMENT");
    for singleton in ["birthdays", "genders", "biographies"] {
        let body = json!({singleton: [{"value": "x"}, {"value": "y"}]});
        let body = if singleton == "birthdays" {
            json!({"birthdays": [{"text": "1"}, {"text": "2"}]})
        } else {
            body
        };
        env.send(Method::POST, "/v1/people:createContact", body)
            .await
            .google_error(400, "INVALID_ARGUMENT");
    }

    let mut body = ada();
    body["resourceName"] = json!("people/c1");
    body["etag"] = json!("%bogus");
    body["metadata"] = json!({"sources": [{"type": "CONTACT", "id": "1"}]});
    body["names"][0]["displayName"] = json!("ignored");
    let created = env.create(body).await;
    let rn = created["resourceName"].as_str().unwrap();
    assert_ne!(rn, "people/c1");
    assert_ne!(created["etag"], "%bogus");
    assert_eq!(created["names"][0]["displayName"], "Ada Lovelace");
    assert_eq!(
        created["memberships"][0]["contactGroupMembership"]["contactGroupResourceName"],
        "contactGroups/myContacts"
    );
    // clientData and externalIds round-trip (connectors' idempotency markers).
    let got = env.person(rn, "clientData,externalIds").await.body;
    assert_eq!(got["clientData"][0]["key"], "tandem-uid");
    assert_eq!(got["clientData"][0]["value"], "local-42");
    assert_eq!(got["externalIds"][0]["value"], "fs-1001");
    assert_eq!(got["externalIds"][0]["type"], "freshsales");

    // personFields on create restricts the reply.
    let r = env
        .send(
            Method::POST,
            "/v1/people:createContact?personFields=names",
            ada(),
        )
        .await;
    let keys: BTreeSet<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["resourceName", "etag", "names"]));

    // A user group given at creation replaces the myContacts default.
    let g = env
        .send(
            Method::POST,
            "/v1/contactGroups",
            json!({"contactGroup": {"name": "VIP"}}),
        )
        .await
        .body;
    let r = env
        .send(
            Method::POST,
            "/v1/people:createContact?personFields=memberships",
            json!({"memberships": [{"contactGroupMembership": {"contactGroupResourceName": g["resourceName"]}}]}),
        )
        .await;
    assert_eq!(r.body["memberships"].as_array().unwrap().len(), 1);
    // An unknown group (e.g. copied from another account) is 404.
    let r = env
        .send(
            Method::POST,
            "/v1/people:createContact",
            json!({"memberships": [{"contactGroupMembership": {"contactGroupResourceName": "contactGroups/0123456789abcdef"}}]}),
        )
        .await;
    r.google_error(404, "NOT_FOUND");
    assert_eq!(r.message(), "Requested entity was not found.");
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn update_contact_masks_etags_and_errors() {
    let env = start(GoogleSettings::default(), 0).await;
    let created = env.create(ada()).await;
    let rn = created["resourceName"].as_str().unwrap().to_owned();
    let etag = created["etag"].as_str().unwrap().to_owned();

    // Missing / invalid updatePersonFields.
    let r = env
        .send(
            Method::PATCH,
            &format!("/v1/{rn}:updateContact"),
            json!({"etag": etag}),
        )
        .await;
    r.google_error(400, "INVALID_ARGUMENT");
    assert!(
        r.message()
            .starts_with("updatePersonFields mask is required.")
    );
    let r = env.update(&rn, "photos", json!({"etag": etag})).await;
    r.google_error(400, "INVALID_ARGUMENT");
    assert!(
        r.message()
            .starts_with("Invalid updatePersonFields mask path: \"photos\".")
    );

    // No etag.
    let r = env
        .update(&rn, "names", json!({"names": [{"givenName": "X"}]}))
        .await;
    r.google_error(400, "INVALID_ARGUMENT");
    assert_eq!(
        r.message(),
        "Request must set person.etag or person.metadata.sources.etag for the source that is being updated."
    );

    // Wholesale replacement; a named field missing from the body is cleared.
    let r = env
        .update(
            &rn,
            "phoneNumbers,organizations",
            json!({"etag": etag, "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["phoneNumbers"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["phoneNumbers"][0]["value"], "+1 555 0100");
    assert!(r.body.get("organizations").is_none(), "cleared");
    assert_eq!(
        r.body["emailAddresses"][0]["value"], "ada@example.com",
        "untouched"
    );
    let newer = r.body["etag"].as_str().unwrap().to_owned();

    // The old etag is now stale: the documented 400 FAILED_PRECONDITION.
    let r = env
        .update(
            &rn,
            "names",
            json!({"etag": etag, "names": [{"givenName": "X"}]}),
        )
        .await;
    assert_eq!(
        r.body,
        json!({"error": {
            "code": 400,
            "message": "Request person.etag is different than the current person.etag. Clear local cache and get the latest person.",
            "status": "FAILED_PRECONDITION"
        }})
    );
    assert_eq!(r.status, 400);

    // The CONTACT source etag is accepted instead of the person etag.
    let src = env.person(&rn, "metadata").await.body["metadata"]["sources"][0]["etag"].clone();
    let r = env
        .update(
            &rn,
            "names",
            json!({"metadata": {"sources": [{"type": "CONTACT", "etag": src}]}, "names": [{"givenName": "Src"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let newer2 = r.body["etag"].as_str().unwrap().to_owned();
    assert_ne!(newer, newer2);

    // Memberships may not end empty.
    let r = env
        .update(
            &rn,
            "memberships",
            json!({"etag": newer2, "memberships": []}),
        )
        .await;
    r.google_error(400, "INVALID_ARGUMENT");
    // Deprecated system groups cannot gain members.
    let r = env
        .update(
            &rn,
            "memberships",
            json!({"etag": newer2, "memberships": [{"contactGroupMembership": {"contactGroupResourceName": "contactGroups/friends"}}]}),
        )
        .await;
    r.google_error(400, "INVALID_ARGUMENT");

    // Unknown person.
    let r = env
        .update(
            "people/c1234567890123456789",
            "names",
            json!({"etag": newer2}),
        )
        .await;
    r.google_error(404, "NOT_FOUND");
    assert_eq!(r.message(), "Requested entity was not found.");
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn delete_contact_and_get_of_deleted_is_404() {
    let env = start(GoogleSettings::default(), 0).await;
    let rn = env.create(ada()).await["resourceName"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/{rn}:deleteContact");
    let r = env.raw(Method::DELETE, &path, Some(&env.token), None).await;
    assert_eq!((r.status, r.body.clone()), (200, json!({})));
    let r = env.raw(Method::DELETE, &path, Some(&env.token), None).await;
    r.google_error(404, "NOT_FOUND");
    let r = env.person(&rn, "names").await;
    r.google_error(404, "NOT_FOUND");
    assert_eq!(r.message(), "Requested entity was not found.");
    // The state keeps the tombstone.
    let state = env.ctl(Method::GET, "/state", None).await;
    let p = state["people"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["resourceName"] == rn.as_str())
        .unwrap()
        .clone();
    assert_eq!(p["deleted"], true);
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn people_me_is_the_signed_in_profile() {
    let env = start(GoogleSettings::default(), 0).await;
    let r = env
        .get("/v1/people/me?personFields=names,emailAddresses,metadata")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["resourceName"],
        format!("people/{}", google::ACCOUNT_ID)
    );
    assert_eq!(r.body["emailAddresses"][0]["value"], google::ACCOUNT_EMAIL);
    assert_eq!(r.body["metadata"]["sources"][0]["type"], "PROFILE");
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn batch_get_limits_and_per_item_status() {
    let env = start(GoogleSettings::default(), 3).await;
    let people = env.list("personFields=names").await.body["connections"].clone();
    let a = people[0]["resourceName"].as_str().unwrap();
    let r = env
        .get(&format!("/v1/people:batchGet?personFields=names&resourceNames={a}&resourceNames=people/c1111111111111111111"))
        .await;
    assert_eq!(r.status, 200);
    let resp = r.body["responses"].as_array().unwrap();
    assert_eq!(resp[0]["requestedResourceName"], a);
    assert_eq!(resp[0]["httpStatusCode"], 200);
    assert_eq!(resp[0]["status"], json!({}));
    assert!(resp[0]["person"]["names"].is_array());
    assert_eq!(resp[1]["httpStatusCode"], 404);
    assert_eq!(resp[1]["status"]["code"], 5);
    assert!(resp[1].get("person").is_none());

    let many: String = (0..201)
        .map(|i| format!("&resourceNames=people/c{i}"))
        .collect();
    let r = env
        .get(&format!("/v1/people:batchGet?personFields=names{many}"))
        .await;
    r.google_error(400, "INVALID_ARGUMENT");
    let ok: String = (0..200)
        .map(|i| format!("&resourceNames=people/c{i}"))
        .collect();
    assert_eq!(
        env.get(&format!("/v1/people:batchGet?personFields=names{ok}"))
            .await
            .status,
        200
    );
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn batch_create_update_delete_with_limits() {
    let env = start(GoogleSettings::default(), 0).await;
    let contacts: Vec<Value> = (0..3)
        .map(|i| json!({"contactPerson": {"names": [{"givenName": format!("P{i}")}], "clientData": [{"key": "k", "value": i.to_string()}]}}))
        .collect();
    let r = env
        .send(
            Method::POST,
            "/v1/people:batchCreateContacts",
            json!({"contacts": contacts, "readMask": "names,clientData"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let created = r.body["createdPeople"].as_array().unwrap().clone();
    assert_eq!(created.len(), 3);
    assert_eq!(created[0]["httpStatusCode"], 200);
    assert_eq!(created[0]["status"], json!({}));
    assert_eq!(created[2]["person"]["clientData"][0]["value"], "2");

    let too_many: Vec<Value> = (0..201).map(|_| json!({"contactPerson": {}})).collect();
    let r = env
        .send(
            Method::POST,
            "/v1/people:batchCreateContacts",
            json!({"contacts": too_many, "readMask": "names"}),
        )
        .await;
    r.google_error(400, "INVALID_ARGUMENT");

    // Atomic by default: one bad item (two names) fails the batch and nothing is written.
    let before = env.list("personFields=names").await.body["totalItems"].clone();
    let r = env
        .send(
            Method::POST,
            "/v1/people:batchCreateContacts",
            json!({"contacts": [{"contactPerson": {"names": [{"givenName": "ok"}]}},
                                {"contactPerson": {"names": [{"givenName": "a"}, {"givenName": "b"}]}}],
                   "readMask": "names"}),
        )
        .await;
    r.google_error(400, "INVALID_ARGUMENT");
    assert!(r.message().starts_with("contacts[1]"));
    assert_eq!(
        env.list("personFields=names").await.body["totalItems"],
        before
    );

    // batchUpdate: keyed by resource name, etag per contact.
    let rn0 = created[0]["person"]["resourceName"]
        .as_str()
        .unwrap()
        .to_owned();
    let rn1 = created[1]["person"]["resourceName"]
        .as_str()
        .unwrap()
        .to_owned();
    let e0 = created[0]["person"]["etag"].as_str().unwrap().to_owned();
    let e1 = created[1]["person"]["etag"].as_str().unwrap().to_owned();
    let r = env
        .send(
            Method::POST,
            "/v1/people:batchUpdateContacts",
            json!({"contacts": {rn0.clone(): {"etag": e0, "names": [{"givenName": "U0"}]},
                                rn1.clone(): {"etag": e1, "names": [{"givenName": "U1"}]}},
                   "updateMask": "names", "readMask": "names"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["updateResult"][&rn0]["person"]["names"][0]["givenName"],
        "U0"
    );
    assert_eq!(r.body["updateResult"][&rn1]["httpStatusCode"], 200);

    // A stale etag in the batch: 400 FAILED_PRECONDITION, nothing applied.
    let fresh1 = r.body["updateResult"][&rn1]["person"]["etag"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = env
        .send(
            Method::POST,
            "/v1/people:batchUpdateContacts",
            json!({"contacts": {rn0.clone(): {"etag": e0_stale(&created), "names": [{"givenName": "V0"}]},
                                rn1.clone(): {"etag": fresh1.clone(), "names": [{"givenName": "V1"}]}},
                   "updateMask": "names", "readMask": "names"}),
        )
        .await;
    r.google_error(400, "FAILED_PRECONDITION");
    assert!(
        r.message()
            .contains("Request person.etag is different than the current person.etag.")
    );
    assert_eq!(
        env.person(&rn1, "names").await.body["names"][0]["givenName"],
        "U1"
    );

    // Non-atomic switch: the good item is applied, the bad one reported in place.
    env.settings(json!({"batch_atomic": false})).await;
    let r = env
        .send(
            Method::POST,
            "/v1/people:batchUpdateContacts",
            json!({"contacts": {rn0.clone(): {"etag": e0_stale(&created), "names": [{"givenName": "V0"}]},
                                rn1.clone(): {"etag": fresh1, "names": [{"givenName": "V1"}]}},
                   "updateMask": "names", "readMask": "names"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["updateResult"][&rn0]["httpStatusCode"], 400);
    assert_eq!(r.body["updateResult"][&rn0]["status"]["code"], 9);
    assert_eq!(
        r.body["updateResult"][&rn1]["person"]["names"][0]["givenName"],
        "V1"
    );
    env.settings(json!({"batch_atomic": true})).await;

    // batchDelete: ≤500 names, {} on success.
    let too_many: Vec<String> = (0..501).map(|i| format!("people/c{i}")).collect();
    env.send(
        Method::POST,
        "/v1/people:batchDeleteContacts",
        json!({"resourceNames": too_many}),
    )
    .await
    .google_error(400, "INVALID_ARGUMENT");
    let r = env
        .send(
            Method::POST,
            "/v1/people:batchDeleteContacts",
            json!({"resourceNames": [rn0, rn1]}),
        )
        .await;
    assert_eq!((r.status, r.body.clone()), (200, json!({})));
    assert_eq!(env.list("personFields=names").await.body["totalItems"], 1);
    env.sandbox.shutdown().await;
}

fn e0_stale(created: &[Value]) -> String {
    created[0]["person"]["etag"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn batch_create_with_empty_read_mask_switch_skips_the_read() {
    let env = start(
        GoogleSettings {
            batch_empty_read_mask_skips_read: true,
            ..GoogleSettings::default()
        },
        0,
    )
    .await;
    let r = env
        .send(
            Method::POST,
            "/v1/people:batchCreateContacts",
            json!({"contacts": [{"contactPerson": {"names": [{"givenName": "Lost"}]}}], "readMask": ""}),
        )
        .await;
    assert_eq!((r.status, r.body.clone()), (200, json!({})));
    assert_eq!(env.list("personFields=names").await.body["totalItems"], 1);
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn search_needs_a_warm_up_and_matches_prefix_phrases() {
    let env = start(GoogleSettings::default(), 0).await;
    env.create(ada()).await;
    for i in 0..35 {
        env.create(json!({"names": [{"givenName": format!("Zed{i}"), "familyName": "Many"}]}))
            .await;
    }
    let search = |q: &str| format!("/v1/people:searchContacts?readMask=names&query={}", enc(q));
    // Cold cache: nothing found until an empty-query warm-up.
    let r = env.get(&search("ada")).await;
    assert_eq!((r.status, r.body.clone()), (200, json!({})));
    assert_eq!(env.get(&search("")).await.body, json!({}));
    let r = env.get(&search("ada")).await;
    assert_eq!(
        r.body["results"][0]["person"]["names"][0]["givenName"],
        "Ada"
    );
    for q in ["ADA LOV", "lovelace", "ada@example", "analytical"] {
        assert_eq!(
            env.get(&search(q)).await.body["results"]
                .as_array()
                .map(Vec::len),
            Some(1),
            "{q}"
        );
    }
    assert_eq!(
        env.get(&search("da lov")).await.body,
        json!({}),
        "not a word prefix"
    );
    // pageSize defaults to 10 and is capped at 30.
    assert_eq!(
        env.get(&search("many")).await.body["results"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    let r = env.get(&format!("{}&pageSize=100", search("many"))).await;
    assert_eq!(r.body["results"].as_array().unwrap().len(), 30);
    // Contacts created after the warm-up are not found until the next one.
    env.create(json!({"names": [{"givenName": "Late"}]})).await;
    assert_eq!(env.get(&search("late")).await.body, json!({}));
    env.get(&search("")).await;
    assert!(env.get(&search("late")).await.body["results"].is_array());
    // Without the warm-up model, search sees the current state.
    env.settings(json!({"search_requires_warmup": false})).await;
    env.create(json!({"names": [{"givenName": "Instant"}]}))
        .await;
    assert!(env.get(&search("inst")).await.body["results"].is_array());
    env.sandbox.shutdown().await;
}

// ----- docs/google-people-api.md §9.6 contact groups -----------------------------------------------------------

#[tokio::test]
async fn contact_groups_list_get_create_update_delete() {
    let env = start(GoogleSettings::default(), 20).await;
    let r = env.get("/v1/contactGroups").await;
    assert_eq!(r.status, 200);
    let groups = r.body["contactGroups"].as_array().unwrap();
    let system: BTreeSet<&str> = groups
        .iter()
        .filter(|g| g["groupType"] == "SYSTEM_CONTACT_GROUP")
        .map(|g| g["resourceName"].as_str().unwrap())
        .collect();
    for id in [
        "myContacts",
        "starred",
        "all",
        "friends",
        "family",
        "coworkers",
        "chatBuddies",
        "blocked",
    ] {
        assert!(
            system.contains(format!("contactGroups/{id}").as_str()),
            "{id}"
        );
    }
    let my = groups
        .iter()
        .find(|g| g["resourceName"] == "contactGroups/myContacts")
        .unwrap();
    assert_eq!(my["formattedName"], "My Contacts");
    assert_eq!(my["memberCount"], 20);
    assert!(
        groups
            .iter()
            .any(|g| g["groupType"] == "USER_CONTACT_GROUP" && g["name"] == "Customers")
    );
    assert_eq!(r.body["totalItems"], groups.len());
    assert!(r.body["nextSyncToken"].is_string());

    // create / duplicate name
    let r = env
        .send(
            Method::POST,
            "/v1/contactGroups",
            json!({"contactGroup": {"name": "Partners", "clientData": [{"key": "tandem", "value": "1"}]}, "readGroupFields": "name,clientData,groupType,metadata"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["groupType"], "USER_CONTACT_GROUP");
    assert_eq!(r.body["clientData"][0]["value"], "1");
    let g = r.body["resourceName"].as_str().unwrap().to_owned();
    assert!(g.starts_with("contactGroups/"));
    let r = env
        .send(
            Method::POST,
            "/v1/contactGroups",
            json!({"contactGroup": {"name": "partners"}}),
        )
        .await;
    r.google_error(409, "ALREADY_EXISTS");

    // update (PUT) with etag, duplicate name → 409, stale etag → 400
    let etag = env.get(&format!("/v1/{g}")).await.body["etag"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = env
        .send(
            Method::PUT,
            &format!("/v1/{g}"),
            json!({"contactGroup": {"etag": etag, "name": "Customers"}}),
        )
        .await;
    r.google_error(409, "ALREADY_EXISTS");
    let r = env
        .send(
            Method::PUT,
            &format!("/v1/{g}"),
            json!({"contactGroup": {"etag": etag, "name": "Resellers"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["name"], "Resellers");
    assert_ne!(r.body["etag"], etag.as_str());
    let r = env
        .send(
            Method::PUT,
            &format!("/v1/{g}"),
            json!({"contactGroup": {"etag": etag, "name": "Again"}}),
        )
        .await;
    r.google_error(400, "FAILED_PRECONDITION");
    env.send(
        Method::PUT,
        "/v1/contactGroups/myContacts",
        json!({"contactGroup": {"name": "Mine"}}),
    )
    .await
    .google_error(400, "FAILED_PRECONDITION");

    // get with maxMembers, batchGet with per-item status
    let r = env.get("/v1/contactGroups/myContacts?maxMembers=5").await;
    assert_eq!(r.body["memberResourceNames"].as_array().unwrap().len(), 5);
    assert!(
        env.get("/v1/contactGroups/myContacts")
            .await
            .body
            .get("memberResourceNames")
            .is_none()
    );
    let r = env
        .get(&format!(
            "/v1/contactGroups:batchGet?resourceNames={g}&resourceNames=contactGroups/nope"
        ))
        .await;
    assert_eq!(r.body["responses"][0]["contactGroup"]["name"], "Resellers");
    assert_eq!(r.body["responses"][1]["status"]["code"], 5);
    env.get("/v1/contactGroups/nope")
        .await
        .google_error(404, "NOT_FOUND");

    // delete
    let r = env
        .raw(Method::DELETE, &format!("/v1/{g}"), Some(&env.token), None)
        .await;
    assert_eq!((r.status, r.body.clone()), (200, json!({})));
    env.get(&format!("/v1/{g}"))
        .await
        .google_error(404, "NOT_FOUND");
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn duplicate_group_status_switch() {
    let env = start(
        GoogleSettings {
            duplicate_group_status: tandem_sandbox::google::settings::DuplicateStatus::Aborted,
            ..GoogleSettings::default()
        },
        0,
    )
    .await;
    env.send(
        Method::POST,
        "/v1/contactGroups",
        json!({"contactGroup": {"name": "X"}}),
    )
    .await;
    env.send(
        Method::POST,
        "/v1/contactGroups",
        json!({"contactGroup": {"name": "X"}}),
    )
    .await
    .google_error(409, "ABORTED");
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn members_modify_rules() {
    let env = start(GoogleSettings::default(), 0).await;
    let a = env.create(ada()).await["resourceName"]
        .as_str()
        .unwrap()
        .to_owned();
    let g = env
        .send(
            Method::POST,
            "/v1/contactGroups",
            json!({"contactGroup": {"name": "VIP"}}),
        )
        .await
        .body["resourceName"]
        .as_str()
        .unwrap()
        .to_owned();
    let modify = |group: String, body: Value| {
        let env = &env;
        async move {
            env.send(Method::POST, &format!("/v1/{group}/members:modify"), body)
                .await
        }
    };
    let r = modify(
        g.clone(),
        json!({"resourceNamesToAdd": [a, "people/c1111111111111111111"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body,
        json!({"notFoundResourceNames": ["people/c1111111111111111111"]})
    );
    let m = env.person(&a, "memberships").await.body["memberships"].clone();
    assert_eq!(m.as_array().unwrap().len(), 2);

    // Remove from myContacts (still in VIP), then the last group is refused.
    let r = modify(
        "contactGroups/myContacts".into(),
        json!({"resourceNamesToRemove": [a]}),
    )
    .await;
    assert_eq!(r.body, json!({}));
    let r = modify(g.clone(), json!({"resourceNamesToRemove": [a]})).await;
    assert_eq!(
        r.body,
        json!({"canNotRemoveLastContactGroupResourceNames": [a]})
    );

    // Deprecated system groups only allow removal.
    let r = modify(
        "contactGroups/family".into(),
        json!({"resourceNamesToAdd": [a]}),
    )
    .await;
    r.google_error(400, "INVALID_ARGUMENT");
    // ≤1000 names.
    let many: Vec<String> = (0..1001).map(|i| format!("people/c{i}")).collect();
    modify(g.clone(), json!({"resourceNamesToAdd": many}))
        .await
        .google_error(400, "INVALID_ARGUMENT");
    modify(
        "contactGroups/nope".into(),
        json!({"resourceNamesToAdd": [a]}),
    )
    .await
    .google_error(404, "NOT_FOUND");
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn group_sync_tokens_report_deleted_groups() {
    let env = start(GoogleSettings::default(), 0).await;
    let g = env
        .send(
            Method::POST,
            "/v1/contactGroups",
            json!({"contactGroup": {"name": "Temp"}}),
        )
        .await
        .body["resourceName"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = env.get("/v1/contactGroups").await.body["nextSyncToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let idle = env
        .get(&format!("/v1/contactGroups?syncToken={}", enc(&token)))
        .await;
    assert!(idle.body.get("contactGroups").is_none(), "{}", idle.text);
    env.raw(Method::DELETE, &format!("/v1/{g}"), Some(&env.token), None)
        .await;
    let r = env
        .get(&format!("/v1/contactGroups?syncToken={}", enc(&token)))
        .await;
    let list = r.body["contactGroups"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["resourceName"], g.as_str());
    assert_eq!(list[0]["metadata"]["deleted"], true);
    // A people sync token is not a group sync token.
    let (_, people_token) = env.full_sync("names", 10).await;
    let r = env
        .get(&format!(
            "/v1/contactGroups?syncToken={}",
            enc(&people_token.unwrap())
        ))
        .await;
    r.google_error(400, "INVALID_ARGUMENT");
    env.sandbox.shutdown().await;
}

// ----- docs/google-people-api.md §9.7 quotas, concurrency, faults, control ---------------------------------------

#[tokio::test]
async fn quotas_answer_429_resource_exhausted_and_refill_each_minute() {
    let env = start(
        GoogleSettings {
            quotas: Some(QuotaLimits {
                critical_writes_per_minute: 2,
                ..QuotaLimits::default()
            }),
            ..GoogleSettings::default()
        },
        0,
    )
    .await;
    env.create(ada()).await;
    env.create(ada()).await;
    let r = env
        .send(Method::POST, "/v1/people:createContact", ada())
        .await;
    let e = r.google_error(429, "RESOURCE_EXHAUSTED");
    assert!(r.message().starts_with("Quota exceeded for quota metric 'Critical write requests' and limit 'Critical write requests per minute per user' of service 'people.googleapis.com'"));
    let d = &e["details"][0];
    assert_eq!(d["@type"], "type.googleapis.com/google.rpc.ErrorInfo");
    assert_eq!(d["reason"], "RATE_LIMIT_EXCEEDED");
    assert_eq!(
        d["metadata"]["quota_limit"],
        "CriticalWritesPerMinutePerProjectPerUser"
    );
    assert_eq!(
        d["metadata"]["quota_metric"],
        "people.googleapis.com/critical_write_requests"
    );
    assert_eq!(d["metadata"]["service"], "people.googleapis.com");
    // A batch costs 6 critical writes: refused even in a fresh window of 2.
    env.advance(60).await;
    let r = env
        .send(
            Method::POST,
            "/v1/people:batchCreateContacts",
            json!({"contacts": [{"contactPerson": {}}], "readMask": "names"}),
        )
        .await;
    r.google_error(429, "RESOURCE_EXHAUSTED");
    env.create(ada()).await;
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn sandbox_rate_limits_option_turns_default_quotas_on() {
    let env = start_opts(GoogleSettings::default(), 0, true).await;
    let s = env.ctl(Method::GET, "/settings", None).await;
    assert_eq!(s["quotas"]["critical_reads_per_minute"], 60);
    for _ in 0..60 {
        assert_eq!(env.list("personFields=names").await.status, 200);
    }
    env.list("personFields=names")
        .await
        .google_error(429, "RESOURCE_EXHAUSTED");
    env.ctl(Method::POST, "/quota/reset", None).await;
    assert_eq!(env.list("personFields=names").await.status, 200);
    env.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mutations_for_one_user_can_be_refused() {
    let env = start(
        GoogleSettings {
            concurrent_mutations: Concurrency::Aborted,
            ..GoogleSettings::default()
        },
        0,
    )
    .await;
    env.ctl(Method::POST, "/mutations/hold", Some(json!({"hold": true})))
        .await;
    let http = env.http.clone();
    let url = format!("{}/v1/people:createContact", env.base);
    let token = env.token.clone();
    let first = tokio::spawn(async move {
        http.post(url)
            .bearer_auth(token)
            .json(&ada())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    let mut in_flight = 0;
    for _ in 0..500 {
        in_flight = env.ctl(Method::GET, "/mutations", None).await["in_flight"]
            .as_u64()
            .unwrap();
        if in_flight == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(in_flight, 1, "the first create is held in flight");
    let r = env
        .send(Method::POST, "/v1/people:createContact", ada())
        .await;
    r.google_error(409, "ABORTED");
    env.ctl(
        Method::POST,
        "/mutations/hold",
        Some(json!({"hold": false})),
    )
    .await;
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(env.list("personFields=names").await.body["totalItems"], 1);
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn faults_counters_and_lost_create_responses() {
    let env = start(GoogleSettings::default(), 0).await;
    // Google-shaped transient errors (docs/google-people-api.md §9.7).
    env.ctl(
        Method::POST,
        "/google-faults",
        Some(json!({"path_prefix": "/v1/people:createContact", "status": 503, "count": 2})),
    )
    .await;
    for _ in 0..2 {
        let r = env
            .send(Method::POST, "/v1/people:createContact", ada())
            .await;
        assert_eq!(r.message(), "The service is currently unavailable.");
        r.google_error(503, "UNAVAILABLE");
    }
    env.ctl(Method::POST, "/google-faults", Some(json!({"status": 500})))
        .await;
    env.get("/v1/contactGroups")
        .await
        .google_error(500, "INTERNAL");
    env.ctl(Method::POST, "/google-faults", Some(json!({"status": 429})))
        .await;
    let r = env.get("/v1/contactGroups").await;
    let e = r.google_error(429, "RESOURCE_EXHAUSTED");
    assert_eq!(
        e["details"][0]["@type"],
        "type.googleapis.com/google.rpc.QuotaFailure"
    );
    // The generic fault kinds work on Google routes as well (a truncated body here).
    env.ctl(
        Method::POST,
        "/faults",
        Some(json!({"path_prefix": "/v1/contactGroups", "fault": {"kind": "truncate", "keep_bytes": 10}})),
    )
    .await;
    let r = env.get("/v1/contactGroups").await;
    assert_eq!(
        (r.status, r.text.len(), r.body.clone()),
        (200, 10, Value::Null)
    );
    // The write commits but its reply is lost: the connector must find it by clientData.
    env.ctl(
        Method::POST,
        "/faults",
        Some(json!({"path_prefix": "/v1/people:createContact", "fault": {"kind": "after_commit", "status": 500}})),
    )
    .await;
    let r = env
        .send(Method::POST, "/v1/people:createContact", ada())
        .await;
    assert_eq!(r.status, 500);
    let all = env.list("personFields=clientData").await;
    assert_eq!(
        all.body["connections"][0]["clientData"][0]["value"],
        "local-42"
    );
    assert_eq!(all.body["totalItems"], 1);

    let c = env.ctl(Method::GET, "/counters", None).await;
    let count = |method: &str, route: &str| {
        c["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["method"] == method && e["route"] == route)
            .map_or(0, |e| e["count"].as_u64().unwrap())
    };
    assert_eq!(count("POST", "/v1/people:createContact"), 3);
    assert_eq!(count("GET", "/v1/people/me/connections"), 1);
    assert!(count("POST", "/token") >= 1);
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn control_seed_state_user_edits_and_reset() {
    let env = start(GoogleSettings::default(), 12).await;
    let info = env
        .sandbox
        .account(AccountKind::GooglePeople)
        .unwrap()
        .clone();
    assert_eq!(info.api_base, format!("{}/v1", info.base_url));
    assert_eq!(info.control_url, format!("{}/_sandbox", info.base_url));
    match &info.credentials {
        Credentials::OAuth2 {
            token_url,
            client_id,
            refresh_token,
            ..
        } => {
            assert_eq!(token_url, &format!("{}/token", info.base_url));
            assert_eq!(client_id, google::CLIENT_ID);
            assert_eq!(refresh_token, google::REFRESH_TOKEN);
        }
        other => panic!("unexpected credentials {other:?}"),
    }

    // Seeded people come from the shared population: same names and emails.
    let records = tandem_sandbox::seed::account_records(7, AccountKind::GooglePeople, 12);
    let state = env.ctl(Method::GET, "/state", None).await;
    let people = state["people"].as_array().unwrap();
    assert_eq!(people.len(), 12);
    let emails: BTreeSet<String> = people
        .iter()
        .filter_map(|p| {
            p["person"]["emailAddresses"][0]["value"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    for r in &records {
        if let Some(e) = &r.email {
            assert!(emails.contains(e), "{e}");
        }
    }
    let groups = state["groups"].as_array().unwrap();
    assert!(
        groups
            .iter()
            .any(|g| g["name"] == "Newsletter" && g["members"].is_array())
    );
    assert!(
        people
            .iter()
            .all(|p| p["etag"].as_str().unwrap().starts_with('%'))
    );

    // Edit and delete as the user; both show in the next delta.
    let (_, token) = env.full_sync("names", 100).await;
    let a = people[0]["resourceName"].as_str().unwrap().to_owned();
    let b = people[1]["resourceName"].as_str().unwrap().to_owned();
    let before = people[0]["etag"].clone();
    let edited = env
        .ctl(
            Method::PATCH,
            &format!("/people/{}", a.strip_prefix("people/").unwrap()),
            Some(json!({"names": [{"givenName": "Edited", "familyName": "InApp"}]})),
        )
        .await;
    assert_ne!(edited["etag"], before);
    env.ctl(
        Method::DELETE,
        &format!("/people/{}", b.strip_prefix("people/").unwrap()),
        None,
    )
    .await;
    let d = env.delta("names", &token.unwrap()).await;
    assert_eq!(d.body["totalItems"], 2);
    let changes = env.ctl(Method::GET, "/changes", None).await;
    let kinds: Vec<&str> = changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .take(2)
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["delete", "upsert"]);

    // Reseed with another size, then reset back to that seed.
    let v = env
        .ctl(Method::POST, "/seed", Some(json!({"contacts": 5})))
        .await;
    assert_eq!(v["contacts"], 5);
    env.create(ada()).await;
    assert_eq!(env.list("personFields=names").await.body["totalItems"], 6);
    env.ctl(Method::POST, "/reset", None).await;
    assert_eq!(env.list("personFields=names").await.body["totalItems"], 5);

    // Unknown settings are refused with a one-line error.
    let r = env
        .raw(
            Method::PATCH,
            "/_sandbox/settings",
            None,
            Some(json!({"nope": 1})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .contains("unknown setting")
    );
    env.sandbox.shutdown().await;
}

#[tokio::test]
async fn page_size_reject_switch_applies_to_groups_too() {
    let env = start(
        GoogleSettings {
            page_size_over_max: OverMax::Reject,
            ..GoogleSettings::default()
        },
        0,
    )
    .await;
    env.get("/v1/contactGroups?pageSize=1001")
        .await
        .google_error(400, "INVALID_ARGUMENT");
    let r = env.get("/v1/contactGroups?pageSize=2").await;
    assert_eq!(r.body["contactGroups"].as_array().unwrap().len(), 2);
    let t = r.body["nextPageToken"].as_str().unwrap();
    let r2 = env
        .get(&format!(
            "/v1/contactGroups?pageSize=2&pageToken={}",
            enc(t)
        ))
        .await;
    assert_eq!(r2.status, 200);
    assert_ne!(r2.body["contactGroups"][0], r.body["contactGroups"][0]);
    env.sandbox.shutdown().await;
}
