//! The connection side of API clients: the HTTP client with its TLS configuration, built once
//! per way of trusting the webapp and shared by every [`super::OnPremClient`] that trusts it
//! the same way.
//!
//! What a client costs is mostly here, not in its token: a rustls configuration with its
//! verifier and session cache (the system roots alone are ~100 KiB), and per kept-alive
//! connection the TLS and HTTP buffers (~75 KiB). An operator serving a thousand installations
//! held a thousand of each (190 MiB in the fleet benchmark). So the configuration is shared
//! through [`Transports`], and a connection is kept only for the requests of one pass (one per
//! host, closed 2 s after its last request): the connections alive at once then follow the passes
//! running at once, not the number of installations, and a pass still pays one handshake, not
//! one per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::client::TlsTrust;
use super::error::ApiError;
use super::pinning;

/// How long a connection is kept after its last request. A pass sends its requests back to
/// back; the next pass of the same resource comes minutes later, when keeping the connection
/// would only have cost memory.
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// An HTTP client for one way of trusting the webapp. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Transport {
    http: Arc<reqwest::Client>,
}

impl Transport {
    /// A transport of its own, shared with nobody (one-shot commands).
    pub(crate) fn build(settings: &TransportSettings<'_>) -> Result<Self, ApiError> {
        Ok(Transport {
            http: Arc::new(build_http(settings)?),
        })
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

/// What a transport is built from: everything about a connection that is not the request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TransportSettings<'a> {
    pub tls: &'a TlsTrust,
    pub allow_plain_http: bool,
    pub connect_timeout: Duration,
}

impl TransportSettings<'_> {
    /// Equal for settings that build the same transport. A CA is named by the hash of its
    /// text: two resources pasting the same PEM share, a reformatted copy gets its own.
    fn key(&self) -> String {
        let trust = match self.tls {
            TlsTrust::SystemRoots => "system".to_owned(),
            TlsTrust::InsecureSkipVerify => "insecure".to_owned(),
            TlsTrust::CaPem(pem) => format!("ca:{}", hex::encode(Sha256::digest(pem.as_bytes()))),
        };
        format!(
            "{trust}|plain-http:{}|connect:{}ms",
            self.allow_plain_http,
            self.connect_timeout.as_millis()
        )
    }
}

/// The transports in use, by their settings. Holds them weakly: a transport no client uses
/// any more (its resources deleted, or their CA rotated) is dropped with its last client.
#[derive(Default)]
pub struct Transports {
    built: Mutex<HashMap<String, Weak<reqwest::Client>>>,
}

impl std::fmt::Debug for Transports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transports")
            .field("in_use", &self.in_use())
            .finish()
    }
}

impl Transports {
    pub(crate) fn get(&self, settings: &TransportSettings<'_>) -> Result<Transport, ApiError> {
        let key = settings.key();
        // A poisoned lock only means a build panicked mid-insert; the map is still usable.
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(http) = built.get(&key).and_then(Weak::upgrade) {
            return Ok(Transport { http });
        }
        let transport = Transport::build(settings)?;
        built.retain(|_, weak| weak.strong_count() > 0);
        built.insert(key, Arc::downgrade(&transport.http));
        Ok(transport)
    }

    /// How many transports some client still uses.
    pub fn in_use(&self) -> usize {
        self.built
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|weak| weak.strong_count() > 0)
            .count()
    }
}

fn build_http(settings: &TransportSettings<'_>) -> Result<reqwest::Client, ApiError> {
    crate::tls::install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout)
        // See the module's documentation: a connection serves the few requests of one pass
        // (they follow each other within milliseconds) and is closed soon after.
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(IDLE_TIMEOUT)
        // A redirect would carry the Authorization header somewhere the user did not name.
        .redirect(reqwest::redirect::Policy::none())
        .https_only(!settings.allow_plain_http)
        .user_agent(format!("{}/{}", crate::NAME, env!("CARGO_PKG_VERSION")));
    match settings.tls {
        TlsTrust::SystemRoots => {}
        TlsTrust::CaPem(pem) => {
            // Its own verifier: a self-signed webapp certificate given as its own CA is
            // accepted as a pin (see `pinning`), which rustls's stock verifier refuses.
            let tls = pinning::client_config(pem).map_err(|e| ApiError::Config(e.to_string()))?;
            builder = builder.use_preconfigured_tls(tls);
        }
        TlsTrust::InsecureSkipVerify => {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
    }
    builder
        .build()
        .map_err(|e| ApiError::Config(format!("cannot build the HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(tls: &TlsTrust) -> TransportSettings<'_> {
        TransportSettings {
            tls,
            allow_plain_http: false,
            connect_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn clients_that_trust_alike_share_one_transport_until_the_last_is_gone() {
        let transports = Transports::default();
        let ca = TlsTrust::CaPem(test_support::certs::ca_pem("shared"));
        let other = TlsTrust::CaPem(test_support::certs::ca_pem("other"));
        let a = transports.get(&settings(&ca)).unwrap();
        let b = transports.get(&settings(&ca)).unwrap();
        assert!(Arc::ptr_eq(&a.http, &b.http));
        let c = transports.get(&settings(&other)).unwrap();
        assert!(!Arc::ptr_eq(&a.http, &c.http));
        let plain = TransportSettings {
            allow_plain_http: true,
            ..settings(&ca)
        };
        let d = transports.get(&plain).unwrap();
        assert!(!Arc::ptr_eq(&a.http, &d.http));
        assert_eq!(transports.in_use(), 3);
        drop((a, b));
        assert_eq!(transports.in_use(), 2);
        // A new build drops the entries of transports nobody uses.
        let _system = transports.get(&settings(&TlsTrust::SystemRoots)).unwrap();
        assert_eq!(transports.built.lock().unwrap().len(), 3);
        drop((c, d));
        assert_eq!(transports.in_use(), 1);
    }

    #[test]
    fn a_ca_without_certificates_builds_no_transport() {
        let transports = Transports::default();
        let err = transports
            .get(&settings(&TlsTrust::CaPem("not a pem".into())))
            .err()
            .unwrap();
        assert_eq!(err.metric_label(), "Config");
        assert_eq!(transports.in_use(), 0);
    }
}
