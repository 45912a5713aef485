//! Messaging over the native protocol with the async client against the real
//! broker: both settle modes, release and redelivery, credit exhaustion and
//! drain, large messages split over frames, transactions, persistence
//! acknowledged after storage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod native_common;

use ferromq_protocol::client::{
    ClientError, ConnectOptions, Connection, OutgoingMessage, ReceiverOptions, SettleMode,
};
use native_common::{broker, connect, url};
use std::time::Duration;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn options(credit: u32, mode: SettleMode) -> ReceiverOptions {
    ReceiverOptions {
        credit,
        settle_mode: mode,
        ..ReceiverOptions::default()
    }
}

async fn body_of(r: &mut ferromq_protocol::client::Receiver) -> String {
    let d = timeout(WAIT, r.recv())
        .await
        .expect("no message in time")
        .expect("link closed");
    String::from_utf8(d.body().to_vec()).unwrap()
}

#[tokio::test]
async fn settled_and_unsettled_queue_round_trip_in_order() {
    let b = broker();
    let conn = connect(&b).await;
    let fast = conn
        .open_sender("/queue/modes", SettleMode::Settled)
        .await
        .unwrap();
    let safe = conn
        .open_sender("/queue/modes", SettleMode::Unsettled)
        .await
        .unwrap();
    for i in 0..50 {
        fast.send(OutgoingMessage::text(&format!("m{i}")))
            .await
            .unwrap();
    }
    safe.send_and_wait(OutgoingMessage::text("last").persistent(true))
        .await
        .unwrap();
    let mut at_most_once = conn
        .open_receiver("/queue/modes", options(10, SettleMode::Settled))
        .await
        .unwrap();
    for i in 0..50 {
        assert_eq!(body_of(&mut at_most_once).await, format!("m{i}"));
    }
    let d = timeout(WAIT, at_most_once.recv()).await.unwrap().unwrap();
    assert!(d.settled, "a Settled link's transfers are pre-settled");
    assert!(d.properties().persistent);
    assert_eq!(d.body().as_ref(), b"last");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn released_and_unsettled_messages_come_back_redelivered() {
    let b = broker();
    let conn = connect(&b).await;
    let sender = conn
        .open_sender("/queue/redeliver", SettleMode::Unsettled)
        .await
        .unwrap();
    for i in 0..3 {
        sender
            .send_and_wait(OutgoingMessage::text(&format!("r{i}")))
            .await
            .unwrap();
    }
    let mut r = conn
        .open_receiver("/queue/redeliver", options(10, SettleMode::Unsettled))
        .await
        .unwrap();
    let first = timeout(WAIT, r.recv()).await.unwrap().unwrap();
    assert!(!first.settled && !first.properties().redelivered);
    r.release(&first).await.unwrap();
    // r1 and r2 stay unsettled; the released r0 comes again, redelivered.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let d = timeout(WAIT, r.recv()).await.unwrap().unwrap();
        seen.push((
            String::from_utf8(d.body().to_vec()).unwrap(),
            d.properties().redelivered,
            d.properties().delivery_count,
        ));
        if d.body().as_ref() != b"r0" {
            continue;
        }
        r.accept(&d).await.unwrap();
    }
    assert!(seen.contains(&("r0".into(), true, 1)), "{seen:?}");
    // Closing the link returns r1 and r2 to the queue.
    r.close().await.unwrap();
    let mut again = conn
        .open_receiver("/queue/redeliver", options(10, SettleMode::Unsettled))
        .await
        .unwrap();
    let mut rest = Vec::new();
    for _ in 0..2 {
        let d = timeout(WAIT, again.recv()).await.unwrap().unwrap();
        assert!(d.properties().redelivered);
        again.accept(&d).await.unwrap();
        rest.push(String::from_utf8(d.body().to_vec()).unwrap());
    }
    assert_eq!(rest, ["r1", "r2"]);
    assert!(
        timeout(Duration::from_millis(300), again.recv())
            .await
            .is_err(),
        "all acknowledged"
    );
}

#[tokio::test]
async fn credit_bounds_deliveries_and_drain_uses_it_up() {
    let b = broker();
    let conn = connect(&b).await;
    let sender = conn
        .open_sender("/queue/credit", SettleMode::Settled)
        .await
        .unwrap();
    for i in 0..10 {
        sender
            .send(OutgoingMessage::text(&format!("c{i}")))
            .await
            .unwrap();
    }
    // Credit 4, nothing consumed: exactly 4 arrive.
    let mut r = conn
        .open_receiver("/queue/credit", options(4, SettleMode::Unsettled))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got = 0;
    while r.try_recv().is_some() {
        got += 1;
    }
    assert_eq!(got, 4, "the broker sent more than the link credit");
    // Granting more credit lets the rest come.
    r.grant(10).await.unwrap();
    for i in 4..10 {
        assert_eq!(body_of(&mut r).await, format!("c{i}"));
    }
    // Drain with 10 credit and nothing queued: the delivery count jumps by
    // the unused credit and no transfer follows.
    r.grant(10).await.unwrap();
    let count = timeout(WAIT, r.drain()).await.unwrap().unwrap();
    assert_eq!(count, 10 + 10, "delivery count after drain");
    sender
        .send(OutgoingMessage::text("after drain"))
        .await
        .unwrap();
    assert!(
        timeout(Duration::from_millis(300), r.recv()).await.is_err(),
        "no credit after drain"
    );
    r.grant(1).await.unwrap();
    assert_eq!(body_of(&mut r).await, "after drain");
}

