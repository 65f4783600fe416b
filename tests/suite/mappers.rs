//! Mappers of every shape of the 0.1 contract: `mapper-api.map` only (every mapper built
//! before `mapper-batch-api`), `map` + the packed `mapper-batch-api.map-batch` (the SDK's
//! `export_mapper!` before `mapper-buffer-api`), and those + the byte-buffer
//! `mapper-buffer-api.map-buffer` (the SDK's `export_mapper!` now). The host calls the
//! newest export a mapper has; the results must not depend on the shape.

use tandem::runtime::types::{Error, Field, MapContext, Record, Value};
use tandem::runtime::{CallError, MapShape, MapperLimits, TrapKind};
use tandem_tests::host::{plugin, runtime};

/// Exports `mapper-api` only (raw bindings of the `mapper` world).
const OLD_SHAPE: &str = "tandem-fixture-bench-mapper";
/// The same transform through the SDK: exports `mapper-api`, `mapper-batch-api` and
/// `mapper-buffer-api`.
const NEW_SHAPE: &str = "tandem-fixture-packed-mapper";

fn ctx(entity: &str) -> MapContext {
    MapContext {
        sync: "shapes".into(),
        source: "a".into(),
        target: "b".into(),
        entity: entity.into(),
    }
}

fn field(name: &str, value: Value) -> Field {
    Field {
        name: name.into(),
        value,
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// Every kind of value, absent and null fields, unicode, names in varying order, drops
/// and per-record failures.
fn records() -> Vec<Record> {
    let mut out = vec![
        Record {
            id: "1".into(),
            version: Some("\"etag-1\"".into()),
            updated_at: Some("2026-12-07T10:00:00Z".into()),
            fields: vec![
                field("email", text("  Ann.Lee@Example.COM ")),
                field("first_name", text("aNN")),
                field("last_name", text("lee")),
                field("phone", text("0049 (30) 123")),
                field("country", text(" usa ")),
                field("lead_score", Value::Number(-12.75)),
                field("dnd", Value::Boolean(true)),
                field("note", Value::Null),
                field(
                    "tags",
                    Value::Texts(vec!["vip".into(), "ünïcødé 😀".into()]),
                ),
                field("empty_tags", Value::Texts(vec![])),
            ],
        },
        // Other order, no version, a null name, unicode id and values.
        Record {
            id: "ид-2".into(),
            version: None,
            updated_at: None,
            fields: vec![
                field("country", text("Deutschland")),
                field("first_name", Value::Null),
                field("last_name", text("  yılmaz ")),
                field("city", text("  são   paulo ")),
                field("job_title", text("")),
                field("lead_score", Value::Number(f64::MAX)),
            ],
        },
        // No fields at all (every field absent).
        Record {
            id: "3".into(),
            version: Some(String::new()),
            updated_at: None,
            fields: vec![],
        },
        Record {
            id: "drop-4".into(),
            version: None,
            updated_at: None,
            fields: vec![field("email", text("gone@example.com"))],
        },
        Record {
            id: "fail-no e-mail for ünïcødé".into(),
            version: None,
            updated_at: None,
            fields: vec![field("dnd", Value::Boolean(false))],
        },
        // A repeated field name, kept as two fields.
        Record {
            id: "6".into(),
            version: None,
            updated_at: None,
            fields: vec![
                field("email", text("A@X.EXAMPLE")),
                field("email", text(" b@x.example")),
                field("mobile", text("+1 555-0100")),
            ],
        },
    ];
    // Enough records for names to repeat across many of them.
    for i in 0..200 {
        out.push(Record {
            id: format!("{}", 1000 + i),
            version: Some(format!("v{i}")),
            updated_at: None,
            fields: vec![
                field("email", text(&format!(" Person.{i}@Example.COM"))),
                field("first_name", text("MARIE-claire")),
                field("lead_score", Value::Number(i as f64)),
            ],
        });
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_and_new_shape_mappers_give_identical_results() {
    let old = plugin(OLD_SHAPE).await;
    let new = plugin(NEW_SHAPE).await;
    assert!(!old.has_batch_map() && !old.has_buffer_map());
    assert!(new.has_batch_map() && new.has_buffer_map());
    // Both are plain 0.1 mappers; the new one only has one export more.
    assert_eq!(old.contract().to_string(), "0.1.0");
    assert_eq!(new.contract().to_string(), "0.1.0");
    assert!(
        new.exports()
            .iter()
            .any(|e| e == "tandem:plugin/mapper-batch-api@0.1.0"),
        "{:?}",
        new.exports()
    );
    assert!(
        new.exports()
            .iter()
            .any(|e| e == "tandem:plugin/mapper-buffer-api@0.1.0"),
        "{:?}",
        new.exports()
    );
    assert!(
        old.exports()
            .iter()
            .all(|e| !e.contains("mapper-batch-api") && !e.contains("mapper-buffer-api"))
    );

    let limits = MapperLimits::default();
    let old = runtime().mapper(&old, limits.clone(), "shapes").unwrap();
    let new = runtime().mapper(&new, limits, "shapes").unwrap();
    assert_eq!(old.shape(), MapShape::Map);
    assert_eq!(new.shape(), MapShape::Buffer);
    assert!(old.with_shape(MapShape::Batch).is_none());
    let input = records();
    let ctx = ctx("contacts");
    let from_old = old.map(&ctx, &input).await.unwrap();
    let from_new = new.map(&ctx, &input).await.unwrap();
    assert_eq!(from_new, from_old);
    // The new component through its older exports too (as a mapper built before each
    // was added is called): the SDK serves all three from one impl.
    for shape in [MapShape::Map, MapShape::Batch] {
        let client = new.with_shape(shape).unwrap();
        assert_eq!(client.shape(), shape);
        assert_eq!(
            client.map(&ctx, &input).await.unwrap(),
            from_old,
            "{shape:?}"
        );
    }
    // Fields removed, reordered and changed (0 to -0), ids and versions changed or
    // cleared: the same whatever the shape.
    let reshape = self::ctx("reshape");
    let reshaped = new.map(&reshape, &input).await.unwrap();
    for shape in [MapShape::Map, MapShape::Batch] {
        let client = new.with_shape(shape).unwrap();
        assert_eq!(
            client.map(&reshape, &input).await.unwrap(),
            reshaped,
            "{shape:?}"
        );
    }
    let first = reshaped[0].as_ref().unwrap().as_ref().unwrap();
    assert_eq!(first.version, None);
    assert_eq!(first.fields.len(), input[0].fields.len() - 1);
    assert_eq!(first.fields[0].name, "EMPTY_TAGS");
    // Every record's names are its own, changed in place or not.
    let second = reshaped[1].as_ref().unwrap().as_ref().unwrap();
    assert_eq!(second.fields[0].name, "LEAD_SCORE");
    assert_eq!(second.fields[1].name, "job_title");
    let others = &reshaped[7..];
    assert!(
        others.iter().all(|r| {
            let r = r.as_ref().unwrap().as_ref().unwrap();
            let names: Vec<&str> = r.fields.iter().map(|f| f.name.as_str()).collect();
            names == ["LEAD_SCORE", "first_name", "email"]
        }),
        "{others:?}"
    );
    // A name and a text changed in place, at the same length, are sent as changed.
    let fourth = reshaped[3].as_ref().unwrap().as_ref().unwrap();
    assert_eq!(
        fourth.fields,
        vec![field("EMAIL", text("GONE@EXAMPLE.COM"))]
    );
    let last = reshaped[2].as_ref().unwrap().as_ref().unwrap();
    assert_eq!((last.id.as_str(), last.version.as_deref()), ("3", None));
    let zero = reshaped[6].as_ref().unwrap().as_ref().unwrap();
    assert_eq!(zero.id, "1000!");
    match zero.fields[0].value {
        Value::Number(n) => assert!(n == 0.0 && n.is_sign_negative(), "{n}"),
        ref other => panic!("{other:?}"),
    }
    // Records passed on unchanged, and a batch that is only that, cross back as
    // references to the input: the same records whatever the shape.
    let identity = self::ctx("identity");
    assert_eq!(
        new.map(&identity, &input).await.unwrap(),
        input
            .iter()
            .cloned()
            .map(|r| Ok(Some(r)))
            .collect::<Vec<_>>()
    );

    // And what they agree on is the transform, not an accident.
    assert_eq!(from_old.len(), input.len());
    let first = from_old[0].as_ref().unwrap().as_ref().unwrap();
    assert_eq!(first.version.as_deref(), Some("\"etag-1\""));
    let value = |name: &str| {
        first
            .fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.clone())
    };
    assert_eq!(value("email"), Some(text("ann.lee@example.com")));
    assert_eq!(value("phone"), Some(text("+4930123")));
    assert_eq!(value("country"), Some(text("US")));
    assert_eq!(value("full_name"), Some(text("Ann Lee")));
    assert_eq!(value("note"), Some(Value::Null));
    assert_eq!(value("lead_score"), Some(Value::Number(-12.75)));
    assert_eq!(
        value("tags"),
        Some(Value::Texts(vec!["vip".into(), "ünïcødé 😀".into()]))
    );
    assert_eq!(value("absent"), None);
    let second = from_old[1].as_ref().unwrap().as_ref().unwrap();
    assert_eq!(second.id, "ид-2");
    assert_eq!(
        second.fields.last(),
        Some(&field("full_name", text("Yılmaz")))
    );
    assert_eq!(from_old[2], Ok(Some(input[2].clone())));
    assert_eq!(from_old[3], Ok(None));
    assert_eq!(
        from_old[4],
        Err(Error::Invalid("no e-mail for ünïcødé".into()))
    );
    let sixth = from_old[5].as_ref().unwrap().as_ref().unwrap();
    assert_eq!(sixth.fields[0], field("email", text("a@x.example")));
    assert_eq!(sixth.fields[1], field("email", text("b@x.example")));

    // An empty batch is an empty answer either way.
    assert!(new.map(&ctx, &[]).await.unwrap().is_empty());
    assert!(
        new.with_shape(MapShape::Batch)
            .unwrap()
            .map(&ctx, &[])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(old.map(&ctx, &[]).await.unwrap().is_empty());
}

fn trap(err: &CallError) -> (TrapKind, &'static str, String) {
    match err {
        CallError::Trap {
            kind,
            export,
            detail,
            stderr,
            ..
        } => (*kind, *export, format!("{detail} / {stderr}")),
        other => panic!("expected a trap, got: {other}"),
    }
}

/// The packed and byte-buffer exports run under the same fuel, memory and trap handling
/// as `map`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_packed_and_buffer_exports_run_under_the_same_limits() {
    let new = plugin(NEW_SHAPE).await;
    let limits = MapperLimits {
        fuel: 20_000_000,
        ..MapperLimits::default()
    };
    let client = runtime().mapper(&new, limits.clone(), "limits").unwrap();
    for (shape, export) in [
        (MapShape::Buffer, "map-buffer"),
        (MapShape::Batch, "map-batch"),
    ] {
        let client = client.with_shape(shape).unwrap();
        let one = &records()[..1];

        let err = client.map(&ctx("spin"), one).await.unwrap_err();
        assert_eq!(trap(&err).0, TrapKind::OutOfFuel, "{err}");
        assert_eq!(trap(&err).1, export, "{err}");

        let err = client.map(&ctx("alloc"), one).await.unwrap_err();
        assert_eq!(trap(&err).0, TrapKind::Memory, "{err}");
        assert!(
            err.to_string()
                .contains(&format!("{} bytes", 16 * 1024 * 1024)),
            "{err}"
        );

        let err = client.map(&ctx("panic"), one).await.unwrap_err();
        let (kind, _, detail) = trap(&err);
        assert_eq!(kind, TrapKind::Unreachable, "{err}");
        assert!(detail.contains("packed mapper panics on record 1"), "{err}");

        // Fuel is deterministic, and a budget below what a batch needs fails every time.
        let input = records();
        let (out1, used1) = client.map_metered(&ctx("contacts"), &input).await.unwrap();
        let (out2, used2) = client.map_metered(&ctx("contacts"), &input).await.unwrap();
        assert_eq!((&out1, used1), (&out2, used2));
        let short = runtime()
            .mapper(
                &new,
                MapperLimits {
                    fuel: used1 / 2,
                    ..limits.clone()
                },
                "limits",
            )
            .unwrap()
            .with_shape(shape)
            .unwrap();
        let err = short.map(&ctx("contacts"), &input).await.unwrap_err();
        assert_eq!(trap(&err).0, TrapKind::OutOfFuel, "{err}");
    }
}

/// 1,000 contacts like the benchmark's (`host/benches/runtime.rs`).
fn contacts(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            id: format!("{}", 100_000 + i),
            version: Some(format!("\"etag-{i}\"")),
            updated_at: Some("2026-11-20T10:00:00Z".into()),
            fields: vec![
                field("email", text(&format!("  Person.{i}@Example.COM "))),
                field("first_name", text("aNNa")),
                field("last_name", text("SMITH")),
                field("phone", text(&format!("0049 (30) {:07}", i * 7))),
                field("mobile", text(&format!("+1 555-{i:04}"))),
                field("city", text("  new   york ")),
                field("country", text("usa")),
                field("job_title", text("head OF sales")),
                field("lead_score", Value::Number(i as f64)),
                field(
                    "tags",
                    Value::Texts(vec!["vip".into(), format!("batch-{}", i % 10)]),
                ),
            ],
        })
        .collect()
}

/// A regression guard that counts instead of timing: fuel is the number of wasm
/// operators the guest ran, the same on every machine. Measured on the benchmark's
/// contacts, per 1,000 records (identity / normaliser): through `map-buffer` 7.2 M /
/// 19.3 M (the transform itself is most of the latter), through `map-batch` 17.7 M /
/// 32.5 M, through `map` 28.9 M for the normaliser (27.0 M for the raw-bindings mapper;
/// mappers are built with LTO, docs/performance.md §2).
/// The byte shape must stay well below the packed one (it reads the input in place,
/// allocates from a bump arena and writes back only what changed), and every shape grows
/// linearly with the batch. The bounds leave room for toolchain changes and catch an order
/// of magnitude.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_costs_the_guest_what_it_did_and_scales_linearly() {
    let limits = MapperLimits {
        fuel: u64::MAX / 2,
        ..MapperLimits::default()
    };
    let new = plugin(NEW_SHAPE).await;
    let buffer = runtime().mapper(&new, limits.clone(), "fuel").unwrap();
    let packed = buffer.with_shape(MapShape::Batch).unwrap();
    let old = plugin(OLD_SHAPE).await;
    let old = runtime().mapper(&old, limits, "fuel").unwrap();
    let fuel = async |client: &tandem::runtime::MapperClient, entity: &str, n: usize| {
        client
            .map_metered(&ctx(entity), &contacts(n))
            .await
            .unwrap()
            .1
    };
    let buffer_map = fuel(&buffer, "contacts", 1000).await;
    let buffer_identity = fuel(&buffer, "identity", 1000).await;
    let packed_map = fuel(&packed, "contacts", 1000).await;
    let packed_identity = fuel(&packed, "identity", 1000).await;
    let unpacked = fuel(&buffer.unpacked(), "contacts", 1000).await;
    let old_shape = fuel(&old, "contacts", 1000).await;
    let all = format!(
        "buffer {buffer_map} / identity {buffer_identity}, packed {packed_map} / identity \
         {packed_identity}, map {unpacked}, old shape {old_shape}"
    );
    // The byte shape: well under the packed one (0.40 and 0.59 of it when measured).
    assert!(buffer_identity * 10 < packed_identity * 6, "{all}");
    assert!(buffer_map * 10 < packed_map * 8, "{all}");
    assert!(buffer_map < old_shape, "{all}");
    // The packed shape: about what `map` costs.
    assert!(packed_map < 2 * unpacked, "{all}");
    assert!(packed_map < 2 * old_shape, "{all}");
    // Per record: at most 2.5 times the figures above.
    assert!(buffer_identity < 1000 * 18_000, "{all}");
    assert!(buffer_map < 1000 * 48_000, "{all}");
    assert!(packed_map < 1000 * 81_000, "{all}");
    assert!(packed_identity < 1000 * 44_000, "{all}");
    // Linear: 1,000 records cost at most 12 times what 100 do (names are looked up once,
    // not per record against every other).
    for client in [&buffer, &packed] {
        let thousand = fuel(client, "identity", 1000).await;
        let hundred = fuel(client, "identity", 100).await;
        assert!(thousand < 12 * hundred, "1000: {thousand}, 100: {hundred}");
    }
}

