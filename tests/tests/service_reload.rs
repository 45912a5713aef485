//! Lifecycle as systemd sees it: READY=1 and STOPPING=1 on a fake
//! `NOTIFY_SOCKET`, and SIGHUP reloading the users without dropping
//! connections (a bad file on SIGHUP changes nothing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{hash_password, Broker, Client};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

fn users(list: &[(&str, &str)]) -> String {
    let mut text = String::from("[auth]\nanonymous = false\n");
    for (name, hash) in list {
        text.push_str(&format!(
            "[[auth.users]]\nname = \"{name}\"\npassword_hash = \"{hash}\"\n"
        ));
    }
    text
}

/// Sends on a connection subscribed to `destination` and expects the
/// message back (it may arrive before or after the receipt).
fn send_to_self(c: &mut Client, destination: &str, body: &str) {
    let frame = Frame::new(Command::Send)
        .header("destination", destination)
        .body(body.to_string());
    let before = c.send_collect(frame, "self");
    let got = match before.into_iter().next() {
        Some(f) => f,
        None => c.recv(),
    };
    assert_eq!(got.command, Command::Message, "{got:?}");
    assert_eq!(&got.body[..], body.as_bytes());
}

#[test]
fn sighup_swaps_the_users_and_keeps_connections() {
    let ha = hash_password("pw-a");
    let hb = hash_password("pw-b");
    let broker = Broker::start_with(Some(&users(&[("a", &ha)])), &[]);
    let (_, refused) = broker.connect_as(Some("b"), Some("pw-b"));
    assert_eq!(refused.command, Command::Error);
    let mut old = broker.client_as("a", "pw-a");
    old.subscribe("s", "/queue/reload", "auto");

    std::fs::write(broker.config_file().unwrap(), users(&[("b", &hb)])).unwrap();
    broker.sighup();
    assert!(
        broker.wait_for_log("configuration reloaded"),
        "{}",
        broker.log()
    );

    let mut b = broker.client_as("b", "pw-b");
    let (_, refused) = broker.connect_as(Some("a"), Some("pw-a"));
    assert_eq!(refused.get("message"), Some("authentication failed"));
    // The connection made as `a` before the reload keeps working both ways.
    b.send_message("/queue/reload", "to-old", &[]);
    assert_eq!(&old.recv().body[..], b"to-old");
    send_to_self(&mut old, "/queue/reload", "from-old");

    // A broken file on SIGHUP changes nothing.
    std::fs::write(broker.config_file().unwrap(), "[auth\nbroken").unwrap();
    broker.sighup();
    assert!(broker.wait_for_log("configuration not reloaded"));
    broker.client_as("b", "pw-b");
    send_to_self(&mut old, "/queue/reload", "still");
}

#[test]
fn sighup_reloads_acl_rules() {
    let h = hash_password("pw");
    let base = users(&[("u", &h)]);
    let deny = format!(
        "{base}[[acl]]\ndestination = \"/queue/acl.>\"\nread = [\"u\"]\nwrite = []\nadmin = [\"u\"]\n"
    );
    let allow = format!(
        "{base}[[acl]]\ndestination = \"/queue/acl.>\"\nread = [\"u\"]\nwrite = [\"u\"]\nadmin = [\"u\"]\n"
    );
    let broker = Broker::start_with(Some(&deny), &[]);
    let mut c = broker.client_as("u", "pw");
    c.subscribe("s", "/queue/acl.x", "auto");
    let mut denied = broker.client_as("u", "pw");
    denied.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/acl.x")
            .body("no"),
    );
    assert!(denied
        .expect_error()
        .get("message")
        .unwrap()
        .contains("'write'"));
    std::fs::write(broker.config_file().unwrap(), allow).unwrap();
    broker.sighup();
    assert!(broker.wait_for_log("configuration reloaded"));
    // The rules apply to the existing session's next SEND.
    send_to_self(&mut c, "/queue/acl.x", "now-allowed");
}

#[test]
fn ready_after_listeners_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut broker = Broker::start_with_env(
        None,
        &["--admin", "127.0.0.1:0"],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("no READY=1 datagram");
    let message = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(message.contains("READY=1"), "{message}");
    // READY means every listener accepts: STOMP and admin alike.
    broker.client().send_message("/queue/ready", "x", &[]);
    assert_eq!(
        ferromq_tests::http_get(broker.admin(), "/healthz", None).0,
        200
    );
    // The harness may return before the reader thread stored that line.
    assert!(broker.wait_for_log("ferromq started"));
    let log = broker.log();
    let started = log.find("ferromq started").unwrap();
    assert!(log[..started].contains("listener=\"admin\""), "{log}");
    assert!(log[..started].contains("listener=\"stomp\""), "{log}");

    let status = broker.terminate();
    assert!(status.success(), "{status:?}");
    let n = socket.recv(&mut buf).expect("no STOPPING=1 datagram");
    let message = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(message.contains("STOPPING=1"), "{message}");
}
