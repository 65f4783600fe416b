//! Request economy of the first-party connectors (issue 4, item 6).
//!
//! For each connector, against its simulated account (rate limits off, system clock so
//! that bulk jobs complete in real time), through the real runtime: a full `pull` of
//! N seeded records, `push` of N updates (one field each, with `if-version` as the sync
//! engine sends them), N adds to a list or group (one contact per write, as the engine
//! sends them; entities with containers only), N creates and N deletes, in `push` calls of
//! the entity's `max-batch-size`, and the lookups by e-mail of an initial sync (half of
//! the addresses held, half not): one `find` per address (the path of connectors without
//! the contract's `lookup-api`, measured on a sample of 200) against `find-many` (1,000
//! addresses per call). Requests are read from the account's request counters (the OAuth
//! token endpoint left out) and compared with two bounds:
//!
//! * **lower bound**: pages of the API's largest page, writes in bulk requests of the
//!   API's largest batch (the definition);
//! * **API bound**: what the API can do at best for that operation with the contract's
//!   read-back (see [`api_bound`]): e.g. Freshworks has no bulk update by id, and its bulk
//!   upsert is an asynchronous job whose status and result must be read.
//!
//! Run: `cargo bench -p tandem --bench economy` (N = 10,000), or with
//! `-- --records 2000 --only google` for a quicker look. Prints a table.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use comfy_table::{ContentArrangement, Table, presets};
use tandem::conformance::{SandboxControl, Target};
use tandem::runtime::types::{
    CreateOp, Field, FieldDef, Lookup, LookupKey, MembershipOp, Op, PullRequest, Record, UpdateOp,
    Value, Write,
};
use tandem::runtime::{ConnectorClient, PluginSource, Runtime, RuntimeOptions};
use tandem_sandbox::{AccountKind, Sandbox, SandboxOptions, Sizes};

/// One connector and the account it runs against.
struct Case {
    label: &'static str,
    package: &'static str,
    kind: AccountKind,
    entity: &'static str,
    /// The API's largest page.
    page: u64,
    /// The API's largest bulk create / update / delete.
    bulk_create: u64,
    bulk_update: u64,
    bulk_delete: u64,
    /// The API's largest list-membership change (entities with containers).
    bulk_members: u64,
    /// Addresses one request can look up: values of one search, or contacts of one
    /// listing page (Google, which has no search safe for de-duplication).
    search: u64,
}

const CASES: [Case; 4] = [
    Case {
        label: "freshsales (Suite)",
        package: "tandem-plugin-freshsales",
        kind: AccountKind::FreshsalesSuite,
        entity: "contacts",
        page: 100,
        bulk_create: 100,
        bulk_update: 100,
        bulk_delete: 100,
        bulk_members: 100,
        search: 100,
    },
    Case {
        label: "freshsales (Classic)",
        package: "tandem-plugin-freshsales",
        kind: AccountKind::FreshsalesClassic,
        entity: "leads",
        page: 100,
        bulk_create: 100,
        bulk_update: 100,
        bulk_delete: 100,
        bulk_members: 100,
        search: 100,
    },
    Case {
        label: "freshmarketer",
        package: "tandem-plugin-freshmarketer",
        kind: AccountKind::Freshmarketer,
        entity: "contacts",
        page: 100,
        bulk_create: 100,
        bulk_update: 100,
        bulk_delete: 100,
        // Undocumented maximum (docs/freshworks-api.md §6.3); the connector's default.
        bulk_members: 100,
        search: 100,
    },
    Case {
        label: "google-contacts",
        package: "tandem-plugin-google-contacts",
        kind: AccountKind::GooglePeople,
        entity: "contacts",
        page: 1000,
        bulk_create: 200,
        bulk_update: 200,
        bulk_delete: 500,
        bulk_members: 1000,
        search: 1000,
    },
];

/// One measured operation.
struct Row {
    app: &'static str,
    kind: AccountKind,
    op: &'static str,
    records: u64,
    requests: u64,
    bound: u64,
    errors: usize,
    time: Duration,
    endpoints: BTreeMap<String, u64>,
}

fn main() {
    let mut records: u64 = 10_000;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--records" => records = args.next().and_then(|n| n.parse().ok()).unwrap_or(records),
            "--only" => only = args.next(),
            _ => {} // `--bench` and filters from cargo
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let rows = rt.block_on(async {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .expect("in-memory database");
        let runtime = Runtime::new(RuntimeOptions::new(Arc::new(db))).expect("runtime");
        let mut rows = Vec::new();
        for case in &CASES {
            if only.as_deref().is_some_and(|o| !case.label.contains(o)) {
                continue;
            }
            eprintln!("{}: seeding {records} records …", case.label);
            rows.extend(measure(&runtime, case, records as usize).await);
        }
        rows
    });
    print(&rows, records);
}

