//! Removes the connection's secrets from everything that reaches a plugin or leaves it.
//!
//! The host knows the exact bytes it injects into requests: the API key, the rendered
//! header value (`Token token=KEY`), the OAuth2 client secret, refresh token and every
//! access token it obtained (and `Bearer TOKEN`). An app that reflects request headers
//! (echo endpoints, `WWW-Authenticate` realms, error bodies quoting the request) would
//! hand them to the plugin, so every response header and body is scrubbed before the
//! plugin sees it. Plugin log lines, error strings and storage writes are scrubbed too,
//! as a second line of defence.
//!
//! Each secret is searched in its common spellings: as is, base64 (standard and URL-safe,
//! at any alignment inside a longer base64 text, e.g. `Basic` credentials), percent-
//! encoded (upper- and lower-case hex, `+` or `%20` for spaces), JSON-escaped (also with
//! `\/`), HTML-escaped and hex. Needles shorter than [`MIN_NEEDLE`] bytes are not searched:
//! they would mangle ordinary text, and no real credential is that short.

use std::sync::{Arc, RwLock};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::client::CallError;
use super::state::HostState;
use super::types;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Shortest spelling of a secret that is searched, in bytes.
pub const MIN_NEEDLE: usize = 6;

/// Access tokens remembered per connection (older ones have expired long ago).
const MAX_DYNAMIC: usize = 8;

/// The secrets of one connection and a matcher over all their spellings.
#[derive(Default)]
pub(crate) struct Scrubber {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    fixed: Vec<String>,
    dynamic: Vec<String>,
    matcher: Option<Arc<AhoCorasick>>,
}

impl Scrubber {
    /// A scrubber for `secrets` (API key, rendered header value, client secret...).
    pub(crate) fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let scrubber = Self::default();
        {
            let mut inner = scrubber.inner.write().unwrap_or_else(|e| e.into_inner());
            inner.fixed = secrets.into_iter().map(str::to_owned).collect();
            inner.rebuild();
        }
        scrubber
    }

    /// Adds a secret learnt later (an access token and its `Bearer` header value).
    pub(crate) fn add(&self, secrets: &[&str]) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        for s in secrets {
            inner.dynamic.retain(|d| d != s);
            inner.dynamic.push((*s).to_owned());
        }
        let excess = inner.dynamic.len().saturating_sub(MAX_DYNAMIC * 2);
        inner.dynamic.drain(..excess);
        inner.rebuild();
    }

    fn matcher(&self) -> Option<Arc<AhoCorasick>> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .matcher
            .clone()
    }

    /// `bytes` with every spelling of every secret replaced by [`REDACTED`].
    pub(crate) fn bytes(&self, bytes: Vec<u8>) -> Vec<u8> {
        match self.matcher() {
            Some(m) if m.is_match(&bytes) => {
                let replacements = vec![REDACTED.as_bytes(); m.patterns_len()];
                m.replace_all_bytes(&bytes, &replacements)
            }
            _ => bytes,
        }
    }

    /// `text` with every spelling of every secret replaced by [`REDACTED`].
    pub(crate) fn text(&self, text: String) -> String {
        match self.matcher() {
            Some(m) if m.is_match(&text) => {
                let replacements = vec![REDACTED; m.patterns_len()];
                m.replace_all(&text, &replacements)
            }
            _ => text,
        }
    }
}

impl Scrubber {
    /// A call's error with every plugin-originated string scrubbed.
    pub(crate) fn call_error(&self, err: CallError) -> CallError {
        match err {
            CallError::Plugin {
                plugin,
                export,
                error,
            } => CallError::Plugin {
                plugin,
                export,
                error: self.plugin_error(error),
            },
            CallError::Trap {
                plugin,
                export,
                kind,
                detail,
                stderr,
            } => CallError::Trap {
                plugin,
                export,
                kind,
                detail: self.text(detail),
                stderr: self.text(stderr),
            },
            CallError::Timeout {
                plugin,
                export,
                limit,
                stderr,
                http_wait,
            } => CallError::Timeout {
                plugin,
                export,
                limit,
                stderr: self.text(stderr),
                http_wait,
            },
            // Host-made text only: nothing of the plugin's to scrub.
            busy @ CallError::Busy { .. } => busy,
        }
    }

