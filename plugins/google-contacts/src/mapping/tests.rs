//! Data-driven cases for the Person <-> record mapping.

use super::*;
use serde_json::json;

/// A sample person as `connections.list` returns it (shape: `docs/google-people-api.md` §2.1).
fn turing() -> Json {
    json!({
      "resourceName": "people/c2584501361615515329",
      "etag": "%Eh0BAgMEBQYHCAkKCwwNDg8QERITFBUXNRk0NyIlLhoMAQIDBAUGBwgJCgsMIgxkSXQwekVHWE5Wcz0=",
      "metadata": {
        "sources": [{"type": "CONTACT", "id": "23ddfe4b8c9b2ec1", "etag": "#dIt0zEGXNVs=", "updateTime": "2018-03-20T11:03:08.585001Z"}],
        "objectType": "PERSON"
      },
      "names": [{
        "metadata": {"primary": true, "source": {"type": "CONTACT", "id": "23ddfe4b8c9b2ec1"}},
        "displayName": "Alan Turing", "familyName": "Turing", "givenName": "Alan",
        "displayNameLastFirst": "Turing, Alan", "unstructuredName": "Alan Turing"
      }],
      "emailAddresses": [
        {"metadata": {"primary": true, "source": {"type": "CONTACT", "id": "23ddfe4b8c9b2ec1"}},
         "value": "alan@npl.example", "type": "work", "formattedType": "Work"},
        {"metadata": {"source": {"type": "CONTACT", "id": "23ddfe4b8c9b2ec1"}},
         "value": "alan@home.example", "type": "home", "formattedType": "Home"}
      ],
      "phoneNumbers": [{"metadata": {"primary": true, "source": {"type": "CONTACT", "id": "23ddfe4b8c9b2ec1"}},
         "value": "+44 55 5000 555", "canonicalForm": "+44555000555", "type": "mobile", "formattedType": "Mobile"}],
      "organizations": [{"metadata": {"primary": true, "source": {"type": "CONTACT", "id": "23ddfe4b8c9b2ec1"}},
         "name": "National Physical Laboratory", "title": "Researcher", "type": "work", "current": true}],
      "addresses": [{"metadata": {"primary": true, "source": {"type": "CONTACT", "id": "23ddfe4b8c9b2ec1"}},
         "formattedValue": "78 High Street, Hampton, UK", "streetAddress": "78 High Street", "city": "Hampton",
         "postalCode": "TW12", "country": "UK", "countryCode": "GB", "type": "work", "formattedType": "Work"}],
      "birthdays": [{"metadata": {"primary": true, "source": {"type": "CONTACT", "id": "23ddfe4b8c9b2ec1"}},
         "date": {"year": 1912, "month": 6, "day": 23}, "text": "1912-06-23"}],
      "biographies": [{"metadata": {"primary": true, "source": {"type": "CONTACT", "id": "23ddfe4b8c9b2ec1"}},
         "value": "Notes text", "contentType": "TEXT_PLAIN"}],
      "urls": [{"value": "https://en.wikipedia.org/wiki/Alan_Turing", "type": "profile", "formattedType": "Profile"}],
      "userDefined": [{"key": "Customer ID", "value": "A-17"}],
      "clientData": [{"key": "sync-uid", "value": "7f3a"}, {"key": "tandem-marker", "value": "m-42"}],
      "memberships": [
        {"metadata": {"source": {"type": "CONTACT", "id": "23ddfe4b8c9b2ec1"}},
         "contactGroupMembership": {"contactGroupId": "myContacts", "contactGroupResourceName": "contactGroups/myContacts"}},
        {"contactGroupMembership": {"contactGroupId": "65189743883aabaf"}}
      ]
    })
}

fn t(s: &str) -> Value {
    Value::text(s)
}

fn ts(items: &[&str]) -> Value {
    Value::texts(items.iter().copied())
}

fn f(name: &str, value: Value) -> Field {
    Field::new(name, value)
}

