//! Connector calls against scripted Freshworks answers (native, through
//! `tandem_sdk::testing`): each test lists the exact requests the call must send, in
//! order, with the answers, so the request counts quoted in the docs are checked here.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value as Json, json};
use tandem_freshworks::App;
use tandem_sdk::http::{Method, Request, Response};
use tandem_sdk::{
    CreateOp, Error, Field, Lookup, MembershipOp, Op, Page, PullRequest, UpdateOp, Value, Write,
    testing,
};

const BASE: &str = "http://127.0.0.1:9/crm/sales/api/";

/// One expected request and its answer.
struct Step {
    method: Method,
    /// Path and query after the API root; a trailing `*` matches any rest.
    path: String,
    /// When set, the request body must equal this.
    body: Option<Json>,
    status: u16,
    headers: Vec<(String, String)>,
    answer: Vec<u8>,
}

fn step(method: Method, path: &str, status: u16, answer: Json) -> Step {
    Step {
        method,
        path: path.to_owned(),
        body: None,
        status,
        headers: vec![],
        answer: serde_json::to_vec(&answer).unwrap(),
    }
}

fn get(path: &str, answer: Json) -> Step {
    step(Method::Get, path, 200, answer)
}

fn post(path: &str, body: Json, answer: Json) -> Step {
    Step {
        body: Some(body),
        ..step(Method::Post, path, 200, answer)
    }
}

fn put(path: &str, body: Json, answer: Json) -> Step {
    Step {
        body: Some(body),
        ..step(Method::Put, path, 200, answer)
    }
}

/// Installs the script; returns a handle that checks it was used up.
fn script(settings: &[(&str, &str)], steps: Vec<Step>) -> Rc<RefCell<VecDeque<Step>>> {
    testing::reset();
    testing::set_config("base-url", BASE);
    for (k, v) in settings {
        testing::set_config(k, v);
    }
    let steps = Rc::new(RefCell::new(VecDeque::from(steps)));
    let queue = steps.clone();
    testing::mock_http(move |req: &Request| {
        let path = req
            .url
            .strip_prefix(BASE)
            .unwrap_or_else(|| panic!("unexpected URL {}", req.url));
        let step = queue
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| panic!("unexpected request {:?} {path}", req.method));
        let matches = match step.path.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == step.path,
        };
        assert!(
            req.method == step.method && matches,
            "expected {:?} {}, got {:?} {path}",
            step.method,
            step.path,
            req.method
        );
        if let Some(expected) = &step.body {
            let sent: Json =
                serde_json::from_slice(req.body.as_deref().unwrap_or_default()).unwrap();
            assert_eq!(&sent, expected, "body of {path}");
        }
        Ok(Response {
            status: step.status,
            headers: step.headers,
            body: step.answer,
        })
    });
    steps
}

fn done(steps: &Rc<RefCell<VecDeque<Step>>>) {
    let left: Vec<String> = steps.borrow().iter().map(|s| s.path.clone()).collect();
    assert!(left.is_empty(), "requests not sent: {left:?}");
}

fn contact(id: u64, email: &str, updated_at: &str) -> Json {
    json!({"id": id, "email": email, "first_name": "F", "last_name": "L",
           "emails": [{"id": 1, "value": email, "is_primary": true, "_destroy": false}],
           "updated_at": updated_at, "created_at": "2024-01-01T00:00:00Z", "subscription_status": 1,
           "custom_field": {"cf_days": "Monday;Friday"}})
}

fn fields_metadata() -> Json {
    json!({"fields": [
        {"name": "first_name", "label": "First name", "type": "text", "default": true},
        {"name": "emails", "label": "Emails", "type": "group_field", "default": true},
        {"name": "cf_days", "label": "Days", "type": "multi_select_dropdown", "default": false,
         "choices": [{"id": 1, "value": "Monday"}, {"id": 2, "value": "Friday"}]}
    ]})
}

fn filters() -> Json {
    json!({"filters": [{"id": 11, "name": "My Contacts"}, {"id": 12, "name": "All Contacts"}]})
}

fn pull_req(cursor: Option<String>, full: bool, container: Option<&str>) -> PullRequest {
    PullRequest {
        entity: "contacts".into(),
        container: container.map(str::to_owned),
        cursor,
        full,
        page_size: 500,
    }
}

fn decode(cursor: &Option<String>) -> Json {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(cursor.as_deref().unwrap()).unwrap()).unwrap()
}

fn view(page: u32) -> String {
    format!("contacts/view/12?page={page}&per_page=100&sort=updated_at&sort_type=desc")
}

fn view4(page: u32) -> String {
    format!("contacts/view/12?page={page}&per_page=4&sort=updated_at&sort_type=desc")
}

/// 250 contacts: fields + filters + 3 pages = 5 requests; the checkpoint is the newest
/// `updated_at` of the first page.
#[test]
fn full_listing_pages_and_checkpoints() {
    let page = |from: u64, n: u64, minute: u64| -> Json {
        let items: Vec<Json> = (from..from + n)
            .map(|i| {
                contact(
                    17_000_000_000 + i,
                    &format!("p{i}@example.com"),
                    &format!("2024-05-01T10:{minute:02}:00+02:00"),
                )
            })
            .collect();
        json!({"contacts": items, "meta": {"total_pages": 3, "total": 250}})
    };
    let steps = script(
        &[],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            get("contacts/filters", filters()),
            get(&view(1), page(0, 100, 59)),
            get(&view(2), page(100, 100, 30)),
            get(&view(3), page(200, 50, 10)),
        ],
    );
    let mut cursor = None;
    let mut pages: Vec<Page> = Vec::new();
    loop {
        let page =
            tandem_freshworks::pull(App::Freshsales, pull_req(cursor.clone(), true, None)).unwrap();
        let more = page.more;
        cursor = page.next_cursor.clone();
        pages.push(page);
        if !more {
            break;
        }
    }
    done(&steps);
    assert_eq!(
        pages.iter().map(|p| p.records.len()).collect::<Vec<_>>(),
        [100, 100, 50]
    );
    let first = &pages[0].records[0];
    assert_eq!(first.id, "17000000000");
    assert_eq!(first.updated_at.as_deref(), Some("2024-05-01T08:59:00Z"));
    assert_eq!(
        first.get("cf_days"),
        Some(&Value::texts(["Monday", "Friday"]))
    );
    assert_eq!(first.text("subscription_status"), Some("subscribed"));
    let checkpoint = decode(&cursor);
    assert_eq!(checkpoint["phase"], "done");
    assert_eq!(checkpoint["checkpoint"], "2024-05-01T08:59:00Z");
    assert_eq!(checkpoint["view"], "12");
    assert!(pages.iter().all(|p| p.deleted.is_empty()));
}