    /// A plugin's typed error with its message scrubbed.
    pub(crate) fn plugin_error(&self, error: types::Error) -> types::Error {
        super::text::map_message(error, |m| self.text(m))
    }
}

impl HostState {
    /// `text` without the connection's secrets (a mapper has none).
    pub(crate) fn scrubbed(&self, text: String) -> String {
        match &self.conn {
            Some(conn) => conn.http.scrubber().text(text),
            None => text,
        }
    }

    /// `bytes` without the connection's secrets (a mapper has none).
    pub(crate) fn scrubbed_bytes(&self, bytes: Vec<u8>) -> Vec<u8> {
        match &self.conn {
            Some(conn) => conn.http.scrubber().bytes(bytes),
            None => bytes,
        }
    }
}

impl Inner {
    fn rebuild(&mut self) {
        let mut needles: Vec<Vec<u8>> = Vec::new();
        for secret in self.fixed.iter().chain(&self.dynamic) {
            for n in spellings(secret.as_bytes()) {
                if n.len() >= MIN_NEEDLE && !needles.contains(&n) {
                    needles.push(n);
                }
            }
        }
        self.matcher = if needles.is_empty() {
            None
        } else {
            // Leftmost-longest: `Token token=KEY` is replaced whole, not just its key.
            // A contiguous NFA, not the DFA the builder picks for so few needles: every
            // connection of every run holds one, and for an API key's 17 spellings the
            // DFA takes 300 KB against 14 KB (a search is led by the same prefilter).
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .kind(Some(AhoCorasickKind::ContiguousNFA))
                .build(&needles)
                .ok()
                .map(Arc::new)
        };
    }
}

/// Every spelling of `secret` that is searched.
fn spellings(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![secret.to_vec()];
    out.extend(base64_cores(secret));
    out.push(percent(secret, true, false));
    out.push(percent(secret, false, false));
    out.push(percent(secret, true, true));
    out.push(
        url::form_urlencoded::byte_serialize(secret)
            .collect::<String>()
            .into_bytes(),
    );
    if let Ok(text) = std::str::from_utf8(secret) {
        let json = serde_json::to_string(text).unwrap_or_default();
        let json = json.trim_matches('"').to_owned();
        out.push(json.replace('/', "\\/").into_bytes());
        out.push(json.into_bytes());
        out.push(html_escape(text).into_bytes());
    }
    out.push(hex::encode(secret).into_bytes());
    out.push(hex::encode_upper(secret).into_bytes());
    out
}

/// The base64 characters that depend on `secret` alone, for each of the three byte
/// alignments it can have inside longer base64-encoded data, standard and URL-safe.
/// At alignment 0 the whole encoding (with padding) is included as well.
fn base64_cores(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![STANDARD.encode(secret).into_bytes()];
    for lead in 0..3usize {
        let mut data = vec![0u8; lead];
        data.extend_from_slice(secret);
        let encoded = URL_SAFE_NO_PAD.encode(&data);
        // Characters fully inside the secret's bits: from ceil(8*lead/6) to floor(8*len/6).
        let start = (8 * lead).div_ceil(6);
        let end = (8 * data.len()) / 6;
        if end <= start {
            continue;
        }
        let core = &encoded.as_bytes()[start..end];
        out.push(core.to_vec());
        out.push(
            core.iter()
                .map(|&c| match c {
                    b'-' => b'+',
                    b'_' => b'/',
                    c => c,
                })
                .collect(),
        );
    }
    out
}

