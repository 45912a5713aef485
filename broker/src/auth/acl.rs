//! Authorization: the `[[acl]]` rules compiled for matching, and the
//! decision whether a principal may read, write or create a destination.
//!
//! Rules follow ActiveMQ's authorization map: a destination pattern made of
//! `.`-separated elements where `*` matches one element and `>` one or more
//! trailing ones, each with principal lists for `read`, `write` and `admin`.
//! Every rule whose pattern matches contributes (the grants are a union, as
//! in ActiveMQ); a destination no rule matches is denied. With no rules at
//! all, everything is allowed.

use super::Principal;
use crate::router::{Address, ConnectionId, DestinationKind};
use ferromq_config::AclRule;
use std::fmt;

/// What a client wants to do with a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// SUBSCRIBE (including browsing).
    Read,
    /// SEND.
    Write,
    /// Create a destination that does not exist yet.
    Admin,
}

impl Permission {
    /// The key of the `[[acl]]` list that grants it.
    pub fn key(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
        }
    }

    /// The verb used in denial messages.
    fn verb(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "create",
        }
    }
}

/// A refused access: displays as the ERROR message the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// The principal's name.
    pub user: String,
    /// The destination as the client named it.
    pub destination: String,
    /// The permission it lacks.
    pub permission: Permission,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "user '{}' is not authorized to {} {} (missing '{}' permission)",
            self.user,
            self.permission.verb(),
            self.destination,
            self.permission.key()
        )
    }
}

/// Who an ACL list names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Grantee {
    User(String),
    Group(String),
    Everyone,
}

impl Grantee {
    fn parse(text: &str) -> Grantee {
        match text {
            "*" => Grantee::Everyone,
            _ => match text.strip_prefix("group:") {
                Some(group) => Grantee::Group(group.to_owned()),
                None => Grantee::User(text.to_owned()),
            },
        }
    }

    fn includes(&self, principal: &Principal) -> bool {
        match self {
            Grantee::Everyone => true,
            Grantee::User(name) => *principal.name == **name,
            Grantee::Group(group) => principal.groups.iter().any(|g| **g == **group),
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    /// `/queue/`, `/topic/`, `/temp-queue/` or `/temp-topic/`.
    prefix: String,
    elements: Vec<String>,
    read: Vec<Grantee>,
    write: Vec<Grantee>,
    admin: Vec<Grantee>,
}

impl Rule {
    fn grantees(&self, permission: Permission) -> &[Grantee] {
        match permission {
            Permission::Read => &self.read,
            Permission::Write => &self.write,
            Permission::Admin => &self.admin,
        }
    }
}

/// The compiled `[[acl]]` rules.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    rules: Vec<Rule>,
    /// Some rule is about `/temp-queue/` or `/temp-topic/`: other
    /// connections' access to temporary destinations is then governed by
    /// the rules instead of the default (write allowed, read denied).
    has_temp_rules: bool,
}

const PREFIXES: [&str; 4] = ["/queue/", "/topic/", "/temp-queue/", "/temp-topic/"];

impl Acl {
    /// Compiles rules the config crate has validated. A pattern without a
    /// known prefix (impossible after validation) matches nothing.
    pub fn new(rules: &[AclRule]) -> Acl {
        let rules: Vec<Rule> = rules
            .iter()
            .filter_map(|r| {
                let prefix = PREFIXES.iter().find(|p| r.destination.starts_with(**p))?;
                let rest = &r.destination[prefix.len()..];
                let list = |v: &[String]| v.iter().map(|p| Grantee::parse(p)).collect();
                Some(Rule {
                    prefix: (*prefix).to_owned(),
                    elements: rest.split('.').map(str::to_owned).collect(),
                    read: list(&r.read),
                    write: list(&r.write),
                    admin: list(&r.admin),
                })
            })
            .collect();
        Acl {
            has_temp_rules: rules.iter().any(|r| r.prefix.starts_with("/temp-")),
            rules,
        }
    }

