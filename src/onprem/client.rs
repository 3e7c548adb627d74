//! The HTTP side of the client: TLS trust, timeouts, request ids, login with a token cache,
//! one re-login on 401, and retries of transient failures.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use jiff::Timestamp;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use tokio::sync::Mutex;

use super::auth::{
    CachedToken, CredentialError, CredentialSource, Credentials, Secret, cache_key,
    parse_expires_after, parse_login_answer, refresh_at,
};
use super::error::{ApiError, CallKind, StatusError, TransportError};
use super::login_backoff::{LoginBackoff, refuses_credentials};
use super::observe::{RequestLimiter, RequestObserver, RequestOutcome};
use super::retry::{RetryPolicy, parse_retry_after};
use super::transport::{Transport, TransportSettings, Transports};

/// The header the API uses to correlate a request in its logs; it honours one sent by the client.
pub const REQUEST_ID_HEADER: &str = "X-Request-ID";
const LOGIN_PATH: &str = "/v1/users/login";
/// Bodies here are PEM bundles and small JSON envelopes; anything larger is not the API.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Which certificates the client trusts for the webapp.
#[derive(Clone)]
pub enum TlsTrust {
    /// The system's roots (a webapp with a publicly trusted certificate).
    SystemRoots,
    /// Only the certificates in this PEM text: the webapp's own CA or self-signed certificate.
    CaPem(String),
    /// No verification at all, like `curl -k`. Logged as a warning on every client build and
    /// reported by [`OnPremClient::tls_verification_disabled`].
    InsecureSkipVerify,
}

impl fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsTrust::SystemRoots => f.write_str("SystemRoots"),
            TlsTrust::CaPem(pem) => write!(f, "CaPem({} bytes)", pem.len()),
            TlsTrust::InsecureSkipVerify => f.write_str("InsecureSkipVerify"),
        }
    }
}

/// Everything needed to build a client except the credentials.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://host:port`, optionally with a path prefix; no credentials in it.
    pub base_url: String,
    pub tls: TlsTrust,
    /// Limit on establishing the TCP and TLS connection.
    pub connect_timeout: Duration,
    /// Limit on one whole request, from sending to the last byte of the answer.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Accept an `http://` URL. Credentials then cross the network in clear text, so this is
    /// only for a webapp reached through a sidecar or mesh that adds TLS (the CRD's
    /// `allowPlainHttp`).
    pub allow_plain_http: bool,
    /// Back off refused logins ([`super::login_backoff`]): on by default, for a client that lives
    /// long (the operator); a one-shot command turns it off and just reports the refusal.
    pub login_backoff: bool,
    /// Hears of every HTTP exchange (the operator's metrics).
    pub observer: Option<Arc<dyn RequestObserver>>,
    /// Bounds the requests in flight, shared by every client of the operator.
    pub limiter: Option<Arc<RequestLimiter>>,
    /// Shares the HTTP client and its TLS configuration with every client that trusts the
    /// webapp the same way (the operator's clients); without it the client builds its own.
    pub transports: Option<Arc<Transports>>,
}

impl ClientConfig {
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

    pub fn new(base_url: impl Into<String>, tls: TlsTrust) -> Self {
        ClientConfig {
            base_url: base_url.into(),
            tls,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
            allow_plain_http: false,
            login_backoff: true,
            observer: None,
            limiter: None,
            transports: None,
        }
    }
}

/// A client for one On-Premises API installation. Cheap to clone; clones share the token cache.
#[derive(Clone)]
pub struct OnPremClient {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    request_timeout: Duration,
    base_url: String,
    retry: RetryPolicy,
    credentials: Arc<dyn CredentialSource>,
    token: Mutex<TokenSlot>,
    insecure: bool,
    login_backoff: bool,
    observer: Option<Arc<dyn RequestObserver>>,
    limiter: Option<Arc<RequestLimiter>>,
    /// `host:port` of the API, the key of the per-host request limit.
    host: String,
}

/// The login state, under one lock so that concurrent callers share one login (or one refusal).
#[derive(Default)]
struct TokenSlot {
    cached: Option<CachedToken>,
    refused: LoginBackoff,
}

