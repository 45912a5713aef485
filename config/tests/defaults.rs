//! The example file and `--print-default-config` output agree with the
//! compiled-in defaults (TiKV's test-default.toml idea).

use std::path::Path;

use ferromq_config::{Config, EXAMPLE_CONFIG};

#[test]
fn example_file_is_exactly_the_defaults() {
    let parsed = Config::from_toml_str(EXAMPLE_CONFIG, Path::new("ferromq.toml")).unwrap();
    assert_eq!(parsed, Config::default());
}

#[test]
fn empty_file_is_the_defaults() {
    let parsed = Config::from_toml_str("", Path::new("empty.toml")).unwrap();
    assert_eq!(parsed, Config::default());
}

#[test]
fn defaults_are_valid() {
    Config::default().validate(Path::new("defaults")).unwrap();
}

#[test]
fn printed_defaults_parse_back_to_the_defaults() {
    let printed = Config::default().to_toml();
    let parsed = Config::from_toml_str(&printed, Path::new("printed.toml")).unwrap();
    assert_eq!(parsed, Config::default(), "printed:\n{printed}");
}

#[test]
fn load_reads_the_example_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ferromq.toml");
    assert_eq!(Config::load(&path).unwrap(), Config::default());
}

#[test]
fn load_names_a_missing_file() {
    let path = Path::new("/nonexistent/ferromq-test/ferromq.toml");
    let error = Config::load(path).unwrap_err();
    assert_eq!(error.file, path);
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/ferromq-test/ferromq.toml:"),
        "{error}"
    );
    assert!(error.reason.contains("cannot read"), "{error}");
}

#[test]
fn default_listen_addresses_parse() {
    let config = Config::default();
    assert_eq!(
        config.stomp.listen_addr(),
        Some("127.0.0.1:61613".parse().unwrap())
    );
    assert_eq!(
        config.websocket.listen_addr(),
        Some("127.0.0.1:15674".parse().unwrap())
    );
    assert_eq!(
        config.websocket.tls_listen_addr(),
        Some("127.0.0.1:15673".parse().unwrap())
    );
    assert_eq!(
        config.native.tls_listen_addr(),
        Some("127.0.0.1:61621".parse().unwrap())
    );
    assert_eq!(
        config.admin.listen_addr(),
        Some("127.0.0.1:8161".parse().unwrap())
    );
    assert!(!config.tls.enabled());
}

/// Key paths of every table and key in `table`, e.g. `stomp.listen`.
fn key_paths(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in table {
        let path = format!("{prefix}{key}");
        if let toml::Value::Table(inner) = value {
            key_paths(inner, &format!("{path}."), out);
        }
        out.push(path);
    }
}

#[test]
fn example_file_spells_out_every_key() {
    let example: toml::Table = toml::from_str(EXAMPLE_CONFIG).unwrap();
    let printed: toml::Table = toml::from_str(&Config::default().to_toml()).unwrap();
    let (mut in_example, mut in_schema) = (Vec::new(), Vec::new());
    key_paths(&example, "", &mut in_example);
    key_paths(&printed, "", &mut in_schema);
    // `[[acl]]` must follow every other table, so the example shows it in a
    // comment instead of as `acl = []`.
    in_schema.retain(|key| key != "acl");
    in_example.sort();
    in_schema.sort();
    assert_eq!(in_example, in_schema);
}

#[test]
fn every_key_in_the_example_has_a_comment() {
    let mut previous = "";
    for (number, line) in EXAMPLE_CONFIG.lines().enumerate() {
        let line = line.trim();
        let is_key = !line.is_empty() && !line.starts_with('#') && !line.starts_with('[');
        if is_key {
            assert!(
                previous.starts_with('#') || previous.ends_with(','),
                "line {}: `{line}` has no comment above it",
                number + 1
            );
        }
        if !line.is_empty() {
            previous = line;
        }
    }
}