#[test]
fn the_reference_sample_maps_to_every_field() {
    let record = to_record(&turing()).unwrap();
    assert_eq!(record.id, "people/c2584501361615515329");
    assert_eq!(
        record.version.as_deref(),
        Some(turing()["etag"].as_str().unwrap())
    );
    assert_eq!(
        record.updated_at.as_deref(),
        Some("2018-03-20T11:03:08.585001Z")
    );
    let expected: Vec<(&str, Value)> = vec![
        (GIVEN_NAME, t("Alan")),
        (FAMILY_NAME, t("Turing")),
        (MIDDLE_NAME, Value::Null),
        (DISPLAY_NAME, t("Alan Turing")),
        (EMAIL, t("alan@npl.example")),
        (EMAILS, ts(&["alan@npl.example", "alan@home.example"])),
        (PHONE, t("+44 55 5000 555")),
        (MOBILE, t("+44 55 5000 555")),
        (PHONES, ts(&["+44 55 5000 555"])),
        (COMPANY, t("National Physical Laboratory")),
        (JOB_TITLE, t("Researcher")),
        (DEPARTMENT, Value::Null),
        (STREET, t("78 High Street")),
        (CITY, t("Hampton")),
        (REGION, Value::Null),
        (POSTAL_CODE, t("TW12")),
        (COUNTRY, t("UK")),
        (ADDRESS, t("78 High Street, Hampton, UK")),
        (NOTES, t("Notes text")),
        (BIRTHDAY, t("1912-06-23")),
        (
            GROUPS,
            ts(&["contactGroups/65189743883aabaf", "contactGroups/myContacts"]),
        ),
        (MARKER, t("m-42")),
        ("userDefined.Customer ID", t("A-17")),
        ("clientData.sync-uid", t("7f3a")),
    ];
    for (name, value) in &expected {
        assert_eq!(record.get(name), Some(value), "field {name}");
    }
    // Nothing else: urls are not mapped, the marker is not a generic client-data field.
    assert_eq!(record.fields.len(), expected.len(), "{:?}", record.fields);
    assert!(!record.has("clientData.tandem-marker-dup"));
    assert!(!record.has(PREVIOUS_IDS));
}

/// (case, person, expected fields)
type ReadCase = (&'static str, Json, Vec<(&'static str, Value)>);

#[test]
fn read_cases() {
    // (case, person, expected fields; every standard field not listed must be null)
    let cases: Vec<ReadCase> = vec![
        (
            "an empty contact has every standard field null",
            json!({"resourceName": "people/c1", "etag": "%e"}),
            vec![],
        ),
        (
            "the primary email comes first even when listed second",
            json!({"resourceName": "people/c1", "emailAddresses": [
                {"value": "b@x.io"}, {"value": "a@x.io", "metadata": {"primary": true}}]}),
            vec![(EMAIL, t("a@x.io")), (EMAILS, ts(&["a@x.io", "b@x.io"]))],
        ),
        (
            "mobile is the first phone typed mobile, primary is the primary phone",
            json!({"resourceName": "people/c1", "phoneNumbers": [
                {"value": "+1 555 0100", "type": "work", "metadata": {"primary": true}},
                {"value": "+1 555 0199", "type": "Mobile"}]}),
            vec![
                (PHONE, t("+1 555 0100")),
                (MOBILE, t("+1 555 0199")),
                (PHONES, ts(&["+1 555 0100", "+1 555 0199"])),
            ],
        ),
        (
            "a birthday without a year",
            json!({"resourceName": "people/c1", "birthdays": [{"date": {"month": 2, "day": 9}}]}),
            vec![(BIRTHDAY, t("--02-09"))],
        ),
        (
            "a text-only birthday is passed through",
            json!({"resourceName": "people/c1", "birthdays": [{"text": "1990-01-02"}]}),
            vec![(BIRTHDAY, t("1990-01-02"))],
        ),
        (
            "only an unstructured name",
            json!({"resourceName": "people/c1", "names": [{"unstructuredName": "Prince"}]}),
            vec![(DISPLAY_NAME, t("Prince"))],
        ),
        (
            "custom fields: first entry of a repeated key wins; empty values are null",
            json!({"resourceName": "people/c1", "userDefined": [
                {"key": "Tier", "value": "gold"}, {"key": "Tier", "value": "silver"}, {"key": "Empty", "value": ""}, {"value": "no key"}]}),
            vec![
                ("userDefined.Tier", t("gold")),
                ("userDefined.Empty", Value::Null),
            ],
        ),
        (
            "a renamed contact carries its previous ids",
            json!({"resourceName": "people/c2", "metadata": {"sources": [{"type": "CONTACT", "updateTime": "2024-06-01T10:00:00.123Z"}],
                   "previousResourceNames": ["people/c1"]}}),
            vec![(PREVIOUS_IDS, ts(&["people/c1"]))],
        ),
        (
            "empty strings are no value",
            json!({"resourceName": "people/c1", "names": [{"givenName": "", "familyName": "Lovelace"}],
                   "emailAddresses": [{"value": ""}]}),
            vec![(FAMILY_NAME, t("Lovelace"))],
        ),
    ];
    for (case, person, want) in cases {
        let record = to_record(&person).unwrap();
        for def in standard_fields() {
            let expected = want
                .iter()
                .find(|(n, _)| *n == def.name)
                .map(|(_, v)| v.clone());
            match expected {
                Some(v) => assert_eq!(record.get(&def.name), Some(&v), "{case}: {}", def.name),
                None if def.name == PREVIOUS_IDS => assert!(!record.has(PREVIOUS_IDS), "{case}"),
                None => assert_eq!(
                    record.get(&def.name),
                    Some(&Value::Null),
                    "{case}: {}",
                    def.name
                ),
            }
        }
        for (name, value) in want.iter().filter(|(n, _)| n.contains("userDefined.")) {
            assert_eq!(record.get(name), Some(value), "{case}: {name}");
        }
    }
    assert_eq!(
        to_record(&json!({"etag": "x"})),
        None,
        "no resource name, no record"
    );
}

