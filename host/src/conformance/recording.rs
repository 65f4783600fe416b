//! Recordings of a kit run (`tandem plugin test --record DIR` / `--replay DIR`): the HTTP
//! exchanges of every connection the kit opened, and its calls to a simulated account's
//! control API, saved so that the same checks run again without a server, in seconds.
//!
//! **Where it records.** At the host's `http` capability boundary
//! (`runtime::http::HttpTap`), not on the wire: each entry is what the plugin
//! sent (method, URL, body; never headers, which carry the host's credentials) and what
//! it got back after redirects, with credential headers dropped and secrets scrubbed,
//! including the kit's injected faults and a timeout as the plugin saw them. OAuth2 token
//! refreshes are the host's, not the plugin's: a replay needs no token, so they are not
//! replayed; only why the token endpoint refused a refresh token is kept, since it is
//! part of the `unauthorized` error the plugin returns.
//!
//! **What is saved.** A directory an author commits and reviews:
//!
//! * `recording.json`: format and kit versions, the tandem that recorded, when, the
//!   plugin's name, version and sha256, the target, the kit's nonce (it is in the e-mails
//!   and markers the kit writes, so a replay sends the same requests), the options, the
//!   kind of credentials (never their values), each connection's settings, the simulated
//!   account's control API, and the sha256 of each file below (a changed file is refused);
//! * `exchanges.json`: every request in order: connection, method, URL (path and query
//!   when on the connection's `base-url` origin), body, and the response (status,
//!   headers, body) or the error; JSON bodies are stored as JSON when that reproduces
//!   their bytes exactly, else as text or base64;
//! * `control.json`: the control API's answers the kit used (live record ids, entities);
//! * `report.json`: the recorded run's report, for review.
//!
//! Every credential of the target (API keys, passwords, OAuth2 client secret and refresh
//! token) is scrubbed from everything saved, in all the spellings the host's scrubber
//! knows (base64, percent-encoded, JSON-escaped...), and the host's own per-connection
//! scrubbing has already removed them and every access token from what the app answered.
//!
//! **Replay.** The kit runs the same checks with the recorded settings and nonce; each
//! plugin request is answered by the first unused entry with the same connection,
//! method, URL and body (in order, per key). A request the recording does not have fails
//! the check that made it, naming the request; nothing goes to the network.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use url::Url;

use crate::conformance::report::Report;
use crate::conformance::sandbox_api::Flavor;
use crate::runtime::bindings::http::{HttpError, Response};
use crate::runtime::http::{HttpTap, TapAnswer, TappedRequest};
use crate::runtime::scrub::Scrubber;
use crate::runtime::{Credentials, Plugin};

/// The recording format this tandem writes and reads.
pub const FORMAT: u32 = 1;

/// The version of the kit's sequence of checks. A recording made by another sequence
/// would not be asked the same requests; bump it when a check changes what it sends.
pub const KIT_VERSION: u32 = 1;

const MANIFEST: &str = "recording.json";
const EXCHANGES: &str = "exchanges.json";
const CONTROL: &str = "control.json";
const REPORT: &str = "report.json";
const DATA_FILES: [&str; 3] = [EXCHANGES, CONTROL, REPORT];

/// A recording that cannot be saved, read or used: the file and why, on one line.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct RecordingError {
    path: String,
    reason: String,
}

impl RecordingError {
    fn new(path: &Path, reason: impl Into<String>) -> Self {
        Self {
            path: path.display().to_string(),
            reason: reason.into().replace(['\n', '\r'], " "),
        }
    }
}

/// A body as saved: JSON when that gives back its exact bytes, else text, else base64.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum Body {
    Json(Ordered),
    Text(String),
    Base64(String),
}

/// A JSON value whose objects keep their keys in the order the app sent them (and any
/// duplicates), so that an app's compact answer is saved readable and comes back byte
/// for byte (`serde_json::Value` sorts keys).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ordered {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Ordered>),
    Object(Vec<(String, Ordered)>),
}

