//! ferromq-bench over the native protocol against the real `ferromq`
//! binary (started by the e2e harness on ephemeral loopback ports): the
//! quick suite, cut short, must move messages both ways in every scenario
//! (non-persistent, persistent with receipts, transactions, durable topic
//! subscribers, 100 KB bodies, fixed rate) and report the native run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use ferromq_tests::Broker;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn quick_suite_over_the_native_protocol() {
    let broker = Broker::start_with(None, &["--native", "127.0.0.1:0"]);
    let native = broker
        .listener("native")
        .expect("the broker logs its native listener");
    let url = format!("ferromq://{native}");
    let dir = tempfile_dir("native-quick");
    let out = dir.join("native.json");
    let o = Command::new(env!("CARGO_BIN_EXE_ferromq-bench"))
        .args([
            "run",
            "--url",
            &url,
            "--quick",
            "--durable",
            "--warm-up-count",
            "1",
            "--sample-count",
            "2",
            "--sample-interval",
            "400",
            "--drain-timeout",
            "400",
            "--display-errors",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "ferromq-bench failed: {stderr}\nbroker log:\n{}",
        broker.log()
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(report["benchmark_settings"]["url"], url.as_str());
    let scenarios = report["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 9, "{report}");
    for s in scenarios {
        let name = s["name"].as_str().unwrap();
        assert!(sum(s, "producer tp") > 0, "{name}: nothing produced: {s}");
        assert!(sum(s, "consumer tp") > 0, "{name}: nothing consumed: {s}");
        assert_eq!(sum(s, "errors"), 0, "{name}: errors: {s}\n{stderr}");
        let e2e = &s["latency_hdr"]["e2e"];
        assert!(
            e2e["count"].as_u64().unwrap_or(0) > 0,
            "{name}: no latency recorded: {s}"
        );
        if s["parameters"]["persistent"] == true && s["parameters"]["tx_size"] == 0 {
            let receipt = &s["latency_hdr"]["receipt"];
            assert!(
                receipt["count"].as_u64().unwrap_or(0) > 0,
                "{name}: no receipt latency: {s}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A CA and a `localhost` server certificate in `dir`: `(ca.pem, server.crt, server.key)`.
fn pki(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let server = params.signed_by(&key, &ca).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.crt"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, server.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// `ferromq+tls://` with `--ca` (and with `--insecure`): a persistent
/// transacted run and a non-persistent one move messages both ways; without
/// trust the run stops with the TLS reason.
#[test]
fn native_over_tls_with_ca_and_insecure() {
    let dir = tempfile_dir("native-tls");
    let (ca, cert, key) = pki(&dir);
    let config = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let broker = Broker::start_with(Some(&config), &["--native-tls", "127.0.0.1:0"]);
    let addr = broker
        .listener("native+tls")
        .expect("the broker logs its native+tls listener");
    let url = format!("ferromq+tls://localhost:{}", addr.port());
    let run = |extra: &[&str], out: &PathBuf| {
        Command::new(env!("CARGO_BIN_EXE_ferromq-bench"))
            .args([
                "run",
                "--url",
                &url,
                "--warm-up-count",
                "1",
                "--sample-count",
                "1",
            ])
            .args(["--sample-interval", "400", "--drain-timeout", "300"])
            .args(extra)
            .arg("-o")
            .arg(out)
            .output()
            .unwrap()
    };
    let ca_arg = ca.display().to_string();
    for (i, extra) in [
        vec!["--ca", ca_arg.as_str(), "--persistent", "--tx-size", "5"],
        vec!["--insecure", "--producers", "2", "--consumers", "2"],
    ]
    .iter()
    .enumerate()
    {
        let out = dir.join(format!("tls-{i}.json"));
        let o = run(extra, &out);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{extra:?}: {stderr}\n{}", broker.log());
        assert_moved_both_ways(&out, &format!("{extra:?}"));
    }
    let untrusted = run(&[], &dir.join("untrusted.json"));
    assert!(!untrusted.status.success());
    let err = String::from_utf8_lossy(&untrusted.stderr);
    assert!(err.contains("TLS"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--login`/`--passcode` against a broker that requires them, over the
/// native protocol and over STOMP: the right password moves messages both
/// ways; a wrong one, an unknown user and no login end the run at once with
/// the broker's reason (a refusal is not retried as an unreachable broker).
#[test]
fn login_against_an_authenticating_broker() {
    let hash = ferromq_tests::hash_password("bench-pw");
    let config = format!(
        "[auth]\nanonymous = false\n[[auth.users]]\nname = \"bench\"\npassword_hash = \"{hash}\"\n"
    );
    let broker = Broker::start_with(Some(&config), &["--native", "127.0.0.1:0"]);
    let dir = tempfile_dir("login");
    for (scheme, listener) in [("ferromq", "native"), ("stomp", "stomp")] {
        let addr = broker
            .listener(listener)
            .expect("the broker logs its listeners");
        let url = format!("{scheme}://{addr}");
        let run = |credentials: &[&str], out: &PathBuf| {
            Command::new(env!("CARGO_BIN_EXE_ferromq-bench"))
                .args(["run", "--url", &url, "--persistent"])
                .args(["--warm-up-count", "1", "--sample-count", "1"])
                .args(["--sample-interval", "400", "--drain-timeout", "300"])
                .args(credentials)
                .arg("-o")
                .arg(out)
                .output()
                .unwrap()
        };
        let out = dir.join(format!("{scheme}.json"));
        let o = run(&["--login", "bench", "--passcode", "bench-pw"], &out);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{url}: {stderr}\n{}", broker.log());
        assert_moved_both_ways(&out, &url);
        for refused in [
            &["--login", "bench", "--passcode", "wrong"][..],
            &["--login", "nobody", "--passcode", "bench-pw"][..],
            &[][..],
        ] {
            let started = std::time::Instant::now();
            let o = run(refused, &dir.join("refused.json"));
            assert!(!o.status.success(), "{url} {refused:?} was let in");
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains("refused the connection") && err.contains("authentication failed"),
                "{url} {refused:?}: {err}"
            );
            // Not the 10 s connect wait of an unreachable broker, twice.
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "{url} {refused:?} took {:?}",
                started.elapsed()
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The first scenario of the results file `out` produced and consumed
/// messages and counted no error (`what` names the run in failures).
fn assert_moved_both_ways(out: &std::path::Path, what: &str) {
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap();
    let s = &report["scenarios"][0];
    assert!(
        sum(s, "producer tp") > 0 && sum(s, "consumer tp") > 0,
        "{what}: {s}"
    );
    assert_eq!(sum(s, "errors"), 0, "{what}: {s}");
}

/// The sum of a scenario's per-sample series `key`.
fn sum(scenario: &serde_json::Value, key: &str) -> u64 {
    scenario[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ferromq-bench-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
