//! Requests per second of the simulated Google People account on loopback, so end-to-end
//! figures can tell whether the engine or the sandbox is the bottleneck.
//!
//! Each benchmark sends real HTTP requests with reqwest to a server on 127.0.0.1 seeded with
//! 1000 contacts. `sequential/*` is one request per iteration (latency; rps = 1 / time);
//! `concurrent/*` is 32 requests in flight per iteration (throughput; rps = 32 / time).
//! Run: `cargo bench -p tandem-sandbox --bench google`.

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use tandem_sandbox::google;
use tandem_sandbox::{AccountKind, Sandbox, SandboxOptions, Sizes};

const CONCURRENCY: usize = 32;

struct Bench {
    rt: tokio::runtime::Runtime,
    sandbox: Option<Sandbox>,
    base: String,
    http: reqwest::Client,
    token: String,
}

fn setup() -> Bench {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (sandbox, base, http, token) = rt.block_on(async {
        let options = SandboxOptions {
            sizes: Sizes {
                google: 1000,
                ..Sizes::default()
            },
            rate_limits_enabled: false,
            kinds: vec![AccountKind::GooglePeople],
            ..SandboxOptions::default()
        };
        let sandbox = Sandbox::start(options).await.expect("sandbox");
        let base = sandbox
            .account(AccountKind::GooglePeople)
            .expect("google")
            .base_url
            .clone();
        let http = reqwest::Client::new();
        let body = format!(
            "grant_type=refresh_token&client_id={}&client_secret={}&refresh_token={}",
            google::CLIENT_ID,
            google::CLIENT_SECRET,
            google::REFRESH_TOKEN
        );
        let v: Value = http
            .post(format!("{base}/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("token json");
        let token = v["access_token"].as_str().expect("access token").to_owned();
        (sandbox, base, http, token)
    });
    Bench {
        rt,
        sandbox: Some(sandbox),
        base,
        http,
        token,
    }
}

impl Bench {
    async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("get");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.expect("json")
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> Value {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("send");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.expect("json")
    }
}

fn bench(c: &mut Criterion) {
    let mut b = setup();
    let fields = "metadata,names,emailAddresses,phoneNumbers,memberships,clientData";
    let first: Value = b.rt.block_on(b.get(&format!(
        "/v1/people/me/connections?personFields={fields}&pageSize=1"
    )));
    let rn = first["connections"][0]["resourceName"]
        .as_str()
        .expect("a contact")
        .to_owned();

    let mut g = c.benchmark_group("google/sequential");
    g.bench_function("get_person", |it| {
        it.iter(|| {
            b.rt.block_on(b.get(&format!("/v1/{rn}?personFields={fields}")))
        })
    });
    g.bench_function("list_page_100", |it| {
        it.iter(|| {
            b.rt.block_on(b.get(&format!(
                "/v1/people/me/connections?personFields={fields}&pageSize=100"
            )))
        })
    });
    g.bench_function("list_page_1000", |it| {
        it.iter(|| {
            b.rt.block_on(b.get(&format!(
                "/v1/people/me/connections?personFields={fields}&pageSize=1000"
            )))
        })
    });
    g.bench_function("create_contact", |it| {
        let body = json!({"names": [{"givenName": "Bench", "familyName": "Mark"}],
                          "emailAddresses": [{"value": "bench@example.com"}],
                          "clientData": [{"key": "tandem-uid", "value": "b"}]});
        it.iter(|| {
            b.rt.block_on(b.send(
                reqwest::Method::POST,
                "/v1/people:createContact?personFields=names",
                &body,
            ))
        })
    });
    g.bench_function("update_contact", |it| {
        let mut etag =
            b.rt.block_on(b.get(&format!("/v1/{rn}?personFields=names")))["etag"]
                .as_str()
                .expect("etag")
                .to_owned();
        it.iter(|| {
            let v = b.rt.block_on(b.send(
                reqwest::Method::PATCH,
                &format!("/v1/{rn}:updateContact?updatePersonFields=nicknames&personFields=names"),
                &json!({"etag": etag, "nicknames": [{"value": "n"}]}),
            ));
            etag = v["etag"].as_str().expect("etag").to_owned();
        })
    });
    g.finish();

    let mut g = c.benchmark_group("google/concurrent32");
    g.bench_function("get_person", |it| {
        it.iter(|| {
            b.rt.block_on(async {
                let path = format!("/v1/{rn}?personFields={fields}");
                futures::future::join_all((0..CONCURRENCY).map(|_| b.get(&path))).await
            })
        })
    });
    g.bench_function("list_page_100", |it| {
        it.iter(|| {
            b.rt.block_on(async {
                let path = format!("/v1/people/me/connections?personFields={fields}&pageSize=100");
                futures::future::join_all((0..CONCURRENCY).map(|_| b.get(&path))).await
            })
        })
    });
    g.finish();

    if let Some(s) = b.sandbox.take() {
        b.rt.block_on(s.shutdown());
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
