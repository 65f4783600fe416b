//! A user's edit and deletion in the simulated app (control API), seen by the next listing.

use crate::conformance::NEEDS_SANDBOX;
use crate::runtime::ConnectorClient;
use crate::runtime::types::{DeleteDetection, EntityInfo};

use super::{Expected, Fields, Kit, text_of};

impl<'a> Kit<'a> {
    /// A user edits one created record and deletes another in the app (control API);
    /// the next listing shows both. Returns the id deleted by the user.
    pub(super) async fn user_edit(
        &mut self,
        client: &ConnectorClient,
        entity: &EntityInfo,
        fields: &Fields,
        cursor: Option<String>,
        expected: &[Expected],
    ) -> Option<String> {
        const NAME: &str = "pull after user edit";
        let scope = entity.name.as_str();
        let Some(control) = self.control() else {
            self.skip(scope, NAME, NEEDS_SANDBOX);
            return None;
        };
        let Some(first_name) = &fields.first_name else {
            self.skip(scope, NAME, "the schema has no writable first-name field");
            return None;
        };
        if entity.incremental && cursor.is_none() {
            self.skip(
                scope,
                NAME,
                "the previous incremental listing did not complete",
            );
            return None;
        }
        self.tick().await;
        let edited = expected[1].id.clone();
        let deleted = expected[0].id.clone();
        let acted = async {
            control
                .user_edit_first_name(scope, &edited, "Edited")
                .await?;
            control.user_delete(scope, &deleted).await
        }
        .await;
        if let Err(e) = acted {
            self.row(scope, NAME, Err(e.to_string()));
            return None;
        }
        let before = expected[1].version.clone();
        let from = if entity.incremental { cursor } else { None };
        let listing = match self
            .pull_all(client, scope, None, from, !entity.incremental)
            .await
        {
            Ok(listing) => listing,
            Err(reason) => {
                self.row(scope, NAME, Err(reason));
                return Some(deleted);
            }
        };
        let tombstones = entity.incremental && entity.deletes == DeleteDetection::Tombstones;
        let mut problems = Vec::new();
        match listing.get(&edited) {
            None => problems.push(format!("{edited}, edited by the user, is missing")),
            Some(record) => {
                let value = text_of(record, first_name).unwrap_or_default();
                if value != "Edited" {
                    problems.push(format!(
                        "{edited}: `{first_name}` is `{value}`, the user set `Edited`"
                    ));
                }
                if before.is_some() && record.version == before {
                    problems.push(format!(
                        "{edited}: the version did not change after the user's edit"
                    ));
                }
            }
        }
        if listing.get(&deleted).is_some() && !listing.deleted.contains(&deleted) {
            problems.push(format!("{deleted}, deleted by the user, is still listed"));
        } else if tombstones && !listing.deleted.contains(&deleted) {
            problems.push(format!(
                "{deleted}, deleted by the user, is not among the deleted ids (describe declares tombstones)"
            ));
        }
        let kind = if entity.incremental {
            "incremental"
        } else {
            "full"
        };
        if problems.is_empty() {
            let what = if tombstones {
                "the user's edit and deletion (tombstone)"
            } else {
                "the user's edit and deletion"
            };
            self.row(
                scope,
                NAME,
                Ok(format!("{kind}: {}; {what}", listing.summary())),
            );
        } else {
            self.row(scope, NAME, Err(format!("{kind}: {}", problems.join("; "))));
        }
        Some(deleted)
    }
}
