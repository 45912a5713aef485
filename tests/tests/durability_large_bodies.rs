//! 10 MB persistent bodies against the real binary, across protocols and a
//! kill -9: a body sent over STOMP comes back intact to a native receiver
//! and one sent over the native protocol to a STOMP subscriber. Over STOMP
//! such a body is read into one buffer of its size (its content-length is
//! known) and written to the subscriber spliced, not copied; over the
//! native protocol it crosses in frames split to the peer's frame size.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod native_common;

use ferromq_protocol::client::{Connection, OutgoingMessage, ReceiverOptions, SettleMode};
use ferromq_protocol::stomp::{Command, Frame};
use native_common::{broker, url};
use std::time::Duration;
use tokio::time::timeout;

const BODY: usize = 10_000_000;

/// A body that tells which message it is at every 8 bytes.
fn body(tag: char) -> Vec<u8> {
    let unit = format!("<{tag}{tag}{tag}{tag}{tag}{tag}>");
    unit.repeat(BODY / unit.len()).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mb_bodies_cross_protocols_intact_across_a_kill_9() {
    let b = broker();
    // Over STOMP, with a receipt: stored once the RECEIPT is back.
    let mut stomp = b.client();
    tokio::task::block_in_place(|| {
        stomp.send_with_receipt(
            Frame::new(Command::Send)
                .header("destination", "/queue/big-from-stomp")
                .header("persistent", "true")
                .body(body('s')),
            "stored",
        )
    });
    // Over the native protocol: stored once accepted.
    let conn = Connection::connect(&url(&b)).await.unwrap();
    let sender = conn
        .open_sender("/queue/big-from-native", SettleMode::Unsettled)
        .await
        .unwrap();
    sender
        .send_and_wait(OutgoingMessage::new(body('n')).persistent(true))
        .await
        .unwrap();
    let restarted = b.kill9_restart();
    drop((conn, stomp));

    let conn = Connection::connect(&url(&restarted)).await.unwrap();
    let options = ReceiverOptions {
        credit: 2,
        settle_mode: SettleMode::Unsettled,
        ..ReceiverOptions::default()
    };
    let mut r = conn
        .open_receiver("/queue/big-from-stomp", options)
        .await
        .unwrap();
    let d = timeout(Duration::from_secs(30), r.recv())
        .await
        .expect("no native delivery in time")
        .unwrap();
    assert_eq!(d.body().len(), BODY);
    assert!(d.body()[..] == body('s')[..], "the STOMP body changed");
    assert!(d.properties().persistent);
    r.accept(&d).await.unwrap();

    let mut c = restarted.client();
    let m = tokio::task::block_in_place(|| {
        c.subscribe("big", "/queue/big-from-native", "client-individual");
        c.recv_command(Command::Message)
    });
    assert_eq!(m.body.len(), BODY);
    assert!(m.body[..] == body('n')[..], "the native body changed");
    assert_eq!(m.get("persistent"), Some("true"));
}
