//! Contact groups: list, get, create, update, delete, and member changes.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::google::cursor;
use crate::google::cursor::{PageCursor, SyncCursor};
use crate::google::error::ApiError;
use crate::google::person::FieldMask;

use super::connections::page_size;
use super::{
    GROUP_FIELDS, Group, GroupListParams, MAX_BATCH_GET, MAX_MEMBERS_MODIFY, Store, check_keys,
    rfc3339,
};

impl Store {
    fn member_count(&self, rn: &str) -> usize {
        self.contacts
            .values()
            .filter(|c| !c.deleted && c.data.memberships.contains(rn))
            .count()
    }

    pub(super) fn members(&self, rn: &str) -> Vec<String> {
        self.contacts
            .values()
            .filter(|c| !c.deleted && c.data.memberships.contains(rn))
            .map(|c| c.resource_name.clone())
            .collect()
    }

    /// Render a group with `mask`, plus up to `max_members` member names.
    pub fn render_group(&self, g: &Group, mask: &FieldMask, max_members: usize) -> Value {
        let mut out = Map::new();
        out.insert("resourceName".into(), json!(g.resource_name));
        if !g.system {
            out.insert("etag".into(), json!(g.etag));
        }
        if mask.has("metadata") && !g.system {
            out.insert(
                "metadata".into(),
                json!({"updateTime": rfc3339(g.update_time)}),
            );
        }
        if mask.has("groupType") {
            let t = if g.system {
                "SYSTEM_CONTACT_GROUP"
            } else {
                "USER_CONTACT_GROUP"
            };
            out.insert("groupType".into(), json!(t));
        }
        if mask.has("name") {
            out.insert("name".into(), json!(g.name));
            out.insert(
                "formattedName".into(),
                json!(g.formatted_name.as_deref().unwrap_or(&g.name)),
            );
        }
        if max_members > 0 {
            let members: Vec<String> = self
                .members(&g.resource_name)
                .into_iter()
                .take(max_members)
                .collect();
            if !members.is_empty() {
                out.insert("memberResourceNames".into(), json!(members));
            }
        }
        if mask.has("memberCount") {
            let n = self.member_count(&g.resource_name);
            if n > 0 {
                out.insert("memberCount".into(), json!(n));
            }
        }
        if mask.has("clientData") && !g.client_data.is_empty() {
            out.insert("clientData".into(), Value::Array(g.client_data.clone()));
        }
        Value::Object(out)
    }

    fn group_mask(raw: Option<&str>, param: &str) -> Result<FieldMask, ApiError> {
        match raw.filter(|r| !r.trim().is_empty()) {
            None => Ok(FieldMask(
                ["metadata", "groupType", "memberCount", "name"]
                    .into_iter()
                    .collect(),
            )),
            Some(r) => FieldMask::parse(Some(r), &GROUP_FIELDS, param, "contactGroups/list"),
        }
    }

