//! What the demo does and prints, step by step: the accounts, the config, each run with
//! its progress bar and log tables, the edits in the apps, and what became of them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::apps::{self, Apps, List};
use crate::app::{Host, RunProgress};
use crate::sync::baseline::LinkState;
use crate::sync::model::Side;
use crate::sync::plan::OpKind;
use crate::sync::state::{Event, Flow};
use crate::sync::{RunOptions, RunOutcome, RunReport};

/// The Freshmarketer list `sales-marketing` syncs.
pub const NEWSLETTER: &str = "Newsletter";
/// A Google contact group shown among the seeded data.
pub const CUSTOMERS: &str = "Customers";

/// The conflicting edit: Freshsales first, Freshmarketer five minutes later.
pub const TITLE_IN_FRESHSALES: &str = "Head of Partnerships";
/// The later edit of the same field, which wins under "most recent".
pub const TITLE_IN_FRESHMARKETER: &str = "VP of Marketing";
/// A field only Freshsales edits: it flows to Freshmarketer.
pub const MOBILE_IN_FRESHSALES: &str = "+14155550199";
/// A field only Freshmarketer edits: it flows to Freshsales.
pub const CITY_IN_FRESHMARKETER: &str = "Lisbon";
/// The person added to the Newsletter list in Freshmarketer.
pub const NEW_EMAIL: &str = "maya.lindqvist@northwind-demo.example";

/// One person linked by `sales-marketing`: the Freshsales and Freshmarketer ids.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The link's key in the state.
    pub link: String,
    /// The Freshsales contact.
    pub freshsales: u64,
    /// The Freshmarketer contact.
    pub freshmarketer: u64,
    /// `Name <email>`.
    pub label: String,
}

/// The edits the demo made in the apps between the initial and the incremental runs.
#[derive(Debug, Clone)]
pub struct Edits {
    /// Job title edited on both sides (and a different field on each).
    pub conflict: Pair,
    /// Marked Do Not Disturb in Freshsales.
    pub dnd: Pair,
    /// Unsubscribed in Freshmarketer.
    pub unsubscribe: Pair,
    /// Deleted in Freshsales.
    pub deletion: Pair,
    /// The Freshmarketer id of the person added there (an Enterprise customer).
    pub new_contact: u64,
    /// The id of the Freshmarketer list synced.
    pub newsletter: u64,
}

/// Display labels of records by `a:ID` / `b:ID`, per sync.
type Labels = BTreeMap<String, String>;

pub(super) fn title(out: &mut dyn Write, seed: u64) -> anyhow::Result<()> {
    writeln!(
        out,
        "Tandem demo: three simulated apps, two syncs, one config file (seed {seed}).\n\
         Nothing leaves this machine: the apps are local simulations of Freshsales,\n\
         Freshmarketer and Google Contacts, seeded with overlapping people."
    )?;
    Ok(())
}

fn step(out: &mut dyn Write, n: usize, text: &str) -> anyhow::Result<()> {
    writeln!(out, "\n── {n}/6  {text}")?;
    Ok(())
}

fn table(header: Vec<&str>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(110)
        .set_header(header);
    t
}

fn emails_of(c: &Value) -> Vec<String> {
    c["emails"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["value"].as_str())
        .map(str::to_lowercase)
        .collect()
}

fn live(contacts: &BTreeMap<u64, Value>) -> impl Iterator<Item = &Value> {
    contacts
        .values()
        .filter(|c| c["is_deleted"].as_bool() != Some(true))
}

fn duplicates<'a>(emails: impl Iterator<Item = &'a str>) -> usize {
    let mut seen = BTreeMap::<String, usize>::new();
    for e in emails {
        *seen.entry(e.to_lowercase()).or_default() += 1;
    }
    seen.values().filter(|n| **n > 1).map(|n| n - 1).sum()
}

fn list<'a>(lists: &'a [List], name: &str) -> anyhow::Result<&'a List> {
    lists
        .iter()
        .find(|l| l.name == name)
        .with_context(|| format!("the simulated Freshmarketer account has no list {name:?}"))
}

