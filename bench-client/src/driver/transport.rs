//! Byte streams to a broker: plain TCP (Nagle off, as every benchmark client
//! should) or TLS via rustls with the `ring` provider. Trust comes from the
//! compiled-in Mozilla roots plus `--ca` files; `--insecure` skips verification
//! for self-signed test brokers.

use super::DriverError;
use crate::url::{BrokerUrl, Endpoint, Scheme};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

/// Client socket send buffer (the kernel doubles it).
const SEND_BUFFER: u32 = 128 * 1024;

/// A connected byte stream, plain or TLS.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

/// How to reach and trust the broker.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Extra trusted CA certificates (PEM files).
    pub ca_files: Vec<PathBuf>,
    /// Accept any server certificate.
    pub insecure: bool,
}

/// Builds the rustls client configuration once per run.
pub fn tls_config(opts: &TlsOptions) -> Result<Arc<ClientConfig>, DriverError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| DriverError::Tls {
            endpoint: "(config)".into(),
            message: e.to_string(),
        })?;
    let config = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for file in &opts.ca_files {
            let tls_err = |message: String| DriverError::Tls {
                endpoint: file.display().to_string(),
                message,
            };
            let certs = CertificateDer::pem_file_iter(file)
                .map_err(|e| tls_err(format!("cannot read CA file: {e}")))?;
            let mut added = 0;
            for cert in certs {
                let cert = cert.map_err(|e| tls_err(format!("bad PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| tls_err(format!("bad CA certificate: {e}")))?;
                added += 1;
            }
            if added == 0 {
                return Err(tls_err("no certificate in file".into()));
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// Endpoint `i` of a failover list, counting round (link `i` of a scenario
/// uses endpoint `i mod n`, so links spread over a failover list).
pub fn endpoint_for(url: &BrokerUrl, i: usize) -> Result<&Endpoint, DriverError> {
    let count = url.endpoints.len().max(1);
    url.endpoints
        .get(i % count)
        .ok_or_else(|| DriverError::Broker {
            endpoint: url.original.clone(),
            message: "the URL names no endpoint".into(),
        })
}

/// One read from `stream` into `buf` (cancel-safe); the end of the stream
/// is [`DriverError::Closed`].
pub async fn read_some(
    stream: &mut Box<dyn ByteStream>,
    buf: &mut bytes::BytesMut,
    endpoint: &str,
) -> Result<(), DriverError> {
    use tokio::io::AsyncReadExt;
    let n = stream
        .read_buf(buf)
        .await
        .map_err(|source| DriverError::Io {
            endpoint: endpoint.to_string(),
            what: "read",
            source,
        })?;
    if n == 0 {
        return Err(DriverError::Closed {
            endpoint: endpoint.to_string(),
        });
    }
    Ok(())
}

/// Opens a stream to `endpoint` within `timeout`.
pub async fn connect(
    endpoint: &Endpoint,
    tls: Option<&Arc<ClientConfig>>,
    timeout: Duration,
) -> Result<Box<dyn ByteStream>, DriverError> {
    let name = endpoint.to_string();
    let io_err = |what, source| DriverError::Io {
        endpoint: name.clone(),
        what,
        source,
    };
    let addr = tokio::time::timeout(timeout, tokio::net::lookup_host(endpoint.socket_addr()))
        .await
        .map_err(|_| DriverError::Timeout {
            endpoint: name.clone(),
            what: "name resolution",
        })?
        .map_err(|e| io_err("resolve", e))?
        .next()
        .ok_or_else(|| {
            io_err(
                "resolve",
                std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
            )
        })?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(|e| io_err("create socket", e))?;
    // A bounded send buffer: otherwise Linux lets a producer park megabytes
    // of already-timestamped messages in its own kernel buffer, and the
    // measured latency would be the client's queue, not the broker's.
    socket
        .set_send_buffer_size(SEND_BUFFER)
        .map_err(|e| io_err("set SO_SNDBUF", e))?;
    let tcp = tokio::time::timeout(timeout, socket.connect(addr))
        .await
        .map_err(|_| DriverError::Timeout {
            endpoint: name.clone(),
            what: "TCP connect",
        })?
        .map_err(|e| io_err("connect", e))?;
    tcp.set_nodelay(true)
        .map_err(|e| io_err("set TCP_NODELAY", e))?;
    match endpoint.scheme {
        Scheme::Stomp | Scheme::Native => Ok(Box::new(tcp)),
        Scheme::StompTls | Scheme::NativeTls => {
            let config = tls.ok_or_else(|| DriverError::Tls {
                endpoint: name.clone(),
                message: "no TLS configuration".into(),
            })?;
            let server_name =
                ServerName::try_from(endpoint.host.clone()).map_err(|e| DriverError::Tls {
                    endpoint: name.clone(),
                    message: format!("invalid server name: {e}"),
                })?;
            let handshake = TlsConnector::from(config.clone()).connect(server_name, tcp);
            let stream = tokio::time::timeout(timeout, handshake)
                .await
                .map_err(|_| DriverError::Timeout {
                    endpoint: name.clone(),
                    what: "TLS handshake",
                })?
                .map_err(|e| DriverError::Tls {
                    endpoint: name.clone(),
                    message: e.to_string(),
                })?;
            Ok(Box::new(stream))
        }
    }
}

/// `--insecure`: trusts any certificate but still checks handshake signatures,
/// so only the identity check is skipped.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
