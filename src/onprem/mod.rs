//! The On-Premises API client: login with a token cache, the webhook CA certificate endpoints,
//! health, typed errors and retries.
//!
//! ```no_run
//! # async fn demo() -> Result<(), webhook_ca_operator::onprem::ApiError> {
//! use std::sync::Arc;
//! use webhook_ca_operator::onprem::{ClientConfig, Credentials, OnPremClient, TlsTrust};
//!
//! let config = ClientConfig::new("https://webapp:443", TlsTrust::CaPem("-----BEGIN...".into()));
//! let client = OnPremClient::new(config, Arc::new(Credentials::login("admin", "...")))?;
//! let stored: Option<String> = client.get_webhook_ca().await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod certificates;
pub mod client;
pub mod error;
pub mod health;
pub mod login_backoff;
pub mod observe;
pub mod pinning;
pub mod retry;
pub mod settings;
pub mod transport;

pub use auth::{CredentialError, CredentialSource, Credentials, Secret, from_fn};
pub use certificates::{DeleteOutcome, UPLOAD_CONTENT_TYPE, WEBHOOK_CA_PATH};
pub use client::{ClientConfig, OnPremClient, REQUEST_ID_HEADER, TlsTrust};
pub use error::{ApiError, EnvelopeError, Reason};
pub use health::{GatewayStatus, Health, NodeHealth, NodeRole};
pub use observe::{RequestLimiter, RequestObserver, RequestOutcome, Slot};
pub use retry::RetryPolicy;
pub use settings::APPLICATION_SETTINGS_PATH;
pub use transport::Transports;