/// The next run: one view page that reaches past the window, then the deleted search
/// (2 requests; the view id and field types are remembered).
#[test]
fn incremental_run_stops_at_the_window_and_lists_deletions() {
    // A checkpoint from a previous run. Pages of 4, so
    // that the first page below is full while 40 more follow.
    let previous = json!({"v": 1, "entity": "contacts", "phase": "done", "page": 1, "per_page": 4,
                          "view": "12", "checkpoint": "2024-05-01T10:00:00Z"});
    let cursor = Some(URL_SAFE_NO_PAD.encode(previous.to_string()));
    let listing = json!({"contacts": [
        contact(3, "c@example.com", "2024-05-01T12:00:05+02:00"),   // 10:00:05Z: new
        {"id": 4, "is_deleted": true, "updated_at": "2024-05-01T10:00:03Z"},
        contact(2, "b@example.com", "2024-05-01T09:59:00Z"),         // inside the 120 s overlap
        contact(1, "a@example.com", "2024-05-01T09:00:00Z"),         // before the window: the end
    ], "meta": {"total_pages": 40, "total": 4000}});
    let deleted_query = json!({"filter_rule": [
        {"attribute": "deleted", "operator": "is", "value": 1},
        {"attribute": "updated_at", "operator": "is_after", "value": "2024-05-01T09:58:00Z"}],
        "sort": "updated_at", "sort_type": "desc"});
    // Neither the cursor nor the storage has field types: the metadata is fetched once
    // the first page has records to convert.
    let steps = script(
        &[],
        vec![
            get(&view4(1), listing),
            get("settings/contacts/fields", fields_metadata()),
            post(
                "filtered_search/contact?page=1&per_page=4",
                deleted_query,
                json!({"contacts": [{"id": 9, "is_deleted": true}, {"id": "10"}], "meta": {"total": 2}}),
            ),
        ],
    );
    let by_four = |cursor| PullRequest {
        page_size: 4,
        ..pull_req(cursor, false, None)
    };
    let page = tandem_freshworks::pull(App::Freshsales, by_four(cursor)).unwrap();
    done(&steps);
    assert!(!page.more);
    assert_eq!(
        page.records
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        ["3", "2"]
    );
    assert_eq!(page.deleted, ["4", "9", "10"]);
    let next = decode(&page.next_cursor);
    assert_eq!(next["checkpoint"], "2024-05-01T10:00:05Z");

    // An idle run: nothing new; the checkpoint does not move back by the overlap. The
    // plugin's storage has lost its cache: the field types travel in the cursor.
    let steps = script(
        &[],
        vec![
            get(
                &view4(1),
                json!({"contacts": [contact(3, "c@example.com", "2024-05-01T10:00:05Z")], "meta": {"total_pages": 1}}),
            ),
            step(
                Method::Post,
                "filtered_search/contact?page=1&per_page=4",
                200,
                json!({"contacts": [], "meta": {"total": 0}}),
            ),
        ],
    );
    let idle = tandem_freshworks::pull(App::Freshsales, by_four(page.next_cursor.clone())).unwrap();
    done(&steps);
    assert_eq!(
        idle.records.len(),
        1,
        "the record at the checkpoint is listed again (overlap)"
    );
    assert_eq!(
        idle.records[0].get("cf_days"),
        Some(&Value::texts(["Monday", "Friday"]))
    );
    assert!(idle.deleted.is_empty());
    assert_eq!(
        decode(&idle.next_cursor)["checkpoint"],
        "2024-05-01T10:00:05Z"
    );
}

/// A Freshmarketer list: its own listing path; a cursor of another scope is refused.
#[test]
fn list_scope() {
    let steps = script(
        &[],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            get(
                "contacts/lists/70000000123?page=1&per_page=100&sort=updated_at&sort_type=desc",
                json!({"contacts": [contact(5, "e@example.com", "2024-05-01T10:00:00Z")], "meta": {"total_pages": 1, "total": 1}}),
            ),
        ],
    );
    let page = tandem_freshworks::pull(
        App::Freshmarketer,
        pull_req(None, false, Some("70000000123")),
    )
    .unwrap();
    done(&steps);
    assert_eq!(page.records.len(), 1);
    assert_eq!(decode(&page.next_cursor)["list"], "70000000123");
    let err = tandem_freshworks::pull(
        App::Freshmarketer,
        pull_req(page.next_cursor.clone(), false, None),
    )
    .unwrap_err();
    assert!(matches!(err, Error::CursorExpired(_)), "{err:?}");
    let err =
        tandem_freshworks::pull(App::Freshsales, pull_req(None, false, Some("1"))).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
}

/// A remembered view id that is gone is looked up again.
#[test]
fn stale_view_is_resolved_again() {
    let previous = json!({"v": 1, "entity": "contacts", "phase": "done", "page": 1, "per_page": 100,
                          "view": "99", "checkpoint": "2024-05-01T10:00:00Z"});
    let steps = script(
        &[],
        vec![
            // An empty listing converts nothing: no field metadata is fetched.
            step(
                Method::Get,
                "contacts/view/99?*",
                404,
                json!({"errors": {"code": 404, "message": "View not found"}}),
            ),
            get("contacts/filters", filters()),
            get(
                &view(1),
                json!({"contacts": [], "meta": {"total_pages": 0, "total": 0}}),
            ),
            step(
                Method::Post,
                "filtered_search/contact?page=1&per_page=100",
                200,
                json!({"contacts": []}),
            ),
        ],
    );
    let page = tandem_freshworks::pull(
        App::Freshsales,
        pull_req(
            Some(URL_SAFE_NO_PAD.encode(previous.to_string())),
            false,
            None,
        ),
    )
    .unwrap();
    done(&steps);
    assert_eq!(decode(&page.next_cursor)["view"], "12");
    assert_eq!(
        decode(&page.next_cursor)["checkpoint"],
        "2024-05-01T10:00:00Z"
    );
}

/// HTTP failures of a pull become the contract's errors.
#[test]
fn pull_errors() {
    let limited = Step {
        headers: vec![
            ("X-RateLimit-Remaining".into(), "0".into()),
            ("X-RateLimit-Reset".into(), "45".into()),
        ],
        ..step(
            Method::Get,
            "contacts/filters",
            429,
            json!({"errors": {"code": 429, "message": ["Too many requests"]}}),
        )
    };
    let cases: Vec<(Step, Error)> = vec![
        (
            limited,
            Error::rate_limited(
                Some(45_000),
                "GET contacts/filters: HTTP 429: Too many requests",
            ),
        ),
        (
            step(
                Method::Get,
                "contacts/filters",
                401,
                json!({"login": "failed", "message": "Incorrect or expired API key"}),
            ),
            Error::unauthorized("GET contacts/filters: HTTP 401: Incorrect or expired API key"),
        ),
        (
            step(
                Method::Get,
                "contacts/filters",
                503,
                json!({"errors": {"code": 503, "message": ["Service unavailable"]}}),
            ),
            Error::transient("GET contacts/filters: HTTP 503: Service unavailable"),
        ),
    ];
    for (first, expected) in cases {
        let steps = script(
            &[],
            vec![get("settings/contacts/fields", fields_metadata()), first],
        );
        let err = tandem_freshworks::pull(App::Freshsales, pull_req(None, true, None)).unwrap_err();
        done(&steps);
        assert_eq!(err, expected);
    }
    // A truncated page.
    let steps = script(
        &[],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            get("contacts/filters", filters()),
            Step {
                answer: br#"{"contacts":[{"id":1,"#.to_vec(),
                ..get(&view(1), json!(null))
            },
        ],
    );
    let err = tandem_freshworks::pull(App::Freshsales, pull_req(None, true, None)).unwrap_err();
    done(&steps);
    assert!(
        matches!(&err, Error::Transient(m) if m.contains("truncated")),
        "{err:?}"
    );
    // Leads on Suite.
    let err = tandem_freshworks::pull(
        App::Freshsales,
        PullRequest {
            entity: "leads".into(),
            ..pull_req(None, true, None)
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)));
}