    /// Whether any rule is configured (no rules: everything is allowed).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Decides whether `principal`, on connection `conn`, may do
    /// `permission` on `address`.
    ///
    /// Temporary destinations: their owner may always do everything (a
    /// client must be able to use its own reply queue). Other connections
    /// are matched against the `/temp-queue/`/`/temp-topic/` rules with the
    /// destination's broker-wide name (`c<conn>-<name>`); without any such
    /// rule they may write (reply) but not read.
    pub fn allows(
        &self,
        principal: &Principal,
        permission: Permission,
        address: &Address,
        conn: ConnectionId,
    ) -> bool {
        if self.rules.is_empty() {
            return true;
        }
        // A wildcard pattern is only ever subscribed to, never sent to: its
        // first subscription "creates" nothing a producer could use, so it
        // needs no more than reading the whole pattern does.
        let permission = if permission == Permission::Admin && address.is_wildcard() {
            Permission::Read
        } else {
            permission
        };
        let (prefix, rest) = match address.temp_owner {
            Some(owner) if owner == conn => return true,
            Some(_) => {
                let prefix = match address.kind {
                    DestinationKind::Queue => "/temp-queue/",
                    DestinationKind::Topic => "/temp-topic/",
                };
                if !self.has_temp_rules {
                    return permission == Permission::Write;
                }
                // `/remote-temp-queue/c7-r` → `c7-r`
                let rest = address.name.rsplit_once('/').map_or("", |(_, r)| r);
                (prefix, rest)
            }
            None => match PREFIXES.iter().find(|p| address.name.starts_with(**p)) {
                Some(p) => (*p, &address.name[p.len()..]),
                None => return false,
            },
        };
        let name: Vec<&str> = rest.split('.').collect();
        self.rules.iter().any(|rule| {
            rule.prefix == prefix
                && covers(&rule.elements, &name)
                && rule
                    .grantees(permission)
                    .iter()
                    .any(|g| g.includes(principal))
        })
    }
}

/// Whether a rule pattern covers a destination name. The name may itself be
/// a wildcard subscription (`a.*`, `a.>`): a rule covers it only if it
/// covers every destination the subscription could receive from.
fn covers(rule: &[String], name: &[&str]) -> bool {
    match (rule.split_first(), name.split_first()) {
        (None, None) => true,
        (Some((r, _)), _) if r == ">" => !name.is_empty(),
        (Some((r, rule_rest)), Some((n, name_rest))) if r == "*" => {
            *n != ">" && covers(rule_rest, name_rest)
        }
        (Some((r, rule_rest)), Some((n, name_rest))) => {
            *n != "*" && *n != ">" && r == n && covers(rule_rest, name_rest)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn rule(destination: &str, read: &[&str], write: &[&str], admin: &[&str]) -> AclRule {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        AclRule {
            destination: destination.into(),
            read: v(read),
            write: v(write),
            admin: v(admin),
        }
    }

    fn user(name: &str, groups: &[&str]) -> Principal {
        Principal {
            name: name.into(),
            groups: groups.iter().map(|g| Arc::from(*g)).collect(),
            anonymous: false,
        }
    }

    fn addr(name: &str, conn: ConnectionId) -> Address {
        Address::parse(name, conn).unwrap()
    }

    #[test]
    fn patterns_cover_like_activemq() {
        let p = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
        let n = |s: &'static str| s.split('.').collect::<Vec<_>>();
        assert!(covers(&p(">"), &n("a.b.c")));
        assert!(covers(&p("orders.>"), &n("orders.eu.new")));
        assert!(!covers(&p("orders.>"), &n("orders")));
        assert!(covers(&p("orders.*"), &n("orders.eu")));
        assert!(!covers(&p("orders.*"), &n("orders.eu.new")));
        assert!(!covers(&p("orders.eu"), &n("orders.*")));
        assert!(covers(&p("orders.*"), &n("orders.*")));
        assert!(!covers(&p("orders.*"), &n("orders.>")));
        assert!(covers(&p("orders.>"), &n("orders.>")));
        assert!(!covers(&p("a"), &n("b")));
    }

    #[test]
    fn a_pattern_needs_read_on_all_of_it_and_no_admin() {
        let acl = Acl::new(&[
            rule("/queue/orders.>", &["bob"], &[], &[]),
            rule("/queue/orders.eu", &["eve"], &[], &["eve"]),
        ]);
        let (bob, eve) = (user("bob", &[]), user("eve", &[]));
        let all = addr("/queue/orders.>", 1);
        assert!(acl.allows(&bob, Permission::Read, &all, 1));
        assert!(acl.allows(&bob, Permission::Admin, &all, 1));
        // Reading (or creating) one matching queue does not cover the pattern.
        assert!(!acl.allows(&eve, Permission::Read, &all, 1));
        assert!(!acl.allows(&eve, Permission::Admin, &all, 1));
        // A concrete queue still needs its 'admin' grant to be created.
        assert!(!acl.allows(&bob, Permission::Admin, &addr("/queue/orders.us", 1), 1));
    }

    #[test]
    fn union_of_matching_rules_users_groups_and_everyone() {
        let acl = Acl::new(&[
            rule("/queue/orders.>", &["group:readers"], &["alice"], &[]),
            rule("/queue/orders.eu", &[], &["*"], &["group:ops"]),
        ]);
        let alice = user("alice", &[]);
        let bob = user("bob", &["readers"]);
        let carol = user("carol", &["ops"]);
        let eu = addr("/queue/orders.eu", 1);
        let us = addr("/queue/orders.us", 1);
        assert!(acl.allows(&alice, Permission::Write, &us, 1));
        assert!(!acl.allows(&alice, Permission::Read, &us, 1));
        assert!(acl.allows(&bob, Permission::Read, &us, 1));
        assert!(!acl.allows(&bob, Permission::Write, &us, 1));
        assert!(acl.allows(&bob, Permission::Write, &eu, 1));
        assert!(acl.allows(&carol, Permission::Admin, &eu, 1));
        assert!(!acl.allows(&carol, Permission::Admin, &us, 1));
        // No rule matches: denied.
        assert!(!acl.allows(&alice, Permission::Write, &addr("/queue/other", 1), 1));
        // Same path, other kind: a queue rule says nothing about topics.
        assert!(!acl.allows(&alice, Permission::Write, &addr("/topic/orders.us", 1), 1));
    }

    #[test]
    fn no_rules_allow_everything() {
        let acl = Acl::new(&[]);
        assert!(acl.allows(&user("x", &[]), Permission::Admin, &addr("/queue/a", 1), 1));
    }

    #[test]
    fn temporary_destinations_owner_always_others_by_rule() {
        let acl = Acl::new(&[rule("/queue/a", &["*"], &["*"], &[])]);
        let bob = user("bob", &[]);
        let own = addr("/temp-queue/reply", 7);
        assert!(acl.allows(&bob, Permission::Read, &own, 7));
        assert!(acl.allows(&bob, Permission::Admin, &own, 7));
        // Another connection replying: allowed without temp rules; reading is not.
        let remote = addr("/remote-temp-queue/c7-reply", 9);
        assert!(acl.allows(&bob, Permission::Write, &remote, 9));
        assert!(!acl.allows(&bob, Permission::Read, &remote, 9));
        let strict = Acl::new(&[rule("/temp-queue/>", &[], &["group:svc"], &[])]);
        assert!(!strict.allows(&bob, Permission::Write, &remote, 9));
        assert!(strict.allows(&user("s", &["svc"]), Permission::Write, &remote, 9));
    }

    #[test]
    fn denial_names_destination_and_permission() {
        let d = Denied {
            user: "bob".into(),
            destination: "/queue/x".into(),
            permission: Permission::Write,
        };
        assert_eq!(
            d.to_string(),
            "user 'bob' is not authorized to write /queue/x (missing 'write' permission)"
        );
    }
}