#[test]
fn updated_at_prefers_the_contact_source() {
    let person = json!({"resourceName": "people/c1", "metadata": {"sources": [
        {"type": "PROFILE", "updateTime": "2020-01-01T00:00:00Z"},
        {"type": "CONTACT", "updateTime": "2024-01-01T00:00:00Z"}]}});
    assert_eq!(
        to_record(&person).unwrap().updated_at.as_deref(),
        Some("2024-01-01T00:00:00Z")
    );
}

/// An update applied to [`turing`]: the expected `updatePersonFields` and the body's
/// changed fields.
#[test]
fn update_cases() {
    let cases: Vec<(&str, Vec<Field>, &str, Json)> = vec![
        (
            "first name: the name is rewritten whole, derived and output-only parts dropped",
            vec![f(GIVEN_NAME, t("Alan M."))],
            "names",
            json!({"names": [{"givenName": "Alan M.", "familyName": "Turing"}]}),
        ),
        (
            "clearing the last name keeps the first name",
            vec![f(FAMILY_NAME, Value::Null)],
            "names",
            json!({"names": [{"givenName": "Alan"}]}),
        ),
        (
            "a new primary email replaces the primary value and keeps its type and the others",
            vec![f(EMAIL, t("turing@npl.example"))],
            "emailAddresses",
            json!({"emailAddresses": [{"value": "turing@npl.example", "type": "work"}, {"value": "alan@home.example", "type": "home"}]}),
        ),
        (
            "an existing email made primary moves to the front",
            vec![f(EMAIL, t("ALAN@home.example"))],
            "emailAddresses",
            json!({"emailAddresses": [{"value": "alan@home.example", "type": "home"}, {"value": "alan@npl.example", "type": "work"}]}),
        ),
        (
            "an email list keeps known items in place and appends new ones (a sorted list does not move the primary)",
            vec![f(
                EMAILS,
                ts(&["alan@home.example", "new@x.io", "alan@npl.example"]),
            )],
            "emailAddresses",
            json!({"emailAddresses": [{"value": "alan@npl.example", "type": "work"}, {"value": "alan@home.example", "type": "home"},
                                      {"value": "new@x.io"}]}),
        ),
        (
            "clearing the primary email promotes the next one",
            vec![f(EMAIL, Value::Null)],
            "emailAddresses",
            json!({"emailAddresses": [{"value": "alan@home.example", "type": "home"}]}),
        ),
        (
            "clearing every email clears the field (named in the mask, absent from the body)",
            vec![f(EMAILS, Value::Null)],
            "emailAddresses",
            json!({}),
        ),
        (
            "list then primary in one update, whatever their order",
            vec![f(EMAIL, t("z@x.io")), f(EMAILS, ts(&["y@x.io", "z@x.io"]))],
            "emailAddresses",
            json!({"emailAddresses": [{"value": "z@x.io"}, {"value": "y@x.io"}]}),
        ),
        (
            "a reformatted phone is the same number: no change",
            vec![
                f(PHONES, ts(&["+4455 5000555"])),
                f(PHONE, t("+44555000555")),
            ],
            "",
            json!({}),
        ),
        (
            "a new mobile: the primary phone keeps its number (no longer typed mobile), the mobile is added",
            vec![f(MOBILE, t("+44 7700 900000"))],
            "phoneNumbers",
            json!({"phoneNumbers": [{"value": "+44 55 5000 555"}, {"value": "+44 7700 900000", "type": "mobile"}]}),
        ),
        (
            "clearing the mobile keeps the primary phone, untyped",
            vec![f(MOBILE, Value::Null)],
            "phoneNumbers",
            json!({"phoneNumbers": [{"value": "+44 55 5000 555"}]}),
        ),
        (
            "a new primary phone goes before a mobile primary, which stays the mobile",
            vec![f(PHONE, t("+1 555 0100"))],
            "phoneNumbers",
            json!({"phoneNumbers": [{"value": "+1 555 0100"}, {"value": "+44 55 5000 555", "type": "mobile"}]}),
        ),
        (
            "primary and mobile set together, whatever their order",
            vec![f(MOBILE, t("+44 7700 900000")), f(PHONE, t("+1 555 0100"))],
            "phoneNumbers",
            json!({"phoneNumbers": [{"value": "+1 555 0100"}, {"value": "+44 7700 900000", "type": "mobile"}]}),
        ),
        (
            "a second phone is appended",
            vec![f(PHONES, ts(&["+44 55 5000 555", "+1 555 0100"]))],
            "phoneNumbers",
            json!({"phoneNumbers": [{"value": "+44 55 5000 555", "type": "mobile"}, {"value": "+1 555 0100"}]}),
        ),
        (
            "job title: the organization keeps its other parts",
            vec![f(JOB_TITLE, t("Reader"))],
            "organizations",
            json!({"organizations": [{"name": "National Physical Laboratory", "title": "Reader", "type": "work", "current": true}]}),
        ),
        (
            "clearing company and title removes the organization",
            vec![f(COMPANY, Value::Null), f(JOB_TITLE, Value::Null)],
            "organizations",
            json!({}),
        ),
        (
            "a new city drops the stale formatted address",
            vec![f(CITY, t("Teddington"))],
            "addresses",
            json!({"addresses": [{"streetAddress": "78 High Street", "city": "Teddington", "postalCode": "TW12",
                                  "country": "UK", "countryCode": "GB", "type": "work"}]}),
        ),
        (
            "notes and birthday",
            vec![f(NOTES, t("Enigma")), f(BIRTHDAY, t("1912-06-24"))],
            "biographies,birthdays",
            json!({"biographies": [{"value": "Enigma", "contentType": "TEXT_PLAIN"}],
                   "birthdays": [{"date": {"year": 1912, "month": 6, "day": 24}}]}),
        ),
        (
            "the same birthday is no change",
            vec![f(BIRTHDAY, t("1912-06-23"))],
            "",
            json!({}),
        ),
        (
            "a custom field is set, another added, the rest kept",
            vec![
                f("userDefined.Customer ID", t("A-18")),
                f("userDefined.Tier", Value::Number(2.0)),
            ],
            "userDefined",
            json!({"userDefined": [{"key": "Customer ID", "value": "A-18"}, {"key": "Tier", "value": "2"}]}),
        ),
        (
            "clearing a custom field removes its entry",
            vec![f("userDefined.Customer ID", Value::Null)],
            "userDefined",
            json!({}),
        ),
        (
            "client data of another app is written, the marker kept",
            vec![f("clientData.sync-uid", t("8e4b"))],
            "clientData",
            json!({"clientData": [{"key": "sync-uid", "value": "8e4b"}, {"key": "tandem-marker", "value": "m-42"}]}),
        ),
        (
            "writing the values the contact already has changes nothing",
            vec![
                f(GIVEN_NAME, t("Alan")),
                f(EMAIL, t("alan@npl.example")),
                f(COMPANY, t("National Physical Laboratory")),
                f("userDefined.Customer ID", t("A-17")),
                f(NOTES, t("Notes text")),
            ],
            "",
            json!({}),
        ),
    ];
    for (case, fields, mask, changed) in cases {
        let mut draft = Draft::from_person(&turing());
        draft
            .apply_all(&fields)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(update_mask(&draft.changed()), mask, "{case}");
        let mut body = draft.update_body("%etag");
        assert_eq!(body["etag"], "%etag", "{case}");
        body.as_object_mut().unwrap().remove("etag");
        assert_eq!(body, changed, "{case}");
    }
}

