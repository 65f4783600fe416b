//! Field metadata (`GET settings/<entity>/fields`) to the contract's field definitions.
//!
//! Each standard field gets its well-known meaning (the vocabulary of `wit/types.wit`),
//! custom fields (`cf_*`, `default: false`) come with their choices, and fields that the
//! records carry but the metadata does not list (`email` beside the `emails` group,
//! `subscription_status`, `created_at`, the marker field) are added so that every field
//! of a record is described.
//!
//! | Freshworks field          | well-known        | Freshworks field       | well-known        |
//! |---------------------------|-------------------|------------------------|-------------------|
//! | `email`                   | `email`           | `emails`               | `emails`          |
//! | `first_name`              | `first-name`      | `last_name`            | `last-name`       |
//! | `display_name`            | `full-name`       | `job_title`            | `job-title`       |
//! | `work_number`             | `phone`           | `mobile_number`        | `mobile`          |
//! | `phone_numbers`           | `phones`          | `address`              | `address`         |
//! | `city` / `state`          | `city` / `state`  | `zipcode` / `country`  | `zip` / `country` |
//! | `sales_account.name` (contacts), `company.name` (leads) | `company` | `company.website` | `website` |
//! | `lead_score`              | `lead-score`      | `owner_id`             | `owner`           |
//! | `medium`                  | `medium`          | `lead_source_id`       | `source`          |
//! | `has_authority`           | `authority`       | `do_not_disturb`       | `dnd`             |
//! | `subscription_status`     | `consent`         | `lifecycle_stage_id`   | `lifecycle-stage` |
//! | `tags`                    | `tags`            | `created_at`           | `created-at`      |
//! | marker field (`external_id` or the `marker-field` setting) | `marker` |   |                   |
//!
//! Each app has ONE consent field, so that the host pairs them the way the Freshmarketer
//! integration does (DND in Freshsales <-> Unsubscribed in Freshmarketer): in Freshsales
//! it is `do_not_disturb` (`dnd`), and `subscription_status` is described without a tag;
//! in Freshmarketer it is `subscription_status` (`consent`, which already reads DND as
//! unsubscribed), and `do_not_disturb` is described without a tag. With both tags on
//! both sides the host would pair DND with DND and status with status, and an
//! unsubscribe in Freshmarketer would never become DND in Freshsales.

use serde_json::Value as Json;
use tandem_sdk::well_known as wk;
use tandem_sdk::{FieldDef, FieldType};

use crate::model::{App, Entity};
use crate::record::{Consent, FieldTypes, READ_ONLY};

/// The well-known tag of a standard field.
pub fn well_known(entity: Entity, name: &str) -> Option<&'static str> {
    Some(match name {
        "email" => wk::EMAIL,
        "emails" => wk::EMAILS,
        "first_name" => wk::FIRST_NAME,
        "last_name" => wk::LAST_NAME,
        "display_name" => wk::FULL_NAME,
        "job_title" => wk::JOB_TITLE,
        "work_number" => wk::PHONE,
        "mobile_number" => wk::MOBILE,
        "phone_numbers" => wk::PHONES,
        "address" => wk::ADDRESS,
        "city" => wk::CITY,
        "state" => wk::STATE,
        "zipcode" => wk::ZIP,
        "country" => wk::COUNTRY,
        "sales_account.name" if entity == Entity::Contacts => wk::COMPANY,
        "company.name" if entity == Entity::Leads => wk::COMPANY,
        "company.website" if entity == Entity::Leads => wk::WEBSITE,
        "lead_score" => wk::LEAD_SCORE,
        "owner_id" => wk::OWNER,
        "medium" => wk::MEDIUM,
        "lead_source_id" => wk::SOURCE,
        "has_authority" => wk::AUTHORITY,
        "do_not_disturb" => wk::DND,
        "subscription_status" => wk::CONSENT,
        "lifecycle_stage_id" => wk::LIFECYCLE_STAGE,
        "tags" => wk::TAGS,
        "created_at" => wk::CREATED_AT,
        "updated_at" => wk::UPDATED_AT,
        _ => return None,
    })
}

