//! A file with every key set to a non-default value parses to exactly those
//! values (TiKV's test-custom.toml idea), and survives `to_toml`.
//!
//! "Every key" is derived from the schema (the keys `Config::default()`
//! serializes to, and those of one `[[auth.users]]` and one `[[acl]]`
//! entry), so a key added to the schema without a fixture entry fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferromq_config::{
    AclRule, ByteSize, ClientAuth, Config, DurableSubscriptionPolicy, LogFormat, Millis,
    NackPolicy, StoreSync, User,
};

fn custom_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/custom.toml")
}

fn custom() -> Config {
    match Config::load(&custom_path()) {
        Ok(config) => config,
        Err(e) => panic!("the custom fixture should load: {e}"),
    }
}

/// Every leaf of `value` by dotted key path (`store.sync`); the entries of
/// an array of tables share one path (`acl[].read`), so a key counts as set
/// when any entry sets it, and its value is the list of the entries' values.
fn leaves(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, Vec<toml::Value>>) {
    match value {
        toml::Value::Table(table) => {
            for (key, v) in table {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                leaves(&path, v, out);
            }
        }
        toml::Value::Array(items) if !items.is_empty() && items.iter().all(|i| i.is_table()) => {
            for item in items {
                leaves(&format!("{prefix}[]"), item, out);
            }
        }
        // An empty array: an array of tables with no entry, or a list.
        toml::Value::Array(items) if items.is_empty() => {
            out.entry(prefix.to_owned()).or_default();
        }
        leaf => out.entry(prefix.to_owned()).or_default().push(leaf.clone()),
    }
}

fn leaves_of(value: &toml::Value) -> BTreeMap<String, Vec<toml::Value>> {
    let mut out = BTreeMap::new();
    leaves("", value, &mut out);
    out
}

fn toml_of<T: serde::Serialize>(value: &T) -> toml::Value {
    match toml::Value::try_from(value) {
        Ok(v) => v,
        Err(e) => panic!("cannot serialize: {e}"),
    }
}

/// Every key the schema has, by dotted path: what the defaults serialize
/// to, with the entry keys of `[[auth.users]]` and `[[acl]]` (empty lists by
/// default) taken from one default entry each.
fn schema_keys() -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = leaves_of(&toml_of(&Config::default()))
        .into_keys()
        .collect();
    for (array, entry) in [
        ("auth.users", toml_of(&User::default())),
        ("acl", toml_of(&AclRule::default())),
    ] {
        assert!(keys.remove(array), "the schema has no {array} list");
        let mut entry_leaves = BTreeMap::new();
        leaves(&format!("{array}[]"), &entry, &mut entry_leaves);
        keys.extend(entry_leaves.into_keys());
    }
    keys
}

#[test]
fn custom_file_sets_every_key_of_the_schema() {
    let path = custom_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    let fixture = match toml::from_str::<toml::Table>(&text) {
        Ok(table) => toml::Value::Table(table),
        Err(e) => panic!("{} is not TOML: {e}", path.display()),
    };
    let set = leaves_of(&fixture);
    let schema = schema_keys();
    // Sanity: the derivation sees the whole schema, nested entries included.
    for key in [
        "store.compact_threshold",
        "auth.users[].groups",
        "acl[].admin",
    ] {
        assert!(schema.contains(key), "{key} missing from {schema:?}");
    }
    let missing: Vec<&String> = schema.iter().filter(|k| !set.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "keys of the schema that tests/fixtures/custom.toml does not set: {missing:?}"
    );
}

#[test]
fn custom_file_sets_every_key_to_a_non_default_value() {
    let custom = leaves_of(&toml_of(&custom()));
    let defaults = leaves_of(&toml_of(&Config::default()));
    let unchanged: Vec<&String> = defaults
        .iter()
        .filter(|(key, value)| custom.get(*key) == Some(*value))
        .map(|(key, _)| key)
        .collect();
    assert!(
        unchanged.is_empty(),
        "keys that tests/fixtures/custom.toml leaves at their default: {unchanged:?}"
    );
}