#[test]
fn writes_the_contract_refuses() {
    let cases = [
        (f(DISPLAY_NAME, t("x")), "read-only"),
        (f(ADDRESS, t("x")), "read-only"),
        (
            f(GROUPS, ts(&["contactGroups/x"])),
            "add/remove-to-container",
        ),
        (f(MARKER, t("x")), "read-only"),
        (f(PREVIOUS_IDS, ts(&["people/c1"])), "read-only"),
        (f("nicknames", t("x")), "unknown field"),
        (f("userDefined.", t("x")), "names no key"),
        (f(BIRTHDAY, t("23/06/1912")), "not a date"),
        (f(BIRTHDAY, t("1912-13-01")), "not a date"),
    ];
    for (field, text) in cases {
        let err = Draft::from_person(&turing())
            .apply_all(std::slice::from_ref(&field))
            .unwrap_err();
        assert!(err.contains(text), "{}: {err}", field.name);
    }
}

#[test]
fn create_bodies_carry_the_marker_and_memberships() {
    let fields = vec![
        f(GIVEN_NAME, t("Ada")),
        f(FAMILY_NAME, t("Lovelace")),
        f(EMAIL, t("ada@example.com")),
        f(MOBILE, t("+44 20 7946 0000")),
        f(COMPANY, t("Analytical Engines")),
        f(JOB_TITLE, t("Programmer")),
        f(BIRTHDAY, t("--12-10")),
        f("userDefined.Tier", t("gold")),
        f(CITY, Value::Null),
    ];
    let mut draft = Draft::new();
    draft.apply_all(&fields).unwrap();
    let body = draft.create_body(
        Some("m-1"),
        &["contactGroups/abc".to_owned(), MY_CONTACTS.to_owned()],
    );
    assert_eq!(
        body,
        json!({
            "names": [{"givenName": "Ada", "familyName": "Lovelace"}],
            "emailAddresses": [{"value": "ada@example.com"}],
            "phoneNumbers": [{"value": "+44 20 7946 0000", "type": "mobile"}],
            "organizations": [{"name": "Analytical Engines", "title": "Programmer"}],
            "birthdays": [{"date": {"month": 12, "day": 10}}],
            "userDefined": [{"key": "Tier", "value": "gold"}],
            "clientData": [{"key": "tandem-marker", "value": "m-1"}],
            "memberships": [
                {"contactGroupMembership": {"contactGroupResourceName": "contactGroups/myContacts"}},
                {"contactGroupMembership": {"contactGroupResourceName": "contactGroups/abc"}}
            ]
        })
    );
    let bare = Draft::new().create_body(None, &[]);
    assert_eq!(
        bare,
        json!({"memberships": [{"contactGroupMembership": {"contactGroupResourceName": "contactGroups/myContacts"}}]})
    );
}

