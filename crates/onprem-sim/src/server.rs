//! Serving: a throwaway CA and server certificate, a TCP (or TLS) accept loop feeding axum, a
//! per-connection kill switch so a fault can drop a connection without answering, and a port
//! that can be closed (clients get "connection refused", as from a webapp that is down) and
//! opened again on the same address.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::SimError;

/// A slow or silent client must not hold a handshake task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `shutdown` waits for open connections to finish before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The server's TLS configuration and the PEM of the CA that signed its certificate.
pub(crate) struct TlsMaterial {
    pub ca_pem: String,
    pub config: Arc<ServerConfig>,
}

/// A fresh CA and a server certificate for `localhost`, `127.0.0.1` and `::1`, signed by it.
/// Clients trust the CA, as they would an installation's internal CA.
pub(crate) fn generate_tls() -> Result<TlsMaterial, SimError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "webhook-ca-operator simulator CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut leaf_params = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca)?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    Ok(TlsMaterial {
        ca_pem: ca.pem(),
        config: server_config(vec![leaf.der().clone(), ca.der().clone()], key)?,
    })
}

/// Serves the given certificate chain and key; the first certificate is what clients trust.
pub(crate) fn given_tls(identity: &super::TlsIdentity) -> Result<TlsMaterial, SimError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let chain = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())?;
    Ok(TlsMaterial {
        ca_pem: identity.cert_pem.clone(),
        config: server_config(chain, key)?,
    })
}

fn server_config(
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, SimError> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The data behind `mutex`, also after a panic elsewhere held it (nothing here can be left
/// half-written).
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Drops one connection: once set, every read and write on it fails. An idle connection waits
/// in a read, so setting it wakes that read, and the connection is closed at once.
#[derive(Debug, Default)]
pub(crate) struct KillSwitch {
    killed: AtomicBool,
    reader: Mutex<Option<Waker>>,
}

impl KillSwitch {
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        let reader = locked(&self.reader).take();
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    fn killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    fn wake_on_kill(&self, waker: &Waker) {
        let mut reader = locked(&self.reader);
        match reader.as_ref() {
            Some(w) if w.will_wake(waker) => {}
            _ => *reader = Some(waker.clone()),
        }
    }
}

/// What a handler knows about its connection: the peer, and the switch that drops it.
#[derive(Clone, Debug)]
pub(crate) struct ConnMeta {
    pub peer: SocketAddr,
    kill: Arc<KillSwitch>,
}

impl ConnMeta {
    /// Makes every further read and write on the connection fail, so hyper drops it without
    /// sending the response in hand.
    pub fn kill(&self) {
        self.kill.kill();
    }
}

impl Connected<IncomingStream<'_, SimListener>> for ConnMeta {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// What a connection runs over: a TCP stream, or TLS on one.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// A served connection, plain or TLS, that fails all I/O once its kill switch is set.
pub(crate) struct SimIo {
    stream: Box<dyn Transport>,
    kill: Arc<KillSwitch>,
}

impl SimIo {
    /// The stream to use, or the error every I/O call gets once the connection is killed.
    fn live(&mut self) -> io::Result<Pin<&mut dyn Transport>> {
        if self.kill.killed() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection dropped by an injected fault",
            ));
        }
        Ok(Pin::new(self.stream.as_mut()))
    }
}

