//! TLS with mutual authentication on peer links (`cluster.tls_cert`,
//! `tls_key`, `tls_ca`, or `[tls]`'s certificate, key and client CA).
//!
//! Every node is both a TLS server (its peer listener) and a TLS client (it
//! dials its peers), with one certificate for both roles. The listener
//! requires a client certificate signed by the CA and refuses the
//! handshake otherwise (logged by `peer`); the dialer checks the
//! listener's certificate against the same CA. The Raft handshake that
//! follows (cluster id, node ids) runs inside the TLS session as on plain
//! TCP. Without TLS configured, peer links are plain TCP.
//!
//! A certificate also proves which node its holder is, both ways: each
//! member has a name its certificate must carry ([`expected_name`]: its
//! `tls_name`, else the host of its cluster address), as a DNS or IP
//! subject alternative name or as the subject's common name
//! ([`names`]). The dialer asks for the target's name in the handshake;
//! the listener, once the Raft handshake says who is calling, checks the
//! caller's certificate against that node's name (`peer`), so a CA-signed
//! certificate of node 3 cannot speak as node 1. The common name counts
//! too because operators of Java brokers (ActiveMQ's `verifyHostName`) and
//! Erlang ones (RabbitMQ's `pkix_verify_hostname`) issue node certificates
//! that way.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferromq_config::PeerTlsFiles;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::node::StartError;
use super::types::NodeId;

