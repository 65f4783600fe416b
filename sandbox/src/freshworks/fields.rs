//! Field metadata (`/settings/<entity>/fields`) and reference data (`/selector/<name>`) of a
//! simulated Freshworks account, and the flavour facts that differ between Suite, Classic and
//! Freshmarketer.

use serde_json::{Value, json};
use time::UtcOffset;

use crate::AccountKind;
use crate::seed::{INTERESTS, LIST_NAMES, OWNERS, PLANS};

/// Record types of the CRM API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    /// `contacts`
    Contact,
    /// `leads` (Classic only)
    Lead,
}

impl Entity {
    /// Path segment and list key: `contacts` / `leads`.
    pub fn plural(self) -> &'static str {
        match self {
            Entity::Contact => "contacts",
            Entity::Lead => "leads",
        }
    }

    /// Wrapper key of one record: `contact` / `lead`.
    pub fn singular(self) -> &'static str {
        match self {
            Entity::Contact => "contact",
            Entity::Lead => "lead",
        }
    }

    /// `base_model` in field metadata.
    pub fn base_model(self) -> &'static str {
        match self {
            Entity::Contact => "Contact",
            Entity::Lead => "Lead",
        }
    }

    /// Filtered-search attribute of the email (`contact_email.email`).
    pub fn email_attribute(self) -> &'static str {
        match self {
            Entity::Contact => "contact_email.email",
            Entity::Lead => "lead_email.email",
        }
    }

    /// Parse `contacts`/`contact`/`leads`/`lead`.
    pub fn parse(s: &str) -> Option<Entity> {
        match s {
            "contacts" | "contact" => Some(Entity::Contact),
            "leads" | "lead" => Some(Entity::Lead),
            _ => None,
        }
    }
}

/// What differs between the three Freshworks account kinds.
#[derive(Debug, Clone)]
pub struct Flavor {
    /// Account kind.
    pub kind: AccountKind,
    /// Path of the CRM tree: `/crm/sales/api` (Suite, Freshmarketer) or `/api` (Classic).
    pub prefix: &'static str,
    /// Classic has leads; Suite and Freshmarketer do not (their trees answer 404).
    pub has_leads: bool,
    /// Suite and Freshmarketer have lifecycle stages; Classic has lead stages.
    pub lifecycle: bool,
    /// Account time zone used in every timestamp.
    pub offset: UtcOffset,
    /// First id handed out.
    pub id_base: u64,
    /// Name of the plan custom field (differs in Freshmarketer so mappings are real work).
    pub plan_field: &'static str,
}

impl Flavor {
    /// The flavour of `kind` (which must be a Freshworks kind).
    pub fn of(kind: AccountKind) -> Flavor {
        match kind {
            AccountKind::FreshsalesClassic => Flavor {
                kind,
                prefix: "/api",
                has_leads: true,
                lifecycle: false,
                offset: time::macros::offset!(+05:30),
                id_base: 70_000_100_000,
                plan_field: "cf_plan",
            },
            AccountKind::Freshmarketer => Flavor {
                kind,
                prefix: "/crm/sales/api",
                has_leads: false,
                lifecycle: true,
                offset: UtcOffset::UTC,
                id_base: 16_000_500_000,
                plan_field: "cf_plan_tier",
            },
            _ => Flavor {
                kind,
                prefix: "/crm/sales/api",
                has_leads: false,
                lifecycle: true,
                offset: time::macros::offset!(-06:00),
                id_base: 17_008_300_000,
                plan_field: "cf_plan",
            },
        }
    }

    /// Entities served by this account.
    pub fn entities(&self) -> &'static [Entity] {
        if self.has_leads {
            &[Entity::Contact, Entity::Lead]
        } else {
            &[Entity::Contact]
        }
    }
}

