//! TLS for the client ports of node and proxy and for replication between nodes, with rustls.
//! (The proxy's backend connections and the operator's admin connections are plain so far.)
//!
//! Certificates come as PEM files in the layout cert-manager writes into a Secret: `tls.crt` (the
//! certificate, then its chain), `tls.key`, `ca.crt`. A server reloads them when they change on
//! disk (a Secret volume is updated in place), so a renewed certificate needs no restart;
//! connections already open keep the one they started with.
//!
//! Peers are checked as Redis checks them: a server's certificate must chain to the CA, and its
//! name is not matched against the address dialled. Nodes are dialled by pod IP, which
//! certificates rarely name, and every certificate of a cluster comes from its own CA.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::BytesMut;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
pub use rustls::{ClientConfig, ServerConfig};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} holds no {what} in PEM form")]
    Empty { path: PathBuf, what: &'static str },
    #[error("{path}: {detail}")]
    Pem { path: PathBuf, detail: String },
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS client verification: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Whether a server asks its clients for a certificate (Redis's `tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificate asked for: passwords authenticate.
    #[default]
    No,
    /// A client may present one; if it does, it must chain to the CA.
    Optional,
    /// Every client presents one that chains to the CA.
    Required,
}

impl ClientAuth {
    /// `no`, `optional` or `yes`, as Redis spells them.
    pub fn parse(text: &str) -> Option<ClientAuth> {
        match text.to_ascii_lowercase().as_str() {
            "no" => Some(ClientAuth::No),
            "optional" => Some(ClientAuth::Optional),
            "yes" => Some(ClientAuth::Required),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::No => "no",
            ClientAuth::Optional => "optional",
            ClientAuth::Required => "yes",
        }
    }
}

/// Checks a server's TLS options before it starts, naming what is missing: a TLS port needs a
/// certificate and key, client certificates need the CA they chain to.
pub fn check_options(tls_port: bool, cert: &str, key: &str, ca: &str, auth: ClientAuth) -> Result<(), String> {
    if tls_port && (cert.is_empty() || key.is_empty()) {
        return Err("a TLS port is set: tls-cert-file and tls-key-file are needed too".into());
    }
    if auth != ClientAuth::No && ca.is_empty() {
        return Err(
            "tls-auth-clients asks for client certificates: tls-ca-cert-file must name the CA they chain to".into()
        );
    }
    Ok(())
}

/// Where a process's certificate, key and CA are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA peers' certificates must chain to (client certificates on a server; the server's
    /// certificate on a client). Without it a client trusts no server.
    pub ca: Option<PathBuf>,
}

impl TlsFiles {
    /// From the `tls-cert-file`, `tls-key-file` and `tls-ca-cert-file` options (an empty CA:
    /// none).
    pub fn from_options(cert: &str, key: &str, ca: &str) -> TlsFiles {
        TlsFiles { cert: cert.into(), key: key.into(), ca: (!ca.is_empty()).then(|| ca.into()) }
    }

    /// The files of a cert-manager Secret mounted at `dir`.
    pub fn in_dir(dir: &Path) -> TlsFiles {
        TlsFiles { cert: dir.join("tls.crt"), key: dir.join("tls.key"), ca: Some(dir.join("ca.crt")) }
    }

    fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(self.cert.as_path()), Some(self.key.as_path()), self.ca.as_deref()].into_iter().flatten()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { path: path.to_path_buf(), detail: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Empty { path: path.to_path_buf(), what: "certificate" });
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            TlsError::Empty { path: path.to_path_buf(), what: "private key" }
        }
        e => TlsError::Pem { path: path.to_path_buf(), detail: e.to_string() },
    })
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs(path)? {
        store.add(cert)?;
    }
    Ok(Arc::new(store))
}

/// A server's configuration from its files.
pub fn server_config(files: &TlsFiles, auth: ClientAuth) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match (auth, &files.ca) {
        (ClientAuth::No, _) => builder.with_no_client_auth(),
        (_, None) => {
            return Err(TlsError::Empty {
                path: PathBuf::from("(no CA file)"),
                what: "CA to check client certificates",
            })
        }
        (auth, Some(ca)) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider());
            let verifier = if auth == ClientAuth::Optional { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build()?)
        }
    };
    Ok(builder.with_single_cert(certs(&files.cert)?, key(&files.key)?)?)
}