async fn measure(runtime: &Runtime, case: &Case, n: usize) -> Vec<Row> {
    let sizes = Sizes {
        freshsales: n,
        freshsales_classic: n,
        freshmarketer: n,
        google: n,
    };
    let sandbox = Sandbox::start(SandboxOptions {
        sizes,
        rate_limits_enabled: false,
        kinds: vec![case.kind],
        ..SandboxOptions::default()
    })
    .await
    .expect("sandbox");
    let info = sandbox.account(case.kind).expect("account").clone();
    let target = Target::simulated(&info);
    let control = SandboxControl::for_account(&info);
    let path = tandem_plugins::wasm_path(case.package).expect("plugin built");
    let plugin = runtime
        .load(PluginSource::Path(path), None)
        .await
        .expect("plugin loads");
    let client = target
        .connect(runtime, &plugin, "economy", target.credentials.clone())
        .expect("client");
    let described = client.describe().await.expect("describe");
    let entity = described
        .entities
        .iter()
        .find(|e| e.name == case.entity)
        .expect("entity")
        .clone();
    let schema = client.schema(case.entity).await.expect("schema");
    let tagged = |tag: &str| field_name(&schema, tag);
    let (email, first, last) = (tagged("email"), tagged("first-name"), tagged("last-name"));
    // Warm up: the first call fetches an OAuth token or field metadata into storage.
    client.check().await.expect("check");
    let batch = entity.max_batch_size as usize;
    let mut rows = Vec::new();

    // Full pull.
    control.clear_counters().await.expect("counters");
    let started = Instant::now();
    let mut pulled: Vec<Record> = Vec::new();
    let mut cursor = None;
    loop {
        let page = client
            .pull(&PullRequest {
                entity: case.entity.to_owned(),
                container: None,
                cursor,
                full: true,
                page_size: entity.max_page_size,
            })
            .await
            .expect("pull");
        pulled.extend(page.records);
        cursor = page.next_cursor;
        if !page.more {
            break;
        }
    }
    rows.push(
        row(
            &control,
            case,
            "pull (full)",
            pulled.len(),
            case.page,
            0,
            started,
        )
        .await,
    );

    // Updates: one field of each pulled record, with its version.
    let writes = writes_of(&pulled[..n.min(pulled.len())], "u", |i, r| {
        Op::Update(UpdateOp {
            id: r.id.clone(),
            if_version: r.version.clone(),
            fields: vec![text(&first, format!("Economy{i}"))],
        })
    });
    rows.push(
        push_row(
            &client,
            &control,
            case,
            "push updates",
            &writes,
            batch,
            case.bulk_update,
        )
        .await,
    );

    // Adds to the container with the fewest members, one contact per write.
    if entity.containers {
        let containers = client.containers(case.entity).await.expect("containers");
        let target = containers
            .iter()
            .min_by_key(|c| c.member_count.unwrap_or(u64::MAX))
            .expect("a container");
        let writes = writes_of(&pulled[..n.min(pulled.len())], "m", |_, r| {
            Op::AddToContainer(MembershipOp {
                container: target.id.clone(),
                ids: vec![r.id.clone()],
            })
        });
        rows.push(
            push_row(
                &client,
                &control,
                case,
                "push adds to list",
                &writes,
                batch,
                case.bulk_members,
            )
            .await,
        );
    }

    // Creates.
    let writes: Vec<Write> = (0..n)
        .map(|i| Write {
            ref_: format!("c{i}"),
            op: Op::Create(CreateOp {
                fields: vec![
                    text(&email, format!("economy-{i}@bench.example")),
                    text(&first, format!("Bench{i}")),
                    text(&last, "Economy".to_owned()),
                ],
                marker: Some(format!("tandem-economy-{i}")),
                containers: Vec::new(),
            }),
        })
        .collect();
    control.clear_counters().await.expect("counters");
    let started = Instant::now();
    let mut created = Vec::new();
    let mut errors = 0;
    for chunk in writes.chunks(batch) {
        let results = client.push(case.entity, chunk).await.expect("push");
        for r in results {
            match r.outcome {
                Ok(Some(record)) => created.push(record.id),
                _ => errors += 1,
            }
        }
    }
    rows.push(
        row(
            &control,
            case,
            "push creates",
            writes.len(),
            case.bulk_create,
            errors,
            started,
        )
        .await,
    );

    // Deletes of what was created.
    let writes: Vec<Write> = created
        .iter()
        .enumerate()
        .map(|(i, id)| Write {
            ref_: format!("d{i}"),
            op: Op::Delete(id.clone()),
        })
        .collect();
    rows.push(
        push_row(
            &client,
            &control,
            case,
            "push deletes",
            &writes,
            batch,
            case.bulk_delete,
        )
        .await,
    );

    // The lookups of an initial sync: every address of the other side's records, about
    // half of them held here. Before: one `find` per address (measured on a sample, as
    // Google's scans the whole account per address); after: `find-many`, 1,000 per call.
    let emails: Vec<String> = pulled
        .iter()
        .take(n / 2)
        .filter_map(|r| text_of(r, &email))
        .chain((0..n - n / 2).map(|i| format!("absent-{i}@bench.example")))
        .collect();
    let sample = emails.len().min(LOOKUP_SAMPLE);
    control.clear_counters().await.expect("counters");
    let started = Instant::now();
    let mut errors = 0;
    for email in emails
        .iter()
        .step_by((emails.len() / sample).max(1))
        .take(sample)
    {
        let found = client
            .find(case.entity, &Lookup::Email(email.clone()))
            .await;
        errors += usize::from(found.is_err());
    }
    rows.push(
        row(
            &control,
            case,
            "lookups: find each",
            sample,
            case.search,
            errors,
            started,
        )
        .await,
    );
    if client.has_batch_lookup() {
        control.clear_counters().await.expect("counters");
        let started = Instant::now();
        let mut errors = 0;
        for chunk in emails.chunks(1000) {
            let keys: Vec<LookupKey> = chunk.iter().cloned().map(LookupKey::Email).collect();
            match client.find_many(case.entity, &keys).await {
                Some(Ok(found)) if found.len() == keys.len() => {}
                _ => errors += chunk.len(),
            }
        }
        rows.push(
            row(
                &control,
                case,
                "lookups: find-many",
                emails.len(),
                case.search,
                errors,
                started,
            )
            .await,
        );
    }

    sandbox.shutdown().await;
    rows
}

