//! The management API (issue 17) through the real broker and a real HTTP
//! client: every route, JSON errors (404, 405, 400 naming the parameter,
//! 409), access (admins, monitoring, wrong/missing credentials), cross-site
//! refusal, request limits, browsing paged-out persistent messages, purge
//! and delete racing live producers and consumers, closing a connection
//! returning its unacked messages to the next consumer, and the capped
//! per-destination metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod native_common;

use base64::Engine as _;
use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{hash_password, http_get, metric, Broker};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN: &[&str] = &["--admin", "127.0.0.1:0"];

/// A management API client.
struct Api {
    base: String,
    agent: ureq::Agent,
    auth: Option<String>,
}

/// An answer: status, JSON body, `X-Total-Count`.
struct Answer {
    status: u16,
    json: Value,
    total: Option<usize>,
}

impl Api {
    fn new(addr: SocketAddr) -> Api {
        Api {
            base: format!("http://{addr}"),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                // A fresh connection per call: the broker closes idle
                // keep-alive connections after 5 s, and a pooled one it has
                // just closed would fail a call for reasons not under test
                // (keep-alive itself is tested on a raw socket).
                .max_idle_connections(0)
                .build()
                .into(),
            auth: None,
        }
    }

    fn with_user(mut self, user: &str, password: &str) -> Api {
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.auth = Some(format!("Basic {pair}"));
        self
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut b = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(a) = &self.auth {
            b = b.header("Authorization", a);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let response = match body {
            Some(v) => self.agent.run(
                b.header("Content-Type", "application/json")
                    .body(v.to_string())
                    .unwrap(),
            ),
            None => self.agent.run(b.body(()).unwrap()),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let total = response
            .headers()
            .get("x-total-count")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let text = response.body_mut().read_to_string().unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            json,
            total,
        }
    }

    fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None, &[])
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let a = self.call(method, path, body, &[]);
        assert!(
            (200..300).contains(&a.status),
            "{method} {path}: {} {}",
            a.status,
            a.json
        );
        a.json
    }
}

/// The id of the only open connection with `subscriptions` subscriptions.
fn connection_with(api: &Api, subscriptions: u64) -> u64 {
    let list = api.ok("GET", "/api/connections", None);
    let found: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["subscriptions"] == subscriptions)
        .collect();
    assert_eq!(found.len(), 1, "{list}");
    found[0]["id"].as_u64().unwrap()
}

