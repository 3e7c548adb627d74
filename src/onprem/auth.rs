//! Credentials for the On-Premises API and the pure half of the login: secret wrapping, the
//! credential source the client asks at the moment it needs credentials, login answer parsing and
//! the token cache's refresh arithmetic.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A secret string (password, token). Debug and Display print `***`; the value is reachable only
/// through [`Secret::expose`], which makes every use visible in review.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

/// How the client authenticates.
#[derive(Clone)]
pub enum Credentials {
    /// Username and password: the client logs in (`POST /v1/users/login`, HTTP Basic) and caches
    /// the token until shortly before it expires.
    Login { username: String, password: Secret },
    /// A bearer token used as is.
    Token(Secret),
}

impl Credentials {
    pub fn login(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials::Login {
            username: username.into(),
            password: Secret::new(password),
        }
    }

    pub fn token(token: impl Into<String>) -> Self {
        Credentials::Token(Secret::new(token))
    }
}

// Written by hand so that a derive can never start printing the secrets.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Login { username, password } => f
                .debug_struct("Login")
                .field("username", username)
                .field("password", password)
                .finish(),
            Credentials::Token(token) => f.debug_tuple("Token").field(token).finish(),
        }
    }
}

/// The credential source could not produce credentials (Secret missing, key missing, file
/// unreadable). The message must name where the credentials were looked for, never their value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CredentialError {
    message: String,
}

impl CredentialError {
    pub fn new(message: impl Into<String>) -> Self {
        CredentialError {
            message: message.into(),
        }
    }
}

/// Where the client gets credentials from. Asked on every call, so that a rotated Secret is
/// used by the next login; the client's token cache notices changed credentials by itself.
pub trait CredentialSource: Send + Sync {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialError>>;

    /// Where a person fixes the credentials (e.g. `Secret wa/wa-admin`), for error messages.
    fn location(&self) -> Option<String> {
        None
    }
}

/// Fixed credentials (the CLI, tests).
impl CredentialSource for Credentials {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialError>> {
        let creds = self.clone();
        Box::pin(async move { Ok(creds) })
    }
}

/// A credential source from an async closure; see [`from_fn`].
pub struct FnSource<F>(F);

/// Wraps an async closure as a [`CredentialSource`], e.g. one that reads a Kubernetes Secret.
pub fn from_fn<F, Fut>(f: F) -> FnSource<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<Credentials, CredentialError>> + Send + 'static,
{
    FnSource(f)
}

impl<F, Fut> CredentialSource for FnSource<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<Credentials, CredentialError>> + Send + 'static,
{
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialError>> {
        Box::pin((self.0)())
    }
}

/// Identifies the username/password a cached token belongs to, so that changed credentials
/// invalidate it. A digest, so the cache holds no second copy of the password.
pub(crate) fn cache_key(username: &str, password: &Secret) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(username.as_bytes());
    hasher.update([0u8]);
    hasher.update(password.expose().as_bytes());
    hasher.finalize().into()
}

/// A token obtained by login, with the moment the client stops using it.
#[derive(Clone)]
pub(crate) struct CachedToken {
    pub key: [u8; 32],
    pub token: Secret,
    pub refresh_at: Timestamp,
}

impl CachedToken {
    pub fn usable_for(&self, key: &[u8; 32], now: Timestamp) -> bool {
        &self.key == key && now < self.refresh_at
    }
}

/// How long a token is trusted when the login answer gives no usable `expires_after`: short,
/// since a 401 costs a re-login anyway.
const UNKNOWN_LIFETIME: Duration = Duration::from_secs(60);
/// Longest safety margin before `expires_after`.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// When to log in again for a token valid `lifetime` from now (as the server counts): a tenth of
/// the lifetime early, at most five minutes early. Computed on the server's lifetime rather than
/// its absolute `expires_after`, so clock skew between here and the webapp does not matter.
pub fn refresh_at(now: Timestamp, lifetime: Option<SignedDuration>) -> Timestamp {
    let lifetime = match lifetime {
        Some(l) if l.is_negative() || l.is_zero() => return now,
        Some(l) => l,
        None => SignedDuration::try_from(UNKNOWN_LIFETIME).unwrap_or(SignedDuration::ZERO),
    };
    let margin = (lifetime / 10)
        .min(SignedDuration::try_from(MAX_REFRESH_MARGIN).unwrap_or(SignedDuration::ZERO));
    now.checked_add(lifetime - margin).unwrap_or(now)
}

/// Parses `expires_after`: the API's own `2021-09-14 15:29:26+00:00` (PHP `Y-m-d H:i:sP`), and
/// RFC 3339 as well.
pub fn parse_expires_after(value: &str) -> Option<Timestamp> {
    let value = value.trim();
    if let Ok(ts) = value.parse::<Timestamp>() {
        return Some(ts);
    }
    jiff::fmt::strtime::parse("%Y-%m-%d %H:%M:%S%:z", value)
        .and_then(|tm| tm.to_timestamp())
        .ok()
}

