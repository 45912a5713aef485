//! ferromq's configuration: the schema of `ferromq.toml`, its compiled-in
//! defaults, loading and validation.
//!
//! Every table is `#[serde(default, deny_unknown_fields)]`: a key left out
//! takes its default, a misspelt key is an error (never silently ignored).
//! Every error is a [`ConfigError`] naming the file and the dotted key.
//! `config/ferromq.toml` documents every key and is tested to parse to
//! exactly [`Config::default()`].

#![deny(missing_docs)]

mod access;
mod cluster;
mod error;
mod policy;
mod server;
mod units;
mod validate;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use access::{AclRule, AuthConfig, User, UsersFile};
pub use cluster::{address_host, ClusterConfig, ClusterMember, PeerTlsFiles};
pub use error::ConfigError;
pub use policy::{
    DestinationsConfig, DurableSubscriptionPolicy, LimitsConfig, LogConfig, LogFormat, NackPolicy,
    StoreConfig, StoreSync,
};
pub use server::{
    AdminConfig, BrokerConfig, ClientAuth, NativeConfig, StompConfig, TlsConfig, WebSocketConfig,
};
pub use units::{ByteSize, Millis};

/// The documented example configuration (`config/ferromq.toml`); it holds
/// exactly the defaults, with a comment on every key.
pub const EXAMPLE_CONFIG: &str = include_str!("../ferromq.toml");

/// The whole configuration file.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[broker]`
    pub broker: BrokerConfig,
    /// `[stomp]`
    pub stomp: StompConfig,
    /// `[websocket]`
    pub websocket: WebSocketConfig,
    /// `[native]`
    pub native: NativeConfig,
    /// `[tls]`
    pub tls: TlsConfig,
    /// `[admin]`
    pub admin: AdminConfig,
    /// `[limits]`
    pub limits: LimitsConfig,
    /// `[destinations]`
    pub destinations: DestinationsConfig,
    /// `[store]`
    pub store: StoreConfig,
    /// `[log]`
    pub log: LogConfig,
    /// `[auth]`
    pub auth: AuthConfig,
    /// `[[acl]]` rules, in file order.
    pub acl: Vec<AclRule>,
    /// `[cluster]`; absent = a single node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    /// Parses and validates `text`; `origin` is the file name used in errors.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(origin, text, &e))?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_file(path)?;
        Self::from_toml_str(&text, path)
    }

    /// Checks every cross-field and range rule; `origin` is the file name
    /// used in errors. Returns the first problem found.
    pub fn validate(&self, origin: &Path) -> Result<(), ConfigError> {
        validate::config(self, origin)
    }

    /// Problems that do not stop the broker but deserve a log line (an even
    /// number of cluster members), phrased like errors: file, key, reason.
    pub fn warnings(&self, origin: &Path) -> Vec<ConfigError> {
        validate::warnings(self, origin)
    }

    /// The configuration as TOML (for `ferromq --print-default-config`);
    /// parsing the output gives back an equal `Config`.
    pub fn to_toml(&self) -> String {
        // Serializing these plain structs cannot fail: every map key is a
        // string and every path came from a UTF-8 file. Fall back to an
        // explanatory comment rather than panicking if that ever changes.
        toml::to_string(self)
            .unwrap_or_else(|e| format!("# cannot render the configuration as TOML: {e}\n"))
    }
}

impl UsersFile {
    /// Reads, parses and validates a users file (`auth.users_file`).
    pub fn load(path: &Path) -> Result<UsersFile, ConfigError> {
        let text = read_file(path)?;
        Self::from_toml_str(&text, path)
    }

    /// Parses and validates `text`; `origin` is the file name used in errors.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<UsersFile, ConfigError> {
        let file: UsersFile =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(origin, text, &e))?;
        validate::users(&file.users, "users", origin)?;
        Ok(file)
    }
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path, error::WHOLE_FILE, format!("cannot read: {e}")))
}
