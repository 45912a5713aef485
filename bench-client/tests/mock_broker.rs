//! Driver and runner tests against a tiny in-process STOMP broker: failover
//! with error counting, TLS trust (`--ca`, `--insecure`, and rejection of an
//! unknown CA), and the frames each scenario setting produces on the wire.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use bytes::BytesMut;
use ferromq_bench::driver::stomp::{StompDriver, StompOptions};
use ferromq_bench::driver::transport::{tls_config, TlsOptions};
use ferromq_bench::driver::{Driver, DriverError, ProducerSpec};
use ferromq_bench::runner::{run_scenario, RunSettings, ScenarioOutcome};
use ferromq_bench::scenario::{AckMode, Scenario};
use ferromq_bench::url::BrokerUrl;
use ferromq_protocol::stomp::{encode_frame, Command, Decoder, Frame, Limits, Version};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A subscriber: its connection's outgoing frames and its subscription id.
type Subscriber = (mpsc::Sender<BytesMut>, String);

/// What the mock broker saw, and who subscribed where.
#[derive(Default)]
struct Mock {
    subs: Mutex<HashMap<String, Vec<Subscriber>>>,
    seen: Mutex<HashMap<String, u64>>,
    next_id: AtomicU64,
}

impl Mock {
    fn count(&self, what: &str) -> u64 {
        *self.seen.lock().unwrap().get(what).unwrap_or(&0)
    }
    fn note(&self, what: String) {
        *self.seen.lock().unwrap().entry(what).or_default() += 1;
    }
}

async fn start_mock(tls: Option<tokio_rustls::TlsAcceptor>) -> (u16, Arc<Mock>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mock = Arc::new(Mock::default());
    let m = mock.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let m = m.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(tcp).await {
                            serve(s, m).await;
                        }
                    }
                    None => serve(tcp, m).await,
                }
            });
        }
    });
    (port, mock)
}

fn frame_bytes(frame: &Frame) -> BytesMut {
    let mut b = BytesMut::new();
    encode_frame(frame, Version::V1_2, &mut b);
    b
}

async fn serve<S: AsyncRead + AsyncWrite + Send + 'static>(stream: S, mock: Arc<Mock>) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<BytesMut>(1024);
    tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
    });
    let mut decoder = Decoder::new(Limits::default());
    let mut buf = BytesMut::with_capacity(65536);
    loop {
        let frame = match decoder.decode(&mut buf) {
            Ok(Some(f)) => f,
            Ok(None) => {
                // Yield between reads: a task that always finds data ready
                // would otherwise keep the writer it just woke from running.
                tokio::task::yield_now().await;
                match rd.read_buf(&mut buf).await {
                    Ok(n) if n > 0 => continue,
                    _ => return,
                }
            }
            Err(_) => return,
        };
        mock.note(format!("{:?}", frame.command));
        if frame.get("transaction").is_some() {
            mock.note(format!("{:?}+tx", frame.command));
        }
        if frame.get("persistent") == Some("true") {
            mock.note("persistent".into());
        }
        if frame.get("receipt").is_some() {
            mock.note(format!("{:?}+receipt", frame.command));
        }
        if frame.command == Command::Send {
            mock.note(format!("body:{}", frame.body.len()));
        }
        match frame.command {
            Command::Connect | Command::Stomp => {
                decoder.set_version(Version::V1_2);
                let ok = Frame::new(Command::Connected).header("version", "1.2");
                let _ = tx.send(frame_bytes(&ok)).await;
            }
            Command::Subscribe => {
                let dest = frame.get("destination").unwrap_or("").to_string();
                let id = frame.get("id").unwrap_or("").to_string();
                mock.note(format!("ack:{}", frame.get("ack").unwrap_or("auto")));
                mock.subs
                    .lock()
                    .unwrap()
                    .entry(dest)
                    .or_default()
                    .push((tx.clone(), id));
            }
            Command::Send => {
                let dest = frame.get("destination").unwrap_or("");
                let targets = mock
                    .subs
                    .lock()
                    .unwrap()
                    .get(dest)
                    .cloned()
                    .unwrap_or_default();
                for (sub_tx, sub_id) in targets {
                    let id = mock.next_id.fetch_add(1, Ordering::Relaxed).to_string();
                    let mut msg = Frame::new(Command::Message)
                        .header("destination", dest)
                        .header("message-id", &id)
                        .header("subscription", &sub_id)
                        .header("ack", &id);
                    if let Some(ts) = frame.get("bench-ts") {
                        msg = msg.header("bench-ts", ts);
                    }
                    // Waiting here is the mock's flow control: a full subscriber
                    // channel stops reading from the producer.
                    let _ = sub_tx
                        .send(frame_bytes(&msg.body(frame.body.clone())))
                        .await;
                }
            }
            Command::Disconnect => return,
            _ => {}
        }
        if let Some(r) = frame.get("receipt") {
            let receipt = Frame::new(Command::Receipt).header("receipt-id", r);
            let _ = tx.send(frame_bytes(&receipt)).await;
        }
    }
}