/// Step 1: what the accounts hold.
pub(super) async fn accounts(out: &mut dyn Write, apps: &Apps) -> anyhow::Result<()> {
    step(out, 1, "Simulated accounts on 127.0.0.1")?;
    let fs = apps.contacts(&apps.freshsales).await?;
    let fm = apps.contacts(&apps.freshmarketer).await?;
    let lists = apps.lists(&apps.freshmarketer).await?;
    let google = apps.google_state().await?;
    let people: Vec<&Value> = google["people"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["deleted"].as_bool() != Some(true))
        .collect();
    let google_emails = |p: &Value| -> Vec<String> {
        p["person"]["emailAddresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["value"].as_str())
            .map(str::to_lowercase)
            .collect()
    };
    let no_email = |cs: &mut dyn Iterator<Item = Vec<String>>| cs.filter(|e| e.is_empty()).count();
    let fs_live: Vec<&Value> = live(&fs).collect();
    let fm_live: Vec<&Value> = live(&fm).collect();
    let newsletter = list(&lists, NEWSLETTER)?;
    let customers = google["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["name"].as_str() == Some(CUSTOMERS))
        .and_then(|g| g["members"].as_array().map(Vec::len))
        .unwrap_or(0);
    let opted_out = fm_live
        .iter()
        .filter(|c| c["subscription_status"].as_u64() != Some(1))
        .count();
    let mut t = table(vec!["App", "API address", "Contacts", "Of note"]);
    t.add_row(vec![
        "Freshsales".to_string(),
        apps.freshsales.api_base.clone(),
        fs_live.len().to_string(),
        format!(
            "{} Do Not Disturb, {} without e-mail, {} duplicate e-mails; custom fields cf_plan, cf_region, cf_seats…",
            fs_live
                .iter()
                .filter(|c| c["do_not_disturb"].as_bool() == Some(true))
                .count(),
            no_email(&mut fs_live.iter().map(|c| emails_of(c))),
            duplicates(fs_live.iter().filter_map(|c| c["email"].as_str())),
        ),
    ]);
    t.add_row(vec![
        "Freshmarketer".to_string(),
        apps.freshmarketer.api_base.clone(),
        fm_live.len().to_string(),
        format!(
            "list {NEWSLETTER}: {} members; {} unsubscribed, bounced or not subscribed; {} without e-mail; {} duplicate e-mails; plan field is cf_plan_tier",
            newsletter.members.len(),
            opted_out,
            no_email(&mut fm_live.iter().map(|c| emails_of(c))),
            duplicates(fm_live.iter().filter_map(|c| c["email"].as_str())),
        ),
    ]);
    t.add_row(vec![
        "Google Contacts".to_string(),
        format!("{}/v1", apps.google.base_url),
        people.len().to_string(),
        format!(
            "group {CUSTOMERS}: {customers} members; {} without e-mail; OAuth2 refresh token",
            no_email(&mut people.iter().map(|p| google_emails(p)))
        ),
    ]);
    writeln!(out, "{t}")?;
    let fs_set: BTreeSet<String> = fs_live.iter().flat_map(|c| emails_of(c)).collect();
    let overlap = |e: &mut dyn Iterator<Item = Vec<String>>| {
        e.filter(|es| es.iter().any(|x| fs_set.contains(x))).count()
    };
    writeln!(
        out,
        "The same people appear in several apps: {} Freshmarketer and {} Google contacts share an e-mail with Freshsales.",
        overlap(&mut fm_live.iter().map(|c| emails_of(c))),
        overlap(&mut people.iter().map(|p| google_emails(p))),
    )?;
    Ok(())
}

/// Step 2: the config, its plugins and connections (each checked).
pub(super) async fn config(out: &mut dyn Write, file: &Path, host: &Host) -> anyhow::Result<()> {
    step(out, 2, &format!("Config {}", file.display()))?;
    let cfg = host.config();
    let mut t = table(vec!["Connection", "Plugin", "Account (from `check`)"]);
    for name in cfg.connections.keys() {
        let c = host.connection(name).await?;
        t.add_row(vec![
            name.clone(),
            c.plugin.label().to_string(),
            c.account.display_name.clone(),
        ]);
    }
    writeln!(out, "{t}")?;
    let mappers: BTreeSet<&String> = cfg.syncs.values().flat_map(|s| &s.policy.mappers).collect();
    if !mappers.is_empty() {
        writeln!(
            out,
            "Tenant mapper plugin(s): {} (no network, no storage, fuel-limited).",
            mappers
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    for (name, s) in &cfg.syncs {
        writeln!(
            out,
            "Sync {name}: {} ↔ {}, {}, {} rule(s), mappers: {}.",
            s.a,
            s.b,
            s.policy.direction.label(),
            s.policy.rules.len(),
            if s.policy.mappers.is_empty() {
                "none".to_string()
            } else {
                s.policy.mappers.join(", ")
            }
        )?;
    }
    Ok(())
}

/// Runs sync `name` once with a progress bar, then prints its log as tables.
pub(super) async fn run_sync(
    out: &mut dyn Write,
    host: &Host,
    apps: &Apps,
    name: &str,
    progress: bool,
) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let before = apps.requests();
    let (_tx, rx) = watch::channel(false);
    let prepared = host.prepare(name, rx).await?;
    let bar = bar(progress, name);
    let ticker = tokio::spawn(tick(bar.clone(), prepared.progress.clone()));
    let report = host.run_prepared(&prepared, RunOptions::default()).await;
    ticker.abort();
    bar.finish_and_clear();
    let report = report?;
    let after = apps.requests();
    let cfg = host.sync_config(name)?;
    let (a, b) = (app_name(&cfg.a), app_name(&cfg.b));
    let outcome = match &report.outcome {
        RunOutcome::Completed => "completed".to_string(),
        RunOutcome::Halted(m) => format!("HALTED: {m}"),
        RunOutcome::Paused => "paused".into(),
        RunOutcome::DryRun => "dry run".into(),
    };
    let spent: Vec<String> = [("Freshsales", 0), ("Freshmarketer", 1), ("Google", 2)]
        .iter()
        .filter(|(_, i)| after[*i] > before[*i])
        .map(|(n, i)| format!("{n} {}", after[*i] - before[*i]))
        .collect();
    writeln!(
        out,
        "Run #{} {outcome} in {:.1} s; API requests: {}.",
        report.run.unwrap_or_default(),
        started.elapsed().as_secs_f64(),
        spent.join(", ")
    )?;
    if std::env::var_os("TANDEM_DEMO_PROFILE").is_some() {
        eprintln!("{}", apps.endpoint_counts());
    }
    let mut events: Vec<Event> = match report.run {
        Some(id) => host
            .logs(name, Some(id), 1)?
            .into_iter()
            .flat_map(|l| l.events)
            .collect(),
        None => Vec::new(),
    };
    // Conflicts name their link only: its records make the examples.
    for e in events.iter_mut().filter(|e| e.records.is_empty()) {
        if let Some(l) = e
            .link
            .as_deref()
            .and_then(|k| host.store().link(name, k).ok().flatten())
        {
            e.records = Side::BOTH
                .into_iter()
                .filter_map(|s| l.id(s).map(|i| format!("{}:{i}", s.as_str())))
                .collect();
        }
    }
    let groups = group_events(&events);
    let wanted: BTreeSet<&String> = groups
        .iter()
        .flat_map(|g| g.examples.iter().flatten())
        .collect();
    let labels = labels(apps, host, name, &wanted).await?;
    print_counts(out, &report, a, b)?;
    print_reasons(out, groups, &labels, a, b)?;
    Ok(report)
}

/// `freshsales` -> `Freshsales`.
fn app_name(connection: &str) -> &'static str {
    match connection {
        "freshsales" => "Freshsales",
        "freshmarketer" => "Freshmarketer",
        "google" => "Google",
        _ => "the other app",
    }
}

fn print_counts(out: &mut dyn Write, r: &RunReport, a: &str, b: &str) -> anyhow::Result<()> {
    if r.counters.is_empty() {
        writeln!(out, "Nothing to do: both sides were already in step.")?;
        return Ok(());
    }
    let mut t = table(vec![
        "Direction",
        "Created",
        "Updated",
        "Removed",
        "Skipped",
        "Failed",
        "Linked",
        "Conflicts",
    ]);
    for (dir, c) in &r.counters {
        t.add_row(vec![
            dir.between(a, b),
            c.created.to_string(),
            c.updated.to_string(),
            c.removed.to_string(),
            c.skipped.to_string(),
            (c.failed + c.parked).to_string(),
            c.linked.to_string(),
            c.conflicts.to_string(),
        ]);
    }
    writeln!(out, "{t}")?;
    Ok(())
}

/// A reason without the record-specific parts, so that like reasons group together.
fn reason_key(e: &Event) -> String {
    if e.action == "conflict" {
        // "field: A x / B y: decision" -> "field: decision"
        let pair = e.reason.split(": A ").next().unwrap_or_default();
        let decision = e.reason.rsplit(": ").next().unwrap_or_default();
        return format!("{}: {decision}", pair_label(pair));
    }
    // "email: why" -> "why": the example column names the person.
    let reason = match (e.action.as_str(), e.reason.split_once(": ")) {
        ("ambiguous", Some((_, why))) => why,
        _ => e.reason.as_str(),
    };
    reason
        .split_whitespace()
        .map(|w| {
            let digits = w.chars().filter(char::is_ascii_digit).count();
            if digits >= 6 || w.starts_with("people/") {
                "…"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The engine's "side A" / "side B" in the apps' names.
fn name_sides(text: &str, a: &str, b: &str) -> String {
    text.replace("side A", a).replace("side B", b)
}

/// `job_title~job_title` -> `job_title`, `cf_plan~cf_plan_tier` -> `cf_plan ↔ cf_plan_tier`.
fn pair_label(pair: &str) -> String {
    match pair.split_once('~') {
        Some((a, b)) if a == b => a.to_string(),
        Some((a, b)) => format!("{a} ↔ {b}"),
        None => pair.to_string(),
    }
}

/// Events of one direction, action and reason.
struct Group {
    direction: Flow,
    action: String,
    why: String,
    count: usize,
    /// The record references of the first few events (`a:ID`, `b:ID`).
    examples: Vec<Vec<String>>,
}

/// Example records shown per reason.
const EXAMPLES: usize = 2;

/// The reasons of one event: an update counts once per field it writes
/// ("update a (why), b (why)" -> "a: why", "b: why"), so that the table is per field.
fn reasons_of(e: &Event) -> Vec<String> {
    let key = reason_key(e);
    match key.strip_prefix("update ") {
        Some(fields) if e.action == "updated" => fields
            .split("), ")
            .map(|f| match f.trim_end_matches(')').split_once(" (") {
                Some((field, why)) => format!("{field}: {why}"),
                None => f.to_string(),
            })
            .collect(),
        _ => vec![key],
    }
}

/// Events grouped by direction, action and reason, most frequent first within a
/// direction (notes, which repeat other events, left out).
fn group_events(events: &[Event]) -> Vec<Group> {
    let mut groups: BTreeMap<(Flow, String, String), Group> = BTreeMap::new();
    for e in events.iter().filter(|e| e.action != "note") {
        for why in reasons_of(e) {
            let key = (e.direction, e.action.clone(), why);
            let g = groups.entry(key.clone()).or_insert_with(|| Group {
                direction: key.0,
                action: key.1,
                why: key.2,
                count: 0,
                examples: Vec::new(),
            });
            g.count += 1;
            if g.examples.len() < EXAMPLES && !e.records.is_empty() {
                g.examples.push(e.records.clone());
            }
        }
    }
    let mut out: Vec<Group> = groups.into_values().collect();
    out.sort_by(|x, y| (&x.direction, y.count).cmp(&(&y.direction, x.count)));
    out
}

/// The reasons with counts and a few example people, the rarest folded into one line.
fn print_reasons(
    out: &mut dyn Write,
    groups: Vec<Group>,
    labels: &Labels,
    a: &str,
    b: &str,
) -> anyhow::Result<()> {
    // Rows per direction; failures are always shown.
    const ROWS: usize = 6;
    if groups.is_empty() {
        return Ok(());
    }
    let mut t = table(vec!["Direction", "What", "Why", "Records", "For example"]);
    let (mut hidden, mut shown) = (0usize, BTreeMap::<Flow, usize>::new());
    for g in groups {
        let failure = matches!(g.action.as_str(), "failed" | "parked" | "ambiguous");
        let n = shown.entry(g.direction).or_default();
        if *n >= ROWS && !failure {
            hidden += g.count;
            continue;
        }
        *n += 1;
        let mut examples: Vec<&String> = Vec::new();
        for refs in &g.examples {
            if let Some(l) = refs.iter().find_map(|r| labels.get(r))
                && !examples.contains(&l)
            {
                examples.push(l);
            }
        }
        t.add_row(vec![
            g.direction.between(a, b),
            g.action,
            name_sides(&g.why, a, b),
            g.count.to_string(),
            examples
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ]);
    }
    writeln!(out, "{t}")?;
    if hidden > 0 {
        writeln!(
            out,
            "… and {hidden} more for rarer reasons (an update counts once per field it writes)."
        )?;
    }
    Ok(())
}

/// Labels of the records `wanted` (`a:ID`, `b:ID`) of sync `name`'s two apps.
async fn labels(
    apps: &Apps,
    host: &Host,
    name: &str,
    wanted: &BTreeSet<&String>,
) -> anyhow::Result<Labels> {
    let cfg = host.sync_config(name)?;
    let mut out = Labels::new();
    for (side, conn) in [("a", &cfg.a), ("b", &cfg.b)] {
        let prefix = format!("{side}:");
        let ids: Vec<&str> = wanted
            .iter()
            .filter_map(|r| r.strip_prefix(prefix.as_str()))
            .collect();
        if ids.is_empty() {
            continue;
        }
        match conn.as_str() {
            "freshsales" | "freshmarketer" => {
                let account = if conn == "freshsales" {
                    &apps.freshsales
                } else {
                    &apps.freshmarketer
                };
                for id in ids {
                    if let Ok(n) = id.parse::<u64>()
                        && let Ok(c) = apps.contact(account, n).await
                    {
                        out.insert(format!("{prefix}{id}"), apps::label(&c));
                    }
                }
            }
            "google" => {
                let state = apps.google_state().await?;
                for p in state["people"].as_array().into_iter().flatten() {
                    if let Some(rn) = p["resourceName"].as_str()
                        && ids.contains(&rn)
                    {
                        out.insert(format!("{prefix}{rn}"), google_label(&p["person"]));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn google_label(p: &Value) -> String {
    let name = p["names"][0]["displayName"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "{} {}",
                p["names"][0]["givenName"].as_str().unwrap_or_default(),
                p["names"][0]["familyName"].as_str().unwrap_or_default()
            )
        });
    match p["emailAddresses"][0]["value"].as_str() {
        Some(e) => format!("{} <{e}>", name.trim()),
        None => format!("{} (no email)", name.trim()),
    }
}

fn bar(progress: bool, name: &str) -> ProgressBar {
    let target = if progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(None, target);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix}: {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(name.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

async fn tick(bar: ProgressBar, p: Arc<RunProgress>) {
    let mut writing = false;
    loop {
        if p.writing() {
            if !writing {
                writing = true;
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {prefix}: writing [{bar:30}] {pos}/{len} [{elapsed}]",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_length(p.planned());
            }
            bar.set_position(p.written().min(p.planned()));
        } else {
            bar.set_message(format!(
                "reading: {} + {} records",
                p.read(Side::A),
                p.read(Side::B)
            ));
        }
        tokio::time::sleep(super::PROGRESS_TICK).await;
    }
}

/// Linked, live, e-mailed, subscribed pairs of `sales-marketing` that `sales-google` does
/// not hold, in a stable order: the people the edits are made on.
async fn candidates(host: &Host, apps: &Apps, newsletter: u64) -> anyhow::Result<Vec<Pair>> {
    let fs = apps.contacts(&apps.freshsales).await?;
    let fm = apps.contacts(&apps.freshmarketer).await?;
    let in_google: BTreeSet<String> = host
        .store()
        .links(super::SALES_GOOGLE)?
        .iter()
        .filter_map(|l| l.id(Side::A).map(str::to_string))
        .collect();
    let mut out = Vec::new();
    for l in host.store().links(super::SALES_MARKETING)? {
        let (Some(a), Some(b)) = (l.id(Side::A), l.id(Side::B)) else {
            continue;
        };
        if l.state != LinkState::Linked || in_google.contains(a) {
            continue;
        }
        let (Ok(a_id), Ok(b_id)) = (a.parse::<u64>(), b.parse::<u64>()) else {
            continue;
        };
        let (Some(x), Some(y)) = (fs.get(&a_id), fm.get(&b_id)) else {
            continue;
        };
        let usable = x["is_deleted"].as_bool() != Some(true)
            && y["is_deleted"].as_bool() != Some(true)
            && x["do_not_disturb"].as_bool() != Some(true)
            && y["subscription_status"].as_u64() == Some(1)
            && x["email"].as_str().is_some()
            && y["list_ids"]
                .as_array()
                .is_some_and(|ls| ls.iter().any(|i| i.as_u64() == Some(newsletter)));
        if usable {
            out.push(Pair {
                link: l.key.clone(),
                freshsales: a_id,
                freshmarketer: b_id,
                label: apps::label(x),
            });
        }
    }
    Ok(out)
}

/// Step 5: edits "as a user in the app" through the accounts' control API.
pub(super) async fn edit_apps(
    out: &mut dyn Write,
    host: &Host,
    apps: &Apps,
) -> anyhow::Result<Edits> {
    step(out, 5, "Edits in the apps, as their users would make them")?;
    let lists = apps.lists(&apps.freshmarketer).await?;
    let newsletter = list(&lists, NEWSLETTER)?.id;
    let mut people = candidates(host, apps, newsletter).await?.into_iter();
    let mut next = || {
        people
            .next()
            .context("the initial syncs linked too few people to edit; try another --seed")
    };
    let (conflict, dnd, unsubscribe, deletion) = (next()?, next()?, next()?, next()?);
    let (fs, fm) = (&apps.freshsales, &apps.freshmarketer);

    apps.edit(
        fs,
        conflict.freshsales,
        json!({"job_title": TITLE_IN_FRESHSALES, "mobile_number": MOBILE_IN_FRESHSALES}),
    )
    .await?;
    // Five minutes pass (on the simulated apps' clock) before the marketer's edit.
    apps.clock.advance(Duration::from_secs(300));
    apps.edit(
        fm,
        conflict.freshmarketer,
        json!({"job_title": TITLE_IN_FRESHMARKETER, "city": CITY_IN_FRESHMARKETER}),
    )
    .await?;
    writeln!(
        out,
        "• Conflict — {}: in Freshsales, job title \"{TITLE_IN_FRESHSALES}\" and mobile {MOBILE_IN_FRESHSALES};\n  five minutes later in Freshmarketer, job title \"{TITLE_IN_FRESHMARKETER}\" and city {CITY_IN_FRESHMARKETER}.",
        conflict.label
    )?;
    apps.consent(fs, dnd.freshsales, json!({"do_not_disturb": true}))
        .await?;
    writeln!(
        out,
        "• Do Not Disturb — {}: marked DND in Freshsales.",
        dnd.label
    )?;
    apps.consent(fm, unsubscribe.freshmarketer, apps::unsubscribed())
        .await?;
    writeln!(
        out,
        "• Unsubscribe — {}: unsubscribed from all e-mail in Freshmarketer.",
        unsubscribe.label
    )?;
    apps.delete(fs, deletion.freshsales).await?;
    writeln!(
        out,
        "• Deletion — {}: deleted in Freshsales.",
        deletion.label
    )?;
    let new_contact = apps
        .create(
            fm,
            json!({
                "first_name": "Maya",
                "last_name": "Lindqvist",
                "emails": [{"value": NEW_EMAIL, "is_primary": true}],
                "job_title": "Head of Procurement",
                "work_number": "+46855501420",
                "city": "Stockholm",
                "custom_field": {"cf_plan_tier": "Enterprise"},
            }),
        )
        .await?;
    apps.add_to_list(fm, newsletter, &[new_contact]).await?;
    writeln!(
        out,
        "• New contact — Maya Lindqvist <{NEW_EMAIL}>: added to the {NEWSLETTER} list in Freshmarketer\n  (an Enterprise customer, so sales-google should take her on to Google Contacts too)."
    )?;
    Ok(Edits {
        conflict,
        dnd,
        unsubscribe,
        deletion,
        new_contact,
        newsletter,
    })
}

/// Step 6 (end): what each edit became, from the runs' plans and the apps' records.
pub(super) async fn decisions(
    out: &mut dyn Write,
    host: &Host,
    apps: &Apps,
    edits: &Edits,
    reports: &[RunReport],
) -> anyhow::Result<()> {
    let sm = reports
        .iter()
        .find(|r| r.sync == super::SALES_MARKETING)
        .context("no sales-marketing run")?;
    let sg = reports
        .iter()
        .find(|r| r.sync == super::SALES_GOOGLE)
        .context("no sales-google run")?;
    writeln!(out, "\nWhat became of each edit (field by field):")?;
    let side_name = |s: Side| {
        if s == Side::A {
            "Freshsales"
        } else {
            "Freshmarketer"
        }
    };
    let explain = |out: &mut dyn Write, pair: &Pair, what: &str| -> anyhow::Result<()> {
        writeln!(out, "• {what} — {}", pair.label)?;
        for c in sm.plan.conflicts.iter().filter(|c| c.link == pair.link) {
            writeln!(
                out,
                "    {}: Freshsales {} vs Freshmarketer {} → {}",
                pair_label(&c.field),
                c.a,
                c.b,
                name_sides(&c.decision, "Freshsales", "Freshmarketer")
            )?;
        }
        for op in sm.plan.ops.iter().filter(|o| o.link == pair.link) {
            let what = match &op.kind {
                OpKind::Update { fields, .. } => format!(
                    "set {}",
                    fields
                        .iter()
                        .map(|(k, v)| format!("{k} = {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                OpKind::RemoveFromContainer { .. } => format!("removed from the {NEWSLETTER} list"),
                OpKind::Delete { .. } => "deleted".into(),
                OpKind::AddToContainer { .. } => format!("added to the {NEWSLETTER} list"),
                OpKind::Create { .. } => "created".into(),
            };
            writeln!(
                out,
                "    {} ← {what}  ({})",
                side_name(op.side),
                name_sides(&op.reason, "Freshsales", "Freshmarketer")
            )?;
        }
        for n in sm.plan.notes.iter().filter(|n| n.link == pair.link) {
            writeln!(
                out,
                "    note: {}",
                name_sides(&n.text, "Freshsales", "Freshmarketer")
            )?;
        }
        Ok(())
    };
    explain(out, &edits.conflict, "Conflict")?;
    explain(out, &edits.dnd, "Do Not Disturb")?;
    explain(out, &edits.unsubscribe, "Unsubscribe")?;
    explain(out, &edits.deletion, "Deletion")?;
    writeln!(out, "• New contact — Maya Lindqvist <{NEW_EMAIL}>")?;
    let creates_maya = |o: &&crate::sync::plan::PlannedOp| matches!(&o.kind, OpKind::Create { fields, .. } if fields.iter().any(|(_, v)| v.to_string().contains(NEW_EMAIL)));
    for op in sm.plan.ops.iter().filter(creates_maya) {
        writeln!(
            out,
            "    Freshsales ← created  ({})",
            name_sides(&op.reason, "Freshsales", "Freshmarketer")
        )?;
    }
    for op in sg.plan.ops.iter().filter(creates_maya) {
        writeln!(
            out,
            "    Google ← created  ({})",
            name_sides(&op.reason, "Freshsales", "Google")
        )?;
    }
    check_apps(out, host, apps, edits).await
}

/// Reads the records back from the apps and states each outcome.
async fn check_apps(
    out: &mut dyn Write,
    _host: &Host,
    apps: &Apps,
    e: &Edits,
) -> anyhow::Result<()> {
    let (fs, fm) = (&apps.freshsales, &apps.freshmarketer);
    writeln!(out, "\nIn the apps now:")?;
    let c_fs = apps.contact(fs, e.conflict.freshsales).await?;
    let c_fm = apps.contact(fm, e.conflict.freshmarketer).await?;
    writeln!(
        out,
        "• {}: job title \"{}\" in both apps, mobile {} and city {} in both.",
        e.conflict.label,
        c_fs["job_title"].as_str().unwrap_or("?"),
        c_fm["mobile_number"].as_str().unwrap_or("?"),
        c_fs["city"].as_str().unwrap_or("?"),
    )?;
    let d = apps.contact(fm, e.dnd.freshmarketer).await?;
    writeln!(
        out,
        "• {}: Freshmarketer subscription {}, in {NEWSLETTER}: {}.",
        e.dnd.label,
        subscription(&d),
        in_list(&d, e.newsletter)
    )?;
    let u = apps.contact(fs, e.unsubscribe.freshsales).await?;
    writeln!(
        out,
        "• {}: Freshsales Do Not Disturb = {}.",
        e.unsubscribe.label,
        u["do_not_disturb"].as_bool().unwrap_or(false)
    )?;
    let g = apps.contact(fm, e.deletion.freshmarketer).await?;
    writeln!(
        out,
        "• {}: still in Freshmarketer (deleted: {}), in {NEWSLETTER}: {}.",
        e.deletion.label,
        g["is_deleted"].as_bool().unwrap_or(false),
        in_list(&g, e.newsletter)
    )?;
    let found = |cs: &BTreeMap<u64, Value>| {
        cs.values()
            .any(|c| emails_of(c).iter().any(|m| m == NEW_EMAIL))
    };
    let in_google = apps.google_state().await?["people"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| {
            p["deleted"].as_bool() != Some(true)
                && p["person"]["emailAddresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|m| m["value"].as_str() == Some(NEW_EMAIL))
        });
    let yes = |b: bool| if b { "yes" } else { "no" };
    writeln!(
        out,
        "• Maya Lindqvist: in Freshsales: {}, in Google Contacts: {}.",
        yes(found(&apps.contacts(fs).await?)),
        yes(in_google)
    )?;
    Ok(())
}

fn subscription(c: &Value) -> &'static str {
    match c["subscription_status"].as_u64() {
        Some(0) => "unsubscribed",
        Some(1) => "subscribed",
        Some(2) => "not subscribed",
        Some(3) => "reported as spam",
        Some(4) => "bounced",
        _ => "unknown",
    }
}

fn in_list(c: &Value, list: u64) -> bool {
    c["list_ids"]
        .as_array()
        .is_some_and(|ls| ls.iter().any(|i| i.as_u64() == Some(list)))
}

/// The closing lines: what was used and what to try next.
pub(super) fn epilogue(
    out: &mut dyn Write,
    demo: &super::DemoRun,
    elapsed: Duration,
    serving: bool,
) -> anyhow::Result<()> {
    let config = demo.config.display();
    writeln!(
        out,
        "\nDone in {:.1} s.\nConfig: {config}\nState:  {}",
        elapsed.as_secs_f64(),
        demo.state.display()
    )?;
    if serving {
        // The console's lines follow once its daemon listens ([`console`]).
        writeln!(
            out,
            "\nThe simulated apps keep running until Ctrl-C, on the ports the config's defaults name\n\
             (Freshsales {}, Freshmarketer {}, Google {}).",
            demo.apps.freshsales.base_url,
            demo.apps.freshmarketer.base_url,
            demo.apps.google.base_url
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "\nExplore further (the state stays until the next `tandem demo`; `sync plan` needs the apps\n\
         running, and `tandem demo --serve` keeps them running and serves the operator console):"
    )?;
    for cmd in [
        format!("tandem sync status --config {config}"),
        format!("tandem sync logs sales-marketing --config {config}"),
        format!("tandem sync plan sales-google --config {config}"),
        format!("tandem config validate --config {config}"),
        "tandem sandbox".to_string(),
    ] {
        writeln!(out, "  {cmd}")?;
    }
    Ok(())
}

/// With `--serve`: where the operator console is, once its daemon (over the demo's state)
/// listens on `addr`, and what reaches that daemon from another terminal.
pub(super) fn console(
    out: &mut dyn Write,
    demo: &super::DemoRun,
    addr: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let config = demo.config.display();
    let token = match demo.resolved.daemon.token.as_ref().map(|t| &t.source) {
        Some(crate::config::SecretSource::File(p)) => p.display().to_string(),
        _ => "the file `[daemon] token` names".into(),
    };
    writeln!(
        out,
        "\nThe operator console (docs/console.md) is at http://{addr}/console/\n\
         Sign in with the control token in\n  {token}\n\
         (the demo's own, fake like every credential here). Its daemon polls the demo's syncs;\n\
         in another terminal, these go through it:"
    )?;
    for cmd in [
        format!("tandem sync status --config {config}"),
        format!("tandem sync logs sales-marketing --config {config}"),
        format!("tandem sync run sales-google --config {config}"),
    ] {
        writeln!(out, "  {cmd}")?;
    }
    writeln!(
        out,
        "(`tandem sync plan` reads the state file, which the daemon holds: the console's\n\
         \"Preview next run\" shows the plan.) Ctrl-C stops the daemon and the apps."
    )?;
    Ok(())
}

/// Fails when a run did not complete (the demo's story would be wrong).
pub(super) fn completed(r: &RunReport) -> anyhow::Result<()> {
    match &r.outcome {
        RunOutcome::Completed => Ok(()),
        other => bail!("sync `{}` did not complete: {other:?}", r.sync),
    }
}
