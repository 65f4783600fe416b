//! Opaque page and sync tokens.
//!
//! A token is base64url(JSON payload ‖ 8-byte keyed SHA-256 tag). The tag is keyed by a
//! per-account secret, so an edited or foreign token fails to decode and is answered as a
//! malformed token (400 INVALID_ARGUMENT), as Google answers one (docs/google-people-api.md §3.1).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

/// Where the next page of a listing starts, and what the listing was bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageCursor {
    /// Kind tag (`c` connections, `g` groups), so a group token is refused on people.
    pub k: char,
    /// Hash of every other request parameter (docs/google-people-api.md §3.1: they must match the first call).
    pub h: u64,
    /// Change-log position captured at the first page; the sync token issued at the last
    /// page starts here, so changes made while paging show up in the next delta.
    pub p: u64,
    /// Sort key of the last item served.
    pub s: String,
    /// Resource name of the last item served (tie breaker).
    pub r: String,
    /// Unix time (seconds) of the full sync this listing belongs to.
    pub o: i64,
}

/// A sync token: a change-log position plus what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCursor {
    /// Kind tag (`c` connections, `g` groups).
    pub k: char,
    /// Change-log position: changes with a higher sequence number are "after" the token.
    pub p: u64,
    /// Hash of the parameters the token is bound to.
    pub h: u64,
    /// Unix time (seconds) the token was issued.
    pub i: i64,
    /// Unix time (seconds) of the full sync the chain of tokens started from.
    pub o: i64,
    /// Token generation; the control API bumps the account's generation to expire all
    /// tokens issued before.
    pub g: u64,
}

/// Encode `payload` into an opaque token keyed by `secret`.
pub fn encode<T: Serialize>(payload: &T, secret: &[u8]) -> String {
    let mut bytes = serde_json::to_vec(payload).unwrap_or_default();
    let tag = tag(&bytes, secret);
    bytes.extend_from_slice(&tag);
    B64URL.encode(bytes)
}

/// Decode a token produced by [`encode`] with the same secret; `None` if malformed.
pub fn decode<T: DeserializeOwned>(token: &str, secret: &[u8]) -> Option<T> {
    let bytes = B64URL.decode(token.trim()).ok()?;
    if bytes.len() < 8 {
        return None;
    }
    let (payload, got) = bytes.split_at(bytes.len() - 8);
    if tag(payload, secret) != got {
        return None;
    }
    serde_json::from_slice(payload).ok()
}

fn tag(payload: &[u8], secret: &[u8]) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(secret);
    h.update(payload);
    let d = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

/// Stable 64-bit hash of a list of parameter strings.
pub fn param_hash(parts: &[&str]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().unwrap_or([0; 8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let c = SyncCursor {
            k: 'c',
            p: 7,
            h: 9,
            i: 100,
            o: 90,
            g: 0,
        };
        let t = encode(&c, b"secret");
        assert_eq!(decode::<SyncCursor>(&t, b"secret"), Some(c));
        assert_eq!(decode::<SyncCursor>(&t, b"other"), None);
        assert_eq!(decode::<SyncCursor>("not-a-token", b"secret"), None);
        let mut bytes = B64URL.decode(&t).unwrap();
        bytes[3] ^= 1;
        assert_eq!(decode::<SyncCursor>(&B64URL.encode(bytes), b"secret"), None);
        assert_ne!(param_hash(&["a", "bc"]), param_hash(&["ab", "c"]));
    }
}