#[tokio::test]
async fn large_messages_are_split_both_ways() {
    let b = broker();
    // The client accepts 4 KiB frames: the broker must split what it sends.
    let small_frames = ConnectOptions {
        max_frame_size: 4096,
        ..ConnectOptions::default()
    };
    let conn = Connection::connect_with(&url(&b), small_frames)
        .await
        .unwrap();
    // 3 MiB is larger than the broker's 1 MiB frame: the client splits it.
    let body: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let sender = conn
        .open_sender("/queue/large", SettleMode::Unsettled)
        .await
        .unwrap();
    sender
        .send_and_wait(OutgoingMessage::new(body.clone()).header("kind", "large"))
        .await
        .unwrap();
    let mut r = conn
        .open_receiver("/queue/large", options(2, SettleMode::Unsettled))
        .await
        .unwrap();
    let d = timeout(WAIT, r.recv()).await.unwrap().unwrap();
    assert_eq!(d.body().len(), body.len());
    assert!(
        d.body().as_ref() == body.as_slice(),
        "body changed in transit"
    );
    assert_eq!(d.header("kind"), Some("large"));
    r.accept(&d).await.unwrap();
}

#[tokio::test]
async fn transactions_commit_and_roll_back_sends_and_acks() {
    let b = broker();
    let conn = connect(&b).await;
    let sender = conn
        .open_sender("/queue/tx", SettleMode::Unsettled)
        .await
        .unwrap();
    let mut r = conn
        .open_receiver("/queue/tx", options(10, SettleMode::Unsettled))
        .await
        .unwrap();

    let txn = conn.declare().await.unwrap();
    sender
        .send_in(&txn, OutgoingMessage::text("rolled back"))
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    let txn = conn.declare().await.unwrap();
    sender
        .send_in(&txn, OutgoingMessage::text("t1"))
        .await
        .unwrap();
    sender
        .send_in(&txn, OutgoingMessage::text("t2"))
        .await
        .unwrap();
    assert!(
        timeout(Duration::from_millis(300), r.recv()).await.is_err(),
        "visible before commit"
    );
    txn.commit().await.unwrap();
    let d1 = timeout(WAIT, r.recv()).await.unwrap().unwrap();
    let d2 = timeout(WAIT, r.recv()).await.unwrap().unwrap();
    assert_eq!(
        (d1.body().as_ref(), d2.body().as_ref()),
        (&b"t1"[..], &b"t2"[..])
    );

    // A transactional accept rolled back leaves the message unacknowledged.
    let txn = conn.declare().await.unwrap();
    r.accept_in(&txn, &d1).await.unwrap();
    r.accept_in(&txn, &d2).await.unwrap();
    txn.rollback().await.unwrap();
    r.close().await.unwrap();
    let mut r = conn
        .open_receiver("/queue/tx", options(10, SettleMode::Unsettled))
        .await
        .unwrap();
    let d1 = timeout(WAIT, r.recv()).await.unwrap().unwrap();
    let d2 = timeout(WAIT, r.recv()).await.unwrap().unwrap();
    assert!(d1.properties().redelivered && d2.properties().redelivered);
    let txn = conn.declare().await.unwrap();
    r.accept_in(&txn, &d1).await.unwrap();
    r.accept_in(&txn, &d2).await.unwrap();
    txn.commit().await.unwrap();
    r.close().await.unwrap();
    let mut r = conn
        .open_receiver("/queue/tx", options(10, SettleMode::Unsettled))
        .await
        .unwrap();
    assert!(
        timeout(Duration::from_millis(300), r.recv()).await.is_err(),
        "committed acks consumed them"
    );
}

#[tokio::test]
async fn topics_fan_out_and_refusals_are_errors() {
    let b = broker();
    let conn = connect(&b).await;
    let mut a = conn
        .open_receiver("/topic/news", options(10, SettleMode::Settled))
        .await
        .unwrap();
    let mut c = conn
        .open_receiver("/topic/news", options(10, SettleMode::Settled))
        .await
        .unwrap();
    let sender = conn
        .open_sender("/topic/news", SettleMode::Settled)
        .await
        .unwrap();
    sender
        .send(OutgoingMessage::text("headline"))
        .await
        .unwrap();
    assert_eq!(body_of(&mut a).await, "headline");
    assert_eq!(body_of(&mut c).await, "headline");
    let refused = conn.open_sender("/bogus/x", SettleMode::Settled).await;
    assert!(
        matches!(refused, Err(ClientError::Refused(_))),
        "{:?}",
        refused.err()
    );
    // The connection survives a refused link.
    sender.send(OutgoingMessage::text("more")).await.unwrap();
    assert_eq!(body_of(&mut a).await, "more");
}

#[tokio::test]
async fn unsettled_links_share_the_connections_unacked_budget() {
    let b = native_common::broker_with("[limits]\nmax_unacked_per_connection = 1500\n", &[]);
    let conn = connect(&b).await;
    let unsettled = || options(10, SettleMode::Unsettled);
    let first = conn
        .open_receiver("/queue/budget.a", unsettled())
        .await
        .unwrap();
    let _second = conn
        .open_receiver("/queue/budget.b", unsettled())
        .await
        .unwrap();
    match conn.open_receiver("/queue/budget.c", unsettled()).await {
        Err(ClientError::Refused(e)) => {
            assert_eq!(
                e.condition(),
                ferromq_protocol::native::ErrorCondition::ResourceLimitExceeded
            );
            assert!(e.description.contains("max_unacked_per_connection"), "{e}");
        }
        other => panic!("expected a refusal, got {:?}", other.err()),
    }
    // Pre-settled links take no share; detaching frees one.
    conn.open_receiver("/queue/budget.c", options(10, SettleMode::Settled))
        .await
        .unwrap();
    first.close().await.unwrap();
    conn.open_receiver("/queue/budget.c", unsettled())
        .await
        .unwrap();
}