/// What Google stores from a create body, read back: fields round-trip.
#[test]
fn created_fields_read_back_unchanged() {
    let fields = vec![
        f(GIVEN_NAME, t("Grace")),
        f(FAMILY_NAME, t("Hopper")),
        f(EMAILS, ts(&["grace@navy.example", "gh@x.io"])),
        f(EMAIL, t("gh@x.io")),
        f(PHONE, t("+1 202 555 0100")),
        f(COMPANY, t("US Navy")),
        f(STREET, t("1 Pentagon")),
        f(COUNTRY, t("US")),
        f(NOTES, t("COBOL")),
        f(BIRTHDAY, t("1906-12-09")),
        f("userDefined.Rank", t("Rear admiral")),
        f("clientData.other-app", t("x1")),
    ];
    let mut draft = Draft::new();
    draft.apply_all(&fields).unwrap();
    let mut stored = draft.create_body(Some("m-7"), &[]);
    stored["resourceName"] = json!("people/c9");
    let record = to_record(&stored).unwrap();
    let expected = [
        (GIVEN_NAME, t("Grace")),
        (FAMILY_NAME, t("Hopper")),
        (EMAIL, t("gh@x.io")),
        (EMAILS, ts(&["gh@x.io", "grace@navy.example"])),
        (PHONE, t("+1 202 555 0100")),
        (COMPANY, t("US Navy")),
        (STREET, t("1 Pentagon")),
        (COUNTRY, t("US")),
        (NOTES, t("COBOL")),
        (BIRTHDAY, t("1906-12-09")),
        (GROUPS, ts(&[MY_CONTACTS])),
        (MARKER, t("m-7")),
        ("userDefined.Rank", t("Rear admiral")),
        ("clientData.other-app", t("x1")),
    ];
    for (name, value) in expected {
        assert_eq!(record.get(name), Some(&value), "{name}");
    }
}