/// One build of `normalize` serves every region: the sync's `mapper-settings` reach the
/// component through `config` (the mapper world imports it since 0.1), a use without
/// them keeps the old behaviour, and a value the manifest's declaration refuses stops
/// the mapper before it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapper_settings_reach_the_component_per_use() {
    use std::collections::BTreeMap;
    let normalize = plugin("tandem-mapper-normalize").await;
    assert!(
        normalize
            .manifest()
            .settings
            .contains_key("default-country-code")
    );
    let record = || Record {
        id: "1".into(),
        version: None,
        updated_at: None,
        fields: vec![field("mobile", text("06 12 34 56 78"))],
    };
    let settings = |code: &str| -> BTreeMap<String, String> {
        [("default-country-code".to_owned(), code.to_owned())].into()
    };
    let phone = |out: &[Result<Option<Record>, Error>]| match &out[0] {
        Ok(Some(r)) => r.fields[0].value.clone(),
        other => panic!("{other:?}"),
    };
    let limits = MapperLimits::default();
    for (code, expected) in [("33", "+33612345678"), ("44", "+44612345678")] {
        let client = runtime()
            .mapper_with_settings(&normalize, limits.clone(), "fr", &settings(code))
            .unwrap();
        let out = client.map(&ctx("contacts"), &[record()]).await.unwrap();
        assert_eq!(phone(&out), text(expected), "code {code}");
    }
    let plain = runtime()
        .mapper(&normalize, limits.clone(), "plain")
        .unwrap();
    let out = plain.map(&ctx("contacts"), &[record()]).await.unwrap();
    assert_eq!(
        phone(&out),
        text("0612345678"),
        "no setting: digits only, as before"
    );
    let err = runtime()
        .mapper_with_settings(&normalize, limits, "s", &settings("FR"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("default-country-code") && err.contains("expected an integer"),
        "{err}"
    );
}

