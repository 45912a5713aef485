//! TLS as a service feature through the real broker: client certificates
//! (mutual TLS) required or optional, the certificate's common name as the
//! user, certificates from another CA refused, and SIGHUP swapping the
//! server certificate for new connections while old ones keep theirs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{hash_password, Broker, Client, Transport};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

/// A client certificate and its key.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// A CA that signs server and client certificates.
struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        Authority {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A server certificate for localhost: (cert PEM, key PEM, cert DER).
    fn server(&self) -> (String, String, CertificateDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().clone())
    }

    /// A client certificate whose subject common name is `cn`.
    fn client(&self, cn: &str) -> Identity {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

/// The CA, its PEM files and a broker configuration using them.
struct Setup {
    dir: TempDir,
    ca: Authority,
}

impl Setup {
    fn new() -> Setup {
        let ca = Authority::new("ferromq test CA");
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, _) = ca.server();
        std::fs::write(dir.path().join("server.crt"), cert).unwrap();
        std::fs::write(dir.path().join("server.key"), key).unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.issuer.pem()).unwrap();
        Setup { dir, ca }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `[tls]` with client certificates `mode` ("required"/"optional"),
    /// plus users `svc` (password "pw") and no anonymous access.
    fn config(&self, mode: &str) -> String {
        let hash = hash_password("pw");
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\nclient_auth = \"{mode}\"\n\
             [auth]\nanonymous = false\n[[auth.users]]\nname = \"svc\"\npassword_hash = \"{hash}\"\n",
            self.path("server.crt").display(),
            self.path("server.key").display(),
            self.path("ca.crt").display(),
        )
    }

    fn start(&self, config: &str) -> Broker {
        Broker::start_with(Some(config), &["--stomp-tls", "127.0.0.1:0"])
    }
}

struct TlsStream(StreamOwned<ClientConnection, TcpStream>);

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Transport for TlsStream {
    fn set_read_timeout(&self, d: Option<Duration>) -> std::io::Result<()> {
        self.0.sock.set_read_timeout(d)
    }
}

/// Handshakes (presenting `identity` if given) and returns the stream and
/// the server's certificate, or the handshake error.
fn handshake(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    identity: Option<&Identity>,
) -> Result<(TlsStream, CertificateDer<'static>), String> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    let server_cert = conn.peer_certificates().unwrap()[0].clone();
    Ok((TlsStream(StreamOwned::new(conn, tcp)), server_cert))
}

/// Handshake plus CONNECT: the broker's answer, or why there was none (a
/// refused client certificate shows up as a handshake or read error; in
/// TLS 1.3 the server's alert arrives after the client's handshake ends).
fn connect(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    identity: Option<&Identity>,
    login: Option<(&str, &str)>,
) -> Result<(Client, Frame), String> {
    let (mut stream, _) = handshake(addr, ca, identity)?;
    let mut connect = b"CONNECT\naccept-version:1.2\nhost:/\n".to_vec();
    if let Some((user, password)) = login {
        connect.extend_from_slice(format!("login:{user}\npasscode:{password}\n").as_bytes());
    }
    connect.extend_from_slice(b"\n\0");
    stream.write_all(&connect).map_err(|e| e.to_string())?;
    // Peek at the first bytes before handing the stream to the harness
    // client, which panics on a closed connection.
    let mut first = [0u8; 1];
    match stream.read(&mut first) {
        Ok(0) => return Err("closed before answering".into()),
        Ok(_) => {}
        Err(e) => return Err(e.to_string()),
    }
    let mut client = Client::over(Box::new(PrefixedStream {
        prefix: Some(first[0]),
        inner: stream,
    }));
    let reply = client.recv();
    if reply.command == Command::Connected {
        client.set_version(ferromq_protocol::stomp::Version::V1_2);
    }
    Ok((client, reply))
}

/// A stream that yields one already-read byte first.
struct PrefixedStream {
    prefix: Option<u8>,
    inner: TlsStream,
}

impl Read for PrefixedStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.prefix.take() {
            Some(b) if !buf.is_empty() => {
                buf[0] = b;
                Ok(1)
            }
            _ => self.inner.read(buf),
        }
    }
}

impl Write for PrefixedStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Transport for PrefixedStream {
    fn set_read_timeout(&self, d: Option<Duration>) -> std::io::Result<()> {
        self.inner.set_read_timeout(d)
    }
}