    /// `contactGroups.list` (docs/google-people-api.md §5.1), with group sync tokens and tombstones (§9.6).
    pub fn list_groups(
        &mut self,
        p: &GroupListParams,
        now: OffsetDateTime,
    ) -> Result<Value, ApiError> {
        let mask = Self::group_mask(p.group_fields.as_deref(), "groupFields")?;
        let page_size = page_size(p.page_size, 30, 1000, self.settings.page_size_over_max)?;
        let mask_text = mask.canonical();
        let sync_token = p.sync_token.as_deref().filter(|t| !t.is_empty());
        let bind_hash = cursor::param_hash(&["g", &mask_text]);
        let page_hash = cursor::param_hash(&[
            "g",
            &mask_text,
            &page_size.to_string(),
            sync_token.unwrap_or(""),
        ]);
        let since = match sync_token {
            Some(t) => Some(self.check_sync_token(t, 'g', bind_hash, now)?),
            None => None,
        };
        let (position, origin, after) = match p.page_token.as_deref().filter(|t| !t.is_empty()) {
            Some(t) => {
                let c: PageCursor =
                    cursor::decode(t, &self.secret).ok_or_else(ApiError::bad_token)?;
                if c.k != 'g' || c.h != page_hash {
                    return Err(ApiError::bad_token());
                }
                (c.p, c.o, Some((c.s, c.r)))
            }
            None => (
                self.seq,
                since.as_ref().map_or(now.unix_timestamp(), |s| s.o),
                None,
            ),
        };
        let mut items: Vec<(String, &Group)> = self
            .groups
            .values()
            .filter(|g| match &since {
                Some(s) => g.seq > s.p && g.seq <= position,
                None => !g.deleted,
            })
            // User groups first (by name), then system groups, as Google lists them.
            .map(|g| {
                (
                    format!("{}{}", u8::from(g.system), g.name.to_lowercase()),
                    g,
                )
            })
            .collect();
        items.sort_by(|a, b| (&a.0, &a.1.resource_name).cmp(&(&b.0, &b.1.resource_name)));
        let total = items.len();
        let start = match &after {
            Some((s, r)) => items.partition_point(|(k, g)| (k, &g.resource_name) <= (s, r)),
            None => 0,
        };
        let page: Vec<&(String, &Group)> = items.iter().skip(start).take(page_size).collect();
        let last_page = start + page.len() >= total;
        let mut out = Map::new();
        if !page.is_empty() {
            let groups: Vec<Value> = page
                .iter()
                .map(|(_, g)| {
                    if g.deleted {
                        json!({
                            "resourceName": g.resource_name,
                            "etag": g.etag,
                            "metadata": {"updateTime": rfc3339(g.update_time), "deleted": true}
                        })
                    } else {
                        self.render_group(g, &mask, 0)
                    }
                })
                .collect();
            out.insert("contactGroups".into(), Value::Array(groups));
        }
        if !last_page && let Some((key, g)) = page.last() {
            let pc = PageCursor {
                k: 'g',
                h: page_hash,
                p: position,
                s: key.clone(),
                r: g.resource_name.clone(),
                o: origin,
            };
            out.insert(
                "nextPageToken".into(),
                json!(cursor::encode(&pc, &self.secret)),
            );
        }
        if last_page {
            let sc = SyncCursor {
                k: 'g',
                p: position,
                h: bind_hash,
                i: now.unix_timestamp(),
                o: origin,
                g: self.sync_generation,
            };
            out.insert(
                "nextSyncToken".into(),
                json!(cursor::encode(&sc, &self.secret)),
            );
        }
        if total > 0 {
            out.insert("totalItems".into(), json!(total));
        }
        Ok(Value::Object(out))
    }

    /// `contactGroups.get`.
    pub fn get_group(
        &self,
        rn: &str,
        max_members: Option<i64>,
        group_fields: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mask = Self::group_mask(group_fields, "groupFields")?;
        let g = self.live_group(rn).ok_or_else(ApiError::not_found)?;
        let max = usize::try_from(max_members.unwrap_or(0))
            .map_err(|_| ApiError::invalid_argument("maxMembers must not be negative."))?;
        Ok(self.render_group(g, &mask, max))
    }

    /// `contactGroups.batchGet` (≤200 names).
    pub fn batch_get_groups(
        &self,
        names: &[String],
        max_members: Option<i64>,
        group_fields: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mask = Self::group_mask(group_fields, "groupFields")?;
        if names.is_empty() || names.len() > MAX_BATCH_GET {
            return Err(ApiError::invalid_argument(format!(
                "resourceNames must hold between 1 and {MAX_BATCH_GET} names; {} were given.",
                names.len()
            )));
        }
        let max = usize::try_from(max_members.unwrap_or(0)).unwrap_or(0);
        let responses: Vec<Value> = names
            .iter()
            .map(|rn| match self.live_group(rn) {
                Some(g) => json!({
                    "requestedResourceName": rn,
                    "contactGroup": self.render_group(g, &mask, max),
                    "status": {}
                }),
                None => json!({
                    "requestedResourceName": rn,
                    "status": ApiError::not_found().rpc_status()
                }),
            })
            .collect();
        Ok(json!({ "responses": responses }))
    }

