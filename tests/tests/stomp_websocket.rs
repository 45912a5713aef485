//! STOMP over WebSocket through the real broker, with a tokio-tungstenite
//! client: subprotocol negotiation, sessions on queues, frames split across
//! and batched into WebSocket messages, text and binary messages, ERROR then
//! close (bad frame, oversized message, connection limit, shutdown),
//! ping/pong, wss with the test CA, and a plain TCP client sharing a queue
//! with a WebSocket one. stomp.js itself is tested by `stomp_js.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame, Version};
use ferromq_tests::pki::Pki;
use ferromq_tests::ws::{upgrade, ws_connect, ws_session, Kind};
use ferromq_tests::{Broker, WAIT};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

fn websocket(broker: &Broker) -> SocketAddr {
    broker
        .listener("websocket")
        .expect("no websocket listener: start with --websocket 127.0.0.1:0")
}

fn start(config: Option<&str>) -> Broker {
    Broker::start_with(config, &["--websocket", "127.0.0.1:0"])
}

fn send_frame(destination: &str, body: &str) -> Frame {
    Frame::new(Command::Send)
        .header("destination", destination)
        .body(body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subprotocol_is_negotiated_highest_first() {
    let broker = start(None);
    let addr = websocket(&broker);
    for (offered, chosen) in [
        (
            &["v10.stomp", "v11.stomp", "v12.stomp"][..],
            Some("v12.stomp"),
        ),
        (&["v11.stomp", "v10.stomp"][..], Some("v11.stomp")),
        (&["stomp", "v10.stomp"][..], Some("v10.stomp")),
        (&["stomp"][..], Some("stomp")),
        (&[][..], None),
    ] {
        let mut c = ws_connect(addr, offered).await.unwrap();
        assert_eq!(c.subprotocol.as_deref(), chosen, "offered {offered:?}");
        let connected = c.connect().await;
        assert_eq!(connected.command, Command::Connected, "{connected:?}");
        assert_eq!(connected.get("version"), Some("1.2"));
    }
    // Only foreign subprotocols: refused at the HTTP level, naming ours.
    match ws_connect(addr, &["mqtt"]).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), 400);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(body.contains("v12.stomp"), "{body}");
        }
        Err(other) => panic!("expected HTTP 400, got {other}"),
        Ok(_) => panic!("an upgrade offering only mqtt was accepted"),
    }
    // Any path is accepted, and logged.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut c = upgrade(tcp, &format!("ws://{addr}/stomp/any?x=1"), &["v12.stomp"])
        .await
        .unwrap();
    assert_eq!(c.connect().await.command, Command::Connected);
    assert!(
        broker.wait_for_log("path=/stomp/any?x=1"),
        "{}",
        broker.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_send_and_receive_with_text_and_binary_messages() {
    let broker = start(None);
    let addr = websocket(&broker);
    let mut consumer = ws_session(addr).await;
    consumer.subscribe("s", "/queue/ws.q", "auto").await;
    let mut producer = ws_session(addr).await;
    producer
        .send_with_receipt(
            send_frame("/queue/ws.q", "héllo").header("x-app", "ws"),
            "r1",
        )
        .await;
    let m = consumer.recv().await;
    assert_eq!(m.command, Command::Message, "{m:?}");
    assert_eq!(&m.body[..], "héllo".as_bytes());
    assert_eq!(m.get("destination"), Some("/queue/ws.q"));
    assert_eq!(m.get("x-app"), Some("ws"));
    assert_eq!(consumer.kinds.last(), Some(&Kind::Text));

    // A body that is not UTF-8, sent in a binary message, comes back in one.
    let body = vec![0u8, 0xff, 0xfe, 0, 0x80];
    let mut frame = b"SEND\ndestination:/queue/ws.q\ncontent-length:5\n\n".to_vec();
    frame.extend_from_slice(&body);
    frame.push(0);
    producer.send_binary(frame).await;
    let m = consumer.recv().await;
    assert_eq!(&m.body[..], &body[..]);
    assert_eq!(consumer.kinds.last(), Some(&Kind::Binary));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_split_across_messages_and_batched_in_one() {
    let broker = start(None);
    let addr = websocket(&broker);
    let mut c = ws_connect(addr, &["v12.stomp"]).await.unwrap();
    // CONNECT in three messages, split inside the command and a header,
    // text and binary mixed.
    c.send_text("CONN").await;
    c.send_binary(b"ECT\naccept-version:1.".to_vec()).await;
    c.send_text("2\nhost:/\n\n\0").await;
    let connected = c.recv().await;
    assert_eq!(connected.command, Command::Connected, "{connected:?}");
    c.set_version(Version::V1_2);

    // A heart-beat EOL on its own, then SUBSCRIBE and three SENDs (with
    // EOLs between them) in one message.
    c.send_text("\n").await;
    let mut batch = c.encode(
        &Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", "/queue/ws.batch")
            .header("receipt", "sub"),
    );
    for n in 1..=3 {
        batch.extend_from_slice(b"\r\n");
        batch.extend_from_slice(&c.encode(&send_frame("/queue/ws.batch", &format!("m{n}"))));
    }
    c.send_text(std::str::from_utf8(&batch).unwrap()).await;
    let receipt = c.recv().await;
    assert_eq!(receipt.command, Command::Receipt, "{receipt:?}");
    let bodies: Vec<Vec<u8>> = [c.recv().await, c.recv().await, c.recv().await]
        .into_iter()
        .map(|f| f.body.to_vec())
        .collect();
    assert_eq!(bodies, [b"m1".to_vec(), b"m2".to_vec(), b"m3".to_vec()]);

    // A SEND whose body arrives one byte per message.
    let frame = c.encode(&send_frame("/queue/ws.batch", "trickled"));
    for byte in frame {
        c.send_binary(vec![byte]).await;
    }
    assert_eq!(&c.recv().await.body[..], b"trickled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frame_gets_error_then_close_and_others_carry_on() {
    let broker = start(None);
    let addr = websocket(&broker);
    let mut bystander = ws_session(addr).await;
    let mut c = ws_session(addr).await;
    c.send_text("BOGUS\n\n\0").await;
    let error = c.expect_error().await;
    let message = error.get("message").unwrap();
    assert!(message.contains("BOGUS"), "{error:?}");

    // A frame before CONNECT is refused the same way.
    let mut early = ws_connect(addr, &["v12.stomp"]).await.unwrap();
    early
        .send(send_frame("/queue/ws.early", "x").header("receipt", "r"))
        .await;
    let error = early.expect_error().await;
    assert!(
        error.get("message").unwrap().contains("before CONNECT"),
        "{error:?}"
    );
    assert_eq!(error.get("receipt-id"), Some("r"));

    // A text message that is not UTF-8 (sent as a raw frame: tungstenite
    // will not build one otherwise).
    let mut c = ws_session(addr).await;
    let bad_text = WsFrame::message(
        b"SEND\ndestination:/queue/ws.x\n\n\xff\0".to_vec(),
        OpCode::Data(Data::Text),
        true,
    );
    c.send_message(Message::Frame(bad_text)).await;
    let error = c.expect_error().await;
    assert!(
        error.get("message").unwrap().contains("not valid UTF-8"),
        "{error:?}"
    );

    bystander.subscribe("s", "/queue/ws.still", "auto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_gets_error_naming_the_limit() {
    let broker = start(Some(
        "[stomp]\nmax_frame_size = \"4KiB\"\nmax_header_line = \"1KiB\"\n",
    ));
    let addr = websocket(&broker);
    // A frame over the limit inside a message the WebSocket layer accepts:
    // the STOMP decoder's error.
    let mut c = ws_session(addr).await;
    c.send(send_frame("/queue/ws.big", &"x".repeat(4200))).await;
    let error = c.expect_error().await;
    assert!(error.get("message").unwrap().contains("4096"), "{error:?}");
    // A message far over the limit: refused before it is read whole.
    let mut c = ws_session(addr).await;
    c.send_binary(vec![b'x'; 64 * 1024]).await;
    let error = c.expect_error().await;
    let message = error.get("message").unwrap();
    assert_eq!(
        message, "WebSocket message larger than stomp.max_frame_size (4096 bytes)",
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_gets_pong_and_client_close_ends_the_session() {
    let broker = start(None);
    let addr = websocket(&broker);
    let mut c = ws_session(addr).await;
    c.subscribe("s", "/queue/ws.unacked", "client-individual")
        .await;
    let mut producer = ws_session(addr).await;
    producer
        .send_with_receipt(send_frame("/queue/ws.unacked", "keep me"), "r")
        .await;
    let m = c.recv().await;
    assert_eq!(&m.body[..], b"keep me");

    c.send_message(Message::Ping(b"are you there".to_vec().into()))
        .await;
    match c.next_message().await {
        Some(Message::Pong(payload)) => assert_eq!(&payload[..], b"are you there"),
        Some(other) => panic!("expected a pong, got {other:?}"),
        None => panic!("closed instead of answering the ping"),
    }

    // A WebSocket close without DISCONNECT: the unacknowledged message goes
    // back to the queue, as for a TCP close.
    c.ws.close(None).await.unwrap();
    while c.next_message().await.is_some() {}
    let mut again = ws_session(addr).await;
    again.subscribe("s", "/queue/ws.unacked", "auto").await;
    let m = again.recv().await;
    assert_eq!(&m.body[..], b"keep me");
    assert_eq!(m.get("redelivered"), Some("true"), "{m:?}");
    assert!(
        broker.wait_for_log("reason=\"peer closed the connection\""),
        "{}",
        broker.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_refusal_is_an_error_frame_over_websocket() {
    let broker = start(Some("[limits]\nmax_connections = 1\n"));
    let addr = websocket(&broker);
    let _first = ws_session(addr).await;
    let mut second = ws_connect(addr, &["v12.stomp"]).await.unwrap();
    let error = second.expect_error().await;
    assert_eq!(
        error.get("message"),
        Some("connection limit reached (limits.max_connections)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_error_to_websocket_clients() {
    let mut broker = start(None);
    let addr = websocket(&broker);
    let mut c = ws_session(addr).await;
    c.subscribe("s", "/queue/ws.bye", "auto").await;
    let status = tokio::task::block_in_place(|| broker.terminate());
    let error = c.expect_error().await;
    assert_eq!(error.get("message"), Some("broker shutting down"));
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_the_test_ca() {
    let pki = Pki::new();
    let broker = Broker::start_with(
        Some(&pki.tls_config()),
        &["--websocket", "", "--websocket-tls", "127.0.0.1:0"],
    );
    let addr = broker
        .listener("websocket+tls")
        .expect("no websocket+tls listener");
    assert!(broker.listener("websocket").is_none());

    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    let mut c = upgrade(
        tls,
        &format!("wss://localhost:{}/ws", addr.port()),
        &["v12.stomp"],
    )
    .await
    .unwrap();
    assert_eq!(c.subprotocol.as_deref(), Some("v12.stomp"));
    assert_eq!(c.connect().await.command, Command::Connected);
    c.subscribe("s", "/queue/wss.q", "client-individual").await;
    c.send(send_frame("/queue/wss.q", "secure")).await;
    let m = c.recv().await;
    assert_eq!(&m.body[..], b"secure");

    // Plain WebSocket on the wss port: the TLS handshake fails, nothing else.
    let plain = TcpStream::connect(addr).await.unwrap();
    let refused = upgrade(plain, &format!("ws://{addr}/ws"), &["v12.stomp"]).await;
    assert!(refused.is_err(), "plain WebSocket accepted on the wss port");
    assert!(
        broker.wait_for_log("TLS handshake failed"),
        "{}",
        broker.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_websocket_clients_share_a_queue() {
    let broker = Arc::new(start(None));
    let addr = websocket(&broker);
    let mut ws = ws_session(addr).await;
    ws.subscribe("s", "/queue/shared", "client-individual")
        .await;

    // TCP producer -> WebSocket consumer.
    let b = broker.clone();
    tokio::task::spawn_blocking(move || {
        b.client()
            .send_message("/queue/shared", "from tcp", &[("x-via", "tcp")]);
    })
    .await
    .unwrap();
    let m = ws.recv().await;
    assert_eq!(&m.body[..], b"from tcp");
    assert_eq!(m.get("x-via"), Some("tcp"));
    let ack = m.get("ack").unwrap().to_string();
    ws.send_with_receipt(Frame::new(Command::Ack).header("id", &ack), "acked")
        .await;

    // WebSocket producer -> TCP consumer, which has the queue to itself once
    // the WebSocket consumer unsubscribes.
    ws.send_with_receipt(Frame::new(Command::Unsubscribe).header("id", "s"), "unsub")
        .await;
    let b = broker.clone();
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    let consumer = tokio::task::spawn_blocking(move || {
        let mut c = b.client();
        c.subscribe("t", "/queue/shared", "auto");
        subscribed_tx.send(()).unwrap();
        c.recv_command(Command::Message)
    });
    subscribed_rx.await.unwrap();
    ws.send_with_receipt(send_frame("/queue/shared", "from ws"), "r")
        .await;
    let m = tokio::time::timeout(WAIT + Duration::from_secs(1), consumer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.body[..], b"from ws");
    assert!(m.get("redelivered").is_none(), "{m:?}");
}

#[test]
fn config_checks_and_documents_the_websocket_listeners() {
    let bin = ferromq_tests::ferromq_bin();
    let printed = std::process::Command::new(&bin)
        .arg("--print-default-config")
        .output()
        .unwrap();
    let printed = String::from_utf8(printed.stdout).unwrap();
    assert!(
        printed.contains("[websocket]\n")
            && printed.contains("listen = \"127.0.0.1:15674\"")
            && printed.contains("tls_listen = \"127.0.0.1:15673\""),
        "{printed}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[websocket]\nlisten = \"127.0.0.1:61613\"\n").unwrap();
    let out = std::process::Command::new(&bin)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}:websocket.listen: 127.0.0.1:61613 is already used by stomp.listen",
        file.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}