impl AsyncRead for SimIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.kill.wake_on_kill(cx.waker());
        match this.live() {
            Ok(s) => s.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for SimIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().live() {
            Ok(s) => s.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().live() {
            Ok(s) => s.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().live() {
            Ok(s) => s.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// Hands axum connections whose TLS handshake already finished in a task of their own, so one
/// slow handshake does not hold up the others.
pub(crate) struct SimListener {
    ready: mpsc::Receiver<(SimIo, ConnMeta)>,
    local: SocketAddr,
}

impl Listener for SimListener {
    type Io = SimIo;
    type Addr = ConnMeta;

    async fn accept(&mut self) -> (SimIo, ConnMeta) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop is gone (shutting down): no connection will ever come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<ConnMeta> {
        Ok(ConnMeta {
            peer: self.local,
            kill: Arc::default(),
        })
    }
}

/// What the accept loop needs to start again on the same address after the port was closed.
struct Acceptor {
    tls: Option<TlsAcceptor>,
    ready: mpsc::Sender<(SimIo, ConnMeta)>,
    /// The connections served so far, to drop them when the port closes.
    connections: Arc<Mutex<Vec<Weak<KillSwitch>>>>,
}

/// A running server: its address and the tasks to stop.
pub(crate) struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    /// `None` while the port is closed.
    accept: Mutex<Option<JoinHandle<()>>>,
    acceptor: Acceptor,
    serve: Option<JoinHandle<()>>,
}

impl Running {
    /// Closes the listening socket and drops every open connection: from now on a client's
    /// connection attempt is refused, as when the webapp is down.
    pub async fn close_port(&self) {
        let accept = locked(&self.accept).take();
        if let Some(accept) = accept {
            accept.abort();
            // Once the task has ended, its listener is closed.
            let _ = accept.await;
        }
        let open = std::mem::take(&mut *locked(&self.acceptor.connections));
        for conn in open.iter().filter_map(Weak::upgrade) {
            conn.kill();
        }
    }

    /// Listens on the same address again after [`Running::close_port`]; does nothing if the port
    /// is open. Fails if another program took the port meanwhile.
    pub async fn reopen_port(&self) -> Result<(), SimError> {
        if locked(&self.accept).is_some() {
            return Ok(());
        }
        let tcp = TcpListener::bind(self.addr)
            .await
            .map_err(|source| SimError::Bind {
                addr: self.addr,
                source,
            })?;
        let task = tokio::spawn(accept_loop(
            tcp,
            self.acceptor.tls.clone(),
            self.acceptor.ready.clone(),
            Arc::clone(&self.acceptor.connections),
        ));
        *locked(&self.accept) = Some(task);
        Ok(())
    }

    /// Stops accepting, lets open requests finish, and cuts what is left after a grace time.
    pub async fn shutdown(mut self) {
        self.signal_stop();
        if let Some(serve) = self.serve.take() {
            let abort = serve.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, serve).await.is_err() {
                abort.abort();
            }
        }
    }

    fn signal_stop(&mut self) {
        if let Some(accept) = locked(&self.accept).take() {
            accept.abort();
        }
        if let Some(stop) = self.stop.take() {
            // Err only means the server task already ended.
            let _ = stop.send(());
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// Binds `bind` and serves `app` on it (over TLS when `tls` is given) until shut down.
pub(crate) async fn spawn(
    bind: SocketAddr,
    tls: Option<Arc<ServerConfig>>,
    app: Router,
) -> Result<Running, SimError> {
    let tcp = TcpListener::bind(bind)
        .await
        .map_err(|source| SimError::Bind { addr: bind, source })?;
    let addr = tcp
        .local_addr()
        .map_err(|source| SimError::Bind { addr: bind, source })?;
    let (ready_tx, ready) = mpsc::channel(64);
    let acceptor = Acceptor {
        tls: tls.map(TlsAcceptor::from),
        ready: ready_tx,
        connections: Arc::default(),
    };
    let accept = tokio::spawn(accept_loop(
        tcp,
        acceptor.tls.clone(),
        acceptor.ready.clone(),
        Arc::clone(&acceptor.connections),
    ));
    let (stop, stopped) = oneshot::channel::<()>();
    let listener = SimListener { ready, local: addr };
    let serve = tokio::spawn(async move {
        let server = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<ConnMeta>(),
        )
        .with_graceful_shutdown(async move {
            // Err means the handle was dropped, which is a stop request as well.
            let _ = stopped.await;
        });
        if let Err(e) = server.await {
            tracing::warn!(error = %e, "simulator server ended with an error");
        }
    });
    Ok(Running {
        addr,
        stop: Some(stop),
        accept: Mutex::new(Some(accept)),
        acceptor,
        serve: Some(serve),
    })
}

async fn accept_loop(
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    ready: mpsc::Sender<(SimIo, ConnMeta)>,
    connections: Arc<Mutex<Vec<Weak<KillSwitch>>>>,
) {
    loop {
        let (socket, peer) = match tcp.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "simulator accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Small JSON answers should not wait for Nagle's algorithm.
        let _ = socket.set_nodelay(true);
        let tls = tls.clone();
        let ready = ready.clone();
        let connections = Arc::clone(&connections);
        tokio::spawn(async move {
            let stream: Box<dyn Transport> = match tls {
                None => Box::new(socket),
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                        Ok(Ok(s)) => Box::new(s),
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "simulator TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "simulator TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            let kill = Arc::new(KillSwitch::default());
            {
                let mut open = locked(&connections);
                open.retain(|c| c.strong_count() > 0);
                open.push(Arc::downgrade(&kill));
            }
            let io = SimIo {
                stream,
                kill: Arc::clone(&kill),
            };
            // Err means the server is shutting down; the connection is dropped with it.
            let _ = ready.send((io, ConnMeta { peer, kill })).await;
        });
    }
}