#[test]
fn classic_leads_listing() {
    testing::reset();
    testing::set_config("base-url", "http://127.0.0.1:9/api/");
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = seen.clone();
    testing::mock_http(move |req: &Request| {
        log.borrow_mut().push(req.url.clone());
        let path = req.url.strip_prefix("http://127.0.0.1:9/api/").unwrap();
        let body = if path.starts_with("leads/filters") {
            json!({"filters": [{"id": 7, "name": "All Leads"}]})
        } else if path.starts_with("settings/leads/fields") {
            json!({"fields": []})
        } else {
            json!({"leads": [{"id": 100, "email": "l@example.com", "company": {"name": "Acme"}, "do_not_disturb": true,
                              "updated_at": "2018-03-21T11:45:41+01:00"}], "meta": {"total_pages": 1}})
        };
        Ok(testing::json_response(200, &body))
    });
    let page = tandem_freshworks::pull(
        App::Freshsales,
        PullRequest {
            entity: "leads".into(),
            ..pull_req(None, true, None)
        },
    )
    .unwrap();
    assert_eq!(
        *seen.borrow(),
        [
            "http://127.0.0.1:9/api/settings/leads/fields",
            "http://127.0.0.1:9/api/leads/filters",
            "http://127.0.0.1:9/api/leads/view/7?page=1&per_page=100&sort=updated_at&sort_type=desc",
        ]
    );
    let lead = &page.records[0];
    assert_eq!(lead.text("company.name"), Some("Acme"));
    assert_eq!(lead.get("do_not_disturb"), Some(&Value::Boolean(true)));
}

#[test]
fn find_by_email_marker_and_ids() {
    let lookup = json!({"contacts": {"contacts": [
        contact(1, "Ann@Example.com", "2024-05-01T10:00:00Z"),
        contact(2, "annie@example.com", "2024-05-01T10:00:00Z")]}});
    let steps = script(
        &[],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            get(
                "lookup?q=ann%40example.com&f=email&entities=contact",
                lookup,
            ),
        ],
    );
    let found = tandem_freshworks::find(
        App::Freshsales,
        "contacts",
        Lookup::Email("ann@example.com".into()),
    )
    .unwrap();
    done(&steps);
    assert_eq!(
        found.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["1"]
    );

    let mut marked = contact(3, "m@example.com", "2024-05-01T10:00:00Z");
    marked["external_id"] = json!("tandem:42");
    let steps = script(
        &[],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            get(
                "lookup?q=tandem%3A42&f=external_id&entities=contact",
                json!({"contacts": {"contacts": [marked]}}),
            ),
        ],
    );
    let found = tandem_freshworks::find(
        App::Freshmarketer,
        "contacts",
        Lookup::Marker("tandem:42".into()),
    )
    .unwrap();
    done(&steps);
    assert_eq!(found.len(), 1);

    let steps = script(
        &[("marker-field", "cf_tandem_id")],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            step(
                Method::Get,
                "lookup?q=x&f=cf_tandem_id&entities=contact",
                404,
                json!({}),
            ),
        ],
    );
    assert!(
        tandem_freshworks::find(App::Freshsales, "contacts", Lookup::Marker("x".into()))
            .unwrap()
            .is_empty()
    );
    done(&steps);

    let steps = script(
        &[],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            get(
                "contacts/1",
                json!({"contact": contact(1, "a@example.com", "2024-05-01T10:00:00Z")}),
            ),
            step(
                Method::Get,
                "contacts/2",
                404,
                json!({"errors": {"code": 404, "message": "not found"}}),
            ),
            get(
                "contacts/3",
                json!({"contact": {"id": 3, "is_deleted": true}}),
            ),
        ],
    );
    let ids = ["1", "2", "3", "abc"].map(str::to_owned).to_vec();
    let found = tandem_freshworks::find(App::Freshsales, "contacts", Lookup::Ids(ids)).unwrap();
    done(&steps);
    assert_eq!(
        found.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["1"]
    );
}

