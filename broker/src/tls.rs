//! TLS for the STOMP and native listeners: builds a rustls server config
//! (ring provider, TLS 1.2 and 1.3) from the PEM files named in `[tls]`.

use ferromq_config::{ClientAuth, TlsConfig};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use tokio_rustls::TlsAcceptor;

/// Why TLS could not be set up. Names the file at fault.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A PEM file is missing, unreadable or holds nothing usable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the certificate/key combination.
    #[error("TLS configuration rejected: {0}")]
    Rustls(String),
}

fn file_error(path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    std::fs::metadata(path)
        .map_err(|e| file_error(path, format!("cannot read certificate file: {e}")))?;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, format!("invalid PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate found"));
    }
    Ok(certs)
}

pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    std::fs::metadata(path).map_err(|e| file_error(path, format!("cannot read key file: {e}")))?;
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| file_error(path, format!("no usable PEM private key: {e}")))
}

/// Builds the acceptor, or `None` when TLS is not configured.
pub fn acceptor(config: &TlsConfig) -> Result<Option<TlsAcceptor>, TlsError> {
    let Some((cert, key)) = config.cert_and_key() else {
        return Ok(None);
    };
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match (config.client_auth, &config.client_ca) {
        (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
        (mode, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for c in load_certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| file_error(ca, format!("invalid CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsError::Rustls(e.to_string()))?,
            )
        }
    };
    let mut server = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rustls(format!("{}: {e}", cert.display())))?;
    // No TLS 1.3 session tickets: broker connections are long-lived, so
    // resumption buys little, and the ticket records that follow the
    // handshake raced some clients' first read (stomp.py over TLS 1.3 would
    // now and then wait for a CONNECTED it had already received).
    server.send_tls13_tickets = 0;
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// The acceptor the TLS listeners use for each new connection, replaceable
/// at run time (SIGHUP re-reads the certificate files). Connections already
/// established keep the session they negotiated.
pub struct ReloadableAcceptor {
    current: std::sync::RwLock<TlsAcceptor>,
}

impl ReloadableAcceptor {
    /// Starts with `acceptor`.
    pub fn new(acceptor: TlsAcceptor) -> Arc<ReloadableAcceptor> {
        Arc::new(ReloadableAcceptor {
            current: std::sync::RwLock::new(acceptor),
        })
    }

    /// The acceptor for the next handshake.
    pub fn current(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces it; handshakes already under way finish with the old one.
    pub fn replace(&self, acceptor: TlsAcceptor) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = acceptor;
    }
}

/// The subject common name of a (verified) DER client certificate: the
/// user name a client certificate authenticates as. `None` if the
/// certificate does not parse or has no UTF-8 common name.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}