/// A peer connection's byte stream: plain TCP or TLS over it.
pub(crate) trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send + Sync {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> PeerIo for T {}

/// A boxed [`PeerIo`], so plain and TLS connections share one code path.
pub(crate) type BoxedIo = Box<dyn PeerIo>;

/// This node's TLS on peer links, both ways.
pub(crate) struct PeerTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

/// Names the configuration key and file at fault.
fn file_error(key: &'static str, error: impl std::fmt::Display) -> StartError {
    StartError::Tls(format!("{key}: {error}"))
}

impl PeerTls {
    /// Reads the PEM files and builds both sides.
    pub(crate) fn load(files: &PeerTlsFiles) -> Result<PeerTls, StartError> {
        let (cert_path, cert_key) = &files.cert;
        let (key_path, key_key) = &files.key;
        let Some((ca_path, ca_key)) = &files.ca else {
            return Err(StartError::Tls(
                "cluster.tls_ca: peer TLS needs a CA (cluster.tls_ca or tls.client_ca)".into(),
            ));
        };
        let certs = crate::tls::load_certs(cert_path).map_err(|e| file_error(cert_key, e))?;
        let key = crate::tls::load_key(key_path).map_err(|e| file_error(key_key, e))?;
        let mut roots = RootCertStore::empty();
        for ca in crate::tls::load_certs(ca_path).map_err(|e| file_error(ca_key, e))? {
            roots.add(ca).map_err(|e| {
                file_error(
                    ca_key,
                    format!("{}: invalid CA certificate: {e}", ca_path.display()),
                )
            })?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
        let rejected = |e: rustls::Error| {
            file_error(
                cert_key,
                format!("{}: refused by TLS: {e}", cert_path.display()),
            )
        };
        // No `allow_unauthenticated`: a peer without a certificate signed
        // by the CA does not get past the handshake.
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| file_error(ca_key, format!("{}: {e}", ca_path.display())))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(rejected)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(rejected)?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(rejected)?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(rejected)?;
        Ok(PeerTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// The listener's side of the handshake: the connection and the
    /// peer's (CA-verified) end-entity certificate, for [`names`] once the
    /// peer has said which node it is.
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
    ) -> std::io::Result<(BoxedIo, Option<CertificateDer<'static>>)> {
        let stream = self.acceptor.accept(stream).await?;
        let cert = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| cert.clone().into_owned());
        Ok((Box::new(stream), cert))
    }

    /// The dialer's side, checking that the listener's certificate carries
    /// `name` (the target's [`expected_name`]).
    pub(crate) async fn connect(&self, name: &str, stream: TcpStream) -> std::io::Result<BoxedIo> {
        let name = server_name(name)?;
        let stream = self.connector.connect(name, stream).await?;
        Ok(Box::new(stream))
    }
}

/// The name node `id`'s certificate must carry: the one this node's
/// configuration gives it (`peer_names`: its `tls_name`, else the host of
/// its configured cluster address), else the host of `addr`, its cluster
/// address in the Raft membership (a member added at run time).
pub(crate) fn expected_name(
    peer_names: &BTreeMap<NodeId, String>,
    id: NodeId,
    addr: &str,
) -> String {
    peer_names
        .get(&id)
        .cloned()
        .unwrap_or_else(|| ferromq_config::address_host(addr).to_owned())
}

/// Whether `cert` names `name`: as a DNS or IP subject alternative name
/// (webpki's matching, as for any TLS server name), or as its subject's
/// common name (compared without case). `Err` says what it names instead.
pub(crate) fn names(cert: &CertificateDer<'_>, name: &str) -> Result<(), String> {
    let by_san = server_name(name)
        .map_err(|e| e.to_string())
        .and_then(|server| {
            let parsed = rustls::server::ParsedCertificate::try_from(cert)
                .map_err(|e| format!("unreadable certificate: {e}"))?;
            rustls::client::verify_server_name(&parsed, &server).map_err(|e| e.to_string())
        });
    let cn = crate::tls::common_name(cert);
    match by_san {
        Ok(()) => Ok(()),
        Err(_)
            if cn
                .as_deref()
                .is_some_and(|cn| cn.eq_ignore_ascii_case(name)) =>
        {
            Ok(())
        }
        Err(san) => Err(format!(
            "its certificate does not name `{name}` ({san}; common name {})",
            cn.map_or_else(|| "none".to_owned(), |cn| format!("`{cn}`"))
        )),
    }
}

/// A name as rustls checks it: an IP address or a DNS name.
fn server_name(name: &str) -> std::io::Result<ServerName<'static>> {
    ServerName::try_from(name.to_owned()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("`{name}` is not a usable TLS server name: {e}"),
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::path::Path;

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A CA, and a node certificate for 127.0.0.1 signed by it, as files
    /// `<name>-ca.crt`, `<name>.crt`, `<name>.key` in `dir`.
    fn pki(dir: &Path, name: &str) -> PeerTlsFiles {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let cert = params.signed_by(&key, &ca).unwrap();
        let path = |suffix: &str| dir.join(format!("{name}{suffix}"));
        std::fs::write(path("-ca.crt"), ca.pem()).unwrap();
        std::fs::write(path(".crt"), cert.pem()).unwrap();
        std::fs::write(path(".key"), key.serialize_pem()).unwrap();
        PeerTlsFiles {
            cert: (path(".crt"), "cluster.tls_cert"),
            key: (path(".key"), "cluster.tls_key"),
            ca: Some((path("-ca.crt"), "cluster.tls_ca")),
        }
    }

    /// Accepts one connection and echoes one byte, or reports the
    /// handshake error.
    async fn serve_once(listener: TcpListener, tls: Arc<PeerTls>) -> Result<(), String> {
        let (stream, _) = listener.accept().await.unwrap();
        let (mut io, cert) = tls.accept(stream).await.map_err(|e| e.to_string())?;
        assert!(cert.is_some(), "a verified peer has a certificate");
        let mut byte = [0u8; 1];
        io.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
        io.write_all(&byte).await.map_err(|e| e.to_string())?;
        io.flush().await.map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn peers_of_one_ca_connect_and_a_stranger_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ours = Arc::new(PeerTls::load(&pki(dir.path(), "ours")).unwrap());
        let theirs = PeerTls::load(&pki(dir.path(), "theirs")).unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(serve_once(listener, ours.clone()));
        let stream = TcpStream::connect(&addr).await.unwrap();
        let mut io = ours.connect("127.0.0.1", stream).await.unwrap();
        io.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        io.read_exact(&mut byte).await.unwrap();
        assert_eq!(&byte, b"x");
        assert_eq!(server.await.unwrap(), Ok(()));

        // A certificate from another CA: the listener refuses it (and the
        // dialer does not trust the listener either).
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(serve_once(listener, ours.clone()));
        let stream = TcpStream::connect(&addr).await.unwrap();
        assert!(theirs.connect("127.0.0.1", stream).await.is_err());
        let refused = server.await.unwrap().unwrap_err();
        assert!(!refused.is_empty());

        // Plain TCP bytes instead of a handshake: refused.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(serve_once(listener, ours));
        let mut plain = TcpStream::connect(&addr).await.unwrap();
        plain.write_all(&[0, 0, 0, 5, 1, 2, 3, 4, 5]).await.unwrap();
        assert!(server.await.unwrap().is_err());
    }

    #[test]
    fn a_missing_file_is_named_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = pki(dir.path(), "n");
        files.key = (dir.path().join("absent.key"), "cluster.tls_key");
        let error = PeerTls::load(&files).unwrap_err().to_string();
        assert!(error.contains("cluster.tls_key"), "{error}");
        assert!(error.contains("absent.key"), "{error}");
    }

    #[test]
    fn a_member_is_expected_under_its_configured_name_else_its_address() {
        let configured = BTreeMap::from([(1, "node1.example".to_owned())]);
        assert_eq!(
            expected_name(&configured, 1, "127.0.0.1:61630"),
            "node1.example"
        );
        // Known from the membership only: the host of its address there.
        assert_eq!(expected_name(&configured, 4, "10.0.0.4:61630"), "10.0.0.4");
        assert_eq!(
            expected_name(&configured, 5, "node5.example:61630"),
            "node5.example"
        );
        assert!(matches!(
            server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("node1.example").unwrap(),
            ServerName::DnsName(_)
        ));
    }

    /// A certificate of the test CA with these DNS names and common name.
    fn leaf(dns: &[&str], cn: Option<&str>) -> CertificateDer<'static> {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let names = dns.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let mut params = CertificateParams::new(names).unwrap();
        // rcgen names every certificate "rcgen self signed cert" unless told.
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        params.signed_by(&key, &ca).unwrap().der().clone()
    }

    #[test]
    fn a_certificate_names_a_node_by_san_or_common_name_and_no_other() {
        let both = leaf(&["node1.example"], Some("broker-one"));
        assert_eq!(names(&both, "node1.example"), Ok(()));
        assert_eq!(names(&both, "NODE1.example"), Ok(()));
        assert_eq!(names(&both, "broker-one"), Ok(()));
        let other = names(&both, "node2.example").unwrap_err();
        assert!(other.contains("node2.example"), "{other}");
        assert!(other.contains("broker-one"), "{other}");
        // An IP address name needs an IP address SAN.
        assert!(names(&both, "127.0.0.1").is_err());
        let cn_only = leaf(&[], Some("node3.example"));
        assert_eq!(names(&cn_only, "node3.example"), Ok(()));
        assert!(names(&cn_only, "node1.example").is_err());
        let nothing = leaf(&[], None);
        assert!(names(&nothing, "node1.example")
            .unwrap_err()
            .contains("common name none"));
    }
}
