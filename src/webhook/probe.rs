//! The one piece of network I/O of the trust check: a TLS handshake with the webhook server
//! that records the chain it presents. No HTTP request is sent; the connection is closed right
//! after the handshake.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

/// Why no chain was seen.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot resolve {host}: {source}")]
    Dns {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no TLS handshake with {endpoint} within {}s", .after.as_secs_f64())]
    Timeout { endpoint: String, after: Duration },
    #[error("the TLS handshake with {endpoint} failed before a certificate was seen: {source}")]
    Handshake {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up TLS: {0}")]
    Setup(#[from] rustls::Error),
}

/// Connects to `host:port`, completes a TLS handshake for `name` within `timeout`, and returns
/// the certificates the server presented, leaf first. Nothing is verified here beyond the
/// handshake signature (which proves the server holds the leaf's key); the verdict is
/// [`super::verify::verify`]'s.
pub async fn presented_chain(
    host: &str,
    port: u16,
    name: ServerName<'static>,
    timeout: Duration,
) -> Result<Vec<CertificateDer<'static>>, ProbeError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let recorder = Arc::new(Recorder {
        seen: Mutex::default(),
        provider: Arc::clone(&provider),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::clone(&recorder) as Arc<dyn ServerCertVerifier>)
        .with_no_client_auth();
    let endpoint = format!("{host}:{port}");
    let result = tokio::time::timeout(
        timeout,
        handshake(host, port, name, Arc::new(config), &endpoint),
    )
    .await;
    // A chain seen is a chain to judge, whatever happened after it (a server that wants a
    // client certificate, say, ends the handshake after sending its own).
    if let Some(chain) = recorder.take() {
        return Ok(chain);
    }
    match result {
        Err(_) => Err(ProbeError::Timeout {
            endpoint,
            after: timeout,
        }),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Err(ProbeError::Handshake {
            endpoint,
            source: std::io::Error::other("no certificate was presented"),
        }),
    }
}

async fn handshake(
    host: &str,
    port: u16,
    name: ServerName<'static>,
    config: Arc<rustls::ClientConfig>,
    endpoint: &str,
) -> Result<(), ProbeError> {
    let addresses: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| ProbeError::Dns {
            host: host.to_owned(),
            source,
        })?
        .collect();
    let mut last = None;
    let mut stream = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let stream = match (stream, last) {
        (Some(stream), _) => stream,
        (None, Some(source)) => {
            return Err(ProbeError::Connect {
                endpoint: endpoint.to_owned(),
                source,
            });
        }
        (None, None) => {
            return Err(ProbeError::NoAddress {
                host: host.to_owned(),
            });
        }
    };
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|source| ProbeError::Handshake {
            endpoint: endpoint.to_owned(),
            source,
        })?;
    // close_notify; the server's answer to it does not matter.
    let _ = tls.shutdown().await;
    Ok(())
}

/// Accepts any chain and keeps it; checks the handshake signatures properly.
#[derive(Debug)]
struct Recorder {
    seen: Mutex<Option<Vec<CertificateDer<'static>>>>,
    provider: Arc<CryptoProvider>,
}

impl Recorder {
    fn take(&self) -> Option<Vec<CertificateDer<'static>>> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(chain);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
