//! A simulator of the WhatsApp Business On-Premises API endpoints webhook-ca-operator uses
//! (`shared/docs/onprem-api.md`): login/logout, the webhook CA certificate endpoints, health and
//! the application settings' webhook URL,
//! over TLS with a throwaway CA, with both documented response variants, fault injection and a
//! request log. Tests start it in-process with [`start`]; the `onprem-sim` binary runs it as a
//! process driven over the `/_sim/` control API (the local demo).
//!
//! It is a crate of its own so that the operator's binary holds no fake login server, and it
//! shares no code with the operator's client: it writes the API's answers from the
//! documentation, so a misreading in the client cannot hide behind the same misreading here.

mod control;
mod envelope;
mod handlers;
mod layer;
mod model;
mod server;
mod settings;
mod state;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Deserialize;

pub use model::{
    DeleteMissing, Fault, FaultAction, HealthNode, HealthReport, RateLimit, RequestRecord,
    Responses, ResponsesUpdate, SuccessBody, Variant,
};

pub use settings::ApplicationSettings;
use state::Shared;

/// The default admin's password: strong enough for the webapp's policy, known to tests.
pub const DEFAULT_ADMIN_PASSWORD: &str = "Sim-Adm1n-Passw0rd!";
/// The installation's factory password, which must be changed at first login.
pub const FACTORY_PASSWORD: &str = "secret";

/// The process's observer of issued bearer tokens, set once by [`observe_issued_tokens`].
static TOKEN_OBSERVER: OnceLock<fn(&str)> = OnceLock::new();

/// Sets a function every simulator of this process calls with each bearer token it issues (by a
/// login or [`Simulator::issue_token`]) from now on. The tests' support records them for the
/// secret scan that runs after the tests, also for simulators a test starts by itself, which
/// no helper sees dropped. Only the first call sets it; returns whether this one did.
pub fn observe_issued_tokens(observer: fn(&str)) -> bool {
    TOKEN_OBSERVER.set(observer).is_ok()
}

/// Tells the observer, if one is set, about a token just issued.
pub(crate) fn token_issued(token: &str) {
    if let Some(observer) = TOKEN_OBSERVER.get() {
        observer(token);
    }
}

/// An account of the simulated webapp.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimUser {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub admin: bool,
    /// Logging in without `new_password` answers 401/1024 until the password is changed.
    #[serde(default)]
    pub must_change_password: bool,
}

impl SimUser {
    pub fn admin(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
            admin: true,
            must_change_password: false,
        }
    }

    pub fn regular(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            admin: false,
            ..Self::admin(username, password)
        }
    }

    /// `admin`/`secret` as a fresh installation has it: the password must be changed first.
    pub fn factory_admin() -> Self {
        Self {
            must_change_password: true,
            ..Self::admin("admin", FACTORY_PASSWORD)
        }
    }
}

impl fmt::Debug for SimUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimUser")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("admin", &self.admin)
            .field("must_change_password", &self.must_change_password)
            .finish()
    }
}

/// A certificate chain and its private key, in PEM.
#[derive(Clone)]
pub struct TlsIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