#[test]
fn custom_file_sets_every_key() {
    let c = custom();

    assert_eq!(c.broker.name, "edge-1");
    assert_eq!(c.broker.data_dir, PathBuf::from("/var/lib/ferromq"));
    assert_eq!(c.broker.shutdown_timeout, Millis(20_000));

    assert_eq!(c.stomp.listen.as_deref(), Some("0.0.0.0:7613"));
    assert_eq!(c.stomp.listen_addr(), Some("0.0.0.0:7613".parse().unwrap()));
    assert_eq!(
        c.stomp.tls_listen_addr(),
        Some("[::1]:7614".parse().unwrap())
    );
    assert_eq!(c.stomp.max_frame_size, ByteSize(4 * 1024 * 1024));
    assert_eq!(c.stomp.max_headers, 64);
    assert_eq!(c.stomp.max_header_line, ByteSize(8192));
    assert_eq!(c.stomp.heartbeat_send_min, Millis(250));
    assert_eq!(c.stomp.heartbeat_receive_min, Millis(500));
    assert_eq!(c.stomp.heartbeat_grace, 1.5);
    assert_eq!(
        c.stomp.connect_timeout.as_duration(),
        Duration::from_secs(3)
    );
    assert_eq!(c.stomp.frame_timeout, Millis(60_000));

    assert_eq!(
        c.websocket.listen_addr(),
        Some("0.0.0.0:7674".parse().unwrap())
    );
    assert_eq!(c.websocket.tls_listen, None);
    assert_eq!(c.websocket.tls_listen_addr(), None);

    assert_eq!(c.native.listen, None);
    assert_eq!(c.native.listen_addr(), None);
    assert_eq!(
        c.native.tls_listen_addr(),
        Some("127.0.0.1:7621".parse().unwrap())
    );
    assert_eq!(c.native.max_frame_size, ByteSize(512 * 1024));
    assert_eq!(c.native.idle_timeout, Millis(120_000));

    assert_eq!(
        c.tls.cert.as_deref(),
        Some(Path::new("/etc/ferromq/server.pem"))
    );
    assert_eq!(
        c.tls.key.as_deref(),
        Some(Path::new("/etc/ferromq/server.key"))
    );
    assert_eq!(
        c.tls.client_ca.as_deref(),
        Some(Path::new("/etc/ferromq/ca.pem"))
    );
    assert_eq!(c.tls.client_auth, ClientAuth::Required);
    assert!(c.tls.enabled());

    assert_eq!(c.admin.listen_addr(), Some("0.0.0.0:9161".parse().unwrap()));
    assert!(c.admin.allow_remote);
    assert_eq!(
        c.admin.tls_listen_addr(),
        Some("0.0.0.0:9443".parse().unwrap())
    );
    assert_eq!(c.admin.metrics_destination_limit, 250);

    assert_eq!(c.limits.max_connections, 50);
    assert_eq!(c.limits.max_connections_per_ip, 5);
    assert_eq!(c.limits.max_subscriptions_per_connection, 7);
    assert_eq!(c.limits.max_destinations, 300);
    assert_eq!(c.limits.max_unacked_per_connection, 2000);
    assert_eq!(c.limits.outbound_buffer, ByteSize(1_000_000));

    let d = &c.destinations;
    assert_eq!(d.memory_limit, ByteSize(10_000_000_000));
    assert_eq!(d.flow_control_window, 0);
    assert_eq!(d.queue_prefetch, 1);
    assert_eq!(d.queue_window, 7);
    assert_eq!(d.topic_prefetch, 100);
    assert_eq!(d.max_redeliveries, 0);
    assert_eq!(d.dead_letter_queue, "Errors.DLQ");
    assert!(d.individual_dead_letter);
    assert_eq!(d.nack, NackPolicy::DeadLetter);
    assert_eq!(d.redelivery_delay, Millis(1000));
    assert_eq!(d.redelivery_backoff, 5.0);
    assert!(d.expired_to_dlq);
    assert_eq!(d.durable_subscription_limit, 42);
    assert_eq!(
        d.durable_subscription_policy,
        DurableSubscriptionPolicy::DropOldest
    );

    assert_eq!(c.store.sync, StoreSync::Batch);
    assert_eq!(c.store.batch_delay, Millis(10));
    assert_eq!(c.store.memory_limit, ByteSize::gib(1));
    assert_eq!(c.store.disk_limit, ByteSize::gib(2048));
    assert_eq!(c.store.compact_threshold, ByteSize::mib(128));
    assert_eq!(c.store.body_inline_max, ByteSize::kib(4));
    assert_eq!(c.store.checkpoint_every, ByteSize::mib(64));

    assert_eq!(c.log.level, "warn,ferromq_broker=debug,ferromq_store");
    assert_eq!(c.log.format, LogFormat::Json);

    assert!(!c.auth.anonymous);
    assert_eq!(
        c.auth.users_file.as_deref(),
        Some(Path::new("/etc/ferromq/users.toml"))
    );
    assert_eq!(
        c.auth.users,
        vec![
            User {
                name: "app".into(),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
                groups: vec!["producers".into(), "consumers".into()],
            },
            User {
                name: "admin".into(),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$b3RoZXJzYWx0$b3RoZXJoYXNo".into(),
                groups: vec![],
            },
        ]
    );

    assert_eq!(
        c.acl,
        vec![
            AclRule {
                destination: "/queue/orders.>".into(),
                read: vec!["group:consumers".into()],
                write: vec!["app".into()],
                admin: vec!["admin".into()],
            },
            AclRule {
                destination: "/topic/prices.*.eu".into(),
                read: vec!["*".into()],
                write: vec![],
                admin: vec![],
            },
        ]
    );
}

#[test]
fn custom_file_differs_from_defaults_in_every_table() {
    let c = custom();
    let d = Config::default();
    assert_ne!(c.broker, d.broker);
    assert_ne!(c.stomp, d.stomp);
    assert_ne!(c.websocket, d.websocket);
    assert_ne!(c.native, d.native);
    assert_ne!(c.tls, d.tls);
    assert_ne!(c.admin, d.admin);
    assert_ne!(c.limits, d.limits);
    assert_ne!(c.destinations, d.destinations);
    assert_ne!(c.store, d.store);
    assert_ne!(c.log, d.log);
    assert_ne!(c.auth, d.auth);
    assert_ne!(c.acl, d.acl);
}

#[test]
fn custom_config_round_trips_through_to_toml() {
    let c = custom();
    let printed = c.to_toml();
    let parsed = Config::from_toml_str(&printed, Path::new("printed.toml")).unwrap();
    assert_eq!(parsed, c, "printed:\n{printed}");
}
