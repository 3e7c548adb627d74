//! TLS trust for `TlsTrust::CaPem`: the usual WebPKI verification against the given
//! certificates, plus pinning of a presented certificate that is exactly one of them.
//!
//! Why: the webapp's documented recipe for its certificate is `openssl req -x509 ...`, a
//! self-signed certificate that OpenSSL marks `CA:TRUE`. Given that same certificate as the CA,
//! rustls refuses it (`CaUsedAsEndEntity`: a CA must not serve as a leaf), where curl and OpenSSL
//! accept it. A user who hands over exactly the certificate the server presents has pinned it; that
//! is at least as strong as a chain to a CA, because the handshake signature (still checked) proves
//! the server holds that certificate's private key. Anything else keeps full verification.

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;
use x509_parser::time::ASN1Time;

/// Why the trusted certificates cannot make a TLS configuration. Never holds certificate bytes.
#[derive(Debug, thiserror::Error)]
pub enum PinningError {
    #[error("the CA PEM for the API is not valid: {0}")]
    Pem(#[from] crate::bundle::PemError),
    #[error("the CA PEM for the API holds no certificate")]
    NoCertificate,
    #[error("the CA PEM for the API holds no certificate usable as a trust anchor: {0}")]
    NoTrustAnchor(String),
    #[error("cannot set up TLS verification: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot set up TLS verification: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
}

/// A rustls client configuration that trusts the certificates of `pem`, as CAs and as pins.
pub fn client_config(pem: &str) -> Result<rustls::ClientConfig, PinningError> {
    let ders = crate::bundle::certificate_ders(pem)?;
    if ders.is_empty() {
        return Err(PinningError::NoCertificate);
    }
    let trusted: Vec<CertificateDer<'static>> =
        ders.into_iter().map(CertificateDer::from).collect();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(trusted.iter().cloned());
    if added == 0 {
        // A pin alone would still work, but a certificate webpki cannot parse as an anchor
        // cannot be verified as an end entity either: say so now rather than at each handshake.
        return Err(PinningError::NoTrustAnchor(
            "webpki could not parse any of them".to_owned(),
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = PinningVerifier::new(roots, trusted, Arc::clone(&provider))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}

/// WebPKI verification, with an exception for a presented certificate that is DER-equal to one
/// of the trusted ones and valid now.
pub struct PinningVerifier {
    inner: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl fmt::Debug for PinningVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinningVerifier")
            .field("pinned", &self.pinned.len())
            .finish_non_exhaustive()
    }
}

impl PinningVerifier {
    fn new(
        roots: RootCertStore,
        pinned: Vec<CertificateDer<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, PinningError> {
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
        Ok(Self { inner, pinned })
    }

    /// Whether `end_entity` is one of the trusted certificates, byte for byte, and within its
    /// validity period at `now`. The name is not checked: the documented recipe makes a
    /// certificate with only a common name, which rustls never reads as a host name; pinning the
    /// exact certificate already says which server is meant.
    fn is_pinned(&self, end_entity: &CertificateDer<'_>, now: UnixTime) -> bool {
        if !self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return false;
        }
        let Ok((_, cert)) = X509Certificate::from_der(end_entity.as_ref()) else {
            return false;
        };
        i64::try_from(now.as_secs())
            .ok()
            .and_then(|secs| ASN1Time::from_timestamp(secs).ok())
            .is_some_and(|at| cert.validity().is_valid_at(at))
    }
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => Ok(verified),
            Err(_) if self.is_pinned(end_entity, now) => {
                tracing::debug!(
                    "the API's certificate is one of the trusted ones: accepted as pinned"
                );
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    // The handshake signatures are checked by WebPKI's verifier in every case, pinned or not:
    // they prove the server holds the private key of the certificate it presented.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A self-signed CA:TRUE certificate, valid (rcgen's default) from 1975 to 4096.
    fn self_signed() -> String {
        test_support::certs::ca_pem("webapp")
    }

    fn verifier(pem: &str) -> PinningVerifier {
        let ders = crate::bundle::certificate_ders(pem).unwrap();
        let trusted: Vec<CertificateDer<'static>> =
            ders.into_iter().map(CertificateDer::from).collect();
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(trusted.iter().cloned());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        PinningVerifier::new(roots, trusted, provider).unwrap()
    }

    #[test]
    fn only_an_identical_certificate_within_its_validity_is_pinned() {
        let (a, b) = (self_signed(), self_signed());
        let v = verifier(&a);
        let der = |pem: &str| {
            CertificateDer::from(crate::bundle::certificate_ders(pem).unwrap()[0].clone())
        };
        let now = UnixTime::now();
        assert!(v.is_pinned(&der(&a), now));
        assert!(
            !v.is_pinned(&der(&b), now),
            "another certificate is not pinned"
        );
        // 1970 is before rcgen's default notBefore (1975).
        let before = UnixTime::since_unix_epoch(Duration::from_secs(86_400));
        assert!(
            !v.is_pinned(&der(&a), before),
            "outside its validity it is not pinned"
        );
        // And the WebPKI verdict on the pinned certificate is still "CA used as end entity".
        let name = ServerName::try_from("webapp").unwrap();
        let err = v
            .inner
            .verify_server_cert(&der(&a), &[], &name, &[], now)
            .unwrap_err();
        assert!(format!("{err:?}").contains("CaUsedAsEndEntity"), "{err:?}");
        assert!(v.verify_server_cert(&der(&a), &[], &name, &[], now).is_ok());
        assert!(
            v.verify_server_cert(&der(&b), &[], &name, &[], now)
                .is_err()
        );
    }

    #[test]
    fn pem_without_certificates_is_refused() {
        assert!(matches!(
            client_config("no pem here"),
            Err(PinningError::NoCertificate)
        ));
        assert!(client_config(&self_signed()).is_ok());
    }
}
