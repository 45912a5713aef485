//! Every kind of bad configuration is refused with an error that names the
//! file and the dotted key to fix.

use std::path::Path;

use ferromq_config::{Config, ConfigError, UsersFile};

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

/// Parses `text` as `bad.toml`, expects an error about `key`, returns it.
fn rejects(text: &str, key: &str) -> ConfigError {
    let error = match Config::from_toml_str(text, Path::new("bad.toml")) {
        Ok(config) => panic!("the configuration should be refused, got {config:?}"),
        Err(error) => error,
    };
    assert_eq!(error.key, key, "{error}");
    assert_eq!(error.file, Path::new("bad.toml"));
    println!("{error}");
    let prefix = format!("bad.toml:{key}: ");
    assert!(error.to_string().starts_with(&prefix), "{error}");
    error
}

fn assert_reason(error: &ConfigError, needle: &str) {
    assert!(error.reason.contains(needle), "`{needle}` not in: {error}");
}

#[test]
fn frame_size_below_one_kib() {
    let e = rejects("[stomp]\nmax_frame_size = 512\n", "stomp.max_frame_size");
    assert_reason(&e, "at least 1024 bytes");
    rejects(
        "[native]\nmax_frame_size = \"1000B\"\n",
        "native.max_frame_size",
    );
}

#[test]
fn heartbeat_grace_below_one() {
    let e = rejects("[stomp]\nheartbeat_grace = 0.5\n", "stomp.heartbeat_grace");
    assert_reason(&e, "at least 1.0");
    rejects("[stomp]\nheartbeat_grace = nan\n", "stomp.heartbeat_grace");
}

#[test]
fn listen_that_is_not_an_address() {
    let e = rejects("[stomp]\nlisten = \"localhost\"\n", "stomp.listen");
    assert_reason(&e, "`localhost` is not a socket address");
    rejects(
        "[native]\ntls_listen = \"1.2.3.4:99999\"\n",
        "native.tls_listen",
    );
}

#[test]
fn two_listeners_on_one_address() {
    let e = rejects("[native]\nlisten = \"127.0.0.1:61613\"\n", "native.listen");
    assert_reason(&e, "already used by stomp.listen");
}

#[test]
fn websocket_listeners_are_checked_like_the_others() {
    let e = rejects(
        "[websocket]\nlisten = \"ws://localhost\"\n",
        "websocket.listen",
    );
    assert_reason(&e, "`ws://localhost` is not a socket address");
    let e = rejects(
        "[websocket]\ntls_listen = \"127.0.0.1:61613\"\n",
        "websocket.tls_listen",
    );
    assert_reason(&e, "already used by stomp.listen");
    let e = rejects("[native]\nlisten = \"127.0.0.1:15674\"\n", "native.listen");
    assert_reason(&e, "already used by websocket.listen");
    rejects("[websocket]\npath = \"/ws\"\n", "websocket.path");
    let off = "[websocket]\nlisten = \"\"\ntls_listen = \"\"\n";
    let c = Config::from_toml_str(off, Path::new("ok.toml")).unwrap();
    assert_eq!(c.websocket.listen_addr(), None);
    assert_eq!(c.websocket.tls_listen_addr(), None);
}

#[test]
fn port_zero_may_be_shared() {
    let text = "[stomp]\nlisten = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:0\"\n\
                [native]\nlisten = \"127.0.0.1:0\"\n";
    Config::from_toml_str(text, Path::new("ok.toml")).unwrap();
}

#[test]
fn unknown_key_in_a_table() {
    let e = rejects(
        "[stomp]\nlisten = \"127.0.0.1:1\"\nmax_frame = 1\n",
        "stomp.max_frame",
    );
    assert_reason(&e, "unknown key `max_frame`");
    assert_reason(&e, "max_frame_size");
    assert_reason(&e, "line 3, column 1");
}

#[test]
fn unknown_table() {
    let e = rejects("[brokers]\nname = \"x\"\n", "brokers");
    assert_reason(&e, "unknown key `brokers`");
    assert_reason(&e, "destinations");
}

#[test]
fn unknown_key_in_an_array_entry() {
    let text = format!(
        "[[auth.users]]\nname = \"a\"\npassword_hash = \"{HASH}\"\n\n\
         [[auth.users]]\nname = \"b\"\npasword_hash = \"{HASH}\"\n"
    );
    let e = rejects(&text, "auth.users[1].pasword_hash");
    assert_reason(&e, "line 7");
}

