//! Errors of the On-Premises API client, typed from the response envelope and classified as
//! transient (worth a retry) or permanent.
//!
//! Everything here is pure: the HTTP layer hands over status, headers and body, and gets back a
//! typed error. Messages carry the server's `title`/`details` and the request id, never a token,
//! a password or a certificate body.

use std::fmt;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::auth::CredentialError;
use super::login_backoff::LoginRefused;
use crate::reason::ConditionReason;

/// Longest excerpt of a non-envelope error body kept in an error message.
const BODY_EXCERPT_CHARS: usize = 200;

/// One entry of the envelope's `errors` array.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvelopeError {
    pub code: Option<i64>,
    pub title: Option<String>,
    pub details: Option<String>,
    pub href: Option<String>,
}

/// What an error body turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorBody {
    /// Empty, whitespace, `null` or `{}`: the HTTP Basic layer and the docs' 404 answer like this.
    Empty,
    /// A JSON envelope; `errors` may still be empty (`{"meta":...}`).
    Envelope(Vec<EnvelopeError>),
    /// Anything else (an HTML page from a proxy, plain text), as a short single-line excerpt.
    Other(String),
}

impl ErrorBody {
    /// The envelope's errors, empty for other bodies.
    pub fn errors(&self) -> &[EnvelopeError] {
        match self {
            ErrorBody::Envelope(errors) => errors,
            ErrorBody::Empty | ErrorBody::Other(_) => &[],
        }
    }

    /// The code of the first envelope error, the one the webapp puts first and clients act on.
    pub fn first_code(&self) -> Option<i64> {
        self.errors().first().and_then(|e| e.code)
    }
}

/// Parses a response body as the API's envelope, liberally: `code` may be a number or a numeric
/// string, fields may be missing, and a body that is not JSON is kept as a truncated excerpt.
pub fn parse_error_body(body: &[u8]) -> ErrorBody {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return ErrorBody::Empty;
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(Value::Null) => ErrorBody::Empty,
        Ok(Value::Object(map)) if map.is_empty() => ErrorBody::Empty,
        Ok(Value::Object(map)) => ErrorBody::Envelope(envelope_errors(map.get("errors"))),
        Ok(_) | Err(_) => ErrorBody::Other(excerpt(trimmed)),
    }
}

/// The entries of an `errors` array; missing or malformed means none.
pub(crate) fn envelope_errors(errors: Option<&Value>) -> Vec<EnvelopeError> {
    errors
        .and_then(Value::as_array)
        .map(|items| items.iter().map(envelope_error).collect())
        .unwrap_or_default()
}

fn envelope_error(item: &Value) -> EnvelopeError {
    let text = |key: &str| item.get(key).and_then(Value::as_str).map(str::to_owned);
    let code = item.get("code").and_then(|c| {
        c.as_i64()
            .or_else(|| c.as_str().and_then(|s| s.trim().parse().ok()))
    });
    EnvelopeError {
        code,
        title: text("title"),
        details: text("details"),
        href: text("href"),
    }
}

/// A single-line, bounded excerpt of a body for error messages.
pub fn excerpt(text: &str) -> String {
    let single_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut out: String = single_line.chars().take(BODY_EXCERPT_CHARS).collect();
    if single_line.chars().count() > BODY_EXCERPT_CHARS {
        out.push('…');
    }
    out
}

/// Short, stable names for what went wrong: condition reasons and metric labels use them, so
/// they never change once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// 401: token refused (after one re-login) or login refused.
    Unauthorized,
    /// 403: the user is not an admin, or the path is not allowed.
    Forbidden,
    /// 401 with code 1024: the user must change the password first.
    PasswordChangeRequired,
    /// 429 or code 1015.
    RateLimited,
    /// 503/1016, 500/1011, 500/1014, 500/1017, 502, 504: the API or the core behind it is not
    /// ready; worth retrying.
    Unavailable,
    /// Any other 5xx.
    ServerError,
    /// 400 and other 4xx not named here (1008, 1009, 1025).
    BadRequest,
    /// 404 where "nothing stored" is not a valid answer, or a 404 that is not the API's.
    NotFound,
    /// 409 / 1004.
    Conflict,
    /// A status outside 2xx/4xx/5xx (a redirect, which the client does not follow).
    UnexpectedStatus,
    /// TCP connect, DNS or connection reset.
    Connect,
    /// Connect or request timeout.
    Timeout,
    /// TLS handshake or certificate verification failed.
    Tls,
    /// The credential source could not produce credentials.
    Credentials,
    /// A success answer the client could not understand.
    InvalidResponse,
    /// Bad client configuration (URL, CA PEM).
    Config,
}

