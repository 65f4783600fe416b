//! Record writes (contacts, leads, sales accounts): field validation against the metadata,
//! emails, create, update, upsert, soft delete, restore and erase.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::freshworks::error::ApiError;
use crate::freshworks::fields::{Entity, FieldDef, FieldType};
use crate::freshworks::switches::{DuplicateEmail, SoftDeletedUpdate, Switches};

use super::{EmailEntry, Record, Store, as_u64, secs, value_str};

impl Store {
    /// Apply `input` (unwrapped fields) to `rec`, validating against the field metadata.
    /// On error `rec` may be partly changed: callers work on a copy.
    pub fn apply(
        &mut self,
        rec: &mut Record,
        input: &Map<String, Value>,
        sw: &Switches,
    ) -> Result<(), ApiError> {
        let defs = self.defs(rec.entity, sw);
        let mut errors: Vec<String> = Vec::new();
        for (k, v) in input {
            match k.as_str() {
                "email" | "emails" => self.apply_emails(rec, v, &mut errors),
                "custom_field" => match v {
                    Value::Object(cf) => {
                        for (ck, cv) in cf {
                            apply_custom(rec, &defs, ck, cv, sw, &mut errors);
                        }
                    }
                    Value::Null => {}
                    _ => errors.push("Custom field is invalid".to_owned()),
                },
                ck if ck.starts_with("cf_") => apply_custom(rec, &defs, ck, v, sw, &mut errors),
                "sales_accounts" if rec.entity == Entity::Contact => {
                    self.apply_sales_accounts(rec, v, &mut errors)
                }
                "company" | "deal" if rec.entity == Entity::Lead => {
                    let model = if k == "company" {
                        "LeadCompany"
                    } else {
                        "LeadDeal"
                    };
                    apply_nested(rec, &defs, model, v, &mut errors);
                }
                "tags" => match v {
                    Value::Null => {
                        rec.fields.remove("tags");
                    }
                    Value::String(s) => {
                        let tags: Vec<Value> = s
                            .split([';', ','])
                            .map(str::trim)
                            .filter(|t| !t.is_empty())
                            .map(|t| json!(t))
                            .collect();
                        rec.fields.insert("tags".into(), Value::Array(tags));
                    }
                    Value::Array(a) if a.iter().all(Value::is_string) => {
                        rec.fields.insert("tags".into(), Value::Array(a.clone()));
                    }
                    _ => errors.push("Tags is invalid".to_owned()),
                },
                other => {
                    let Some(def) = defs.iter().find(|d| {
                        d.standard && d.name == other && d.base_model == rec.entity.base_model()
                    }) else {
                        continue; // read-only or unknown attributes are ignored, as Rails does
                    };
                    match normalize(def, v, sw) {
                        Ok(Value::Null) => {
                            rec.fields.remove(other);
                        }
                        Ok(n) => {
                            rec.fields.insert(other.to_owned(), n);
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
        for d in defs.iter().filter(|d| d.required) {
            let present = if d.name == "emails" {
                !rec.emails.is_empty()
            } else if d.standard {
                rec.fields
                    .get(&d.name)
                    .and_then(value_str)
                    .is_some_and(|s| !s.is_empty())
            } else {
                rec.custom
                    .get(&d.name)
                    .and_then(value_str)
                    .is_some_and(|s| !s.is_empty())
            };
            if !present {
                errors.push(format!("{} can't be blank", d.label));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(errors))
        }
    }

    fn apply_emails(&mut self, rec: &mut Record, v: &Value, errors: &mut Vec<String>) {
        match v {
            Value::Null => {
                rec.emails.retain(|e| !e.is_primary);
                promote_primary(&mut rec.emails);
            }
            Value::String(s) if s.trim().is_empty() => {
                rec.emails.retain(|e| !e.is_primary);
                promote_primary(&mut rec.emails);
            }
            Value::String(s) => {
                let s = s.trim();
                if !is_valid_email(s) {
                    errors.push("Email is invalid".to_owned());
                    return;
                }
                if let Some(i) = rec
                    .emails
                    .iter()
                    .position(|e| e.value.eq_ignore_ascii_case(s))
                {
                    rec.emails[i].value = s.to_owned();
                    for (j, e) in rec.emails.iter_mut().enumerate() {
                        e.is_primary = j == i;
                    }
                } else if let Some(p) = rec.emails.iter_mut().find(|e| e.is_primary) {
                    p.value = s.to_owned();
                } else {
                    let id = self.alloc_id();
                    for e in &mut rec.emails {
                        e.is_primary = false;
                    }
                    rec.emails.insert(
                        0,
                        EmailEntry {
                            id,
                            value: s.to_owned(),
                            is_primary: true,
                            label: None,
                        },
                    );
                }
            }
            Value::Array(items) => {
                let mut new_primary: Option<u64> = None;
                for item in items {
                    let (id, value, primary, label, destroy) = match item {
                        Value::String(s) => (None, Some(s.trim().to_owned()), None, None, false),
                        Value::Object(o) => (
                            o.get("id").and_then(as_u64),
                            o.get("value")
                                .or(o.get("email"))
                                .and_then(Value::as_str)
                                .map(|s| s.trim().to_owned()),
                            o.get("is_primary").and_then(as_bool),
                            o.get("label").and_then(Value::as_str).map(str::to_owned),
                            o.get("_destroy").and_then(as_bool).unwrap_or(false),
                        ),
                        _ => {
                            errors.push("Emails is invalid".to_owned());
                            continue;
                        }
                    };
                    if let Some(v) = &value
                        && !destroy
                        && !is_valid_email(v)
                    {
                        errors.push("Email is invalid".to_owned());
                        continue;
                    }
                    let existing = id
                        .and_then(|id| rec.emails.iter().position(|e| e.id == id))
                        .or_else(|| {
                            value.as_ref().and_then(|v| {
                                rec.emails
                                    .iter()
                                    .position(|e| e.value.eq_ignore_ascii_case(v))
                            })
                        });
                    if destroy {
                        if let Some(i) = existing {
                            rec.emails.remove(i);
                        }
                        continue;
                    }
                    let entry_id = match existing {
                        Some(i) => {
                            let e = &mut rec.emails[i];
                            if let Some(v) = value {
                                e.value = v;
                            }
                            if label.is_some() {
                                e.label = label;
                            }
                            e.id
                        }
                        None => {
                            let Some(v) = value else {
                                if id.is_some() {
                                    errors.push("Emails is invalid".to_owned());
                                }
                                continue;
                            };
                            let nid = self.alloc_id();
                            rec.emails.push(EmailEntry {
                                id: nid,
                                value: v,
                                is_primary: false,
                                label,
                            });
                            nid
                        }
                    };
                    if primary == Some(true) {
                        new_primary = Some(entry_id);
                    }
                }
                if let Some(p) = new_primary {
                    for e in &mut rec.emails {
                        e.is_primary = e.id == p;
                    }
                }
                promote_primary(&mut rec.emails);
            }
            _ => errors.push("Emails is invalid".to_owned()),
        }
    }

    fn apply_sales_accounts(&mut self, rec: &mut Record, v: &Value, errors: &mut Vec<String>) {
        let items: Vec<&Value> = match v {
            Value::Null => {
                rec.sales_accounts.clear();
                return;
            }
            Value::Array(a) => a.iter().collect(),
            o @ Value::Object(_) => vec![o],
            _ => {
                errors.push("Accounts is invalid".to_owned());
                return;
            }
        };
        let mut out = Vec::new();
        for item in items {
            let primary = item.get("is_primary").and_then(as_bool).unwrap_or(false);
            let id = if let Some(id) = item.get("id").and_then(as_u64) {
                if self.refs.sales_account(id).is_none() {
                    errors.push("Accounts is invalid".to_owned());
                    continue;
                }
                id
            } else if let Some(name) = item.get("name").and_then(Value::as_str) {
                let website = item.get("website").and_then(Value::as_str);
                let mut next = self.next_id;
                let mut alloc = || {
                    next += 5;
                    next
                };
                let id = self.refs.sales_account_by_name(name, website, &mut alloc);
                self.next_id = self.next_id.max(next);
                id
            } else {
                errors.push("Accounts is invalid".to_owned());
                continue;
            };
            out.push((id, primary));
        }
        if !out.is_empty() && !out.iter().any(|(_, p)| *p) {
            out[0].1 = true;
        }
        // Primary first, as the API returns them.
        out.sort_by_key(|(_, p)| !*p);
        rec.sales_accounts = out;
    }

    fn duplicate_email(&self, rec: &Record) -> bool {
        rec.emails.iter().any(|e| {
            self.with_address(&e.value)
                .filter(|id| *id != rec.id)
                .filter_map(|id| self.get(rec.entity, id))
                .filter(|o| !o.deleted)
                .any(|o| {
                    o.emails
                        .iter()
                        .any(|x| x.value.eq_ignore_ascii_case(&e.value))
                })
        })
    }

    /// Create a record (`POST /contacts`). Returns its id.
    pub fn create(
        &mut self,
        entity: Entity,
        input: &Map<String, Value>,
        sw: &Switches,
        now: OffsetDateTime,
        user: u64,
    ) -> Result<u64, ApiError> {
        let id = self.alloc_id();
        let mut rec = Record::blank(id, entity, secs(now), user);
        self.apply(&mut rec, input, sw)?;
        if sw.duplicate_email == DuplicateEmail::Reject && self.duplicate_email(&rec) {
            return Err(ApiError::invalid(vec![
                "Email has already been taken".to_owned(),
            ]));
        }
        self.put(rec);
        Ok(id)
    }

    /// Update a record (`PUT /contacts/{id}`): partial; `updated_at` moves if anything changed.
    pub fn update(
        &mut self,
        entity: Entity,
        id: u64,
        input: &Map<String, Value>,
        sw: &Switches,
        now: OffsetDateTime,
        user: u64,
    ) -> Result<(), ApiError> {
        let Some(orig) = self.get(entity, id).cloned() else {
            return Err(ApiError::not_found());
        };
        if orig.deleted && sw.update_soft_deleted == SoftDeletedUpdate::NotFound {
            return Err(ApiError::not_found());
        }
        let mut rec = orig.clone();
        self.apply(&mut rec, input, sw)?;
        self.commit(rec, &orig, now, user);
        Ok(())
    }

    /// Store `rec` (a modified copy of `orig`), bumping `updated_at` if its content changed.
    pub(super) fn commit(
        &mut self,
        mut rec: Record,
        orig: &Record,
        now: OffsetDateTime,
        user: u64,
    ) -> bool {
        let changed = !rec.same_content(orig);
        if changed {
            rec.updated_at = secs(now).max(orig.updated_at);
            rec.updater_id = user;
        }
        self.put(rec);
        changed
    }

    /// Live records of `entity` whose `key` equals `value` (emails: any address; case per
    /// switch), oldest first.
    pub fn find_by(&self, entity: Entity, key: &str, value: &Value, sw: &Switches) -> Vec<u64> {
        let Some(want) = value_str(value) else {
            return Vec::new();
        };
        let eq = |a: &str| {
            if sw.email_case_insensitive && matches!(key, "emails" | "email") {
                a.eq_ignore_ascii_case(&want)
            } else {
                a == want
            }
        };
        let matches = |r: &&Record| match key {
            "emails" | "email" => r.emails.iter().any(|e| eq(&e.value)),
            "id" => r.id.to_string() == want,
            k if k.starts_with("cf_") => {
                r.custom.get(k).and_then(value_str).is_some_and(|v| eq(&v))
            }
            k => r.field_str(k).is_some_and(|v| eq(&v)),
        };
        // Emails and ids through the indexes (the candidates are then checked as a scan
        // would); other keys by a scan.
        let mut hits: Vec<&Record> = match key {
            "emails" | "email" => self
                .with_address(&want)
                .filter_map(|id| self.get(entity, id))
                .filter(|r| !r.deleted)
                .filter(matches)
                .collect(),
            "id" => want
                .parse::<u64>()
                .ok()
                .and_then(|id| self.get(entity, id))
                .filter(|r| !r.deleted)
                .filter(matches)
                .into_iter()
                .collect(),
            _ => self.live(entity).filter(matches).collect(),
        };
        hits.sort_by_key(|r| (r.created_at, r.id));
        hits.into_iter().map(|r| r.id).collect()
    }

    /// Upsert by `identifier` (`POST /contacts/upsert`). Returns (id, inserted).
    pub fn upsert(
        &mut self,
        entity: Entity,
        identifier: &Map<String, Value>,
        input: &Map<String, Value>,
        sw: &Switches,
        now: OffsetDateTime,
        user: u64,
    ) -> Result<(u64, bool), ApiError> {
        let Some((key, value)) = identifier
            .iter()
            .find(|(_, v)| value_str(v).is_some_and(|s| !s.trim().is_empty()))
        else {
            return Err(ApiError::bad_request("Unique identifier can't be blank"));
        };
        let supported = matches!(
            key.as_str(),
            "emails" | "email" | "mobile_number" | "external_id"
        ) || key.starts_with("cf_");
        if !supported {
            return Err(ApiError::bad_request(format!(
                "Unique identifier {key} is not a unique field"
            )));
        }
        if key.starts_with("cf_") && !self.defs(entity, sw).iter().any(|d| d.name == *key) {
            return Err(ApiError::bad_request(format!("{key} is invalid")));
        }
        // The identifier value is written too (an insert must carry it).
        let mut merged = input.clone();
        let field = if key == "email" {
            "emails"
        } else {
            key.as_str()
        };
        if key.starts_with("cf_") {
            let mut cf = merged
                .get("custom_field")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            cf.entry(key.clone()).or_insert_with(|| value.clone());
            merged.insert("custom_field".into(), Value::Object(cf));
        } else if !(field == "emails"
            && (merged.contains_key("emails") || merged.contains_key("email")))
        {
            merged
                .entry(field.to_owned())
                .or_insert_with(|| value.clone());
        }
        match self.find_by(entity, key, value, sw).first().copied() {
            Some(id) => {
                // Keep the matched address; add others given in the body.
                if field == "emails"
                    && let Some(Value::String(s)) = merged.get("emails")
                    && self
                        .get(entity, id)
                        .is_some_and(|r| r.emails.iter().any(|e| e.value.eq_ignore_ascii_case(s)))
                {
                    merged.remove("emails");
                }
                self.update(entity, id, &merged, sw, now, user)?;
                Ok((id, false))
            }
            None => Ok((self.create(entity, &merged, sw, now, user)?, true)),
        }
    }

    /// Soft delete (recycle bin): `is_deleted` true, out of views and lists' listings.
    pub fn soft_delete(
        &mut self,
        entity: Entity,
        id: u64,
        now: OffsetDateTime,
        user: u64,
    ) -> Result<(), ApiError> {
        let Some(orig) = self.get(entity, id).cloned() else {
            return Err(ApiError::not_found());
        };
        if orig.deleted {
            return Err(ApiError::not_found());
        }
        let mut rec = orig.clone();
        rec.deleted = true;
        self.commit(rec, &orig, now, user);
        Ok(())
    }

    /// Restore from the recycle bin (control API).
    pub fn restore(
        &mut self,
        entity: Entity,
        id: u64,
        now: OffsetDateTime,
        user: u64,
    ) -> Result<(), ApiError> {
        let Some(orig) = self.get(entity, id).cloned() else {
            return Err(ApiError::not_found());
        };
        let mut rec = orig.clone();
        rec.deleted = false;
        self.commit(rec, &orig, now, user);
        Ok(())
    }

    /// Permanent erase (`/forget`).
    pub fn forget(&mut self, entity: Entity, id: u64) -> Result<(), ApiError> {
        if self.get(entity, id).is_none() {
            return Err(ApiError::not_found());
        }
        self.take(id);
        self.list_unsubscribes.retain(|(_, c)| *c != id);
        Ok(())
    }

    /// Set `updated_at` of records directly (control API; ties and out-of-order data).
    pub fn set_updated_at(&mut self, ids: &[u64], at: OffsetDateTime) -> Result<(), ApiError> {
        if ids.iter().any(|id| !self.records.contains_key(id)) {
            return Err(ApiError::not_found());
        }
        self.generation += 1;
        for id in ids {
            if let Some(r) = self.records.get_mut(id) {
                r.updated_at = secs(at);
            }
        }
        Ok(())
    }
}

fn is_valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
}

fn promote_primary(emails: &mut [EmailEntry]) {
    if !emails.is_empty() && !emails.iter().any(|e| e.is_primary) {
        emails[0].is_primary = true;
    }
    let mut seen = false;
    for e in emails.iter_mut() {
        if e.is_primary {
            if seen {
                e.is_primary = false;
            }
            seen = true;
        }
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_u64().map(|n| n != 0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn as_number(v: &Value) -> Option<Value> {
    match v {
        Value::Number(_) => Some(v.clone()),
        Value::String(s) => {
            let t = s.trim();
            if let Ok(i) = t.parse::<i64>() {
                Some(json!(i))
            } else {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| json!(f))
            }
        }
        _ => None,
    }
}

/// Normalise one value for field `def`; `Err` is the validation message.
fn normalize(def: &FieldDef, v: &Value, _sw: &Switches) -> Result<Value, String> {
    if v.is_null() || v.as_str().is_some_and(|s| s.is_empty()) && def.ftype != FieldType::Text {
        return Ok(Value::Null);
    }
    let invalid = || format!("{} is invalid", def.label);
    match def.ftype {
        FieldType::Text | FieldType::Textarea | FieldType::AutoComplete => match v {
            Value::String(s) => Ok(if s.is_empty() { Value::Null } else { json!(s) }),
            Value::Number(n) => Ok(json!(n.to_string())),
            Value::Bool(b) => Ok(json!(b.to_string())),
            _ => Err(invalid()),
        },
        FieldType::Number => as_number(v).ok_or_else(|| format!("{} is not a number", def.label)),
        FieldType::Checkbox => as_bool(v).map(Value::Bool).ok_or_else(invalid),
        FieldType::Dropdown if def.id_valued => {
            let id = as_u64(v).ok_or_else(invalid)?;
            if def.choices.iter().any(|c| c.id == id) {
                Ok(json!(id))
            } else {
                Err(invalid())
            }
        }
        FieldType::Dropdown => {
            let s = value_str(v).ok_or_else(invalid)?;
            def.choices
                .iter()
                .find(|c| c.value.eq_ignore_ascii_case(s.trim()))
                .map(|c| json!(c.value))
                .ok_or_else(invalid)
        }
        FieldType::MultiSelect => {
            let parts: Vec<String> = match v {
                Value::String(s) => s
                    .split(';')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect(),
                Value::Array(a) => a.iter().filter_map(value_str).collect(),
                _ => return Err(invalid()),
            };
            let mut out = Vec::new();
            for p in parts {
                let c = def
                    .choices
                    .iter()
                    .find(|c| c.value.eq_ignore_ascii_case(&p))
                    .ok_or_else(invalid)?;
                if !out.contains(&c.value) {
                    out.push(c.value.clone());
                }
            }
            Ok(if out.is_empty() {
                Value::Null
            } else {
                json!(out.join(";"))
            })
        }
        FieldType::Date => {
            let s = v.as_str().ok_or_else(invalid)?.trim();
            let date_part = s.get(..10).ok_or_else(invalid)?;
            let fmt = time::macros::format_description!("[year]-[month]-[day]");
            time::Date::parse(date_part, &fmt).map_err(|_| invalid())?;
            if s.len() > 10 && !s[10..].starts_with('T') && !s[10..].starts_with(' ') {
                return Err(invalid());
            }
            Ok(json!(date_part))
        }
        FieldType::Group => Err(invalid()),
    }
}

fn apply_custom(
    rec: &mut Record,
    defs: &[FieldDef],
    key: &str,
    v: &Value,
    sw: &Switches,
    errors: &mut Vec<String>,
) {
    let Some(def) = defs.iter().find(|d| !d.standard && d.name == key) else {
        if sw.strict_custom_fields {
            errors.push(format!("{key} is invalid"));
        }
        return;
    };
    match normalize(def, v, sw) {
        Ok(Value::Null) => {
            rec.custom.remove(key);
        }
        Ok(n) => {
            rec.custom.insert(key.to_owned(), n);
        }
        Err(e) => errors.push(e),
    }
}

fn apply_nested(
    rec: &mut Record,
    defs: &[FieldDef],
    model: &str,
    v: &Value,
    errors: &mut Vec<String>,
) {
    let target = if model == "LeadCompany" {
        &mut rec.company
    } else {
        &mut rec.deal
    };
    match v {
        Value::Null => target.clear(),
        Value::Object(o) => {
            for (k, val) in o {
                let def = defs.iter().find(|d| d.base_model == model && d.name == *k);
                let n = match def {
                    Some(d) => normalize(d, val, &Switches::default()),
                    // Other company/deal attributes (address, industry_type_id…) kept as given.
                    None => Ok(val.clone()),
                };
                match n {
                    Ok(Value::Null) => {
                        target.remove(k);
                    }
                    Ok(n) => {
                        target.insert(k.clone(), n);
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        _ => errors.push(format!(
            "{} is invalid",
            if model == "LeadCompany" {
                "Company"
            } else {
                "Deal"
            }
        )),
    }
}