impl Serialize for Ordered {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Self::Null => s.serialize_unit(),
            Self::Bool(b) => s.serialize_bool(*b),
            Self::Number(n) => n.serialize(s),
            Self::String(t) => s.serialize_str(t),
            Self::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Self::Object(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Null)
            }
            fn visit_none<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Ordered, E> {
                Ok(Ordered::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Ordered, E> {
                Ok(Ordered::Number(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Ordered, E> {
                Ok(Ordered::Number(n.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Ordered, E> {
                serde_json::Number::from_f64(n)
                    .map(Ordered::Number)
                    .ok_or_else(|| E::custom("not a JSON number"))
            }
            fn visit_str<E>(self, t: &str) -> Result<Ordered, E> {
                Ok(Ordered::String(t.to_owned()))
            }
            fn visit_string<E>(self, t: String) -> Result<Ordered, E> {
                Ok(Ordered::String(t))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Ordered, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Ordered::Array(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Ordered, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Ordered::Object(entries))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Body {
    fn of(bytes: &[u8]) -> Self {
        if let Ok(json) = serde_json::from_slice::<Ordered>(bytes)
            && serde_json::to_vec(&json).is_ok_and(|again| again == bytes)
        {
            return Self::Json(json);
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Self::Text(text.to_owned()),
            Err(_) => Self::Base64(STANDARD.encode(bytes)),
        }
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        match self {
            Self::Json(json) => serde_json::to_vec(json).map_err(|e| e.to_string()),
            Self::Text(text) => Ok(text.as_bytes().to_vec()),
            Self::Base64(b64) => STANDARD
                .decode(b64)
                .map_err(|e| format!("a base64 body is not base64: {e}")),
        }
    }
}

/// An HTTP error as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
enum SavedError {
    Denied(String),
    InvalidRequest(String),
    Timeout,
    TooLarge(u64),
    Transport(String),
}

impl SavedError {
    fn of(error: &HttpError, scrub: &Scrubber) -> Self {
        match error {
            HttpError::Denied(m) => Self::Denied(scrub.text(m.clone())),
            HttpError::InvalidRequest(m) => Self::InvalidRequest(scrub.text(m.clone())),
            HttpError::Timeout => Self::Timeout,
            HttpError::TooLarge(n) => Self::TooLarge(*n),
            HttpError::Transport(m) => Self::Transport(scrub.text(m.clone())),
        }
    }

    fn error(&self) -> HttpError {
        match self {
            Self::Denied(m) => HttpError::Denied(m.clone()),
            Self::InvalidRequest(m) => HttpError::InvalidRequest(m.clone()),
            Self::Timeout => HttpError::Timeout,
            Self::TooLarge(n) => HttpError::TooLarge(*n),
            Self::Transport(m) => HttpError::Transport(m.clone()),
        }
    }
}

/// A response as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct SavedResponse {
    status: u16,
    /// `name: value`, one line each, in order.
    headers: Vec<String>,
    body: Body,
}

impl SavedResponse {
    fn headers(&self) -> Result<Vec<(String, String)>, String> {
        self.headers
            .iter()
            .map(|line| match line.split_once(':') {
                Some((name, value)) if !name.is_empty() => Ok((
                    name.to_owned(),
                    value.strip_prefix(' ').unwrap_or(value).to_owned(),
                )),
                _ => Err(format!("the header `{line}` is not `name: value`")),
            })
            .collect()
    }
}

/// One request of the plugin and what it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Exchange {
    connection: String,
    method: String,
    /// Path and query on the connection's `base-url` origin, else the absolute URL.
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<Body>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response: Option<SavedResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<SavedError>,
    /// Why the OAuth2 token endpoint had refused the refresh token, at that point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oauth2_refused: Option<String>,
}

/// One control-API call of the kit and its (already digested) answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct ControlCall {
    call: String,
    #[serde(default)]
    answer: Json,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The plugin that was recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RecordedPlugin {
    /// Its manifest's name.
    pub name: String,
    /// Its manifest's version.
    pub version: String,
    /// Hex sha256 of its `.wasm`.
    pub sha256: String,
}

/// The kind of credentials the kit used (never their values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) enum RecordedCredentials {
    None,
    ApiKey,
    /// Not even the user: some apps take the key as the user name.
    Basic,
    #[serde(rename = "oauth2")]
    OAuth2 {
        #[serde(default, rename = "token-url", skip_serializing_if = "Option::is_none")]
        token_url: Option<String>,
    },
}

/// Stand-in secret of a replay: no request leaves the host, so none is needed.
const REPLAY_SECRET: &str = "tandem-replay-has-no-credentials";

impl RecordedCredentials {
    fn of(credentials: &Credentials, scrub: &Scrubber) -> Self {
        match credentials {
            Credentials::None => Self::None,
            Credentials::ApiKey(_) => Self::ApiKey,
            Credentials::Basic { .. } => Self::Basic,
            Credentials::OAuth2 { token_url, .. } => Self::OAuth2 {
                token_url: token_url.clone().map(|u| scrub.text(u)),
            },
        }
    }

    /// Credentials of the same kind, with stand-in secrets.
    pub(crate) fn stand_in(&self) -> Credentials {
        let secret = || crate::runtime::Secret::new(REPLAY_SECRET);
        match self {
            Self::None => Credentials::None,
            Self::ApiKey => Credentials::ApiKey(secret()),
            Self::Basic => Credentials::Basic {
                user: Some("tandem-replay".to_owned()),
                password: secret(),
            },
            Self::OAuth2 { token_url } => Credentials::OAuth2 {
                client_id: "tandem-replay".to_owned(),
                client_secret: secret(),
                refresh_token: secret(),
                token_url: token_url.clone(),
            },
        }
    }
}

/// A connection the kit opened: what the plugin was given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct RecordedConnection {
    pub(crate) settings: BTreeMap<String, String>,
    pub(crate) allow_loopback: bool,
    pub(crate) allow_private: bool,
}

/// The simulated account's control API, as the kit saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct RecordedControl {
    pub(crate) flavor: SavedFlavor,
    pub(crate) kind: String,
    pub(crate) api_prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SavedFlavor {
    Freshworks,
    Google,
}

impl From<Flavor> for SavedFlavor {
    fn from(f: Flavor) -> Self {
        match f {
            Flavor::Freshworks => Self::Freshworks,
            Flavor::Google => Self::Google,
        }
    }
}

impl From<SavedFlavor> for Flavor {
    fn from(f: SavedFlavor) -> Self {
        match f {
            SavedFlavor::Freshworks => Self::Freshworks,
            SavedFlavor::Google => Self::Google,
        }
    }
}

/// `recording.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Manifest {
    format: u32,
    kit: u32,
    tandem: String,
    recorded_at: String,
    plugin: RecordedPlugin,
    target: String,
    nonce: String,
    entities: Vec<String>,
    creates: usize,
    credentials: RecordedCredentials,
    restricted_credentials: bool,
    connections: BTreeMap<String, RecordedConnection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    control: Option<RecordedControl>,
    /// sha256 of each data file.
    files: BTreeMap<String, String>,
}

/// A kit run, recorded: saved to and loaded from a directory.
#[derive(Debug, Clone)]
pub struct Recording {
    manifest: Manifest,
    exchanges: Vec<Exchange>,
    control: Vec<ControlCall>,
    report: Json,
    /// Where it was loaded from (for the replay's report).
    dir: Option<PathBuf>,
}

impl Recording {
    /// The plugin that was recorded.
    pub fn plugin(&self) -> &RecordedPlugin {
        &self.manifest.plugin
    }

    /// What the recorded run was against.
    pub fn target(&self) -> &str {
        &self.manifest.target
    }

    /// When it was recorded (RFC 3339).
    pub fn recorded_at(&self) -> &str {
        &self.manifest.recorded_at
    }

    /// How many HTTP exchanges it holds.
    pub fn exchanges(&self) -> usize {
        self.exchanges.len()
    }

    /// The recorded run's report, as JSON.
    pub fn report(&self) -> &Json {
        &self.report
    }

    pub(crate) fn entities(&self) -> &[String] {
        &self.manifest.entities
    }

    pub(crate) fn creates(&self) -> usize {
        self.manifest.creates
    }

    pub(crate) fn credentials(&self) -> &RecordedCredentials {
        &self.manifest.credentials
    }

    pub(crate) fn restricted_credentials(&self) -> bool {
        self.manifest.restricted_credentials
    }

    pub(crate) fn connection(&self, id: &str) -> Option<&RecordedConnection> {
        self.manifest.connections.get(id)
    }

    pub(crate) fn control(&self) -> Option<&RecordedControl> {
        self.manifest.control.as_ref()
    }

    /// How a replay names its target: the directory and what was recorded.
    pub(crate) fn label(&self) -> String {
        match &self.dir {
            Some(dir) => format!("recording {} of {}", dir.display(), self.manifest.target),
            None => format!("recording of {}", self.manifest.target),
        }
    }

    /// Writes the recording into `dir` (created if missing). A directory that holds
    /// something else than a recording is refused, so that nothing is overwritten by
    /// mistake; an earlier recording there is replaced.
    pub fn save(&self, dir: &Path) -> Result<(), RecordingError> {
        if dir.exists() {
            let mut entries = std::fs::read_dir(dir)
                .map_err(|e| RecordingError::new(dir, format!("cannot read: {e}")))?;
            if entries.next().is_some() && !dir.join(MANIFEST).exists() {
                return Err(RecordingError::new(
                    dir,
                    "the directory is not empty and holds no recording: name a new or empty directory",
                ));
            }
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| RecordingError::new(dir, format!("cannot create: {e}")))?;
        let data = [
            (EXCHANGES, pretty(&self.exchanges)),
            (CONTROL, pretty(&self.control)),
            (REPORT, pretty(&self.report)),
        ];
        let mut manifest = self.manifest.clone();
        manifest.files = data
            .iter()
            .map(|(name, text)| ((*name).to_owned(), sha256(text.as_bytes())))
            .collect();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .map_err(|e| RecordingError::new(&path, format!("cannot write: {e}")))
        };
        for (name, text) in &data {
            write(name, text)?;
        }
        // The digests are of the bytes written: git must not change line endings.
        write(".gitattributes", "* -text\n")?;
        write(MANIFEST, &pretty(&manifest))
    }

    /// Reads the recording in `dir`; refuses one of another format or kit version, or
    /// whose files changed since they were recorded.
    pub fn load(dir: &Path) -> Result<Self, RecordingError> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            RecordingError::new(
                &path,
                format!("cannot read ({e}): is this a directory written by `tandem plugin test --record`?"),
            )
        })?;
        let raw: Json = parse(&path, &text)?;
        match raw.get("format").and_then(Json::as_u64) {
            Some(f) if f == u64::from(FORMAT) => {}
            Some(f) => {
                return Err(RecordingError::new(
                    &path,
                    format!(
                        "recording format {f} is not supported (this tandem reads format {FORMAT}): record again with `tandem plugin test --record`"
                    ),
                ));
            }
            None => {
                return Err(RecordingError::new(
                    &path,
                    "not a recording: it has no `format` number",
                ));
            }
        }
        let manifest: Manifest = parse(&path, &text)?;
        if manifest.kit != KIT_VERSION {
            return Err(RecordingError::new(
                &path,
                format!(
                    "recorded by version {} of the conformance kit's checks, this tandem runs version {KIT_VERSION}: record again with `tandem plugin test --record`",
                    manifest.kit
                ),
            ));
        }
        let mut texts = BTreeMap::new();
        for name in DATA_FILES {
            let file = dir.join(name);
            let text = std::fs::read_to_string(&file)
                .map_err(|e| RecordingError::new(&file, format!("cannot read: {e}")))?;
            if manifest.files.get(name) != Some(&sha256(text.as_bytes())) {
                return Err(RecordingError::new(
                    &file,
                    format!(
                        "changed since it was recorded (its sha256 is not the one {MANIFEST} lists): record again with `tandem plugin test --record` rather than editing a recording"
                    ),
                ));
            }
            texts.insert(name, (file, text));
        }
        let (file, text) = &texts[EXCHANGES];
        let exchanges: Vec<Exchange> = parse(file, text)?;
        for (i, e) in exchanges.iter().enumerate() {
            let problem = match (&e.response, &e.error) {
                (Some(_), Some(_)) => Some("has both a response and an error"),
                (None, None) => Some("has neither a response nor an error"),
                _ => None,
            };
            let problem = problem.map(str::to_owned).or_else(|| {
                let body = e.body.as_ref().map(Body::bytes).transpose().err();
                let response = e
                    .response
                    .as_ref()
                    .and_then(|r| r.body.bytes().err().or_else(|| r.headers().err()));
                body.or(response)
            });
            if let Some(problem) = problem {
                return Err(RecordingError::new(
                    file,
                    format!("exchange {} ({} {}): {problem}", i + 1, e.method, e.url),
                ));
            }
        }
        let (file, text) = &texts[CONTROL];
        let control: Vec<ControlCall> = parse(file, text)?;
        let (file, text) = &texts[REPORT];
        let report: Json = parse(file, text)?;
        Ok(Self {
            manifest,
            exchanges,
            control,
            report,
            dir: Some(dir.to_owned()),
        })
    }
}

