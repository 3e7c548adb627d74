//! A webhook endpoint for the trust check's tests: a TLS server on loopback whose certificate
//! chain a test swaps at will, counting handshakes and connections that sent any request bytes
//! (the check must send none).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A TLS server on `127.0.0.1`, stopped on drop.
pub struct WebhookServer {
    addr: SocketAddr,
    config: Arc<Mutex<Arc<ServerConfig>>>,
    handshakes: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// A TLS server configuration presenting `chain_pem` (leaf first) with `key_pem`.
fn config(chain_pem: &str, key_pem: &str) -> Arc<ServerConfig> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate chain PEM");
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM");
    let config = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server certificate");
    Arc::new(config)
}

impl WebhookServer {
    /// Serves `chain_pem` (leaf first, intermediates after) with `key_pem`.
    pub async fn start(chain_pem: &str, key_pem: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let config = Arc::new(Mutex::new(config(chain_pem, key_pem)));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (current, shakes, sent) = (
            Arc::clone(&config),
            Arc::clone(&handshakes),
            Arc::clone(&requests),
        );
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = TlsAcceptor::from(Arc::clone(
                    &current.lock().unwrap_or_else(PoisonError::into_inner),
                ));
                let (shakes, sent) = (Arc::clone(&shakes), Arc::clone(&sent));
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    shakes.fetch_add(1, Ordering::SeqCst);
                    let mut buf = [0u8; 512];
                    let read = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf));
                    if let Ok(Ok(n)) = read.await
                        && n > 0
                    {
                        sent.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Self {
            addr,
            config,
            handshakes,
            requests,
            task,
        }
    }

    /// Presents another chain from the next connection on.
    pub fn serve(&self, chain_pem: &str, key_pem: &str) {
        *self.config.lock().unwrap_or_else(PoisonError::into_inner) = config(chain_pem, key_pem);
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `https://<host>:<port>/webhook`.
    pub fn url(&self, host: &str) -> String {
        format!("https://{host}:{}/webhook", self.port())
    }

    /// Completed TLS handshakes so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    /// Connections that sent any bytes after the handshake (an HTTP request, say).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
