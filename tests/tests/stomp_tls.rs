//! STOMP over TLS through the real broker: a CA and server certificate made
//! with rcgen, full sessions over TLS 1.2 and 1.3 (rustls client, ring), the
//! plain and TLS listeners sharing destinations, a plain client on the TLS
//! port, and start-up errors naming a missing or unusable PEM file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::pki::Pki;
use ferromq_tests::{Broker, Client, Transport};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ProtocolVersion, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Config text with `[tls]` pointing at `cert` and `key`.
fn tls_config(cert: &Path, key: &Path) -> String {
    format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

/// Starts a broker with plain STOMP and STOMP+TLS on ephemeral ports.
fn start(pki: &Pki, cert: &Path, key: &Path) -> Result<Broker, ferromq_tests::StartFailure> {
    let config = pki.path("ferromq.toml");
    std::fs::write(&config, tls_config(cert, key)).unwrap();
    Broker::try_start_exact(
        &[
            "--config",
            config.to_str().unwrap(),
            "--stomp",
            "127.0.0.1:0",
            "--stomp-tls",
            "127.0.0.1:0",
            "--native",
            "",
            "--native-tls",
            "",
            "--websocket",
            "",
            "--websocket-tls",
            "",
            "--admin",
            "",
        ],
        pki.dir(),
    )
}

fn start_ok(pki: &Pki) -> Broker {
    start(pki, &pki.path("server.crt"), &pki.path("server.key")).unwrap()
}

/// A rustls client stream the harness [`Client`] can run over.
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

/// Opens a TLS connection restricted to `version`, completes the handshake
/// and returns a STOMP client over it (nothing sent yet).
fn tls_client(addr: SocketAddr, ca: &CertificateDer<'static>, version: ProtocolVersion) -> Client {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match version {
        ProtocolVersion::TLSv1_2 => &[&rustls::version::TLS12],
        _ => &[&rustls::version::TLS13],
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    assert_eq!(conn.protocol_version(), Some(version));
    Client::over(Box::new(TlsStream(StreamOwned::new(conn, tcp))))
}

fn full_session_over(version: ProtocolVersion) {
    let pki = Pki::new();
    let broker = start_ok(&pki);
    let addr = broker.stomp_tls.expect("no stomp+tls listener");
    let mut c = tls_client(addr, &pki.ca, version);
    let reply = c.handshake(
        Command::Connect,
        &[("accept-version", "1.2"), ("host", "localhost")],
    );
    assert_eq!(reply.command, Command::Connected, "{reply:?}");
    c.subscribe("s", "/queue/tls", "client-individual");
    let body = vec![7u8; 100_000]; // several TLS records
    c.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/tls")
            .body(body.clone()),
    );
    let m = c.recv();
    assert_eq!(m.command, Command::Message);
    assert_eq!(&m.body[..], &body[..]);
    c.send_with_receipt(
        Frame::new(Command::Ack).header("id", m.get("ack").unwrap()),
        "ack",
    );
    c.send(Frame::new(Command::Disconnect).header("receipt", "bye"));
    let frames = c.recv_until_closed();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].get("receipt-id"), Some("bye"));
}

#[test]
fn full_session_over_tls_1_3() {
    full_session_over(ProtocolVersion::TLSv1_3);
}

#[test]
fn full_session_over_tls_1_2() {
    full_session_over(ProtocolVersion::TLSv1_2);
}

#[test]
fn plain_and_tls_clients_share_destinations() {
    let pki = Pki::new();
    let broker = start_ok(&pki);
    let mut secure = tls_client(broker.stomp_tls.unwrap(), &pki.ca, ProtocolVersion::TLSv1_3);
    secure.handshake(
        Command::Connect,
        &[("accept-version", "1.2"), ("host", "/")],
    );
    secure.subscribe("s", "/topic/mixed", "auto");
    broker
        .client()
        .send_message("/topic/mixed", "from plain", &[]);
    assert_eq!(&secure.recv().body[..], b"from plain");
}

#[test]
fn plain_stomp_on_the_tls_port_is_refused_and_the_broker_carries_on() {
    let pki = Pki::new();
    let broker = start_ok(&pki);
    let mut plain = Client::connect(broker.stomp_tls.unwrap());
    plain.send_raw(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0");
    // No STOMP frame comes back: the TLS handshake fails and the socket closes.
    let frames = plain.recv_until_closed();
    assert!(frames.is_empty(), "{frames:?}");
    let mut secure = tls_client(broker.stomp_tls.unwrap(), &pki.ca, ProtocolVersion::TLSv1_2);
    let reply = secure.handshake(
        Command::Connect,
        &[("accept-version", "1.2"), ("host", "/")],
    );
    assert_eq!(reply.command, Command::Connected);
}

#[test]
fn missing_certificate_file_stops_the_broker_naming_the_path() {
    let pki = Pki::new();
    let missing = pki.path("no-such-dir/server.crt");
    let failure = start(&pki, &missing, &pki.path("server.key"))
        .err()
        .expect("started without its certificate");
    assert!(!failure.status.unwrap().success(), "{}", failure.log);
    assert!(
        failure.log.contains(missing.to_str().unwrap()),
        "{}",
        failure.log
    );
}

#[test]
fn unusable_key_file_stops_the_broker_naming_the_path() {
    let pki = Pki::new();
    let bad_key = pki.path("garbage.key");
    std::fs::write(&bad_key, "this is not a PEM key\n").unwrap();
    let failure = start(&pki, &pki.path("server.crt"), &bad_key)
        .err()
        .expect("started with a garbage key");
    assert!(!failure.status.unwrap().success());
    assert!(
        failure.log.contains(bad_key.to_str().unwrap()),
        "{}",
        failure.log
    );
}

#[test]
fn a_directory_as_certificate_stops_the_broker_naming_the_path() {
    let pki = Pki::new();
    let dir = pki.path("certdir");
    std::fs::create_dir(&dir).unwrap();
    let failure = start(&pki, &dir, &pki.path("server.key"))
        .err()
        .expect("started with a directory as certificate");
    assert!(!failure.status.unwrap().success());
    assert!(
        failure.log.contains(dir.to_str().unwrap()),
        "{}",
        failure.log
    );
}
