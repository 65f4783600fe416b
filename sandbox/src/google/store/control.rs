//! Control-API operations: seeded contacts, user groups, and a user's edits and deletions.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::google::error::ApiError;
use crate::google::person;
use crate::google::person::{FieldMask, PERSON_FIELDS, PersonData, PersonInput, RenderOpts};

use super::{Group, Store, rfc3339};

impl Store {
    /// Add a contact as the seed or the user would (no auth, no quota, no etag).
    pub fn insert_seeded(&mut self, data: PersonData, now: OffsetDateTime) -> String {
        let input = PersonInput {
            fields: data.fields,
            ..PersonInput::default()
        };
        let memberships = if data.memberships.is_empty() {
            BTreeSet::from(["contactGroups/myContacts".to_owned()])
        } else {
            data.memberships
        };
        self.insert_contact(&input, memberships, now)
    }

    /// Create (or find, by name) a user group, as the user would in the app.
    pub fn ensure_user_group(&mut self, name: &str, now: OffsetDateTime) -> String {
        if let Some(g) = self.groups.values().find(|g| !g.deleted && g.name == name) {
            return g.resource_name.clone();
        }
        let rn = format!("contactGroups/{}", self.mint_hex16());
        self.groups.insert(
            rn.clone(),
            Group {
                resource_name: rn.clone(),
                name: name.into(),
                formatted_name: None,
                system: false,
                client_data: Vec::new(),
                etag: String::new(),
                update_time: now,
                seq: 0,
                deleted: false,
                version: 0,
            },
        );
        self.touch_group(&rn, now);
        rn
    }

    /// Edit a contact as the user would in Google Contacts: every Person field present in
    /// `body` replaces the stored one (memberships included); no etag needed. The etag and
    /// `updateTime` move.
    pub fn user_edit(
        &mut self,
        rn: &str,
        body: &Value,
        now: OffsetDateTime,
    ) -> Result<(), ApiError> {
        let input = person::parse_person(body, "person")?;
        let c = self.live(rn).ok_or_else(ApiError::not_found)?;
        let memberships = match &input.memberships {
            Some(w) => Some(self.resolve_memberships(&c.data.memberships, w)?),
            None => None,
        };
        let mut keys: BTreeSet<&'static str> = input
            .fields
            .keys()
            .filter_map(|k| PERSON_FIELDS.iter().copied().find(|f| f == k))
            .collect();
        if memberships.is_some() {
            keys.insert("memberships");
        }
        self.apply_update(rn, &input, &FieldMask(keys), memberships, now);
        Ok(())
    }

    /// Delete a contact as the user would (404 if unknown or already deleted).
    pub fn user_delete(&mut self, rn: &str, now: OffsetDateTime) -> Result<(), ApiError> {
        self.delete_contact(rn, now)
    }

    /// Full state dump for the control API: contacts (deleted included) with etags, groups
    /// with their members, change sequence and token generation.
    pub fn inspect(&self) -> Value {
        let all = FieldMask::all();
        let people: Vec<Value> = self
            .contacts
            .values()
            .map(|c| {
                let person = if c.deleted {
                    Value::Null
                } else {
                    self.render(c, &all, RenderOpts::default())
                };
                json!({
                    "resourceName": c.resource_name,
                    "deleted": c.deleted,
                    "etag": person::person_etag(&all, c.source_etag, self.settings.etag_varies_by_mask),
                    "sourceEtag": person::source_etag_text(c.source_etag),
                    "updateTime": rfc3339(c.update_time),
                    "seq": c.seq,
                    "memberships": c.data.memberships,
                    "person": person,
                })
            })
            .collect();
        let groups: Vec<Value> = self
            .groups
            .values()
            .map(|g| {
                json!({
                    "resourceName": g.resource_name,
                    "name": g.name,
                    "groupType": if g.system { "SYSTEM_CONTACT_GROUP" } else { "USER_CONTACT_GROUP" },
                    "etag": g.etag,
                    "deleted": g.deleted,
                    "updateTime": rfc3339(g.update_time),
                    "clientData": g.client_data,
                    "members": if g.deleted { Vec::new() } else { self.members(&g.resource_name) },
                })
            })
            .collect();
        json!({
            "people": people,
            "groups": groups,
            "seq": self.seq,
            "syncTokenGeneration": self.sync_generation,
            "profile": {
                "resourceName": format!("people/{}", self.profile.account_id),
                "email": self.profile.email,
            },
        })
    }
}
