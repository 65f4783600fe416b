//! Requests per second of the simulated Freshsales (Suite) account on loopback, so that
//! end-to-end figures can tell whether the engine or the sandbox is the bottleneck.
//!
//! Real HTTP with reqwest against 127.0.0.1, 1000 seeded contacts, rate limits off.
//! `sequential/*`: one request per iteration (latency; rps = 1 / time).
//! `concurrent/*`: 32 requests in flight per iteration (throughput; rps = 32 / time).
//! Run: `cargo bench -p tandem-sandbox --bench freshworks`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use tandem_sandbox::{AccountKind, Credentials, Sandbox, SandboxOptions, Sizes};

const CONCURRENCY: usize = 32;

struct Bench {
    rt: tokio::runtime::Runtime,
    sandbox: Option<Sandbox>,
    api: String,
    key: String,
    view: u64,
    contact: u64,
    http: reqwest::Client,
}

fn setup() -> Bench {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (sandbox, api, key, view, contact) = rt.block_on(async {
        let options = SandboxOptions {
            sizes: Sizes {
                freshsales: 1000,
                ..Sizes::default()
            },
            rate_limits_enabled: false,
            kinds: vec![AccountKind::FreshsalesSuite],
            ..SandboxOptions::default()
        };
        let sandbox = Sandbox::start(options).await.expect("sandbox");
        let info = sandbox
            .account(AccountKind::FreshsalesSuite)
            .expect("suite")
            .clone();
        let Credentials::ApiKey { api_key, .. } = info.credentials else {
            panic!("api key account")
        };
        let http = reqwest::Client::new();
        let auth = format!("Token token={api_key}");
        let resp = http
            .get(format!("{}/contacts/filters", info.api_base))
            .header("authorization", &auth)
            .send()
            .await
            .expect("filters");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let filters: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("filters answered {status} {text:?}: {e}"));
        let view = filters["filters"][0]["id"].as_u64().expect("view id");
        let page: Value = http
            .get(format!("{}/contacts/view/{view}?per_page=1", info.api_base))
            .header("authorization", &auth)
            .send()
            .await
            .expect("page")
            .json()
            .await
            .expect("json");
        let contact = page["contacts"][0]["id"].as_u64().expect("contact id");
        (sandbox, info.api_base, auth, view, contact)
    });
    Bench {
        rt,
        sandbox: Some(sandbox),
        api,
        key,
        view,
        contact,
        http: reqwest::Client::new(),
    }
}

#[derive(Clone, Copy)]
enum Op {
    List,
    Show,
    Upsert,
}

async fn one(
    http: &reqwest::Client,
    api: &str,
    key: &str,
    view: u64,
    contact: u64,
    op: Op,
    n: usize,
) {
    let req = match op {
        Op::List => http.get(format!(
            "{api}/contacts/view/{view}?per_page=25&page={}",
            n % 40 + 1
        )),
        Op::Show => http.get(format!("{api}/contacts/{contact}")),
        Op::Upsert => http.post(format!("{api}/contacts/upsert")).json(&json!({
            "unique_identifier": {"emails": format!("bench{}@bench.example", n % 500)},
            "contact": {"first_name": "Bench", "last_name": format!("N{n}")}
        })),
    };
    let resp = req.header("authorization", key).send().await.expect("send");
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.bytes().await.expect("body");
}

fn bench(c: &mut Criterion) {
    let mut b = setup();
    let mut counter = 0usize;
    for (name, op) in [
        ("list", Op::List),
        ("show", Op::Show),
        ("upsert", Op::Upsert),
    ] {
        let mut g = c.benchmark_group("freshworks/sequential");
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |bench| {
            bench.iter(|| {
                counter += 1;
                b.rt.block_on(one(&b.http, &b.api, &b.key, b.view, b.contact, op, counter));
            })
        });
        g.finish();
        let mut g = c.benchmark_group("freshworks/concurrent");
        g.throughput(Throughput::Elements(CONCURRENCY as u64));
        g.bench_function(name, |bench| {
            bench.iter(|| {
                counter += CONCURRENCY;
                let base = counter;
                b.rt.block_on(async {
                    let futs = (0..CONCURRENCY)
                        .map(|i| one(&b.http, &b.api, &b.key, b.view, b.contact, op, base + i));
                    futures::future::join_all(futs).await;
                });
            })
        });
        g.finish();
    }
    if let Some(s) = b.sandbox.take() {
        b.rt.block_on(s.shutdown());
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
