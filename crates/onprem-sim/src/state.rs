//! The simulator's mutable state and the rules deciding each answer. No I/O: the clocks are
//! parameters, so the rules are unit tested with chosen instants.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;

use crate::SimConfig;
use crate::model::{Fault, HealthReport, RateLimit, RequestRecord, Responses};

/// Oldest records are dropped beyond this, so a long demo run does not grow without bound.
const REQUEST_LOG_CAP: usize = 10_000;

/// State shared by the HTTP handlers, the control API and the [`crate::Simulator`] handle.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    pub version: String,
    api_key: Option<String>,
    control_token: Option<String>,
}

impl Shared {
    pub fn new(cfg: &SimConfig) -> Self {
        Self {
            inner: Mutex::new(Inner::new(cfg)),
            version: cfg.version.clone(),
            api_key: cfg.api_key.clone(),
            control_token: cfg.control_token.clone(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere while holding it; every field is still
        // a valid value, and a test double should keep answering.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn api_key_matches(&self, presented: &str) -> bool {
        self.api_key
            .as_deref()
            .is_some_and(|k| constant_time_eq(k.as_bytes(), presented.as_bytes()))
    }

    /// `None` when the control API is disabled (no control token configured).
    pub fn control_token_matches(&self, presented: Option<&str>) -> Option<bool> {
        let expected = self.control_token.as_deref()?;
        Some(presented.is_some_and(|p| constant_time_eq(expected.as_bytes(), p.as_bytes())))
    }
}

/// Compares secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct Account {
    password: String,
    admin: bool,
    must_change_password: bool,
}

struct TokenEntry {
    username: String,
    expires_at: Timestamp,
}

/// Who presented a usable credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    User { username: String, admin: bool },
    ApiKey,
}

/// A freshly issued token and its expiry in the webapp's `Y-m-d H:i:sP` format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IssuedToken {
    pub token: String,
    pub expires_after: String,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LoginOutcome {
    Issued(IssuedToken),
    BadCredentials,
    RateLimited { retry_after_secs: u64 },
    PasswordChangeRequired,
    PasswordPolicy,
}

pub(crate) struct Inner {
    users: HashMap<String, Account>,
    tokens: HashMap<String, TokenEntry>,
    /// Every token ever issued, revoked or not: what a secret scan of the client's logs looks for.
    issued: Vec<String>,
    pub bundle: Option<Vec<u8>>,
    faults: Vec<Fault>,
    pub latency: Duration,
    pub core_unreachable: bool,
    pub responses: Responses,
    pub health: HealthReport,
    pub token_lifetime: Duration,
    pub token_grace: Duration,
    health_limit: Option<RateLimit>,
    health_calls: VecDeque<Instant>,
    login_limit: Option<RateLimit>,
    login_failures: HashMap<IpAddr, VecDeque<Instant>>,
    requests: VecDeque<RequestRecord>,
    pub settings: crate::settings::ApplicationSettings,
}

impl Inner {
    fn new(cfg: &SimConfig) -> Self {
        let users = cfg
            .users
            .iter()
            .map(|u| {
                (
                    u.username.clone(),
                    Account {
                        password: u.password.clone(),
                        admin: u.admin,
                        must_change_password: u.must_change_password,
                    },
                )
            })
            .collect();
        Self {
            users,
            tokens: HashMap::new(),
            issued: Vec::new(),
            bundle: None,
            faults: Vec::new(),
            latency: Duration::ZERO,
            core_unreachable: false,
            responses: Responses {
                variant: cfg.variant,
                success_body: cfg.success_body,
                delete_missing: cfg.delete_missing,
            },
            health: cfg.health.clone(),
            token_lifetime: cfg.token_lifetime,
            token_grace: cfg.token_grace,
            health_limit: cfg.health_rate_limit,
            health_calls: VecDeque::new(),
            login_limit: cfg.login_failure_limit,
            login_failures: HashMap::new(),
            requests: VecDeque::new(),
            settings: crate::settings::ApplicationSettings::default(),
        }
    }