/// Percent-encodes every byte but RFC 3986's unreserved ones.
fn percent(secret: &[u8], upper: bool, space_plus: bool) -> Vec<u8> {
    let mut out = String::new();
    for &b in secret {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' if space_plus => out.push('+'),
            _ if upper => out.push_str(&format!("%{b:02X}")),
            _ => out.push_str(&format!("%{b:02x}")),
        }
    }
    out.into_bytes()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "s3cr3t/Key+with spaces\"&=";

    fn scrubbed(s: &Scrubber, text: &str) -> String {
        s.text(text.to_owned())
    }

    #[test]
    fn every_spelling_is_redacted() {
        let s = Scrubber::new([KEY, "Token token=s3cr3t/Key+with spaces\"&="]);
        let basic = STANDARD.encode(format!("user:{KEY}"));
        let samples = [
            format!("echo: Token token={KEY}!"),
            format!("raw {KEY} raw"),
            format!("b64 {}", STANDARD.encode(KEY)),
            format!("b64url {}", URL_SAFE_NO_PAD.encode(KEY)),
            format!("Basic {basic}"),
            format!(
                "b64 of a longer text {}",
                STANDARD.encode(format!("ab{KEY}cd"))
            ),
            format!(
                "query ?k={}",
                url::form_urlencoded::byte_serialize(KEY.as_bytes()).collect::<String>()
            ),
            format!(
                "pct {}",
                String::from_utf8(percent(KEY.as_bytes(), false, false)).unwrap()
            ),
            format!("json {}", serde_json::to_string(KEY).unwrap()),
            format!(
                "json {}",
                serde_json::to_string(KEY).unwrap().replace('/', "\\/")
            ),
            format!("html <b>{}</b>", html_escape(KEY)),
            format!("hex {}", hex::encode(KEY)),
            format!("HEX {}", hex::encode_upper(KEY)),
        ];
        for sample in samples {
            let out = scrubbed(&s, &sample);
            assert!(out.contains(REDACTED), "not scrubbed: {sample} -> {out}");
            assert!(!out.contains("s3cr3t"), "{sample} -> {out}");
        }
        // The longest spelling wins: the whole header value goes, not just the key.
        assert_eq!(
            scrubbed(&s, &format!("<Token token={KEY}>")),
            "<[redacted]>"
        );
        assert_eq!(scrubbed(&s, "nothing secret here"), "nothing secret here");
        let bytes = s.bytes(format!("x{KEY}y").into_bytes());
        assert_eq!(bytes, b"x[redacted]y");
    }

    #[test]
    fn tokens_learnt_later_are_added_and_short_needles_ignored() {
        let s = Scrubber::new(["k"]);
        assert_eq!(scrubbed(&s, "ok k"), "ok k", "too short to search");
        s.add(&["ya29.access-token", "Bearer ya29.access-token"]);
        assert_eq!(
            scrubbed(&s, "got Bearer ya29.access-token back"),
            "got [redacted] back"
        );
        for i in 0..20 {
            s.add(&[format!("token-number-{i}").as_str()]);
        }
        assert_eq!(scrubbed(&s, "token-number-19"), REDACTED);
        assert_eq!(
            scrubbed(&s, "ya29.access-token"),
            "ya29.access-token",
            "old tokens are forgotten (bounded)"
        );
    }

    #[test]
    fn a_connections_matcher_stays_small() {
        // Every connection of every run holds one (docs/performance.md §1): the DFA the
        // builder would pick took 300 KB for an API key, the contiguous NFA 14 KB.
        let key = "Xq7vB2mN9pL4kR8sT1wY6zA";
        let s = Scrubber::new([key, &format!("Token token={key}")]);
        let m = s.matcher().expect("a matcher");
        assert!(m.patterns_len() > 10, "{}", m.patterns_len());
        assert!(m.memory_usage() < 64 * 1024, "{} bytes", m.memory_usage());
    }
}
