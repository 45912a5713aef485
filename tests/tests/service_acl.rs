//! Authorization through the real broker: `[[acl]]` rules with users,
//! `group:NAME` and `*`; denied SEND and SUBSCRIBE get one ERROR naming the
//! destination and the missing permission (with `receipt-id`) and the
//! connection closes; `admin` is needed to create a destination; temporary
//! destinations belong to their owner.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{hash_password, Broker, Client};
use std::sync::OnceLock;

const PASSWORD: &str = "acl-test-pw";

/// One hash for every user (hashing is slow in debug builds).
fn hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_password(PASSWORD))
}

fn broker() -> Broker {
    let h = hash();
    let config = format!(
        r#"
[auth]
anonymous = false
[[auth.users]]
name = "alice"
password_hash = "{h}"
groups = ["producers"]
[[auth.users]]
name = "bob"
password_hash = "{h}"
groups = ["consumers"]
[[auth.users]]
name = "carol"
password_hash = "{h}"
groups = ["ops"]

[[acl]]
destination = "/queue/orders.>"
read = ["group:consumers"]
write = ["group:producers"]
admin = ["group:producers"]
[[acl]]
destination = "/queue/shared"
read = ["*"]
write = ["*"]
admin = ["carol"]
[[acl]]
destination = "/topic/prices.>"
read = ["group:consumers"]
write = ["alice"]
admin = ["*"]
"#
    );
    Broker::start_with(Some(&config), &[])
}

fn login(broker: &Broker, user: &str) -> Client {
    broker.client_as(user, PASSWORD)
}

fn message(f: &Frame) -> &str {
    f.get("message").unwrap()
}

#[test]
fn denied_send_names_destination_and_permission_with_receipt_id() {
    let broker = broker();
    let mut bob = login(&broker, "bob");
    bob.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/orders.eu")
            .header("receipt", "r-17")
            .body("x"),
    );
    let e = bob.expect_error();
    assert_eq!(
        message(&e),
        "user 'bob' is not authorized to write /queue/orders.eu (missing 'write' permission)"
    );
    assert_eq!(e.get("receipt-id"), Some("r-17"));
    assert!(broker.wait_for_log("access denied"));

    // Without a receipt the SEND is not silently dropped either.
    let mut bob = login(&broker, "bob");
    bob.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/orders.eu")
            .body("x"),
    );
    let e = bob.expect_error();
    assert!(message(&e).contains("missing 'write' permission"), "{e:?}");
    assert_eq!(e.get("receipt-id"), None);
}

#[test]
fn denied_subscribe_names_the_read_permission_and_others_keep_working() {
    let broker = broker();
    let mut alice = login(&broker, "alice");
    alice.send_message("/queue/orders.eu", "o1", &[]);
    let mut intruder = login(&broker, "alice");
    intruder.send(
        Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", "/queue/orders.eu")
            .header("receipt", "sub"),
    );
    let e = intruder.expect_error();
    assert_eq!(
        message(&e),
        "user 'alice' is not authorized to read /queue/orders.eu (missing 'read' permission)"
    );
    assert_eq!(e.get("receipt-id"), Some("sub"));
    // A permitted consumer gets the message; the producer is still connected.
    let mut bob = login(&broker, "bob");
    bob.subscribe("s", "/queue/orders.eu", "auto");
    assert_eq!(&bob.recv().body[..], b"o1");
    alice.send_message("/queue/orders.eu", "o2", &[]);
    assert_eq!(&bob.recv().body[..], b"o2");
}

#[test]
fn unmatched_destination_is_denied_when_rules_exist() {
    let broker = broker();
    let mut alice = login(&broker, "alice");
    alice.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/elsewhere")
            .body("x"),
    );
    let e = alice.expect_error();
    assert!(message(&e).contains("/queue/elsewhere"), "{e:?}");
    assert!(message(&e).contains("'write'"), "{e:?}");
}

#[test]
fn creating_a_destination_needs_admin() {
    let broker = broker();
    // Everyone may write /queue/shared, only carol may create it.
    let mut bob = login(&broker, "bob");
    bob.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/shared")
            .header("receipt", "r")
            .body("x"),
    );
    let e = bob.expect_error();
    assert_eq!(
        message(&e),
        "user 'bob' is not authorized to create /queue/shared (missing 'admin' permission)"
    );
    let mut carol = login(&broker, "carol");
    carol.subscribe("s", "/queue/shared", "auto");
    // Now that it exists, bob may write to it.
    let mut bob = login(&broker, "bob");
    bob.send_message("/queue/shared", "hello", &[]);
    assert_eq!(&carol.recv().body[..], b"hello");
}

#[test]
fn wildcard_subscription_needs_a_rule_covering_the_whole_pattern() {
    let broker = broker();
    let mut bob = login(&broker, "bob");
    bob.subscribe("p", "/topic/prices.*", "auto");
    let mut alice = login(&broker, "alice");
    alice.send_message("/topic/prices.acme", "42", &[]);
    assert_eq!(&bob.recv().body[..], b"42");
    let mut greedy = login(&broker, "bob");
    greedy.send(
        Frame::new(Command::Subscribe)
            .header("id", "all")
            .header("destination", "/topic/>"),
    );
    let e = greedy.expect_error();
    assert!(message(&e).contains("read /topic/>"), "{e:?}");
}

#[test]
fn temporary_queue_owner_may_everything_others_may_only_reply() {
    let broker = broker();
    let (mut bob, connected) = broker.connect_as(Some("bob"), Some(PASSWORD));
    assert_eq!(connected.command, Command::Connected);
    let conn = connected
        .get("session")
        .and_then(|s| s.strip_prefix("ferromq-"))
        .unwrap()
        .to_string();
    // No rule mentions temporary queues: the owner needs none.
    bob.subscribe("r", "/temp-queue/replies", "auto");
    let remote = format!("/remote-temp-queue/c{conn}-replies");
    let mut alice = login(&broker, "alice");
    alice.send_message(&remote, "answer", &[]);
    assert_eq!(&bob.recv().body[..], b"answer");
    // Reading another connection's temporary queue is not allowed.
    let mut snoop = login(&broker, "alice");
    snoop.send(
        Frame::new(Command::Subscribe)
            .header("id", "x")
            .header("destination", &remote),
    );
    let e = snoop.expect_error();
    assert!(message(&e).contains("missing 'read' permission"), "{e:?}");
}
