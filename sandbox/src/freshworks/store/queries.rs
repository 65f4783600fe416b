//! Queries: the records a view selects, sorted pages of them, and filtered searches.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::freshworks::error::ApiError;
use crate::freshworks::fields::{Entity, FieldDef};
use crate::freshworks::switches::{SortType, Switches};

use super::{FilterRule, PageRequest, Record, Sorted, Store, View, ViewKind, mix, secs, value_str};

impl Store {
    /// Ids of live records selected by a view.
    pub fn view_ids(&self, view: &View, now: OffsetDateTime, user: u64) -> Vec<u64> {
        let cutoff = now - time::Duration::days(30);
        self.live(view.entity)
            .filter(|r| match view.kind {
                ViewKind::All => true,
                ViewKind::Mine => r.fields.get("owner_id").and_then(Value::as_u64) == Some(user),
                ViewKind::New => r.created_at >= cutoff,
            })
            .map(|r| r.id)
            .collect()
    }

    /// Sort `ids` and cut out the requested page; applies pending page quirks.
    /// Returns (page ids, total).
    pub fn page(&mut self, ids: Vec<u64>, req: &PageRequest, sw: &Switches) -> (Vec<u64>, usize) {
        let field = req
            .sort
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| sw.default_sort.clone());
        let desc = req.sort_type.unwrap_or(sw.default_sort_type) == SortType::Desc;
        self.tie_salt = self.tie_salt.wrapping_add(1);
        let salt = self.tie_salt;
        let shuffle = sw.shuffle_ties;
        // Paging through a listing asks for the same ids sorted the same way on unchanged
        // records page after page: sorted once (ties broken by id, so the order is a
        // function of the records; shuffled ties are drawn per request, never reused).
        let reuse = !shuffle
            && self.sorted.as_ref().is_some_and(|c| {
                c.generation == self.generation
                    && c.desc == desc
                    && c.field == field
                    && c.input == ids
            });
        if !reuse {
            let order = self.sort_ids(&ids, &field, desc, shuffle.then_some(salt));
            self.sorted = Some(Sorted {
                generation: self.generation,
                field,
                desc,
                input: ids,
                output: order,
            });
        }
        let sorted = self
            .sorted
            .as_ref()
            .map_or(&[][..], |c| c.output.as_slice());
        let total = sorted.len();
        let start = (req.page.max(1) - 1).saturating_mul(req.per_page);
        let mut out: Vec<u64> = sorted
            .iter()
            .skip(start)
            .take(req.per_page)
            .copied()
            .collect();
        if shuffle {
            // A shuffled order is never reused.
            self.sorted = None;
        }
        // Short pages happen mid-stream (more pages follow); the record is left out, not
        // moved to the next page.
        let more_follow = start.saturating_add(req.per_page) < total;
        if !out.is_empty() && more_follow && self.quirks.short_pages > 0 {
            self.quirks.short_pages -= 1;
            out.pop();
        }
        if out.len() >= 2 && self.quirks.unordered_pages > 0 {
            self.quirks.unordered_pages -= 1;
            out.swap(0, 1);
        }
        (out, total)
    }

    /// `ids` sorted by `field` (nulls last), ties by id, or by a salted hash of the id
    /// when `shuffle` has a salt.
    fn sort_ids(&self, ids: &[u64], field: &str, desc: bool, shuffle: Option<u64>) -> Vec<u64> {
        // Keys computed once per record, not per comparison.
        let mut keyed: Vec<(SortKey, u64, u64)> = ids
            .iter()
            .map(|id| {
                let k = self
                    .records
                    .get(id)
                    .map(|r| sort_key(r, field))
                    .unwrap_or(SortKey::Null);
                let tie = match shuffle {
                    Some(salt) => mix(*id ^ mix(salt)),
                    None => *id,
                };
                (k, tie, *id)
            })
            .collect();
        keyed.sort_by(|(ka, ta, _), (kb, tb, _)| {
            let ord = match (ka, kb) {
                // Nulls last whatever the direction.
                (SortKey::Null, SortKey::Null) => std::cmp::Ordering::Equal,
                (SortKey::Null, _) => return std::cmp::Ordering::Greater,
                (_, SortKey::Null) => return std::cmp::Ordering::Less,
                _ => {
                    let o = ka.partial_cmp(kb).unwrap_or(std::cmp::Ordering::Equal);
                    if desc { o.reverse() } else { o }
                }
            };
            ord.then(ta.cmp(tb))
        });
        keyed.into_iter().map(|(_, _, id)| id).collect()
    }

    /// Ids matching a filtered search (live records, or only deleted ones when a `deleted`
    /// rule asks for them).
    pub fn filtered(
        &self,
        entity: Entity,
        rules: &[FilterRule],
        sw: &Switches,
        offset: time::UtcOffset,
    ) -> Result<Vec<u64>, ApiError> {
        let mut want_deleted = false;
        let mut checks: Vec<&FilterRule> = Vec::new();
        for r in rules {
            if r.attribute == "deleted" || r.attribute == "is_deleted" {
                want_deleted = match &r.value {
                    Value::Bool(b) => *b,
                    v => value_str(v).is_some_and(|s| s == "1" || s == "true"),
                };
                if r.operator == "is_not" {
                    want_deleted = !want_deleted;
                }
            } else {
                checks.push(r);
            }
        }
        let defs = self.defs(entity, sw);
        // Validate attributes and operators up front so that an empty store still answers 400.
        for r in &checks {
            resolve_attr(entity, &r.attribute, &defs)?;
            if !OPERATORS.contains(&r.operator.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "Invalid operator {}",
                    r.operator
                )));
            }
            if matches!(r.operator.as_str(), "is_after" | "is_before")
                && matches!(resolve_attr(entity, &r.attribute, &defs)?, Attr::Time(_))
                && parse_time(&r.value, offset).is_none()
            {
                return Err(ApiError::bad_request(format!(
                    "Invalid value for {}",
                    r.attribute
                )));
            }
        }
        // Attributes resolved and wanted values normalised once per search, not per
        // record: a search of 100 emails over 40,000 records was quadratic in allocations.
        let mut prepared = Vec::with_capacity(checks.len());
        for r in &checks {
            let attr = resolve_attr(entity, &r.attribute, &defs)?;
            let wanted = wanted_values(&attr, &r.value, sw);
            prepared.push((attr, r, wanted));
        }
        let ok = |rec: &&Record| {
            rec.entity == entity
                && rec.deleted == want_deleted
                && prepared.iter().all(|(attr, r, wanted)| {
                    rule_matches(rec, attr, &r.operator, &r.value, wanted, sw, offset)
                })
        };
        // An `is` / `is_in` rule on emails or ids names every record that can match:
        // those candidates (from the indexes) are checked instead of every record. The
        // answer is the same ids in the same (ascending) order.
        let narrowing = prepared.iter().find_map(|(attr, r, wanted)| {
            let exact = matches!(r.operator.as_str(), "is" | "is_in");
            match attr {
                Attr::Emails if exact => Some(
                    wanted
                        .iter()
                        .flat_map(|w| self.with_address(w))
                        .collect::<BTreeSet<u64>>(),
                ),
                Attr::Id if exact => Some(
                    wanted
                        .iter()
                        .filter_map(|w| w.parse::<u64>().ok())
                        .collect::<BTreeSet<u64>>(),
                ),
                _ => None,
            }
        });
        Ok(match narrowing {
            Some(ids) => ids
                .into_iter()
                .filter_map(|id| self.records.get(&id))
                .filter(ok)
                .map(|r| r.id)
                .collect(),
            None => self.records.values().filter(ok).map(|r| r.id).collect(),
        })
    }
}

