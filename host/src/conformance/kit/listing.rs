//! Listings: every page of a full `pull`, its completeness against the simulated account,
//! and the later (incremental) listing that must show the kit's writes.

use crate::conformance::NEEDS_SANDBOX;
use crate::runtime::ConnectorClient;
use crate::runtime::types::{DeleteDetection, EntityInfo, PullRequest};

use super::{Expected, Kit, Listing, abbreviate, call_error, plural, text_of};

impl<'a> Kit<'a> {
    /// Every page of one listing.
    pub(super) async fn pull_all(
        &self,
        client: &ConnectorClient,
        entity: &str,
        container: Option<&str>,
        cursor: Option<String>,
        full: bool,
    ) -> Result<Listing, String> {
        let page_size = self.page_size(client, entity).await;
        let pages = Pages {
            size: page_size,
            most: MAX_PAGES,
        };
        match self
            .pull_pages(client, entity, container, cursor, full, pages)
            .await?
        {
            (listing, true) => Ok(listing),
            (_, false) => Err(format!("the listing did not end after {MAX_PAGES} pages")),
        }
    }

    /// A full listing with pages of [`SMALL_PAGE`] records, up to [`SMALL_PAGES`] of them:
    /// page boundaries fall elsewhere than with the largest pages, and the same records
    /// come back, none twice.
    pub(super) async fn small_pages(
        &mut self,
        client: &ConnectorClient,
        entity: &EntityInfo,
        full: &Listing,
    ) {
        const NAME: &str = "pull full: small pages";
        if entity.max_page_size <= SMALL_PAGE {
            self.skip(
                &entity.name,
                NAME,
                "the entity's largest page is already this small: the full listing used it",
            );
            return;
        }
        let pages = Pages {
            size: SMALL_PAGE,
            most: SMALL_PAGES,
        };
        let result = match self
            .pull_pages(client, &entity.name, None, None, true, pages)
            .await
        {
            Err(reason) => Err(reason),
            Ok((small, ended)) => {
                let ids = small.ids();
                let all = full.ids();
                if small.records.len() > ids.len() {
                    Err(format!(
                        "{} listed twice across pages of {SMALL_PAGE}",
                        plural(small.records.len() - ids.len(), "record")
                    ))
                } else if let Some(extra) = ids.iter().find(|id| !all.contains(*id)) {
                    Err(format!(
                        "record {extra} appears with pages of {SMALL_PAGE} but not in the full listing"
                    ))
                } else if ended && ids != all {
                    Err(format!(
                        "pages of {SMALL_PAGE} list {} records, the full listing {}",
                        ids.len(),
                        all.len()
                    ))
                } else if ended {
                    Ok(format!("the same {}", small.summary()))
                } else {
                    Ok(format!(
                        "{} (of {}), none twice",
                        small.summary(),
                        plural(all.len(), "record")
                    ))
                }
            }
        };
        self.row(&entity.name, NAME, result);
    }

    /// Up to `pages.most` pages of one listing; whether it ended.
    async fn pull_pages(
        &self,
        client: &ConnectorClient,
        entity: &str,
        container: Option<&str>,
        cursor: Option<String>,
        full: bool,
        pages: Pages,
    ) -> Result<(Listing, bool), String> {
        let page_size = pages.size;
        let mut listing = Listing::default();
        let mut cursor = cursor;
        for n in 1..=pages.most {
            let page = client
                .pull(&PullRequest {
                    entity: entity.to_owned(),
                    container: container.map(str::to_owned),
                    cursor: cursor.clone(),
                    full,
                    page_size,
                })
                .await
                .map_err(|e| format!("page {n}: {}", call_error(&e)))?;
            listing.pages = n;
            if page.records.len() > page_size as usize {
                return Err(format!(
                    "page {n} has {} records, more than the page size {page_size} asked for",
                    page.records.len()
                ));
            }
            if let Some(bad) = page.records.iter().find(|r| r.id.trim().is_empty()) {
                return Err(format!(
                    "page {n} has a record without an id ({} fields)",
                    bad.fields.len()
                ));
            }
            listing.records.extend(page.records);
            listing.deleted.extend(page.deleted);
            if !page.more {
                listing.checkpoint = page.next_cursor;
                return Ok((listing, true));
            }
            match page.next_cursor {
                None => return Err(format!("page {n} says `more` but has no next-cursor")),
                Some(next) if n > 1 && Some(&next) == cursor.as_ref() => {
                    return Err(format!(
                        "page {n} returned the cursor it was given: the listing would never end"
                    ));
                }
                Some(next) => cursor = Some(next),
            }
        }
        Ok((listing, false))
    }

