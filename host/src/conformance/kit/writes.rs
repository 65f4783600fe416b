//! Writes and lookups: `push` creates, `find` by email, marker and ids, updates (fresh and
//! stale versions), deletes, and the cleanup of what the kit created.

use std::collections::BTreeSet;

use crate::runtime::ConnectorClient;
use crate::runtime::client::describe_plugin_error;
use crate::runtime::types::{
    CreateOp, EntityInfo, Error as PluginError, Lookup, Op, Record, UpdateOp, Write, WriteResult,
};

use super::{Expected, Fields, Kit, abbreviate, call_error, field, ids_of, plural, text_of};

impl<'a> Kit<'a> {
    /// `push` of creates: one result per write, in order, each the stored record.
    pub(super) async fn create(
        &mut self,
        client: &ConnectorClient,
        entity: &EntityInfo,
        fields: &Fields,
    ) -> Option<Vec<Record>> {
        let scope = entity.name.as_str();
        let n = self.options.creates.max(3);
        let writes: Vec<Write> = (0..n)
            .map(|i| {
                let mut values = vec![field(&fields.email, self.email(i))];
                if let Some(first) = &fields.first_name {
                    values.push(field(first, format!("Conformance{i}")));
                } else if let Some(name) = &fields.name {
                    values.push(field(name, format!("Conformance{i}")));
                }
                if let Some(last) = &fields.last_name
                    && Some(last) != fields.name.as_ref()
                {
                    values.push(field(last, "Kit".to_owned()));
                }
                Write {
                    ref_: format!("create-{i}"),
                    op: Op::Create(CreateOp {
                        fields: values,
                        marker: Some(self.marker(i)),
                        containers: Vec::new(),
                    }),
                }
            })
            .collect();
        let results = match push_batched(client, scope, &writes, entity.max_batch_size).await {
            Ok(results) => results,
            Err(reason) => {
                self.row(scope, "push create", Err(reason));
                return None;
            }
        };
        let mut created = Vec::new();
        let mut problems = Vec::new();
        for (i, result) in results.iter().enumerate() {
            match &result.outcome {
                Ok(Some(record)) => {
                    let email = text_of(record, &fields.email).unwrap_or_default();
                    if !email.eq_ignore_ascii_case(&self.email(i)) {
                        problems.push(format!(
                            "{}: the stored record's `{}` is `{email}`, not `{}`",
                            result.ref_,
                            fields.email,
                            self.email(i)
                        ));
                    } else if record.id.trim().is_empty() {
                        problems.push(format!("{}: the stored record has no id", result.ref_));
                    }
                    created.push(record.clone());
                }
                Ok(None) => problems.push(format!(
                    "{}: no stored record (a create must return the record read back)",
                    result.ref_
                )),
                Err(e) => problems.push(format!("{}: {}", result.ref_, describe_plugin_error(e))),
            }
        }
        let ids: BTreeSet<&str> = created.iter().map(|r| r.id.as_str()).collect();
        if problems.is_empty() && ids.len() != created.len() {
            problems.push("two creates returned the same record id".to_owned());
        }
        if problems.is_empty() {
            let versions = if created.iter().all(|r| r.version.is_some()) {
                "with versions"
            } else {
                "without versions"
            };
            let ids: Vec<&str> = ids.into_iter().collect();
            self.row(
                scope,
                "push create",
                Ok(format!(
                    "{} {versions} ({})",
                    plural(n, "record"),
                    abbreviate(&ids, 4)
                )),
            );
            Some(created)
        } else {
            self.row(scope, "push create", Err(problems.join("; ")));
            None
        }
    }

    pub(super) fn email(&self, i: usize) -> String {
        format!("kit-{}-{i}@conformance.example", self.nonce)
    }

    pub(super) fn marker(&self, i: usize) -> String {
        format!("tandem-kit-{}-{i}", self.nonce)
    }

