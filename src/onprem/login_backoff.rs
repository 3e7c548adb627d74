//! Backing off refused logins. The webapp locks an IP out after 30 bad logins an hour (429 /
//! 1015), which then blocks the right password too; a wrong password retried at every reconcile
//! gets there within the hour. So a refused login is not sent again with the same credentials
//! before a delay that doubles from 1 minute to 30 minutes; changed credentials are tried at
//! once. Only a fingerprint of the refused credentials is kept (`auth::cache_key`),
//! never the password.

use std::fmt;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::error::{CallKind, Reason, StatusError};

/// The wait after the first refusal.
pub const FIRST_DELAY: Duration = Duration::from_secs(60);
/// The longest wait between two attempts with the same refused credentials.
pub const MAX_DELAY: Duration = Duration::from_secs(30 * 60);

/// The wait after `refusals` refusals in a row (1-based): 1, 2, 4, ... minutes, at most 30.
pub fn delay(refusals: u32) -> Duration {
    let doublings = refusals.saturating_sub(1).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

/// Whether a failed login says the credentials themselves are wrong, so that sending them again
/// soon cannot succeed.
pub fn refuses_credentials(error: &StatusError) -> bool {
    error.kind == CallKind::Login
        && matches!(
            error.reason,
            Reason::Unauthorized | Reason::PasswordChangeRequired
        )
}

/// A login refused with these credentials, and when the next one may be sent. The error of every
/// call made meanwhile, and of the refused login itself.
#[derive(Debug, Clone)]
pub struct LoginRefused {
    /// The last refusal, as the webapp answered it.
    pub refusal: StatusError,
    /// Refusals in a row with these credentials.
    pub refusals: u32,
    pub next_attempt: Timestamp,
    /// Where the credentials come from, e.g. `Secret wa/wa-admin`, when the source says.
    pub credentials: Option<String>,
}

impl fmt::Display for LoginRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; ", self.refusal)?;
        let what = match self.refusal.reason {
            Reason::PasswordChangeRequired => "set a working password",
            _ => "fix the username or password",
        };
        match &self.credentials {
            Some(place) => write!(f, "{what} in {place}")?,
            None => write!(f, "{what}")?,
        }
        write!(
            f,
            "; next login attempt at {} ({} refused in a row; changed credentials are tried at once)",
            self.next_attempt
                .round(jiff::Unit::Second)
                .unwrap_or(self.next_attempt),
            self.refusals
        )
    }
}

/// What the client remembers about refused logins.
#[derive(Default)]
pub(crate) struct LoginBackoff {
    last: Option<(CredentialsKey, LoginRefused)>,
}

type CredentialsKey = [u8; 32];

impl LoginBackoff {
    /// The refusal that forbids a login with `key` at `now`, if any.
    pub fn pending(&self, key: &CredentialsKey, now: Timestamp) -> Option<LoginRefused> {
        match &self.last {
            Some((refused, error)) if refused == key && now < error.next_attempt => {
                Some(error.clone())
            }
            _ => None,
        }
    }

    /// Records a refusal of `key` at `now` and returns the error to report.
    pub fn record(
        &mut self,
        key: CredentialsKey,
        refusal: StatusError,
        now: Timestamp,
        credentials: Option<String>,
    ) -> LoginRefused {
        let refusals = match &self.last {
            Some((refused, error)) if *refused == key => error.refusals.saturating_add(1),
            _ => 1,
        };
        let wait = SignedDuration::try_from(delay(refusals)).unwrap_or(SignedDuration::MAX);
        let error = LoginRefused {
            refusal,
            refusals,
            next_attempt: now.checked_add(wait).unwrap_or(Timestamp::MAX),
            credentials,
        };
        self.last = Some((key, error.clone()));
        error
    }

    /// A login succeeded: start from scratch.
    pub fn clear(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use reqwest::Method;

    use super::*;

    fn refusal(status: u16, body: &[u8]) -> StatusError {
        StatusError::from_response(
            CallKind::Login,
            Method::POST,
            "/v1/users/login",
            status,
            body,
            None,
            None,
        )
    }

    #[test]
    fn delays_double_from_one_minute_to_thirty() {
        let minutes: Vec<u64> = (1..=8).map(|n| delay(n).as_secs() / 60).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn only_refused_credentials_back_off() {
        assert!(refuses_credentials(&refusal(401, b"")));
        let change = br#"{"errors":[{"code":1024,"title":"Password change required"}]}"#;
        assert!(refuses_credentials(&refusal(401, change)));
        assert!(!refuses_credentials(&refusal(503, b"")));
        assert!(!refuses_credentials(&refusal(429, b"")));
        let mut api = refusal(401, b"");
        api.kind = CallKind::Api;
        assert!(
            !refuses_credentials(&api),
            "a refused token is not a refused password"
        );
    }

    #[test]
    fn the_same_credentials_wait_changed_ones_do_not() {
        let now: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let (wrong, fixed) = ([1u8; 32], [2u8; 32]);
        let mut backoff = LoginBackoff::default();
        assert!(backoff.pending(&wrong, now).is_none());

        let first = backoff.record(
            wrong,
            refusal(401, b""),
            now,
            Some("Secret wa/admin".into()),
        );
        assert_eq!(first.refusals, 1);
        assert_eq!(
            first.next_attempt,
            now.checked_add(SignedDuration::from_mins(1)).unwrap()
        );
        let message = first.to_string();
        assert!(
            message.contains("fix the username or password in Secret wa/admin"),
            "{message}"
        );
        assert!(
            message.contains("next login attempt at 2024-01-01T00:01:00Z"),
            "{message}"
        );

        let soon = now.checked_add(SignedDuration::from_secs(59)).unwrap();
        assert!(backoff.pending(&wrong, soon).is_some());
        assert!(
            backoff.pending(&fixed, soon).is_none(),
            "changed credentials go at once"
        );

        let later = now.checked_add(SignedDuration::from_mins(1)).unwrap();
        assert!(backoff.pending(&wrong, later).is_none());
        let second = backoff.record(wrong, refusal(401, b""), later, None);
        assert_eq!(second.refusals, 2);
        assert_eq!(
            second.next_attempt,
            later.checked_add(SignedDuration::from_mins(2)).unwrap()
        );

        // Another refused password starts again at one minute; a success forgets everything.
        assert_eq!(
            backoff
                .record(fixed, refusal(401, b""), later, None)
                .refusals,
            1
        );
        backoff.clear();
        assert!(backoff.pending(&fixed, later).is_none());
    }
}
