//! Authentication through the real broker: Argon2 hashes from
//! `ferromq passwd`, wrong password and unknown user (same ERROR), anonymous
//! access on and off, the users file, plaintext refused, and logs that name
//! the user but never the password.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::Command;
use ferromq_tests::{hash_password, Broker};
use std::process::Command as Process;

fn users_config(users: &[(&str, &str)]) -> String {
    let mut text = String::from("[auth]\nanonymous = true\n");
    for (name, hash) in users {
        text.push_str(&format!(
            "[[auth.users]]\nname = \"{name}\"\npassword_hash = \"{hash}\"\n"
        ));
    }
    text
}

#[test]
fn passwd_prints_a_salted_argon2id_hash() {
    let a = hash_password("s3cret");
    let b = hash_password("s3cret");
    assert!(a.starts_with("$argon2id$v=19$"), "{a}");
    assert_ne!(a, b, "salts must differ");
    // An empty password is refused.
    let out = Process::new(ferromq_tests::ferromq_bin())
        .arg("passwd")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty password"));
}

#[test]
fn right_password_connects_wrong_or_unknown_get_the_same_error() {
    let hash = hash_password("pw-app");
    let broker = Broker::start_with(Some(&users_config(&[("app", &hash)])), &[]);
    let mut ok = broker.client_as("app", "pw-app");
    ok.send_message("/queue/auth", "hello", &[]);

    let (mut wrong, reply) = broker.connect_as(Some("app"), Some("nope-secret"));
    assert_eq!(reply.command, Command::Error, "{reply:?}");
    let wrong_message = reply.get("message").unwrap().to_string();
    assert_eq!(wrong_message, "authentication failed");
    assert!(
        wrong.recv_until_closed().is_empty(),
        "connection must close"
    );

    let (mut unknown, reply) = broker.connect_as(Some("mallory"), Some("pw-app"));
    assert_eq!(reply.command, Command::Error);
    assert_eq!(reply.get("message"), Some(wrong_message.as_str()));
    assert_eq!(reply.body, wrong_message.as_bytes());
    assert!(unknown.recv_until_closed().is_empty());

    // No credentials while users exist: refused even with anonymous = true.
    let (_, reply) = broker.connect_as(None, None);
    assert_eq!(reply.get("message"), Some("authentication failed"));

    // The broker keeps serving the good client.
    ok.subscribe("s", "/queue/auth", "auto");
    assert_eq!(&ok.recv().body[..], b"hello");

    for needle in [
        "login=mallory",
        "unknown user",
        "wrong password",
        "user=app",
    ] {
        assert!(
            broker.wait_for_log(needle),
            "no {needle:?} in {}",
            broker.log()
        );
    }
    let log = broker.log();
    assert!(!log.contains("nope-secret"), "a password was logged");
    assert!(!log.contains("pw-app"), "a password was logged");
    assert!(
        log.contains("user=app"),
        "session log lacks the user: {log}"
    );
}

#[test]
fn anonymous_on_without_users_admits_any_login_as_anonymous() {
    let broker = Broker::start_with(Some("[auth]\nanonymous = true\n"), &[]);
    let (_c, reply) = broker.connect_as(None, None);
    assert_eq!(reply.command, Command::Connected);
    let (_c2, reply) = broker.connect_as(Some("admin"), Some("whatever"));
    assert_eq!(reply.command, Command::Connected);
    assert!(broker.wait_for_log("user=anonymous"));
}

#[test]
fn anonymous_off_requires_a_login() {
    let hash = hash_password("pw");
    let config = format!(
        "[auth]\nanonymous = false\n[[auth.users]]\nname = \"u\"\npassword_hash = \"{hash}\"\n"
    );
    let broker = Broker::start_with(Some(&config), &[]);
    let (_, reply) = broker.connect_as(None, None);
    assert_eq!(reply.get("message"), Some("authentication failed"));
    broker.client_as("u", "pw");
}

#[test]
fn users_file_is_read() {
    let hash = hash_password("from-file");
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!("[[users]]\nname = \"filed\"\npassword_hash = \"{hash}\"\ngroups = [\"g\"]\n"),
    )
    .unwrap();
    let config = format!(
        "[auth]\nanonymous = false\nusers_file = \"{}\"\n",
        users.display()
    );
    let broker = Broker::start_with(Some(&config), &[]);
    broker.client_as("filed", "from-file");
    let (_, reply) = broker.connect_as(Some("filed"), Some("other"));
    assert_eq!(reply.command, Command::Error);
}

#[test]
fn plaintext_password_in_config_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferromq.toml");
    std::fs::write(
        &config,
        "[[auth.users]]\nname = \"u\"\npassword_hash = \"hunter2\"\n",
    )
    .unwrap();
    let out = Process::new(ferromq_tests::ferromq_bin())
        .arg("--config")
        .arg(&config)
        .arg("--stomp")
        .arg("127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.users[0].password_hash"), "{err}");
    assert!(err.contains("plaintext"), "{err}");
}

#[test]
fn malformed_hash_in_users_file_stops_the_start_naming_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        "[[users]]\nname = \"broken\"\npassword_hash = \"$argon2id$garbage\"\n",
    )
    .unwrap();
    let config = dir.path().join("ferromq.toml");
    std::fs::write(
        &config,
        format!("[auth]\nusers_file = \"{}\"\n", users.display()),
    )
    .unwrap();
    let out = Process::new(ferromq_tests::ferromq_bin())
        .args(["--stomp", "127.0.0.1:0", "--stomp-tls", "", "--admin", ""])
        .args(["--native", "", "--native-tls", ""])
        .args(["--websocket", "", "--websocket-tls", ""])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken"), "{err}");
}
