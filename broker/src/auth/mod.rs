//! Who a client is and what it may do: the user list (inline `[auth]`
//! users plus `auth.users_file`), password and certificate authentication,
//! and the `[[acl]]` rules. One [`Authenticator`] is shared by every
//! listener; SIGHUP swaps its [`AccessPolicy`] without touching
//! connections, which keep the identity they authenticated with.
//!
//! - [`password`]: Argon2 PHC hashing and verification.
//! - [`acl`]: rule matching and the read/write/admin decision.
//! - [`verified`]: admin credentials verified recently (a keyed-hash
//!   memory that spares the console's polling an Argon2 per request).

pub mod acl;
pub mod password;
pub mod verified;

pub use acl::{Acl, Denied, Permission};

use crate::router::{Address, ConnectionId, Router};
use ferromq_config::{Config, UsersFile};
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use thiserror::Error;
use tokio::sync::Semaphore;

/// The principal name of a client admitted without credentials.
pub const ANONYMOUS: &str = "anonymous";

/// Group whose members may use the admin HTTP endpoint.
pub const ADMIN_GROUP: &str = "admins";

/// Group whose members may use the admin endpoint's read-only routes
/// (GET/HEAD: metrics, listings, browsing), but change nothing.
pub const MONITORING_GROUP: &str = "monitoring";

/// An authenticated identity, kept by the session for its whole life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User name (or [`ANONYMOUS`]).
    pub name: Arc<str>,
    /// Groups, matched by ACL `group:NAME` entries.
    pub groups: Vec<Arc<str>>,
    /// Admitted without credentials.
    pub anonymous: bool,
}

impl Principal {
    fn anonymous() -> Principal {
        Principal {
            name: ANONYMOUS.into(),
            groups: Vec::new(),
            anonymous: true,
        }
    }

    /// Whether the principal is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| &**g == group)
    }
}

/// Why the user list could not be loaded.
#[derive(Debug, Error)]
pub enum AuthLoadError {
    /// `auth.users_file` is unreadable or invalid (the message names it).
    #[error("{0}")]
    UsersFile(#[from] ferromq_config::ConfigError),
    /// A user is defined in both places.
    #[error("{file}: user `{user}` is also defined in auth.users")]
    Duplicate {
        /// The users file.
        file: PathBuf,
        /// The user.
        user: String,
    },
    /// A password hash argon2 cannot use.
    #[error("user `{user}`: password_hash {reason}")]
    BadHash {
        /// The user.
        user: String,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Debug, Clone)]
struct UserRecord {
    password_hash: String,
    groups: Vec<Arc<str>>,
}

/// One consistent view of users and rules; replaced whole on reload.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    users: HashMap<String, UserRecord>,
    /// Anonymous access: `auth.anonymous` and no users configured.
    anonymous: bool,
    acl: Acl,
}

impl AccessPolicy {
    /// Builds the policy from a validated config, reading `auth.users_file`.
    pub fn load(config: &Config) -> Result<AccessPolicy, AuthLoadError> {
        let mut users = HashMap::new();
        for u in &config.auth.users {
            users.insert(u.name.clone(), u.clone());
        }
        if let Some(path) = &config.auth.users_file {
            for u in UsersFile::load(path)?.users {
                if users.contains_key(&u.name) {
                    return Err(AuthLoadError::Duplicate {
                        file: path.clone(),
                        user: u.name,
                    });
                }
                users.insert(u.name.clone(), u);
            }
        }
        let mut records = HashMap::with_capacity(users.len());
        for (name, u) in users {
            password::check_format(&u.password_hash).map_err(|reason| AuthLoadError::BadHash {
                user: name.clone(),
                reason,
            })?;
            records.insert(
                name,
                UserRecord {
                    password_hash: u.password_hash,
                    groups: u.groups.iter().map(|g| Arc::from(g.as_str())).collect(),
                },
            );
        }
        Ok(AccessPolicy {
            anonymous: config.auth.anonymous && records.is_empty(),
            users: records,
            acl: Acl::new(&config.acl),
        })
    }

    /// Number of configured users.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Whether clients without credentials are admitted.
    pub fn anonymous(&self) -> bool {
        self.anonymous
    }

    /// Number of ACL rules.
    pub fn acl(&self) -> &Acl {
        &self.acl
    }

    fn principal(&self, name: &str) -> Option<Principal> {
        self.users.get(name).map(|u| Principal {
            name: name.into(),
            groups: u.groups.clone(),
            anonymous: false,
        })
    }
}

