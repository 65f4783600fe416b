//! `people.searchContacts`: the search index, rebuilt lazily, and prefix-phrase matching.

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::google::error::ApiError;
use crate::google::person::{FieldMask, RenderOpts};

use super::{Contact, SearchCache, Store, prefix_phrase_match};

impl Store {
    fn search_texts(c: &Contact) -> Vec<String> {
        let mut texts = Vec::new();
        let d = &c.data;
        for (field, keys) in [
            (
                "names",
                &["givenName", "familyName", "middleName", "unstructuredName"][..],
            ),
            ("nicknames", &["value"][..]),
            ("emailAddresses", &["value"][..]),
            ("phoneNumbers", &["value"][..]),
            ("organizations", &["name", "title", "department"][..]),
        ] {
            for item in d.fields.get(field).into_iter().flatten() {
                for k in keys {
                    if let Some(s) = item.get(*k).and_then(Value::as_str) {
                        texts.push(s.to_lowercase());
                        if field == "phoneNumbers" {
                            texts.push(s.chars().filter(char::is_ascii_digit).collect());
                        }
                    }
                }
            }
            if field == "names"
                && let Some(n) = d.fields.get("names").and_then(|n| n.first())
            {
                let full = ["givenName", "middleName", "familyName"]
                    .iter()
                    .filter_map(|k| n.get(*k).and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(" ");
                texts.push(full.to_lowercase());
            }
        }
        texts
    }

    fn rebuild_search(&mut self) {
        let entries = self
            .contacts
            .values()
            .filter(|c| !c.deleted)
            .map(|c| (c.resource_name.clone(), Self::search_texts(c)))
            .collect();
        self.search = Some(SearchCache { entries });
    }

    /// `people.searchContacts` (docs/google-people-api.md §3.3, §9.5). An empty query warms the cache up.
    pub fn search(
        &mut self,
        query: &str,
        read_mask: &FieldMask,
        page_size: Option<i64>,
        now: OffsetDateTime,
    ) -> Result<Value, ApiError> {
        let size = page_size.unwrap_or(10);
        if size < 0 {
            return Err(ApiError::invalid_argument("pageSize must not be negative."));
        }
        let size = if size == 0 { 10 } else { size.min(30) } as usize;
        let lag = time::Duration::seconds(self.settings.propagation_lag_secs.max(0));
        if query.trim().is_empty() {
            // Warm-up: the cache refresh completes after the propagation lag.
            let due = now + lag;
            if self.search_refresh_due.is_none_or(|d| d > due) {
                self.search_refresh_due = Some(due);
            }
            return Ok(json!({}));
        }
        let q = query.trim().to_lowercase();
        let matched: Vec<String> = if self.settings.search_requires_warmup {
            if self.search_refresh_due.is_some_and(|d| d <= now) {
                self.search_refresh_due = None;
                self.rebuild_search();
            }
            self.search
                .iter()
                .flat_map(|s| &s.entries)
                .filter(|(_, texts)| texts.iter().any(|t| prefix_phrase_match(t, &q)))
                .map(|(rn, _)| rn.clone())
                .collect()
        } else {
            let horizon = now - lag;
            self.contacts
                .values()
                .filter(|c| !c.deleted && c.update_time <= horizon)
                .filter(|c| {
                    Self::search_texts(c)
                        .iter()
                        .any(|t| prefix_phrase_match(t, &q))
                })
                .map(|c| c.resource_name.clone())
                .collect()
        };
        let results: Vec<Value> = matched
            .iter()
            .filter_map(|rn| self.live(rn))
            .take(size)
            .map(|c| json!({"person": self.render(c, read_mask, RenderOpts::default())}))
            .collect();
        if results.is_empty() {
            return Ok(json!({}));
        }
        Ok(json!({ "results": results }))
    }
}
