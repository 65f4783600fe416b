//! Runtime benchmarks.
//!
//! * `instance/*`: a fresh store + instance from the cached pre-instantiated component and
//!   one near-empty export call (goal: <= 25 µs median; printed as goal vs measured, with
//!   the allocator in use).
//! * `map-1000/*`: a mapper normalising 1,000 contact records, in wasm vs the same code
//!   compiled natively (goal: wasm/native <= 1.5x), in the three shapes of the contract:
//!   `wasm` is a mapper exporting only `mapper-api.map` (one string per id, name and
//!   value); `wasm-packed` and `wasm-buffer` are the same transform through the SDK,
//!   which exports `map` and the packed `mapper-batch-api.map-batch` and the byte-buffer
//!   `mapper-buffer-api.map-buffer`, called through each (the host prefers the last).
//!   The ratios of one run are printed at the end. `*-identity` / `native-clone` split
//!   the wasm figures into the fixed cost of crossing the boundary and the transform
//!   itself.
//!
//! Run: `cargo bench -p tandem --bench runtime`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tandem::runtime::types::{Field, MapContext, Record, Value};
use tandem::runtime::{
    Allocator, Connection, ConnectorClient, Credentials, Grant, MapShape, MapperClient,
    MapperLimits, PluginSource, PolicyClass, Runtime, RuntimeOptions,
};

#[path = "../../tests/fixtures/bench-mapper/src/logic.rs"]
mod logic;

struct Setup {
    rt: tokio::runtime::Runtime,
    connector: ConnectorClient,
    empty_mapper: MapperClient,
    contacts_mapper: MapperClient,
    packed_mapper: MapperClient,
    buffer_mapper: MapperClient,
    allocator: Allocator,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = redb::Database::create(dir.path().join("bench.redb")).unwrap();
    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: Some(dir.path().join("cache")),
        ..RuntimeOptions::new(Arc::new(db))
    })
    .unwrap();
    let load = |package: &str| {
        let path = tandem_plugins::wasm_path(package).unwrap();
        rt.block_on(runtime.load(PluginSource::Path(path), None))
            .unwrap()
    };
    let hostile = load("tandem-fixture-hostile");
    let hostile_mapper = load("tandem-fixture-hostile-mapper");
    let bench_mapper = load("tandem-fixture-bench-mapper");
    let packed_mapper = load("tandem-fixture-packed-mapper");
    assert!(!bench_mapper.has_batch_map() && packed_mapper.has_buffer_map());
    let connector = rt.block_on(async {
        runtime
            .connector(
                &hostile,
                Connection {
                    id: "bench".into(),
                    settings: Default::default(),
                    grant: Grant::default(),
                    credentials: Credentials::None,
                    budget: None,
                },
            )
            .unwrap()
    });
    let limits = MapperLimits {
        fuel: u64::MAX / 2,
        ..MapperLimits::default()
    };
    Setup {
        connector,
        empty_mapper: runtime
            .mapper(&hostile_mapper, limits.clone(), "bench")
            .unwrap(),
        contacts_mapper: runtime
            .mapper(&bench_mapper, limits.clone(), "bench")
            .unwrap(),
        packed_mapper: runtime
            .mapper(&packed_mapper, limits.clone(), "bench")
            .unwrap()
            .with_shape(MapShape::Batch)
            .unwrap(),
        buffer_mapper: runtime.mapper(&packed_mapper, limits, "bench").unwrap(),
        allocator: runtime.allocator(PolicyClass::Connector),
        rt,
        _dir: dir,
    }
}

fn text(name: &str, value: String) -> Field {
    Field {
        name: name.into(),
        value: Value::Text(value),
    }
}

/// 1,000 contacts with messy values, like an import from a CRM.
fn contacts() -> Vec<Record> {
    const FIRST: [&str; 5] = ["aNNa", "  john ", "MARIE-claire", "li", "Ömer"];
    const LAST: [&str; 5] = ["SMITH", "o'neil", "  de la cruz", "wang", "yılmaz"];
    const COUNTRY: [&str; 5] = ["Germany", "usa", " France ", "India", "Atlantis"];
    (0..1000)
        .map(|i| Record {
            id: format!("{}", 100_000 + i),
            version: Some(format!("\"etag-{i}\"")),
            updated_at: Some("2026-11-20T10:00:00Z".into()),
            fields: vec![
                text("email", format!("  Person.{i}@Example.COM ")),
                text("first_name", FIRST[i % 5].into()),
                text("last_name", LAST[i % 5].into()),
                text("phone", format!("0049 (30) {:07}", i * 7)),
                text("mobile", format!("+1 555-{:04}", i)),
                text("city", "  new   york ".into()),
                text("country", COUNTRY[i % 5].into()),
                text("job_title", "head OF sales".into()),
                Field {
                    name: "lead_score".into(),
                    value: Value::Number(i as f64),
                },
                Field {
                    name: "tags".into(),
                    value: Value::Texts(vec!["vip".into(), format!("batch-{}", i % 10)]),
                },
            ],
        })
        .collect()
}