/// Addresses looked up one `find` at a time (the cost per address is what matters).
const LOOKUP_SAMPLE: usize = 200;

/// A text field of a record.
fn text_of(record: &Record, name: &str) -> Option<String> {
    record
        .fields
        .iter()
        .find(|f| f.name == name)
        .and_then(|f| match &f.value {
            Value::Text(t) => Some(t.clone()),
            _ => None,
        })
}

/// One write per record, `op` of (position, record), with references `<prefix><position>`.
fn writes_of(records: &[Record], prefix: &str, op: impl Fn(usize, &Record) -> Op) -> Vec<Write> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| Write {
            ref_: format!("{prefix}{i}"),
            op: op(i, r),
        })
        .collect()
}

/// The row of `writes` pushed in calls of `batch`, against `per_request` writes per request.
async fn push_row(
    client: &ConnectorClient,
    control: &SandboxControl,
    case: &Case,
    op: &'static str,
    writes: &[Write],
    batch: usize,
    per_request: u64,
) -> Row {
    let (errors, time) = push_all(client, control, case.entity, writes, batch).await;
    row(control, case, op, writes.len(), per_request, errors, time).await
}

/// Pushes `writes` in calls of `batch`; counters cleared first. (errors, elapsed).
async fn push_all(
    client: &ConnectorClient,
    control: &SandboxControl,
    entity: &str,
    writes: &[Write],
    batch: usize,
) -> (usize, Duration) {
    control.clear_counters().await.expect("counters");
    let started = Instant::now();
    let mut errors = 0;
    for chunk in writes.chunks(batch) {
        let results = client.push(entity, chunk).await.expect("push");
        errors += results.iter().filter(|r| r.outcome.is_err()).count();
    }
    (errors, started.elapsed())
}

/// The row for the requests counted since the counters were cleared.
async fn row(
    control: &SandboxControl,
    case: &Case,
    op: &'static str,
    records: usize,
    per_request: u64,
    errors: usize,
    time: impl Into<Elapsed>,
) -> Row {
    let endpoints = control.api_requests().await.expect("counters");
    let records = records as u64;
    Row {
        app: case.label,
        kind: case.kind,
        op,
        records,
        requests: endpoints.values().sum(),
        bound: records.div_ceil(per_request).max(1),
        errors,
        time: time.into().0,
        endpoints,
    }
}

