//! Per-broker and per-connection limits from `[limits]` through the real
//! broker: total and per-IP connections, subscriptions per connection,
//! destinations, and unacknowledged messages per connection. Each gives a
//! clear ERROR (or refusal) and a log line, and other clients keep working.
//! (`stomp.connect_timeout` and the frame limits are in `stomp_limits.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{Broker, Client};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn still_serving(broker: &Broker) {
    let mut c = broker.client();
    c.subscribe("alive", "/queue/alive", "auto");
    broker.client().send_message("/queue/alive", "yes", &[]);
    let f = c.recv();
    assert_eq!(&f.body[..], b"yes");
}

/// A TCP connection from source address `from` (another loopback address
/// counts as another client IP).
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        socket.connect(to).await.unwrap()
    });
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

fn stomp_over(stream: TcpStream) -> (Client, Frame) {
    let mut c = Client::over(Box::new(stream));
    let reply = c.handshake(
        Command::Connect,
        &[("accept-version", "1.2"), ("host", "/")],
    );
    (c, reply)
}

#[test]
fn max_connections_refuses_the_next_client_with_an_error() {
    let broker = Broker::start_with(Some("[limits]\nmax_connections = 2\n"), &[]);
    let first = broker.client();
    let _second = broker.client();
    let mut third = broker.raw();
    let e = third.expect_error();
    assert!(
        e.get("message").unwrap().contains("limits.max_connections"),
        "{e:?}"
    );
    assert!(broker.wait_for_log("connection refused"));
    // Closing one frees its slot for the next client.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (mut c, reply) = broker.connect_as(None, None);
        if reply.command == Command::Connected {
            c.send_message("/queue/after", "ok", &[]);
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed: {reply:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn max_connections_per_ip_counts_each_source_address() {
    let broker = Broker::start_with(Some("[limits]\nmax_connections_per_ip = 2\n"), &[]);
    let _a = broker.client();
    let _b = broker.client();
    let mut refused = broker.raw();
    let e = refused.expect_error();
    assert!(
        e.get("message")
            .unwrap()
            .contains("limits.max_connections_per_ip"),
        "{e:?}"
    );
    // Another address is another client.
    let (mut other, reply) = stomp_over(connect_from("127.0.0.2", broker.stomp));
    assert_eq!(reply.command, Command::Connected, "{reply:?}");
    other.send_message("/queue/ip", "from .2", &[]);
    assert!(broker.wait_for_log("max_connections_per_ip"));
}

#[test]
fn max_subscriptions_per_connection() {
    let broker = Broker::start_with(
        Some("[limits]\nmax_subscriptions_per_connection = 2\n"),
        &[],
    );
    let mut c = broker.client();
    c.subscribe("1", "/queue/s1", "auto");
    c.subscribe("2", "/queue/s2", "auto");
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", "3")
            .header("destination", "/queue/s3")
            .header("receipt", "r3"),
    );
    let e = c.expect_error();
    assert_eq!(
        e.get("message"),
        Some("subscription limit of 2 per connection reached")
    );
    assert_eq!(e.get("receipt-id"), Some("r3"));
    assert!(broker.wait_for_log("subscription limit of 2 per connection reached"));
    still_serving(&broker);
}

#[test]
fn max_destinations() {
    let broker = Broker::start_with(Some("[limits]\nmax_destinations = 3\n"), &[]);
    let mut c = broker.client();
    for i in 0..3 {
        c.send_message(&format!("/queue/d{i}"), "x", &[]);
    }
    c.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/d3")
            .header("receipt", "r")
            .body("x"),
    );
    let e = c.expect_error();
    assert_eq!(e.get("message"), Some("destination limit of 3 reached"));
    assert!(broker.wait_for_log("destination limit of 3 reached"));
    // The existing destinations keep working.
    let mut other = broker.client();
    other.subscribe("s", "/queue/d0", "auto");
    assert_eq!(&other.recv().body[..], b"x");
}

#[test]
fn max_unacked_per_connection_holds_deliveries_until_acks() {
    let broker = Broker::start_with(Some("[limits]\nmax_unacked_per_connection = 5\n"), &[]);
    let mut producer = broker.client();
    for i in 0..8 {
        producer.send_message("/queue/u1", &format!("a{i}"), &[]);
        producer.send_message("/queue/u2", &format!("b{i}"), &[]);
    }
    let mut c = broker.client();
    // Prefetch 3 each asked for; the connection may hold 5 in all.
    for (id, q) in [("1", "/queue/u1"), ("2", "/queue/u2")] {
        c.send(
            Frame::new(Command::Subscribe)
                .header("id", id)
                .header("destination", q)
                .header("ack", "client-individual")
                .header("activemq.prefetchSize", "3"),
        );
    }
    let mut got = Vec::new();
    while let Some(f) = c.recv_within(Duration::from_millis(1500)) {
        assert_eq!(f.command, Command::Message, "{f:?}");
        got.push(f);
    }
    assert_eq!(got.len(), 5, "{got:?}");
    // A third client-ack subscription has no room left.
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", "3")
            .header("destination", "/queue/u3")
            .header("ack", "client")
            .header("receipt", "r3"),
    );
    let e = c.expect_error();
    assert!(
        e.get("message")
            .unwrap()
            .contains("limits.max_unacked_per_connection"),
        "{e:?}"
    );
    assert_eq!(e.get("receipt-id"), Some("r3"));
    assert!(broker.wait_for_log("unacked limit reached"));

    // Acks let more through, never more than 5 outstanding.
    let mut c = broker.client();
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", "1")
            .header("destination", "/queue/u1")
            .header("ack", "client-individual"),
    );
    let first: Vec<Frame> = (0..5).map(|_| c.recv()).collect();
    c.expect_silence(Duration::from_millis(500));
    c.send(Frame::new(Command::Ack).header("id", first[0].get("ack").unwrap()));
    let next = c.recv();
    assert_eq!(next.command, Command::Message);
    c.expect_silence(Duration::from_millis(500));
    // Auto-ack subscriptions take no share of the budget.
    c.subscribe("auto", "/queue/u2", "auto");
}