impl Reason {
    /// The stable string for conditions and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unauthorized => "Unauthorized",
            Reason::Forbidden => "Forbidden",
            Reason::PasswordChangeRequired => "PasswordChangeRequired",
            Reason::RateLimited => "RateLimited",
            Reason::Unavailable => "Unavailable",
            Reason::ServerError => "ServerError",
            Reason::BadRequest => "BadRequest",
            Reason::NotFound => "NotFound",
            Reason::Conflict => "Conflict",
            Reason::UnexpectedStatus => "UnexpectedStatus",
            Reason::Connect => "Connect",
            Reason::Timeout => "Timeout",
            Reason::Tls => "Tls",
            Reason::Credentials => "Credentials",
            Reason::InvalidResponse => "InvalidResponse",
            Reason::Config => "Config",
        }
    }

    /// Whether a later identical request may succeed. 401 is not transient here: the client
    /// handles it by logging in again once, outside the retry loop.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Reason::RateLimited | Reason::Unavailable | Reason::Connect | Reason::Timeout
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies an HTTP error answer by status and the first envelope code. Codes win over status
/// where the API documents both (1024 inside a 401, 1015 / 1016 whatever the status).
pub fn classify(status: u16, code: Option<i64>) -> Reason {
    match (status, code) {
        (_, Some(1024)) => Reason::PasswordChangeRequired,
        (429, _) | (_, Some(1015)) => Reason::RateLimited,
        (503, _) | (_, Some(1016)) => Reason::Unavailable,
        // 1017 "not a primary master" happens during a master failover in multiconnect setups.
        (500, Some(1011 | 1014 | 1017)) => Reason::Unavailable,
        // A gateway in front of the webapp (ingress, load balancer) says the webapp is away.
        (502 | 504, _) => Reason::Unavailable,
        (401, _) => Reason::Unauthorized,
        (403, _) => Reason::Forbidden,
        (404, _) => Reason::NotFound,
        (409, _) => Reason::Conflict,
        (400..=499, _) => Reason::BadRequest,
        (500..=599, _) => Reason::ServerError,
        _ => Reason::UnexpectedStatus,
    }
}

/// Which kind of call failed: login answers need their own wording (a 401 there means the
/// username or password is wrong, not that a token expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Login,
    Api,
}

/// The server answered with a status the call does not accept.
#[derive(Debug, Clone)]
pub struct StatusError {
    pub method: Method,
    pub path: String,
    pub status: u16,
    pub reason: Reason,
    pub body: ErrorBody,
    pub request_id: Option<String>,
    pub retry_after: Option<Duration>,
    pub kind: CallKind,
}

impl StatusError {
    /// Builds the typed error from what the server sent.
    pub fn from_response(
        kind: CallKind,
        method: Method,
        path: &str,
        status: u16,
        body: &[u8],
        request_id: Option<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        let body = parse_error_body(body);
        let reason = classify(status, body.first_code());
        StatusError {
            method,
            path: path.to_owned(),
            status,
            reason,
            body,
            request_id,
            retry_after,
            kind,
        }
    }

    /// The first envelope error, if the body was an envelope with errors.
    pub fn first_error(&self) -> Option<&EnvelopeError> {
        self.body.errors().first()
    }

    /// What the user should do, for the answers where that is not obvious.
    fn hint(&self) -> Option<&'static str> {
        match (self.reason, self.kind) {
            (Reason::PasswordChangeRequired, _) => Some(
                "the API requires this user to change the password before it can log in: log in \
                 once with a new password (POST /v1/users/login with {\"new_password\": ...}, or \
                 the setup tool), then store the new password in the credentials",
            ),
            (Reason::Unauthorized, CallKind::Login) => {
                Some("login refused: check the username and password")
            }
            (Reason::Unauthorized, CallKind::Api) => {
                Some("the token was refused: check that it is valid and not expired")
            }
            (Reason::Forbidden, _) => {
                Some("the webhook CA endpoints are admin-only: use an admin user")
            }
            _ => None,
        }
    }
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: HTTP {}", self.method, self.path, self.status)?;
        if let Some(err) = self.first_error() {
            if let Some(code) = err.code {
                write!(f, ", code {code}")?;
            }
            if let Some(title) = &err.title {
                write!(f, " {title}")?;
            }
            if let Some(details) = &err.details {
                write!(f, ": {}", excerpt(details))?;
            }
        } else if let ErrorBody::Other(text) = &self.body {
            write!(f, ": {text}")?;
        }
        if let Some(hint) = self.hint() {
            write!(f, " ({hint})")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " [request id {id}]")?;
        }
        Ok(())
    }
}