/// `find-many`: 150 addresses are two searches (100 + 50 distinct values), markers one
/// search on the marker field, ids one search plus a `GET` for the id it did not return;
/// each key gets what `find` would return, in order. A search the account refuses falls
/// back to one lookup per value.
#[test]
fn find_many_searches_a_hundred_values_per_request() {
    let emails: Vec<String> = (0..150).map(|i| format!("p{i:03}@example.com")).collect();
    let search = |values: &[String], attribute: &str| -> Json {
        json!({"filter_rule": [{"attribute": attribute, "operator": "is_in", "value": values}]})
    };
    let mut marked = contact(900, "m@example.com", "2024-05-01T10:00:00Z");
    marked["external_id"] = json!("tandem:42");
    let steps = script(
        &[],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            post(
                "filtered_search/contact?page=1&per_page=100",
                search(&emails[..100], "contact_email.email"),
                json!({"contacts": [contact(1, "P000@Example.com", "2024-05-01T10:00:00Z"),
                                    contact(2, "p001@example.com", "2024-05-01T10:00:00Z")],
                       "meta": {"total": 2}}),
            ),
            post(
                "filtered_search/contact?page=1&per_page=100",
                search(&emails[100..], "contact_email.email"),
                json!({"contacts": [contact(3, "p149@example.com", "2024-05-01T10:00:00Z")],
                       "meta": {"total": 1}}),
            ),
            post(
                "filtered_search/contact?page=1&per_page=100",
                search(&["tandem:42".to_owned()], "external_id"),
                json!({"contacts": [marked], "meta": {"total": 1}}),
            ),
            post(
                "filtered_search/contact?page=1&per_page=100",
                json!({"filter_rule": [{"attribute": "id", "operator": "is_in", "value": [3, 7]}]}),
                json!({"contacts": [contact(3, "p149@example.com", "2024-05-01T10:00:00Z")],
                       "meta": {"total": 1}}),
            ),
            step(
                Method::Get,
                "contacts/7",
                404,
                json!({"errors": {"code": 404, "message": "not found"}}),
            ),
        ],
    );
    let mut keys: Vec<Lookup> = emails.iter().cloned().map(Lookup::Email).collect();
    keys.push(Lookup::Marker("tandem:42".into()));
    keys.push(Lookup::Ids(vec!["7".into(), "3".into(), "x".into()]));
    keys.push(Lookup::Email(" P000@EXAMPLE.com ".into()));
    let found = tandem_freshworks::find_many(App::Freshsales, "contacts", keys).unwrap();
    done(&steps);
    let ids = |i: usize| found[i].iter().map(|r| r.id.as_str()).collect::<Vec<_>>();
    assert_eq!(found.len(), 153, "one answer per key");
    assert_eq!(ids(0), ["1"]);
    assert_eq!(ids(1), ["2"]);
    assert!(ids(2).is_empty());
    assert_eq!(ids(149), ["3"]);
    assert_eq!(ids(150), ["900"]);
    assert_eq!(ids(151), ["3"], "ids in their order, missing ones absent");
    assert_eq!(ids(152), ["1"], "addresses compare case-insensitively");

    // The account refuses the search: one lookup per address instead.
    let steps = script(
        &[],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            step(
                Method::Post,
                "filtered_search/contact?page=1&per_page=100",
                400,
                json!({"errors": {"code": 400, "message": ["Invalid filter attribute"]}}),
            ),
            get(
                "lookup?q=a%40example.com&f=email&entities=contact",
                json!({"contacts": {"contacts": [contact(5, "a@example.com", "2024-05-01T10:00:00Z")]}}),
            ),
            get(
                "lookup?q=b%40example.com&f=email&entities=contact",
                json!({"contacts": {"contacts": []}}),
            ),
        ],
    );
    let keys = vec![
        Lookup::Email("b@example.com".into()),
        Lookup::Email("a@example.com".into()),
    ];
    let found = tandem_freshworks::find_many(App::Freshsales, "contacts", keys).unwrap();
    done(&steps);
    assert!(found[0].is_empty());
    assert_eq!(found[1][0].id, "5");
}

/// A search page that comes back short while `meta.total` says more is not the last:
/// the search is read again with other page boundaries, and an answer that stays short
/// fails for now instead of missing a holder (a create would then duplicate it).
#[test]
fn a_search_answer_with_a_short_page_is_read_again_or_refused() {
    let holders: Vec<Json> = (1..=101)
        .map(|i| contact(i, "a@example.com", "2024-05-01T10:00:00Z"))
        .collect();
    let query = json!({"filter_rule": [{"attribute": "contact_email.email", "operator": "is_in", "value": ["a@example.com"]}]});
    let page = |path: &str, items: &[Json]| {
        post(
            path,
            query.clone(),
            json!({"contacts": items, "meta": {"total": 101}}),
        )
    };
    // Page 1 leaves out record 100; read again with pages of 99, it is there.
    let mut short = holders[..98].to_vec();
    short.push(holders[100].clone());
    let steps = script(
        &[],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            page(
                "filtered_search/contact?page=1&per_page=100",
                &holders[..99],
            ),
            page(
                "filtered_search/contact?page=2&per_page=100",
                &holders[100..],
            ),
            page("filtered_search/contact?page=1&per_page=99", &holders[..99]),
            page("filtered_search/contact?page=2&per_page=99", &holders[99..]),
        ],
    );
    let keys = vec![Lookup::Email("a@example.com".into())];
    let found = tandem_freshworks::find_many(App::Freshsales, "contacts", keys.clone()).unwrap();
    done(&steps);
    assert_eq!(found[0].len(), 101);
    assert!(found[0].iter().any(|r| r.id == "100"));
    // Short both times: a passing failure, not an answer without record 100.
    let steps = script(
        &[],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            page(
                "filtered_search/contact?page=1&per_page=100",
                &holders[..99],
            ),
            page(
                "filtered_search/contact?page=2&per_page=100",
                &holders[100..],
            ),
            page("filtered_search/contact?page=1&per_page=99", &short),
            page(
                "filtered_search/contact?page=2&per_page=99",
                &holders[100..],
            ),
        ],
    );
    let err = tandem_freshworks::find_many(App::Freshsales, "contacts", keys).unwrap_err();
    done(&steps);
    assert!(
        matches!(&err, Error::Transient(m) if m.contains("answered 100 of its 101 matches")),
        "{err:?}"
    );
}

fn create(email: Option<&str>, containers: &[&str]) -> Op {
    let mut fields = vec![Field::new("first_name", "New")];
    if let Some(email) = email {
        fields.push(Field::new("email", email));
    }
    Op::Create(CreateOp {
        fields,
        marker: Some(format!("m-{}", email.unwrap_or("none"))),
        containers: containers.iter().map(|c| (*c).to_owned()).collect(),
    })
}

fn writes(ops: Vec<Op>) -> Vec<Write> {
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| Write {
            ref_: format!("w{i}"),
            op,
        })
        .collect()
}

/// Who holds these addresses now: the search every call with creates sends first.
fn holders(emails: &[&str], found: Vec<Json>) -> Step {
    let mut values: Vec<String> = emails.iter().map(|e| e.to_lowercase()).collect();
    values.sort();
    let total = found.len();
    post(
        "filtered_search/contact?page=1&per_page=100",
        json!({"filter_rule": [{"attribute": "contact_email.email", "operator": "is_in", "value": values}]}),
        json!({"contacts": found, "meta": {"total": total}}),
    )
}

