//! Lists: create, rename, members, and membership changes.

use time::OffsetDateTime;

use crate::freshworks::error::ApiError;
use crate::freshworks::fields::Entity;

use super::{List, Store, secs};

impl Store {
    /// Create a list.
    pub fn create_list(&mut self, name: &str, now: OffsetDateTime) -> Result<u64, ApiError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(ApiError::invalid(vec!["Name can't be blank".to_owned()]));
        }
        if self
            .lists
            .values()
            .any(|l| l.name.eq_ignore_ascii_case(name))
        {
            return Err(ApiError::invalid(vec![
                "Name has already been taken".to_owned(),
            ]));
        }
        let id = self.alloc_id();
        let now = secs(now);
        self.lists.insert(
            id,
            List {
                id,
                name: name.to_owned(),
                created_at: now,
                updated_at: now,
            },
        );
        Ok(id)
    }

    /// Rename a list.
    pub fn rename_list(
        &mut self,
        id: u64,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<(), ApiError> {
        let name = name.trim();
        if !self.lists.contains_key(&id) {
            return Err(ApiError::not_found());
        }
        if name.is_empty() {
            return Err(ApiError::invalid(vec!["Name can't be blank".to_owned()]));
        }
        if self
            .lists
            .values()
            .any(|l| l.id != id && l.name.eq_ignore_ascii_case(name))
        {
            return Err(ApiError::invalid(vec![
                "Name has already been taken".to_owned(),
            ]));
        }
        if let Some(l) = self.lists.get_mut(&id)
            && l.name != name
        {
            l.name = name.to_owned();
            l.updated_at = secs(now);
        }
        Ok(())
    }

    /// Live contact ids in list `id`.
    pub fn list_members(&self, id: u64) -> Vec<u64> {
        self.live(Entity::Contact)
            .filter(|r| r.list_ids.contains(&id))
            .map(|r| r.id)
            .collect()
    }

    /// Add (`add`) or remove contacts from a list. Unknown or deleted ids are skipped.
    /// Returns how many records changed.
    pub fn change_membership(
        &mut self,
        list: u64,
        ids: &[u64],
        add: bool,
        bump: bool,
        now: OffsetDateTime,
        user: u64,
    ) -> Result<usize, ApiError> {
        if !self.lists.contains_key(&list) {
            return Err(ApiError::not_found());
        }
        let mut changed = 0;
        for id in ids {
            let Some(orig) = self
                .get(Entity::Contact, *id)
                .filter(|r| !r.deleted)
                .cloned()
            else {
                continue;
            };
            let mut rec = orig.clone();
            let did = if add {
                rec.list_ids.insert(list)
            } else {
                rec.list_ids.remove(&list)
            };
            if !did {
                continue;
            }
            changed += 1;
            if bump {
                self.commit(rec, &orig, now, user);
            } else {
                self.put(rec);
            }
        }
        if add {
            for id in ids {
                self.list_unsubscribes.remove(&(list, *id));
            }
        }
        Ok(changed)
    }
}
