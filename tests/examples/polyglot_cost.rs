//! What a connector costs by the language it is written in: the template in Rust,
//! TypeScript (componentize-js) and Python (componentize-py). For each: the component's
//! size, the compile on load (once per file and host version: the compile cache keeps it),
//! the first call (a fresh instance from the pre-instantiated component + `describe`), and
//! the warm per-call cost (the same, repeated: every call still gets a fresh instance, its
//! memory reset to the component's pre-initialised image).
//!
//! A measurement, not a test: `cargo run -p tandem-tests --example polyglot-cost`
//! (docs/performance.md quotes one run). Builds the TypeScript and Python templates as the
//! tests do (`tandem_tests::polyglot`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem::runtime::{Grant, PluginSource, Runtime, RuntimeOptions};
use tandem_tests::host::connection;
use tandem_tests::polyglot;

const WARM_CALLS: usize = 200;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let dir = tempfile::tempdir().expect("temp dir");
    let db = redb::Database::create(dir.path().join("cost.redb")).expect("redb");
    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: Some(dir.path().join("cache")),
        ..RuntimeOptions::new(Arc::new(db))
    })
    .expect("runtime");
    let plugins: [(&str, PathBuf); 3] = [
        (
            "Rust",
            tandem_plugins::wasm_path("tandem-plugin-template").expect("Rust template built"),
        ),
        ("TypeScript", polyglot::template_ts()),
        ("Python", polyglot::template_py()),
    ];
    println!(
        "{:<11} {:>10} {:>12} {:>12} {:>12} {:>12}",
        "language", "size", "compile", "first call", "warm median", "warm p90"
    );
    for (language, path) in plugins {
        let size = std::fs::metadata(&path).expect("component").len();
        let start = Instant::now();
        let plugin = rt
            .block_on(runtime.load(PluginSource::Path(path.clone()), None))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let compile = start.elapsed();
        let conn = connection(
            language,
            &[("base-url", "http://127.0.0.1:1")],
            Grant::default(),
        );
        let client = runtime.connector(&plugin, conn).expect("client");
        let start = Instant::now();
        rt.block_on(client.describe()).expect("describe");
        let first = start.elapsed();
        let mut warm: Vec<Duration> = (0..WARM_CALLS)
            .map(|_| {
                let start = Instant::now();
                rt.block_on(client.describe()).expect("describe");
                start.elapsed()
            })
            .collect();
        warm.sort();
        println!(
            "{:<11} {:>8.2} MiB {:>12.1?} {:>12.1?} {:>12.1?} {:>12.1?}",
            language,
            size as f64 / (1024.0 * 1024.0),
            compile,
            first,
            warm[WARM_CALLS / 2],
            warm[WARM_CALLS * 9 / 10],
        );
    }
}