/// How to start a simulator. `Default` gives HTTPS on a free loopback port with one admin
/// (`admin` / [`DEFAULT_ADMIN_PASSWORD`]) and the documented limits.
#[derive(Clone)]
pub struct SimConfig {
    /// Must be a loopback address; port 0 picks a free port.
    pub bind: SocketAddr,
    /// HTTPS with a generated certificate; `false` serves plain HTTP.
    pub tls: bool,
    /// Serve this certificate and key instead of generated ones (e.g. a self-signed certificate
    /// made with `openssl req -x509`); `ca_pem()` then returns the certificate.
    pub tls_identity: Option<TlsIdentity>,
    pub users: Vec<SimUser>,
    /// Accepted by `GET /v1/health` as `Authorization: Apikey <key>`.
    pub api_key: Option<String>,
    pub token_lifetime: Duration,
    /// How long after expiry a token is still accepted.
    pub token_grace: Duration,
    /// Which documented behaviour the webhook CA endpoints play.
    pub variant: Variant,
    /// The body of a successful POST or DELETE; `None` follows the variant.
    pub success_body: Option<SuccessBody>,
    /// What DELETE answers with nothing stored.
    pub delete_missing: DeleteMissing,
    /// `meta.version` of every answer.
    pub version: String,
    pub health: HealthReport,
    /// `None` disables the health rate limit.
    pub health_rate_limit: Option<RateLimit>,
    /// Failed logins per client IP before 429/1015; `None` disables the limit.
    pub login_failure_limit: Option<RateLimit>,
    /// Enables the `/_sim/` control API, guarded by this bearer token.
    pub control_token: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            tls: true,
            tls_identity: None,
            users: vec![SimUser::admin("admin", DEFAULT_ADMIN_PASSWORD)],
            api_key: None,
            token_lifetime: Duration::from_secs(604_800),
            token_grace: Duration::from_secs(600),
            variant: Variant::default(),
            success_body: None,
            delete_missing: DeleteMissing::default(),
            version: "v2.53.1".to_owned(),
            health: HealthReport::default(),
            health_rate_limit: Some(RateLimit {
                calls: 10,
                per: Duration::from_secs(60),
            }),
            login_failure_limit: Some(RateLimit {
                calls: 30,
                per: Duration::from_secs(3600),
            }),
            control_token: None,
        }
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("bind", &self.bind)
            .field("tls", &self.tls)
            .field(
                "tls_identity",
                &self.tls_identity.as_ref().map(|_| "<given>"),
            )
            .field("users", &self.users)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("token_lifetime", &self.token_lifetime)
            .field("token_grace", &self.token_grace)
            .field("variant", &self.variant)
            .field("success_body", &self.success_body)
            .field("delete_missing", &self.delete_missing)
            .field("version", &self.version)
            .field("health", &self.health)
            .field("health_rate_limit", &self.health_rate_limit)
            .field("login_failure_limit", &self.login_failure_limit)
            .field(
                "control_token",
                &self.control_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulator refuses to listen on {0}: only loopback addresses are allowed")]
    NotLoopback(SocketAddr),
    #[error("simulator cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("simulator cannot generate its TLS certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("simulator cannot read the given TLS identity: {0}")]
    Identity(#[from] rustls_pki_types::pem::Error),
    #[error("simulator TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("simulator has no user {0:?}")]
    UnknownUser(String),
}

/// A running simulator. Stops on [`Simulator::shutdown`] or when dropped.
pub struct Simulator {
    shared: Arc<Shared>,
    server: server::Running,
    url: String,
    ca_pem: Option<String>,
}

/// Starts a simulator and returns once it accepts connections.
pub async fn start(cfg: SimConfig) -> Result<Simulator, SimError> {
    if !cfg.bind.ip().is_loopback() {
        return Err(SimError::NotLoopback(cfg.bind));
    }
    let tls = match (&cfg.tls_identity, cfg.tls) {
        (_, false) => None,
        (Some(identity), true) => Some(server::given_tls(identity)?),
        (None, true) => Some(server::generate_tls()?),
    };
    let shared = Arc::new(Shared::new(&cfg));
    let app = handlers::routes()
        .merge(control::routes(Arc::clone(&shared)))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            layer::around,
        ))
        .with_state(Arc::clone(&shared));
    let (ca_pem, tls_config) = match tls {
        Some(t) => (Some(t.ca_pem), Some(t.config)),
        None => (None, None),
    };
    let server = server::spawn(cfg.bind, tls_config, app).await?;
    let scheme = if cfg.tls { "https" } else { "http" };
    let url = format!("{scheme}://{}", server.addr);
    Ok(Simulator {
        shared,
        server,
        url,
        ca_pem,
    })
}