/// Writing back every writable value a contact has changes nothing (a second sync with
/// no edits writes nothing).
#[test]
fn writing_a_record_back_is_a_no_op() {
    let person = turing();
    let record = to_record(&person).unwrap();
    let writable: Vec<String> = standard_fields()
        .into_iter()
        .filter(|d| d.writable)
        .map(|d| d.name)
        .chain(custom_field_names(&person))
        .collect();
    let fields: Vec<Field> = record
        .fields
        .iter()
        .filter(|f| writable.contains(&f.name))
        .cloned()
        .collect();
    assert!(fields.len() > 15, "{fields:?}");
    let mut draft = Draft::from_person(&person);
    draft.apply_all(&fields).unwrap();
    assert_eq!(draft.changed(), Vec::<&str>::new());
}

#[test]
fn schema_fields_are_unique_and_tagged_from_the_vocabulary() {
    let vocabulary = [
        "email",
        "emails",
        "first-name",
        "last-name",
        "full-name",
        "phone",
        "mobile",
        "phones",
        "company",
        "job-title",
        "address",
        "city",
        "state",
        "zip",
        "country",
        "website",
        "lead-score",
        "owner",
        "medium",
        "source",
        "authority",
        "dnd",
        "consent",
        "lifecycle-stage",
        "tags",
        "notes",
        "birthday",
        "created-at",
        "updated-at",
        "marker",
    ];
    let defs = standard_fields();
    let names: BTreeSet<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names.len(), defs.len());
    let mut tags = BTreeSet::new();
    for def in &defs {
        if let Some(tag) = &def.well_known {
            assert!(vocabulary.contains(&tag.as_str()), "{tag}");
            assert!(tags.insert(tag.clone()), "tag {tag} used twice");
        }
        assert_eq!(
            def.multi_value,
            matches!(def.name.as_str(), EMAILS | PHONES | GROUPS | PREVIOUS_IDS),
            "{}",
            def.name
        );
    }
    let email = defs
        .iter()
        .find(|d| d.well_known.as_deref() == Some("email"))
        .unwrap();
    assert_eq!(email.name, EMAIL);
    assert!(
        defs.iter()
            .find(|d| d.name == MARKER)
            .is_some_and(|d| !d.writable)
    );

    let custom = custom_field_names(&turing());
    assert_eq!(
        custom.into_iter().collect::<Vec<_>>(),
        ["clientData.sync-uid", "userDefined.Customer ID"]
    );
    let def = custom_field("userDefined.Customer ID").unwrap();
    assert!(def.custom && def.writable && def.label == "Customer ID");
    assert_eq!(
        custom_field("clientData.sync-uid").unwrap().label,
        "sync-uid (client data)"
    );
    assert_eq!(custom_field("names.givenName"), None);
}

