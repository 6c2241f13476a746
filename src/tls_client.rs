//! The rustls CLIENT side, shared by every outbound TLS connection (https upstreams, provider
//! calls, `rediss://`): trust anchors parsed from a CA file once, at config load ([`CaFile`]),
//! and client configs on the one crypto provider (aws-lc-rs) trusting the system roots plus that
//! file. A leaf: it imports nothing of the crate, so config can parse with it.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// An http-or-https connector on the one crypto provider.
pub type Connector = HttpsConnector<HttpConnector>;

/// A CA file read and checked at config load: every PEM certificate in it is a usable trust
/// anchor, and there is at least one. Equal (and hashed) by path, so clients can be shared by
/// everything trusting the same file.
#[derive(Clone)]
pub struct CaFile {
    pub path: PathBuf,
    /// The file's trust anchors (only these; [`client_config`] adds the system roots).
    pub roots: Arc<RootCertStore>,
    /// The file as read, for the Redis client, which takes PEM (and trusts only these roots).
    pub pem: Arc<[u8]>,
    /// How many certificates the file holds.
    pub count: usize,
}

impl CaFile {
    /// Parses PEM bytes read from `path`; the error says what is wrong with them and how to fix
    /// it (the caller names the file and the key).
    pub fn parse(path: PathBuf, pem: &[u8]) -> Result<Self, String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("malformed PEM ({e}); give a file of PEM certificates (-----BEGIN CERTIFICATE-----)"))?;
        if certs.is_empty() {
            return Err(
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the CA certificate that signed the server's certificate"
                    .into(),
            );
        }
        let mut roots = RootCertStore::empty();
        for (i, c) in certs.iter().enumerate() {
            roots.add(c.clone()).map_err(|e| {
                format!(
                    "certificate #{} is not a usable trust anchor ({e}); give X.509 CA certificates",
                    i + 1
                )
            })?;
        }
        Ok(CaFile {
            path,
            roots: Arc::new(roots),
            pem: pem.into(),
            count: certs.len(),
        })
    }
}

impl std::fmt::Debug for CaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaFile")
            .field("path", &self.path)
            .field("certs", &self.count)
            .finish()
    }
}

impl PartialEq for CaFile {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

impl Eq for CaFile {}

impl Hash for CaFile {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.path.hash(state);
    }
}

/// The crypto provider of every TLS connection, client and server.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Makes aws-lc-rs the process default, for libraries that build their own rustls config (the
/// Redis client). Idempotent; a default installed earlier stays (it can only be this one: no
/// other provider is compiled in).
pub fn install_default_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A rustls client config on aws-lc-rs trusting the system roots and, when given, `extra`'s.
pub fn client_config(extra: Option<&CaFile>) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    // The system store may be absent in slim images; then only configured CAs are trusted.
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    if let Some(ca) = extra {
        roots.roots.extend(ca.roots.roots.iter().cloned());
    }
    let cfg = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(cfg)
}

/// An http-or-https connector (HTTP/1) trusting [`client_config`]'s roots.
pub fn https_connector(
    extra: Option<&CaFile>,
    connect_timeout: Duration,
) -> Result<Connector, String> {
    https_connector_alpn(extra, connect_timeout, Alpn::Http1)
}

/// What an https connection offers by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alpn {
    /// `http/1.1`
    Http1,
    /// `h2` only
    H2,
    /// `h2`, then `http/1.1`: the server picks
    Both,
}

/// [`https_connector`] offering `alpn` on https connections (plain http ones are unaffected).
pub fn https_connector_alpn(
    extra: Option<&CaFile>,
    connect_timeout: Duration,
    alpn: Alpn,
) -> Result<Connector, String> {
    let tls = client_config(extra)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let b = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    Ok(match alpn {
        Alpn::Http1 => b.enable_http1().wrap_connector(http),
        Alpn::H2 => b.enable_http2().wrap_connector(http),
        Alpn::Both => b.enable_all_versions().wrap_connector(http),
    })
}