/// The field name a metadata entry describes: lead company and deal fields
/// (`base_model` `LeadCompany` / `LeadDeal`) live under `company.` / `deal.`.
fn record_name(entity: Entity, field: &Json) -> Option<String> {
    let name = field.get("name")?.as_str()?.trim();
    if name.is_empty() {
        return None;
    }
    let prefix = match (entity, field.get("base_model").and_then(Json::as_str)) {
        (Entity::Leads, Some("LeadCompany")) => "company.",
        (Entity::Leads, Some("LeadDeal")) => "deal.",
        _ => "",
    };
    Some(format!("{prefix}{name}"))
}

fn kind_of(name: &str, app_type: &str) -> FieldType {
    let leaf = name.rsplit('.').next().unwrap_or(name);
    if leaf == "tags" {
        return FieldType::Text;
    }
    match app_type {
        "textarea" => FieldType::LongText,
        "number" => FieldType::Number,
        "checkbox" | "boolean" => FieldType::Boolean,
        "date" => FieldType::Date,
        "datetime" | "date_time" => FieldType::Datetime,
        "dropdown" | "radio" => FieldType::Choice,
        "multi_select_dropdown" => FieldType::MultiChoice,
        "auto_complete" | "lookup" => FieldType::Reference,
        "url" => FieldType::Url,
        _ if leaf == "email" || leaf == "emails" || leaf.ends_with("_email") => FieldType::Email,
        _ if leaf.ends_with("_number") || leaf == "phone_numbers" || leaf == "phone" => {
            FieldType::Phone
        }
        _ if matches!(leaf, "website" | "facebook" | "twitter" | "linkedin") => FieldType::Url,
        _ => FieldType::Text,
    }
}

fn is_multi(name: &str, app_type: &str) -> bool {
    matches!(app_type, "multi_select_dropdown" | "group_field")
        || matches!(name, "emails" | "phone_numbers" | "tags" | "sales_accounts")
        || name.ends_with("_ids")
}