/// Five creates with email: the holders' search, bulk upsert, one job poll, one
/// read-back search, one list add: 5 requests for 5 records (and still 5 for 100).
#[test]
fn bulk_creates_with_read_back() {
    let emails = [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
        "bad@example.com",
    ];
    let items: Vec<Json> = emails
        .iter()
        .map(|e| json!({"emails": e, "data": {"first_name": "New", "email": e, "external_id": format!("m-{e}")}}))
        .collect();
    let found: Vec<Json> = emails[..4]
        .iter()
        .enumerate()
        .map(|(i, e)| {
            contact(
                17_000_000_100 + i as u64,
                &e.to_uppercase(),
                "2024-05-01T10:00:00Z",
            )
        })
        .collect();
    let steps = script(
        &[],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            holders(&emails, vec![]),
            post(
                "contacts/bulk_upsert",
                json!({"contacts": items}),
                json!({"job_id": 555}),
            ),
            get(
                "job_statuses/555",
                json!({"status": "completed", "progress": 100, "data": {
            "record_status": {"succeeded": 4, "failed": 1},
            "detailed_failure_report": [{"emails": "bad@example.com", "error_message": ["Email is invalid"]}]}}),
            ),
            post(
                "filtered_search/contact?page=1&per_page=100",
                json!({"filter_rule": [{"attribute": "contact_email.email", "operator": "is_in", "value": &emails[..4]}]}),
                json!({"contacts": found, "meta": {"total": 4}}),
            ),
            put(
                "lists/70000000123/add_contacts",
                json!({"ids": [17_000_000_100_u64, 17_000_000_101_u64]}),
                json!({"message": "ok"}),
            ),
        ],
    );
    let ops = vec![
        create(Some("a@example.com"), &["70000000123"]),
        create(Some("b@example.com"), &["70000000123"]),
        create(Some("c@example.com"), &[]),
        create(Some("d@example.com"), &[]),
        create(Some("bad@example.com"), &[]),
    ];
    let results = tandem_freshworks::push(App::Freshmarketer, "contacts", writes(ops)).unwrap();
    done(&steps);
    assert_eq!(
        results.iter().map(|r| r.ref_.as_str()).collect::<Vec<_>>(),
        ["w0", "w1", "w2", "w3", "w4"]
    );
    for (i, result) in results[..4].iter().enumerate() {
        let record = result.outcome.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(record.id, (17_000_000_100 + i as u64).to_string());
    }
    assert_eq!(
        results[4].outcome,
        Err(Error::invalid(
            "bulk upsert of bad@example.com: Email is invalid"
        ))
    );
}

/// A bulk job that failed as a whole but names its failed records: those are refused
/// as invalid with the app's reason (a retry cannot change that), not retried as if the
/// job might pass; a record it does not name and that is not found is retried.
#[test]
fn failed_bulk_job_with_named_failures_is_invalid_not_transient() {
    let emails = [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
    ];
    let items: Vec<Json> = emails
        .iter()
        .map(|e| json!({"emails": e, "data": {"first_name": "New", "email": e, "external_id": format!("m-{e}")}}))
        .collect();
    let report: Vec<Json> = emails[..3]
        .iter()
        .map(|e| json!({"emails": e, "mobile_number": null, "error_message": ["Mobile number is invalid"]}))
        .collect();
    let steps = script(
        &[],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            holders(&emails, vec![]),
            post(
                "contacts/bulk_upsert",
                json!({"contacts": items}),
                json!({"job_id": 556}),
            ),
            get(
                "job_statuses/556",
                json!({"status": "failed", "progress": 100, "data": {
            "record_status": {"succeeded": 0, "failed": 3},
            "detailed_failure_report": report}}),
            ),
            post(
                "filtered_search/contact?page=1&per_page=100",
                json!({"filter_rule": [{"attribute": "contact_email.email", "operator": "is_in", "value": ["d@example.com"]}]}),
                json!({"contacts": [], "meta": {"total": 0}}),
            ),
        ],
    );
    let ops = emails.iter().map(|e| create(Some(e), &[])).collect();
    let results = tandem_freshworks::push(App::Freshsales, "contacts", writes(ops)).unwrap();
    done(&steps);
    for (result, email) in results[..3].iter().zip(emails) {
        assert_eq!(
            result.outcome,
            Err(Error::invalid(format!(
                "bulk upsert of {email}: Mobile number is invalid"
            )))
        );
    }
    assert!(
        matches!(&results[3].outcome, Err(Error::Transient(_))),
        "{:?}",
        results[3].outcome
    );
}

/// A refused bulk endpoint falls back to one upsert per record.
#[test]
fn bulk_refused_falls_back_to_upserts() {
    let mut steps = vec![
        get("settings/contacts/fields", fields_metadata()),
        holders(&["a@x.io", "b@x.io", "c@x.io", "d@x.io"], vec![]),
        step(
            Method::Post,
            "contacts/bulk_upsert",
            404,
            json!({"errors": {"code": 404, "message": "Not found"}}),
        ),
    ];
    for (i, e) in ["a@x.io", "b@x.io", "c@x.io", "d@x.io"].iter().enumerate() {
        steps.push(post(
            "contacts/upsert",
            json!({"unique_identifier": {"emails": e}, "contact": {"first_name": "New", "email": e, "external_id": format!("m-{e}")}}),
            json!({"contact": contact(i as u64 + 1, e, "2024-05-01T10:00:00Z")}),
        ));
    }
    let steps = script(&[], steps);
    let ops = ["a@x.io", "b@x.io", "c@x.io", "d@x.io"]
        .map(|e| create(Some(e), &[]))
        .to_vec();
    let results = tandem_freshworks::push(App::Freshsales, "contacts", writes(ops)).unwrap();
    done(&steps);
    assert!(results.iter().all(|r| matches!(&r.outcome, Ok(Some(_)))));
}

/// Bulk upsert can be turned off; a create without email is a plain POST; a create into
/// a list on Freshsales is refused without a request.
#[test]
fn single_creates() {
    let steps = script(
        &[("bulk-upsert", "false"), ("marker-field", "cf_tandem_id")],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            holders(&["a@x.io", "l@x.io"], vec![]),
            post(
                "contacts/upsert",
                json!({"unique_identifier": {"emails": "a@x.io"}, "contact": {"first_name": "New", "email": "a@x.io", "custom_field": {"cf_tandem_id": "m-a@x.io"}}}),
                json!({"contact": contact(1, "a@x.io", "2024-05-01T10:00:00Z")}),
            ),
            post(
                "contacts",
                json!({"contact": {"first_name": "New", "custom_field": {"cf_tandem_id": "m-none"}}}),
                json!({"contact": {"id": 2, "first_name": "New"}}),
            ),
        ],
    );
    let ops = vec![
        create(Some("a@x.io"), &[]),
        create(None, &[]),
        create(Some("l@x.io"), &["5"]),
    ];
    let results = tandem_freshworks::push(App::Freshsales, "contacts", writes(ops)).unwrap();
    done(&steps);
    assert_eq!(
        results[1].outcome.as_ref().unwrap().as_ref().unwrap().id,
        "2"
    );
    assert!(matches!(&results[2].outcome, Err(Error::Invalid(m)) if m.contains("no containers")));
}