    /// `find` by email (in another letter case), by marker, by ids.
    pub(super) async fn finds(
        &mut self,
        client: &ConnectorClient,
        scope: &str,
        created: &[Record],
    ) {
        let (first, second) = (&created[0].id, &created[1].id);
        let email = self.email(0).to_uppercase();
        let result = match client.find(scope, &Lookup::Email(email.clone())).await {
            Err(e) => Err(call_error(&e)),
            Ok(found) if found.iter().any(|r| &r.id == first) => {
                Ok(format!("{email} -> {}", ids_of(&found)))
            }
            Ok(found) => Err(format!(
                "looking up {email} (created as {}) found [{}], not {first}: emails match case-insensitively",
                self.email(0),
                ids_of(&found)
            )),
        };
        self.row(scope, "find by email", result);

        let marker = self.marker(0);
        let result = match client.find(scope, &Lookup::Marker(marker.clone())).await {
            Err(e) => Err(call_error(&e)),
            Ok(found) if found.iter().any(|r| &r.id == second) => Err(format!(
                "looking up marker {marker} also found {second}, created with another marker"
            )),
            Ok(found) if found.iter().any(|r| &r.id == first) => {
                Ok(format!("{marker} -> {}", ids_of(&found)))
            }
            Ok(found) => Err(format!(
                "looking up marker {marker} found [{}], not {first}: store create-op.marker with the record",
                ids_of(&found)
            )),
        };
        self.row(scope, "find by marker", result);

        let wanted = vec![first.clone(), second.clone()];
        let result = match client.find(scope, &Lookup::Ids(wanted.clone())).await {
            Err(e) => Err(call_error(&e)),
            Ok(found) => {
                let got: BTreeSet<&str> = found.iter().map(|r| r.id.as_str()).collect();
                if got == wanted.iter().map(String::as_str).collect() {
                    Ok(format!("[{}]", ids_of(&found)))
                } else {
                    Err(format!(
                        "looking up ids [{}] found [{}]",
                        wanted.join(", "),
                        ids_of(&found)
                    ))
                }
            }
        };
        self.row(scope, "find by ids", result);
    }

    /// `push` of an update with the record's version, then one with a stale version.
    pub(super) async fn update(
        &mut self,
        client: &ConnectorClient,
        scope: &str,
        fields: &Fields,
        target: &mut Expected,
    ) {
        let Some(name) = fields.name.clone() else {
            self.skip(
                scope,
                "push update",
                "the schema has no writable first-name, full-name or last-name field",
            );
            self.skip(
                scope,
                "push update: stale version -> conflict",
                "no field to update",
            );
            return;
        };
        self.tick().await;
        let created_version = target.version.clone();
        let write = |value: &str, version: Option<String>, tag: &str| Write {
            ref_: tag.to_owned(),
            op: Op::Update(UpdateOp {
                id: target.id.clone(),
                if_version: version,
                fields: vec![field(&name, value.to_owned())],
            }),
        };
        let result = match push_one(
            client,
            scope,
            write("Updated", created_version.clone(), "update"),
        )
        .await
        {
            Err(reason) => Err(reason),
            Ok(Err(e)) => Err(describe_plugin_error(&e)),
            Ok(Ok(None)) => {
                Err("no stored record (an update must return the record read back)".to_owned())
            }
            Ok(Ok(Some(record))) => {
                let value = text_of(&record, &name).unwrap_or_default();
                if value != "Updated" {
                    Err(format!(
                        "the stored record's `{name}` is `{value}`, not `Updated`"
                    ))
                } else if created_version.is_some() && record.version == created_version {
                    Err(format!(
                        "the version did not change: {} before and after the update",
                        created_version.as_deref().unwrap_or_default()
                    ))
                } else {
                    target.value = value;
                    target.version = record.version.clone();
                    Ok(format!(
                        "`{name}` = Updated, version {} -> {}",
                        created_version.as_deref().unwrap_or("none"),
                        record.version.as_deref().unwrap_or("none")
                    ))
                }
            }
        };
        let updated = result.is_ok();
        self.row(scope, "push update", result);

        const STALE: &str = "push update: stale version -> conflict";
        if !updated {
            self.skip(scope, STALE, "push update failed");
            return;
        }
        let Some(stale) = created_version else {
            self.skip(scope, STALE, "the plugin returns no versions");
            return;
        };
        let result = match push_one(client, scope, write("Stale", Some(stale.clone()), "stale"))
            .await
        {
            Err(reason) => Err(reason),
            Ok(Err(PluginError::Conflict(m))) => Ok(format!("conflict: {m}")),
            Ok(Err(e)) => Err(format!(
                "expected conflict, got {}",
                describe_plugin_error(&e)
            )),
            Ok(Ok(record)) => {
                if let Some(record) = record {
                    target.value = text_of(&record, &name).unwrap_or_default();
                    target.version = record.version.clone();
                }
                Err(format!(
                    "the update with if-version {stale} (no longer current) was applied: honour if-version"
                ))
            }
        };
        self.row(scope, STALE, result);
    }