    fn check_group_name(&self, name: &str, except: Option<&str>) -> Result<(), ApiError> {
        if name.trim().is_empty() {
            return Err(ApiError::invalid_argument(
                "contactGroup.name must not be empty.",
            ));
        }
        let clash = self.groups.values().any(|g| {
            !g.deleted
                && Some(g.resource_name.as_str()) != except
                && (g.name.eq_ignore_ascii_case(name)
                    || g.formatted_name
                        .as_deref()
                        .is_some_and(|f| f.eq_ignore_ascii_case(name)))
        });
        if clash {
            return Err(ApiError::conflict(
                self.settings.duplicate_group_status.as_str(),
                format!("Contact group name \"{name}\" already exists."),
            ));
        }
        Ok(())
    }

    /// `contactGroups.create`: `{contactGroup:{name, clientData}, readGroupFields}`.
    pub fn create_group(&mut self, body: &Value, now: OffsetDateTime) -> Result<Value, ApiError> {
        check_keys(body, &["contactGroup", "readGroupFields"], "")?;
        let mask = Self::group_mask(
            body.get("readGroupFields").and_then(Value::as_str),
            "readGroupFields",
        )?;
        let group = body.get("contactGroup").cloned().unwrap_or(Value::Null);
        check_keys(
            &group,
            &[
                "resourceName",
                "etag",
                "name",
                "clientData",
                "metadata",
                "groupType",
                "formattedName",
                "memberResourceNames",
                "memberCount",
            ],
            "contact_group",
        )?;
        let name = group
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        self.check_group_name(&name, None)?;
        let rn = format!("contactGroups/{}", self.mint_hex16());
        let client_data = group
            .get("clientData")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        self.groups.insert(
            rn.clone(),
            Group {
                resource_name: rn.clone(),
                name,
                formatted_name: None,
                system: false,
                client_data,
                etag: String::new(),
                update_time: now,
                seq: 0,
                deleted: false,
                version: 0,
            },
        );
        self.touch_group(&rn, now);
        let g = &self.groups[&rn];
        Ok(self.render_group(g, &mask, 0))
    }

    /// `contactGroups.update`: `{contactGroup:{…}, updateGroupFields, readGroupFields}`.
    pub fn update_group(
        &mut self,
        rn: &str,
        body: &Value,
        now: OffsetDateTime,
    ) -> Result<Value, ApiError> {
        check_keys(
            body,
            &["contactGroup", "updateGroupFields", "readGroupFields"],
            "",
        )?;
        let read = Self::group_mask(
            body.get("readGroupFields").and_then(Value::as_str),
            "readGroupFields",
        )?;
        let update = match body
            .get("updateGroupFields")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
        {
            None => FieldMask(["name"].into_iter().collect()),
            Some(r) => FieldMask::parse(
                Some(r),
                &["name", "clientData"],
                "updateGroupFields",
                "contactGroups/update",
            )?,
        };
        let group = body.get("contactGroup").cloned().unwrap_or(Value::Null);
        let g = self.live_group(rn).ok_or_else(ApiError::not_found)?;
        if g.system {
            return Err(ApiError::failed_precondition(
                "System contact groups cannot be updated.",
            ));
        }
        match group.get("etag").and_then(Value::as_str) {
            Some(e) if e != g.etag => {
                return Err(ApiError::failed_precondition(
                    "Request contactGroup.etag is different than the current contactGroup.etag. Clear local cache and get the latest contact group.",
                ));
            }
            None if self.settings.group_update_requires_etag => {
                return Err(ApiError::invalid_argument(
                    "Request must set contactGroup.etag.",
                ));
            }
            _ => {}
        }
        let name = group
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if update.has("name") {
            self.check_group_name(&name, Some(rn))?;
        }
        let client_data = group
            .get("clientData")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(g) = self.groups.get_mut(rn) {
            if update.has("name") {
                g.name = name;
            }
            if update.has("clientData") {
                g.client_data = client_data;
            }
        }
        self.touch_group(rn, now);
        Ok(self.render_group(&self.groups[rn], &read, 0))
    }