fn options(url: &str, tls: Option<Arc<rustls::ClientConfig>>) -> StompOptions {
    StompOptions {
        url: BrokerUrl::parse(url).unwrap(),
        login: None,
        passcode: None,
        vhost: "/".into(),
        connect_timeout: Duration::from_secs(5),
        tls,
    }
}

fn quick_settings() -> RunSettings {
    RunSettings {
        warm_up_count: 2,
        sample_count: 3,
        sample_interval: Duration::from_millis(200),
        drain_timeout: Duration::from_millis(200),
        reconnect_delay: Duration::from_millis(50),
        ..RunSettings::default()
    }
}

async fn run(url: &str, tls: Option<Arc<rustls::ClientConfig>>, s: &Scenario) -> ScenarioOutcome {
    let driver = Arc::new(StompDriver::new(options(url, tls)));
    run_scenario(driver, s, &quick_settings(), &mut |_| {})
        .await
        .unwrap()
}

fn totals(o: &ScenarioOutcome) -> (u64, u64, u64) {
    (
        o.series.producer_tp.iter().sum(),
        o.series.consumer_tp.iter().sum(),
        o.series.errors.iter().sum::<u64>() + o.errors_outside_samples,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_skips_a_dead_endpoint_and_counts_the_errors() {
    let (port, _mock) = start_mock(None).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("failover:(stomp://127.0.0.1:{dead},stomp://127.0.0.1:{port})");
    let o = run(&url, None, &Scenario::baseline("test")).await;
    let (produced, consumed, errors) = totals(&o);
    assert!(produced > 0 && consumed > 0, "{produced} {consumed}");
    // Producer 0 and consumer 0 both start on the dead endpoint.
    assert!(errors >= 2, "errors {errors}");
    let last = o.last_error.unwrap();
    assert!(last.contains(&dead.to_string()), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_settings_map_to_stomp_frames() {
    let (port, mock) = start_mock(None).await;
    let url = format!("stomp://127.0.0.1:{port}");
    let mut s = Scenario::baseline("test");
    s.persistent = true;
    s.tx_size = 5;
    let o = run(&url, None, &s).await;
    let (produced, consumed, errors) = totals(&o);
    assert!(
        produced >= 5 && consumed > 0 && errors == 0,
        "{produced} {consumed} {errors}"
    );
    assert!(mock.count("Send+tx") > 0, "SENDs carry the transaction");
    assert!(mock.count("Begin") > 0 && mock.count("Commit") > 0);
    assert!(
        mock.count("Ack+tx") > 0,
        "consumer ACKs inside transactions"
    );
    assert_eq!(mock.count("persistent"), mock.count("Send"));
    assert_eq!(mock.count("ack:client"), 1);
    // Transacted sends wait on the COMMIT's receipt, not one per SEND: read
    // off the wire (comparing receipt samples with sampled throughput
    // raced with the sample boundaries and failed one run in three).
    assert_eq!(
        mock.count("Send+receipt"),
        0,
        "a transacted SEND asked for a receipt"
    );
    assert!(mock.count("Commit+receipt") > 0, "COMMITs ask for receipts");

    let (port, mock) = start_mock(None).await;
    let url = format!("stomp://127.0.0.1:{port}");
    let mut s = Scenario::baseline("test");
    s.ack = AckMode::Auto;
    let o = run(&url, None, &s).await;
    let consumed = totals(&o).1;
    assert!(consumed > 0, "consumed {consumed}");
    assert_eq!(mock.count("persistent"), 0, "no persistent header at all");
    assert_eq!(mock.count("Ack"), 0, "ack:auto sends no ACK");
    assert_eq!(mock.count("Begin"), 0);
    assert!(
        o.series.receipt_total.is_empty(),
        "non-persistent sends wait for nothing"
    );
}

fn self_signed() -> (rustls::ServerConfig, String) {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_der = key.cert.der().clone();
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert_der], key_der)
    .unwrap();
    (config, key.cert.pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_trusts_ca_files_or_insecure_and_rejects_unknown_certificates() {
    let (server, pem) = self_signed();
    let (port, _mock) = start_mock(Some(tokio_rustls::TlsAcceptor::from(Arc::new(server)))).await;
    let url = format!("stomp+ssl://localhost:{port}");
    let spec = ProducerSpec {
        destination: "/queue/x".into(),
        persistent: false,
        body: Arc::from(&b"x"[..]),
    };

    // Unknown CA: the handshake fails with a TLS error naming the endpoint.
    let strict = tls_config(&TlsOptions::default()).unwrap();
    let driver = StompDriver::new(options(&url, Some(strict)));
    match driver.connect_producer(0, &spec).await {
        Err(DriverError::Tls { endpoint, .. }) => assert!(endpoint.contains(&port.to_string())),
        Err(e) => panic!("expected a TLS error, got {e}"),
        Ok(_) => panic!("connected to a server with an unknown CA"),
    }

    // --ca with the server's certificate: a scenario runs over TLS.
    let dir = std::env::temp_dir().join(format!("ferromq-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let trusted = tls_config(&TlsOptions {
        ca_files: vec![ca.clone()],
        insecure: false,
    })
    .unwrap();
    let o = run(&url, Some(trusted), &Scenario::baseline("test")).await;
    let (produced, consumed, errors) = totals(&o);
    assert!(
        produced > 0 && consumed > 0 && errors == 0,
        "{produced} {consumed} {errors} {:?}",
        o.last_error
    );

    // --insecure: any certificate.
    let insecure = tls_config(&TlsOptions {
        ca_files: vec![],
        insecure: true,
    })
    .unwrap();
    let driver = StompDriver::new(options(&url, Some(insecure)));
    assert!(driver.connect_producer(0, &spec).await.is_ok());

    // A CA file that holds no certificate is a configuration error.
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let err = tls_config(&TlsOptions {
        ca_files: vec![ca],
        insecure: false,
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("ca.pem"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_nobody_can_reach_ends_the_run_with_the_reason() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let driver = Arc::new(StompDriver::new(options(
        &format!("stomp://127.0.0.1:{dead}"),
        None,
    )));
    let settings = RunSettings {
        connect_wait: Duration::from_millis(500),
        ..quick_settings()
    };
    let started = std::time::Instant::now();
    let err = run_scenario(driver, &Scenario::baseline("test"), &settings, &mut |_| {})
        .await
        .err()
        .expect("no broker: the scenario must fail");
    let text = err.to_string();
    assert!(text.contains(&dead.to_string()), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_are_framed_correctly_between_other_frames() {
    let (port, mock) = start_mock(None).await;
    let url = format!("stomp://127.0.0.1:{port}");
    let mut s = Scenario::baseline("test");
    s.message_size = 200_000;
    s.persistent = true;
    s.tx_size = 3;
    let o = run(&url, None, &s).await;
    let (produced, consumed, errors) = totals(&o);
    assert!(
        produced >= 3 && consumed > 0 && errors == 0,
        "{produced} {consumed} {errors}"
    );
    let sends = mock.count("Send");
    assert!(sends >= 3);
    assert_eq!(
        mock.count("body:200000"),
        sends,
        "every SEND carries the whole body"
    );
    assert!(mock.count("Commit") > 0);
}