    /// `push` of a delete, then the same delete again (already gone: still a success).
    pub(super) async fn delete(&mut self, client: &ConnectorClient, scope: &str, id: &str) {
        let delete = |tag: &str| Write {
            ref_: tag.to_owned(),
            op: Op::Delete(id.to_owned()),
        };
        let result = match push_one(client, scope, delete("delete")).await {
            Err(reason) => Err(reason),
            Ok(Err(e)) => Err(describe_plugin_error(&e)),
            Ok(Ok(Some(_))) => Err("a delete returned a record; it must return none".to_owned()),
            Ok(Ok(None)) => match push_one(client, scope, delete("delete-again")).await {
                Err(reason) => Err(format!("deleting {id} again: {reason}")),
                Ok(Err(e)) => Err(format!(
                    "deleting {id} again failed ({}): a retried delete of a record already gone must succeed",
                    describe_plugin_error(&e)
                )),
                Ok(Ok(_)) => match client.find(scope, &Lookup::Ids(vec![id.to_owned()])).await {
                    Err(e) => Err(format!("find by id after the delete: {}", call_error(&e))),
                    Ok(found) if found.is_empty() => Ok(format!(
                        "{id} deleted (twice); find by id no longer returns it"
                    )),
                    Ok(_) => Err(format!("find by id still returns {id} after its delete")),
                },
            },
        };
        self.row(scope, "push delete", result);
    }

    /// Deletes what the kit created (a row only when that fails).
    pub(super) async fn cleanup(&mut self, client: &ConnectorClient, scope: &str, ids: &[String]) {
        let writes: Vec<Write> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| Write {
                ref_: format!("cleanup-{i}"),
                op: Op::Delete(id.clone()),
            })
            .collect();
        if writes.is_empty() {
            return;
        }
        let failed: Vec<String> = match client.push(scope, &writes).await {
            Err(e) => vec![call_error(&e)],
            Ok(results) => results
                .iter()
                .filter_map(|r| {
                    r.outcome
                        .as_ref()
                        .err()
                        .map(|e| format!("{}: {}", r.ref_, describe_plugin_error(e)))
                })
                .collect(),
        };
        if !failed.is_empty() {
            let reason = format!(
                "the kit could not delete the records it created ({}): {}",
                ids.join(", "),
                failed.join("; ")
            );
            self.row(scope, "cleanup", Err(reason));
        }
    }
}

/// Pushes `writes` in calls of at most `batch` writes; checks one result per write, in
/// order, refs echoed.
async fn push_batched(
    client: &ConnectorClient,
    entity: &str,
    writes: &[Write],
    batch: u32,
) -> Result<Vec<WriteResult>, String> {
    let mut results = Vec::with_capacity(writes.len());
    for chunk in writes.chunks(batch.max(1) as usize) {
        let got = client
            .push(entity, chunk)
            .await
            .map_err(|e| call_error(&e))?;
        let refs: Vec<&str> = got.iter().map(|r| r.ref_.as_str()).collect();
        let sent: Vec<&str> = chunk.iter().map(|w| w.ref_.as_str()).collect();
        if refs != sent {
            return Err(format!(
                "push returned results for [{}] but was sent [{}]: one result per write, in order",
                refs.join(", "),
                sent.join(", ")
            ));
        }
        results.extend(got);
    }
    Ok(results)
}

/// Pushes one write; the outer error is a failed call or a malformed answer.
pub(super) async fn push_one(
    client: &ConnectorClient,
    entity: &str,
    write: Write,
) -> Result<Result<Option<Record>, PluginError>, String> {
    let mut results = push_batched(client, entity, std::slice::from_ref(&write), 1).await?;
    Ok(results.remove(0).outcome)
}