/// A create never merges into a record it did not make: an address another record
/// holds is created with a plain POST (an account that refuses the duplicate answers
/// `invalid`, with the operator's options), and an address held by an earlier attempt of
/// the same create (its marker) updates that record.
#[test]
fn creates_never_merge_into_another_record() {
    let mut other = contact(7, "kim@x.io", "2024-05-01T10:00:00Z");
    other["external_id"] = json!("someone-else");
    let mut ours = contact(8, "own@x.io", "2024-05-01T10:00:00Z");
    ours["external_id"] = json!("m-own@x.io");
    let mut lee = contact(11, "lee@x.io", "2024-05-01T10:00:00Z");
    lee["external_id"] = json!("someone-else");
    let steps = script(
        &[],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            holders(
                &["kim@x.io", "own@x.io", "lee@x.io", "new@x.io"],
                vec![other, ours, lee],
            ),
            post(
                "contacts",
                json!({"contact": {"first_name": "New", "email": "kim@x.io", "external_id": "m-kim@x.io"}}),
                json!({"contact": contact(9, "kim@x.io", "2024-05-01T11:00:00Z")}),
            ),
            put(
                "contacts/8",
                json!({"contact": {"first_name": "New", "email": "own@x.io", "external_id": "m-own@x.io"}}),
                json!({"contact": contact(8, "own@x.io", "2024-05-01T11:00:00Z")}),
            ),
            Step {
                body: Some(
                    json!({"contact": {"first_name": "New", "email": "lee@x.io", "external_id": "m-lee@x.io"}}),
                ),
                ..step(
                    Method::Post,
                    "contacts",
                    400,
                    json!({"errors": {"code": 400, "message": ["Email has already been taken"]}}),
                )
            },
            post(
                "contacts/upsert",
                json!({"unique_identifier": {"emails": "new@x.io"}, "contact": {"first_name": "New", "email": "new@x.io", "external_id": "m-new@x.io"}}),
                json!({"contact": contact(10, "new@x.io", "2024-05-01T11:00:00Z")}),
            ),
        ],
    );
    let ops = vec![
        create(Some("kim@x.io"), &[]),
        create(Some("own@x.io"), &[]),
        create(Some("lee@x.io"), &[]),
        create(Some("new@x.io"), &[]),
    ];
    let results = tandem_freshworks::push(App::Freshsales, "contacts", writes(ops)).unwrap();
    done(&steps);
    let id = |i: usize| {
        results[i]
            .outcome
            .as_ref()
            .unwrap()
            .as_ref()
            .unwrap()
            .id
            .clone()
    };
    assert_eq!(
        id(0),
        "9",
        "a new record beside the one holding the address"
    );
    assert_eq!(id(1), "8", "the earlier attempt");
    assert!(
        matches!(&results[2].outcome, Err(Error::Invalid(m))
            if m.contains("already been taken") && m.contains("contact 11 already has lee@x.io")
                && m.contains("tandem sync resolve")),
        "{:?}",
        results[2].outcome
    );
    assert_eq!(id(3), "10");
}

/// Updates (with and without a version check), DND and consent, deletes. The versions
/// of the two checked updates are read with one search by id; the one it does not
/// return is read with a `GET`.
#[test]
fn updates_and_deletes() {
    let steps = script(
        &[],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            post(
                "filtered_search/contact?page=1&per_page=100",
                json!({"filter_rule": [{"attribute": "id", "operator": "is_in", "value": [2, 3]}]}),
                json!({"contacts": [{"id": 2, "updated_at": "2024-05-01T12:00:00+02:00"}], "meta": {"total": 1}}),
            ),
            put(
                "contacts/1",
                json!({"contact": {"do_not_disturb": true, "subscription_status": 0}}),
                json!({"contact": {"id": 1, "do_not_disturb": true, "subscription_status": 0, "updated_at": "2024-05-02T00:00:00Z"}}),
            ),
            put(
                "contacts/2",
                json!({"contact": {"last_name": "New"}}),
                json!({"contact": {"id": 2, "last_name": "New"}}),
            ),
            get(
                "contacts/3",
                json!({"contact": {"id": 3, "updated_at": "2024-05-01T11:00:00Z"}}),
            ),
            step(
                Method::Put,
                "contacts/4",
                400,
                json!({"errors": {"code": 400, "message": ["Email is invalid"]}}),
            ),
            post(
                "contacts/bulk_destroy",
                json!({"selected_ids": [10, 11]}),
                json!({"message": "Deleted"}),
            ),
        ],
    );
    let update = |id: &str, version: Option<&str>, fields: Vec<Field>| {
        Op::Update(UpdateOp {
            id: id.into(),
            if_version: version.map(str::to_owned),
            fields,
        })
    };
    let ops = vec![
        update(
            "1",
            None,
            vec![
                Field::new("do_not_disturb", true),
                Field::new("subscription_status", "unsubscribed"),
            ],
        ),
        update(
            "2",
            Some("2024-05-01T10:00:00Z"),
            vec![Field::new("last_name", "New")],
        ),
        update(
            "3",
            Some("2024-05-01T10:00:00Z"),
            vec![Field::new("last_name", "New")],
        ),
        update("4", None, vec![Field::new("email", "nope")]),
        update("5", None, vec![Field::new("display_name", "x")]),
        update("x", None, vec![Field::new("last_name", "New")]),
        Op::Delete("10".into()),
        Op::Delete("11".into()),
    ];
    let results = tandem_freshworks::push(App::Freshsales, "contacts", writes(ops)).unwrap();
    done(&steps);
    let record = results[0].outcome.as_ref().unwrap().as_ref().unwrap();
    assert_eq!(record.text("subscription_status"), Some("unsubscribed"));
    assert_eq!(record.version.as_deref(), Some("2024-05-02T00:00:00Z"));
    assert!(results[1].outcome.is_ok());
    assert!(
        matches!(&results[2].outcome, Err(Error::Conflict(m)) if m.contains("changed since")),
        "{:?}",
        results[2].outcome
    );
    assert_eq!(
        results[3].outcome,
        Err(Error::invalid("PUT contacts/4: HTTP 400: Email is invalid"))
    );
    assert!(matches!(&results[4].outcome, Err(Error::Invalid(m)) if m.contains("read-only")));
    assert!(matches!(&results[5].outcome, Err(Error::NotFound(_))));
    assert_eq!(results[6].outcome, Ok(None));
    assert_eq!(results[7].outcome, Ok(None));

    // One delete: DELETE, and 404 counts as done.
    let steps = script(
        &[],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            step(Method::Delete, "contacts/12", 404, json!({})),
        ],
    );
    let results = tandem_freshworks::push(
        App::Freshsales,
        "contacts",
        writes(vec![Op::Delete("12".into())]),
    )
    .unwrap();
    done(&steps);
    assert_eq!(results[0].outcome, Ok(None));
}