/// What a successful login answered.
#[derive(Debug)]
pub struct LoginAnswer {
    pub token: Secret,
    /// The raw `expires_after` text, if present.
    pub expires_after: Option<String>,
}

/// Parses `{"users":[{"token":"...","expires_after":"..."}],"meta":...}`. The error message never
/// quotes the body: it may hold a token.
pub fn parse_login_answer(body: &[u8]) -> Result<LoginAnswer, &'static str> {
    let value: Value = serde_json::from_slice(body).map_err(|_| "login answer is not JSON")?;
    let user = value
        .get("users")
        .and_then(Value::as_array)
        .and_then(|users| users.first())
        .ok_or("login answer has no users[0]")?;
    let token = user
        .get("token")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
        .ok_or("login answer has no token")?;
    Ok(LoginAnswer {
        token: Secret::new(token.trim()),
        expires_after: user
            .get("expires_after")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let creds = Credentials::login("admin", "Hunter2!xyz");
        let debug = format!("{creds:?}");
        assert!(!debug.contains("Hunter2"), "{debug}");
        assert!(debug.contains("admin") && debug.contains("***"), "{debug}");
        let token = Credentials::token("eyJhbGciOi.secret.token");
        assert_eq!(format!("{token:?}"), "Token(***)");
        assert_eq!(Secret::new("x").to_string(), "***");
    }

    #[test]
    fn expires_after_in_the_api_format_and_rfc3339() {
        let want: Timestamp = "2021-09-14T15:29:26Z".parse().unwrap();
        assert_eq!(parse_expires_after("2021-09-14 15:29:26+00:00"), Some(want));
        assert_eq!(parse_expires_after("2021-09-14T15:29:26Z"), Some(want));
        assert_eq!(parse_expires_after("2021-09-14T17:29:26+02:00"), Some(want));
        assert_eq!(parse_expires_after("2021-09-14 17:29:26+02:00"), Some(want));
        assert_eq!(parse_expires_after("next tuesday"), None);
        assert_eq!(parse_expires_after(""), None);
    }

    #[test]
    fn refresh_happens_a_tenth_early_at_most_five_minutes() {
        let now: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let week = SignedDuration::from_secs(604_800);
        assert_eq!(
            refresh_at(now, Some(week)),
            now.checked_add(week - SignedDuration::from_secs(300))
                .unwrap()
        );
        let short = SignedDuration::from_secs(10);
        assert_eq!(
            refresh_at(now, Some(short)),
            now.checked_add(SignedDuration::from_secs(9)).unwrap()
        );
        assert_eq!(refresh_at(now, Some(SignedDuration::from_secs(-5))), now);
        assert_eq!(
            refresh_at(now, None),
            now.checked_add(SignedDuration::from_secs(54)).unwrap()
        );
    }

    #[test]
    fn cached_token_is_tied_to_credentials_and_time() {
        let now: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let key = cache_key("admin", &Secret::new("Passw0rd!"));
        let cached = CachedToken {
            key,
            token: Secret::new("t"),
            refresh_at: now.checked_add(SignedDuration::from_secs(10)).unwrap(),
        };
        assert!(cached.usable_for(&key, now));
        assert!(!cached.usable_for(&key, cached.refresh_at));
        assert!(!cached.usable_for(&cache_key("admin", &Secret::new("Passw0rd!2")), now));
        assert!(!cached.usable_for(&cache_key("admin2", &Secret::new("Passw0rd!")), now));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(
            cache_key("ab", &Secret::new("c")),
            cache_key("a", &Secret::new("bc"))
        );
    }

    #[test]
    fn login_answer_parsing() {
        let body = br#"{"users":[{"token":"abc.def.ghi","expires_after":"2021-09-14 15:29:26+00:00"}],"meta":{"version":"v2"}}"#;
        let answer = parse_login_answer(body).unwrap();
        assert_eq!(answer.token.expose(), "abc.def.ghi");
        assert_eq!(
            answer.expires_after.as_deref(),
            Some("2021-09-14 15:29:26+00:00")
        );
        let no_expiry = parse_login_answer(br#"{"users":[{"token":"t"}]}"#).unwrap();
        assert_eq!(no_expiry.expires_after, None);
        for bad in [
            &b""[..],
            b"null",
            br#"{"users":[]}"#,
            br#"{"users":[{"token":""}]}"#,
        ] {
            let err = parse_login_answer(bad).unwrap_err();
            assert!(!err.is_empty());
        }
    }

    #[tokio::test]
    async fn closures_are_credential_sources() {
        let source = from_fn(|| async { Ok(Credentials::token("t1")) });
        let Credentials::Token(t) = source.credentials().await.unwrap() else {
            panic!("expected a token");
        };
        assert_eq!(t.expose(), "t1");
        let failing = from_fn(|| async { Err(CredentialError::new("Secret wa/x not found")) });
        let err = failing.credentials().await.unwrap_err();
        assert_eq!(err.to_string(), "Secret wa/x not found");
    }
}