#[test]
fn wrong_type() {
    let e = rejects(
        "[limits]\nmax_connections = \"many\"\n",
        "limits.max_connections",
    );
    assert_reason(&e, "invalid type");
    assert_reason(&e, "line 2");
    rejects("[admin]\nallow_remote = \"yes\"\n", "admin.allow_remote");
    let e = rejects("stomp = 5\n", "stomp");
    assert_reason(&e, "expected a table");
}

#[test]
fn negative_count() {
    rejects(
        "[limits]\nmax_destinations = -1\n",
        "limits.max_destinations",
    );
}

#[test]
fn bad_byte_size_string() {
    let e = rejects(
        "[destinations]\nmemory_limit = \"64 megs\"\n",
        "destinations.memory_limit",
    );
    assert_reason(&e, "unknown size unit `megs`");
    rejects("[store]\ndisk_limit = \"lots\"\n", "store.disk_limit");
    rejects("[store]\ndisk_limit = -5\n", "store.disk_limit");
    rejects(
        "[store]\ncompact_threshold = \"1KiB\"\n",
        "store.compact_threshold",
    );
    let e = rejects(
        "[store]\nbody_inline_max = \"2MiB\"\n",
        "store.body_inline_max",
    );
    assert_reason(&e, "must be at most 1MiB");
    let e = rejects(
        "[store]\ncheckpoint_every = \"1MiB\"\n",
        "store.checkpoint_every",
    );
    assert_reason(&e, "at least 16777216 bytes");
    rejects(
        "[store]\ncheckpoint_every = \"often\"\n",
        "store.checkpoint_every",
    );
}

#[test]
fn bad_duration_string() {
    let e = rejects(
        "[broker]\nshutdown_timeout = \"5 sec\"\n",
        "broker.shutdown_timeout",
    );
    assert_reason(&e, "unknown duration unit `sec`");
}

#[test]
fn tls_cert_without_key() {
    let e = rejects("[tls]\ncert = \"/etc/ferromq/server.pem\"\n", "tls.key");
    assert_reason(&e, "tls.cert");
    rejects("[tls]\nkey = \"/etc/ferromq/server.key\"\n", "tls.cert");
}

#[test]
fn client_auth_without_ca() {
    let text = "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_auth = \"optional\"\n";
    rejects(text, "tls.client_ca");
    rejects("[tls]\nclient_auth = \"sometimes\"\n", "tls.client_auth");
}

#[test]
fn admin_on_a_public_address_needs_allow_remote() {
    let e = rejects("[admin]\nlisten = \"0.0.0.0:8161\"\n", "admin.listen");
    assert_reason(&e, "allow_remote");
    let allowed = "[admin]\nlisten = \"0.0.0.0:8161\"\nallow_remote = true\n";
    Config::from_toml_str(allowed, Path::new("ok.toml")).unwrap();
    Config::from_toml_str("[admin]\nlisten = \"[::1]:8161\"\n", Path::new("ok.toml")).unwrap();
}

#[test]
fn plaintext_password() {
    let text = format!(
        "[[auth.users]]\nname = \"a\"\npassword_hash = \"{HASH}\"\n\n\
         [[auth.users]]\nname = \"b\"\npassword_hash = \"hunter2\"\n"
    );
    let e = rejects(&text, "auth.users[1].password_hash");
    assert_eq!(
        e.reason,
        "plaintext passwords are not accepted: store a hash made by `ferromq passwd`"
    );
}

#[test]
fn duplicate_user() {
    let text = format!(
        "[[auth.users]]\nname = \"a\"\npassword_hash = \"{HASH}\"\n\n\
         [[auth.users]]\nname = \"a\"\npassword_hash = \"{HASH}\"\n"
    );
    let e = rejects(&text, "auth.users[1].name");
    assert_reason(&e, "defined twice");
}

#[test]
fn no_anonymous_and_no_users() {
    rejects("[auth]\nanonymous = false\n", "auth.anonymous");
}

