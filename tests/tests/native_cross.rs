//! STOMP and the native protocol on the same destinations: a STOMP producer
//! with a native consumer and the other way round, on a queue and a topic,
//! with headers and properties mapped as `protocol/NATIVE.md` section 9 says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod native_common;

use ferromq_protocol::client::{OutgoingMessage, ReceiverOptions, SettleMode};
use native_common::{broker, connect};
use std::time::Duration;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn receiver_options() -> ReceiverOptions {
    ReceiverOptions {
        credit: 10,
        settle_mode: SettleMode::Unsettled,
        ..ReceiverOptions::default()
    }
}

/// Sends one message over STOMP with every mapped header, then checks what
/// a native receiver on `destination` sees.
async fn stomp_to_native(destination: &str) {
    let b = broker();
    let conn = connect(&b).await;
    let mut receiver = conn
        .open_receiver(destination, receiver_options())
        .await
        .unwrap();
    let expires = (std::time::SystemTime::now() + Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let mut stomp = b.client();
    let headers = [
        ("persistent", "true"),
        ("priority", "7"),
        ("expires", expires.as_str()),
        ("correlation-id", "corr-1"),
        ("reply-to", "/queue/replies"),
        ("content-type", "text/plain"),
        ("color", "blue"),
    ];
    // Blocking STOMP calls on a runtime worker: the test runtime has two.
    tokio::task::block_in_place(|| stomp.send_message(destination, "from stomp", &headers));
    let d = timeout(WAIT, receiver.recv()).await.unwrap().unwrap();
    let p = d.properties();
    assert_eq!(d.body().as_ref(), b"from stomp");
    assert_eq!(p.destination, destination);
    assert!(p.message_id.starts_with("ID:"), "{}", p.message_id);
    assert_eq!(p.priority, Some(7));
    assert_eq!(p.expires.to_string(), expires);
    assert!(p.timestamp > 0);
    assert_eq!(p.correlation_id.as_deref(), Some("corr-1"));
    assert_eq!(p.reply_to.as_deref(), Some("/queue/replies"));
    assert_eq!(p.content_type.as_deref(), Some("text/plain"));
    assert!(!p.redelivered);
    assert_eq!(d.header("color"), Some("blue"));
    // Mapped headers are properties, not application headers.
    for name in [
        "persistent",
        "priority",
        "correlation-id",
        "content-type",
        "destination",
    ] {
        assert_eq!(
            d.header(name),
            None,
            "{name} leaked into application headers"
        );
    }
    if destination.starts_with("/queue/") {
        assert!(p.persistent);
    }
    receiver.accept(&d).await.unwrap();
}

/// Sends one message natively with every mapped property, then checks the
/// MESSAGE a STOMP subscriber on `destination` gets.
async fn native_to_stomp(destination: &str) {
    let b = broker();
    let mut stomp = b.client();
    tokio::task::block_in_place(|| stomp.subscribe("s1", destination, "auto"));
    let conn = connect(&b).await;
    let sender = conn
        .open_sender(destination, SettleMode::Unsettled)
        .await
        .unwrap();
    let message = OutgoingMessage::text("from native")
        .persistent(true)
        .priority(2)
        .correlation_id("corr-2")
        .reply_to("/topic/answers")
        .content_type("application/json")
        .header("size", "XL")
        // An application header may not impersonate a property.
        .header("message-id", "forged");
    sender.send_and_wait(message).await.unwrap();
    let frames = tokio::task::block_in_place(|| stomp.recv_messages(1));
    let m = &frames[0];
    assert_eq!(m.body.as_ref(), b"from native");
    assert_eq!(m.get("destination"), Some(destination));
    assert_eq!(m.get("subscription"), Some("s1"));
    assert!(m.get("message-id").unwrap().starts_with("ID:"), "{m:?}");
    assert_eq!(m.get("priority"), Some("2"));
    assert_eq!(m.get("persistent"), Some("true"));
    assert_eq!(m.get("correlation-id"), Some("corr-2"));
    assert_eq!(m.get("reply-to"), Some("/topic/answers"));
    assert_eq!(m.get("content-type"), Some("application/json"));
    assert_eq!(m.get("size"), Some("XL"));
    assert_eq!(m.get("expires"), Some("0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_producer_native_consumer_on_a_queue() {
    stomp_to_native("/queue/cross").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_producer_native_consumer_on_a_topic() {
    stomp_to_native("/topic/cross").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_producer_stomp_consumer_on_a_queue() {
    native_to_stomp("/queue/cross").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_producer_stomp_consumer_on_a_topic() {
    native_to_stomp("/topic/cross").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_acknowledges_what_native_left_unsettled() {
    let b = broker();
    let conn = connect(&b).await;
    let sender = conn
        .open_sender("/queue/handover", SettleMode::Settled)
        .await
        .unwrap();
    sender.send(OutgoingMessage::text("one")).await.unwrap();
    let mut receiver = conn
        .open_receiver("/queue/handover", receiver_options())
        .await
        .unwrap();
    let d = timeout(WAIT, receiver.recv()).await.unwrap().unwrap();
    assert_eq!(d.body().as_ref(), b"one");
    // The native consumer leaves without settling: a STOMP consumer gets it, redelivered.
    conn.close().await.unwrap();
    let mut stomp = b.client();
    let frames = tokio::task::block_in_place(|| {
        stomp.subscribe("s", "/queue/handover", "auto");
        stomp.recv_messages(1)
    });
    assert_eq!(frames[0].body.as_ref(), b"one");
    assert_eq!(frames[0].get("redelivered"), Some("true"));
}
