//! Destination names: parsing what a client wrote into an [`Address`].
//!
//! Clients name destinations `/queue/NAME`, `/topic/NAME`, `/temp-queue/NAME`
//! and `/temp-topic/NAME`. Temporary names are private to the connection that
//! uses them, so the same `/temp-queue/reply` from two connections is two
//! destinations: internally they are `/remote-temp-queue/c<conn>-reply`, the
//! form other connections use to reply (as ActiveMQ's `/remote-temp-queue/`).

use super::subscription::ConnectionId;
use super::RouterError;
use std::sync::Arc;

/// Point-to-point or publish/subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestinationKind {
    /// Each message goes to one consumer.
    Queue,
    /// Each message goes to every current subscriber.
    Topic,
}

/// A parsed destination name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Queue or topic.
    pub kind: DestinationKind,
    /// Canonical name, unique broker-wide.
    pub name: Arc<str>,
    /// For temporary destinations: the connection that owns it.
    pub temp_owner: Option<ConnectionId>,
    /// For temporary destinations: the name its owner uses.
    pub owner_name: Option<Arc<str>>,
}

/// The prefixes clients may use, for error messages.
pub const ALLOWED_PREFIXES: &str = "/queue/, /topic/, /temp-queue/, /temp-topic/";

impl Address {
    /// Parses `raw` as written by connection `conn`.
    pub fn parse(raw: &str, conn: ConnectionId) -> Result<Address, RouterError> {
        let bad = || RouterError::IllegalDestination(raw.to_string());
        let (kind, rest, temp, remote) = if let Some(r) = raw.strip_prefix("/queue/") {
            (DestinationKind::Queue, r, false, false)
        } else if let Some(r) = raw.strip_prefix("/topic/") {
            (DestinationKind::Topic, r, false, false)
        } else if let Some(r) = raw.strip_prefix("/temp-queue/") {
            (DestinationKind::Queue, r, true, false)
        } else if let Some(r) = raw.strip_prefix("/temp-topic/") {
            (DestinationKind::Topic, r, true, false)
        } else if let Some(r) = raw.strip_prefix("/remote-temp-queue/") {
            (DestinationKind::Queue, r, true, true)
        } else if let Some(r) = raw.strip_prefix("/remote-temp-topic/") {
            (DestinationKind::Topic, r, true, true)
        } else {
            return Err(bad());
        };
        if rest.is_empty() || rest.len() > 512 || rest.chars().any(|c| c.is_control() || c == ',') {
            return Err(bad());
        }
        let remote_prefix = match kind {
            DestinationKind::Queue => "/remote-temp-queue/",
            DestinationKind::Topic => "/remote-temp-topic/",
        };
        if remote {
            // `c<owner>-<name>`: the owner is part of the name.
            let owner = rest
                .strip_prefix('c')
                .and_then(|r| r.split_once('-'))
                .and_then(|(id, _)| id.parse::<ConnectionId>().ok())
                .ok_or_else(bad)?;
            return Ok(Address {
                kind,
                name: raw.into(),
                temp_owner: Some(owner),
                owner_name: None,
            });
        }
        if temp {
            return Ok(Address {
                kind,
                name: format!("{remote_prefix}c{conn}-{rest}").into(),
                temp_owner: Some(conn),
                owner_name: Some(raw.into()),
            });
        }
        Ok(Address {
            kind,
            name: raw.into(),
            temp_owner: None,
            owner_name: None,
        })
    }

    /// Whether this is a temporary destination.
    pub fn is_temporary(&self) -> bool {
        self.temp_owner.is_some()
    }

    /// Whether the name is a wildcard pattern (`*` or `>` elements).
    pub fn is_wildcard(&self) -> bool {
        is_wildcard(&self.name)
    }
}

/// Whether a canonical name has a `*` or `>` element.
pub fn is_wildcard(name: &str) -> bool {
    name.rsplit('/')
        .next()
        .is_some_and(|path| path.split('.').any(|e| e == "*" || e == ">"))
}

/// ActiveMQ wildcard matching on the `.`-separated part after the prefix:
/// `*` matches exactly one element, `>` one or more trailing elements.
/// Both names must have the same prefix (`/topic/`, ...).
pub fn wildcard_matches(pattern: &str, name: &str) -> bool {
    let (Some((pp, pattern)), Some((np, name))) = (pattern.rsplit_once('/'), name.rsplit_once('/'))
    else {
        return false;
    };
    if pp != np {
        return false;
    }
    let mut names = name.split('.');
    for element in pattern.split('.') {
        match element {
            ">" => return names.next().is_some(),
            "*" => {
                if names.next().is_none() {
                    return false;
                }
            }
            literal => {
                if names.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    names.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_prefixes() {
        let a = Address::parse("/queue/a.b", 1).unwrap();
        assert_eq!((a.kind, &*a.name), (DestinationKind::Queue, "/queue/a.b"));
        let t = Address::parse("/topic/x", 1).unwrap();
        assert_eq!(t.kind, DestinationKind::Topic);
        let tq = Address::parse("/temp-queue/r", 7).unwrap();
        assert_eq!(&*tq.name, "/remote-temp-queue/c7-r");
        assert_eq!(tq.temp_owner, Some(7));
        let remote = Address::parse("/remote-temp-queue/c7-r", 9).unwrap();
        assert_eq!(remote.name, tq.name);
        assert_eq!(remote.temp_owner, Some(7));
    }

    #[test]
    fn wildcards_match_like_activemq() {
        assert!(wildcard_matches(
            "/topic/PRICE.STOCK.>",
            "/topic/PRICE.STOCK.NASDAQ.ORCL"
        ));
        assert!(wildcard_matches(
            "/topic/PRICE.STOCK.>",
            "/topic/PRICE.STOCK.NYSE"
        ));
        assert!(!wildcard_matches(
            "/topic/PRICE.STOCK.>",
            "/topic/PRICE.STOCK"
        ));
        assert!(wildcard_matches(
            "/topic/PRICE.*.NYSE",
            "/topic/PRICE.STOCK.NYSE"
        ));
        assert!(!wildcard_matches(
            "/topic/PRICE.*.NYSE",
            "/topic/PRICE.STOCK.NASDAQ"
        ));
        assert!(!wildcard_matches(
            "/topic/PRICE.*",
            "/topic/PRICE.STOCK.NYSE"
        ));
        assert!(!wildcard_matches("/topic/a.>", "/queue/a.b"));
        assert!(is_wildcard("/topic/a.*") && is_wildcard("/topic/>") && !is_wildcard("/topic/a*b"));
    }

    #[test]
    fn rejects_other_names() {
        for raw in [
            "queue/a",
            "/queue/",
            "/exchange/x",
            "",
            "/queue/a,/queue/b",
            "/remote-temp-queue/x",
        ] {
            assert!(Address::parse(raw, 1).is_err(), "{raw}");
        }
    }
}