#[test]
fn ids_and_lookups() {
    assert_eq!(person_name("people/c1").unwrap(), "people/c1");
    assert_eq!(person_name(" c1 ").unwrap(), "people/c1");
    for bad in [
        "",
        "people/",
        "contactGroups/x",
        "people/c1/x",
        "c1:deleteContact",
    ] {
        assert!(person_name(bad).is_err(), "{bad}");
    }
    assert_eq!(group_name("abc").unwrap(), "contactGroups/abc");
    assert_eq!(group_name("contactGroups/myContacts").unwrap(), MY_CONTACTS);
    for bad in ["", "contactGroups/", "a/b", "x:modify"] {
        assert!(group_name(bad).is_err(), "{bad}");
    }
    let person = turing();
    assert_eq!(marker_of(&person), Some("m-42"));
    assert!(has_email(&person, " ALAN@home.example "));
    assert!(!has_email(&person, "alan@npl"));
    assert!(!is_deleted(&person));
    assert!(is_deleted(
        &json!({"resourceName": "people/c1", "metadata": {"deleted": true}})
    ));
    assert_eq!(
        memberships(&person),
        ["contactGroups/65189743883aabaf", "contactGroups/myContacts"]
    );
}

#[test]
fn birthdays_parse_strictly() {
    let cases = [
        (
            "1912-06-23",
            Some(json!({"date": {"year": 1912, "month": 6, "day": 23}})),
        ),
        ("--06-23", Some(json!({"date": {"month": 6, "day": 23}}))),
        (
            "1912-06-23T00:00:00Z",
            Some(json!({"date": {"year": 1912, "month": 6, "day": 23}})),
        ),
        ("1912-6-23", None),
        ("1912-06-32", None),
        ("June 23", None),
        ("", None),
    ];
    for (text, want) in cases {
        assert_eq!(parse_birthday(text), want, "{text}");
    }
}

/// A write of one field changes no other field as read, except the fields that are
/// views of the same data (a list and its primary, a computed text): `updateContact`
/// replaces a Person field wholesale, so every sub-field the write does not mean to
/// change must be carried over (a company write keeps the title, a mobile write keeps
/// the primary phone).
#[test]
fn a_write_of_one_field_changes_no_other() {
    let views = |name: &str| -> &'static [&'static str] {
        match name {
            EMAIL => &[EMAILS],
            EMAILS => &[EMAIL],
            PHONE | MOBILE => &[PHONES],
            PHONES => &[PHONE, MOBILE],
            GIVEN_NAME | FAMILY_NAME | MIDDLE_NAME => &[DISPLAY_NAME],
            STREET | CITY | REGION | POSTAL_CODE | COUNTRY => &[ADDRESS],
            _ => &[],
        }
    };
    let mut two_phones = turing();
    two_phones["phoneNumbers"] = json!([
        {"value": "+1 555 0100", "type": "work"},
        {"value": "+44 55 5000 555", "type": "mobile"}
    ]);
    let mut no_phone = turing();
    no_phone.as_object_mut().unwrap().remove("phoneNumbers");
    let values = [
        t("+1 555 0199"),
        t("+44 55 5000 555"),
        t("Someone"),
        Value::Null,
    ];
    let writable: Vec<String> = standard_fields()
        .into_iter()
        .filter(|d| d.writable && d.name != BIRTHDAY && d.name != EMAILS && d.name != PHONES)
        .map(|d| d.name)
        .collect();
    for person in [turing(), two_phones, no_phone] {
        let before = to_record(&person).unwrap();
        for name in &writable {
            for value in &values {
                let mut draft = Draft::from_person(&person);
                draft.apply_all(&[f(name, value.clone())]).unwrap();
                // The contact as Google stores it: the changed fields replaced, primary first.
                let mut after = person.clone();
                for field in draft.changed() {
                    let items = draft.update_body("%e")[field].clone();
                    after[field] = if items.is_null() { json!([]) } else { items };
                }
                let after = to_record(&after).unwrap();
                for other in &before.fields {
                    if other.name == *name || views(name).contains(&other.name.as_str()) {
                        continue;
                    }
                    // A contact's first phone is its primary phone, whatever its type.
                    if name == MOBILE
                        && other.name == PHONE
                        && before.get(PHONE) == Some(&Value::Null)
                    {
                        continue;
                    }
                    assert_eq!(
                        after.get(&other.name),
                        Some(&other.value),
                        "writing {name} = {value:?} changed {}",
                        other.name
                    );
                }
            }
        }
    }
}
