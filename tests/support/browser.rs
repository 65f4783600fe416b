//! A real browser for the console's tests: Debian's Chromium, headless, driven by
//! ChromeDriver over the W3C WebDriver HTTP protocol (a few endpoints, over reqwest).
//!
//! Missing Chromium or ChromeDriver is a failure, not a skip: `.ci/run` installs them
//! (`apt-get install chromium chromium-driver`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// The flags Chromium needs on a machine without network, GPU or a user session.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
];

/// How long a wait for the page lasts before the test fails.
const WAIT: Duration = Duration::from_secs(60);

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_binary(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// A headless Chromium with one WebDriver session; its ChromeDriver (and so the
/// browser) is killed, by its process group, when dropped.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts ChromeDriver on a free loopback port and opens a session with a fresh
    /// profile. Panics with one line saying how to install them when they are missing.
    pub async fn start() -> Browser {
        let (Some(chromium), Some(driver)) = (
            find_binary(
                "TANDEM_CHROMIUM",
                &["chromium", "chromium-browser", "google-chrome"],
            ),
            find_binary("TANDEM_CHROMEDRIVER", &["chromedriver"]),
        ) else {
            panic!(
                "the console tests need Chromium and ChromeDriver: run `apt-get install -y chromium chromium-driver` (.ci/run does), or set TANDEM_CHROMIUM and TANDEM_CHROMEDRIVER"
            );
        };
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().unwrap().port()
        };
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(&driver)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group: dropping the browser kills the driver and the
                // Chromium it started, even when the test panics.
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()))
        };
        let profile = tempfile::tempdir().expect("a profile directory");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            http,
            session: String::new(),
            driver: child,
            _profile: profile,
        };
        let ready = Instant::now();
        loop {
            if let Ok(r) = browser.http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                ready.elapsed() < Duration::from_secs(30),
                "ChromeDriver did not answer on {base}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut args: Vec<String> = FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!(
            "--user-data-dir={}",
            browser._profile.path().display()
        ));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let v = browser.call_at(&base, "POST", "/session", caps).await;
        browser.session = format!(
            "{base}/session/{}",
            v["sessionId"].as_str().expect("a session id")
        );
        browser
    }

    async fn call_at(&self, base: &str, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{base}{path}");
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body),
        };
        let resp = req.send().await.expect("ChromeDriver answers");
        let status = resp.status();
        let v: Value = resp.json().await.expect("WebDriver JSON");
        assert!(status.is_success(), "WebDriver {method} {path}: {v}");
        v["value"].clone()
    }

    async fn try_call(&self, method: &str, path: &str, body: Value) -> Result<Value, Value> {
        let url = format!("{}{path}", self.session);
        let req = match method {
            "GET" => self.http.get(&url),
            _ => self.http.post(&url).json(&body),
        };
        let resp = req.send().await.expect("ChromeDriver answers");
        let ok = resp.status().is_success();
        let v: Value = resp.json().await.expect("WebDriver JSON");
        if ok { Ok(v["value"].clone()) } else { Err(v) }
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        self.try_call(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url })).await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// The text of the first element matching `css`, if any.
    pub async fn text(&self, css: &str) -> Option<String> {
        let v = self
            .eval(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                json!([css]),
            )
            .await;
        v.as_str().map(str::to_string)
    }

    /// Waits until an element matches `css` and its text contains `needle`; returns the
    /// text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let t = self.text(css).await;
            if let Some(t) = &t
                && t.contains(needle)
            {
                return t.clone();
            }
            assert!(
                start.elapsed() < WAIT,
                "the page never showed {needle:?} in {css}: it shows {t:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until an element matches `css`.
    pub async fn wait_for(&self, css: &str) {
        self.wait_text(css, "").await;
    }

    /// Waits until no element matches `css`.
    pub async fn wait_gone(&self, css: &str) {
        let start = Instant::now();
        while self.text(css).await.is_some() {
            assert!(start.elapsed() < WAIT, "{css} is still on the page");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn element(&self, css: &str) -> Result<String, Value> {
        let v = self
            .try_call(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await?;
        Ok(v[ELEMENT]
            .as_str()
            .expect("an element reference")
            .to_string())
    }

    /// Clicks the element matching `css` once it is there (the console redraws a page
    /// when its data changes: a reference gone stale is looked up again).
    pub async fn click(&self, css: &str) {
        let start = Instant::now();
        loop {
            let result = match self.element(css).await {
                Ok(id) => {
                    self.try_call("POST", &format!("/element/{id}/click"), json!({}))
                        .await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(_) => return,
                Err(e) => assert!(start.elapsed() < WAIT, "cannot click {css}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Types `text` into the element matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.wait_for(css).await;
        let id = self
            .element(css)
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// The browser's cookies for the current page (HttpOnly ones included).
    pub async fn cookies(&self) -> Vec<Value> {
        self.call("GET", "/cookie", Value::Null)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Saves a PNG screenshot of the window to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let v = self.call("GET", "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64"))
            .expect("a PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// Ends the session (Chromium exits), then the driver.
    pub async fn quit(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        self.stop();
    }

    fn stop(&mut self) {
        let pid = self.driver.id() as libc::pid_t;
        // SAFETY: signals the process group this browser started (its own, by id).
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(None) = self.driver.try_wait() {
            self.stop();
        }
    }
}