/// When the account refuses the search by id, each checked update reads its record with
/// a `GET` (a version that matches is written, a record that is gone is `not-found`); a
/// transient failure of the search fails the checked updates without writing them.
#[test]
fn version_search_refused_falls_back_to_gets() {
    let search = |status: u16, answer: Json| Step {
        body: Some(
            json!({"filter_rule": [{"attribute": "id", "operator": "is_in", "value": [5, 6]}]}),
        ),
        ..step(
            Method::Post,
            "filtered_search/contact?page=1&per_page=100",
            status,
            answer,
        )
    };
    let ops = || {
        ["5", "6"]
            .into_iter()
            .map(|id| {
                Op::Update(UpdateOp {
                    id: id.into(),
                    if_version: Some("2024-05-01T10:00:00Z".into()),
                    fields: vec![Field::new("last_name", "New")],
                })
            })
            .collect()
    };
    let steps = script(
        &[],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            search(
                400,
                json!({"errors": {"code": 400, "message": ["Invalid filter attribute id"]}}),
            ),
            get(
                "contacts/5",
                json!({"contact": {"id": 5, "updated_at": "2024-05-01T10:00:00Z"}}),
            ),
            put(
                "contacts/5",
                json!({"contact": {"last_name": "New"}}),
                json!({"contact": {"id": 5, "last_name": "New", "updated_at": "2024-05-01T10:05:00Z"}}),
            ),
            step(Method::Get, "contacts/6", 404, json!({})),
        ],
    );
    let results = tandem_freshworks::push(App::Freshsales, "contacts", writes(ops())).unwrap();
    done(&steps);
    let record = results[0].outcome.as_ref().unwrap().as_ref().unwrap();
    assert_eq!(record.version.as_deref(), Some("2024-05-01T10:05:00Z"));
    assert!(
        matches!(&results[1].outcome, Err(Error::NotFound(m)) if m.contains("does not exist")),
        "{:?}",
        results[1].outcome
    );

    let steps = script(
        &[],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            search(503, json!({"errors": {"code": 503, "message": ["busy"]}})),
        ],
    );
    let results = tandem_freshworks::push(App::Freshsales, "contacts", writes(ops())).unwrap();
    done(&steps);
    for result in &results {
        assert!(
            matches!(&result.outcome, Err(Error::Transient(_))),
            "{:?}",
            result.outcome
        );
    }
}

/// After a 429 the remaining writes are not sent; they carry the same error.
#[test]
fn rate_limit_stops_the_batch() {
    let limited = Step {
        headers: vec![("X-RateLimit-Reset".into(), "60".into())],
        ..step(
            Method::Put,
            "contacts/2",
            429,
            json!({"errors": {"code": 429, "message": ["Too many requests"]}}),
        )
    };
    let steps = script(
        &[],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            put(
                "contacts/1",
                json!({"contact": {"last_name": "A"}}),
                json!({"contact": {"id": 1}}),
            ),
            limited,
        ],
    );
    let ops = (1..=4)
        .map(|i| {
            Op::Update(UpdateOp {
                id: i.to_string(),
                if_version: None,
                fields: vec![Field::new("last_name", "A")],
            })
        })
        .collect();
    let results = tandem_freshworks::push(App::Freshsales, "contacts", writes(ops)).unwrap();
    done(&steps);
    assert!(results[0].outcome.is_ok());
    for result in &results[1..] {
        assert!(
            matches!(&result.outcome, Err(Error::RateLimited(info)) if info.retry_after_ms == Some(60_000)),
            "{:?}",
            result.outcome
        );
    }
}

/// List membership (Freshmarketer): one request per 100 ids.
#[test]
fn list_membership() {
    let ids: Vec<String> = (1..=150)
        .map(|i| (17_000_000_000_u64 + i).to_string())
        .collect();
    let first: Vec<u64> = (1..=100).map(|i| 17_000_000_000 + i).collect();
    let rest: Vec<u64> = (101..=150).map(|i| 17_000_000_000 + i).collect();
    let steps = script(
        &[],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            put(
                "lists/7/add_contacts",
                json!({"ids": first}),
                json!({"message": "ok"}),
            ),
            put(
                "lists/7/add_contacts",
                json!({"ids": rest}),
                json!({"message": "ok"}),
            ),
            put(
                "lists/7/remove_contacts",
                json!({"ids": [17_000_000_001_u64]}),
                json!({"message": "ok"}),
            ),
        ],
    );
    let ops = vec![
        Op::AddToContainer(MembershipOp {
            container: "7".into(),
            ids,
        }),
        Op::RemoveFromContainer(MembershipOp {
            container: "7".into(),
            ids: vec!["17000000001".into()],
        }),
        Op::AddToContainer(MembershipOp {
            container: "7".into(),
            ids: vec!["x".into()],
        }),
    ];
    let results = tandem_freshworks::push(App::Freshmarketer, "contacts", writes(ops)).unwrap();
    done(&steps);
    assert_eq!(results[0].outcome, Ok(None));
    assert_eq!(results[1].outcome, Ok(None));
    assert!(matches!(&results[2].outcome, Err(Error::Invalid(_))));
    // Freshsales has no lists.
    let steps = script(
        &[],
        vec![get("settings/contacts/fields", fields_metadata())],
    );
    let results = tandem_freshworks::push(
        App::Freshsales,
        "contacts",
        writes(vec![Op::AddToContainer(MembershipOp {
            container: "7".into(),
            ids: vec!["1".into()],
        })]),
    )
    .unwrap();
    done(&steps);
    assert!(matches!(&results[0].outcome, Err(Error::Invalid(_))));
}

/// Membership writes of one id each (as the engine sends them) share requests: per list
/// and direction, `list-batch-size` ids per request, in the order of the writes; a bad
/// id fails its own write only, an unknown list the writes of that list.
#[test]
fn list_membership_writes_share_requests() {
    let add = |list: &str, id: String| {
        Op::AddToContainer(MembershipOp {
            container: list.into(),
            ids: vec![id],
        })
    };
    let id = |i: u64| 17_000_000_000 + i;
    let mut ops: Vec<Op> = (1..=90).map(|i| add("7", id(i).to_string())).collect();
    ops.push(Op::RemoveFromContainer(MembershipOp {
        container: "8".into(),
        ids: vec![id(1).to_string(), id(2).to_string()],
    }));
    ops.push(add("7", "x".into()));
    ops.push(add("9", id(1).to_string()));
    let ok = |path: &str, range: std::ops::RangeInclusive<u64>| {
        let ids: Vec<u64> = range.map(id).collect();
        put(path, json!({ "ids": ids }), json!({"message": "ok"}))
    };
    let steps = script(
        &[("list-batch-size", "40")],
        vec![
            get("settings/contacts/fields", fields_metadata()),
            ok("lists/7/add_contacts", 1..=40),
            ok("lists/7/add_contacts", 41..=80),
            ok("lists/7/add_contacts", 81..=90),
            ok("lists/8/remove_contacts", 1..=2),
            step(
                Method::Put,
                "lists/9/add_contacts",
                404,
                json!({"errors": {"code": 404, "message": ["List not found"]}}),
            ),
        ],
    );
    let results = tandem_freshworks::push(App::Freshmarketer, "contacts", writes(ops)).unwrap();
    done(&steps);
    assert_eq!(results.len(), 93);
    for result in &results[..91] {
        assert_eq!(result.outcome, Ok(None), "{}", result.ref_);
    }
    assert!(matches!(&results[91].outcome, Err(Error::Invalid(_))));
    assert!(matches!(&results[92].outcome, Err(Error::NotFound(_))));
}