/// A client's configuration: the CA servers must chain to, and a certificate of its own for
/// servers that ask (`tls-auth-clients`).
pub fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<ClientConfig, TlsError> {
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots(ca)?, provider())
        .build()
        .map_err(|e| TlsError::Pem { path: ca.to_path_buf(), detail: e.to_string() })?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)));
    Ok(match identity {
        Some((cert, key_file)) => builder.with_client_auth_cert(certs(cert)?, key(key_file)?)?,
        None => builder.with_no_client_auth(),
    })
}

/// Checks a server's certificate chain, validity and signatures as WebPKI does, but not its
/// name (see the module's comment).
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(NotValidForName | NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// What a file looked like when last loaded: a change of any of these reloads it.
type Stamp = Vec<Option<(SystemTime, u64, u64)>>;

fn stamp(files: &TlsFiles) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    files
        .paths()
        .map(|p| std::fs::metadata(p).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len(), m.ino())))
        .collect()
}

/// A server's TLS configuration, reloaded from its files when they change.
pub struct ServerTls {
    files: TlsFiles,
    auth: ClientAuth,
    current: arc_swap::ArcSwap<ServerConfig>,
    stamp: parking_lot::Mutex<Stamp>,
}

impl ServerTls {
    /// Loads the files; an error names the file and what is wrong with it.
    pub fn load(files: TlsFiles, auth: ClientAuth) -> Result<ServerTls, TlsError> {
        let stamp = stamp(&files);
        let config = server_config(&files, auth)?;
        Ok(ServerTls {
            files,
            auth,
            current: arc_swap::ArcSwap::from_pointee(config),
            stamp: parking_lot::Mutex::new(stamp),
        })
    }

    /// The acceptor for a new connection: the configuration loaded last.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    /// Reloads the files if any changed since they were loaded. A file caught half-written, or
    /// a bad new certificate, keeps the old configuration and is tried again next time.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamp(&self.files);
        let mut last = self.stamp.lock();
        if *last == now {
            return Ok(false);
        }
        let config = server_config(&self.files, self.auth)?;
        self.current.store(Arc::new(config));
        *last = now;
        Ok(true)
    }

    /// Checks the files every `every` until the process ends, logging reloads and failures.
    pub async fn watch(self: Arc<Self>, what: &'static str, every: std::time::Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.reload_if_changed() {
                Ok(true) => {
                    tracing::info!(server = what, cert = %self.files.cert.display(), "TLS certificate reloaded")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(server = what, error = %e, "TLS files changed but cannot be loaded; keeping the old ones")
                }
            }
        }
    }
}

/// A connection, plain or TLS, on either side.
pub enum Stream {
    Plain(TcpStream),
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP connection under it.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Server(s) => s.get_ref().0,
            Stream::Client(s) => s.get_ref().0,
        }
    }

    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }

    /// Waits for input and appends it to `buf`; `Ok(0)`: the peer closed. A plain connection
    /// reserves room only once bytes are there, so an idle one holds no buffer; a TLS one
    /// reserves first (its session buffers records anyway). Cancel-safe: nothing read is lost
    /// when the wait is dropped.
    pub async fn read_more(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        use tokio::io::AsyncReadExt;
        match self {
            Stream::Plain(s) => loop {
                s.readable().await?;
                if let Some(n) = crate::resp::read_available(s, buf)? {
                    return Ok(n);
                }
            },
            tls => {
                buf.reserve(16 * 1024);
                tls.read_buf(buf).await
            }
        }
    }
}

/// How long a TLS client may take to finish its handshake: one that connects and says nothing
/// must not hold a task for good.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How often a server checks its TLS files for a renewed certificate.
pub const RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// A server's TLS port: its listener and configuration.
pub type TlsListener = (tokio::net::TcpListener, Arc<ServerTls>);

