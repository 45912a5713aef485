//! The native protocol's TLS listener and authentication: a full exchange
//! over `ferromq+tls://` with a CA made by rcgen, and Open credentials and
//! ACLs checked exactly as for STOMP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod native_common;

use ferromq_protocol::client::{
    ClientError, ConnectOptions, Connection, OutgoingMessage, ReceiverOptions, SettleMode,
};
use ferromq_protocol::native::ErrorCondition;
use ferromq_tests::hash_password;
use native_common::{broker_with, url};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

/// A CA and a `localhost` server certificate in `dir`; returns the client config trusting the CA.
fn pki(dir: &std::path::Path) -> Arc<ClientConfig> {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let server = params.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("server.crt"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

#[tokio::test]
async fn native_over_tls_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let client_tls = pki(dir.path());
    let config = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.path().join("server.crt").display(),
        dir.path().join("server.key").display()
    );
    let b = broker_with(&config, &["--native-tls", "127.0.0.1:0"]);
    let addr = b.listener("native+tls").expect("native+tls listener");
    let tls_url = format!("ferromq+tls://localhost:{}", addr.port());
    let options = ConnectOptions {
        tls: Some(client_tls),
        ..ConnectOptions::default()
    };
    let conn = Connection::connect_with(&tls_url, options).await.unwrap();
    let sender = conn
        .open_sender("/queue/secure", SettleMode::Unsettled)
        .await
        .unwrap();
    sender
        .send_and_wait(OutgoingMessage::text("over tls"))
        .await
        .unwrap();
    // The plain listener shares the destination.
    let plain = Connection::connect(&url(&b)).await.unwrap();
    let mut r = plain
        .open_receiver("/queue/secure", ReceiverOptions::default())
        .await
        .unwrap();
    let d = timeout(WAIT, r.recv()).await.unwrap().unwrap();
    assert_eq!(d.body().as_ref(), b"over tls");
    r.accept(&d).await.unwrap();
    // A plain native client on the TLS port gets no native preamble back.
    let wrong = Connection::connect(&format!("ferromq://127.0.0.1:{}", addr.port())).await;
    assert!(wrong.is_err());
    // And the TLS URL without a TLS configuration is refused locally.
    let no_config = Connection::connect(&tls_url).await;
    assert!(
        matches!(no_config, Err(ClientError::Tls(_))),
        "{:?}",
        no_config.err()
    );
}

#[tokio::test]
async fn open_credentials_and_acls_apply_as_for_stomp() {
    let hash = hash_password("pw-app");
    let config = format!(
        "[auth]\nanonymous = false\n[[auth.users]]\nname = \"app\"\npassword_hash = \"{hash}\"\n\
         [[acl]]\ndestination = \"/queue/app.>\"\nread = [\"app\"]\nwrite = [\"app\"]\nadmin = [\"app\"]\n"
    );
    let b = broker_with(&config, &[]);
    let with = |user: Option<(&str, &str)>| ConnectOptions {
        credentials: user.map(|(u, p)| (u.to_string(), p.to_string())),
        ..ConnectOptions::default()
    };
    for bad in [None, Some(("app", "wrong")), Some(("nobody", "pw-app"))] {
        match Connection::connect_with(&url(&b), with(bad)).await {
            Err(ClientError::Closed(Some(e))) => {
                assert_eq!(e.condition(), ErrorCondition::UnauthorizedAccess, "{e}");
                assert_eq!(e.description, "authentication failed");
            }
            other => panic!("{bad:?} should be refused, got {:?}", other.err()),
        }
    }
    assert!(b.wait_for_log("authentication failed"));
    assert!(!b.log().contains("pw-app"), "a password reached the log");
    let conn = Connection::connect_with(&url(&b), with(Some(("app", "pw-app"))))
        .await
        .unwrap();
    let sender = conn
        .open_sender("/queue/app.orders", SettleMode::Unsettled)
        .await
        .unwrap();
    sender
        .send_and_wait(OutgoingMessage::text("allowed"))
        .await
        .unwrap();
    match conn
        .open_sender("/queue/other", SettleMode::Unsettled)
        .await
    {
        Err(ClientError::Refused(e)) => {
            assert_eq!(e.condition(), ErrorCondition::UnauthorizedAccess, "{e}");
            assert!(e.description.contains("/queue/other"), "{e}");
        }
        other => panic!("expected a refusal, got {:?}", other.err()),
    }
    match conn
        .open_receiver("/queue/other", ReceiverOptions::default())
        .await
    {
        Err(ClientError::Refused(e)) => {
            assert_eq!(e.condition(), ErrorCondition::UnauthorizedAccess)
        }
        other => panic!("expected a refusal, got {:?}", other.err()),
    }
    let mut r = conn
        .open_receiver("/queue/app.orders", ReceiverOptions::default())
        .await
        .unwrap();
    let d = timeout(WAIT, r.recv()).await.unwrap().unwrap();
    assert_eq!(d.body().as_ref(), b"allowed");
}
