//! TLS termination with rustls (aws-lc-rs): HTTP/2 and HTTP/1.1 by ALPN, session resumption
//! by stateless tickets, and a certificate resolver starting with the pair the config loaded, swapped when the cert or key file changes
//! (no restart; a bad new file is logged and the previous pair keeps serving).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::Tls;

#[derive(Debug)]
pub struct ReloadingCert {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Reads the pair again after a change of its files; the same parse as at load
/// ([`crate::config::certified_key`]).
fn reload_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let cert_pem = std::fs::read(cert)
        .map_err(|e| format!("{}: cannot read certificate: {e}", cert.display()))?;
    let key_pem = std::fs::read(key)
        .map_err(|e| format!("{}: cannot read private key: {e}", key.display()))?;
    crate::config::certified_key(cert, &cert_pem, key, &key_pem).map_err(|errs| {
        let msgs: Vec<String> = errs.into_iter().map(|(_, m)| m).collect();
        msgs.join("; ")
    })
}

/// What identifies a version of a file: modification time, length and, on Unix, the inode.
/// The inode matters: mtime has the kernel's coarse clock granularity and a renewed certificate
/// often has the same PEM length, so a Kubernetes `..data` swap or a `mv new.crt tls.crt` done
/// within a few milliseconds of the previous write (or with preserved mtimes: `cp -p`, `tar`)
/// would otherwise go unseen. `metadata` follows symlinks, so the swap's new target is read.
type Stamp = (SystemTime, u64, u64, u64);

fn stamp(p: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(p).ok()?;
    #[cfg(unix)]
    let (dev, ino) = {
        use std::os::unix::fs::MetadataExt;
        (m.dev(), m.ino())
    };
    #[cfg(not(unix))]
    let (dev, ino) = (0, 0);
    Some((
        m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        m.len(),
        dev,
        ino,
    ))
}

/// Builds the server config on the pair loaded with the config and starts the watcher that
/// reloads the pair when its files change.
pub fn server_config(tls: &Tls) -> Result<Arc<rustls::ServerConfig>, String> {
    let (cert, key) = (tls.cert.clone(), tls.key.clone());
    let resolver = Arc::new(ReloadingCert {
        current: ArcSwap::new(tls.certified_key.clone()),
    });
    let mut cfg = rustls::ServerConfig::builder_with_provider(crate::tls_client::crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Session resumption by stateless tickets (AES-256 + HMAC-SHA256 under a random key that
    // rotates every 6 hours, kept only in memory): a returning client skips the certificate
    // signature, and no per-client state is kept, however many clients there are. Without a
    // ticketer rustls resumes only the 256 sessions its in-memory cache holds.
    cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| e.to_string())?;
    let watched = resolver;
    tokio::spawn(async move {
        let mut last = (stamp(&cert), stamp(&key));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let now = (stamp(&cert), stamp(&key));
            if now == last {
                continue;
            }
            match reload_pair(&cert, &key) {
                Ok(pair) => {
                    watched.current.store(Arc::new(pair));
                    last = now;
                    tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
                }
                Err(e) => {
                    // Files may be mid-write; try again next tick, keep serving the old pair.
                    tracing::error!(error = %e, "TLS certificate reload failed; still serving the previous certificate");
                    last = now;
                }
            }
        }
    });
    Ok(Arc::new(cfg))
}
