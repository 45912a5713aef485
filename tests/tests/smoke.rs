//! A first end-to-end check: a message goes from a producer to a consumer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::Command;
use ferromq_tests::Broker;

#[test]
fn queue_message_reaches_consumer() {
    let broker = Broker::start();
    let mut consumer = broker.client();
    consumer.subscribe("s1", "/queue/smoke", "auto");
    let mut producer = broker.client();
    producer.send_message("/queue/smoke", "hello", &[("color", "blue")]);
    let m = consumer.recv();
    assert_eq!(m.command, Command::Message);
    assert_eq!(&m.body[..], b"hello");
    assert_eq!(m.get("color"), Some("blue"));
    assert_eq!(m.get("destination"), Some("/queue/smoke"));
    assert_eq!(m.get("subscription"), Some("s1"));
}

#[test]
fn garbage_gets_an_error_and_others_keep_working() {
    let broker = Broker::start();
    let mut bad = broker.raw();
    bad.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let e = bad.expect_error();
    assert!(e.get("message").unwrap().contains("GET"), "{e:?}");
    let mut good = broker.client();
    good.send_message("/queue/x", "still here", &[]);
}