/// The native twin of the wasm mapper's `map_one` (same logic module).
fn map_one_native(mut record: Record) -> Record {
    let mut first = None;
    let mut last = None;
    for field in &mut record.fields {
        if let Value::Text(text) = &field.value
            && let Some(new) = logic::normalize(&field.name, text)
        {
            field.value = Value::Text(new);
        }
        if let Value::Text(text) = &field.value {
            match field.name.as_str() {
                "first_name" => first = Some(text.clone()),
                "last_name" => last = Some(text.clone()),
                _ => {}
            }
        }
    }
    if let Some(full) = logic::full_name(first.as_deref(), last.as_deref()) {
        record.fields.push(Field {
            name: "full_name".into(),
            value: Value::Text(full),
        });
    }
    record
}

/// The native path does what the wasm path does: new records from borrowed input.
fn map_native(records: &[Record]) -> Vec<Result<Option<Record>, tandem::runtime::types::Error>> {
    records
        .iter()
        .cloned()
        .map(|r| match logic::verdict(&r.id) {
            logic::Verdict::Keep => Ok(Some(map_one_native(r))),
            logic::Verdict::Drop => Ok(None),
            logic::Verdict::Fail(m) => Err(tandem::runtime::types::Error::Invalid(m.to_owned())),
        })
        .collect()
}

fn ctx() -> MapContext {
    ctx_for("contacts")
}

/// The hostile-mapper fixture passes records through unchanged for any other entity.
fn ctx_for(entity: &str) -> MapContext {
    MapContext {
        sync: "bench".into(),
        source: "a".into(),
        target: "b".into(),
        entity: entity.into(),
    }
}