/// One metadata entry as a field definition.
fn field_def(entity: Entity, field: &Json) -> Option<FieldDef> {
    let name = record_name(entity, field)?;
    let label = field
        .get("label")
        .and_then(Json::as_str)
        .map_or_else(|| name.clone(), str::to_owned);
    let app_type = field.get("type").and_then(Json::as_str).unwrap_or("text");
    let custom = name.starts_with("cf_") || matches!(field.get("default"), Some(Json::Bool(false)));
    let mut def = FieldDef::new(name.clone(), label, kind_of(&name, app_type));
    if matches!(field.get("required"), Some(Json::Bool(true))) {
        def = def.required();
    }
    if READ_ONLY.contains(&name.as_str()) {
        def = def.read_only();
    }
    if is_multi(&name, app_type) {
        def = def.multi_value();
    }
    if custom {
        def = def.custom();
    } else if let Some(tag) = well_known(entity, &name) {
        def = def.well_known(tag);
    }
    // Standard id dropdowns (owner, stage, source) store the choice id; custom dropdowns
    // are read and written by their display value.
    let by_id = name.ends_with("_id");
    if let Some(Json::Array(choices)) = field.get("choices") {
        def = def.choices(choices.iter().filter_map(|c| {
            let label = match c.get("value")? {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            let value = if by_id {
                match c.get("id")? {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                }
            } else {
                label.clone()
            };
            Some((value, label))
        }));
    }
    Some(def)
}

/// The `fields` array of a metadata answer (`{"fields": [...]}` or a bare array).
fn entries(metadata: &Json) -> &[Json] {
    match metadata.get("fields").unwrap_or(metadata) {
        Json::Array(items) => items,
        _ => &[],
    }
}

/// Field definitions of an entity from its metadata, with the fields every record
/// carries added when the metadata leaves them out.
pub fn field_defs(app: App, entity: Entity, metadata: &Json, marker_field: &str) -> Vec<FieldDef> {
    let mut defs: Vec<FieldDef> = Vec::new();
    for entry in entries(metadata) {
        let Some(def) = field_def(entity, entry) else {
            continue;
        };
        if def.name == "subscription_status" {
            continue; // Replaced by the consent definition below.
        }
        if def.name == "sales_accounts" {
            defs.push(
                FieldDef::new("sales_accounts", def.label.clone(), FieldType::Reference)
                    .read_only()
                    .multi_value(),
            );
            continue;
        }
        if !defs.iter().any(|d| d.name == def.name) {
            defs.push(def);
        }
    }
    let has = |defs: &[FieldDef], name: &str| defs.iter().any(|d| d.name == name);
    if !has(&defs, "email") {
        let def = FieldDef::new("email", "Email", FieldType::Email).well_known(wk::EMAIL);
        defs.insert(0, def);
    }
    if entity == Entity::Contacts {
        if !has(&defs, "sales_account.name") {
            defs.push(
                FieldDef::new("sales_account.name", "Account (primary)", FieldType::Text)
                    .read_only()
                    .well_known(wk::COMPANY),
            );
        }
        let required = entries(metadata).iter().any(|f| {
            f.get("name").and_then(Json::as_str) == Some("subscription_status")
                && matches!(f.get("required"), Some(Json::Bool(true)))
        });
        let mut consent = FieldDef::new(
            "subscription_status",
            match app {
                App::Freshmarketer => "Subscription status",
                App::Freshsales => "Email subscription status",
            },
            FieldType::Choice,
        )
        .well_known(wk::CONSENT)
        .choices(Consent::ALL.map(|c| (c.as_str(), c.label())));
        if required {
            consent = consent.required();
        }
        defs.push(consent);
    }
    // One consent field per app (see the module documentation).
    let untagged = match app {
        App::Freshsales => "subscription_status",
        App::Freshmarketer => "do_not_disturb",
    };
    if let Some(def) = defs.iter_mut().find(|d| d.name == untagged) {
        def.well_known = None;
    }
    if !has(&defs, "created_at") {
        defs.push(
            FieldDef::new("created_at", "Created at", FieldType::Datetime)
                .read_only()
                .well_known(wk::CREATED_AT),
        );
    }
    if marker_field == "external_id" && !has(&defs, "external_id") {
        defs.push(FieldDef::new("external_id", "External id", FieldType::Text));
    }
    if let Some(marker) = defs.iter_mut().find(|d| d.name == marker_field) {
        marker.well_known = Some(wk::MARKER.to_owned());
    }
    defs
}

/// What record mapping needs from the metadata: multi-selects, dates, numbers.
pub fn field_types(entity: Entity, metadata: &Json) -> FieldTypes {
    let mut types = FieldTypes::default();
    for entry in entries(metadata) {
        let Some(name) = record_name(entity, entry) else {
            continue;
        };
        if entry.get("default").and_then(Json::as_bool) == Some(false) {
            types.custom.insert(name.clone());
        }
        match entry.get("type").and_then(Json::as_str).unwrap_or("") {
            "multi_select_dropdown" => {
                types.multi.insert(name);
            }
            "date" => {
                types.dates.insert(name);
            }
            "number" => {
                types.numbers.insert(name);
            }
            _ => {}
        }
    }
    types
}

/// True when the metadata lists the field (used to warn about a missing marker field).
pub fn lists_field(metadata: &Json, name: &str) -> bool {
    entries(metadata)
        .iter()
        .any(|f| f.get("name").and_then(Json::as_str) == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn contact_metadata() -> Json {
        json!({"fields": [
            {"id": "1", "name": "first_name", "label": "First name", "type": "text", "default": true, "required": false, "choices": [], "base_model": "Contact"},
            {"id": "2", "name": "last_name", "label": "Last name", "type": "text", "default": true, "required": true, "choices": []},
            {"id": "3", "name": "emails", "label": "Emails", "type": "group_field", "default": true, "choices": []},
            {"id": "4", "name": "mobile_number", "label": "Mobile", "type": "text", "default": true},
            {"id": "5", "name": "work_number", "label": "Work", "type": "text", "default": true},
            {"id": "6", "name": "owner_id", "label": "Sales owner", "type": "dropdown", "default": true,
             "choices": [{"id": 17000030000_u64, "value": "Ann Owner"}]},
            {"id": "7", "name": "sales_accounts", "label": "Accounts", "type": "auto_complete", "default": true},
            {"id": "8", "name": "lead_score", "label": "Score", "type": "number", "default": true},
            {"id": "9", "name": "subscription_status", "label": "Subscription status", "type": "dropdown", "default": true,
             "choices": [{"id": 1, "value": "Subscribed"}]},
            {"id": "10", "name": "cf_interest", "label": "Interest", "type": "dropdown", "default": false, "required": false,
             "choices": [{"id": 1, "value": "Gold"}, {"id": 2, "value": "Silver"}]},
            {"id": "11", "name": "cf_days", "label": "Days", "type": "multi_select_dropdown", "default": false,
             "choices": [{"id": 3, "value": "Monday"}, {"id": 4, "value": "Wednesday"}]},
            {"id": "12", "name": "cf_renewal", "label": "Renewal", "type": "date", "default": false},
            {"id": "13", "name": "cf_seats", "label": "Seats", "type": "number", "default": false},
            {"id": "14", "name": "cf_is_active", "label": "Active", "type": "checkbox", "default": false},
            {"id": "15", "name": "cf_notes", "label": "Notes", "type": "textarea", "default": false},
            {"id": "16", "name": "do_not_disturb", "label": "Do not disturb", "type": "checkbox", "default": true},
            {"id": "17", "name": "has_authority", "label": "Has authority", "type": "checkbox", "default": true},
            {"id": "18", "name": "medium", "label": "Medium", "type": "text", "default": true},
            {"id": "19", "name": "tags", "label": "Tags", "type": "auto_complete", "default": true},
            {"id": "20", "name": "lifecycle_stage_id", "label": "Lifecycle stage", "type": "dropdown", "default": true,
             "choices": [{"id": 71012139273_u64, "value": "Lead"}]},
            {"id": "21", "name": "zipcode", "label": "Zipcode", "type": "text", "default": true},
            {"id": "22", "name": "lead_source_id", "label": "Source", "type": "dropdown", "default": true, "choices": []}
        ]})
    }

    fn def<'a>(defs: &'a [FieldDef], name: &str) -> &'a FieldDef {
        defs.iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no field {name}"))
    }

    /// (field, kind, well-known, writable, multi, custom, required)
    #[test]
    fn contact_fields() {
        let defs = field_defs(
            App::Freshsales,
            Entity::Contacts,
            &contact_metadata(),
            "external_id",
        );
        type Row = (
            &'static str,
            FieldType,
            Option<&'static str>,
            bool,
            bool,
            bool,
            bool,
        );
        let rows: &[Row] = &[
            (
                "email",
                FieldType::Email,
                Some("email"),
                true,
                false,
                false,
                false,
            ),
            (
                "emails",
                FieldType::Email,
                Some("emails"),
                false,
                true,
                false,
                false,
            ),
            (
                "first_name",
                FieldType::Text,
                Some("first-name"),
                true,
                false,
                false,
                false,
            ),
            (
                "last_name",
                FieldType::Text,
                Some("last-name"),
                true,
                false,
                false,
                true,
            ),
            (
                "mobile_number",
                FieldType::Phone,
                Some("mobile"),
                true,
                false,
                false,
                false,
            ),
            (
                "work_number",
                FieldType::Phone,
                Some("phone"),
                true,
                false,
                false,
                false,
            ),
            (
                "owner_id",
                FieldType::Choice,
                Some("owner"),
                true,
                false,
                false,
                false,
            ),
            (
                "sales_accounts",
                FieldType::Reference,
                None,
                false,
                true,
                false,
                false,
            ),
            (
                "sales_account.name",
                FieldType::Text,
                Some("company"),
                false,
                false,
                false,
                false,
            ),
            (
                "lead_score",
                FieldType::Number,
                Some("lead-score"),
                false,
                false,
                false,
                false,
            ),
            (
                "subscription_status",
                FieldType::Choice,
                None,
                true,
                false,
                false,
                false,
            ),
            (
                "do_not_disturb",
                FieldType::Boolean,
                Some("dnd"),
                true,
                false,
                false,
                false,
            ),
            (
                "has_authority",
                FieldType::Boolean,
                Some("authority"),
                true,
                false,
                false,
                false,
            ),
            (
                "medium",
                FieldType::Text,
                Some("medium"),
                true,
                false,
                false,
                false,
            ),
            (
                "lead_source_id",
                FieldType::Choice,
                Some("source"),
                true,
                false,
                false,
                false,
            ),
            (
                "tags",
                FieldType::Text,
                Some("tags"),
                true,
                true,
                false,
                false,
            ),
            (
                "lifecycle_stage_id",
                FieldType::Choice,
                Some("lifecycle-stage"),
                true,
                false,
                false,
                false,
            ),
            (
                "zipcode",
                FieldType::Text,
                Some("zip"),
                true,
                false,
                false,
                false,
            ),
            (
                "created_at",
                FieldType::Datetime,
                Some("created-at"),
                false,
                false,
                false,
                false,
            ),
            (
                "external_id",
                FieldType::Text,
                Some("marker"),
                true,
                false,
                false,
                false,
            ),
            (
                "cf_interest",
                FieldType::Choice,
                None,
                true,
                false,
                true,
                false,
            ),
            (
                "cf_days",
                FieldType::MultiChoice,
                None,
                true,
                true,
                true,
                false,
            ),
            (
                "cf_renewal",
                FieldType::Date,
                None,
                true,
                false,
                true,
                false,
            ),
            (
                "cf_seats",
                FieldType::Number,
                None,
                true,
                false,
                true,
                false,
            ),
            (
                "cf_is_active",
                FieldType::Boolean,
                None,
                true,
                false,
                true,
                false,
            ),
            (
                "cf_notes",
                FieldType::LongText,
                None,
                true,
                false,
                true,
                false,
            ),
        ];
        for (name, kind, tag, writable, multi, custom, required) in rows {
            let d = def(&defs, name);
            assert_eq!(
                (
                    d.kind,
                    d.well_known.as_deref(),
                    d.writable,
                    d.multi_value,
                    d.custom,
                    d.required
                ),
                (*kind, *tag, *writable, *multi, *custom, *required),
                "{name}"
            );
        }
        // Every name once.
        let mut names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count);
    }

    #[test]
    fn each_app_has_one_consent_field() {
        let tag = |app: App, name: &str| {
            let defs = field_defs(app, Entity::Contacts, &contact_metadata(), "external_id");
            def(&defs, name).well_known.clone()
        };
        assert_eq!(
            tag(App::Freshsales, "do_not_disturb").as_deref(),
            Some("dnd")
        );
        assert_eq!(tag(App::Freshsales, "subscription_status"), None);
        assert_eq!(
            tag(App::Freshmarketer, "subscription_status").as_deref(),
            Some("consent")
        );
        assert_eq!(tag(App::Freshmarketer, "do_not_disturb"), None);
    }

    #[test]
    fn choices() {
        let defs = field_defs(
            App::Freshmarketer,
            Entity::Contacts,
            &contact_metadata(),
            "external_id",
        );
        let owner = def(&defs, "owner_id");
        assert_eq!(
            (
                owner.choices[0].value.as_str(),
                owner.choices[0].label.as_str()
            ),
            ("17000030000", "Ann Owner")
        );
        let interest = def(&defs, "cf_interest");
        assert_eq!(
            interest
                .choices
                .iter()
                .map(|c| c.value.as_str())
                .collect::<Vec<_>>(),
            ["Gold", "Silver"]
        );
        let consent = def(&defs, "subscription_status");
        assert_eq!(consent.label, "Subscription status");
        assert_eq!(
            consent
                .choices
                .iter()
                .map(|c| c.value.as_str())
                .collect::<Vec<_>>(),
            [
                "unsubscribed",
                "subscribed",
                "not-subscribed",
                "spam",
                "bounced"
            ]
        );
    }

    #[test]
    fn custom_marker_field() {
        let mut metadata = contact_metadata();
        metadata["fields"].as_array_mut().unwrap().push(
            json!({"name": "cf_tandem_id", "label": "Tandem id", "type": "text", "default": false}),
        );
        let defs = field_defs(App::Freshsales, Entity::Contacts, &metadata, "cf_tandem_id");
        let marker = def(&defs, "cf_tandem_id");
        assert_eq!(
            (marker.well_known.as_deref(), marker.custom),
            (Some("marker"), true)
        );
        assert!(!defs.iter().any(|d| d.name == "external_id"));
        assert!(lists_field(&metadata, "cf_tandem_id"));
        assert!(!lists_field(&contact_metadata(), "cf_tandem_id"));
    }

    #[test]
    fn lead_fields_nest_company_and_deal() {
        let metadata = json!({"fields": [
            {"name": "email", "label": "Email", "type": "text", "default": true, "base_model": "Lead"},
            {"name": "last_name", "label": "Last name", "type": "text", "default": true, "required": true, "base_model": "Lead"},
            {"name": "do_not_disturb", "label": "DND", "type": "checkbox", "default": true, "base_model": "Lead"},
            {"name": "name", "label": "Company name", "type": "text", "default": true, "base_model": "LeadCompany"},
            {"name": "website", "label": "Website", "type": "text", "default": true, "base_model": "LeadCompany"},
            {"name": "name", "label": "Deal name", "type": "text", "default": true, "base_model": "LeadDeal"},
            {"name": "amount", "label": "Deal value", "type": "number", "default": true, "base_model": "LeadDeal"}
        ]});
        let defs = field_defs(App::Freshsales, Entity::Leads, &metadata, "external_id");
        assert_eq!(
            def(&defs, "company.name").well_known.as_deref(),
            Some("company")
        );
        assert_eq!(def(&defs, "company.website").kind, FieldType::Url);
        assert_eq!(
            def(&defs, "company.website").well_known.as_deref(),
            Some("website")
        );
        assert_eq!(def(&defs, "deal.name").well_known, None);
        assert_eq!(def(&defs, "email").kind, FieldType::Email);
        assert!(def(&defs, "last_name").required);
        assert!(
            !defs
                .iter()
                .any(|d| d.name == "subscription_status" || d.name == "sales_account.name")
        );
        let types = field_types(Entity::Leads, &metadata);
        assert!(types.numbers.contains("deal.amount"));
    }

    #[test]
    fn types_for_mapping() {
        let types = field_types(Entity::Contacts, &contact_metadata());
        assert_eq!(types.multi.iter().collect::<Vec<_>>(), ["cf_days"]);
        assert_eq!(types.dates.iter().collect::<Vec<_>>(), ["cf_renewal"]);
        assert_eq!(
            types.numbers.iter().collect::<Vec<_>>(),
            ["cf_seats", "lead_score"]
        );
        assert_eq!(
            field_types(Entity::Contacts, &json!({})),
            FieldTypes::default()
        );
    }
}