impl fmt::Debug for OnPremClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnPremClient")
            .field("base_url", &self.inner.base_url)
            .field("insecure", &self.inner.insecure)
            .finish_non_exhaustive()
    }
}

/// One logical API call, possibly sent several times.
pub(crate) struct Call {
    pub method: Method,
    pub path: &'static str,
    /// Content type and body.
    pub body: Option<(&'static str, Vec<u8>)>,
    /// Whether a 404 is an answer the caller interprets rather than an error.
    pub accept_not_found: bool,
}

/// What the server answered to one request.
pub(crate) struct Answer {
    pub status: u16,
    pub request_id: Option<String>,
    pub retry_after: Option<Duration>,
    /// The server's `Date`, to measure token lifetimes on the server's clock.
    pub date: Option<Timestamp>,
    pub body: Vec<u8>,
}

impl Answer {
    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// This answer as the typed error of `call`.
    pub(crate) fn into_error(self, kind: CallKind, call: &Call) -> ApiError {
        StatusError::from_response(
            kind,
            call.method.clone(),
            call.path,
            self.status,
            &self.body,
            self.request_id,
            self.retry_after,
        )
        .into()
    }

    /// A success answer of `call` the client could not read; `message` must not quote the body.
    pub(crate) fn invalid(self, call: &Call, message: &str) -> ApiError {
        ApiError::InvalidResponse {
            method: call.method.clone(),
            path: call.path.to_owned(),
            status: self.status,
            request_id: self.request_id,
            message: message.to_owned(),
        }
    }
}

enum Auth<'a> {
    Basic {
        username: &'a str,
        password: &'a Secret,
    },
    Bearer(&'a Secret),
}

impl OnPremClient {
    /// Builds a client. Fails on a URL that is not `https://` or holds credentials, and on a CA
    /// PEM without certificates.
    pub fn new(
        config: ClientConfig,
        credentials: Arc<dyn CredentialSource>,
    ) -> Result<Self, ApiError> {
        let base_url = validate_base_url(&config.base_url, config.allow_plain_http)?;
        let host = host_key(&base_url);
        let settings = TransportSettings {
            tls: &config.tls,
            allow_plain_http: config.allow_plain_http,
            connect_timeout: config.connect_timeout,
        };
        let transport = match &config.transports {
            Some(shared) => shared.get(&settings)?,
            None => Transport::build(&settings)?,
        };
        let insecure = matches!(config.tls, TlsTrust::InsecureSkipVerify);
        if insecure {
            tracing::warn!(
                url = %base_url,
                "TLS certificate verification for the On-Premises API is DISABLED \
                 (insecure): anyone on the path can read the credentials and the bundle"
            );
        }
        Ok(OnPremClient {
            inner: Arc::new(Inner {
                transport,
                request_timeout: config.request_timeout,
                base_url,
                retry: config.retry,
                credentials,
                token: Mutex::new(TokenSlot::default()),
                insecure,
                login_backoff: config.login_backoff,
                observer: config.observer,
                limiter: config.limiter,
                host,
            }),
        })
    }

    /// The base URL calls go to, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// Whether this client skips TLS verification; callers surface it (status, Events, stderr).
    pub fn tls_verification_disabled(&self) -> bool {
        self.inner.insecure
    }