#[test]
fn check_schema_and_containers() {
    let steps = script(&[], vec![get("contacts/filters", filters())]);
    let account = tandem_freshworks::check(App::Freshsales).unwrap();
    done(&steps);
    assert_eq!(account.account_id, "freshworks:127.0.0.1:9");
    assert_eq!(account.display_name, "127.0.0.1:9 (Suite)");

    let steps = script(
        &[("marker-field", "cf_tandem_id")],
        vec![
            get("contacts/filters", filters()),
            get("settings/contacts/fields", fields_metadata()),
        ],
    );
    let err = tandem_freshworks::check(App::Freshsales).unwrap_err();
    done(&steps);
    assert!(
        matches!(&err, Error::Fatal(m) if m.contains("cf_tandem_id")),
        "{err:?}"
    );

    let steps = script(
        &[],
        vec![step(
            Method::Get,
            "contacts/filters",
            403,
            json!({"errors": {"code": 403, "message": ["No API access"]}}),
        )],
    );
    assert_eq!(
        tandem_freshworks::check(App::Freshmarketer).unwrap_err(),
        Error::forbidden("GET contacts/filters: HTTP 403: No API access")
    );
    done(&steps);

    let steps = script(
        &[],
        vec![get("settings/contacts/fields", fields_metadata())],
    );
    let defs = tandem_freshworks::schema(App::Freshmarketer, "contacts").unwrap();
    done(&steps);
    assert!(
        defs.iter()
            .any(|d| d.name == "cf_days" && d.multi_value && d.custom)
    );
    assert!(
        defs.iter()
            .any(|d| d.name == "subscription_status" && d.well_known.as_deref() == Some("consent"))
    );

    let lists: Vec<Json> = (0..100)
        .map(|i| json!({"id": 70_000_000_000_u64 + i, "name": format!("L{i}")}))
        .collect();
    let steps = script(
        &[],
        vec![
            get(
                "lists?page=1&per_page=100",
                json!({"lists": lists, "meta": {"total_pages": 2, "total": 101}}),
            ),
            get(
                "lists?page=2&per_page=100",
                json!({"lists": [{"id": 5, "name": "Newsletter", "contacts_count": 42}], "meta": {"total_pages": 2}}),
            ),
        ],
    );
    let containers = tandem_freshworks::containers(App::Freshmarketer, "contacts").unwrap();
    done(&steps);
    assert_eq!(containers.len(), 101);
    assert_eq!(
        (
            containers[100].id.as_str(),
            containers[100].name.as_str(),
            containers[100].member_count
        ),
        ("5", "Newsletter", Some(42))
    );
    testing::reset();
    testing::set_config("base-url", BASE);
    assert!(
        tandem_freshworks::containers(App::Freshsales, "contacts")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn describe_declares_capabilities() {
    let fs = tandem_freshworks::describe(App::Freshsales);
    assert_eq!(
        (fs.name.as_str(), fs.app.as_str()),
        ("freshsales", "Freshsales")
    );
    assert_eq!(
        fs.entities
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        ["contacts", "leads"]
    );
    let fm = tandem_freshworks::describe(App::Freshmarketer);
    let contacts = &fm.entities[0];
    assert!(contacts.incremental && contacts.containers);
    assert_eq!(contacts.deletes, tandem_sdk::DeleteDetection::Tombstones);
    // A call of contacts carries four bulk batches of 100 (their jobs share the wait).
    assert_eq!(
        (contacts.max_page_size, contacts.max_batch_size),
        (100, 400)
    );
    assert_eq!(
        fm.rate_limits
            .iter()
            .map(|r| (r.requests, r.per_seconds))
            .collect::<Vec<_>>(),
        [(1000, 3600), (400, 60)]
    );
    assert!(!fs.entities[0].containers);
}

/// The requests of 300 bulk creates (three jobs: the second fails as a whole) with
/// `bulk-jobs-in-flight` = `in_flight`, in the order they must be sent.
fn three_jobs(in_flight: usize) -> Vec<Step> {
    let search = |found: Vec<Json>| {
        let total = found.len();
        step(
            Method::Post,
            "filtered_search/contact?page=1&per_page=100",
            200,
            json!({"contacts": found, "meta": {"total": total}}),
        )
    };
    let upsert = |job: u64| {
        step(
            Method::Post,
            "contacts/bulk_upsert",
            200,
            json!({"job_id": job}),
        )
    };
    let poll = |job: u64| {
        let status = if job == 2 { "failed" } else { "completed" };
        get(
            &format!("job_statuses/{job}"),
            json!({"status": status, "progress": 100, "data": {"detailed_failure_report": []}}),
        )
    };
    let read_back = |job: u64| {
        let batch = (job as usize - 1) * 100..job as usize * 100;
        search(
            batch
                .map(|i| {
                    contact(
                        1000 + i as u64,
                        &format!("p{i:03}@x.io"),
                        "2024-05-01T10:00:00Z",
                    )
                })
                .collect(),
        )
    };
    let mut steps = vec![get("settings/contacts/fields", fields_metadata())];
    // Who holds the 300 addresses: one search per 100.
    steps.extend((0..3).map(|_| search(vec![])));
    match in_flight {
        // One job at a time.
        1 => steps.extend([
            upsert(1),
            poll(1),
            read_back(1),
            upsert(2),
            poll(2),
            upsert(3),
            poll(3),
            read_back(3),
        ]),
        // Two jobs submitted before the first poll; the third takes the first free place.
        _ => steps.extend([
            upsert(1),
            upsert(2),
            poll(1),
            poll(2),
            read_back(1),
            upsert(3),
            poll(3),
            read_back(3),
        ]),
    }
    steps
}

/// Bulk jobs in flight together: several submitted before the first status poll, one
/// wait for all of them, results in the order of the writes, a failed job failing only
/// its own writes, and exactly the requests of one job at a time (same count).
#[test]
fn bulk_jobs_in_flight_share_the_wait() {
    let mut counts = Vec::new();
    for in_flight in [2, 1] {
        let expected = three_jobs(in_flight);
        counts.push(expected.len());
        let steps = script(&[("bulk-jobs-in-flight", &in_flight.to_string())], expected);
        let ops = (0..300)
            .map(|i| create(Some(&format!("p{i:03}@x.io")), &[]))
            .collect();
        let results = tandem_freshworks::push(App::Freshsales, "contacts", writes(ops)).unwrap();
        done(&steps);
        assert_eq!(results.len(), 300);
        for (i, result) in results.iter().enumerate() {
            assert_eq!(result.ref_, format!("w{i}"));
            if (100..200).contains(&i) {
                assert!(
                    matches!(&result.outcome, Err(Error::Transient(m)) if m.contains("job failed")),
                    "{i}: {:?}",
                    result.outcome
                );
            } else {
                let record = result.outcome.as_ref().unwrap().as_ref().unwrap();
                assert_eq!(record.id, (1000 + i).to_string(), "in flight: {in_flight}");
            }
        }
    }
    assert_eq!(counts[0], counts[1], "the same requests either way");
}