/// Field types of the metadata API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// `text`
    Text,
    /// `textarea`
    Textarea,
    /// `number`
    Number,
    /// `dropdown`
    Dropdown,
    /// `multi_select_dropdown`
    MultiSelect,
    /// `checkbox`
    Checkbox,
    /// `date`
    Date,
    /// `group_field` (emails, sales accounts, tags…)
    Group,
    /// `auto_complete`
    AutoComplete,
}

impl FieldType {
    /// Wire name.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Textarea => "textarea",
            FieldType::Number => "number",
            FieldType::Dropdown => "dropdown",
            FieldType::MultiSelect => "multi_select_dropdown",
            FieldType::Checkbox => "checkbox",
            FieldType::Date => "date",
            FieldType::Group => "group_field",
            FieldType::AutoComplete => "auto_complete",
        }
    }
}

/// Dropdown choice: id and display value.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Choice id (for id-valued standard fields this is the stored value).
    pub id: u64,
    /// Display value (what custom dropdowns store).
    pub value: String,
}

/// One field of the metadata API.
#[derive(Debug, Clone)]
pub struct FieldDef {
    /// API name (`first_name`, `cf_plan`).
    pub name: String,
    /// UI label (used in validation messages).
    pub label: String,
    /// Type.
    pub ftype: FieldType,
    /// Standard (`true`) or custom field.
    pub standard: bool,
    /// Required on create/update.
    pub required: bool,
    /// Dropdown choices.
    pub choices: Vec<Choice>,
    /// `Contact`, `Lead`, `LeadCompany`, `LeadDeal`.
    pub base_model: &'static str,
    /// For standard dropdowns: the stored value is the choice id (`owner_id`), not its label.
    pub id_valued: bool,
}

impl FieldDef {
    fn std(name: &str, label: &str, ftype: FieldType, base_model: &'static str) -> FieldDef {
        FieldDef {
            name: name.to_owned(),
            label: label.to_owned(),
            ftype,
            standard: true,
            required: false,
            choices: Vec::new(),
            base_model,
            id_valued: false,
        }
    }

    /// JSON of the metadata API.
    pub fn to_json(&self, id: u64, position: usize) -> Value {
        let choices: Vec<Value> = self
            .choices
            .iter()
            .map(|c| json!({"id": c.id, "value": c.value}))
            .collect();
        let mut v = json!({
            "id": id.to_string(),
            "name": self.name,
            "label": self.label,
            "type": self.ftype.name(),
            "default": self.standard,
            "actionable": true,
            "position": position,
            "required": self.required,
            "choices": choices,
            "base_model": self.base_model,
        });
        if self.ftype == FieldType::MultiSelect {
            v["multiple"] = json!(true);
        }
        if self.name == "sales_accounts" {
            v["auto_suggest_url"] = json!("/sales_accounts/autocomplete?name=");
        }
        v
    }
}

/// A selector (`/selector/<name>`): response key and items (each with `id` and `name`).
#[derive(Debug, Clone)]
pub struct Selector {
    /// URL name (`owners`).
    pub name: &'static str,
    /// Response key (`users`).
    pub key: &'static str,
    /// Items.
    pub items: Vec<Value>,
}

/// A sales account (company) that contacts reference.
#[derive(Debug, Clone)]
pub struct SalesAccount {
    /// Id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// Website.
    pub website: Option<String>,
}

/// Reference data of an account: users, selectors, sales accounts. Ids are allocated from the
/// account's id space so they look like real ones.
#[derive(Debug, Clone)]
pub struct Refs {
    /// Selectors by name.
    pub selectors: Vec<Selector>,
    /// Sales accounts (companies).
    pub sales_accounts: Vec<SalesAccount>,
}