    /// `POST /v1/users/login` once the Basic credentials are decoded.
    pub fn login(
        &mut self,
        ip: IpAddr,
        username: &str,
        password: &str,
        new_password: Option<&str>,
        now: Instant,
        wall: Timestamp,
    ) -> LoginOutcome {
        if let Some(limit) = self.login_limit {
            let failures = self.login_failures.entry(ip).or_default();
            if let Err(retry_after_secs) = window_has_room(failures, limit, now) {
                return LoginOutcome::RateLimited { retry_after_secs };
            }
        }
        let Some(account) = self
            .users
            .get_mut(username)
            .filter(|a| constant_time_eq(a.password.as_bytes(), password.as_bytes()))
        else {
            if self.login_limit.is_some() {
                self.login_failures.entry(ip).or_default().push_back(now);
            }
            return LoginOutcome::BadCredentials;
        };
        match new_password {
            Some(new) if !password_meets_policy(new) => return LoginOutcome::PasswordPolicy,
            Some(new) => {
                account.password = new.to_owned();
                account.must_change_password = false;
            }
            None if account.must_change_password => return LoginOutcome::PasswordChangeRequired,
            None => {}
        }
        match self.issue_token(username, wall) {
            Some(issued) => LoginOutcome::Issued(issued),
            None => LoginOutcome::BadCredentials,
        }
    }

    /// A token for a known user, valid for the configured lifetime from `wall`.
    pub fn issue_token(&mut self, username: &str, wall: Timestamp) -> Option<IssuedToken> {
        if !self.users.contains_key(username) {
            return None;
        }
        let expires_at = wall
            .checked_add(self.token_lifetime)
            .unwrap_or(Timestamp::MAX);
        let token = jwt_like(username, wall, expires_at);
        crate::token_issued(&token);
        self.issued.push(token.clone());
        self.tokens.insert(
            token.clone(),
            TokenEntry {
                username: username.to_owned(),
                expires_at,
            },
        );
        Some(IssuedToken {
            token,
            expires_after: php_datetime(expires_at),
        })
    }

    /// Every token issued so far, in order, including revoked and expired ones.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.issued.clone()
    }

    /// Revokes one token; false if it was not known.
    pub fn revoke(&mut self, token: &str) -> bool {
        self.tokens.remove(token).is_some()
    }

    pub fn revoke_all(&mut self) {
        self.tokens.clear();
    }

    /// Resolves a bearer token, accepting it up to the grace period after its expiry.
    pub fn bearer(&mut self, token: &str, wall: Timestamp) -> Option<Caller> {
        let entry = self.tokens.get(token)?;
        let deadline = entry
            .expires_at
            .checked_add(self.token_grace)
            .unwrap_or(Timestamp::MAX);
        if wall >= deadline {
            // Past the grace period the token can never be valid again.
            self.tokens.remove(token);
            return None;
        }
        let account = self.users.get(&entry.username)?;
        Some(Caller::User {
            username: entry.username.clone(),
            admin: account.admin,
        })
    }

    /// Counts a health call against the rate limit; `Err(retry_after_secs)` when over it.
    pub fn health_call(&mut self, now: Instant) -> Result<(), u64> {
        let Some(limit) = self.health_limit else {
            return Ok(());
        };
        window_has_room(&mut self.health_calls, limit, now)?;
        self.health_calls.push_back(now);
        Ok(())
    }

    pub fn add_fault(&mut self, fault: Fault) {
        if fault.times > 0 {
            self.faults.push(fault);
        }
    }

    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    pub fn faults(&self) -> Vec<Fault> {
        self.faults.clone()
    }

    /// The first armed fault matching the request, counted down by one use. A fault that still
    /// skips lets the request through (counting the skip down) without trying later faults.
    pub fn take_fault(&mut self, method: &str, path: &str) -> Option<Fault> {
        let idx = self.faults.iter().position(|f| f.matches(method, path))?;
        let fault = &mut self.faults[idx];
        if fault.skip > 0 {
            fault.skip -= 1;
            return None;
        }
        fault.times -= 1;
        let fired = fault.clone();
        if fault.times == 0 {
            self.faults.remove(idx);
        }
        Some(fired)
    }

    pub fn record(&mut self, record: RequestRecord) {
        if self.requests.len() >= REQUEST_LOG_CAP {
            self.requests.pop_front();
        }
        self.requests.push_back(record);
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.requests.iter().cloned().collect()
    }

    pub fn clear_requests(&mut self) {
        self.requests.clear();
    }
}