#[test]
fn required_client_certificate_authenticates_as_its_common_name() {
    let setup = Setup::new();
    let broker = setup.start(&setup.config("required"));
    let tls = broker.stomp_tls.unwrap();
    let svc = setup.ca.client("svc");
    let (mut c, reply) = connect(tls, &setup.ca.der(), Some(&svc), None).unwrap();
    assert_eq!(reply.command, Command::Connected, "{reply:?}");
    c.send_message("/queue/mtls", "by certificate", &[]);
    assert!(broker.wait_for_log("user=svc"));
    // A login on a certificate connection is still checked by password.
    let (_, reply) = connect(tls, &setup.ca.der(), Some(&svc), Some(("svc", "bad"))).unwrap();
    assert_eq!(reply.get("message"), Some("authentication failed"));
}

#[test]
fn required_client_certificate_refuses_missing_and_foreign_ones() {
    let setup = Setup::new();
    let broker = setup.start(&setup.config("required"));
    let tls = broker.stomp_tls.unwrap();
    let none = connect(tls, &setup.ca.der(), None, Some(("svc", "pw")));
    assert!(none.is_err(), "no certificate was accepted");
    let rogue = Authority::new("rogue CA").client("svc");
    let foreign = connect(tls, &setup.ca.der(), Some(&rogue), None);
    assert!(foreign.is_err(), "a foreign certificate was accepted");
    assert!(broker.wait_for_log("TLS handshake failed"));
    // The broker carries on for a proper client.
    let (_, reply) = connect(tls, &setup.ca.der(), Some(&setup.ca.client("svc")), None).unwrap();
    assert_eq!(reply.command, Command::Connected);
}

#[test]
fn certificate_of_an_unknown_user_fails_authentication() {
    let setup = Setup::new();
    let broker = setup.start(&setup.config("required"));
    let stranger = setup.ca.client("stranger");
    let (mut c, reply) = connect(
        broker.stomp_tls.unwrap(),
        &setup.ca.der(),
        Some(&stranger),
        None,
    )
    .unwrap();
    assert_eq!(reply.get("message"), Some("authentication failed"));
    assert!(c.recv_until_closed().is_empty());
    assert!(broker.wait_for_log("certificate=stranger"));
}

#[test]
fn optional_client_certificate_lets_password_logins_in() {
    let setup = Setup::new();
    let broker = setup.start(&setup.config("optional"));
    let tls = broker.stomp_tls.unwrap();
    let (_, reply) = connect(tls, &setup.ca.der(), None, Some(("svc", "pw"))).unwrap();
    assert_eq!(reply.command, Command::Connected, "{reply:?}");
    let (_, reply) = connect(tls, &setup.ca.der(), None, None).unwrap();
    assert_eq!(reply.get("message"), Some("authentication failed"));
    let svc = setup.ca.client("svc");
    let (_, reply) = connect(tls, &setup.ca.der(), Some(&svc), None).unwrap();
    assert_eq!(reply.command, Command::Connected);
}

#[test]
fn sighup_reloads_the_server_certificate_for_new_connections() {
    let setup = Setup::new();
    let config = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        setup.path("server.crt").display(),
        setup.path("server.key").display()
    );
    let broker = setup.start(&config);
    let tls = broker.stomp_tls.unwrap();
    let (_, before) = handshake(tls, &setup.ca.der(), None).unwrap();
    let (mut old, reply) = connect(tls, &setup.ca.der(), None, None).unwrap();
    assert_eq!(reply.command, Command::Connected);
    old.subscribe("s", "/queue/tls-reload", "auto");

    let (cert, key, new_der) = setup.ca.server();
    std::fs::write(setup.path("server.crt"), cert).unwrap();
    std::fs::write(setup.path("server.key"), key).unwrap();
    broker.sighup();
    assert!(broker.wait_for_log("TLS certificates reloaded"));

    let (_, after) = handshake(tls, &setup.ca.der(), None).unwrap();
    assert_ne!(before, after, "still the old certificate");
    assert_eq!(after, new_der);
    // The connection made before the reload is untouched.
    let (mut fresh, _) = connect(tls, &setup.ca.der(), None, None).unwrap();
    fresh.send_message("/queue/tls-reload", "across", &[]);
    assert_eq!(&old.recv().body[..], b"across");

    // Unusable files on SIGHUP keep the current certificate.
    std::fs::write(setup.path("server.key"), "not a key").unwrap();
    broker.sighup();
    assert!(broker.wait_for_log("TLS certificates not reloaded"));
    let (_, still) = handshake(tls, &setup.ca.der(), None).unwrap();
    assert_eq!(still, new_der);
}
