//! `[server]`: listeners, TLS (the certificate and key parsed and matched here, once), trusted
//! proxies, redirect hosts, limits and timeouts, the default upstream trust anchor.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use rustls::sign::CertifiedKey;
use url::Url;

use super::load::{Validator, span};
use super::raw::RawServer;
use crate::routes::HostPattern;
use crate::tls_client::CaFile;

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: Option<SocketAddr>,
    pub public_url: Option<Url>,
    pub trusted_proxies: Vec<IpNet>,
    pub admin_listen: Option<SocketAddr>,
    pub allowed_redirect_hosts: Vec<HostPattern>,
    pub tls: Option<Tls>,
    pub auth_prefix: String,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub drain_timeout: Duration,
    /// Cap on client connections across the public listeners; `None`: sized from the
    /// open-file limit at start (`server::accept::Caps`).
    pub max_connections: Option<usize>,
    pub upstream_timeout: Duration,
    pub upstream_ca_file: Option<CaFile>,
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub listen: SocketAddr,
    /// The files, watched for renewal (`server::tls`).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The pair as loaded: parsed, and checked to belong together.
    pub certified_key: Arc<CertifiedKey>,
    pub redirect_http: bool,
}

/// Which file of a TLS pair a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairPart {
    Cert,
    Key,
}

/// Parses a PEM certificate chain and private key (read from `cert` and `key`) into a signing
/// pair on aws-lc-rs, and checks that they belong together. At load and at each reload of the
/// files: one parse for both. Each error names the file(s), why, and how to fix it; a bad
/// certificate and a bad key are both reported.
pub fn certified_key(
    cert: &Path,
    cert_pem: &[u8],
    key: &Path,
    key_pem: &[u8],
) -> Result<CertifiedKey, Vec<(PairPart, String)>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = match CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the PEM certificate chain, server certificate first",
            cert.display()
        )),
        Err(e) => Err(format!(
            "{} holds a malformed PEM certificate ({e}); give the PEM certificate chain, server certificate first",
            cert.display()
        )),
    };
    let signing = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| {
            format!(
                "{} holds no PEM private key ({e}); give the certificate's private key (PKCS#8, PKCS#1 or SEC1 PEM)",
                key.display()
            )
        })
        .and_then(|der| {
            rustls::crypto::aws_lc_rs::sign::any_supported_type(&der).map_err(|e| {
                format!(
                    "{}: unsupported private key ({e}); use an RSA, ECDSA P-256/P-384 or Ed25519 key",
                    key.display()
                )
            })
        });
    let (certs, signing) = match (certs, signing) {
        (Ok(c), Ok(s)) => (c, s),
        (c, s) => {
            let mut errs = Vec::new();
            if let Err(m) = c {
                errs.push((PairPart::Cert, m));
            }
            if let Err(m) = s {
                errs.push((PairPart::Key, m));
            }
            return Err(errs);
        }
    };
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(|e| {
        let m = format!(
            "{} and {} do not belong together ({e}); give the private key the certificate was issued for",
            cert.display(),
            key.display()
        );
        vec![(PairPart::Key, m)]
    })?;
    Ok(ck)
}

impl Server {
    pub(super) fn defaults() -> Server {
        Server {
            listen: None,
            public_url: None,
            trusted_proxies: Vec::new(),
            admin_listen: None,
            allowed_redirect_hosts: Vec::new(),
            tls: None,
            auth_prefix: "/.auth".to_string(),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            drain_timeout: Duration::from_secs(30),
            max_connections: None,
            upstream_timeout: Duration::from_secs(60),
            upstream_ca_file: None,
        }
    }
}

impl Validator<'_, '_> {
    pub(super) fn server(&mut self, s: &RawServer) -> Server {
        let mut out = Server::defaults();
        out.listen = s.listen.as_ref().map(|l| l.get_ref().0);
        out.admin_listen = s.admin_listen.as_ref().map(|l| l.get_ref().0);
        if let Some(u) = &s.public_url
            && let Some(url) = self.url(u, "server.public_url")
        {
            if url.path() != "/" || url.query().is_some() {
                self.errs.at(
                    span(u),
                    "server.public_url",
                    "give only the origin (scheme://host[:port]), without a path",
                );
            } else {
                out.public_url = Some(url);
            }
        }
        for (i, t) in s.trusted_proxies.iter().enumerate() {
            let txt = t.get_ref().trim();
            let parsed = txt
                .parse::<IpNet>()
                .or_else(|_| txt.parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(n) => out.trusted_proxies.push(n),
                Err(_) => self.errs.at(
                    span(t),
                    format!("server.trusted_proxies[{i}]"),
                    format!("{txt:?} is not an IP address or CIDR range (e.g. \"10.0.0.0/8\")"),
                ),
            }
        }
        for (i, h) in s.allowed_redirect_hosts.iter().enumerate() {
            match HostPattern::parse(h.get_ref()) {
                Ok(p) => out.allowed_redirect_hosts.push(p),
                Err(e) => self
                    .errs
                    .at(span(h), format!("server.allowed_redirect_hosts[{i}]"), e),
            }
        }
        if let Some(t) = &s.tls {
            let cert = self.readable(&t.cert, "server.tls.cert");
            let key = self.readable(&t.key, "server.tls.key");
            if let (Some((cp, cb)), Some((kp, kb))) = (cert, key) {
                match certified_key(&cp, &cb, &kp, &kb) {
                    Ok(ck) => {
                        out.tls = Some(Tls {
                            listen: t.listen.get_ref().0,
                            cert: cp,
                            key: kp,
                            certified_key: Arc::new(ck),
                            redirect_http: t.redirect_http,
                        })
                    }
                    Err(errs) => {
                        for (part, m) in errs {
                            match part {
                                PairPart::Cert => self.errs.at(span(&t.cert), "server.tls.cert", m),
                                PairPart::Key => self.errs.at(span(&t.key), "server.tls.key", m),
                            }
                        }
                    }
                }
            }
        }
        if out.listen.is_none() && s.tls.is_none() {
            self.errs.at(
                0..0,
                "server.listen",
                "no listener: set [server] listen = \"0.0.0.0:8080\" or a [server.tls] section",
            );
        }
        if let Some(p) = &s.auth_prefix {
            let v = p.get_ref().trim_end_matches('/');
            if !v.starts_with('/') || v.len() < 2 {
                self.errs.at(
                    span(p),
                    "server.auth_prefix",
                    "must be a path such as \"/.auth\"",
                );
            } else {
                out.auth_prefix = v.to_string();
            }
        }
        if let Some(d) = s.header_read_timeout {
            out.header_read_timeout = d.0;
        }
        if let Some(m) = &s.max_header_bytes {
            if *m.get_ref() < 8192 {
                self.errs
                    .at(span(m), "server.max_header_bytes", "must be at least 8192");
            } else {
                out.max_header_bytes = *m.get_ref();
            }
        }
        if let Some(d) = s.drain_timeout {
            out.drain_timeout = d.0;
        }
        if let Some(m) = &s.max_connections {
            if *m.get_ref() == 0 {
                self.errs.at(
                    span(m),
                    "server.max_connections",
                    "must be at least 1 (leave it out to size it from the open-file limit)",
                );
            } else {
                out.max_connections = Some(*m.get_ref());
            }
        }
        if let Some(d) = s.timeout {
            out.upstream_timeout = d.0;
        }
        if let Some(f) = &s.upstream_ca_file {
            out.upstream_ca_file = self.ca_file(f, "server.upstream_ca_file");
        }
        out
    }
}