fn benches(c: &mut Criterion) {
    let s = setup();
    let ctx = ctx();
    let input = contacts();

    // Same output both ways, or the comparison means nothing.
    let wasm_out = s.rt.block_on(s.contacts_mapper.map(&ctx, &input)).unwrap();
    assert_eq!(wasm_out, map_native(&input));
    let packed_out = s.rt.block_on(s.packed_mapper.map(&ctx, &input)).unwrap();
    assert_eq!(packed_out, wasm_out);
    assert_eq!(s.buffer_mapper.shape(), MapShape::Buffer);
    let buffer_out = s.rt.block_on(s.buffer_mapper.map(&ctx, &input)).unwrap();
    assert_eq!(buffer_out, wasm_out);

    let mut group = c.benchmark_group("instance");
    group.bench_function("connector-describe", |b| {
        b.iter(|| black_box(s.rt.block_on(s.connector.describe()).unwrap()))
    });
    group.bench_function("mapper-empty-map", |b| {
        b.iter(|| black_box(s.rt.block_on(s.empty_mapper.map(&ctx, &[])).unwrap()))
    });
    group.finish();
    instance_goal(&s, &ctx);

    let mut group = c.benchmark_group("map-1000");
    group.sample_size(30);
    group.bench_function("wasm", |b| {
        b.iter(|| black_box(s.rt.block_on(s.contacts_mapper.map(&ctx, &input)).unwrap()))
    });
    group.bench_function("wasm-packed", |b| {
        b.iter(|| black_box(s.rt.block_on(s.packed_mapper.map(&ctx, &input)).unwrap()))
    });
    group.bench_function("wasm-buffer", |b| {
        b.iter(|| black_box(s.rt.block_on(s.buffer_mapper.map(&ctx, &input)).unwrap()))
    });
    group.bench_function("native", |b| b.iter(|| black_box(map_native(&input))));
    // Breakdown: the same records through an identity mapper (instance + crossing the
    // boundary both ways + fuel metering, no transform) vs a native clone.
    let identity = ctx_for("identity");
    group.bench_function("wasm-identity", |b| {
        b.iter(|| {
            black_box(
                s.rt.block_on(s.empty_mapper.map(&identity, &input))
                    .unwrap(),
            )
        })
    });
    group.bench_function("wasm-packed-identity", |b| {
        b.iter(|| {
            black_box(
                s.rt.block_on(s.packed_mapper.map(&identity, &input))
                    .unwrap(),
            )
        })
    });
    group.bench_function("wasm-buffer-identity", |b| {
        b.iter(|| {
            black_box(
                s.rt.block_on(s.buffer_mapper.map(&identity, &input))
                    .unwrap(),
            )
        })
    });
    group.bench_function("native-clone", |b| b.iter(|| black_box(input.clone())));
    group.finish();

    // One run, all sides interleaved, medians compared: of wall time, and of the CPU time
    // of this thread (the guest runs on it too), which other processes on a shared
    // machine do not inflate.
    let identity_ctx = ctx_for("identity");
    type Side<'a> = (&'a str, Box<dyn Fn() + 'a>);
    let sides: Vec<Side> = vec![
        (
            "map (old shape)",
            Box::new(|| {
                black_box(s.rt.block_on(s.contacts_mapper.map(&ctx, &input)).unwrap());
            }),
        ),
        (
            "map-batch (packed)",
            Box::new(|| {
                black_box(s.rt.block_on(s.packed_mapper.map(&ctx, &input)).unwrap());
            }),
        ),
        (
            "map-buffer (bytes, changes)",
            Box::new(|| {
                black_box(s.rt.block_on(s.buffer_mapper.map(&ctx, &input)).unwrap());
            }),
        ),
        (
            "native",
            Box::new(|| {
                black_box(map_native(&input));
            }),
        ),
        (
            "map-buffer identity",
            Box::new(|| {
                black_box(
                    s.rt.block_on(s.buffer_mapper.map(&identity_ctx, &input))
                        .unwrap(),
                );
            }),
        ),
        (
            "native clone",
            Box::new(|| {
                black_box(input.clone());
            }),
        ),
    ];
    let mut wall = vec![Vec::new(); sides.len()];
    let mut cpu = vec![Vec::new(); sides.len()];
    for _ in 0..60 {
        for (i, (_, run)) in sides.iter().enumerate() {
            let (t, c) = (Instant::now(), thread_cpu());
            run();
            wall[i].push(t.elapsed());
            cpu[i].push(thread_cpu() - c);
        }
    }
    let wall: Vec<Duration> = wall.iter_mut().map(|v| median(v)).collect();
    let cpu: Vec<Duration> = cpu.iter_mut().map(|v| median(v)).collect();
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    for i in 0..3 {
        println!(
            "map-1000 {}: goal <= 1.5x native, measured {:.2}x (one run, median of 60: wasm {:?} / native {:?}; thread CPU {:.2}x: {:?} / {:?})",
            sides[i].0,
            ratio(wall[i], wall[3]),
            wall[i],
            wall[3],
            ratio(cpu[i], cpu[3]),
            cpu[i],
            cpu[3]
        );
    }
    println!(
        "map-1000 identity through map-buffer / native clone: {:.2}x ({:?} / {:?}; thread CPU {:.2}x: {:?} / {:?})",
        ratio(wall[4], wall[5]),
        wall[4],
        wall[5],
        ratio(cpu[4], cpu[5]),
        cpu[4],
        cpu[5]
    );
}

/// CPU time this thread has used (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Goal vs measured for a fresh instance + one near-empty call: the median of 2,000 calls
/// of each kind, and which allocator the engines use (the pool, unless the OS refused it).
fn instance_goal(s: &Setup, ctx: &MapContext) {
    const GOAL: Duration = Duration::from_micros(25);
    let mut describe = Vec::with_capacity(2000);
    let mut map = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let t = Instant::now();
        black_box(s.rt.block_on(s.connector.describe()).unwrap());
        describe.push(t.elapsed());
        let t = Instant::now();
        black_box(s.rt.block_on(s.empty_mapper.map(ctx, &[])).unwrap());
        map.push(t.elapsed());
    }
    for (name, samples) in [
        ("connector-describe", &mut describe),
        ("mapper-empty-map", &mut map),
    ] {
        let m = median(samples);
        println!(
            "instance/{name} (median of 2000, {:?} allocator): goal <= {GOAL:?}, measured {m:?} ({})",
            s.allocator,
            if m <= GOAL { "met" } else { "NOT met" }
        );
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

criterion_group!(runtime, benches);
criterion_main!(runtime);