/// The next connection on the plain port or the TLS one (if any), with the TLS configuration
/// to accept it with when it came on the TLS port.
pub async fn accept_either(
    plain: &tokio::net::TcpListener,
    tls: Option<&TlsListener>,
) -> (io::Result<(TcpStream, std::net::SocketAddr)>, Option<Arc<ServerTls>>) {
    let on_tls = async {
        match tls {
            Some((listener, config)) => (listener.accept().await, Some(config.clone())),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        accepted = plain.accept() => (accepted, None),
        accepted = on_tls => accepted,
    }
}

/// Takes a new connection: as it is, or through a TLS handshake (within [`HANDSHAKE_TIMEOUT`])
/// when it came on the TLS port.
pub async fn accept(tls: Option<Arc<ServerTls>>, tcp: TcpStream) -> io::Result<Stream> {
    let Some(tls) = tls else { return Ok(Stream::Plain(tcp)) };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(tcp)).await {
        Ok(stream) => Ok(Stream::Server(Box::new(stream?))),
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")),
    }
}

/// Closes a connection; a TLS one says so first (close_notify, within a second), so the peer
/// sees a clean end rather than an unexpected EOF.
pub async fn close(mut stream: Stream) {
    use tokio::io::AsyncWriteExt;
    if stream.is_tls() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), stream.shutdown()).await;
    }
}

/// Serves a connection `accept_either` gave on a task of its own, after the TLS handshake when
/// it came on the TLS port (a failed handshake is logged, and the connection dropped).
pub fn spawn_serving<F, Fut>(tls: Option<Arc<ServerTls>>, tcp: TcpStream, peer: std::net::SocketAddr, serve: F)
where
    F: FnOnce(Stream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        match accept(tls, tcp).await {
            Ok(stream) => serve(stream).await,
            Err(e) => tracing::debug!(client = %peer, error = %e, "TLS handshake failed"),
        }
    });
}

/// Answers a connection refused past `maxclients` with Redis's error (in TLS on the TLS port,
/// or the client could not read it), then closes it.
pub async fn refuse(tls: Option<Arc<ServerTls>>, tcp: TcpStream) {
    use tokio::io::AsyncWriteExt;
    if let Ok(mut stream) = accept(tls, tcp).await {
        let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
        let _ = stream.shutdown().await;
    }
}

/// Opens a TLS connection over `tcp` to a server whose certificate chains to the configured CA.
pub async fn connect(config: Arc<ClientConfig>, tcp: TcpStream) -> io::Result<Stream> {
    // The name is not checked (ChainOnly); SNI carries the peer's address, as a client dialling
    // an IP does.
    let peer = tcp.peer_addr()?.ip();
    let stream = tokio_rustls::TlsConnector::from(config).connect(ServerName::IpAddress(peer.into()), tcp).await?;
    Ok(Stream::Client(Box::new(stream)))
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Server($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
            Stream::Client($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_auth_takes_redis_spellings() {
        for (text, auth) in [("no", ClientAuth::No), ("optional", ClientAuth::Optional), ("YES", ClientAuth::Required)]
        {
            assert_eq!(ClientAuth::parse(text), Some(auth));
            assert_eq!(ClientAuth::parse(auth.as_str()), Some(auth));
        }
        assert_eq!(ClientAuth::parse("sometimes"), None);
    }

    #[test]
    fn missing_settings_and_files_are_named() {
        assert!(check_options(true, "", "k", "", ClientAuth::No).unwrap_err().contains("tls-cert-file"));
        assert!(check_options(true, "c", "k", "", ClientAuth::Required).unwrap_err().contains("tls-ca-cert-file"));
        check_options(false, "", "", "", ClientAuth::No).unwrap();
        let files = TlsFiles::from_options("/nonexistent/tls.crt", "/nonexistent/tls.key", "");
        assert_eq!(files.ca, None);
        let err = server_config(&files, ClientAuth::No).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/tls.crt"), "{err}");
        let dir = std::env::temp_dir().join(format!("pika-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tls.crt"), "not a certificate").unwrap();
        let err = server_config(&TlsFiles::in_dir(&dir), ClientAuth::No).unwrap_err().to_string();
        assert!(err.contains("holds no certificate"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