/// Sort key of a record for a field.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum SortKey {
    Null,
    Num(f64),
    Time(i64),
    Str(String),
}

fn sort_key(r: &Record, field: &str) -> SortKey {
    let v = match field {
        "updated_at" => return SortKey::Time(r.updated_at.unix_timestamp()),
        "created_at" => return SortKey::Time(r.created_at.unix_timestamp()),
        "id" => return SortKey::Num(r.id as f64),
        "email" => r.primary_email().map(|e| json!(e)),
        "display_name" | "name" => Some(json!(r.display_name())),
        f if f.starts_with("cf_") => r.custom.get(f).cloned(),
        f => r.fields.get(f).cloned(),
    };
    match v {
        None | Some(Value::Null) => SortKey::Null,
        Some(Value::Number(n)) => SortKey::Num(n.as_f64().unwrap_or(0.0)),
        Some(Value::Bool(b)) => SortKey::Num(if b { 1.0 } else { 0.0 }),
        Some(other) => SortKey::Str(value_str(&other).unwrap_or_default().to_lowercase()),
    }
}

const OPERATORS: &[&str] = &[
    "is",
    "is_not",
    "is_in",
    "is_not_in",
    "contains",
    "starts_with",
    "is_after",
    "is_before",
    "is_empty",
    "is_not_empty",
];