#[test]
fn bad_acl_pattern() {
    let text = "[[acl]]\ndestination = \"/queue/a.>\"\n\n\
                [[acl]]\ndestination = \"orders.*\"\nread = [\"*\"]\n";
    let e = rejects(text, "acl[1].destination");
    assert_reason(&e, "must start with /queue/");
    rejects(
        "[[acl]]\ndestination = \"/topic/a.>.b\"\n",
        "acl[0].destination",
    );
    rejects(
        "[[acl]]\ndestination = \"/topic/a\"\nwrite = [\"group:\"]\n",
        "acl[0].write[0]",
    );
}

#[test]
fn zero_prefetch() {
    let e = rejects(
        "[destinations]\nqueue_prefetch = 0\n",
        "destinations.queue_prefetch",
    );
    assert_reason(&e, "greater than 0");
    rejects(
        "[destinations]\ntopic_prefetch = 0\n",
        "destinations.topic_prefetch",
    );
}

#[test]
fn queue_window_out_of_range() {
    let e = rejects(
        "[destinations]\nqueue_window = 0\n",
        "destinations.queue_window",
    );
    assert_reason(&e, "greater than 0");
    let e = rejects(
        "[destinations]\nqueue_window = 2000000\n",
        "destinations.queue_window",
    );
    assert_reason(&e, "more than 1000000");
}

#[test]
fn unknown_enum_value() {
    let e = rejects("[store]\nsync = \"sometimes\"\n", "store.sync");
    assert_reason(&e, "unknown variant `sometimes`");
    assert_reason(&e, "`always`");
    rejects("[log]\nformat = \"xml\"\n", "log.format");
    rejects("[destinations]\nnack = \"drop\"\n", "destinations.nack");
}

#[test]
fn bad_log_level() {
    let e = rejects("[log]\nlevel = \"loud\"\n", "log.level");
    assert_reason(&e, "`loud`");
    rejects("[log]\nlevel = \"info,ferromq=shouty\"\n", "log.level");
    rejects("[log]\nlevel = \"\"\n", "log.level");
    Config::from_toml_str("[log]\nlevel = \"DEBUG,sled=off\"\n", Path::new("ok.toml")).unwrap();
}

#[test]
fn syntax_error_names_the_line_and_key() {
    let e = rejects(
        "[stomp]\nlisten = \"127.0.0.1:61613\"\nmax_headers = = 3\n",
        "stomp.max_headers",
    );
    assert_reason(&e, "line 3");
    let e = rejects("[stomp\nlisten = 1\n", "stomp");
    assert_reason(&e, "line 1");
}

#[test]
fn duplicate_key_is_a_syntax_error() {
    rejects("[broker]\nname = \"a\"\nname = \"b\"\n", "broker.name");
}

#[test]
fn users_file_is_validated_too() {
    let text = "[[users]]\nname = \"a\"\npassword_hash = \"secret\"\n";
    let e = UsersFile::from_toml_str(text, Path::new("users.toml")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "users.toml:users[0].password_hash: plaintext passwords are not accepted: \
         store a hash made by `ferromq passwd`"
    );
    let ok = format!("[[users]]\nname = \"a\"\npassword_hash = \"{HASH}\"\ngroups = [\"g\"]\n");
    let file = UsersFile::from_toml_str(&ok, Path::new("users.toml")).unwrap();
    assert_eq!(file.users[0].groups, vec!["g".to_owned()]);
}

#[test]
fn validate_checks_configs_built_in_code() {
    let mut config = Config::default();
    config.store.memory_limit = ferromq_config::ByteSize(10);
    let e = config.validate(Path::new("code")).unwrap_err();
    assert_eq!(e.key, "store.memory_limit");
    config = Config::default();
    config.stomp.listen = Some(String::new());
    config.validate(Path::new("code")).unwrap();
    assert_eq!(config.stomp.listen_addr(), None);
}

#[test]
fn errors_inside_inline_tables_and_dotted_keys_name_the_key() {
    rejects("stomp = { max_headers = \"x\" }\n", "stomp.max_headers");
    rejects("stomp.max_headers = \"x\"\n", "stomp.max_headers");
    rejects(
        "[[acl]]\ndestination = \"/queue/a\"\nread = \"x\"\n",
        "acl[0].read",
    );
    rejects(
        "[[acl]]\ndestination = \"/queue/a\"\nread = [\"a\", 5]\n",
        "acl[0].read[1]",
    );
}
