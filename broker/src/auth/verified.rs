//! A short-lived memory of admin credentials that passed Argon2, so the web
//! console (which polls every 2-3 s with HTTP Basic credentials) does not pay
//! an Argon2 verification (tens of milliseconds and ~19 MiB) per request.
//!
//! What is kept never reveals a password: per user, an HMAC-SHA256 tag of
//! `user NUL password` under a key drawn at random when the process starts
//! (never stored, never logged), with the principal it authenticated and the
//! time it was verified. A request is admitted from memory only when its
//! credentials give the same tag, compared in constant time
//! (`ring::hmac::verify`), within [`TTL`] of the verification. A wrong
//! password misses and goes to Argon2 as before. The memory is bounded
//! ([`CAPACITY`] users) and emptied whenever the user list is reloaded
//! (SIGHUP), so a changed or removed password stops working at once.

use super::Principal;
use ring::hmac;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a verification is remembered.
pub const TTL: Duration = Duration::from_secs(60);

/// Most users remembered at once (admin users are few; a flood of distinct
/// names only evicts, never grows it).
pub const CAPACITY: usize = 64;

struct Entry {
    tag: hmac::Tag,
    principal: Principal,
    verified_at: Instant,
}

/// Credentials verified recently, keyed by user name.
pub struct Verified {
    key: Option<hmac::Key>,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Verified {
    /// An empty memory with a fresh random key. Without a system random
    /// source it remembers nothing (every request pays Argon2).
    pub fn new() -> Verified {
        let rng = ring::rand::SystemRandom::new();
        Verified {
            key: hmac::Key::generate(hmac::HMAC_SHA256, &rng).ok(),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn message(user: &str, password: &str) -> Vec<u8> {
        let mut m = Vec::with_capacity(user.len() + 1 + password.len());
        m.extend_from_slice(user.as_bytes());
        m.push(0); // user names cannot hold NUL, so the split is unambiguous
        m.extend_from_slice(password.as_bytes());
        m
    }

    /// The principal `user` authenticated as with this very `password`
    /// within [`TTL`], if any.
    pub fn get(&self, user: &str, password: &str) -> Option<Principal> {
        let key = self.key.as_ref()?;
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let e = entries.get(user)?;
        if e.verified_at.elapsed() >= TTL {
            return None;
        }
        hmac::verify(key, &Verified::message(user, password), e.tag.as_ref()).ok()?;
        Some(e.principal.clone())
    }

    /// Remembers that `user`/`password` authenticated as `principal`.
    pub fn insert(&self, user: &str, password: &str, principal: Principal) {
        let Some(key) = &self.key else { return };
        let tag = hmac::sign(key, &Verified::message(user, password));
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CAPACITY && !entries.contains_key(user) {
            entries.retain(|_, e| e.verified_at.elapsed() < TTL);
            if entries.len() >= CAPACITY {
                // Still full of live entries: start over rather than track
                // ages; the cost is one Argon2 per user.
                entries.clear();
            }
        }
        entries.insert(
            user.to_owned(),
            Entry {
                tag,
                principal,
                verified_at: Instant::now(),
            },
        );
    }

    /// Forgets everything (the user list changed).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Users remembered now.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether nobody is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Verified {
    fn default() -> Verified {
        Verified::new()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn principal(name: &str) -> Principal {
        Principal {
            name: name.into(),
            groups: vec!["admins".into()],
            anonymous: false,
        }
    }

    #[test]
    fn only_the_same_password_hits_and_clear_forgets() {
        let v = Verified::new();
        assert_eq!(v.get("root", "pw"), None);
        v.insert("root", "pw", principal("root"));
        assert_eq!(v.get("root", "pw"), Some(principal("root")));
        assert_eq!(v.get("root", "pw2"), None);
        assert_eq!(v.get("root", "p"), None);
        assert_eq!(v.get("roo", "tpw"), None);
        v.clear();
        assert_eq!(v.get("root", "pw"), None);
    }

    #[test]
    fn it_stays_bounded() {
        let v = Verified::new();
        for i in 0..(CAPACITY * 3) {
            v.insert(&format!("u{i}"), "pw", principal("u"));
            assert!(v.len() <= CAPACITY);
        }
        assert!(!v.is_empty());
    }
}
