//! `ferromq admin` (issue 17) against a real broker: every subcommand,
//! table output, `--json` that parses, and the exit codes: 0 done, 1 failed
//! with one clear line (bad URL, unreachable broker, bad credentials,
//! refused request), 2 bad usage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::Command;
use ferromq_tests::pki::Pki;
use ferromq_tests::{ferromq_bin, hash_password, Broker};
use serde_json::Value;
use std::process::{Command as Process, Output};

const ADMIN: &[&str] = &["--admin", "127.0.0.1:0"];

/// Runs `ferromq admin ARGS` against `url` with a clean environment for
/// the admin variables.
fn admin(url: &str, args: &[&str]) -> Output {
    Process::new(ferromq_bin())
        .arg("admin")
        .args(args)
        .env("FERROMQ_ADMIN_URL", url)
        .env_remove("FERROMQ_ADMIN_USER")
        .env_remove("FERROMQ_ADMIN_PASSWORD")
        .output()
        .expect("run ferromq admin")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Succeeds and returns stdout.
fn ok(url: &str, args: &[&str]) -> String {
    let o = admin(url, args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "ferromq admin {args:?}: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Succeeds with `--json` and returns the parsed output.
fn json(url: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ok(url, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Fails with exit code `code` and exactly one line on stderr; returns it.
fn fails(url: &str, args: &[&str], code: i32) -> String {
    let o = admin(url, args);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
    let err = stderr(&o);
    if code == 1 {
        assert_eq!(err.lines().count(), 1, "one line expected: {err:?}");
        assert!(err.starts_with("ferromq admin: "), "{err}");
    }
    err
}

#[test]
fn every_subcommand_with_tables_and_json() {
    let broker = Broker::start_with(None, ADMIN);
    let url = format!("http://{}", broker.admin());
    let mut c = broker.client();
    c.send_message("/queue/cli.orders", "first", &[]);
    c.subscribe("t", "/topic/cli.news", "auto");

    // send (plain queue name), with headers and persistence.
    let out = ok(
        &url,
        &[
            "send",
            "cli.orders",
            "from the cli",
            "--header",
            "color=green",
            "--persistent",
        ],
    );
    assert!(out.starts_with("sent ID:"), "{out}");
    assert!(out.contains("/queue/cli.orders"), "{out}");
    let sent = json(&url, &["send", "/queue/cli.orders", "third"]);
    assert!(sent["message_id"].as_str().unwrap().starts_with("ID:"));

    // overview
    let out = ok(&url, &["overview"]);
    assert!(out.contains("role         standalone"), "{out}");
    assert!(out.contains("3 waiting"), "{out}");
    assert_eq!(json(&url, &["overview"])["totals"]["messages"], 3);

    // list queues | topics | connections | durables
    let out = ok(&url, &["list", "queues"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("name"), "{out}");
    assert!(lines[0].contains("messages"), "{out}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[..2], ["/queue/cli.orders", "3"], "{out}");
    let queues = json(&url, &["list", "queues", "--name", "orders"]);
    assert_eq!(queues.as_array().unwrap().len(), 1);
    assert_eq!(queues[0]["messages"], 3);
    let topics = json(&url, &["list", "topics"]);
    assert_eq!(topics[0]["name"], "/topic/cli.news");
    assert!(ok(&url, &["list", "topics"]).contains("/topic/cli.news"));
    let conns = json(&url, &["list", "connections"]);
    assert_eq!(conns.as_array().unwrap().len(), 1);
    let conn = conns[0]["id"].as_u64().unwrap();
    // The client sent one message (the others came through the API).
    assert_eq!(conns[0]["messages_in"], 1, "{conns}");
    assert_eq!(conns[0]["messages_out"], 0, "{conns}");
    let out = ok(&url, &["list", "connections"]);
    assert!(out.lines().next().unwrap().starts_with("id"), "{out}");
    assert!(
        out.lines().next().unwrap().contains("messages_out"),
        "{out}"
    );
    assert!(out.contains("stomp"), "{out}");
    assert_eq!(json(&url, &["list", "durables"]), Value::Array(vec![]));
    assert!(ok(&url, &["list", "durables"]).starts_with("queue"));

    // browse
    let out = ok(&url, &["browse", "cli.orders", "--limit", "2"]);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        out.contains("first") && out.contains("from the cli"),
        "{out}"
    );
    let browsed = json(&url, &["browse", "/queue/cli.orders"]);
    assert_eq!(browsed["messages"][1]["headers"]["color"], "green");
    assert_eq!(browsed["messages"][1]["persistent"], true);

    // purge, delete
    let out = ok(&url, &["purge", "cli.orders"]);
    assert_eq!(out, "purged 3 messages from /queue/cli.orders\n");
    let out = ok(&url, &["delete", "/queue/cli.orders"]);
    assert_eq!(out, "deleted /queue/cli.orders (0 messages dropped)\n");
    let err = fails(&url, &["delete", "/queue/cli.orders"], 1);
    assert!(err.contains("no queue named /queue/cli.orders"), "{err}");
    let err = fails(&url, &["delete", "/topic/cli.news"], 1);
    assert!(err.contains("consumer"), "{err}");

    // close
    let out = ok(&url, &["close", &conn.to_string(), "--reason", "cli test"]);
    assert_eq!(out, format!("closing connection {conn}\n"));
    let error = c.expect_error();
    assert!(error.get("message").unwrap().contains("cli test"));
    assert_eq!(error.command, Command::Error);
}

#[test]
fn bad_url_unreachable_broker_and_usage_errors() {
    let err = fails("not a url", &["overview"], 1);
    assert!(err.contains("bad --url"), "{err}");
    // A port nothing listens on (bound then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = fails(&format!("http://127.0.0.1:{port}"), &["overview"], 1);
    assert!(err.contains("cannot reach the broker"), "{err}");
    fails("http://127.0.0.1:1", &["list", "everything"], 2);
    fails("http://127.0.0.1:1", &["frobnicate"], 2);
    fails("http://127.0.0.1:1", &["send", "/queue/a"], 2);
}

#[test]
fn bad_credentials_are_one_line_and_good_ones_work() {
    let hash = hash_password("cli-pw");
    let config = format!(
        "[[auth.users]]\nname = \"root\"\npassword_hash = \"{hash}\"\ngroups = [\"admins\"]\n"
    );
    let broker = Broker::start_with(Some(&config), ADMIN);
    let url = format!("http://{}", broker.admin());
    let err = fails(&url, &["overview"], 1);
    assert!(err.contains("authentication failed"), "{err}");
    let err = fails(
        &url,
        &["--user", "root", "--password", "wrong", "overview"],
        1,
    );
    assert!(err.contains("authentication failed"), "{err}");
    let out = ok(
        &url,
        &["--user", "root", "--password", "cli-pw", "overview"],
    );
    assert!(out.contains("standalone"), "{out}");
    // The same from the environment.
    let o = Process::new(ferromq_bin())
        .args(["admin", "--json", "overview"])
        .env("FERROMQ_ADMIN_URL", &url)
        .env("FERROMQ_ADMIN_USER", "root")
        .env("FERROMQ_ADMIN_PASSWORD", "cli-pw")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["role"], "standalone");
}

#[test]
fn https_on_admin_tls_listen_with_the_broker_ca() {
    let pki = Pki::new();
    let config = format!(
        "{}[admin]\ntls_listen = \"127.0.0.1:0\"\n",
        pki.tls_config()
    );
    let broker = Broker::start_with(Some(&config), ADMIN);
    let https = format!(
        "https://{}",
        broker.listener("admin+tls").expect("admin+tls listener")
    );
    let ca = pki.path("ca.crt").display().to_string();
    let v = json(&https, &["--cacert", &ca, "overview"]);
    assert_eq!(v["role"], "standalone");
    let out = ok(&https, &["--cacert", &ca, "send", "tls.q", "over https"]);
    assert!(out.starts_with("sent ID:"), "{out}");
    // Plain HTTP still answers on admin.listen.
    let http = format!("http://{}", broker.admin());
    assert_eq!(json(&http, &["list", "queues"])[0]["messages"], 1);
    // Without the CA the certificate is not trusted: one line, exit 1.
    let err = fails(&https, &["overview"], 1);
    assert!(err.contains("cannot reach the broker"), "{err}");
}