/// A batch that runs out of fuel by its size alone is halved until its parts fit (the
/// demo's 800 Google contacts against a 50 M budget failed whole before): every record is
/// mapped as without the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_too_big_for_its_fuel_budget_is_mapped_in_parts() {
    use tandem::sync::Mappers;
    use tandem::sync::model::{Record as SyncRecord, Value as SyncValue};
    let new = plugin(NEW_SHAPE).await;
    let wit = contacts(64);
    let input: Vec<SyncRecord> = wit
        .iter()
        .map(|r| SyncRecord {
            id: r.id.clone(),
            version: r.version.clone(),
            updated_at: r.updated_at.clone(),
            fields: r
                .fields
                .iter()
                .map(|f| {
                    let v = match &f.value {
                        Value::Text(t) => SyncValue::Text(t.clone()),
                        Value::Texts(t) => SyncValue::Texts(t.clone()),
                        Value::Number(n) => SyncValue::Number(*n),
                        other => panic!("no such value in contacts(): {other:?}"),
                    };
                    (f.name.clone(), v)
                })
                .collect(),
        })
        .collect();
    let unlimited = MapperLimits {
        fuel: u64::MAX / 2,
        ..MapperLimits::default()
    };
    let client = runtime().mapper(&new, unlimited.clone(), "fit").unwrap();
    let (_, whole) = client.map_metered(&ctx("contacts"), &wit).await.unwrap();
    let (_, one) = client
        .map_metered(&ctx("contacts"), &wit[..1])
        .await
        .unwrap();
    let budget = whole / 4;
    assert!(one * 4 < budget, "one record {one}, the batch {whole}");
    let short = runtime()
        .mapper(
            &new,
            MapperLimits {
                fuel: budget,
                ..unlimited.clone()
            },
            "fit",
        )
        .unwrap();
    let err = short.map(&ctx("contacts"), &wit).await.unwrap_err();
    assert_eq!(trap(&err).0, TrapKind::OutOfFuel, "{err}");

    let sctx = tandem::sync::source::MapContext {
        sync: "s".into(),
        source: "a".into(),
        target: "b".into(),
        entity: "contacts".into(),
    };
    let expected = tandem::app::PluginMappers::new([("m".to_owned(), client)].into())
        .map("m", &sctx, input.clone())
        .await;
    let got = tandem::app::PluginMappers::new([("m".to_owned(), short)].into())
        .map("m", &sctx, input)
        .await;
    assert_eq!(got.len(), 64);
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        let (Ok(g), Ok(e)) = (g, e) else {
            panic!("record {i}: {g:?} / {e:?}")
        };
        assert_eq!(g, e, "record {i}");
    }
}