    /// `contactGroups.delete`, optionally deleting the members.
    pub fn delete_group(
        &mut self,
        rn: &str,
        delete_contacts: bool,
        now: OffsetDateTime,
    ) -> Result<(), ApiError> {
        let g = self.live_group(rn).ok_or_else(ApiError::not_found)?;
        if g.system {
            return Err(ApiError::failed_precondition(
                "System contact groups cannot be deleted.",
            ));
        }
        for member in self.members(rn) {
            if delete_contacts {
                self.tombstone(&member, now);
            } else {
                if let Some(c) = self.contacts.get_mut(&member) {
                    c.data.memberships.remove(rn);
                }
                self.touch(&member, now);
            }
        }
        if let Some(g) = self.groups.get_mut(rn) {
            g.deleted = true;
        }
        self.touch_group(rn, now);
        Ok(())
    }

    /// `contactGroups.members.modify` (docs/google-people-api.md §5.2, §9.6).
    pub fn modify_members(
        &mut self,
        rn: &str,
        add: &[String],
        remove: &[String],
        now: OffsetDateTime,
    ) -> Result<Value, ApiError> {
        if add.len() + remove.len() > MAX_MEMBERS_MODIFY {
            return Err(ApiError::invalid_argument(format!(
                "Too many resource names: at most {MAX_MEMBERS_MODIFY} may be added and removed in one request; {} were given.",
                add.len() + remove.len()
            )));
        }
        let g = self.live_group(rn).ok_or_else(ApiError::not_found)?;
        if g.system && !add.is_empty() && !ADDABLE_SYSTEM_GROUPS.contains(&rn) {
            return Err(ApiError::invalid_argument(format!(
                "Cannot add contacts to the system contact group \"{rn}\"; only user groups, contactGroups/myContacts and contactGroups/starred accept new members."
            )));
        }
        for n in add.iter().chain(remove) {
            if !n.starts_with("people/") {
                return Err(ApiError::invalid_argument(format!(
                    "Resource name \"{n}\" is not a valid person resource name."
                )));
            }
        }
        let mut not_found = Vec::new();
        let mut last_group = Vec::new();
        for n in add {
            match self.live(n) {
                None => not_found.push(n.clone()),
                Some(c) if c.data.memberships.contains(rn) => {}
                Some(_) => {
                    if let Some(c) = self.contacts.get_mut(n) {
                        c.data.memberships.insert(rn.to_owned());
                    }
                    self.touch(n, now);
                }
            }
        }
        for n in remove {
            match self.live(n) {
                None => not_found.push(n.clone()),
                Some(c) if !c.data.memberships.contains(rn) => {}
                Some(c) if c.data.memberships.len() == 1 => last_group.push(n.clone()),
                Some(_) => {
                    if let Some(c) = self.contacts.get_mut(n) {
                        c.data.memberships.remove(rn);
                    }
                    self.touch(n, now);
                }
            }
        }
        let mut out = Map::new();
        if !not_found.is_empty() {
            out.insert("notFoundResourceNames".into(), json!(not_found));
        }
        if !last_group.is_empty() {
            out.insert(
                "canNotRemoveLastContactGroupResourceNames".into(),
                json!(last_group),
            );
        }
        Ok(Value::Object(out))
    }
}

/// System groups that accept new members; the others only allow removal (docs/google-people-api.md §5.2).
pub(super) const ADDABLE_SYSTEM_GROUPS: [&str; 2] =
    ["contactGroups/myContacts", "contactGroups/starred"];
