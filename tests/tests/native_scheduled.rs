//! Scheduled delivery over the native protocol: the same
//! `AMQ_SCHEDULED_*` headers as a STOMP SEND's, with the same effect (both
//! protocols publish through one router call).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod native_common;

use ferromq_protocol::client::{Connection, OutgoingMessage, ReceiverOptions, SettleMode};
use native_common::{broker, url};
use std::time::{Duration, Instant};
use tokio::time::timeout;

fn options() -> ReceiverOptions {
    ReceiverOptions {
        credit: 10,
        settle_mode: SettleMode::Unsettled,
        ..ReceiverOptions::default()
    }
}

#[tokio::test]
async fn a_native_send_with_a_scheduled_delay_arrives_after_the_delay() {
    let b = broker();
    let conn = Connection::connect(&url(&b)).await.unwrap();
    let mut r = conn
        .open_receiver("/queue/native-later", options())
        .await
        .unwrap();
    let sender = conn
        .open_sender("/queue/native-later", SettleMode::Unsettled)
        .await
        .unwrap();
    let sent = Instant::now();
    sender
        .send_and_wait(OutgoingMessage::text("wait for it").header("AMQ_SCHEDULED_DELAY", "700"))
        .await
        .unwrap();
    assert!(
        timeout(Duration::from_millis(400), r.recv()).await.is_err(),
        "delivered before its delay"
    );
    let d = timeout(Duration::from_secs(10), r.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        sent.elapsed() >= Duration::from_millis(650),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(d.body().as_ref(), b"wait for it");
    assert!(
        d.header("AMQ_SCHEDULED_DELAY").is_none(),
        "fired copies carry no schedule"
    );
    r.accept(&d).await.unwrap();
    // An unscheduled one goes at once.
    sender
        .send_and_wait(OutgoingMessage::text("now"))
        .await
        .unwrap();
    let d = timeout(Duration::from_millis(500), r.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.body().as_ref(), b"now");
}

#[tokio::test]
async fn a_native_send_with_a_bad_schedule_is_refused() {
    let b = broker();
    let conn = Connection::connect(&url(&b)).await.unwrap();
    let sender = conn
        .open_sender("/queue/native-bad", SettleMode::Unsettled)
        .await
        .unwrap();
    let result = timeout(
        Duration::from_secs(10),
        sender.send_and_wait(OutgoingMessage::text("x").header("AMQ_SCHEDULED_DELAY", "soon")),
    )
    .await
    .unwrap();
    let e = result.unwrap_err().to_string();
    assert!(e.contains("AMQ_SCHEDULED_DELAY"), "{e}");
}