/// What a client presented.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// STOMP `login` / HTTP Basic user.
    pub login: Option<&'a str>,
    /// STOMP `passcode` / HTTP Basic password.
    pub passcode: Option<&'a str>,
    /// Common name of a verified TLS client certificate.
    pub certificate: Option<&'a str>,
}

/// Why authentication failed: for the log only; clients always get the
/// same "authentication failed".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credentials and anonymous access is off.
    NoCredentials,
    /// No such user.
    UnknownUser,
    /// The password does not match.
    WrongPassword,
    /// The certificate's common name is not a configured user.
    UnknownCertificateUser,
    /// Not a member of the required group (admin endpoint).
    NotAdmin,
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthFailure::NoCredentials => "no login given and anonymous access is off",
            AuthFailure::UnknownUser => "unknown user",
            AuthFailure::WrongPassword => "wrong password",
            AuthFailure::UnknownCertificateUser => {
                "the client certificate's common name is not a configured user"
            }
            AuthFailure::NotAdmin => {
                "user is not in a group allowed here (admins; monitoring for read-only requests)"
            }
        })
    }
}

/// Authenticates clients and authorizes their requests against the current
/// [`AccessPolicy`].
pub struct Authenticator {
    policy: RwLock<Arc<AccessPolicy>>,
    /// Verified for unknown users, so a wrong user name costs as much time
    /// as a wrong password and the timing tells nothing.
    dummy_hash: String,
    /// Bounds concurrent Argon2 computations (each takes ~19 MiB and a
    /// core for tens of milliseconds): a CONNECT flood waits here instead
    /// of exhausting memory and starving the runtime.
    hashing: Semaphore,
    /// Failed authentications, for metrics.
    failures: AtomicU64,
    /// Argon2 verifications run, for tests and metrics.
    verifications: AtomicU64,
    /// Admin credentials verified in the last minute; emptied by
    /// [`Authenticator::replace`].
    admin_verified: verified::Verified,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.policy();
        f.debug_struct("Authenticator")
            .field("users", &p.user_count())
            .field("anonymous", &p.anonymous)
            .finish()
    }
}