impl Refs {
    /// Reference data for `flavor`, with ids from `next_id`.
    pub fn new(flavor: &Flavor, next_id: &mut dyn FnMut() -> u64) -> Refs {
        let users: Vec<Value> = OWNERS
            .iter()
            .map(|(name, email)| {
                json!({"id": next_id(), "display_name": name, "name": name, "email": email,
                       "is_active": true, "work_number": null, "mobile_number": null})
            })
            .collect();
        let mut named = |names: &[&str]| -> Vec<Value> {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| json!({"id": next_id(), "name": n, "position": i + 1}))
                .collect()
        };
        let lead_sources = named(&["Web", "Email", "Phone", "Referral", "Event", "Import"]);
        let territories = named(&["North America", "EMEA", "APAC"]);
        let campaigns = named(&["Spring launch", "Webinar series", "Partner push"]);
        let industry_types = named(&["Software", "Retail", "Finance", "Healthcare", "Media"]);
        let business_types = named(&["Prospect", "Customer", "Partner", "Vendor"]);
        let mut selectors = vec![
            Selector {
                name: "owners",
                key: "users",
                items: users,
            },
            Selector {
                name: "lead_sources",
                key: "lead_sources",
                items: lead_sources,
            },
            Selector {
                name: "territories",
                key: "territories",
                items: territories,
            },
            Selector {
                name: "campaigns",
                key: "campaigns",
                items: campaigns,
            },
            Selector {
                name: "industry_types",
                key: "industry_types",
                items: industry_types,
            },
            Selector {
                name: "business_types",
                key: "business_types",
                items: business_types,
            },
        ];
        if flavor.lifecycle {
            let stages = ["Lead", "Sales Qualified Lead", "Customer", "Evangelist"];
            let statuses: [&[&str]; 4] = [
                &["New", "Contacted", "Interested"],
                &["Qualified", "Demo scheduled"],
                &["Won", "Onboarded"],
                &["Advocate"],
            ];
            let mut stage_items = Vec::new();
            let mut status_items = Vec::new();
            for (i, (stage, st)) in stages.iter().zip(statuses).enumerate() {
                let stage_id = next_id();
                let ids: Vec<u64> = st.iter().map(|_| next_id()).collect();
                for (j, (name, id)) in st.iter().zip(&ids).enumerate() {
                    status_items.push(json!({"id": id, "name": name, "position": j + 1,
                                             "lifecycle_stage_id": stage_id}));
                }
                stage_items.push(json!({
                    "id": stage_id, "name": stage, "position": i + 1, "disabled": false,
                    "default": i < 3, "type": if i < 3 { *stage } else { "Custom" },
                    "contact_status_ids": ids,
                }));
            }
            selectors.push(Selector {
                name: "lifecycle_stages",
                key: "lifecycle_stages",
                items: stage_items,
            });
            selectors.push(Selector {
                name: "contact_statuses",
                key: "contact_statuses",
                items: status_items,
            });
        } else {
            let contact_statuses = named(&["Active", "Inactive", "Qualified Lead"]);
            let lead_stages =
                named(&["New", "Contacted", "Interested", "Qualified", "Unqualified"]);
            let lead_reasons = named(&["Not interested", "No budget", "Lost to competitor"]);
            selectors.push(Selector {
                name: "contact_statuses",
                key: "contact_statuses",
                items: contact_statuses,
            });
            selectors.push(Selector {
                name: "lead_stages",
                key: "lead_stages",
                items: lead_stages,
            });
            selectors.push(Selector {
                name: "lead_reasons",
                key: "lead_reasons",
                items: lead_reasons,
            });
        }
        Refs {
            selectors,
            sales_accounts: Vec::new(),
        }
    }

    /// The selector called `name`.
    pub fn selector(&self, name: &str) -> Option<&Selector> {
        self.selectors.iter().find(|s| s.name == name)
    }

    /// Ids of a selector's items.
    pub fn ids(&self, name: &str) -> Vec<u64> {
        self.selector(name)
            .map(|s| s.items.iter().filter_map(|i| i["id"].as_u64()).collect())
            .unwrap_or_default()
    }

    /// The owner (user) ids, in [`OWNERS`] order.
    pub fn user_ids(&self) -> Vec<u64> {
        self.ids("owners")
    }

    /// Find or create the sales account called `name`.
    pub fn sales_account_by_name(
        &mut self,
        name: &str,
        website: Option<&str>,
        next_id: &mut dyn FnMut() -> u64,
    ) -> u64 {
        if let Some(a) = self
            .sales_accounts
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
        {
            return a.id;
        }
        let id = next_id();
        self.sales_accounts.push(SalesAccount {
            id,
            name: name.to_owned(),
            website: website.map(str::to_owned),
        });
        id
    }

    /// The sales account with `id`.
    pub fn sales_account(&self, id: u64) -> Option<&SalesAccount> {
        self.sales_accounts.iter().find(|a| a.id == id)
    }

    fn choices(&self, selector: &str) -> Vec<Choice> {
        self.selector(selector)
            .map(|s| {
                s.items
                    .iter()
                    .filter_map(|i| {
                        let name = i["name"].as_str().or(i["display_name"].as_str())?;
                        Some(Choice {
                            id: i["id"].as_u64()?,
                            value: name.to_owned(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Subscription status choices (`subscription_status`): 0 Unsubscribed, 1 Subscribed,
/// 2 Not subscribed, 3 Reported as spam, 4 Bounced.
pub const SUBSCRIPTION_STATUSES: [&str; 5] = [
    "Unsubscribed",
    "Subscribed",
    "Not subscribed",
    "Reported as spam",
    "Bounced",
];

/// Field definitions of `entity` in an account of `flavor` (standard fields first, then
/// custom ones). `dnd` adds `do_not_disturb`; `required` marks fields required.
pub fn field_defs(
    flavor: &Flavor,
    entity: Entity,
    refs: &Refs,
    dnd: bool,
    required: &[String],
) -> Vec<FieldDef> {
    use FieldType::*;
    let bm = entity.base_model();
    let mut f = vec![
        FieldDef::std("first_name", "First name", Text, bm),
        FieldDef::std("last_name", "Last name", Text, bm),
        FieldDef::std("job_title", "Job title", Text, bm),
        FieldDef::std("emails", "Emails", Group, bm),
        FieldDef::std("work_number", "Work", Text, bm),
        FieldDef::std("mobile_number", "Mobile", Text, bm),
        FieldDef::std("address", "Address", Textarea, bm),
        FieldDef::std("city", "City", Text, bm),
        FieldDef::std("state", "State", Text, bm),
        FieldDef::std("zipcode", "Zipcode", Text, bm),
        FieldDef::std("country", "Country", Text, bm),
        FieldDef::std("time_zone", "Time zone", Text, bm),
        FieldDef::std("lead_score", "Score", Number, bm),
        FieldDef::std("medium", "Medium", Text, bm),
        FieldDef::std("keyword", "Keyword", Text, bm),
        FieldDef::std("external_id", "External ID", Text, bm),
        FieldDef::std("tags", "Tags", Group, bm),
        FieldDef::std("facebook", "Facebook", Text, bm),
        FieldDef::std("twitter", "Twitter", Text, bm),
        FieldDef::std("linkedin", "LinkedIn", Text, bm),
        FieldDef::std("subscription_types", "Subscription types", Text, bm),
        FieldDef::std("unsubscription_reason", "Unsubscription reason", Text, bm),
        FieldDef::std(
            "other_unsubscription_reason",
            "Other unsubscription reason",
            Text,
            bm,
        ),
    ];
    let mut idf = |name: &str, label: &str, selector: &str| {
        let mut d = FieldDef::std(name, label, Dropdown, bm);
        d.choices = refs.choices(selector);
        d.id_valued = true;
        f.push(d);
    };
    idf("owner_id", "Sales owner", "owners");
    idf("lead_source_id", "Source", "lead_sources");
    idf("territory_id", "Territory", "territories");
    idf("campaign_id", "Campaign", "campaigns");
    match (entity, flavor.lifecycle) {
        (Entity::Lead, _) => {
            idf("lead_stage_id", "Lead stage", "lead_stages");
            idf("lead_reason_id", "Unqualified reason", "lead_reasons");
        }
        (Entity::Contact, true) => {
            idf("lifecycle_stage_id", "Lifecycle stage", "lifecycle_stages");
            idf("contact_status_id", "Status", "contact_statuses");
        }
        (Entity::Contact, false) => idf("contact_status_id", "Status", "contact_statuses"),
    }
    let mut sub = FieldDef::std("subscription_status", "Subscription status", Dropdown, bm);
    sub.id_valued = true;
    sub.choices = SUBSCRIPTION_STATUSES
        .iter()
        .enumerate()
        .map(|(i, v)| Choice {
            id: i as u64,
            value: (*v).to_owned(),
        })
        .collect();
    f.push(sub);
    if dnd {
        f.push(FieldDef::std(
            "do_not_disturb",
            "Do not disturb",
            Checkbox,
            bm,
        ));
    }
    if !flavor.lifecycle {
        f.push(FieldDef::std(
            "has_authority",
            "Has authority",
            Checkbox,
            bm,
        ));
        f.push(FieldDef::std("department", "Department", Text, bm));
        let mut q = FieldDef::std("lead_quality", "Lead quality", Dropdown, bm);
        q.choices = ["Hot", "Warm", "Cold"]
            .iter()
            .enumerate()
            .map(|(i, v)| Choice {
                id: i as u64 + 1,
                value: (*v).to_owned(),
            })
            .collect();
        f.push(q);
    } else {
        f.push(FieldDef::std("work_email", "Work email", Text, bm));
    }
    match entity {
        Entity::Contact => f.push(FieldDef::std(
            "sales_accounts",
            "Accounts",
            AutoComplete,
            bm,
        )),
        Entity::Lead => {
            for (n, l, t) in [
                ("name", "Company name", Text),
                ("website", "Website", Text),
                ("phone", "Company phone", Text),
                ("number_of_employees", "Number of employees", Number),
                ("annual_revenue", "Annual revenue", Number),
            ] {
                f.push(FieldDef::std(n, l, t, "LeadCompany"));
            }
            for (n, l, t) in [
                ("name", "Deal name", Text),
                ("amount", "Deal value", Number),
            ] {
                f.push(FieldDef::std(n, l, t, "LeadDeal"));
            }
        }
    }
    // Custom fields (`cf_*`).
    let choice_list = |vals: &[&str], base: u64| -> Vec<Choice> {
        vals.iter()
            .enumerate()
            .map(|(i, v)| Choice {
                id: base + i as u64,
                value: (*v).to_owned(),
            })
            .collect()
    };
    let custom = |name: &str, label: &str, ftype: FieldType, choices: Vec<Choice>| FieldDef {
        name: name.to_owned(),
        label: label.to_owned(),
        ftype,
        standard: false,
        required: false,
        choices,
        base_model: bm,
        id_valued: false,
    };
    let plan_label = if flavor.plan_field == "cf_plan" {
        "Plan"
    } else {
        "Plan tier"
    };
    f.push(custom(
        flavor.plan_field,
        plan_label,
        Dropdown,
        choice_list(PLANS, 101),
    ));
    f.push(custom(
        "cf_interests",
        "Interests",
        MultiSelect,
        choice_list(INTERESTS, 201),
    ));
    f.push(custom("cf_renewal_date", "Renewal date", Date, Vec::new()));
    f.push(custom("cf_seats", "Seats", Number, Vec::new()));
    f.push(custom("cf_is_active", "Is active", Checkbox, Vec::new()));
    f.push(custom("cf_region", "Region", Text, Vec::new()));
    for d in &mut f {
        if required.contains(&d.name) {
            d.required = true;
        }
    }
    f
}

/// Names of the seeded marketing lists.
pub fn list_names() -> &'static [&'static str] {
    LIST_NAMES
}