#[test]
fn every_route_answers_json() {
    let broker = Broker::start_with(None, ADMIN);
    let api = Api::new(broker.admin());
    let mut c = broker.client();
    for i in 0..3 {
        c.send_message(
            "/queue/mgmt.orders",
            &format!("order {i}"),
            &[("color", "red"), ("persistent", "true")],
        );
    }
    c.send_message("/queue/mgmt.other", "x", &[]);
    c.subscribe("t", "/topic/mgmt.news", "auto");

    // Overview.
    let o = api.ok("GET", "/api/overview", None);
    assert_eq!(o["role"], "standalone");
    assert_eq!(o["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(o["totals"]["messages"], 4, "{o}");
    assert_eq!(o["totals"]["queues"], 2, "{o}");
    assert_eq!(o["connections"]["by_protocol"]["stomp"], 1, "{o}");
    assert!(o["store"]["live_bytes"].as_u64().unwrap() > 0, "{o}");

    // Listing: filter by kind and name, paged, with the total.
    let a = api.get("/api/destinations?kind=queue");
    assert_eq!(a.status, 200);
    assert_eq!(a.total, Some(2));
    let a = api.get("/api/destinations?name=orders");
    assert_eq!(a.json.as_array().unwrap().len(), 1);
    assert_eq!(a.json[0]["name"], "/queue/mgmt.orders");
    assert_eq!(a.json[0]["messages"], 3);
    let a = api.get("/api/destinations?kind=topic&name=/topic/*");
    assert_eq!(a.json[0]["name"], "/topic/mgmt.news");
    assert_eq!(a.json[0]["consumers"], 1);
    let a = api.get("/api/destinations?page=2&page_size=2&sort=name");
    assert_eq!(a.total, Some(3));
    assert_eq!(a.json.as_array().unwrap().len(), 1);
    assert_eq!(a.json[0]["name"], "/topic/mgmt.news");
    let a = api.get("/api/destinations?order=desc&page=2&page_size=1");
    assert_eq!(a.json[0]["name"], "/queue/mgmt.other");
    let a = api.get("/api/destinations?sort=messages&order=desc");
    assert_eq!(a.json[0]["name"], "/queue/mgmt.orders");

    // One destination.
    let d = api.ok("GET", "/api/destinations/queue/mgmt.orders", None);
    assert_eq!(d["messages"], 3);
    assert_eq!(d["subscriptions"], json!([]));
    let t = api.ok("GET", "/api/destinations/topic/mgmt.news", None);
    assert_eq!(t["subscriptions"][0]["tag"], "t");

    // Browse: headers, size, body; nothing consumed.
    let b = api.ok(
        "GET",
        "/api/destinations/queue/mgmt.orders/messages?limit=2",
        None,
    );
    let messages = b["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["body"], "order 0");
    assert_eq!(messages[0]["body_encoding"], "utf-8");
    assert_eq!(messages[0]["size"], 7);
    assert_eq!(messages[0]["persistent"], true);
    assert_eq!(messages[0]["headers"]["color"], "red");
    assert_eq!(
        api.ok("GET", "/api/destinations/queue/mgmt.orders", None)["messages"],
        3
    );

    // Connections: list and show, with subscriptions.
    let conns = api.ok("GET", "/api/connections", None);
    assert_eq!(conns.as_array().unwrap().len(), 1, "{conns}");
    let conn = connection_with(&api, 1);
    let shown = api.ok("GET", &format!("/api/connections/{conn}"), None);
    assert_eq!(shown["protocol"], "stomp");
    assert!(shown["bytes_in"].as_u64().unwrap() > 0);
    assert!(shown["bytes_out"].as_u64().unwrap() > 0);
    assert_eq!(shown["subscriptions"].as_array().unwrap().len(), 1);

    // Send: text and binary bodies, headers, persistence; a STOMP consumer
    // gets them as a producer's.
    let s = api.call(
        "POST",
        "/api/destinations/queue/mgmt.sent/messages",
        Some(json!({"body": "hello", "headers": {"k": "v", "priority": 9}, "persistent": true})),
        &[],
    );
    assert_eq!(s.status, 201, "{}", s.json);
    let id = s.json["message_id"].as_str().unwrap().to_owned();
    api.ok(
        "POST",
        "/api/destinations/queue/mgmt.sent/messages",
        Some(json!({"body_base64": "/wAB"})),
    );
    let b = api.ok("GET", "/api/destinations/queue/mgmt.sent/messages", None);
    assert_eq!(b["messages"][1]["body_encoding"], "base64");
    assert_eq!(b["messages"][1]["body"], "/wAB");
    let mut consumer = broker.client();
    consumer.subscribe("s", "/queue/mgmt.sent", "auto");
    let m = consumer.recv_command(Command::Message);
    assert_eq!(m.get("message-id"), Some(id.as_str()));
    assert_eq!(m.get("k"), Some("v"));
    assert_eq!(m.get("priority"), Some("9"));
    assert_eq!(m.get("persistent"), Some("true"));
    assert_eq!(&m.body[..], b"hello");
    assert_eq!(
        &consumer.recv_command(Command::Message).body[..],
        &[0xff, 0, 1]
    );

    // Purge and delete.
    let p = api.ok("POST", "/api/destinations/queue/mgmt.orders/purge", None);
    assert_eq!(p["purged"], 3);
    let d = api.ok("DELETE", "/api/destinations/queue/mgmt.other", None);
    assert_eq!(d["messages_dropped"], 1);
    assert_eq!(api.get("/api/destinations/queue/mgmt.other").status, 404);
    // A destination with consumers is not deleted.
    let busy = api.call("DELETE", "/api/destinations/queue/mgmt.sent", None, &[]);
    assert_eq!(busy.status, 409, "{}", busy.json);
    assert!(busy.json["error"].as_str().unwrap().contains("consumer"));

    // Durable subscriptions: list, refuse while active, delete when away.
    let mut d = broker.client_with_id("app1");
    d.send(
        Frame::new(Command::Subscribe)
            .header("id", "d")
            .header("destination", "/topic/mgmt.events")
            .header("activemq.subscriptionName", "audit")
            .header("receipt", "s"),
    );
    d.recv_command(Command::Receipt);
    let list = api.ok("GET", "/api/subscriptions/durable", None);
    assert_eq!(list[0]["client_id"], "app1");
    assert_eq!(list[0]["active"], true);
    let queue = list[0]["queue"].as_str().unwrap().to_owned();
    let encoded = queue.replace('/', "%2F");
    let path = format!("/api/subscriptions/durable/{encoded}");
    assert_eq!(api.call("DELETE", &path, None, &[]).status, 409);
    d.send(Frame::new(Command::Disconnect).header("receipt", "bye"));
    d.recv_command(Command::Receipt);
    c.send_message("/topic/mgmt.events", "kept for audit", &[]);
    let list = api.ok("GET", "/api/subscriptions/durable", None);
    assert_eq!(list[0]["active"], false);
    assert_eq!(list[0]["messages"], 1);
    let gone = api.ok("DELETE", &path, None);
    assert_eq!(gone["messages_dropped"], 1);
    assert_eq!(api.ok("GET", "/api/subscriptions/durable", None), json!([]));
    assert_eq!(api.call("DELETE", &path, None, &[]).status, 404);
}

#[test]
fn errors_are_json_with_the_right_status() {
    let broker = Broker::start_with(None, ADMIN);
    let api = Api::new(broker.admin());
    let a = api.get("/api/nothing");
    assert_eq!(a.status, 404);
    assert!(a.json["error"].as_str().unwrap().contains("/api/nothing"));
    let a = api.call("PUT", "/api/overview", None, &[]);
    assert_eq!(a.status, 405);
    assert!(a.json["error"].as_str().unwrap().contains("PUT"));
    for (path, parameter) in [
        ("/api/destinations?page_size=0", "`page_size`"),
        ("/api/destinations?page=x", "`page`"),
        ("/api/destinations?kind=table", "`kind`"),
        ("/api/destinations?sort=color", "`sort`"),
        ("/api/destinations?bogus=1", "`bogus`"),
        ("/api/destinations/table/x", "`kind`"),
        ("/api/connections/abc", "`id`"),
    ] {
        let a = api.get(path);
        assert_eq!(a.status, 400, "{path}: {}", a.json);
        assert!(
            a.json["error"].as_str().unwrap().contains(parameter),
            "{path}: {}",
            a.json
        );
    }
    let mut c = broker.client();
    c.send_message("/queue/e", "x", &[]);
    let a = api.get("/api/destinations/queue/e/messages?limit=100000");
    assert_eq!(a.status, 400);
    assert!(a.json["error"].as_str().unwrap().contains("`limit`"));
    let a = api.call(
        "POST",
        "/api/destinations/queue/e/messages",
        Some(json!({"body": "x", "headers": {"priority": 12}})),
        &[],
    );
    assert_eq!(a.status, 400);
    assert!(a.json["error"]
        .as_str()
        .unwrap()
        .contains("headers.priority"));
    let a = api.call(
        "POST",
        "/api/destinations/queue/e/messages",
        Some(json!({"bodee": "x"})),
        &[],
    );
    assert_eq!(a.status, 400, "{}", a.json);
    assert_eq!(api.get("/api/destinations/queue/none").status, 404);
    assert_eq!(
        api.call("DELETE", "/api/connections/999", None, &[]).status,
        404
    );
}

#[test]
fn access_needs_admins_for_changes_and_monitoring_may_read() {
    let hash = hash_password("s3cret-pw");
    let config = format!(
        r#"
[[auth.users]]
name = "root"
password_hash = "{hash}"
groups = ["admins"]
[[auth.users]]
name = "watcher"
password_hash = "{hash}"
groups = ["monitoring"]
[[auth.users]]
name = "app"
password_hash = "{hash}"
"#
    );
    let broker = Broker::start_with(Some(&config), ADMIN);
    let open = Api::new(broker.admin());
    let root = Api::new(broker.admin()).with_user("root", "s3cret-pw");
    let wrong = Api::new(broker.admin()).with_user("root", "nope");
    let app = Api::new(broker.admin()).with_user("app", "s3cret-pw");
    let watcher = Api::new(broker.admin()).with_user("watcher", "s3cret-pw");
    let purge = "/api/destinations/queue/acl.q/purge";
    root.ok(
        "POST",
        "/api/destinations/queue/acl.q/messages",
        Some(json!({"body": "x"})),
    );
    for api in [&open, &wrong, &app] {
        let a = api.get("/api/overview");
        assert_eq!(a.status, 401);
        assert!(a.json["error"].as_str().unwrap().contains("admins"));
        assert_eq!(api.call("POST", purge, None, &[]).status, 401);
    }
    assert_eq!(watcher.get("/api/overview").status, 200);
    assert_eq!(watcher.get("/api/destinations").status, 200);
    assert_eq!(
        http_get(broker.admin(), "/metrics", Some(("watcher", "s3cret-pw"))).0,
        200
    );
    let refused = watcher.call("POST", purge, None, &[]);
    assert_eq!(refused.status, 403);
    assert!(refused.json["error"]
        .as_str()
        .unwrap()
        .contains("only read"));
    assert_eq!(root.ok("POST", purge, None)["purged"], 1);
    assert_eq!(open.get("/healthz").status, 200);
    assert!(broker.wait_for_log("admin authentication failed"));
    // Every change is logged with who made it.
    assert!(broker.wait_for_log("admin action"));
    let log = broker.log();
    assert!(
        log.lines()
            .any(|l| l.contains("queue purged") && l.contains("user=root")),
        "{log}"
    );
    assert!(!log.contains("s3cret-pw"), "a password reached the log");
}

#[test]
fn cross_site_changes_are_refused() {
    let broker = Broker::start_with(None, ADMIN);
    let api = Api::new(broker.admin());
    let mut c = broker.client();
    c.send_message("/queue/csrf", "x", &[]);
    let purge = "/api/destinations/queue/csrf/purge";
    let own = format!("http://{}", broker.admin());
    for headers in [
        vec![("Origin", "http://evil.example")],
        vec![("Sec-Fetch-Site", "cross-site")],
        vec![("Origin", "null")],
    ] {
        let a = api.call("POST", purge, None, &headers);
        assert_eq!(a.status, 403, "{headers:?}");
        assert!(a.json["error"].as_str().unwrap().contains("cross-site"));
    }
    // Reading stays possible (nothing changes), and nothing was purged.
    let d = api.call(
        "GET",
        "/api/destinations/queue/csrf",
        None,
        &[("Origin", "http://evil.example")],
    );
    assert_eq!(d.json["messages"], 1);
    assert!(broker.wait_for_log("cross-site admin request refused"));
    // The console itself (same origin) may.
    let a = api.call(
        "POST",
        purge,
        None,
        &[("Origin", own.as_str()), ("Sec-Fetch-Site", "same-origin")],
    );
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["purged"], 1);
}

/// Writes `request` and reads until the broker closes or `wait` passes.
fn raw_exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> (String, Duration) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let started = Instant::now();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn request_limits_hold() {
    let broker = Broker::start_with(None, ADMIN);
    let addr = broker.admin();
    // A body over 1 MiB is refused before it is read whole.
    let big = "x".repeat(2 << 20);
    let request = format!(
        "POST /api/destinations/queue/lim/messages HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{{\"body\": \"{big}\"}}",
        big.len() + 12
    );
    let (answer, _) = raw_exchange(addr, request.as_bytes(), Duration::from_secs(10));
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    assert_eq!(
        Api::new(addr).get("/api/destinations/queue/lim").status,
        404,
        "nothing may have been sent"
    );
    // Headers over the limit.
    let request = format!(
        "GET /api/overview HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "y".repeat(40 * 1024)
    );
    let (answer, _) = raw_exchange(addr, request.as_bytes(), Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    // Slow headers: the connection ends after the 5 s head timeout.
    let (answer, took) = raw_exchange(
        addr,
        b"GET /api/overview HTTP/1.1\r\nHost: a\r\n",
        Duration::from_secs(20),
    );
    assert!(!answer.contains("200 OK"), "{answer:?}");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(15),
        "closed after {took:?}"
    );
    // Keep-alive: two requests, one connection.
    let (answer, _) = raw_exchange(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer:?}");
}

#[test]
fn browse_reads_paged_out_persistent_messages_back() {
    let config = "[store]\nmemory_limit = \"1MiB\"\n[destinations]\nmemory_limit = \"1MiB\"\n";
    let broker = Broker::start_with(Some(config), ADMIN);
    let api = Api::new(broker.admin());
    let mut c = broker.client();
    let body = |i: usize| format!("{i:05}:{}", "p".repeat(32 * 1024));
    for i in 0..100 {
        c.send_message("/queue/paged", &body(i), &[("persistent", "true")]);
    }
    // The store's writer pages bodies out once they are written.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, m) = http_get(broker.admin(), "/metrics", None);
        if metric(&m, "ferromq_store_paged_messages").unwrap_or(0.0) > 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "nothing was paged out: {m}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let b = api.ok(
        "GET",
        "/api/destinations/queue/paged/messages?limit=100&preview=65536",
        None,
    );
    let messages = b["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 100);
    let paged = messages.iter().filter(|m| m["paged_out"] == true).count();
    assert!(paged > 0, "no browsed message was paged out");
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(m["body"].as_str().unwrap(), body(i), "message {i}");
        assert_eq!(m["body_truncated"], false);
    }
    // A small preview is cut and says so.
    let b = api.ok(
        "GET",
        "/api/destinations/queue/paged/messages?limit=1&preview=5",
        None,
    );
    assert_eq!(b["messages"][0]["body"], "00000");
    assert_eq!(b["messages"][0]["body_truncated"], true);
    // Browsing consumed nothing.
    assert_eq!(
        api.ok("GET", "/api/destinations/queue/paged", None)["messages"],
        100
    );
}

#[test]
fn purge_and_delete_race_live_producers_and_consumers() {
    let broker = Broker::start_with(None, ADMIN);
    let api = Api::new(broker.admin());
    let q = "/queue/race";
    let running = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let mut producers = Vec::new();
    for p in 0..2 {
        let mut c = broker.client();
        let (running, sent) = (running.clone(), sent.clone());
        producers.push(std::thread::spawn(move || {
            let mut n = 0;
            while running.load(Ordering::Relaxed) && n < 3000 {
                c.send_message(q, &format!("p{p}-{n}"), &[("persistent", "true")]);
                // A second queue nobody consumes, deleted while produced to.
                c.send_message("/queue/race.deleted", "d", &[]);
                sent.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    let mut consumer = broker.client();
    consumer.subscribe("s", q, "auto");
    let counter = received.clone();
    let consume = std::thread::spawn(move || {
        while let Some(f) = consumer.recv_within(Duration::from_secs(3)) {
            assert_eq!(f.command, Command::Message);
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let mut purged = 0u64;
    let mut deletes = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        purged += api.ok("POST", "/api/destinations/queue/race/purge", None)["purged"]
            .as_u64()
            .unwrap();
        let busy = api.call("DELETE", "/api/destinations/queue/race", None, &[]);
        assert_eq!(busy.status, 409, "a consumed queue is not deleted");
        let d = api.call("DELETE", "/api/destinations/queue/race.deleted", None, &[]);
        assert!(matches!(d.status, 200 | 404), "{} {}", d.status, d.json);
        deletes += usize::from(d.status == 200);
        std::thread::sleep(Duration::from_millis(20));
    }
    running.store(false, Ordering::Relaxed);
    for p in producers {
        p.join().unwrap();
    }
    consume.join().unwrap();
    let sent = sent.load(Ordering::Relaxed);
    let received = received.load(Ordering::Relaxed);
    let d = api.ok("GET", "/api/destinations/queue/race", None);
    assert!(
        sent > 0 && deletes > 0,
        "sent {sent}, deleted {deletes} times"
    );
    // Every message was consumed, purged or is still there.
    assert_eq!(
        received + purged + d["messages"].as_u64().unwrap(),
        sent,
        "received {received} + purged {purged} + left {} != sent {sent}",
        d["messages"]
    );
    assert_eq!(d["enqueued"].as_u64().unwrap(), sent);
    assert_eq!(api.get("/healthz").status, 200);
}

#[test]
fn closing_a_connection_gives_its_unacked_messages_to_the_next_consumer() {
    let broker = Broker::start_with(None, ADMIN);
    let api = Api::new(broker.admin());
    let q = "/queue/close.me";
    let mut p = broker.client();
    for i in 0..5 {
        p.send_message(q, &format!("m{i}"), &[]);
    }
    let mut first = broker.client();
    first.subscribe("s", q, "client-individual");
    let delivered = first.recv_messages(5);
    let conn = connection_with(&api, 1);
    assert_eq!(
        api.ok("GET", &format!("/api/connections/{conn}"), None)["unacked"],
        5
    );
    let a = api.call(
        "DELETE",
        &format!("/api/connections/{conn}?reason=stuck%20consumer"),
        None,
        &[],
    );
    assert_eq!(a.status, 202, "{}", a.json);
    let error = first.expect_error();
    assert!(
        error.get("message").unwrap().contains("stuck consumer"),
        "{error:?}"
    );
    let mut next = broker.client();
    next.subscribe("s", q, "auto");
    let again = next.recv_messages(5);
    for (a, b) in delivered.iter().zip(&again) {
        assert_eq!(a.body, b.body);
        assert_eq!(b.get("redelivered"), Some("true"));
    }
    assert!(broker.wait_for_log("connection close requested"));
    assert_eq!(
        api.call("GET", &format!("/api/connections/{conn}"), None, &[])
            .status,
        404
    );
}

#[test]
fn per_destination_metrics_are_capped_and_protocols_counted() {
    let broker = Broker::start_with(Some("[admin]\nmetrics_destination_limit = 2\n"), ADMIN);
    let mut c = broker.client();
    for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        for _ in 0..=i {
            c.send_message(&format!("/queue/cap.{name}"), "x", &[]);
        }
    }
    let (status, m) = http_get(broker.admin(), "/metrics", None);
    assert_eq!(status, 200);
    let series = m
        .lines()
        .filter(|l| l.starts_with("ferromq_destination_messages{"))
        .count();
    assert_eq!(series, 2, "{m}");
    // The deepest are kept.
    assert_eq!(
        metric(
            &m,
            "ferromq_destination_messages{destination=\"/queue/cap.e\",kind=\"queue\"}"
        ),
        Some(5.0)
    );
    assert_eq!(
        metric(&m, "ferromq_metrics_destinations_omitted"),
        Some(3.0)
    );
    assert_eq!(metric(&m, "ferromq_destinations"), Some(5.0));
    assert_eq!(
        metric(&m, "ferromq_connections_by_protocol{protocol=\"stomp\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "ferromq_connections_by_protocol{protocol=\"native\"}"),
        Some(0.0)
    );
}

#[test]
fn closing_a_native_connection_sends_a_close_with_the_reason() {
    let broker = native_common::broker_with("", ADMIN);
    let api = Api::new(broker.admin());
    let mut raw = native_common::Raw::open(native_common::native_addr(&broker));
    let list = api.ok("GET", "/api/connections", None);
    let native: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["protocol"] == "native")
        .collect();
    assert_eq!(native.len(), 1, "{list}");
    let id = native[0]["id"].as_u64().unwrap();
    let o = api.ok("GET", "/api/overview", None);
    assert_eq!(o["connections"]["by_protocol"]["native"], 1, "{o}");
    let a = api.call(
        "DELETE",
        &format!("/api/connections/{id}?reason=maintenance"),
        None,
        &[],
    );
    assert_eq!(a.status, 202, "{}", a.json);
    let info = raw.expect_close();
    native_common::assert_error(
        &info,
        ferromq_protocol::native::ErrorCondition::NotAllowed,
        "maintenance",
    );
}

/// ActiveMQ's semantics: a delete drops the destination and its messages; a
/// send after it re-creates the destination. A persistent message sent
/// while the delete runs is either dropped with it or in the re-created
/// destination, live and after a restart alike: nothing deleted comes back.
#[test]
fn deleted_destinations_stay_deleted_across_a_restart() {
    let mut broker = Broker::start_with(None, ADMIN);
    let api = Api::new(broker.admin());
    let running = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU64::new(0));
    let mut producers = Vec::new();
    for p in 0..3 {
        let mut c = broker.client();
        let (running, sent) = (running.clone(), sent.clone());
        producers.push(std::thread::spawn(move || {
            let mut n = 0;
            while running.load(Ordering::Relaxed) && n < 20_000 {
                c.send_message(
                    "/queue/gone",
                    &format!("p{p}-{n}"),
                    &[("persistent", "true")],
                );
                sent.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    let mut deletes = 0u64;
    let mut dropped = 0u64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let d = api.call("DELETE", "/api/destinations/queue/gone", None, &[]);
        assert!(matches!(d.status, 200 | 404), "{} {}", d.status, d.json);
        if d.status == 200 {
            deletes += 1;
            dropped += d.json["messages_dropped"].as_u64().unwrap_or(0);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    running.store(false, Ordering::Relaxed);
    for p in producers {
        p.join().unwrap();
    }
    let depth = |api: &Api| {
        let a = api.get("/api/destinations/queue/gone");
        match a.status {
            404 => 0,
            200 => a.json["messages"].as_u64().unwrap(),
            s => panic!("{s} {}", a.json),
        }
    };
    let before = depth(&api);
    let sent = sent.load(Ordering::Relaxed);
    assert!(
        sent > 0 && deletes > 10,
        "sent {sent}, deleted {deletes} times"
    );
    broker.terminate();
    let broker = broker.restart();
    let api = Api::new(broker.admin());
    let after = depth(&api);
    assert_eq!(
        after, before,
        "{before} messages were live before the restart, {after} after \
         ({sent} sent, {deletes} deletes dropping {dropped})"
    );
}

/// The console polls with the same credentials every few seconds: only the
/// first request pays Argon2, and a password changed by a reload is refused
/// at once, not a minute later.
#[test]
fn admin_credentials_are_checked_once_and_forgotten_on_reload() {
    let users = |hash: &str| {
        format!(
            "[[auth.users]]\nname = \"root\"\npassword_hash = \"{hash}\"\ngroups = [\"admins\"]\n"
        )
    };
    let broker = Broker::start_with(Some(&users(&hash_password("old-pw"))), ADMIN);
    let old = Api::new(broker.admin()).with_user("root", "old-pw");
    let checks = || -> f64 {
        let (status, text) = http_get(broker.admin(), "/metrics", Some(("root", "old-pw")));
        assert_eq!(status, 200, "{text}");
        metric(&text, "ferromq_auth_password_checks_total").unwrap()
    };
    let first = Instant::now();
    old.ok("GET", "/api/overview", None);
    let first = first.elapsed();
    let before = checks();
    let mut fastest = Duration::MAX;
    for _ in 0..10 {
        let t = Instant::now();
        old.ok("GET", "/api/overview", None);
        fastest = fastest.min(t.elapsed());
    }
    let after = checks();
    assert!(before >= 1.0, "the first request was checked: {before}");
    assert_eq!(after, before, "10 repeated requests ran Argon2 again");
    assert!(
        fastest < first,
        "a remembered request ({fastest:?}) is faster than the first ({first:?})"
    );
    // A wrong password is still checked and refused.
    let wrong = Api::new(broker.admin()).with_user("root", "old-pW");
    assert_eq!(wrong.get("/api/overview").status, 401);

    std::fs::write(
        broker.config_file().unwrap(),
        users(&hash_password("new-pw")),
    )
    .unwrap();
    broker.sighup();
    assert!(
        broker.wait_for_log("configuration reloaded"),
        "{}",
        broker.log()
    );
    assert_eq!(
        old.get("/api/overview").status,
        401,
        "old password after reload"
    );
    let new = Api::new(broker.admin()).with_user("root", "new-pw");
    new.ok("GET", "/api/overview", None);
}

/// A producer paused by flow control is closed at once, not when the
/// destination drains (which, with no consumer, is never).
#[test]
fn closing_a_producer_blocked_by_flow_control_takes_effect_at_once() {
    let config = "[destinations]\nmemory_limit = \"1MiB\"\n";
    let broker = Broker::start_with(Some(config), ADMIN);
    let api = Api::new(broker.admin());
    let (mut reader, mut writer) = broker.client_with_writer();
    let body = "b".repeat(16 * 1024);
    let producer = std::thread::spawn(move || {
        for _ in 0..200 {
            let f = Frame::new(Command::Send)
                .header("destination", "/queue/blocked")
                .body(body.clone());
            if writer.send(&f).is_err() {
                break; // closed by the broker
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = api.get("/api/destinations/queue/blocked");
        if d.status == 200 && d.json["blocked_producers"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the producer never blocked: {}",
            d.json
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let conn = connection_with(&api, 0);
    let asked = Instant::now();
    let a = api.call(
        "DELETE",
        &format!("/api/connections/{conn}?reason=blocked%20producer"),
        None,
        &[],
    );
    assert_eq!(a.status, 202, "{}", a.json);
    let error = reader
        .recv_within(Duration::from_secs(5))
        .expect("no ERROR frame within 5 s of the close");
    assert_eq!(error.command, Command::Error, "{error:?}");
    assert!(
        error.get("message").unwrap().contains("blocked producer"),
        "{error:?}"
    );
    assert!(asked.elapsed() < Duration::from_secs(5));
    producer.join().unwrap();
    // The connection is gone, and so is the blocked producer.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !api
        .ok("GET", "/api/connections", None)
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the connection stayed open");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Each connection's messages in (sent by the client) and out (written to
/// it) are counted exactly, over STOMP, STOMP over WebSocket and native.
#[test]
fn connections_count_their_messages_in_and_out() {
    use ferromq_protocol::client::{Connection, OutgoingMessage, ReceiverOptions, SettleMode};
    let broker = Broker::start_with(
        None,
        &[
            "--admin",
            "127.0.0.1:0",
            "--websocket",
            "127.0.0.1:0",
            "--native",
            "127.0.0.1:0",
        ],
    );
    let api = Api::new(broker.admin());
    // STOMP: 3 in on the producer, 3 out on the consumer (plus one
    // browsed message, which is a MESSAGE frame too).
    let mut producer = broker.client();
    for i in 0..3 {
        producer.send_message("/queue/count.stomp", &format!("s{i}"), &[]);
    }
    let mut consumer = broker.client();
    consumer.subscribe("s", "/queue/count.stomp", "auto");
    assert_eq!(consumer.recv_messages(3).len(), 3);
    let mut browser = broker.client();
    producer.send_message("/queue/count.browsed", "b", &[]);
    browser.send(
        Frame::new(Command::Subscribe)
            .header("id", "b")
            .header("destination", "/queue/count.browsed")
            .header("browser", "true"),
    );
    assert_eq!(browser.recv_messages(1)[0].body, b"b".to_vec());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ws_addr = broker.listener("websocket").unwrap();
    let native_url = format!("ferromq://{}", broker.listener("native").unwrap());
    // Kept open until the counts are read.
    let (_ws, _native) = rt.block_on(async {
        // WebSocket: 2 in on one connection, 2 out on another.
        let mut ws_producer = ferromq_tests::ws::ws_session(ws_addr).await;
        let mut ws_consumer = ferromq_tests::ws::ws_session(ws_addr).await;
        ws_consumer.subscribe("w", "/queue/count.ws", "auto").await;
        for i in 0..2 {
            let f = Frame::new(Command::Send)
                .header("destination", "/queue/count.ws")
                .body(format!("w{i}"));
            ws_producer.send_with_receipt(f, &format!("r{i}")).await;
        }
        for _ in 0..2 {
            assert_eq!(ws_consumer.recv().await.command, Command::Message);
        }
        // Native: 4 in and 4 out on one connection.
        let native = Connection::connect(&native_url).await.unwrap();
        let sender = native
            .open_sender("/queue/count.native", SettleMode::Unsettled)
            .await
            .unwrap();
        for i in 0..4 {
            sender
                .send_and_wait(OutgoingMessage::text(&format!("n{i}")))
                .await
                .unwrap();
        }
        let mut receiver = native
            .open_receiver(
                "/queue/count.native",
                ReceiverOptions {
                    credit: 10,
                    settle_mode: SettleMode::Settled,
                    ..ReceiverOptions::default()
                },
            )
            .await
            .unwrap();
        for _ in 0..4 {
            tokio::time::timeout(Duration::from_secs(10), receiver.recv())
                .await
                .unwrap()
                .unwrap();
        }
        ((ws_producer, ws_consumer), (native, sender, receiver))
    });

    let list = api.ok("GET", "/api/connections", None);
    let mut counts: Vec<(String, u64, u64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["protocol"].as_str().unwrap().to_owned(),
                c["messages_in"].as_u64().unwrap(),
                c["messages_out"].as_u64().unwrap(),
            )
        })
        .collect();
    counts.sort();
    let expected: Vec<(String, u64, u64)> = [
        ("native", 4, 4),
        ("stomp", 0, 1),
        ("stomp", 0, 2),
        ("stomp", 0, 3),
        ("stomp", 2, 0),
        ("stomp", 4, 0),
    ]
    .iter()
    .map(|(p, i, o)| (p.to_string(), *i, *o))
    .collect();
    assert_eq!(counts, expected, "{list}");
    let native_id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["protocol"] == "native")
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    let one = api.ok("GET", &format!("/api/connections/{native_id}"), None);
    assert_eq!(
        (one["messages_in"].clone(), one["messages_out"].clone()),
        (json!(4), json!(4))
    );
}
