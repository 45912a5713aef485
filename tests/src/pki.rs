//! A test PKI for the TLS listeners: a CA and a server certificate for
//! `localhost`/127.0.0.1 made with rcgen, written as PEM files (`ca.crt`,
//! `server.crt`, `server.key`) into a temporary directory; more
//! certificates of the same CA on demand ([`Pki::issue`]).

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use rustls::pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// The CA and server certificate, and the directory holding their files.
pub struct Pki {
    dir: TempDir,
    /// The CA certificate clients trust.
    pub ca: CertificateDer<'static>,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// Generates a fresh CA and server certificate.
    pub fn new() -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct subjects: rcgen's default one is the same for every
        // certificate, and OpenSSL (Node) takes a leaf whose issuer equals
        // its subject for self-signed.
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ferromq test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
        let server_key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        let server = params
            .signed_by(&server_key, &ca)
            .expect("server certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.crt"), ca.pem()).expect("write ca.crt");
        std::fs::write(dir.path().join("server.crt"), server.pem()).expect("write server.crt");
        std::fs::write(dir.path().join("server.key"), server_key.serialize_pem())
            .expect("write server.key");
        Pki {
            dir,
            ca: ca.der().clone(),
            issuer: ca,
        }
    }

    /// A certificate of this CA for DNS name `name` (also its common
    /// name), written as `<name>.crt` and `<name>.key`; their paths.
    pub fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec![name.to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        let (crt, key_path) = (
            self.path(&format!("{name}.crt")),
            self.path(&format!("{name}.key")),
        );
        std::fs::write(&crt, cert.pem()).expect("write certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (crt, key_path)
    }

    /// The directory holding the PEM files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A file in that directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Config text with `[tls]` pointing at the server certificate and key.
    pub fn tls_config(&self) -> String {
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            self.path("server.crt").display(),
            self.path("server.key").display()
        )
    }
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}
