//! Containers: listing them, and adding a created record to one and removing it again.

use crate::runtime::ConnectorClient;
use crate::runtime::client::describe_plugin_error;
use crate::runtime::types::{Container, EntityInfo, MembershipOp, Op, Write};

use super::writes::push_one;
use super::{Kit, abbreviate, call_error};

impl<'a> Kit<'a> {
    pub(super) async fn containers(
        &mut self,
        client: &ConnectorClient,
        entity: &EntityInfo,
    ) -> Vec<Container> {
        let scope = entity.name.as_str();
        match client.containers(scope).await {
            Ok(list) if !entity.containers && !list.is_empty() => {
                self.row(
                    scope,
                    "containers",
                    Err(format!(
                        "{} containers returned, but describe says the entity has none",
                        list.len()
                    )),
                );
                list
            }
            Ok(list) if !entity.containers => {
                self.row(scope, "containers", Ok("none, as described".to_owned()));
                list
            }
            Ok(list) => {
                let result = match list
                    .iter()
                    .find(|c| c.id.trim().is_empty() || c.name.trim().is_empty())
                {
                    Some(bad) => Err(format!(
                        "container `{}` / `{}` has an empty id or name",
                        bad.id, bad.name
                    )),
                    None => Ok(format!(
                        "{}: {}",
                        list.len(),
                        abbreviate(&list.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), 6)
                    )),
                };
                self.row(scope, "containers", result);
                list
            }
            Err(e) => {
                self.row(scope, "containers", Err(call_error(&e)));
                Vec::new()
            }
        }
    }

    /// Container membership: add a created record, list the container, remove it.
    pub(super) async fn membership(
        &mut self,
        client: &ConnectorClient,
        entity: &EntityInfo,
        containers: &[Container],
        id: &str,
    ) {
        const NAME: &str = "containers: add, list, remove";
        let scope = entity.name.as_str();
        if !entity.containers {
            self.skip(scope, NAME, "describe says the entity has no containers");
            return;
        }
        if containers.is_empty() {
            self.skip(scope, NAME, "the account has no containers");
            return;
        }
        // The smallest container the record is not in yet (a full listing of it is
        // cheapest): adding to a container the app already put it in (Google's My
        // Contacts) changes nothing, and removing it from there may take its last
        // container away, which apps refuse (a Google contact keeps at least one group).
        let mut candidates: Vec<&Container> = containers.iter().collect();
        candidates.sort_by_key(|c| c.member_count.unwrap_or(u64::MAX));
        let mut container = None;
        for candidate in candidates.into_iter().take(MAX_CONTAINERS_TRIED) {
            match self
                .pull_all(client, scope, Some(&candidate.id), None, true)
                .await
            {
                Ok(listing) if listing.get(id).is_some() => continue,
                Ok(_) => {
                    container = Some(candidate);
                    break;
                }
                Err(r) => {
                    let r = format!("listing container {}: {r}", candidate.name);
                    self.row(scope, NAME, Err(r));
                    return;
                }
            }
        }
        let Some(container) = container else {
            self.skip(
                scope,
                NAME,
                &format!(
                    "the created record is already in each of the {MAX_CONTAINERS_TRIED} smallest containers; add a container it is not in (in Google: a user contact group)"
                ),
            );
            return;
        };
        let change = |add: bool| Write {
            ref_: if add { "add" } else { "remove" }.to_owned(),
            op: {
                let m = MembershipOp {
                    container: container.id.clone(),
                    ids: vec![id.to_owned()],
                };
                if add {
                    Op::AddToContainer(m)
                } else {
                    Op::RemoveFromContainer(m)
                }
            },
        };
        let result = async {
            match push_one(client, scope, change(true)).await? {
                Ok(None) => {}
                Ok(Some(_)) => {
                    return Err(
                        "adding to a container returned a record; it must return none".to_owned(),
                    );
                }
                Err(e) => {
                    return Err(format!(
                        "adding {id} to {}: {}",
                        container.name,
                        describe_plugin_error(&e)
                    ));
                }
            }
            let listing = self
                .pull_all(client, scope, Some(&container.id), None, true)
                .await
                .map_err(|r| format!("listing container {}: {r}", container.name))?;
            if listing.get(id).is_none() {
                return Err(format!(
                    "{id} was added to {} but a pull of that container does not list it ({})",
                    container.name,
                    listing.summary()
                ));
            }
            match push_one(client, scope, change(false)).await? {
                Ok(None) => Ok(format!(
                    "{id} added to {} ({} listed), then removed",
                    container.name,
                    listing.summary()
                )),
                Ok(Some(_)) => Err(
                    "removing from a container returned a record; it must return none".to_owned(),
                ),
                Err(e) => Err(format!(
                    "removing {id} from {}: {}",
                    container.name,
                    describe_plugin_error(&e)
                )),
            }
        }
        .await;
        self.row(scope, NAME, result);
    }
}

/// Containers listed at most to find one the created record is not in.
const MAX_CONTAINERS_TRIED: usize = 3;