impl Simulator {
    /// `https://127.0.0.1:PORT` (or `http://` when started without TLS), no trailing slash.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The PEM of the CA a client must trust; `None` for plain HTTP.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The stored bundle as text (lossy if the uploaded bytes were not UTF-8).
    pub fn stored_bundle(&self) -> Option<String> {
        self.shared
            .lock()
            .bundle
            .as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// The stored bundle byte for byte, as uploaded.
    pub fn stored_bundle_bytes(&self) -> Option<Vec<u8>> {
        self.shared.lock().bundle.clone()
    }

    pub fn set_stored_bundle(&self, bundle: Option<String>) {
        self.shared.lock().bundle = bundle.map(String::into_bytes);
    }

    /// Arms a fault; several armed faults are tried in the order they were injected.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().add_fault(fault);
    }

    pub fn clear_faults(&self) {
        self.shared.lock().clear_faults();
    }

    /// The faults still armed, with their remaining counts.
    pub fn pending_faults(&self) -> Vec<Fault> {
        self.shared.lock().faults()
    }

    /// Switches the variant; the success body follows it unless chosen with
    /// [`Simulator::set_success_body`].
    pub fn set_variant(&self, variant: Variant) {
        self.shared.lock().responses.variant = variant;
    }

    /// `None` returns to the variant's default.
    pub fn set_success_body(&self, body: Option<SuccessBody>) {
        self.shared.lock().responses.success_body = body;
    }

    pub fn set_delete_missing(&self, answer: DeleteMissing) {
        self.shared.lock().responses.delete_missing = answer;
    }

    pub fn responses(&self) -> Responses {
        self.shared.lock().responses
    }

    /// Added before every API request is handled.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// While set, the certificate endpoints answer 500/1014 as with no reachable master.
    pub fn set_core_unreachable(&self, unreachable: bool) {
        self.shared.lock().core_unreachable = unreachable;
    }

    pub fn set_health(&self, report: HealthReport) {
        self.shared.lock().health = report;
    }

    /// The webhook URL `GET /v1/settings/application` answers (`None`: no webhook configured).
    pub fn set_webhook_url(&self, url: Option<String>) {
        self.shared.lock().settings.webhook_url = url;
    }

    /// The whole application settings: the webhook URL and the shape of the answer.
    pub fn set_application_settings(&self, settings: ApplicationSettings) {
        self.shared.lock().settings = settings;
    }

    pub fn application_settings(&self) -> ApplicationSettings {
        self.shared.lock().settings.clone()
    }

    /// Applies to tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.lock().token_lifetime = lifetime;
    }

    /// The API requests seen so far (not control requests), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().clear_requests();
    }

    /// A token for `username` as a login would give it, for tests using a static bearer token.
    pub fn issue_token(&self, username: &str) -> Result<String, SimError> {
        self.shared
            .lock()
            .issue_token(username, jiff::Timestamp::now())
            .map(|issued| issued.token)
            .ok_or_else(|| SimError::UnknownUser(username.to_owned()))
    }

    /// Every bearer token the simulator has issued (by logins and [`Self::issue_token`]),
    /// revoked and expired ones included, for tests that check no token leaked.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.lock().issued_tokens()
    }

    /// Invalidates every issued token, so clients have to log in again.
    pub fn revoke_tokens(&self) {
        self.shared.lock().revoke_all();
    }

    /// Closes the listening port and drops every open connection: clients get "connection
    /// refused", as from a webapp that is down, until [`Simulator::reopen_port`]. The state
    /// (stored bundle, tokens, faults, request log) stays. In-process only: the control API is
    /// served on the same port.
    pub async fn close_port(&self) {
        self.server.close_port().await;
    }

    /// Listens on the same address again after [`Simulator::close_port`]; fails if another
    /// program took the port meanwhile.
    pub async fn reopen_port(&self) -> Result<(), SimError> {
        self.server.reopen_port().await
    }

    /// Stops accepting, lets open requests finish (up to a few seconds), then returns.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}