/// Drops entries older than the window; `Err(seconds until a slot frees)` when it is full.
fn window_has_room(
    calls: &mut VecDeque<Instant>,
    limit: RateLimit,
    now: Instant,
) -> Result<(), u64> {
    while calls
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= limit.per)
    {
        calls.pop_front();
    }
    if calls.len() < limit.calls as usize {
        return Ok(());
    }
    let oldest = calls.front().copied().unwrap_or(now);
    let wait = limit
        .per
        .saturating_sub(now.saturating_duration_since(oldest));
    // Round up so a client waiting exactly this long finds the slot free.
    Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
}

/// The webapp's policy for a new password: 8-64 characters with an upper-case letter, a
/// lower-case letter, a digit and a special character.
pub(crate) fn password_meets_policy(p: &str) -> bool {
    let len = p.chars().count();
    (8..=64).contains(&len)
        && p.chars().any(char::is_uppercase)
        && p.chars().any(char::is_lowercase)
        && p.chars().any(|c| c.is_ascii_digit())
        && p.chars()
            .any(|c| !c.is_alphanumeric() && !c.is_whitespace())
}

/// PHP's `Y-m-d H:i:sP` in UTC, the format of `expires_after`.
pub(crate) fn php_datetime(t: Timestamp) -> String {
    format!("{}+00:00", t.strftime("%Y-%m-%d %H:%M:%S"))
}

