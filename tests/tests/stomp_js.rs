//! stomp.js interop: the real `@stomp/stompjs` (v7, pinned in
//! `tests/js/package-lock.json`) under Node against the real broker over
//! `ws://` and `wss://` (the test CA). The checks themselves are in
//! `tests/js/stompjs_interop.mjs`; this test starts the broker, runs
//! `node` on it and fails with node's report when any check fails.
//! `scripts/test-deps.sh` installs the npm packages (`npm ci` in tests/js).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_tests::pki::Pki;
use ferromq_tests::Broker;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole node run; each check inside has its own 10 s bound.
const NODE_LIMIT: Duration = Duration::from_secs(120);

#[test]
fn stompjs_over_ws_and_wss() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("js");
    assert!(
        js.join("node_modules/@stomp/stompjs/package.json").exists()
            && js.join("node_modules/ws/package.json").exists(),
        "{}/node_modules is missing @stomp/stompjs or ws: run scripts/test-deps.sh \
         (or `npm ci --no-audit --no-fund` in tests/js)",
        js.display()
    );
    let pki = Pki::new();
    let broker = Broker::start_with(
        Some(&pki.tls_config()),
        &[
            "--websocket",
            "127.0.0.1:0",
            "--websocket-tls",
            "127.0.0.1:0",
        ],
    );
    let ws = broker.listener("websocket").expect("websocket listener");
    let wss = broker
        .listener("websocket+tls")
        .expect("websocket+tls listener");

    let node = std::env::var("NODE").unwrap_or_else(|_| "node".into());
    let out_path = pki.path("node.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new(&node)
        .arg("stompjs_interop.mjs")
        .arg(format!("ws://{ws}/ws"))
        .arg(format!("wss://{wss}/ws"))
        .arg(pki.path("ca.crt"))
        .current_dir(&js)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{node}` (Node 20 is needed): {e}"));
    let deadline = Instant::now() + NODE_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let report = std::fs::read_to_string(&out_path).unwrap_or_default();
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!(
            "stomp.js interop failed ({s}):\n{report}\n--- broker log ---\n{}",
            broker.log()
        ),
        None => panic!(
            "stomp.js interop did not finish within {NODE_LIMIT:?}:\n{report}\n--- broker log ---\n{}",
            broker.log()
        ),
    }
    // node:test reports its counts; make sure the checks really ran,
    // including the wss one (skipped only when no wss URL is given).
    assert!(report.contains("# fail 0"), "{report}");
    assert!(report.contains("# skipped 0"), "{report}");
    assert!(!report.contains("# pass 0\n"), "{report}");
    let log = broker.log();
    for listener in ["websocket", "websocket+tls"] {
        let upgraded = format!("WebSocket upgraded listener=\"{listener}\"");
        assert!(log.contains(&upgraded), "no {listener} session:\n{log}");
    }
}