/// Pretty JSON with a final newline, as saved.
fn pretty<T: Serialize>(value: &T) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, RecordingError> {
    serde_json::from_str(text).map_err(|e| {
        RecordingError::new(
            path,
            format!("line {} column {}: {e}", e.line(), e.column())
                .replace(&format!(" at line {} column {}", e.line(), e.column()), ""),
        )
    })
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every spelling of the target's credentials the recording must not hold: the secrets,
/// and for HTTP Basic the `user:password` pair (its base64 is searched by the scrubber).
fn secrets(credentials: &[&Credentials]) -> Vec<String> {
    let mut out = Vec::new();
    for c in credentials {
        match c {
            Credentials::None => {}
            Credentials::ApiKey(key) => out.push(key.expose().to_owned()),
            Credentials::Basic { user, password } => {
                out.push(password.expose().to_owned());
                if let Some(user) = user {
                    out.push(format!("{user}:{}", password.expose()));
                }
            }
            Credentials::OAuth2 {
                client_secret,
                refresh_token,
                ..
            } => {
                out.push(client_secret.expose().to_owned());
                out.push(refresh_token.expose().to_owned());
            }
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// What the kit's run records or replays: shared by the kit, every connection it opens
/// and the control API.
pub(crate) struct Tape {
    replay: bool,
    /// Every credential of the target (recording only).
    scrub: Scrubber,
    state: Mutex<State>,
}

impl std::fmt::Debug for Tape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tape")
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    nonce: Option<String>,
    exchanges: Vec<Entry>,
    control: Vec<(ControlCall, bool)>,
    connections: BTreeMap<String, RecordedConnection>,
    /// Requests of the plugin the recording does not have, not yet reported.
    misses: Vec<String>,
    /// Requests seen, answered or sent.
    requests: u64,
}

struct Entry {
    exchange: Exchange,
    /// The request body's bytes.
    body: Option<Vec<u8>>,
    used: bool,
}

/// The tap of one connection: the tape, the connection's id and its `base-url`.
struct ConnectionTap {
    tape: Arc<Tape>,
    connection: String,
    base: Option<Url>,
}

impl Tape {
    /// A tape that records, scrubbing `credentials` from everything it keeps.
    pub(crate) fn recorder(credentials: &[&Credentials]) -> Arc<Self> {
        let secrets = secrets(credentials);
        Arc::new(Self {
            replay: false,
            scrub: Scrubber::new(secrets.iter().map(String::as_str)),
            state: Mutex::default(),
        })
    }

    /// A tape that answers from `recording`.
    pub(crate) fn player(recording: &Recording) -> Arc<Self> {
        let exchanges = recording
            .exchanges
            .iter()
            .map(|e| Entry {
                exchange: e.clone(),
                // Checked when loaded.
                body: e.body.as_ref().and_then(|b| b.bytes().ok()),
                used: false,
            })
            .collect();
        Arc::new(Self {
            replay: true,
            scrub: Scrubber::default(),
            state: Mutex::new(State {
                nonce: Some(recording.manifest.nonce.clone()),
                exchanges,
                control: recording
                    .control
                    .iter()
                    .map(|c| (c.clone(), false))
                    .collect(),
                connections: recording.manifest.connections.clone(),
                ..State::default()
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this is a replay.
    pub(crate) fn replaying(&self) -> bool {
        self.replay
    }

    /// The kit's nonce: `fresh` when recording (kept), the recorded one when replaying.
    pub(crate) fn nonce(&self, fresh: String) -> String {
        self.state().nonce.get_or_insert(fresh).clone()
    }

    /// What connection `id` is given: when recording, `given` (kept); when replaying,
    /// what the recorded one was given (the fault proxy's base URL, say), else `given`.
    pub(crate) fn connection(&self, id: &str, given: RecordedConnection) -> RecordedConnection {
        let mut state = self.state();
        if self.replay {
            return state.connections.get(id).cloned().unwrap_or(given);
        }
        let kept = RecordedConnection {
            settings: given
                .settings
                .iter()
                .map(|(k, v)| (k.clone(), self.scrub.text(v.clone())))
                .collect(),
            ..given.clone()
        };
        state.connections.insert(id.to_owned(), kept);
        given
    }

    /// The tap for connection `id` with these settings.
    pub(crate) fn tap(
        self: &Arc<Self>,
        id: &str,
        settings: &BTreeMap<String, String>,
    ) -> Arc<dyn HttpTap> {
        Arc::new(ConnectionTap {
            tape: self.clone(),
            connection: id.to_owned(),
            base: settings.get("base-url").and_then(|u| Url::parse(u).ok()),
        })
    }

    /// Requests seen so far (the fault checks' counterpart of the proxy's count).
    pub(crate) fn requests(&self) -> u64 {
        self.state().requests
    }

    /// The requests the recording did not have since the last call, as one line.
    pub(crate) fn take_misses(&self) -> Option<String> {
        let misses = std::mem::take(&mut self.state().misses);
        match misses.len() {
            0 => None,
            1 => Some(misses.into_iter().next().unwrap_or_default()),
            n => Some(format!(
                "{} (and {} more request{} the recording does not have)",
                misses[0],
                n - 1,
                if n == 2 { "" } else { "s" }
            )),
        }
    }

    /// The recorded exchanges a replay never asked for, one line each.
    pub(crate) fn unused(&self) -> Vec<String> {
        let state = self.state();
        let http = state
            .exchanges
            .iter()
            .filter(|e| !e.used)
            .map(|e| describe(&e.exchange));
        let control = state
            .control
            .iter()
            .filter(|(_, used)| !used)
            .map(|(c, _)| format!("control API: {}", c.call));
        http.chain(control).collect()
    }

    /// The control call `call`'s recorded answer (replaying), or `None` (recording).
    pub(crate) fn control_answer(&self, call: &str) -> Option<Result<Json, String>> {
        if !self.replay {
            return None;
        }
        let mut state = self.state();
        let found = state
            .control
            .iter_mut()
            .find(|(c, used)| !used && c.call == call);
        Some(match found {
            Some((c, used)) => {
                *used = true;
                match &c.error {
                    Some(e) => Err(e.clone()),
                    None => Ok(c.answer.clone()),
                }
            }
            None => {
                let miss = format!(
                    "replay: the kit asked the simulated account's control API for `{call}`, which the recording does not have: record again with `tandem plugin test --record`"
                );
                state.misses.push(miss.clone());
                Err(miss)
            }
        })
    }

    /// Keeps a control call's answer (recording).
    pub(crate) fn control_record(&self, call: &str, outcome: Result<Json, String>) {
        let (answer, error) = match outcome {
            Ok(answer) => (self.scrub_json(answer), None),
            Err(e) => (Json::Null, Some(self.scrub.text(e))),
        };
        let call = ControlCall {
            call: call.to_owned(),
            answer,
            error,
        };
        self.state().control.push((call, false));
    }

    fn scrub_json(&self, value: Json) -> Json {
        let text = value.to_string();
        let clean = self.scrub.text(text.clone());
        if clean == text {
            value
        } else {
            serde_json::from_str(&clean).unwrap_or(Json::String(clean))
        }
    }

    /// The recording of this run (recording only), with its report.
    pub(crate) fn recording(
        &self,
        plugin: &Plugin,
        target: &super::Target,
        options: &super::KitOptions,
        report: &Report,
    ) -> Recording {
        let state = self.state();
        let manifest = plugin.manifest();
        let recorded_at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Recording {
            manifest: Manifest {
                format: FORMAT,
                kit: KIT_VERSION,
                tandem: env!("CARGO_PKG_VERSION").to_owned(),
                recorded_at,
                plugin: RecordedPlugin {
                    name: manifest.name.to_string(),
                    version: manifest.version.to_string(),
                    sha256: plugin.sha256_hex(),
                },
                target: self.scrub.text(target.label.clone()),
                nonce: state.nonce.clone().unwrap_or_default(),
                entities: options.entities.clone(),
                creates: options.creates,
                credentials: RecordedCredentials::of(&target.credentials, &self.scrub),
                restricted_credentials: target.restricted_credentials.is_some(),
                connections: state.connections.clone(),
                control: target.control.as_ref().map(super::SandboxControl::recorded),
                files: BTreeMap::new(),
            },
            exchanges: state.exchanges.iter().map(|e| e.exchange.clone()).collect(),
            control: state.control.iter().map(|(c, _)| c.clone()).collect(),
            report: self.scrub_json(serde_json::to_value(report).unwrap_or_default()),
            dir: None,
        }
    }
}

/// `GET /contacts?limit=3 on connection conformance` (with the body's size and start).
fn describe(e: &Exchange) -> String {
    let body = match &e.body {
        None => String::new(),
        Some(b) => {
            let bytes = b.bytes().unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            let mut start: String = text.chars().filter(|c| !c.is_control()).take(80).collect();
            if text.chars().count() > 80 {
                start.push('…');
            }
            format!(" with a {}-byte body `{start}`", bytes.len())
        }
    };
    format!(
        "`{} {}`{body} on connection {}",
        e.method, e.url, e.connection
    )
}

impl ConnectionTap {
    /// The request as saved (unscrubbed: a replay matches what the plugin sends).
    fn exchange(&self, request: &TappedRequest<'_>) -> Exchange {
        let url = request.url;
        let relative = self
            .base
            .as_ref()
            .filter(|b| b.origin() == url.origin())
            .map(|_| url[url::Position::BeforePath..url::Position::AfterQuery].to_owned());
        Exchange {
            connection: self.connection.clone(),
            method: request.method.to_owned(),
            url: relative.unwrap_or_else(|| url.as_str().to_owned()),
            body: request.body.map(Body::of),
            response: None,
            error: None,
            oauth2_refused: None,
        }
    }
}

impl HttpTap for ConnectionTap {
    fn answer(&self, request: &TappedRequest<'_>) -> Option<TapAnswer> {
        let tape = &self.tape;
        if !tape.replay {
            return None;
        }
        let wanted = self.exchange(request);
        let body = request.body.map(<[u8]>::to_vec);
        let mut state = tape.state();
        state.requests += 1;
        let found = state.exchanges.iter_mut().find(|e| {
            !e.used
                && e.exchange.connection == wanted.connection
                && e.exchange.method == wanted.method
                && e.exchange.url == wanted.url
                && e.body == body
        });
        if let Some(entry) = found {
            entry.used = true;
            let e = &entry.exchange;
            let outcome = match (&e.response, &e.error) {
                (Some(r), _) => Ok(Response {
                    status: r.status,
                    // Checked when loaded.
                    headers: r.headers().unwrap_or_default(),
                    body: r.body.bytes().unwrap_or_default(),
                }),
                (None, Some(err)) => Err(err.error()),
                // Refused when loaded.
                (None, None) => Err(HttpError::Transport("no recorded answer".into())),
            };
            return Some(TapAnswer {
                outcome,
                oauth_refused: e.oauth2_refused.clone(),
            });
        }
        let next = state
            .exchanges
            .iter()
            .find(|e| !e.used && e.exchange.connection == wanted.connection)
            .map_or_else(
                || " (none is left on this connection)".to_owned(),
                |e| {
                    format!(
                        " (the next one recorded on it is {})",
                        describe(&e.exchange)
                    )
                },
            );
        state.misses.push(format!(
            "replay: the plugin sent {}, which the recording does not have{next}: the plugin or the kit changed since it was recorded; record again with `tandem plugin test --record`",
            describe(&wanted)
        ));
        Some(TapAnswer {
            outcome: Err(HttpError::Transport(
                "the recording has no answer to this request (tandem plugin test --replay)".into(),
            )),
            oauth_refused: None,
        })
    }

    fn record(
        &self,
        request: &TappedRequest<'_>,
        outcome: &Result<Response, HttpError>,
        oauth_refused: Option<&str>,
    ) {
        let tape = &self.tape;
        let scrub = &tape.scrub;
        let mut exchange = self.exchange(request);
        exchange.url = scrub.text(exchange.url);
        exchange.body = request.body.map(|b| Body::of(&scrub.bytes(b.to_vec())));
        match outcome {
            Ok(r) => {
                exchange.response = Some(SavedResponse {
                    status: r.status,
                    headers: r
                        .headers
                        .iter()
                        .map(|(k, v)| format!("{k}: {}", scrub.text(v.clone())))
                        .collect(),
                    body: Body::of(&scrub.bytes(r.body.clone())),
                });
            }
            Err(e) => exchange.error = Some(SavedError::of(e, scrub)),
        }
        exchange.oauth2_refused = oauth_refused.map(|r| scrub.text(r.to_owned()));
        let body = exchange.body.as_ref().and_then(|b| b.bytes().ok());
        let mut state = tape.state();
        state.requests += 1;
        state.exchanges.push(Entry {
            exchange,
            body,
            used: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_exactly() {
        for bytes in [
            br#"{"a":1,"b":[true,null,"x"]}"#.to_vec(),
            // Keys in the app's order, duplicates, numbers of every kind.
            br#"{"b":1,"a":2,"a":[-3,4.5,1e-7,18446744073709551615]}"#.to_vec(),
            // Spaces, escapes serde_json would not write, a truncated document: text.
            br#"{"a":"\/"}"#.to_vec(),
            b"{ \"a\": 1 }".to_vec(),
            br#"{"contacts":[{"id":1"#.to_vec(),
            b"".to_vec(),
            vec![0xff, 0x00, 0x10],
        ] {
            let body = Body::of(&bytes);
            let saved = serde_json::to_string(&body).unwrap();
            let back: Body = serde_json::from_str(&saved).unwrap();
            assert_eq!(back.bytes().unwrap(), bytes, "{saved}");
        }
        assert!(matches!(Body::of(br#"{"a":1}"#), Body::Json(_)));
        assert!(matches!(Body::of(br#"{"b":1,"a":2}"#), Body::Json(_)));
        assert!(matches!(Body::of(b"{ \"a\": 1 }"), Body::Text(_)));
        assert!(matches!(Body::of(&[0xff]), Body::Base64(_)));
    }

    #[test]
    fn secrets_cover_every_credential_kind() {
        use crate::runtime::Secret;
        let key = Credentials::ApiKey(Secret::new("key-123456"));
        let basic = Credentials::Basic {
            user: Some("ann".into()),
            password: Secret::new("pass-123456"),
        };
        let oauth = Credentials::OAuth2 {
            client_id: "c".into(),
            client_secret: Secret::new("client-secret-1"),
            refresh_token: Secret::new("refresh-token-1"),
            token_url: None,
        };
        assert_eq!(
            secrets(&[&key, &basic, &oauth, &Credentials::None]),
            vec![
                "key-123456",
                "pass-123456",
                "ann:pass-123456",
                "client-secret-1",
                "refresh-token-1"
            ]
        );
        // Not even the user name is kept (some apps take the key as the user).
        let kept = RecordedCredentials::of(&basic, &Scrubber::default());
        assert_eq!(serde_json::to_string(&kept).unwrap(), r#"{"kind":"basic"}"#);
        assert!(matches!(
            kept.stand_in(),
            Credentials::Basic { user: Some(_), .. }
        ));
        let tape = Tape::recorder(&[&basic]);
        let token = STANDARD.encode("ann:pass-123456");
        assert_eq!(
            tape.scrub.text(format!("Basic {token} and pass-123456")),
            "Basic [redacted] and [redacted]"
        );
    }
}
