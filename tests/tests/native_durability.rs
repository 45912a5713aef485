//! Persistent native messages under kill -9: every transfer the broker
//! accepted survives the crash, as a STOMP message with a RECEIPT does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod native_common;

use ferromq_protocol::client::{Connection, OutgoingMessage, ReceiverOptions, SettleMode};
use native_common::{broker, url};
use std::time::Duration;
use tokio::time::timeout;

#[tokio::test]
async fn accepted_persistent_transfers_survive_kill_9() {
    let mut b = broker();
    let conn = Connection::connect(&url(&b)).await.unwrap();
    let sender = conn
        .open_sender("/queue/durable", SettleMode::Unsettled)
        .await
        .unwrap();
    // Pipelined: many unsettled transfers in flight, each accepted after storage.
    let mut pending = Vec::new();
    for i in 0..200 {
        let m = OutgoingMessage::text(&format!("p{i}")).persistent(true);
        pending.push(sender.send_unsettled(m).await.unwrap());
    }
    for p in pending {
        assert_eq!(
            p.wait().await.unwrap(),
            ferromq_protocol::client::Outcome::Accepted
        );
    }
    // A non-persistent one is not expected back.
    sender
        .send_and_wait(OutgoingMessage::text("volatile"))
        .await
        .unwrap();
    b.broker.kill9();
    drop(conn);
    let dir = b.dir;
    let restarted = b.broker.restart();
    let addr = restarted.listener("native").unwrap();
    let conn = Connection::connect(&format!("ferromq://{addr}"))
        .await
        .unwrap();
    let options = ReceiverOptions {
        credit: 50,
        settle_mode: SettleMode::Unsettled,
        ..ReceiverOptions::default()
    };
    let mut r = conn.open_receiver("/queue/durable", options).await.unwrap();
    for i in 0..200 {
        let d = timeout(Duration::from_secs(10), r.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.body().as_ref(), format!("p{i}").as_bytes());
        assert!(d.properties().persistent);
        r.accept(&d).await.unwrap();
    }
    assert!(
        timeout(Duration::from_millis(500), r.recv()).await.is_err(),
        "the non-persistent message came back"
    );
    drop(dir);
}
