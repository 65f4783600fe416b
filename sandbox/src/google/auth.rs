//! OAuth2 for the simulated account: the `/token` refresh grant (docs/google-people-api.md §6.2), access token checks
//! on every API call (docs/google-people-api.md §6.3, §9.1), and the control hooks that expire or revoke
//! tokens.

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::error::{ApiError, OAuthError};

/// Read, write and delete contacts.
pub const SCOPE_CONTACTS: &str = "https://www.googleapis.com/auth/contacts";
/// Read contacts only.
pub const SCOPE_CONTACTS_READONLY: &str = "https://www.googleapis.com/auth/contacts.readonly";

/// The OAuth client registered with the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OAuthClient {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret`.
    pub client_secret: String,
}

/// A refresh token the user granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefreshGrant {
    /// Space-separated scopes.
    pub scope: String,
    /// Revoked by the user (control API); the token endpoint answers `invalid_grant`.
    pub revoked: bool,
}

/// An issued access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessGrant {
    /// Space-separated scopes.
    pub scope: String,
    /// Expiry on the sandbox clock.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Forced expiry through the control API.
    pub revoked: bool,
}

/// Tokens of one account.
#[derive(Debug, Clone)]
pub struct AuthState {
    /// The registered client.
    pub client: OAuthClient,
    /// Refresh tokens by value.
    pub refresh: BTreeMap<String, RefreshGrant>,
    /// Access tokens by value.
    pub access: BTreeMap<String, AccessGrant>,
}

/// Fields of a `/token` form (also accepts client credentials by HTTP Basic auth).
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// `grant_type`.
    pub grant_type: Option<String>,
    /// `client_id` (form or Basic auth).
    pub client_id: Option<String>,
    /// `client_secret` (form or Basic auth).
    pub client_secret: Option<String>,
    /// `refresh_token`.
    pub refresh_token: Option<String>,
}

/// What a call needs from its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `contacts` or `contacts.readonly`.
    Read,
    /// `contacts`.
    Write,
}

impl AuthState {
    /// A client and one refresh token with the `contacts` scope.
    pub fn new(client: OAuthClient, refresh_token: String) -> Self {
        let mut refresh = BTreeMap::new();
        refresh.insert(
            refresh_token,
            RefreshGrant {
                scope: SCOPE_CONTACTS.into(),
                revoked: false,
            },
        );
        AuthState {
            client,
            refresh,
            access: BTreeMap::new(),
        }
    }

    /// The refresh grant: a new access token valid `ttl_secs` (docs/google-people-api.md §6.2).
    pub fn token(
        &mut self,
        req: &TokenRequest,
        now: OffsetDateTime,
        ttl_secs: i64,
        rng: &mut ChaCha8Rng,
    ) -> Result<Value, OAuthError> {
        let grant = req.grant_type.as_deref().unwrap_or("");
        if grant != "refresh_token" {
            return Err(OAuthError::unsupported_grant(grant));
        }
        match req.client_id.as_deref() {
            None | Some("") => return Err(OAuthError::missing("client_id")),
            Some(id) if id != self.client.client_id => {
                return Err(OAuthError::invalid_client(
                    "The OAuth client was not found.",
                ));
            }
            Some(_) => {}
        }
        if req.client_secret.as_deref() != Some(self.client.client_secret.as_str()) {
            return Err(OAuthError::invalid_client("Unauthorized"));
        }
        let Some(rt) = req.refresh_token.as_deref().filter(|t| !t.is_empty()) else {
            return Err(OAuthError::missing("refresh_token"));
        };
        let scope = match self.refresh.get(rt) {
            Some(g) if !g.revoked => g.scope.clone(),
            _ => return Err(OAuthError::invalid_grant()),
        };
        // Forget tokens long past expiry so the table stays small; recently expired ones are
        // kept so that they still answer ACCESS_TOKEN_EXPIRED rather than "invalid".
        let horizon = now - time::Duration::days(2);
        self.access.retain(|_, g| g.expires_at > horizon);
        let token = format!("ya29.a0{}", random_token(rng, 60));
        self.access.insert(
            token.clone(),
            AccessGrant {
                scope: scope.clone(),
                expires_at: now + time::Duration::seconds(ttl_secs),
                revoked: false,
            },
        );
        Ok(json!({
            "access_token": token,
            "expires_in": ttl_secs,
            "scope": scope,
            "token_type": "Bearer",
        }))
    }