/// A failure before or instead of an HTTP answer.
#[derive(Debug, Clone)]
pub struct TransportError {
    pub method: Method,
    pub path: String,
    pub request_id: String,
    /// The error and its sources, joined, without the request's headers or body.
    pub message: String,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {} [request id {}]",
            self.method, self.path, self.message, self.request_id
        )
    }
}

/// Everything the On-Premises API client can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server answered with an error status.
    #[error("{0}")]
    Status(Box<StatusError>),
    /// TCP connect, DNS, reset.
    #[error("cannot connect: {0}")]
    Connect(Box<TransportError>),
    /// Connect or request timeout.
    #[error("timed out: {0}")]
    Timeout(Box<TransportError>),
    /// TLS handshake or certificate verification failed.
    #[error("TLS failure: {0}")]
    Tls(Box<TransportError>),
    /// The credential source failed.
    #[error("no credentials for the API: {0}")]
    Credentials(#[from] CredentialError),
    /// A success answer the client could not understand.
    #[error("{method} {path}: unexpected answer (HTTP {status}): {message}{}", request_id_suffix(.request_id.as_deref()))]
    InvalidResponse {
        method: Method,
        path: String,
        status: u16,
        request_id: Option<String>,
        message: String,
    },
    /// The client configuration is unusable.
    #[error("invalid API client configuration: {0}")]
    Config(String),
    /// A login with these credentials was refused, and the next one waits (see
    /// [`super::login_backoff`]); also returned, without a request, until then.
    #[error("{0}")]
    LoginRefused(Box<LoginRefused>),
}

fn request_id_suffix(id: Option<&str>) -> String {
    id.map(|id| format!(" [request id {id}]"))
        .unwrap_or_default()
}

/// The API is not watched: every failure talking to it is retried.
impl ConditionReason for ApiError {
    fn reason(&self) -> &'static str {
        self.reason().as_str()
    }
}

impl ApiError {
    /// The short, stable classification of this error.
    pub fn reason(&self) -> Reason {
        match self {
            ApiError::Status(e) => e.reason,
            ApiError::Connect(_) => Reason::Connect,
            ApiError::Timeout(_) => Reason::Timeout,
            ApiError::Tls(_) => Reason::Tls,
            ApiError::Credentials(_) => Reason::Credentials,
            ApiError::InvalidResponse { .. } => Reason::InvalidResponse,
            ApiError::Config(_) => Reason::Config,
            ApiError::LoginRefused(e) => e.refusal.reason,
        }
    }

    /// The label for metrics; the same string as [`Reason::as_str`].
    pub fn metric_label(&self) -> &'static str {
        ConditionReason::reason(self)
    }

    /// Whether a retry of the same request may succeed.
    pub fn is_transient(&self) -> bool {
        self.reason().is_transient()
    }

    /// The request id of the failed request, when one was sent.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            ApiError::Status(e) => e.request_id.as_deref(),
            ApiError::Connect(e) | ApiError::Timeout(e) | ApiError::Tls(e) => {
                Some(e.request_id.as_str())
            }
            ApiError::InvalidResponse { request_id, .. } => request_id.as_deref(),
            ApiError::LoginRefused(e) => e.refusal.request_id.as_deref(),
            ApiError::Credentials(_) | ApiError::Config(_) => None,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status(e) => Some(e.status),
            ApiError::InvalidResponse { status, .. } => Some(*status),
            ApiError::LoginRefused(e) => Some(e.refusal.status),
            _ => None,
        }
    }

    /// The first envelope error code, when the server sent one.
    pub fn code(&self) -> Option<i64> {
        match self {
            ApiError::Status(e) => e.body.first_code(),
            ApiError::LoginRefused(e) => e.refusal.body.first_code(),
            _ => None,
        }
    }

    /// The server's `Retry-After`, already parsed (uncapped).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Status(e) => e.retry_after,
            _ => None,
        }
    }
}

