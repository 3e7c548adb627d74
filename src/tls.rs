//! Process-wide TLS setup.

/// Installs aws-lc-rs as the process-wide rustls provider, the one kube and reqwest are both built
/// with. Safe to call more than once: a second call finds the provider already installed.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is the state we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