    /// Sends `call` with authentication, retrying transient failures. Returns the answer when it
    /// is a success (or an accepted 404), else the typed error of the last attempt.
    pub(crate) async fn call(&self, call: &Call) -> Result<Answer, ApiError> {
        let policy = &self.inner.retry;
        let mut retry = 0;
        loop {
            match self.authorized_once(call).await {
                Ok(answer) => return Ok(answer),
                Err(err) if err.is_transient() && retry + 1 < policy.max_attempts => {
                    // ThreadRng is not Send: draw the delay before the await.
                    let delay = policy.delay(retry, err.retry_after(), &mut rand::rng());
                    // Info, not warn: a retried failure is routine; the final error is what
                    // the caller reports.
                    tracing::info!(
                        method = %call.method,
                        path = call.path,
                        reason = err.metric_label(),
                        request_id = err.request_id().unwrap_or("-"),
                        attempt = retry + 1,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "transient On-Premises API failure, retrying"
                    );
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Sends `call` once, with authentication (a 401 still gets its one re-login), without
    /// retrying a transient failure: for an endpoint whose rate limit a retry would spend.
    pub(crate) async fn call_once(&self, call: &Call) -> Result<Answer, ApiError> {
        self.authorized_once(call).await
    }

    /// One attempt: fresh credentials, a token (cached or from a login), the request, and on a
    /// 401 one re-login and resend.
    async fn authorized_once(&self, call: &Call) -> Result<Answer, ApiError> {
        let credentials = self.inner.credentials.credentials().await?;
        match &credentials {
            Credentials::Token(token) => {
                let answer = self.send(call, Auth::Bearer(token)).await?;
                self.accept(CallKind::Api, call, answer)
            }
            Credentials::Login { username, password } => {
                let token = self.token(username, password, None).await?;
                let answer = self.send(call, Auth::Bearer(&token)).await?;
                if answer.status != 401 {
                    return self.accept(CallKind::Api, call, answer);
                }
                tracing::debug!(
                    method = %call.method,
                    path = call.path,
                    request_id = answer.request_id.as_deref().unwrap_or("-"),
                    "token refused, logging in again once"
                );
                let token = self.token(username, password, Some(&token)).await?;
                let answer = self.send(call, Auth::Bearer(&token)).await?;
                self.accept(CallKind::Api, call, answer)
            }
        }
    }

    /// A token for these credentials: the cached one while it is fresh and was not just
    /// refused, else a new login. Holding the lock through the login makes concurrent callers
    /// wait for one login instead of each doing their own.
    async fn token(
        &self,
        username: &str,
        password: &Secret,
        refused: Option<&Secret>,
    ) -> Result<Secret, ApiError> {
        let key = cache_key(username, password);
        let mut slot = self.inner.token.lock().await;
        if let Some(cached) = slot.cached.as_ref() {
            // A different token than the refused one means another caller already logged in.
            let was_refused = refused.is_some_and(|r| r.expose() == cached.token.expose());
            if !was_refused && cached.usable_for(&key, Timestamp::now()) {
                return Ok(cached.token.clone());
            }
        }
        slot.cached = None;
        if let Some(waiting) = slot.refused.pending(&key, Timestamp::now()) {
            return Err(ApiError::LoginRefused(Box::new(waiting)));
        }
        match self.login(username, password, key).await {
            Ok(fresh) => {
                let token = fresh.token.clone();
                slot.cached = Some(fresh);
                slot.refused.clear();
                Ok(token)
            }
            Err(ApiError::Status(refusal))
                if self.inner.login_backoff && refuses_credentials(&refusal) =>
            {
                let location = self.inner.credentials.location();
                let error = slot
                    .refused
                    .record(key, *refusal, Timestamp::now(), location);
                tracing::warn!(
                    refusals = error.refusals,
                    next_attempt = %error.next_attempt,
                    "login refused; no login with the same credentials before the next attempt"
                );
                Err(ApiError::LoginRefused(Box::new(error)))
            }
            Err(other) => Err(other),
        }
    }

    async fn login(
        &self,
        username: &str,
        password: &Secret,
        key: [u8; 32],
    ) -> Result<CachedToken, ApiError> {
        let call = Call {
            method: Method::POST,
            path: LOGIN_PATH,
            body: None,
            accept_not_found: false,
        };
        let answer = self.send(&call, Auth::Basic { username, password }).await?;
        let mut answer = self.accept(CallKind::Login, &call, answer)?;
        let parsed = match parse_login_answer(&answer.body) {
            Ok(parsed) => parsed,
            Err(message) => return Err(answer.invalid(&call, message)),
        };
        // The body holds the token: drop it now that the token is out.
        answer.body.clear();
        let expires = parsed
            .expires_after
            .as_deref()
            .and_then(parse_expires_after);
        if parsed.expires_after.is_some() && expires.is_none() {
            tracing::warn!(
                request_id = answer.request_id.as_deref().unwrap_or("-"),
                "login answer has an unreadable expires_after; the token will be renewed early"
            );
        }
        let server_now = answer.date.unwrap_or_else(Timestamp::now);
        let lifetime = expires.map(|at| at.duration_since(server_now));
        Ok(CachedToken {
            key,
            token: parsed.token,
            refresh_at: refresh_at(Timestamp::now(), lifetime),
        })
    }

    fn accept(&self, kind: CallKind, call: &Call, answer: Answer) -> Result<Answer, ApiError> {
        if answer.is_success() || (call.accept_not_found && answer.status == 404) {
            return Ok(answer);
        }
        Err(answer.into_error(kind, call))
    }

    /// One HTTP exchange, with a fresh request id, logged without headers or bodies.
    async fn send(&self, call: &Call, auth: Auth<'_>) -> Result<Answer, ApiError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let transport = |message: String| TransportError {
            method: call.method.clone(),
            path: call.path.to_owned(),
            request_id: request_id.clone(),
            message,
        };
        let mut request = self
            .inner
            .transport
            .http()
            .request(
                call.method.clone(),
                format!("{}{}", self.inner.base_url, call.path),
            )
            .timeout(self.inner.request_timeout)
            .header(REQUEST_ID_HEADER, &request_id)
            .header(header::AUTHORIZATION, authorization(&auth)?);
        if let Some((content_type, body)) = &call.body {
            // Set by hand: the webapp compares the header string and refuses any parameter.
            request = request
                .header(header::CONTENT_TYPE, *content_type)
                .body(body.clone());
        }
        // Held until the answer is read; the wait for a slot is not part of the latency.
        let _slot = match &self.inner.limiter {
            Some(limiter) => limiter.acquire(&self.inner.host).await,
            None => None,
        };
        let started = Instant::now();
        let outcome = match request.send().await {
            Ok(response) => read_answer(response).await,
            Err(e) => Err(ReadError::Http(e)),
        };
        let took = started.elapsed();
        let duration_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        if let Some(observer) = &self.inner.observer {
            let outcome = match &outcome {
                Ok(answer) => RequestOutcome::Status(answer.status),
                Err(ReadError::TooLarge(status)) => RequestOutcome::Status(*status),
                Err(ReadError::Http(e)) => RequestOutcome::Failed(TransportKind::of(e).label()),
            };
            observer.observe(call.path, &call.method, outcome, took);
        }
        match outcome {
            Ok(mut answer) => {
                tracing::debug!(
                    method = %call.method,
                    path = call.path,
                    status = answer.status,
                    duration_ms,
                    request_id = %request_id,
                    "On-Premises API call"
                );
                answer.request_id.get_or_insert(request_id);
                Ok(answer)
            }
            Err(ReadError::Http(e)) => {
                let err = classify_transport(&e, transport(error_chain(&e)));
                tracing::debug!(
                    method = %call.method,
                    path = call.path,
                    reason = err.metric_label(),
                    duration_ms,
                    request_id = %request_id,
                    "On-Premises API call failed"
                );
                Err(err)
            }
            Err(ReadError::TooLarge(status)) => Err(ApiError::InvalidResponse {
                method: call.method.clone(),
                path: call.path.to_owned(),
                status,
                request_id: Some(request_id),
                message: format!("answer body larger than {MAX_BODY_BYTES} bytes"),
            }),
        }
    }
}

fn validate_base_url(raw: &str, allow_plain_http: bool) -> Result<String, ApiError> {
    // The parse error is reported without the input: a URL may carry a password.
    let url = Url::parse(raw.trim())
        .map_err(|e| ApiError::Config(format!("the API URL is not a valid URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::Config(
            "the API URL must not contain credentials; supply them separately".into(),
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_plain_http => {
            tracing::warn!(url = %url, "the On-Premises API is reached over plain http: credentials cross the network unencrypted");
        }
        "http" => {
            return Err(ApiError::Config(
                "the API URL uses plain http; use https, or allow plain http explicitly".into(),
            ));
        }
        other => {
            return Err(ApiError::Config(format!(
                "the API URL must use https, not {other}"
            )));
        }
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ApiError::Config(
            "the API URL must not have a query or fragment".into(),
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// `host:port` of a validated base URL (the port defaulted by its scheme).
fn host_key(base_url: &str) -> String {
    Url::parse(base_url)
        .ok()
        .map(|url| {
            format!(
                "{}:{}",
                url.host_str().unwrap_or_default(),
                url.port_or_known_default().unwrap_or_default()
            )
        })
        .unwrap_or_else(|| base_url.to_owned())
}

fn authorization(auth: &Auth<'_>) -> Result<HeaderValue, ApiError> {
    let (value, what) = match auth {
        Auth::Basic { username, password } => {
            let pair = format!("{username}:{}", password.expose());
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            (format!("Basic {encoded}"), "username")
        }
        Auth::Bearer(token) => (format!("Bearer {}", token.expose().trim()), "token"),
    };
    let mut value = HeaderValue::from_str(&value).map_err(|_| {
        CredentialError::new(format!(
            "the {what} holds characters not allowed in an HTTP header"
        ))
    })?;
    // Keeps the value out of any Debug output of the request (reqwest, hyper).
    value.set_sensitive(true);
    Ok(value)
}

enum ReadError {
    Http(reqwest::Error),
    TooLarge(u16),
}

impl From<reqwest::Error> for ReadError {
    fn from(e: reqwest::Error) -> Self {
        ReadError::Http(e)
    }
}

async fn read_answer(mut response: reqwest::Response) -> Result<Answer, ReadError> {
    let status = response.status().as_u16();
    let headers = response.headers();
    let request_id = header_text(headers, REQUEST_ID_HEADER).map(str::to_owned);
    let retry_after = header_text(headers, header::RETRY_AFTER.as_str())
        .and_then(|v| parse_retry_after(v, Timestamp::now()));
    let date = header_text(headers, header::DATE.as_str()).and_then(|v| {
        jiff::fmt::rfc2822::DateTimeParser::new()
            .parse_timestamp(v)
            .ok()
    });
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ReadError::TooLarge(status));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        request_id,
        retry_after,
        date,
        body,
    })
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The error and its sources on one line, without repeats (hyper and reqwest often wrap the
/// same message twice).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

fn classify_transport(err: &reqwest::Error, transport: TransportError) -> ApiError {
    let transport = Box::new(transport);
    match TransportKind::of(err) {
        TransportKind::Tls => ApiError::Tls(transport),
        TransportKind::Timeout => ApiError::Timeout(transport),
        TransportKind::Config => ApiError::Config(transport.message),
        TransportKind::Connect => ApiError::Connect(transport),
    }
}

/// Why a request got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TransportKind {
    Tls,
    Timeout,
    Config,
    /// Connect errors, resets and a connection closed mid-answer are all "the API was not
    /// there for this request": transient.
    Connect,
}

impl TransportKind {
    fn of(err: &reqwest::Error) -> Self {
        if is_tls_failure(err) {
            TransportKind::Tls
        } else if err.is_timeout() {
            TransportKind::Timeout
        } else if err.is_builder() {
            TransportKind::Config
        } else {
            TransportKind::Connect
        }
    }

    /// The metric label, the same as the reason of the [`ApiError`] it becomes.
    fn label(self) -> &'static str {
        match self {
            TransportKind::Tls => "Tls",
            TransportKind::Timeout => "Timeout",
            TransportKind::Config => "Config",
            TransportKind::Connect => "Connect",
        }
    }
}

/// Whether a rustls error sits in the chain. `io::Error::source()` skips the error it wraps
/// (and tokio-rustls wraps io errors in io errors), so that link is followed with `get_ref()`.
fn is_tls_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.is::<rustls::Error>() {
            return true;
        }
        current = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_rules() {
        assert_eq!(
            validate_base_url("https://webapp.wa.svc:443/", false).unwrap(),
            "https://webapp.wa.svc"
        );
        assert_eq!(
            validate_base_url(" https://10.0.0.1:9090/prefix/ ", false).unwrap(),
            "https://10.0.0.1:9090/prefix"
        );
        for bad in [
            "http://webapp:443",
            "https://admin:pw@webapp",
            "https://webapp/?x=1",
            "webapp:443",
            "",
        ] {
            let err = validate_base_url(bad, false).unwrap_err();
            assert_eq!(err.metric_label(), "Config", "{bad}");
        }
        let err = validate_base_url("https://admin:S3cret!@webapp", false).unwrap_err();
        assert!(!err.to_string().contains("S3cret"), "{err}");
        assert_eq!(
            validate_base_url("http://webapp:8080/", true).unwrap(),
            "http://webapp:8080"
        );
        assert!(validate_base_url("ftp://webapp", true).is_err());
    }

    #[test]
    fn authorization_headers_are_sensitive_and_well_formed() {
        let password = Secret::new("Passw0rd!");
        let basic = authorization(&Auth::Basic {
            username: "admin",
            password: &password,
        })
        .unwrap();
        assert!(basic.is_sensitive());
        let expected = base64::engine::general_purpose::STANDARD.encode("admin:Passw0rd!");
        assert_eq!(basic.to_str().unwrap(), format!("Basic {expected}"));
        assert!(!format!("{basic:?}").contains(&expected));

        let token = Secret::new("tok.en\n");
        let bearer = authorization(&Auth::Bearer(&token)).unwrap();
        assert_eq!(bearer.to_str().unwrap(), "Bearer tok.en");

        let broken = Secret::new("a\nb");
        let err = authorization(&Auth::Bearer(&broken)).unwrap_err();
        assert_eq!(err.metric_label(), "Credentials");
        assert!(!err.to_string().contains("a\nb"));
    }

    #[test]
    fn tls_errors_are_found_behind_io_errors() {
        // The shape tokio-rustls and hyper-util produce: io error in io error.
        let inner = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        assert!(is_tls_failure(&inner));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(!is_tls_failure(&plain));
    }

    #[test]
    fn error_chain_joins_without_repeats() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(error_chain(&inner), "refused");
    }

    #[test]
    fn ca_pem_without_certificates_is_refused() {
        let config = ClientConfig::new("https://127.0.0.1:1", TlsTrust::CaPem("not a pem".into()));
        let err = OnPremClient::new(config, Arc::new(Credentials::token("t"))).unwrap_err();
        assert_eq!(err.metric_label(), "Config");
        assert_eq!(
            format!("{:?}", TlsTrust::CaPem("abc".into())),
            "CaPem(3 bytes)"
        );
    }

    /// Counts what the client reports, as the operator's metrics do.
    #[derive(Debug, Default)]
    struct Seen(std::sync::Mutex<Vec<RequestOutcome>>);

    impl RequestObserver for Seen {
        fn observe(&self, _: &'static str, _: &Method, outcome: RequestOutcome, _: Duration) {
            self.0.lock().unwrap().push(outcome);
        }
    }

    #[tokio::test]
    async fn requests_wait_for_a_slot_of_their_host_and_are_observed() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let limiter = Arc::new(RequestLimiter::new(4, 1));
        let seen = Arc::new(Seen::default());
        let mut config = ClientConfig::new(
            format!("https://127.0.0.1:{port}"),
            TlsTrust::InsecureSkipVerify,
        );
        config.retry = RetryPolicy::none();
        config.limiter = Some(Arc::clone(&limiter));
        config.observer = Some(Arc::clone(&seen) as Arc<dyn RequestObserver>);
        let client = OnPremClient::new(config, Arc::new(Credentials::token("t"))).unwrap();
        // Another request to the same host holds its one slot.
        let held = limiter.acquire(&format!("127.0.0.1:{port}")).await;
        let call = tokio::spawn(async move { client.get_webhook_ca().await });
        // A refused connection on loopback fails within milliseconds; this one cannot start.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(seen.0.lock().unwrap().is_empty(), "sent without a slot");
        drop(held);
        let err = call.await.unwrap().unwrap_err();
        assert_eq!(err.metric_label(), "Connect");
        assert_eq!(*seen.0.lock().unwrap(), [RequestOutcome::Failed("Connect")]);
    }

    #[tokio::test]
    async fn connection_refused_is_a_transient_connect_error() {
        // Bind then drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = ClientConfig::new(
            format!("https://127.0.0.1:{port}"),
            TlsTrust::InsecureSkipVerify,
        );
        config.retry = RetryPolicy::none();
        let client = OnPremClient::new(config, Arc::new(Credentials::token("t"))).unwrap();
        assert!(client.tls_verification_disabled());
        let Err(err) = client
            .call(&Call {
                method: Method::GET,
                path: "/v1/health",
                body: None,
                accept_not_found: false,
            })
            .await
        else {
            panic!("nothing listens on port {port}");
        };
        assert_eq!(err.metric_label(), "Connect", "{err}");
        assert!(err.is_transient());
        assert!(err.request_id().is_some());
    }
}