impl From<StatusError> for ApiError {
    fn from(e: StatusError) -> Self {
        ApiError::Status(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_error(kind: CallKind, status: u16, body: &str) -> StatusError {
        StatusError::from_response(
            kind,
            Method::POST,
            "/v1/certificates/webhooks/ca",
            status,
            body.as_bytes(),
            Some("req-1".into()),
            None,
        )
    }

    #[test]
    fn empty_like_bodies_are_empty() {
        for body in ["", "  \n", "null", "{}", " {} "] {
            assert_eq!(
                parse_error_body(body.as_bytes()),
                ErrorBody::Empty,
                "{body:?}"
            );
        }
    }

    #[test]
    fn envelope_errors_are_parsed_with_numeric_or_string_codes() {
        let body = r#"{"meta":{"version":"v2.41","api_status":"stable"},
            "errors":[{"code":1009,"title":"Parameter value is not valid","details":"bad type"},
                      {"code":"1008","title":"Required parameter is missing"}]}"#;
        let parsed = parse_error_body(body.as_bytes());
        let errors = parsed.errors();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].code, Some(1009));
        assert_eq!(errors[0].details.as_deref(), Some("bad type"));
        assert_eq!(errors[1].code, Some(1008));
        assert_eq!(errors[1].details, None);
        assert_eq!(parsed.first_code(), Some(1009));
    }

    #[test]
    fn meta_only_envelope_has_no_errors() {
        let parsed = parse_error_body(br#"{"meta":{"version":"x"}}"#);
        assert_eq!(parsed, ErrorBody::Envelope(vec![]));
        assert_eq!(parsed.first_code(), None);
    }

    #[test]
    fn non_json_bodies_become_bounded_single_line_excerpts() {
        let html = format!("<html>\n<body>{}</body></html>", "x".repeat(1000));
        let ErrorBody::Other(text) = parse_error_body(html.as_bytes()) else {
            panic!("HTML must be kept as an excerpt");
        };
        assert!(text.starts_with("<html> <body>"));
        assert!(!text.contains('\n'));
        assert!(text.chars().count() <= BODY_EXCERPT_CHARS + 1);
        assert!(text.ends_with('…'));
    }

    #[test]
    fn classification_follows_the_spec() {
        let cases = [
            (429, None, Reason::RateLimited),
            (429, Some(1015), Reason::RateLimited),
            (503, Some(1016), Reason::Unavailable),
            (503, None, Reason::Unavailable),
            (500, Some(1011), Reason::Unavailable),
            (500, Some(1014), Reason::Unavailable),
            (500, Some(1017), Reason::Unavailable),
            (502, None, Reason::Unavailable),
            (500, Some(1000), Reason::ServerError),
            (500, None, Reason::ServerError),
            (401, None, Reason::Unauthorized),
            (401, Some(1005), Reason::Unauthorized),
            (401, Some(1024), Reason::PasswordChangeRequired),
            (403, Some(1005), Reason::Forbidden),
            (404, Some(1006), Reason::NotFound),
            (409, Some(1004), Reason::Conflict),
            (400, Some(1008), Reason::BadRequest),
            (400, Some(1009), Reason::BadRequest),
            (400, None, Reason::BadRequest),
            (302, None, Reason::UnexpectedStatus),
        ];
        for (status, code, want) in cases {
            assert_eq!(classify(status, code), want, "{status} {code:?}");
        }
    }

    #[test]
    fn only_rate_limits_unavailability_and_transport_failures_are_transient() {
        let transient: Vec<_> = [
            Reason::Unauthorized,
            Reason::Forbidden,
            Reason::PasswordChangeRequired,
            Reason::RateLimited,
            Reason::Unavailable,
            Reason::ServerError,
            Reason::BadRequest,
            Reason::NotFound,
            Reason::Conflict,
            Reason::UnexpectedStatus,
            Reason::Connect,
            Reason::Timeout,
            Reason::Tls,
            Reason::Credentials,
            Reason::InvalidResponse,
            Reason::Config,
        ]
        .into_iter()
        .filter(|r| r.is_transient())
        .collect();
        assert_eq!(
            transient,
            [
                Reason::RateLimited,
                Reason::Unavailable,
                Reason::Connect,
                Reason::Timeout
            ]
        );
    }

    #[test]
    fn display_carries_code_title_details_and_request_id() {
        let e = status_error(
            CallKind::Api,
            400,
            r#"{"errors":[{"code":1009,"title":"Parameter value is not valid","details":"Content-Type"}]}"#,
        );
        let text = ApiError::from(e).to_string();
        assert_eq!(
            text,
            "POST /v1/certificates/webhooks/ca: HTTP 400, code 1009 Parameter value is not valid: \
             Content-Type [request id req-1]"
        );
    }

    #[test]
    fn password_change_required_tells_what_to_do() {
        let e = ApiError::from(status_error(
            CallKind::Login,
            401,
            r#"{"errors":[{"code":1024,"title":"Password change required"}]}"#,
        ));
        assert_eq!(e.reason(), Reason::PasswordChangeRequired);
        assert_eq!(e.metric_label(), "PasswordChangeRequired");
        let text = e.to_string();
        assert!(text.contains("new_password"), "{text}");
        assert!(text.contains("store the new password"), "{text}");
    }

    #[test]
    fn login_401_with_empty_body_says_the_credentials_are_wrong() {
        let e = ApiError::from(status_error(CallKind::Login, 401, ""));
        assert_eq!(e.reason(), Reason::Unauthorized);
        assert!(e.to_string().contains("check the username and password"));
        assert_eq!(e.status(), Some(401));
        assert_eq!(e.code(), None);
        assert_eq!(e.request_id(), Some("req-1"));
    }
}