/// A token shaped like the webapp's JWTs: the claims are readable, the "signature" is random
/// so every token is unique and unguessable.
fn jwt_like(username: &str, issued: Timestamp, expires: Timestamp) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "user": username,
        "iat": issued.as_second(),
        "exp": expires.as_second(),
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signature: [u8; 32] = rand::random();
    format!("{header}.{claims}.{}", URL_SAFE_NO_PAD.encode(signature))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::SimUser;
    use crate::model::FaultAction;

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn inner_with(users: Vec<SimUser>) -> Inner {
        Inner::new(&SimConfig {
            users,
            ..SimConfig::default()
        })
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("test timestamp")
    }

    #[test]
    fn policy_needs_every_character_class_and_length() {
        assert!(password_meets_policy("Abcdef1!"));
        assert!(!password_meets_policy("Abcde1!"), "7 chars");
        assert!(!password_meets_policy("abcdef1!"), "no upper");
        assert!(!password_meets_policy("ABCDEF1!"), "no lower");
        assert!(!password_meets_policy("Abcdefg!"), "no digit");
        assert!(!password_meets_policy("Abcdefg1"), "no special");
        let long = format!("Aa1!{}", "x".repeat(61));
        assert!(!password_meets_policy(&long), "65 chars");
        assert!(password_meets_policy(&long[..64]));
    }

    #[test]
    fn expiry_uses_php_format() {
        assert_eq!(
            php_datetime(ts("2021-09-14T15:29:26.75Z")),
            "2021-09-14 15:29:26+00:00"
        );
    }

    #[test]
    fn token_is_accepted_through_grace_then_dropped() {
        let mut inner = inner_with(vec![SimUser::admin("admin", "Secret-123")]);
        inner.token_lifetime = Duration::from_secs(100);
        inner.token_grace = Duration::from_secs(10);
        let t0 = ts("2024-01-01T00:00:00Z");
        let issued = inner.issue_token("admin", t0).expect("known user");
        assert_eq!(issued.expires_after, "2024-01-01 00:01:40+00:00");
        let at = |s: u64| t0.checked_add(Duration::from_secs(s)).expect("in range");
        assert!(inner.bearer(&issued.token, at(99)).is_some());
        assert!(inner.bearer(&issued.token, at(109)).is_some(), "in grace");
        assert_eq!(inner.bearer(&issued.token, at(110)), None);
        assert_eq!(inner.bearer(&issued.token, at(0)), None, "gone for good");
    }

    #[test]
    fn must_change_user_gets_token_only_with_valid_new_password() {
        let mut inner = inner_with(vec![SimUser::factory_admin()]);
        let (now, wall) = (Instant::now(), Timestamp::now());
        assert_eq!(
            inner.login(IP, "admin", "secret", None, now, wall),
            LoginOutcome::PasswordChangeRequired
        );
        assert_eq!(
            inner.login(IP, "admin", "secret", Some("weak"), now, wall),
            LoginOutcome::PasswordPolicy
        );
        let changed = inner.login(IP, "admin", "secret", Some("N3w-Passw0rd"), now, wall);
        assert!(matches!(changed, LoginOutcome::Issued(_)), "{changed:?}");
        assert_eq!(
            inner.login(IP, "admin", "secret", None, now, wall),
            LoginOutcome::BadCredentials
        );
        let again = inner.login(IP, "admin", "N3w-Passw0rd", None, now, wall);
        assert!(matches!(again, LoginOutcome::Issued(_)), "{again:?}");
    }

    #[test]
    fn bad_logins_over_the_limit_are_rate_limited_until_the_window_passes() {
        let mut inner = inner_with(vec![SimUser::admin("admin", "Secret-123")]);
        inner.login_limit = Some(RateLimit {
            calls: 3,
            per: Duration::from_secs(60),
        });
        let (t0, wall) = (Instant::now(), Timestamp::now());
        for _ in 0..3 {
            assert_eq!(
                inner.login(IP, "admin", "wrong", None, t0, wall),
                LoginOutcome::BadCredentials
            );
        }
        let later = t0 + Duration::from_millis(20_500);
        assert_eq!(
            inner.login(IP, "admin", "Secret-123", None, later, wall),
            LoginOutcome::RateLimited {
                retry_after_secs: 40
            },
            "even the right password is refused while limited"
        );
        let after = t0 + Duration::from_secs(60);
        let ok = inner.login(IP, "admin", "Secret-123", None, after, wall);
        assert!(matches!(ok, LoginOutcome::Issued(_)), "{ok:?}");
    }

    #[test]
    fn faults_fire_the_given_number_of_times_on_matching_requests_only() {
        let mut inner = inner_with(vec![]);
        inner.add_fault(
            Fault::error(503, 1016)
                .times(2)
                .on_path("/v1/health")
                .on_method("get"),
        );
        assert_eq!(inner.take_fault("GET", "/v1/users/login"), None);
        assert_eq!(inner.take_fault("POST", "/v1/health"), None);
        assert!(inner.take_fault("GET", "/v1/health").is_some());
        assert!(inner.take_fault("GET", "/v1/health").is_some());
        assert_eq!(inner.take_fault("GET", "/v1/health"), None);
        assert!(inner.faults().is_empty());
    }

    #[test]
    fn a_skipping_fault_lets_requests_through_first() {
        let mut inner = inner_with(vec![]);
        inner.add_fault(Fault::lose_bundle().on_method("GET").after(1));
        assert_eq!(
            inner.take_fault("GET", "/v1/certificates/webhooks/ca"),
            None
        );
        let fired = inner.take_fault("GET", "/v1/certificates/webhooks/ca");
        assert_eq!(fired.map(|f| f.action), Some(FaultAction::LoseBundle));
        assert_eq!(
            inner.take_fault("GET", "/v1/certificates/webhooks/ca"),
            None
        );
        assert!(inner.faults().is_empty());
    }

    #[test]
    fn health_limit_counts_calls_in_a_sliding_window() {
        let mut inner = inner_with(vec![]);
        inner.health_limit = Some(RateLimit {
            calls: 2,
            per: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        assert_eq!(inner.health_call(t0), Ok(()));
        assert_eq!(inner.health_call(t0 + Duration::from_secs(30)), Ok(()));
        assert_eq!(inner.health_call(t0 + Duration::from_secs(31)), Err(29));
        assert_eq!(inner.health_call(t0 + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn tokens_are_unique_and_jwt_shaped() {
        let mut inner = inner_with(vec![SimUser::admin("admin", "Secret-123")]);
        let wall = Timestamp::now();
        let a = inner.issue_token("admin", wall).expect("known user").token;
        let b = inner.issue_token("admin", wall).expect("known user").token;
        assert_ne!(a, b);
        assert_eq!(a.split('.').count(), 3);
        assert_eq!(inner.issue_token("nobody", wall), None);
    }
}
