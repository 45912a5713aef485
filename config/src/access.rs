//! Schema of who may connect and what they may do: `[auth]` with its users
//! and the `[[acl]]` rules.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::units::empty_as_none;

/// `[auth]`: authentication.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `true`: clients without credentials connect as the anonymous user.
    pub anonymous: bool,
    /// Optional TOML file holding more `[[users]]` (see [`UsersFile`]).
    #[serde(with = "empty_as_none")]
    pub users_file: Option<PathBuf>,
    /// Users defined inline.
    pub users: Vec<User>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            anonymous: true,
            users_file: None,
            users: Vec::new(),
        }
    }
}

/// One user account.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct User {
    /// Login name (STOMP `login` header).
    pub name: String,
    /// PHC-format Argon2 hash made by `ferromq passwd`; plaintext is refused.
    pub password_hash: String,
    /// Groups the user belongs to, referenced by ACL entries as `group:NAME`.
    pub groups: Vec<String>,
}

/// The content of `auth.users_file`: `[[users]]` entries only.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsersFile {
    /// The users.
    pub users: Vec<User>,
}

/// One `[[acl]]` rule: who may do what on destinations matching a pattern.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AclRule {
    /// Destination pattern, e.g. `/queue/orders.>`: `.`-separated elements,
    /// `*` matches one element and `>` the rest.
    pub destination: String,
    /// Principals that may subscribe/browse.
    pub read: Vec<String>,
    /// Principals that may send.
    pub write: Vec<String>,
    /// Principals that may create/delete the destination.
    pub admin: Vec<String>,
}
