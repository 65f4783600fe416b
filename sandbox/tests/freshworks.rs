//! Wire tests of the simulated Freshworks accounts: one test (or more) per fact of
//! `docs/freshworks-api.md` that the sandbox reproduces (cited by section below) and per error
//! reply, asserted on status, headers and body shape with reqwest against servers on 127.0.0.1.

mod fw_support;

use fw_support::{Env, env, env_with};
use reqwest::Method;
use serde_json::{Value, json};
use tandem_sandbox::{AccountKind, SandboxOptions};

const SUITE: AccountKind = AccountKind::FreshsalesSuite;
const CLASSIC: AccountKind = AccountKind::FreshsalesClassic;
const FM: AccountKind = AccountKind::Freshmarketer;

fn ids(v: &Value, key: &str) -> Vec<u64> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} array in {v}"))
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}

async fn first_contact(e: &Env, kind: AccountKind) -> Value {
    let view = e.all_view(kind, "contacts").await;
    let r = e
        .get(kind, &format!("/contacts/view/{view}?per_page=1"))
        .await;
    r.body["contacts"][0].clone()
}

// docs/freshworks-api.md §2.1 and §3.8: trees per flavour; Suite has no leads.
#[tokio::test]
async fn routing_serves_each_tree_and_suite_has_no_leads() {
    let e = env().await;
    let suite = e.account(SUITE);
    assert!(suite.api_base.ends_with("/crm/sales/api"));
    assert!(e.account(CLASSIC).api_base.ends_with("/api"));
    assert_eq!(e.get(SUITE, "/contacts/filters").await.status, 200);
    assert_eq!(e.get(CLASSIC, "/leads/filters").await.status, 200);
    assert_eq!(e.get(CLASSIC, "/contacts/filters").await.status, 200);
    // Suite: no leads module.
    let r = e.get(SUITE, "/leads/filters").await;
    assert_eq!(r.errors(404).len(), 1);
    assert_eq!(e.get(SUITE, "/leads/1").await.status, 404);
    assert_eq!(
        e.api(
            SUITE,
            Method::POST,
            "/filtered_search/lead",
            Some(json!({}))
        )
        .await
        .status,
        404
    );
    // Classic paths are not on a Suite server and vice versa.
    let key = format!("Token token={}", e.key(SUITE));
    let r = e
        .raw(
            Method::GET,
            &format!("{}/api/contacts/filters", suite.base_url),
            &[("authorization", &key)],
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    // Freshmarketer: CRM tree, bundle marketing tree and standalone tree.
    assert_eq!(e.get(FM, "/lists").await.status, 200);
    let fm = e.account(FM);
    let r = e
        .raw(
            Method::GET,
            &format!("{}/mas/api/v1/contacts?per_page=2", fm.base_url),
            &[("fm-token", &e.key(FM))],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["contacts"].as_array().unwrap().len(), 2);
}

// docs/freshworks-api.md §2.4: optional `.json` suffix.
#[tokio::test]
async fn json_suffix_is_accepted_everywhere() {
    let e = env().await;
    let c = first_contact(&e, SUITE).await;
    let id = c["id"].as_u64().unwrap();
    let r = e.get(SUITE, &format!("/contacts/{id}.json")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["contact"]["id"], id);
    let r = e.get(SUITE, "/settings/contacts/fields.json").await;
    assert_eq!(r.status, 200);
    assert!(r.body["fields"].as_array().unwrap().len() > 10);
    let view = e.all_view(CLASSIC, "leads").await;
    let r = e
        .get(CLASSIC, &format!("/leads/view/{view}.json?per_page=3"))
        .await;
    assert_eq!(r.body["leads"].as_array().unwrap().len(), 3);
}

// docs/freshworks-api.md §2.2, §9: Token auth, both header forms, 401 bodies (both shapes), 403 for a restricted user.
#[tokio::test]
async fn auth_token_forms_401_and_403() {
    let e = env().await;
    let url = format!("{}/contacts/filters", e.account(SUITE).api_base);
    let key = e.key(SUITE);

    let r = e.raw(Method::GET, &url, &[], None).await;
    assert_eq!(r.status, 401);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(
        r.body,
        json!({"login": "failed", "message": "Incorrect or expired API key"})
    );
    let r = e
        .raw(
            Method::GET,
            &url,
            &[("authorization", "Token token=wrong")],
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    let r = e
        .raw(
            Method::GET,
            &url,
            &[("authorization", &format!("Bearer {key}"))],
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    // Another account's key is wrong here.
    let other = format!("Token token={}", e.key(FM));
    assert_eq!(
        e.raw(Method::GET, &url, &[("authorization", &other)], None)
            .await
            .status,
        401
    );

    for form in [
        format!("Token token={key}"),
        format!("Token {key}"),
        format!("Token token=\"{key}\""),
    ] {
        let r = e
            .raw(Method::GET, &url, &[("authorization", &form)], None)
            .await;
        assert_eq!(r.status, 200, "{form}: {}", r.text);
    }
    e.switches(
        SUITE,
        json!({"accept_bare_token": false, "unauthorized_body": "errors"}),
    )
    .await;
    let r = e
        .raw(
            Method::GET,
            &url,
            &[("authorization", &format!("Token {key}"))],
            None,
        )
        .await;
    assert_eq!(r.errors(401), vec!["Incorrect or expired API key"]);

    let restricted = format!("Token token={}", e.restricted_key(SUITE));
    let r = e
        .raw(Method::GET, &url, &[("authorization", &restricted)], None)
        .await;
    let msgs = r.errors(403);
    assert!(msgs[0].contains("permission"), "{msgs:?}");
}

// docs/freshworks-api.md §2.3: the standalone Freshmarketer tree wants `fm-token`.
#[tokio::test]
async fn standalone_freshmarketer_requires_fm_token() {
    let e = env().await;
    let url = format!("{}/mas/api/v1/contacts", e.account(FM).base_url);
    let token = format!("Token token={}", e.key(FM));
    assert_eq!(e.raw(Method::GET, &url, &[], None).await.status, 401);
    assert_eq!(
        e.raw(Method::GET, &url, &[("authorization", &token)], None)
            .await
            .status,
        401,
        "the Token header is not what this tree reads"
    );
    assert_eq!(
        e.raw(Method::GET, &url, &[("fm-token", "nope")], None)
            .await
            .status,
        401
    );
    let r = e
        .raw(Method::GET, &url, &[("fm-token", &e.key(FM))], None)
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body["meta"]["total"].as_u64().unwrap() >= 1);
}

// docs/freshworks-api.md §2.4: wrapped and unwrapped bodies; replies always wrapped.
#[tokio::test]
async fn wrapped_and_unwrapped_bodies_are_accepted() {
    let e = env().await;
    let r = e
        .api(
            SUITE,
            Method::POST,
            "/contacts",
            Some(json!({"contact": {"first_name": "Wrapped", "emails": "w@x.example"}})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["contact"]["first_name"], "Wrapped");
    let r = e
        .api(
            SUITE,
            Method::POST,
            "/contacts",
            Some(json!({"first_name": "Flat", "last_name": "Body", "emails": "f@x.example"})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["contact"]["display_name"], "Flat Body");
    let id = r.body["contact"]["id"].as_u64().unwrap();
    let r = e
        .api(
            SUITE,
            Method::PUT,
            &format!("/contacts/{id}"),
            Some(json!({"job_title": "CTO"})),
        )
        .await;
    assert_eq!(r.body["contact"]["job_title"], "CTO");
    // Malformed JSON: 400 in the errors envelope.
    let url = format!("{}/contacts", e.account(SUITE).api_base);
    let r = e
        .http
        .post(&url)
        .header("authorization", format!("Token token={}", e.key(SUITE)))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["errors"]["code"], 400);
}

// docs/freshworks-api.md §3.3: write-side email forms; read side has `email` and `emails[]` objects.
#[tokio::test]
async fn email_forms_on_write_and_shape_on_read() {
    let e = env().await;
    for (body, want) in [
        (json!({"email": "one@x.example"}), "one@x.example"),
        (json!({"emails": "two@x.example"}), "two@x.example"),
        (
            json!({"emails": [{"value": "alt@x.example", "is_primary": false}, {"value": "three@x.example", "is_primary": true}]}),
            "three@x.example",
        ),
    ] {
        let c = e.create_contact(SUITE, body).await;
        assert_eq!(c["email"], want);
        let emails = c["emails"].as_array().unwrap();
        let primary: Vec<&Value> = emails.iter().filter(|m| m["is_primary"] == true).collect();
        assert_eq!(primary.len(), 1);
        assert_eq!(primary[0]["value"], want);
        for m in emails {
            assert!(m["id"].as_u64().unwrap() > u32::MAX as u64);
            assert_eq!(m["_destroy"], false);
            assert!(m.get("label").is_some());
        }
    }
    // `_destroy` removes an entry by id.
    let c = e
        .create_contact(SUITE, json!({"emails": [{"value": "a@x.example", "is_primary": true}, {"value": "b@x.example"}]}))
        .await;
    let id = c["id"].as_u64().unwrap();
    let b_id = c["emails"][1]["id"].as_u64().unwrap();
    let r = e
        .api(
            SUITE,
            Method::PUT,
            &format!("/contacts/{id}"),
            Some(json!({"contact": {"emails": [{"id": b_id, "_destroy": true}]}})),
        )
        .await;
    assert_eq!(r.body["contact"]["emails"].as_array().unwrap().len(), 1);
}

// docs/freshworks-api.md §3.4: custom fields under `custom_field`, unknown cf_ rejected (switchable), multi-select
// as `;` string, dates echoed at midnight in the account offset.
#[tokio::test]
async fn custom_fields_are_validated_and_normalised() {
    let e = env().await;
    let c = e
        .create_contact(
            SUITE,
            json!({"email": "cf@x.example", "custom_field": {
                "cf_plan": "pro", "cf_interests": ["Webinars", "Events"], "cf_renewal_date": "2025-03-04",
                "cf_seats": "12", "cf_is_active": true, "cf_region": "EMEA"}}),
        )
        .await;
    let cf = &c["custom_field"];
    assert_eq!(cf["cf_plan"], "Pro");
    assert_eq!(cf["cf_interests"], "Webinars;Events");
    assert_eq!(cf["cf_renewal_date"], "2025-03-04T00:00:00-06:00");
    assert_eq!(cf["cf_seats"], 12);
    assert_eq!(cf["cf_is_active"], true);
    let fm = e
        .create_contact(FM, json!({"email": "cf@x.example", "custom_field": {"cf_plan_tier": "Free", "cf_renewal_date": "2025-03-04"}}))
        .await;
    assert_eq!(
        fm["custom_field"]["cf_renewal_date"],
        "2025-03-04T00:00:00Z"
    );
    assert!(
        fm["custom_field"].get("cf_plan").is_none(),
        "Freshmarketer names its plan field differently"
    );

    let r = e
        .api(
            SUITE,
            Method::POST,
            "/contacts",
            Some(json!({"contact": {"custom_field": {"cf_nope": 1}}})),
        )
        .await;
    assert_eq!(r.errors(400), vec!["cf_nope is invalid"]);
    let r = e
        .api(SUITE, Method::POST, "/contacts", Some(json!({"contact": {"custom_field": {"cf_plan": "Gold", "cf_seats": "many", "cf_renewal_date": "soon"}}})))
        .await;
    let msgs = r.errors(400);
    assert!(msgs.contains(&"Plan is invalid".to_owned()), "{msgs:?}");
    assert!(
        msgs.contains(&"Seats is not a number".to_owned()),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(&"Renewal date is invalid".to_owned()),
        "{msgs:?}"
    );
    e.switches(SUITE, json!({"strict_custom_fields": false}))
        .await;
    let r = e
        .api(
            SUITE,
            Method::POST,
            "/contacts",
            Some(json!({"contact": {"custom_field": {"cf_nope": 1}}})),
        )
        .await;
    assert_eq!(r.status, 200);
    // Field metadata lists the custom fields with choices.
    let f = e.get(SUITE, "/settings/contacts/fields").await;
    let fields = f.body["fields"].as_array().unwrap();
    let plan = fields.iter().find(|x| x["name"] == "cf_plan").unwrap();
    assert_eq!(plan["type"], "dropdown");
    assert_eq!(plan["default"], false);
    assert_eq!(plan["choices"].as_array().unwrap().len(), 3);
    let interests = fields.iter().find(|x| x["name"] == "cf_interests").unwrap();
    assert_eq!(interests["type"], "multi_select_dropdown");
    let first = fields.iter().find(|x| x["name"] == "first_name").unwrap();
    assert_eq!(first["default"], true);
    assert_eq!(first["base_model"], "Contact");
    let leads = e.get(CLASSIC, "/settings/leads/fields").await;
    let models: Vec<&str> = leads.body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["base_model"].as_str().unwrap())
        .collect();
    for m in ["Lead", "LeadCompany", "LeadDeal"] {
        assert!(models.contains(&m), "{m}");
    }
}

// docs/freshworks-api.md §3.6: include= side-loads as top-level arrays; ids stay on the record.
#[tokio::test]
async fn include_side_loads_top_level_arrays() {
    let e = env().await;
    let c = first_contact(&e, SUITE).await;
    let id = c["id"].as_u64().unwrap();
    let r = e
        .get(
            SUITE,
            &format!("/contacts/{id}?include=owner,sales_accounts,contact_status,source,lists"),
        )
        .await;
    let rec = &r.body["contact"];
    let owner = rec["owner_id"].as_u64().unwrap();
    let users = r.body["users"].as_array().unwrap();
    assert!(users.iter().any(|u| u["id"] == owner));
    assert!(r.body["sales_accounts"].is_array());
    assert!(r.body["contact_status"].is_array());
    assert!(r.body["lead_source"].is_array());
    assert!(rec["list_ids"].is_array());
    let plain = e.get(SUITE, &format!("/contacts/{id}")).await;
    assert!(plain.body.get("users").is_none());
    assert!(plain.body["contact"].get("list_ids").is_none());
    // Embedded partial sales accounts, primary first.
    let accounts = rec["sales_accounts"].as_array().unwrap();
    assert_eq!(accounts[0]["is_primary"], true);
    assert_eq!(accounts[0]["partial"], true);
}

// docs/freshworks-api.md §3.1: 64-bit ids; search hits carry string ids.
#[tokio::test]
async fn ids_are_64_bit_and_search_ids_are_strings() {
    let e = env().await;
    let c = e
        .create_contact(
            SUITE,
            json!({"first_name": "Zebulon", "last_name": "Quartz", "email": "zq@x.example"}),
        )
        .await;
    let id = c["id"].as_u64().unwrap();
    assert!(id > u32::MAX as u64);
    let r = e.get(SUITE, "/search?q=zebulon&include=contact").await;
    assert_eq!(r.status, 200);
    let hits = r.body.as_array().expect("search answers a bare array");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["id"], json!(id.to_string()));
    assert_eq!(hits[0]["type"], "contact");
    assert_eq!(hits[0]["name"], "Zebulon Quartz");
}

fn offset_of(ts: &str) -> &str {
    &ts[19..]
}

// docs/freshworks-api.md §3.2: timestamps with the account offset; created_at once; updated_at moves on every
// change (list changes included); ties can be injected.
#[tokio::test]
async fn timestamps_offsets_and_updated_at_movement() {
    let e = env().await;
    assert_eq!(
        offset_of(
            first_contact(&e, SUITE).await["updated_at"]
                .as_str()
                .unwrap()
        ),
        "-06:00"
    );
    assert_eq!(
        offset_of(
            first_contact(&e, CLASSIC).await["updated_at"]
                .as_str()
                .unwrap()
        ),
        "+05:30"
    );
    assert_eq!(
        offset_of(first_contact(&e, FM).await["updated_at"].as_str().unwrap()),
        "Z"
    );

    let c = e
        .create_contact(SUITE, json!({"email": "t@x.example"}))
        .await;
    let id = c["id"].as_u64().unwrap();
    assert_eq!(c["created_at"], c["updated_at"]);
    assert_eq!(c["created_at"], "2024-05-01T06:00:00-06:00");
    e.advance(SUITE, 90).await;
    let r = e
        .api(
            SUITE,
            Method::PUT,
            &format!("/contacts/{id}"),
            Some(json!({"contact": {"city": "Lyon"}})),
        )
        .await;
    assert_eq!(r.body["contact"]["created_at"], "2024-05-01T06:00:00-06:00");
    assert_eq!(r.body["contact"]["updated_at"], "2024-05-01T06:01:30-06:00");
    // A write that changes nothing leaves updated_at alone.
    e.advance(SUITE, 30).await;
    let r = e
        .api(
            SUITE,
            Method::PUT,
            &format!("/contacts/{id}"),
            Some(json!({"contact": {"city": "Lyon"}})),
        )
        .await;
    assert_eq!(r.body["contact"]["updated_at"], "2024-05-01T06:01:30-06:00");
    // List membership through the API moves it.
    let lists = e.get(SUITE, "/lists").await;
    let list = lists.body["lists"][0]["id"].as_u64().unwrap();
    let r = e
        .api(
            SUITE,
            Method::PUT,
            &format!("/lists/{list}/add_contacts"),
            Some(json!({"ids": [id]})),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = e.get(SUITE, &format!("/contacts/{id}")).await;
    assert_eq!(r.body["contact"]["updated_at"], "2024-05-01T06:02:00-06:00");
    // Ties injected through the control API.
    let other = first_contact(&e, SUITE).await["id"].as_u64().unwrap();
    let r = e
        .ctl(
            SUITE,
            Method::POST,
            "/records/contacts/timestamps",
            Some(json!({"ids": [id, other], "updated_at": "2024-04-30T10:00:00Z"})),
        )
        .await;
    assert_eq!(r.status, 200);
    let a = e.get(SUITE, &format!("/contacts/{id}")).await.body["contact"]["updated_at"].clone();
    let b = e.get(SUITE, &format!("/contacts/{other}")).await.body["contact"]["updated_at"].clone();
    assert_eq!(a, b);
    assert_eq!(a, "2024-04-30T04:00:00-06:00");
}

// docs/freshworks-api.md §4.1 and §4.2: default views with large ids; unknown view 404.
#[tokio::test]
async fn views_are_listed_and_unknown_view_is_404() {
    let e = env().await;
    let r = e.get(SUITE, "/contacts/filters").await;
    let names: Vec<&str> = r.body["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for n in ["All Contacts", "My Contacts", "New Contacts"] {
        assert!(names.contains(&n), "{names:?}");
    }
    for f in r.body["filters"].as_array().unwrap() {
        assert!(f["id"].as_u64().unwrap() > u32::MAX as u64);
        assert_eq!(f["model_class_name"], "Contact");
    }
    let r = e.get(CLASSIC, "/leads/filters").await;
    assert!(
        r.body["filters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "All Leads")
    );
    let r = e.get(SUITE, "/contacts/view/123").await;
    r.errors(404);
    let r = e.get(SUITE, "/contacts/view/not-a-number").await;
    r.errors(404);
    // A leads view id is not a contacts view.
    let lv = e.all_view(CLASSIC, "leads").await;
    assert_eq!(
        e.get(CLASSIC, &format!("/contacts/view/{lv}")).await.status,
        404
    );
    // "My Contacts" holds only the key owner's records; "New Contacts" the recent ones.
    let my = e
        .get(
            SUITE,
            &format!(
                "/contacts/view/{}?per_page=100",
                r_id(&e, "My Contacts").await
            ),
        )
        .await;
    let owners: std::collections::BTreeSet<u64> = my.body["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["owner_id"].as_u64().unwrap())
        .collect();
    assert_eq!(owners.len(), 1);
}

async fn r_id(e: &Env, name: &str) -> u64 {
    e.get(SUITE, "/contacts/filters").await.body["filters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap()["id"]
        .as_u64()
        .unwrap()
}

// docs/freshworks-api.md §7.1 and §7.2: page/per_page (default 25, capped at 100), sort/sort_type, meta, past-the-end pages.
#[tokio::test]
async fn view_pagination_sorting_and_meta() {
    let e = env().await;
    let view = e.all_view(SUITE, "contacts").await;
    let r = e.get(SUITE, &format!("/contacts/view/{view}")).await;
    assert_eq!(r.body["contacts"].as_array().unwrap().len(), 25);
    let total = r.body["meta"]["total"].as_u64().unwrap();
    assert_eq!(total, 130);
    assert_eq!(r.body["meta"]["total_pages"], 6);
    let r = e
        .get(SUITE, &format!("/contacts/view/{view}?per_page=1000"))
        .await;
    assert_eq!(r.body["contacts"].as_array().unwrap().len(), 100);
    assert_eq!(r.body["meta"]["total_pages"], 2);
    let r = e
        .get(SUITE, &format!("/contacts/view/{view}?per_page=100&page=2"))
        .await;
    assert_eq!(r.body["contacts"].as_array().unwrap().len(), 30);
    let r = e
        .get(SUITE, &format!("/contacts/view/{view}?per_page=100&page=3"))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["contacts"], json!([]));

    // Walk every page sorted by updated_at asc: complete, no duplicates, ordered.
    let mut seen = Vec::new();
    let mut last = String::new();
    for page in 1..=20 {
        let r = e
            .get(
                SUITE,
                &format!(
                    "/contacts/view/{view}?per_page=40&page={page}&sort=updated_at&sort_type=asc"
                ),
            )
            .await;
        let recs = r.body["contacts"].as_array().unwrap();
        if recs.is_empty() {
            break;
        }
        for c in recs {
            let ts = c["updated_at"].as_str().unwrap().to_owned();
            assert!(ts >= last, "ascending: {ts} after {last}");
            last = ts;
            seen.push(c["id"].as_u64().unwrap());
        }
    }
    let mut uniq = seen.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!((seen.len(), uniq.len()), (130, 130));
    // Default order: updated_at desc.
    let r = e
        .get(SUITE, &format!("/contacts/view/{view}?per_page=100"))
        .await;
    let ts: Vec<&str> = r.body["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["updated_at"].as_str().unwrap())
        .collect();
    assert!(ts.windows(2).all(|w| w[0] >= w[1]));
    // Sort by a text field.
    let r = e
        .get(
            SUITE,
            &format!("/contacts/view/{view}?per_page=100&sort=last_name&sort_type=asc"),
        )
        .await;
    let names: Vec<String> = r.body["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["last_name"].as_str().unwrap().to_lowercase())
        .collect();
    assert!(names.windows(2).all(|w| w[0] <= w[1]), "{names:?}");
}

// docs/freshworks-api.md §7.3: short and unordered pages on demand; ties in arbitrary order when switched on.
#[tokio::test]
async fn page_quirks_short_and_unordered_pages() {
    let e = env().await;
    let view = e.all_view(SUITE, "contacts").await;
    let path = format!("/contacts/view/{view}?per_page=10&sort=updated_at&sort_type=asc");
    let normal = ids(&e.get(SUITE, &path).await.body, "contacts");
    let r = e
        .ctl(
            SUITE,
            Method::POST,
            "/page_quirks",
            Some(json!({"short_pages": 1, "unordered_pages": 1})),
        )
        .await;
    assert_eq!(r.status, 200);
    let quirky = ids(&e.get(SUITE, &path).await.body, "contacts");
    assert_eq!(quirky.len(), 9, "short page");
    assert_eq!(
        (quirky[0], quirky[1]),
        (normal[1], normal[0]),
        "first two swapped"
    );
    assert_eq!(
        ids(&e.get(SUITE, &path).await.body, "contacts"),
        normal,
        "quirks spent"
    );

    // Ties: all records at one instant; shuffled tie order still returns every record.
    let all = ids(
        &e.get(SUITE, &format!("/contacts/view/{view}?per_page=100"))
            .await
            .body,
        "contacts",
    );
    e.ctl(
        SUITE,
        Method::POST,
        "/records/contacts/timestamps",
        Some(json!({"ids": all, "updated_at": "2024-01-01T00:00:00Z"})),
    )
    .await;
    e.switches(SUITE, json!({"shuffle_ties": true})).await;
    let a = ids(
        &e.get(
            SUITE,
            &format!("/contacts/view/{view}?per_page=100&sort=updated_at"),
        )
        .await
        .body,
        "contacts",
    );
    let b = ids(
        &e.get(
            SUITE,
            &format!("/contacts/view/{view}?per_page=100&sort=updated_at"),
        )
        .await
        .body,
        "contacts",
    );
    let (mut sa, mut sb) = (a.clone(), b.clone());
    sa.sort();
    sb.sort();
    assert_eq!(sa, sb);
    assert_ne!(a, b, "tie order varies between requests");
}

// docs/freshworks-api.md §4.4: filtered search by email, updated_at windows, deleted filter, sort in body.
#[tokio::test]
async fn filtered_search_email_window_and_deleted() {
    let e = env().await;
    let c = e
        .create_contact(
            SUITE,
            json!({"email": "Finder@X.example", "first_name": "F"}),
        )
        .await;
    let id = c["id"].as_u64().unwrap();
    for (op, value) in [
        ("is_in", json!("finder@x.example")),
        ("is_in", json!(["nobody@x.example", "FINDER@x.example"])),
        ("is", json!("finder@x.example")),
    ] {
        let r = e
            .api(SUITE, Method::POST, "/filtered_search/contact", Some(json!({"filter_rule": [{"attribute": "contact_email.email", "operator": op, "value": value}]})))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(ids(&r.body, "contacts"), vec![id], "{op} {value}");
        assert_eq!(r.body["meta"]["total"], 1);
    }
    // updated_at window: only what changed after t1.
    e.advance(SUITE, 3600).await;
    let c2 = e
        .create_contact(SUITE, json!({"email": "later@x.example"}))
        .await;
    let window = json!({"filter_rule": [
        {"attribute": "updated_at", "operator": "is_after", "value": "2024-05-01T12:30:00Z"},
        {"attribute": "updated_at", "operator": "is_before", "value": "2024-05-01T07:30:00-06:00"}],
        "sort": "updated_at", "sort_type": "asc"});
    let r = e
        .api(
            SUITE,
            Method::POST,
            "/filtered_search/contact?per_page=100",
            Some(window),
        )
        .await;
    assert_eq!(ids(&r.body, "contacts"), vec![c2["id"].as_u64().unwrap()]);
    // Deleted filter returns only soft-deleted records.
    assert_eq!(
        e.api(SUITE, Method::DELETE, &format!("/contacts/{id}"), None)
            .await
            .status,
        200
    );
    let r = e
        .api(
            SUITE,
            Method::POST,
            "/filtered_search/contact",
            Some(json!({"filter_rule": [{"attribute": "deleted", "operator": "is", "value": 1}]})),
        )
        .await;
    assert_eq!(ids(&r.body, "contacts"), vec![id]);
    assert_eq!(r.body["contacts"][0]["is_deleted"], true);
    let r = e
        .api(SUITE, Method::POST, "/filtered_search/contact", Some(json!({"filter_rule": [{"attribute": "contact_email.email", "operator": "is", "value": "finder@x.example"}]})))
        .await;
    assert!(
        ids(&r.body, "contacts").is_empty(),
        "live search skips deleted"
    );
    // Paging from the query string.
    let r = e
        .api(
            SUITE,
            Method::POST,
            "/filtered_search/contact?per_page=7&page=2",
            Some(json!({"filter_rule": []})),
        )
        .await;
    assert_eq!(r.body["contacts"].as_array().unwrap().len(), 7);
    // Errors.
    let r = e
        .api(
            SUITE,
            Method::POST,
            "/filtered_search/contact",
            Some(
                json!({"filter_rule": [{"attribute": "shoe_size", "operator": "is", "value": 1}]}),
            ),
        )
        .await;
    r.errors(400);
    // The e-mail attribute is `contact_email.email`; `email` (a `lookup` field) is not one.
    for attribute in ["email", "lead_email.email"] {
        let r = e
            .api(SUITE, Method::POST, "/filtered_search/contact", Some(json!({"filter_rule": [{"attribute": attribute, "operator": "is_in", "value": ["finder@x.example"]}]})))
            .await;
        r.errors(400);
    }
    let r = e
        .api(SUITE, Method::POST, "/filtered_search/contact", Some(json!({"filter_rule": [{"attribute": "updated_at", "operator": "is_after", "value": "yesterday"}]})))
        .await;
    r.errors(400);
    // Classic leads use lead_email.email.
    let lead = e
        .get(
            CLASSIC,
            &format!(
                "/leads/view/{}?per_page=1",
                e.all_view(CLASSIC, "leads").await
            ),
        )
        .await;
    let email = lead.body["leads"][0]["email"].as_str().unwrap().to_owned();
    let r = e
        .api(CLASSIC, Method::POST, "/filtered_search/lead", Some(json!({"filter_rule": [{"attribute": "lead_email.email", "operator": "is_in", "value": email}]})))
        .await;
    assert_eq!(r.body["leads"].as_array().unwrap().len(), 1);
}

// docs/freshworks-api.md §4.4: filtered search on `id` with `is_in` (numbers or strings, up to a page of 100),
// as the connectors use it to read the versions of many records at once: the records as
// `GET /contacts/{id}` shows them, deleted ones left out; Classic leads alike.
#[tokio::test]
async fn filtered_search_by_id() {
    let e = env().await;
    for (kind, plural, singular) in [(SUITE, "contacts", "contact"), (CLASSIC, "leads", "lead")] {
        let view = e.all_view(kind, plural).await;
        let page = e
            .get(kind, &format!("/{plural}/view/{view}?per_page=100"))
            .await;
        let all = ids(&page.body, plural);
        assert!(all.len() >= 10, "{plural}: {}", all.len());
        let gone = all[1];
        assert_eq!(
            e.api(kind, Method::DELETE, &format!("/{plural}/{gone}"), None)
                .await
                .status,
            200
        );
        let path = format!("/filtered_search/{singular}?page=1&per_page=100");
        let rule = |value: Value| json!({"filter_rule": [{"attribute": "id", "operator": "is_in", "value": value}]});
        let r = e
            .api(kind, Method::POST, &path, Some(rule(json!(all))))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let mut found = ids(&r.body, plural);
        found.sort_unstable();
        let mut live: Vec<u64> = all.iter().copied().filter(|id| *id != gone).collect();
        live.sort_unstable();
        assert_eq!(found, live, "{plural}");
        assert_eq!(r.body["meta"]["total"], live.len());
        // Ids as text, and a record as `GET` shows it (its version is `updated_at`).
        let one = all[0];
        let r = e
            .api(
                kind,
                Method::POST,
                &path,
                Some(rule(json!([one.to_string(), "1"]))),
            )
            .await;
        assert_eq!(ids(&r.body, plural), vec![one]);
        let shown = e.get(kind, &format!("/{plural}/{one}")).await;
        assert_eq!(
            r.body[plural][0]["updated_at"],
            shown.body[singular]["updated_at"]
        );
        assert_eq!(r.body[plural][0]["email"], shown.body[singular]["email"]);
    }
}

// docs/freshworks-api.md §4.5 and §4.6: lookup and search.
#[tokio::test]
async fn lookup_and_search_shapes() {
    let e = env().await;
    let c = e
        .create_contact(
            SUITE,
            json!({"email": "Look.Up@X.example", "last_name": "Lookup", "external_id": "ext-9"}),
        )
        .await;
    let id = c["id"].as_u64().unwrap();
    let r = e
        .get(
            SUITE,
            "/lookup?q=look.up@x.example&f=email&entities=contact",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["contacts"]["contacts"][0]["id"], id);
    let r = e
        .get(SUITE, "/lookup?q=ext-9&f=external_id&entities=contact")
        .await;
    assert_eq!(r.body["contacts"]["contacts"][0]["id"], id);
    let r = e
        .get(SUITE, "/lookup?q=nobody@x.example&f=email&entities=contact")
        .await;
    assert_eq!(r.body, json!({"contacts": {"contacts": []}}));
    e.get(SUITE, "/lookup?f=email").await.errors(400);
    e.get(SUITE, "/lookup?q=a&f=email&entities=lead")
        .await
        .errors(400);
    let lead = e
        .get(
            CLASSIC,
            &format!(
                "/leads/view/{}?per_page=1",
                e.all_view(CLASSIC, "leads").await
            ),
        )
        .await;
    let email = lead.body["leads"][0]["email"]
        .as_str()
        .unwrap()
        .to_uppercase();
    let r = e
        .get(CLASSIC, &format!("/lookup?q={email}&f=email&entities=lead"))
        .await;
    assert_eq!(r.body["leads"]["leads"].as_array().unwrap().len(), 1);
    let r = e.get(SUITE, "/search?q=lookup&include=contact").await;
    assert_eq!(r.body[0]["id"], json!(id.to_string()));
    e.get(SUITE, "/search?q=").await.errors(400);
}

// docs/freshworks-api.md §5.1, §9: create status (200, switchable to 201) and 400 validation bodies.
#[tokio::test]
async fn create_status_and_validation_errors() {
    let e = env().await;
    let r = e
        .api(
            SUITE,
            Method::POST,
            "/contacts",
            Some(json!({"contact": {"email": "s@x.example"}})),
        )
        .await;
    assert_eq!(r.status, 200);
    e.switches(SUITE, json!({"create_status": 201})).await;
    let r = e
        .api(
            SUITE,
            Method::POST,
            "/contacts",
            Some(json!({"contact": {"email": "s2@x.example"}})),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(r.body["contact"]["id"].is_u64());

    let r = e
        .api(
            SUITE,
            Method::POST,
            "/contacts",
            Some(json!({"contact": {"email": "not-an-email"}})),
        )
        .await;
    assert_eq!(
        r.body,
        json!({"errors": {"code": 400, "message": ["Email is invalid"]}})
    );
    let r = e
        .api(
            SUITE,
            Method::POST,
            "/contacts",
            Some(
                json!({"contact": {"lead_score": "lots", "owner_id": 1, "subscription_status": 9}}),
            ),
        )
        .await;
    let msgs = r.errors(400);
    assert!(
        msgs.contains(&"Score is not a number".to_owned()),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(&"Sales owner is invalid".to_owned()),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(&"Subscription status is invalid".to_owned()),
        "{msgs:?}"
    );
    e.switches(SUITE, json!({"required_fields": ["last_name"]}))
        .await;
    let r = e
        .api(
            SUITE,
            Method::POST,
            "/contacts",
            Some(json!({"contact": {"email": "r@x.example"}})),
        )
        .await;
    assert_eq!(r.errors(400), vec!["Last name can't be blank"]);
    let f = e.get(SUITE, "/settings/contacts/fields").await;
    let ln = f.body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "last_name")
        .unwrap()
        .clone();
    assert_eq!(ln["required"], true);
    // Nothing was stored by the failed creates.
    let total = e
        .get(
            SUITE,
            &format!("/contacts/view/{}", e.all_view(SUITE, "contacts").await),
        )
        .await
        .body["meta"]["total"]
        .clone();
    assert_eq!(total, 132);
}

// docs/freshworks-api.md §5.1, §12: duplicate email on create: allowed by default (upsert picks the oldest), or rejected.
#[tokio::test]
async fn duplicate_email_on_create_policy() {
    let e = env().await;
    let a = e
        .create_contact(SUITE, json!({"email": "twin@x.example", "first_name": "A"}))
        .await;
    e.advance(SUITE, 5).await;
    let b = e
        .create_contact(SUITE, json!({"email": "TWIN@x.example", "first_name": "B"}))
        .await;
    assert_ne!(a["id"], b["id"]);
    let r = e
        .api(SUITE, Method::POST, "/contacts/upsert", Some(json!({"unique_identifier": {"emails": "twin@x.example"}, "contact": {"job_title": "X"}})))
        .await;
    assert_eq!(r.body["contact"]["id"], a["id"], "oldest match wins");
    let r = e
        .get(SUITE, "/lookup?q=twin@x.example&f=email&entities=contact")
        .await;
    assert_eq!(
        ids(&r.body["contacts"], "contacts"),
        vec![a["id"].as_u64().unwrap(), b["id"].as_u64().unwrap()]
    );
    e.switches(SUITE, json!({"duplicate_email": "reject"}))
        .await;
    let r = e
        .api(
            SUITE,
            Method::POST,
            "/contacts",
            Some(json!({"contact": {"email": "Twin@X.example"}})),
        )
        .await;
    assert_eq!(r.errors(400), vec!["Email has already been taken"]);
}

// docs/freshworks-api.md §5.2: partial update; 404 for unknown/forgotten; soft-deleted per switch.
#[tokio::test]
async fn update_is_partial_and_404s() {
    let e = env().await;
    let c = e
        .create_contact(
            SUITE,
            json!({"email": "u@x.example", "first_name": "Ann", "city": "Oslo"}),
        )
        .await;
    let id = c["id"].as_u64().unwrap();
    let r = e
        .api(
            SUITE,
            Method::PUT,
            &format!("/contacts/{id}"),
            Some(json!({"contact": {"city": "Bergen"}})),
        )
        .await;
    assert_eq!(r.body["contact"]["first_name"], "Ann");
    assert_eq!(r.body["contact"]["city"], "Bergen");
    let r = e
        .api(
            SUITE,
            Method::PUT,
            &format!("/contacts/{id}"),
            Some(json!({"contact": {"city": null}})),
        )
        .await;
    assert_eq!(r.body["contact"]["city"], Value::Null);
    e.api(
        SUITE,
        Method::PUT,
        "/contacts/17000000001",
        Some(json!({"contact": {}})),
    )
    .await
    .errors(404);
    e.get(SUITE, "/contacts/17000000001").await.errors(404);
    e.api(SUITE, Method::DELETE, &format!("/contacts/{id}"), None)
        .await;
    e.api(
        SUITE,
        Method::PUT,
        &format!("/contacts/{id}"),
        Some(json!({"contact": {"city": "X"}})),
    )
    .await
    .errors(404);
    e.switches(SUITE, json!({"update_soft_deleted": "update"}))
        .await;
    let r = e
        .api(
            SUITE,
            Method::PUT,
            &format!("/contacts/{id}"),
            Some(json!({"contact": {"city": "X"}})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["contact"]["is_deleted"], true);
    e.api(
        SUITE,
        Method::DELETE,
        &format!("/contacts/{id}/forget"),
        None,
    )
    .await;
    e.api(
        SUITE,
        Method::PUT,
        &format!("/contacts/{id}"),
        Some(json!({"contact": {"city": "Y"}})),
    )
    .await
    .errors(404);
}

// docs/freshworks-api.md §5.3: upsert by unique_identifier; 200 for insert and update (insert switchable to 201).
#[tokio::test]
async fn upsert_inserts_then_updates() {
    let e = env().await;
    let body =
        json!({"unique_identifier": {"emails": "up@x.example"}, "contact": {"first_name": "Up"}});
    let r = e
        .api(SUITE, Method::POST, "/contacts/upsert", Some(body))
        .await;
    assert_eq!(r.status, 200);
    let c = &r.body["contact"];
    assert_eq!(c["email"], "up@x.example");
    assert_eq!(c["created_at"], c["updated_at"]);
    let id = c["id"].clone();
    e.advance(SUITE, 10).await;
    let r = e
        .api(SUITE, Method::POST, "/contacts/upsert", Some(json!({"unique_identifier": {"emails": "UP@x.example"}, "contact": {"last_name": "Dated"}})))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["contact"]["id"], id);
    assert_eq!(r.body["contact"]["first_name"], "Up");
    assert_eq!(r.body["contact"]["email"], "up@x.example");
    assert_ne!(
        r.body["contact"]["created_at"],
        r.body["contact"]["updated_at"]
    );
    // Other identifiers.
    let r = e
        .api(SUITE, Method::POST, "/contacts/upsert", Some(json!({"unique_identifier": {"external_id": "E-1"}, "contact": {"first_name": "Ext"}})))
        .await;
    assert_eq!(r.body["contact"]["external_id"], "E-1");
    // Errors.
    e.api(
        SUITE,
        Method::POST,
        "/contacts/upsert",
        Some(json!({"contact": {"first_name": "X"}})),
    )
    .await
    .errors(400);
    e.api(
        SUITE,
        Method::POST,
        "/contacts/upsert",
        Some(json!({"unique_identifier": {"emails": ""}, "contact": {}})),
    )
    .await
    .errors(400);
    e.api(
        SUITE,
        Method::POST,
        "/contacts/upsert",
        Some(json!({"unique_identifier": {"emails": "bad"}, "contact": {}})),
    )
    .await
    .errors(400);
    e.switches(SUITE, json!({"upsert_insert_status": 201}))
        .await;
    let r = e
        .api(
            SUITE,
            Method::POST,
            "/contacts/upsert",
            Some(json!({"unique_identifier": {"emails": "new201@x.example"}, "contact": {}})),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = e
        .api(SUITE, Method::POST, "/contacts/upsert", Some(json!({"unique_identifier": {"emails": "new201@x.example"}, "contact": {"city": "A"}})))
        .await;
    assert_eq!(r.status, 200);
}

// docs/freshworks-api.md §5.4: bulk upsert answers at once with a job; the job completes later on the clock.
#[tokio::test]
async fn bulk_upsert_is_an_async_job() {
    let e = env().await;
    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({"emails": format!("b{i}@x.example"), "data": {}}))
        .collect();
    let r = e
        .api(
            SUITE,
            Method::POST,
            "/contacts/bulk_upsert",
            Some(json!({"contacts": too_many})),
        )
        .await;
    assert!(r.errors(400)[0].contains("at most 100"));
    let r = e
        .api(
            SUITE,
            Method::POST,
            "/contacts/bulk_upsert",
            Some(json!({"contacts": [
                {"emails": "bulk1@x.example", "data": {"first_name": "Bulk", "custom_field": {"cf_plan": "Pro"}}},
                {"unique_identifier": {"emails": "bulk2@x.example"}, "contact": {"custom_field": {"cf_plan": "Gold"}}}
            ]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let job = r.body["job_id"].as_u64().unwrap();
    assert_eq!(
        r.body["job_status_url"],
        format!("/crm/sales/api/job_statuses/{job}")
    );
    let s = e.get(SUITE, &format!("/job_statuses/{job}")).await;
    assert_eq!(s.body["status"], "in_progress");
    assert_eq!(s.body["progress"], 0);
    assert_eq!(
        e.get(SUITE, "/lookup?q=bulk1@x.example&f=email&entities=contact")
            .await
            .body["contacts"]["contacts"],
        json!([])
    );
    e.advance(SUITE, 2).await;
    let s = e.get(SUITE, &format!("/job_statuses/{job}")).await;
    assert_eq!(s.body["status"], "completed");
    assert_eq!(s.body["progress"], 100);
    assert_eq!(
        s.body["data"]["record_status"],
        json!({"succeeded": 1, "failed": 1})
    );
    let fail = &s.body["data"]["detailed_failure_report"][0];
    assert_eq!(fail["emails"], "bulk2@x.example");
    assert_eq!(fail["error_message"], json!(["Plan is invalid"]));
    let r = e
        .get(SUITE, "/lookup?q=bulk1@x.example&f=email&entities=contact")
        .await;
    assert_eq!(
        r.body["contacts"]["contacts"][0]["custom_field"]["cf_plan"],
        "Pro"
    );
    e.get(SUITE, "/job_statuses/99").await.errors(404);
}

// docs/freshworks-api.md §5.4: jobs are processed asynchronously and independently: each
// completes the delay after its own submission, however many are in flight, and one job's
// rejected items do not touch the others.
#[tokio::test]
async fn bulk_jobs_run_side_by_side() {
    let e = env().await;
    let mut jobs = Vec::new();
    for j in 0..3 {
        let items: Vec<Value> = (0..100)
            .map(|i| {
                // The second job carries one invalid plan.
                let plan = if j == 1 && i == 7 { "Gold" } else { "Pro" };
                json!({"emails": format!("j{j}-{i}@x.example"), "data": {"custom_field": {"cf_plan": plan}}})
            })
            .collect();
        let r = e
            .api(
                SUITE,
                Method::POST,
                "/contacts/bulk_upsert",
                Some(json!({"contacts": items})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        jobs.push(r.body["job_id"].as_u64().unwrap());
    }
    for job in &jobs {
        let s = e.get(SUITE, &format!("/job_statuses/{job}")).await;
        assert_eq!(s.body["status"], "in_progress");
    }
    e.advance(SUITE, 1).await;
    let mut done = Vec::new();
    for job in &jobs {
        let s = e.get(SUITE, &format!("/job_statuses/{job}")).await;
        assert_eq!(s.body["status"], "completed", "{job}: {}", s.body);
        done.push(s.body["data"]["record_status"].clone());
    }
    assert_eq!(
        done,
        [
            json!({"succeeded": 100, "failed": 0}),
            json!({"succeeded": 99, "failed": 1}),
            json!({"succeeded": 100, "failed": 0})
        ]
    );
    for email in ["j0-7@x.example", "j2-99@x.example", "j1-8@x.example"] {
        let r = e
            .get(
                SUITE,
                &format!("/lookup?q={email}&f=email&entities=contact"),
            )
            .await;
        assert_eq!(
            r.body["contacts"]["contacts"].as_array().unwrap().len(),
            1,
            "{email}"
        );
    }
}

// docs/freshworks-api.md §5.5: soft delete, deleted filter, forget, bulk destroy, delete reply switch.
#[tokio::test]
async fn delete_forget_and_bulk_destroy() {
    let e = env().await;
    let view = e.all_view(SUITE, "contacts").await;
    let c = e
        .create_contact(SUITE, json!({"email": "del@x.example"}))
        .await;
    let id = c["id"].as_u64().unwrap();
    let r = e
        .api(SUITE, Method::DELETE, &format!("/contacts/{id}"), None)
        .await;
    assert_eq!((r.status, r.body.clone()), (200, json!(true)));
    let r = e.get(SUITE, &format!("/contacts/{id}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["contact"]["is_deleted"], true);
    let all = ids(
        &e.get(SUITE, &format!("/contacts/view/{view}?per_page=100&page=2"))
            .await
            .body,
        "contacts",
    );
    assert!(!all.contains(&id));
    assert_eq!(
        e.get(SUITE, &format!("/contacts/view/{view}")).await.body["meta"]["total"],
        130
    );
    e.api(SUITE, Method::DELETE, &format!("/contacts/{id}"), None)
        .await
        .errors(404);
    let r = e
        .api(
            SUITE,
            Method::DELETE,
            &format!("/contacts/{id}/forget"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    e.get(SUITE, &format!("/contacts/{id}")).await.errors(404);
    e.api(
        SUITE,
        Method::DELETE,
        &format!("/contacts/{id}/forget"),
        None,
    )
    .await
    .errors(404);

    e.switches(SUITE, json!({"delete_reply": "no_content"}))
        .await;
    let c = e
        .create_contact(SUITE, json!({"email": "del2@x.example"}))
        .await;
    let r = e
        .api(
            SUITE,
            Method::DELETE,
            &format!("/contacts/{}", c["id"]),
            None,
        )
        .await;
    assert_eq!((r.status, r.text.as_str()), (204, ""));
    e.switches(SUITE, json!({"delete_reply": "empty"})).await;
    let c = e
        .create_contact(SUITE, json!({"email": "del3@x.example"}))
        .await;
    let r = e
        .api(
            SUITE,
            Method::DELETE,
            &format!("/contacts/{}", c["id"]),
            None,
        )
        .await;
    assert_eq!((r.status, r.text.as_str()), (200, ""));

    let some = ids(
        &e.get(SUITE, &format!("/contacts/view/{view}?per_page=3"))
            .await
            .body,
        "contacts",
    );
    let r = e
        .api(
            SUITE,
            Method::POST,
            "/contacts/bulk_destroy",
            Some(json!({"selected_ids": some})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["deleted"], 3);
    assert_eq!(
        e.get(SUITE, &format!("/contacts/view/{view}")).await.body["meta"]["total"],
        127
    );
    let r = e
        .api(
            SUITE,
            Method::POST,
            "/filtered_search/contact?per_page=100",
            Some(
                json!({"filter_rule": [{"attribute": "deleted", "operator": "is", "value": "1"}]}),
            ),
        )
        .await;
    assert_eq!(r.body["meta"]["total"], 5);
    e.api(
        SUITE,
        Method::POST,
        "/contacts/bulk_destroy",
        Some(json!({})),
    )
    .await
    .errors(400);
}

// docs/freshworks-api.md §6: lists and memberships.
#[tokio::test]
async fn lists_and_membership_changes() {
    let e = env().await;
    let r = e.get(FM, "/lists").await;
    assert_eq!(r.body["meta"]["total"], 5);
    assert!(r.body["lists"][0]["id"].as_u64().unwrap() > u32::MAX as u64);
    let r = e
        .api(
            FM,
            Method::POST,
            "/lists",
            Some(json!({"name": "Webinar June"})),
        )
        .await;
    assert_eq!(r.status, 200);
    let list = r.body["list"]["id"].as_u64().unwrap();
    assert_eq!(r.body["list"]["name"], "Webinar June");
    assert_eq!(
        e.api(
            FM,
            Method::POST,
            "/lists",
            Some(json!({"name": "webinar june"}))
        )
        .await
        .errors(400),
        vec!["Name has already been taken"]
    );
    e.api(FM, Method::POST, "/lists", Some(json!({})))
        .await
        .errors(400);
    let r = e
        .api(
            FM,
            Method::PUT,
            &format!("/lists/{list}"),
            Some(json!({"name": "Webinar July"})),
        )
        .await;
    assert_eq!(r.body["list"]["name"], "Webinar July");
    e.api(FM, Method::PUT, "/lists/42", Some(json!({"name": "x"})))
        .await
        .errors(404);

    let view = e.all_view(FM, "contacts").await;
    let some = ids(
        &e.get(FM, &format!("/contacts/view/{view}?per_page=4"))
            .await
            .body,
        "contacts",
    );
    let r = e
        .api(
            FM,
            Method::PUT,
            &format!("/lists/{list}/add_contacts"),
            Some(json!({"ids": some})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body["message"].is_string());
    let members = e
        .get(FM, &format!("/contacts/lists/{list}?per_page=100"))
        .await;
    let mut got = ids(&members.body, "contacts");
    got.sort();
    let mut want = some.clone();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(members.body["meta"]["total"], 4);
    e.api(
        FM,
        Method::PUT,
        &format!("/lists/{list}/remove_contacts"),
        Some(json!({"ids": [some[0]]})),
    )
    .await;
    assert_eq!(
        e.get(FM, &format!("/contacts/lists/{list}")).await.body["meta"]["total"],
        3
    );
    // Move everything to a second list.
    let other = e
        .api(FM, Method::POST, "/lists", Some(json!({"name": "Moved"})))
        .await
        .body["list"]["id"]
        .as_u64()
        .unwrap();
    e.api(
        FM,
        Method::PUT,
        &format!("/lists/{other}/move_contacts"),
        Some(json!({"all": true, "from_list_id": list})),
    )
    .await;
    assert_eq!(
        e.get(FM, &format!("/contacts/lists/{list}")).await.body["meta"]["total"],
        0
    );
    assert_eq!(
        e.get(FM, &format!("/contacts/lists/{other}")).await.body["meta"]["total"],
        3
    );
    e.api(
        FM,
        Method::PUT,
        &format!("/lists/{other}/remove_contacts"),
        Some(json!({"all": true})),
    )
    .await;
    assert_eq!(
        e.get(FM, &format!("/contacts/lists/{other}")).await.body["meta"]["total"],
        0
    );
    e.get(FM, "/contacts/lists/42").await.errors(404);
    e.api(
        FM,
        Method::PUT,
        "/lists/42/add_contacts",
        Some(json!({"ids": [1]})),
    )
    .await
    .errors(404);
    // Inspect memberships through include=lists.
    let r = e
        .get(FM, &format!("/contacts/{}?include=lists", some[1]))
        .await;
    let in_lists = r.body["contact"]["list_ids"].as_array().unwrap().clone();
    assert!(!in_lists.contains(&json!(list)) && !in_lists.contains(&json!(other)));
    e.api(
        FM,
        Method::PUT,
        &format!("/lists/{list}/add_contacts"),
        Some(json!({"ids": [some[1]]})),
    )
    .await;
    let r = e
        .get(FM, &format!("/contacts/{}?include=lists", some[1]))
        .await;
    assert!(
        r.body["contact"]["list_ids"]
            .as_array()
            .unwrap()
            .contains(&json!(list))
    );
}

// docs/freshworks-api.md §3.5: subscription fields: 0–4 accepted, kept unless written.
#[tokio::test]
async fn subscription_status_and_dnd() {
    let e = env().await;
    for s in 0..=4 {
        let c = e.create_contact(FM, json!({"email": format!("s{s}@x.example"), "subscription_status": s, "subscription_types": "1;2"})).await;
        assert_eq!(c["subscription_status"], s);
        assert_eq!(c["subscription_types"], "1;2");
    }
    e.api(
        FM,
        Method::POST,
        "/contacts",
        Some(json!({"contact": {"subscription_status": 5}})),
    )
    .await
    .errors(400);
    let c = e
        .create_contact(
            FM,
            json!({"email": "dnd@x.example", "subscription_status": 0, "do_not_disturb": true}),
        )
        .await;
    let id = c["id"].as_u64().unwrap();
    assert_eq!(c["do_not_disturb"], true);
    let r = e
        .api(
            FM,
            Method::PUT,
            &format!("/contacts/{id}"),
            Some(json!({"contact": {"first_name": "Still"}})),
        )
        .await;
    assert_eq!(r.body["contact"]["subscription_status"], 0);
    assert_eq!(r.body["contact"]["do_not_disturb"], true);
    // Seeded data has a mix of consent states.
    let state = e.ctl(FM, Method::GET, "/state", None).await;
    let statuses: std::collections::BTreeSet<u64> = state.body["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["subscription_status"].as_u64().unwrap())
        .collect();
    assert!(
        statuses.contains(&0) && statuses.contains(&1),
        "{statuses:?}"
    );
    // DND switched off: the field disappears.
    e.switches(FM, json!({"do_not_disturb_field": false})).await;
    assert!(
        e.get(FM, &format!("/contacts/{id}")).await.body["contact"]
            .get("do_not_disturb")
            .is_none()
    );
}

// docs/freshworks-api.md §8: hourly and per-minute limits, headers, 429 body, 4xx counted, windows reset.
#[tokio::test]
async fn rate_limits_hourly_and_per_minute() {
    let e = env().await;
    e.switches(SUITE, json!({"hourly_limit": 5})).await;
    let url = format!("{}/contacts/filters", e.account(SUITE).api_base);
    let r = e.get(SUITE, "/contacts/filters").await;
    assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("4"));
    let reset: i64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert!(
        (1..=3600).contains(&reset),
        "seconds until the hour: {reset}"
    );
    // A 401 counts too.
    let r = e.raw(Method::GET, &url, &[], None).await;
    assert_eq!(
        (r.status, r.header("x-ratelimit-remaining")),
        (401, Some("3"))
    );
    for left in ["2", "1", "0"] {
        assert_eq!(
            e.get(SUITE, "/contacts/filters")
                .await
                .header("x-ratelimit-remaining"),
            Some(left)
        );
    }
    let r = e.get(SUITE, "/contacts/filters").await;
    assert_eq!(r.errors(429), vec!["Too many requests"]);
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
    assert!(r.header("retry-after").is_none());
    e.switches(
        SUITE,
        json!({"send_retry_after": true, "reset_header": "epoch"}),
    )
    .await;
    let r = e.get(SUITE, "/contacts/filters").await;
    assert_eq!(r.status, 429);
    let ra: i64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(ra >= 1);
    let epoch: i64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert_eq!(epoch % 3600, 0);
    // Other accounts have their own budget.
    assert_eq!(e.get(FM, "/contacts/filters").await.status, 200);
    // Next clock hour: fresh window.
    e.advance(SUITE, 3600).await;
    assert_eq!(e.get(SUITE, "/contacts/filters").await.status, 200);

    e.switches(SUITE, json!({"hourly_limit": 1000, "minute_limit": 2}))
        .await;
    e.advance(SUITE, 60).await;
    assert_eq!(e.get(SUITE, "/contacts/filters").await.status, 200);
    assert_eq!(e.get(SUITE, "/contacts/filters").await.status, 200);
    let r = e.get(SUITE, "/contacts/filters").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-ratelimit-limit"), Some("2"));
    e.advance(SUITE, 60).await;
    assert_eq!(e.get(SUITE, "/contacts/filters").await.status, 200);
    // Control API is never limited.
    assert_eq!(
        e.ctl(SUITE, Method::GET, "/rate_limit", None).await.status,
        200
    );
}

#[tokio::test]
async fn rate_limits_can_be_disabled_at_start() {
    let e = env_with(SandboxOptions {
        rate_limits_enabled: false,
        ..SandboxOptions::default()
    })
    .await;
    let r = e.get(SUITE, "/contacts/filters").await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-ratelimit-limit").is_none());
}

// Selectors (reference data) and lifecycle stages.
#[tokio::test]
async fn selectors_answer_their_plural_key() {
    let e = env().await;
    let r = e.get(SUITE, "/selector/owners").await;
    assert_eq!(r.body["users"].as_array().unwrap().len(), 3);
    let r = e.get(SUITE, "/selector/lifecycle_stages").await;
    let stages = r.body["lifecycle_stages"].as_array().unwrap();
    assert_eq!(stages[0]["name"], "Lead");
    assert!(stages[0]["contact_status_ids"].as_array().unwrap().len() > 1);
    assert!(e.get(CLASSIC, "/selector/lead_stages").await.body["lead_stages"].is_array());
    e.get(SUITE, "/selector/nope").await.errors(404);
}

// Classic leads: nested company, conversion to a contact.
#[tokio::test]
async fn classic_leads_and_conversion() {
    let e = env().await;
    let r = e
        .api(CLASSIC, Method::POST, "/leads", Some(json!({"lead": {"first_name": "Leo", "last_name": "Lead", "email": "leo@x.example",
            "company": {"name": "Lead Co", "number_of_employees": "40"}, "custom_field": {"cf_plan": "Free"}}})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let lead = &r.body["lead"];
    assert_eq!(lead["company"]["name"], "Lead Co");
    assert_eq!(lead["company"]["number_of_employees"], 40);
    assert_eq!(lead["do_not_disturb"], false);
    assert!(lead["updated_at"].as_str().unwrap().ends_with("+05:30"));
    let id = lead["id"].as_u64().unwrap();
    let r = e
        .api(
            CLASSIC,
            Method::POST,
            &format!("/leads/{id}/convert"),
            Some(json!({"lead": {"job_title": "Buyer"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let c = &r.body["contact"];
    assert_eq!(c["email"], "leo@x.example");
    assert_eq!(c["job_title"], "Buyer");
    assert_eq!(c["custom_field"]["cf_plan"], "Free");
    assert_eq!(c["sales_accounts"][0]["name"], "Lead Co");
    e.get(CLASSIC, &format!("/leads/{id}")).await.errors(404);
    let r = e
        .api(CLASSIC, Method::POST, "/leads/upsert", Some(json!({"unique_identifier": {"emails": "leo@x.example"}, "lead": {"first_name": "Again"}})))
        .await;
    assert_ne!(
        r.body["lead"]["id"],
        json!(id),
        "a converted lead no longer matches"
    );
}

// Freshmarketer marketing and standalone trees.
#[tokio::test]
async fn freshmarketer_events_and_standalone_calls() {
    let e = env().await;
    let fm = e.account(FM).base_url.clone();
    let token = format!("Token token={}", e.key(FM));
    let c = e.create_contact(FM, json!({"email": "mk@x.example"})).await;
    let id = c["id"].as_u64().unwrap();
    let r = e
        .raw(
            Method::POST,
            &format!("{fm}/crm/marketer/mas/api/v1/events?email=mk@x.example&event_name=signup"),
            &[("authorization", &token)],
            Some(json!({"plan": "pro"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = e
        .raw(
            Method::POST,
            &format!("{fm}/crm/marketer/mas/api/v1/events?email=zz@x.example&event_name=signup"),
            &[("authorization", &token)],
            None,
        )
        .await;
    r.errors(404);
    let state = e.ctl(FM, Method::GET, "/state", None).await;
    assert_eq!(state.body["events"][0]["event_name"], "signup");
    assert_eq!(state.body["events"][0]["contact_id"], id);

    let key = e.key(FM);
    let lists = e.get(FM, "/lists").await;
    let list = lists.body["lists"][0]["id"].as_u64().unwrap();
    let r = e
        .raw(Method::PUT, &format!("{fm}/mas/api/v1/contacts"), &[("fm-token", &key)], Some(json!({"status": "unsubscribed", "email": "MK@x.example", "lists": [list], "first_name": "Mk"})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["contact"]["id"], id);
    assert_eq!(r.body["contact"]["subscription_status"], 0);
    assert_eq!(r.body["contact"]["list_ids"], json!([list]));
    let r = e
        .raw(
            Method::GET,
            &format!("{fm}/mas/api/v1/contacts/mk@x.example"),
            &[("fm-token", &key)],
            None,
        )
        .await;
    assert_eq!(r.body["contact"]["id"], id);
    let r = e
        .raw(
            Method::GET,
            &format!("{fm}/mas/api/v1/contacts/{id}"),
            &[("fm-token", &key)],
            None,
        )
        .await;
    assert_eq!(r.body["contact"]["first_name"], "Mk");
    let r = e
        .raw(
            Method::PATCH,
            &format!("{fm}/mas/api/v1/lists/{list}/subscribers/{id}/unsubscribe"),
            &[("fm-token", &key)],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let r = e.get(FM, &format!("/contacts/{id}?include=lists")).await;
    assert_eq!(r.body["contact"]["list_ids"], json!([]));
    let state = e.ctl(FM, Method::GET, "/state", None).await;
    assert_eq!(
        state.body["list_unsubscribes"],
        json!([{"list_id": list, "contact_id": id}])
    );
    let r = e
        .raw(
            Method::PUT,
            &format!("{fm}/mas/api/v1/contacts"),
            &[("fm-token", &key)],
            Some(json!({"status": "maybe", "email": "mk@x.example"})),
        )
        .await;
    r.errors(400);
}

// Control API: inspect, edit as a user, consent, delete as a user, seed, reset, keys.
#[tokio::test]
async fn control_api_per_account() {
    let e = env().await;
    let c = first_contact(&e, SUITE).await;
    let id = c["id"].as_u64().unwrap();
    let before = c["updated_at"].clone();
    let r = e
        .ctl(
            SUITE,
            Method::PATCH,
            &format!("/records/contacts/{id}"),
            Some(json!({"job_title": "Edited in app"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let after = e.get(SUITE, &format!("/contacts/{id}")).await.body["contact"].clone();
    assert_eq!(after["job_title"], "Edited in app");
    assert_ne!(after["updated_at"], before);
    let users = e.get(SUITE, "/selector/owners").await.body["users"].clone();
    assert_eq!(
        after["updater_id"], users[1]["id"],
        "edited by an app user, not the API user"
    );
    let r = e
        .ctl(
            SUITE,
            Method::POST,
            &format!("/records/contacts/{id}/consent"),
            Some(json!({"do_not_disturb": true, "subscription_status": 0})),
        )
        .await;
    assert_eq!(r.body["contact"]["do_not_disturb"], true);
    assert_eq!(r.body["contact"]["subscription_status"], 0);
    e.ctl(
        SUITE,
        Method::POST,
        &format!("/records/contacts/{id}/consent"),
        Some(json!({})),
    )
    .await;
    let r = e
        .ctl(
            SUITE,
            Method::DELETE,
            &format!("/records/contacts/{id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let state = e.ctl(SUITE, Method::GET, "/state", None).await;
    let rec = state.body["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(rec["is_deleted"], true);
    assert!(rec["list_ids"].is_array());
    assert_eq!(state.body["lists"].as_array().unwrap().len(), 5);
    assert!(state.body["lists"][0]["contact_ids"].is_array());
    e.ctl(
        SUITE,
        Method::POST,
        &format!("/records/contacts/{id}/restore"),
        None,
    )
    .await;
    assert_eq!(
        e.get(SUITE, &format!("/contacts/{id}")).await.body["contact"]["is_deleted"],
        false
    );
    // Create as a user; list membership as a user.
    let r = e
        .ctl(
            SUITE,
            Method::POST,
            "/records/contacts",
            Some(json!({"email": "app@x.example"})),
        )
        .await;
    let nid = r.body["contact"]["id"].as_u64().unwrap();
    let list = state.body["lists"][0]["id"].as_u64().unwrap();
    let r = e
        .ctl(
            SUITE,
            Method::PUT,
            &format!("/lists/{list}/members"),
            Some(json!({"add": [nid]})),
        )
        .await;
    assert_eq!(r.body["added"], 1);
    assert_eq!(
        e.ctl(SUITE, Method::GET, "/records/leads", None)
            .await
            .status,
        404,
        "Suite has no leads"
    );
    // Keys: revoke, rotate, restore.
    let old = e.key(SUITE);
    e.ctl(SUITE, Method::POST, "/auth/revoke", None).await;
    assert_eq!(e.get(SUITE, "/contacts/filters").await.status, 401);
    let new = e.ctl(SUITE, Method::POST, "/auth/rotate", None).await.body["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new, old);
    assert_eq!(new.len(), 22);
    assert_eq!(
        e.get(SUITE, "/contacts/filters").await.status,
        401,
        "old key refused"
    );
    let url = format!("{}/contacts/filters", e.account(SUITE).api_base);
    let r = e
        .raw(
            Method::GET,
            &url,
            &[("authorization", &format!("Token token={new}"))],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    e.ctl(SUITE, Method::POST, "/auth/restore", None).await;
    assert_eq!(e.get(SUITE, "/contacts/filters").await.status, 200);
    // Seed anew, then reset back to it.
    let r = e
        .ctl(
            SUITE,
            Method::POST,
            "/seed",
            Some(json!({"seed": 5, "count": 12})),
        )
        .await;
    assert_eq!(r.body["contacts"], 12);
    e.create_contact(SUITE, json!({"email": "extra@x.example"}))
        .await;
    e.switches(SUITE, json!({"create_status": 201})).await;
    let r = e.ctl(SUITE, Method::POST, "/reset", None).await;
    assert_eq!(r.status, 200);
    let view = e.all_view(SUITE, "contacts").await;
    assert_eq!(
        e.get(SUITE, &format!("/contacts/view/{view}")).await.body["meta"]["total"],
        12
    );
    assert_eq!(
        e.ctl(SUITE, Method::GET, "/switches", None).await.body["create_status"],
        200
    );
    let info = e.ctl(SUITE, Method::GET, "/info", None).await;
    assert_eq!(info.body["api_prefix"], "/crm/sales/api");
    assert_eq!(
        e.ctl(SUITE, Method::PUT, "/switches", Some(json!({"nope": 1})))
            .await
            .status,
        400
    );
}

// Seed: the same people across accounts, sometimes with different email case.
#[tokio::test]
async fn seeded_accounts_share_people() {
    let e = env().await;
    let emails = |v: &Value| -> Vec<String> {
        v["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["email"].as_str().map(str::to_owned))
            .collect()
    };
    let suite = emails(&e.ctl(SUITE, Method::GET, "/state", None).await.body);
    let fm = emails(&e.ctl(FM, Method::GET, "/state", None).await.body);
    let lower: std::collections::BTreeSet<String> =
        suite.iter().map(|s| s.to_lowercase()).collect();
    let shared = fm
        .iter()
        .filter(|m| lower.contains(&m.to_lowercase()))
        .count();
    assert!(shared >= 10, "shared people: {shared}");
    let state = e.ctl(SUITE, Method::GET, "/state", None).await;
    let no_email = state.body["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["email"].is_null())
        .count();
    assert!(no_email >= 1, "some contacts have no email");
    let dnd = state.body["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["do_not_disturb"] == true)
        .count();
    assert!(dnd >= 1);
}