impl Authenticator {
    /// An authenticator enforcing `policy`.
    pub fn new(policy: AccessPolicy) -> Result<Authenticator, AuthLoadError> {
        let dummy_hash = password::hash("ferromq timing equalizer").map_err(|reason| {
            AuthLoadError::BadHash {
                user: "(dummy)".into(),
                reason,
            }
        })?;
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Authenticator {
            policy: RwLock::new(Arc::new(policy)),
            dummy_hash,
            hashing: Semaphore::new(parallel),
            failures: AtomicU64::new(0),
            verifications: AtomicU64::new(0),
            admin_verified: verified::Verified::new(),
        })
    }

    /// Admits everyone, allows everything (tests and embedded use).
    pub fn open() -> Result<Authenticator, AuthLoadError> {
        Authenticator::new(AccessPolicy {
            users: HashMap::new(),
            anonymous: true,
            acl: Acl::default(),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<AccessPolicy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the policy (SIGHUP). Sessions already authenticated keep
    /// their principal; new CONNECTs and every later ACL check use the new
    /// one.
    pub fn replace(&self, policy: AccessPolicy) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
        // After the swap (the order `authenticate_admin_in` relies on).
        self.admin_verified.clear();
    }

    /// Argon2 password verifications run since start.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Failed authentications since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Checks credentials. A login is checked against its password (even
    /// on a TLS connection with a client certificate); without a login the
    /// certificate's common name names the user; without either, the
    /// client is anonymous if that is allowed.
    pub async fn authenticate(
        &self,
        credentials: Credentials<'_>,
    ) -> Result<Principal, AuthFailure> {
        let result = self.check(credentials).await;
        if result.is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn check(&self, credentials: Credentials<'_>) -> Result<Principal, AuthFailure> {
        let policy = self.policy();
        let login = credentials.login.filter(|l| !l.is_empty());
        if policy.users.is_empty() && policy.anonymous {
            // No accounts exist: any login is taken as anonymous, so a
            // claimed name never picks up another principal's ACL grants.
            return Ok(Principal::anonymous());
        }
        let Some(login) = login else {
            return match credentials.certificate {
                Some(cn) => policy
                    .principal(cn)
                    .ok_or(AuthFailure::UnknownCertificateUser),
                None => Err(AuthFailure::NoCredentials),
            };
        };
        let known = policy.principal(login);
        let hash = policy
            .users
            .get(login)
            .map_or_else(|| self.dummy_hash.clone(), |u| u.password_hash.clone());
        let passcode = credentials.passcode.unwrap_or_default().to_owned();
        let matches = self.verify(passcode, hash).await;
        match known {
            Some(p) if matches => Ok(p),
            Some(_) => Err(AuthFailure::WrongPassword),
            None => Err(AuthFailure::UnknownUser),
        }
    }

    /// Runs one Argon2 verification off the async threads.
    async fn verify(&self, password: String, hash: String) -> bool {
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self.hashing.acquire().await;
        self.verifications.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || password::verify(&password, &hash))
            .await
            .unwrap_or(false)
    }

    /// Authenticates an admin endpoint request: open when no users are
    /// configured (the listener is loopback-only unless
    /// `admin.allow_remote`), else a user in group [`ADMIN_GROUP`].
    pub async fn authenticate_admin(
        &self,
        credentials: Credentials<'_>,
    ) -> Result<Principal, AuthFailure> {
        self.authenticate_admin_in(credentials, &[ADMIN_GROUP])
            .await
    }

    /// Like [`Authenticator::authenticate_admin`], admitting members of
    /// any of `groups`.
    pub async fn authenticate_admin_in(
        &self,
        credentials: Credentials<'_>,
        groups: &[&str],
    ) -> Result<Principal, AuthFailure> {
        let policy = self.policy();
        if policy.users.is_empty() {
            return Ok(Principal::anonymous());
        }
        let password = credentials
            .login
            .filter(|l| !l.is_empty())
            .zip(credentials.passcode);
        let remembered = password.and_then(|(u, p)| self.admin_verified.get(u, p));
        let from_memory = remembered.is_some();
        let principal = match remembered {
            Some(p) => p,
            None => self.authenticate(credentials).await?,
        };
        if groups.iter().any(|g| principal.in_group(g)) {
            // Ordering against `replace` (which swaps the list, then
            // clears): insert, then look at the list again. A reload that
            // swapped before this look is seen and undone here; one that
            // swaps after it clears after the insert. Either way a password
            // of the old list does not outlive the reload. A hit is not
            // re-inserted, so the TTL counts from the Argon2 verification.
            if let (Some((u, p)), false) = (password, from_memory) {
                self.admin_verified.insert(u, p, principal.clone());
                if !Arc::ptr_eq(&policy, &self.policy()) {
                    self.admin_verified.clear();
                }
            }
            Ok(principal)
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed);
            Err(AuthFailure::NotAdmin)
        }
    }

    /// Checks `permission` on `address` for `principal` on connection
    /// `conn`. Creating a destination that does not exist yet
    /// (`exists()` false) also needs [`Permission::Admin`].
    pub fn authorize(
        &self,
        principal: &Principal,
        permission: Permission,
        address: &Address,
        conn: ConnectionId,
        exists: impl FnOnce() -> bool,
    ) -> Result<(), Denied> {
        let policy = self.policy();
        let acl = &policy.acl;
        if acl.is_empty() {
            return Ok(());
        }
        let denied = |permission| Denied {
            user: principal.name.to_string(),
            destination: address
                .owner_name
                .as_deref()
                .unwrap_or(&address.name)
                .to_owned(),
            permission,
        };
        if !acl.allows(principal, permission, address, conn) {
            return Err(denied(permission));
        }
        if !exists() && !acl.allows(principal, Permission::Admin, address, conn) {
            return Err(denied(Permission::Admin));
        }
        Ok(())
    }

    /// [`Authenticator::authorize`] for a client's SEND, SUBSCRIBE or link
    /// attach, the one check both protocols' sessions make: whether the
    /// destination exists is the router's answer, and a refusal is logged
    /// (connection, peer, user, destination, permission) before the caller
    /// turns it into its protocol's error.
    pub fn authorize_client(
        &self,
        router: &Router,
        principal: &Principal,
        conn: ConnectionId,
        peer: &str,
        permission: Permission,
        address: &Address,
    ) -> Result<(), Denied> {
        self.authorize(principal, permission, address, conn, || {
            router.contains(&address.name)
        })
        .inspect_err(|denied| {
            tracing::warn!(
                conn,
                peer = %peer,
                user = %principal.name,
                destination = %denied.destination,
                permission = denied.permission.key(),
                "access denied"
            );
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferromq_config::User;

    fn config(users: &[(&str, &str, &[&str])], anonymous: bool) -> Config {
        let mut c = Config::default();
        c.auth.anonymous = anonymous;
        c.auth.users = users
            .iter()
            .map(|(name, pw, groups)| User {
                name: name.to_string(),
                password_hash: password::hash(pw).unwrap(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            })
            .collect();
        c
    }

    fn creds<'a>(login: Option<&'a str>, passcode: Option<&'a str>) -> Credentials<'a> {
        Credentials {
            login,
            passcode,
            certificate: None,
        }
    }

    #[tokio::test]
    async fn passwords_users_and_anonymous() {
        let auth = Authenticator::new(
            AccessPolicy::load(&config(&[("app", "pw", &["g"])], true)).unwrap(),
        )
        .unwrap();
        let ok = auth.authenticate(creds(Some("app"), Some("pw"))).await;
        assert_eq!(ok.unwrap().groups, vec![Arc::<str>::from("g")]);
        let wrong = auth.authenticate(creds(Some("app"), Some("nope"))).await;
        assert_eq!(wrong, Err(AuthFailure::WrongPassword));
        let unknown = auth.authenticate(creds(Some("eve"), Some("pw"))).await;
        assert_eq!(unknown, Err(AuthFailure::UnknownUser));
        // Users exist, so anonymous = true is ignored.
        let anon = auth.authenticate(creds(None, None)).await;
        assert_eq!(anon, Err(AuthFailure::NoCredentials));
        assert_eq!(auth.failures(), 3);
    }

    #[tokio::test]
    async fn no_users_means_anonymous_whatever_the_login() {
        let auth = Authenticator::new(AccessPolicy::load(&config(&[], true)).unwrap()).unwrap();
        let p = auth
            .authenticate(creds(Some("admin"), Some("x")))
            .await
            .unwrap();
        assert!(p.anonymous);
        assert_eq!(&*p.name, ANONYMOUS);
    }

    #[tokio::test]
    async fn certificate_common_name_maps_to_a_user() {
        let auth =
            Authenticator::new(AccessPolicy::load(&config(&[("svc", "pw", &[])], false)).unwrap())
                .unwrap();
        let by_cert = Credentials {
            certificate: Some("svc"),
            ..Default::default()
        };
        assert_eq!(&*auth.authenticate(by_cert).await.unwrap().name, "svc");
        let stranger = Credentials {
            certificate: Some("mallory"),
            ..Default::default()
        };
        assert_eq!(
            auth.authenticate(stranger).await,
            Err(AuthFailure::UnknownCertificateUser)
        );
    }

    #[test]
    fn malformed_hash_is_refused_at_load() {
        let mut c = config(&[], true);
        c.auth.users.push(User {
            name: "x".into(),
            password_hash: "$argon2id$broken".into(),
            groups: vec![],
        });
        let e = AccessPolicy::load(&c).unwrap_err();
        assert!(e.to_string().contains("user `x`"), "{e}");
    }

    #[tokio::test]
    async fn admin_credentials_are_verified_once_until_a_reload() {
        let admins: &[&str] = &[ADMIN_GROUP];
        let auth = Authenticator::new(
            AccessPolicy::load(&config(
                &[("root", "old", admins), ("app", "pw", &[])],
                false,
            ))
            .unwrap(),
        )
        .unwrap();
        for _ in 0..5 {
            let p = auth
                .authenticate_admin_in(creds(Some("root"), Some("old")), admins)
                .await
                .unwrap();
            assert_eq!(&*p.name, "root");
        }
        assert_eq!(auth.verifications(), 1, "later requests come from memory");
        // A wrong password is never served from memory.
        assert!(auth
            .authenticate_admin_in(creds(Some("root"), Some("olD")), admins)
            .await
            .is_err());
        assert_eq!(auth.verifications(), 2);
        // A user outside the groups is not remembered.
        for _ in 0..2 {
            assert_eq!(
                auth.authenticate_admin_in(creds(Some("app"), Some("pw")), admins)
                    .await,
                Err(AuthFailure::NotAdmin)
            );
        }
        assert_eq!(auth.verifications(), 4);
        // The password changes (SIGHUP): the old one stops working at once.
        auth.replace(AccessPolicy::load(&config(&[("root", "new", admins)], false)).unwrap());
        assert_eq!(
            auth.authenticate_admin_in(creds(Some("root"), Some("old")), admins)
                .await,
            Err(AuthFailure::WrongPassword)
        );
        assert!(auth
            .authenticate_admin_in(creds(Some("root"), Some("new")), admins)
            .await
            .is_ok());
    }
}