enum Attr {
    Emails,
    Time(&'static str),
    Id,
    Field(String),
    Custom(String),
}

fn resolve_attr(entity: Entity, a: &str, defs: &[FieldDef]) -> Result<Attr, ApiError> {
    Ok(match a {
        // Only the documented attribute (`contact_email.email`, `lead_email.email`):
        // `email` is a `lookup` field name, not a filter attribute the API documents.
        x if x == entity.email_attribute() => Attr::Emails,
        "updated_at" => Attr::Time("updated_at"),
        "created_at" => Attr::Time("created_at"),
        "id" => Attr::Id,
        x if x.starts_with("cf_") && defs.iter().any(|d| !d.standard && d.name == x) => {
            Attr::Custom(x.to_owned())
        }
        x if defs.iter().any(|d| d.standard && d.name == x) => Attr::Field(x.to_owned()),
        _ => {
            return Err(ApiError::bad_request(format!(
                "Invalid filter attribute {a}"
            )));
        }
    })
}

/// Parse a filter time value: RFC 3339, `YYYY-MM-DDTHH:MM:SS` or `YYYY-MM-DD` (account time
/// zone), or Unix seconds.
fn parse_time(v: &Value, offset: time::UtcOffset) -> Option<OffsetDateTime> {
    match v {
        Value::Number(n) => OffsetDateTime::from_unix_timestamp(n.as_i64()?).ok(),
        Value::String(s) => {
            let s = s.trim();
            if let Some(t) = crate::common::clock::parse_rfc3339(s) {
                return Some(t);
            }
            let dt =
                time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
            if let Ok(p) = time::PrimitiveDateTime::parse(s, &dt) {
                return Some(p.assume_offset(offset));
            }
            let d = time::macros::format_description!("[year]-[month]-[day]");
            time::Date::parse(s, &d)
                .ok()
                .map(|d| d.midnight().assume_offset(offset))
        }
        _ => None,
    }
}

/// The values a rule compares with, normalised as [`rule_matches`] compares them (lower
/// case for emails when the account matches them case-insensitively).
fn wanted_values(attr: &Attr, value: &Value, sw: &Switches) -> Vec<String> {
    let ci = sw.email_case_insensitive && matches!(attr, Attr::Emails);
    let norm = |s: &str| if ci { s.to_lowercase() } else { s.to_owned() };
    let mut wanted: Vec<String> = match value {
        Value::Array(a) => a.iter().filter_map(value_str).map(|s| norm(&s)).collect(),
        v => value_str(v).map(|s| norm(&s)).into_iter().collect(),
    };
    // Sorted, so that `is_in` over 100 values is a binary search per record.
    wanted.sort_unstable();
    wanted.dedup();
    wanted
}

/// Whether `rec` passes one filter rule; `wanted` is [`wanted_values`] of the rule (sorted).
fn rule_matches(
    rec: &Record,
    attr: &Attr,
    op: &str,
    value: &Value,
    wanted: &[String],
    sw: &Switches,
    offset: time::UtcOffset,
) -> bool {
    if let Attr::Time(which) = attr {
        let t = if *which == "updated_at" {
            rec.updated_at
        } else {
            rec.created_at
        };
        let t = secs(t);
        let Some(v) = parse_time(value, offset).map(secs) else {
            return false;
        };
        return match op {
            "is_after" => t > v,
            "is_before" => t < v,
            "is" => t == v,
            "is_not" => t != v,
            _ => false,
        };
    }
    let ci = sw.email_case_insensitive && matches!(attr, Attr::Emails);
    let values: Vec<String> = match attr {
        Attr::Emails => rec.emails.iter().map(|e| e.value.clone()).collect(),
        Attr::Id => vec![rec.id.to_string()],
        Attr::Field(f) => rec.field_str(f).into_iter().collect(),
        Attr::Custom(f) => rec.custom.get(f).and_then(value_str).into_iter().collect(),
        Attr::Time(_) => Vec::new(),
    };
    let norm = |s: &str| if ci { s.to_lowercase() } else { s.to_owned() };
    let have: Vec<String> = values.iter().map(|s| norm(s)).collect();
    match op {
        "is" | "is_in" => have.iter().any(|h| wanted.binary_search(h).is_ok()),
        "is_not" | "is_not_in" => !have.iter().any(|h| wanted.binary_search(h).is_ok()),
        "contains" => have.iter().any(|h| {
            wanted
                .iter()
                .any(|w| h.to_lowercase().contains(&w.to_lowercase()))
        }),
        "starts_with" => have.iter().any(|h| {
            wanted
                .iter()
                .any(|w| h.to_lowercase().starts_with(&w.to_lowercase()))
        }),
        "is_empty" => have.iter().all(|h| h.is_empty()),
        "is_not_empty" => have.iter().any(|h| !h.is_empty()),
        "is_after" | "is_before" => {
            let num = |s: &str| s.parse::<f64>().ok();
            have.iter().any(|h| {
                wanted.iter().any(|w| match (num(h), num(w)) {
                    (Some(a), Some(b)) => {
                        if op == "is_after" {
                            a > b
                        } else {
                            a < b
                        }
                    }
                    _ => false,
                })
            })
        }
        _ => false,
    }
}
