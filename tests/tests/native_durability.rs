//! Persistent native messages under kill -9: every transfer the broker
//! accepted survives the crash, as a STOMP message with a RECEIPT does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod native_common;

use ferromq_protocol::client::{Connection, OutgoingMessage, ReceiverOptions, SettleMode};
use ferromq_tests::wait_for_metric;
use native_common::{broker, url};
use std::time::Duration;
use tokio::time::timeout;

#[tokio::test]
async fn accepted_persistent_transfers_survive_kill_9() {
    let b = broker();
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
    let b = b.kill9_restart();
    drop(conn);
    let conn = Connection::connect(&url(&b)).await.unwrap();
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
}

/// Bodies paged out to the store (1 MiB budget, 6 MiB sent) reach a native
/// receiver intact, whole or split over frames, as they reach STOMP ones.
#[tokio::test]
async fn paged_out_bodies_reach_a_native_receiver_intact() {
    let b = native_common::broker_with(
        "[store]\nmemory_limit = \"1MiB\"\n",
        &["--admin", "127.0.0.1:0"],
    );
    let conn = Connection::connect(&url(&b)).await.unwrap();
    let sender = conn
        .open_sender("/queue/paged", SettleMode::Unsettled)
        .await
        .unwrap();
    // Alternating sizes: below and above the native max frame size (1 MiB
    // by default, so the big ones take the split path).
    let body = |i: usize| {
        let size = if i % 2 == 0 { 64 * 1024 } else { 1536 * 1024 };
        format!("<{i:04}>").repeat(size / 6).into_bytes()
    };
    for i in 0..8 {
        let m = OutgoingMessage::new(body(i)).persistent(true);
        sender.send_and_wait(m).await.unwrap();
    }
    // The test is about paged-out bodies: at least the four 1.5 MiB ones
    // cannot stay in a 1 MiB budget.
    let admin = b.admin();
    let paged = tokio::task::spawn_blocking(move || {
        wait_for_metric(admin, "ferromq_store_paged_messages", |v| v >= 4.0)
    })
    .await
    .unwrap();
    assert!(
        paged.is_some_and(|v| v >= 4.0),
        "bodies were not paged out: ferromq_store_paged_messages = {paged:?}"
    );
    let options = ReceiverOptions {
        credit: 4,
        settle_mode: SettleMode::Unsettled,
        ..ReceiverOptions::default()
    };
    let mut r = conn.open_receiver("/queue/paged", options).await.unwrap();
    for i in 0..8 {
        let d = timeout(Duration::from_secs(10), r.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            d.body().as_ref() == body(i).as_slice(),
            "message {i} differs"
        );
        r.accept(&d).await.unwrap();
    }
}