    /// Check the access token of an API call; `method` is the RPC name quoted in ErrorInfo.
    pub fn check(
        &self,
        token: Option<&str>,
        now: OffsetDateTime,
        need: Access,
        method: &str,
    ) -> Result<(), ApiError> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(ApiError::credentials_missing(method));
        };
        let Some(grant) = self.access.get(token) else {
            return Err(ApiError::token_invalid());
        };
        if grant.revoked || grant.expires_at <= now {
            return Err(ApiError::token_expired(method));
        }
        let scopes: Vec<&str> = grant.scope.split_whitespace().collect();
        let ok = match need {
            Access::Write => scopes.contains(&SCOPE_CONTACTS),
            Access::Read => {
                scopes.contains(&SCOPE_CONTACTS) || scopes.contains(&SCOPE_CONTACTS_READONLY)
            }
        };
        if !ok {
            return Err(ApiError::scope_insufficient(method));
        }
        Ok(())
    }

    /// Expire every access token now (they answer 401 ACCESS_TOKEN_EXPIRED). Returns how many.
    pub fn expire_access_tokens(&mut self) -> usize {
        let mut n = 0;
        for g in self.access.values_mut().filter(|g| !g.revoked) {
            g.revoked = true;
            n += 1;
        }
        n
    }

    /// Revoke one refresh token (or all when `None`); its access tokens expire too.
    /// Returns how many refresh tokens were revoked.
    pub fn revoke_refresh(&mut self, token: Option<&str>) -> usize {
        let mut n = 0;
        for (t, g) in self.refresh.iter_mut() {
            if token.is_none_or(|x| x == t) && !g.revoked {
                g.revoked = true;
                n += 1;
            }
        }
        if n > 0 {
            self.expire_access_tokens();
        }
        n
    }

    /// Grant a new refresh token with `scope` (e.g. to test a read-only grant).
    pub fn issue_refresh(&mut self, scope: &str, rng: &mut ChaCha8Rng) -> String {
        let token = format!("1//0{}", random_token(rng, 40));
        self.refresh.insert(
            token.clone(),
            RefreshGrant {
                scope: scope.into(),
                revoked: false,
            },
        );
        token
    }
}

fn random_token(rng: &mut ChaCha8Rng, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn state() -> AuthState {
        AuthState::new(
            OAuthClient {
                client_id: "cid".into(),
                client_secret: "sec".into(),
            },
            "rt".into(),
        )
    }

    fn req(rt: &str) -> TokenRequest {
        TokenRequest {
            grant_type: Some("refresh_token".into()),
            client_id: Some("cid".into()),
            client_secret: Some("sec".into()),
            refresh_token: Some(rt.into()),
        }
    }

    #[test]
    fn refresh_issues_expiring_tokens_and_revocation_is_invalid_grant() {
        let mut s = state();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let now = OffsetDateTime::UNIX_EPOCH;
        let v = s.token(&req("rt"), now, 3599, &mut rng).unwrap();
        let at = v["access_token"].as_str().unwrap().to_owned();
        assert!(s.check(Some(&at), now, Access::Write, "m").is_ok());
        let later = now + time::Duration::seconds(3600);
        assert_eq!(
            s.check(Some(&at), later, Access::Read, "m")
                .unwrap_err()
                .details[0]["reason"],
            "ACCESS_TOKEN_EXPIRED"
        );
        assert_eq!(
            s.token(&req("nope"), now, 1, &mut rng).unwrap_err(),
            OAuthError::invalid_grant()
        );
        assert_eq!(s.revoke_refresh(Some("rt")), 1);
        assert_eq!(
            s.token(&req("rt"), now, 1, &mut rng).unwrap_err(),
            OAuthError::invalid_grant()
        );
        assert!(s.check(Some(&at), now, Access::Read, "m").is_err());
    }

    #[test]
    fn readonly_scope_cannot_write() {
        let mut s = state();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let now = OffsetDateTime::UNIX_EPOCH;
        let rt = s.issue_refresh(SCOPE_CONTACTS_READONLY, &mut rng);
        let v = s.token(&req(&rt), now, 3599, &mut rng).unwrap();
        let at = v["access_token"].as_str().unwrap();
        assert!(s.check(Some(at), now, Access::Read, "m").is_ok());
        assert_eq!(
            s.check(Some(at), now, Access::Write, "m")
                .unwrap_err()
                .status,
            "PERMISSION_DENIED"
        );
    }
}