    /// The page size the kit asks for: the entity's largest.
    pub(super) async fn page_size(&self, client: &ConnectorClient, entity: &str) -> u32 {
        client
            .describe()
            .await
            .ok()
            .and_then(|info| info.entities.into_iter().find(|e| e.name == entity))
            .map_or(100, |e| e.max_page_size)
    }

    /// The full listing holds exactly the simulated account's live records.
    pub(super) async fn complete(&mut self, scope: &str, full: &Listing) {
        const NAME: &str = "pull full: complete";
        let Some(control) = self.control() else {
            self.skip(scope, NAME, NEEDS_SANDBOX);
            return;
        };
        let result = match control.live_ids(scope).await {
            Err(e) => Err(e.to_string()),
            Ok(live) => {
                let pulled = full.ids();
                let missing: Vec<&str> = live
                    .iter()
                    .map(String::as_str)
                    .filter(|id| !pulled.contains(id))
                    .collect();
                let extra: Vec<&str> = pulled
                    .iter()
                    .copied()
                    .filter(|id| !live.contains(*id))
                    .collect();
                if missing.is_empty() && extra.is_empty() {
                    Ok(format!("all {} live records of the account", live.len()))
                } else {
                    Err(format!(
                        "the account has {} live records; the listing misses {} ({}) and has {} the account does not ({})",
                        live.len(),
                        missing.len(),
                        abbreviate(&missing, 5),
                        extra.len(),
                        abbreviate(&extra, 5)
                    ))
                }
            }
        };
        self.row(scope, NAME, result);
    }

    /// A later listing (incremental from `cursor` when the entity is incremental, else
    /// full) shows the expected records with their versions and not the deleted ones
    /// (as tombstones when declared). Returns the listing's checkpoint.
    pub(super) async fn pull_after(
        &mut self,
        client: &ConnectorClient,
        entity: &EntityInfo,
        name: &str,
        cursor: Option<String>,
        live: &[Expected],
        gone: &[String],
    ) -> Option<String> {
        let scope = entity.name.as_str();
        let incremental = entity.incremental && cursor.is_some();
        let from = if incremental { cursor } else { None };
        let listing = match self.pull_all(client, scope, None, from, !incremental).await {
            Ok(listing) => listing,
            Err(reason) => {
                self.row(scope, name, Err(reason));
                return None;
            }
        };
        let tombstones = incremental && entity.deletes == DeleteDetection::Tombstones;
        let mut problems = Vec::new();
        for e in live {
            match listing.get(&e.id) {
                None => problems.push(format!("{} is missing", e.id)),
                Some(record) => {
                    let value = text_of(record, &e.field).unwrap_or_default();
                    if value != e.value {
                        problems.push(format!(
                            "{}: `{}` is `{value}`, expected `{}`",
                            e.id, e.field, e.value
                        ));
                    }
                    if e.version.is_some() && record.version != e.version {
                        problems.push(format!(
                            "{}: version {} differs from {} that push returned for the same state",
                            e.id,
                            record.version.as_deref().unwrap_or("none"),
                            e.version.as_deref().unwrap_or("none")
                        ));
                    }
                }
            }
        }
        for id in gone {
            if listing.get(id).is_some() && !listing.deleted.contains(id) {
                problems.push(format!("{id} was deleted but is still listed"));
            } else if tombstones && !listing.deleted.contains(id) {
                problems.push(format!(
                    "{id} was deleted but is not among the listing's deleted ids (describe declares tombstones)"
                ));
            }
        }
        let kind = if incremental { "incremental" } else { "full" };
        if problems.is_empty() {
            let mut detail = format!(
                "{kind}: {}; {} written record{} with {}",
                listing.summary(),
                live.len(),
                if live.len() == 1 { "" } else { "s" },
                if live.iter().any(|e| e.version.is_some()) {
                    "their new versions"
                } else {
                    "their values"
                }
            );
            if tombstones {
                detail.push_str(", deletion as tombstone");
            }
            self.row(scope, name, Ok(detail));
        } else {
            self.row(scope, name, Err(format!("{kind}: {}", problems.join("; "))));
        }
        if entity.incremental {
            listing.checkpoint
        } else {
            None
        }
    }
}

/// A listing that has not ended after this many pages is reported as endless.
const MAX_PAGES: usize = 10_000;
/// The small page size, and how many such pages the kit reads at most (an account with
/// many records is not listed in full three at a time).
const SMALL_PAGE: u32 = 3;
const SMALL_PAGES: usize = 40;

/// How a listing is paged.
#[derive(Clone, Copy)]
struct Pages {
    size: u32,
    most: usize,
}