/// A duration, or the time since an instant.
struct Elapsed(Duration);

impl From<Duration> for Elapsed {
    fn from(d: Duration) -> Self {
        Elapsed(d)
    }
}

impl From<Instant> for Elapsed {
    fn from(i: Instant) -> Self {
        Elapsed(i.elapsed())
    }
}

fn field_name(schema: &[FieldDef], tag: &str) -> String {
    schema
        .iter()
        .find(|f| f.writable && f.well_known.as_deref() == Some(tag))
        .map(|f| f.name.clone())
        .unwrap_or_else(|| panic!("no writable field tagged {tag}"))
}

fn text(name: &str, value: String) -> Field {
    Field {
        name: name.to_owned(),
        value: Value::Text(value),
    }
}

fn print(rows: &[Row], records: u64) {
    let mut table = Table::new();
    table
        .load_preset(presets::ASCII_MARKDOWN)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header([
            "connector",
            "operation",
            "records",
            "requests",
            "lower bound",
            "over bound",
            "API bound",
            "over API bound",
            "errors",
            "time",
            "requests by endpoint",
        ]);
    for r in rows {
        let over =
            |bound: u64| format!("{:+.1}%", (r.requests as f64 / bound as f64 - 1.0) * 100.0);
        let api = api_bound(r.kind, r.op, r.records);
        let endpoints: Vec<String> = r
            .endpoints
            .iter()
            .map(|(e, c)| format!("{e} ×{c}"))
            .collect();
        table.add_row(vec![
            r.app.to_owned(),
            r.op.to_owned(),
            r.records.to_string(),
            r.requests.to_string(),
            r.bound.to_string(),
            over(r.bound),
            api.to_string(),
            over(api),
            r.errors.to_string(),
            format!("{:.1} s", r.time.as_secs_f64()),
            endpoints.join(", "),
        ]);
    }
    println!("\nRequest economy, {records} records per operation (goal: within 5% of the bound)\n");
    println!("{table}");
    println!(
        "\nLookups by e-mail per 1,000 records (an initial sync looks up every address of the other side):\n"
    );
    for app in rows
        .iter()
        .map(|r| r.app)
        .collect::<std::collections::BTreeSet<_>>()
    {
        let per_1000 = |op: &str| {
            rows.iter()
                .find(|r| r.app == app && r.op == op)
                .map(|r| {
                    format!(
                        "{:.1}",
                        r.requests as f64 * 1000.0 / r.records.max(1) as f64
                    )
                })
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "  {app}: {} requests with one `find` per address, {} with `find-many`",
            per_1000("lookups: find each"),
            per_1000("lookups: find-many")
        );
    }
    println!(
        "\nAPI bound: Freshworks has no bulk update by id (one PUT per update, plus one search \
         by id per 100 for the versions that `if-version` is checked against: the API has no \
         conditional update) and no bulk upsert of leads (one upsert per lead); its contact \
         bulk upsert is an asynchronous job: bulk_upsert + job status + a read-back search per \
         100 (the contract returns the stored record); list membership takes an array of ids \
         (100 per request: no documented maximum). Google's updateContact replaces whole \
         fields and needs the etag: a batchGet and a batchUpdateContacts per 200; \
         batchDeleteContacts takes 500, members:modify 1000."
    );
}

/// The fewest requests the API allows for `records` records of an operation, with the
/// read-back the contract asks for (see the module docs).
fn api_bound(kind: AccountKind, op: &str, records: u64) -> u64 {
    let per = |n: u64| records.div_ceil(n).max(1);
    match (kind, op) {
        (AccountKind::GooglePeople, "pull (full)") => per(1000),
        (AccountKind::GooglePeople, "push updates") => 2 * per(200),
        (AccountKind::GooglePeople, "push creates") => per(200),
        (AccountKind::GooglePeople, "push deletes") => per(500),
        (AccountKind::GooglePeople, "push adds to list") => per(1000),
        // One scan of the account per 1,000 addresses, then a batchGet per 200 found
        // (about half of the addresses are held).
        (AccountKind::GooglePeople, op) if op.starts_with("lookups") => {
            per(1000) + (records / 2).div_ceil(200)
        }
        (_, "push updates") => records + per(100),
        (AccountKind::FreshsalesClassic, "push creates") => records,
        (_, "push creates") => 3 * per(100),
        _ => per(100),
    }
}
