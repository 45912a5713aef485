//! Range and cross-field rules that serde cannot express. Each rule reports
//! the dotted key an operator has to change; the first problem found wins.

mod cluster;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;

use crate::units::{ByteSize, Millis};
use crate::{
    AclRule, AdminConfig, AuthConfig, ClientAuth, Config, ConfigError, DestinationsConfig,
    LimitsConfig, LogConfig, NativeConfig, StompConfig, StoreConfig, StoreSync, TlsConfig, User,
    WebSocketConfig,
};

/// Smallest frame/buffer size accepted: below this not even a CONNECT with a
/// few headers fits.
const MIN_FRAME: ByteSize = ByteSize::kib(1);

/// Builds errors about one file.
struct Check<'a> {
    origin: &'a Path,
}

impl Check<'_> {
    fn fail(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(self.origin, key, reason)
    }

    fn ensure(
        &self,
        ok: bool,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> Result<(), ConfigError> {
        if ok {
            Ok(())
        } else {
            Err(self.fail(key, reason))
        }
    }

    fn min_size(&self, value: ByteSize, min: ByteSize, key: &str) -> Result<(), ConfigError> {
        self.ensure(
            value >= min,
            key,
            format!("must be at least {} bytes ({min}), not {value}", min.get()),
        )
    }

    fn positive(&self, value: u64, key: &str) -> Result<(), ConfigError> {
        self.ensure(value > 0, key, "must be greater than 0")
    }

    fn positive_duration(&self, value: Millis, key: &str) -> Result<(), ConfigError> {
        self.ensure(value.get() > 0, key, "must be longer than 0ms")
    }

    fn factor(&self, value: f64, key: &str) -> Result<(), ConfigError> {
        self.ensure(
            value.is_finite() && value >= 1.0,
            key,
            format!("must be a number of at least 1.0, not {value}"),
        )
    }

    /// Parses an optional listen address and records it for the duplicate check.
    fn listen(
        &self,
        value: Option<&String>,
        key: &'static str,
        seen: &mut HashMap<SocketAddr, &'static str>,
    ) -> Result<Option<SocketAddr>, ConfigError> {
        // `Some("")` can only come from code building a Config by hand; it
        // means "disabled" there too, as in the file.
        let Some(text) = value.filter(|text| !text.is_empty()) else {
            return Ok(None);
        };
        let addr: SocketAddr = text.parse().map_err(|_| {
            self.fail(
                key,
                format!("`{text}` is not a socket address such as \"127.0.0.1:61613\" or \"[::1]:61613\" (\"\" disables the listener)"),
            )
        })?;
        // Port 0 asks the OS for a free port, so several listeners may share it.
        if addr.port() != 0 {
            if let Some(other) = seen.insert(addr, key) {
                return Err(self.fail(key, format!("{addr} is already used by {other}")));
            }
        }
        Ok(Some(addr))
    }
}

pub(crate) fn config(config: &Config, origin: &Path) -> Result<(), ConfigError> {
    let check = Check { origin };
    broker(&check, config)?;
    let mut seen = HashMap::new();
    stomp(&check, &config.stomp, &mut seen)?;
    websocket(&check, &config.websocket, &mut seen)?;
    native(&check, &config.native, &mut seen)?;
    admin(&check, &config.admin, &mut seen)?;
    tls(&check, &config.tls)?;
    limits(&check, &config.limits)?;
    destinations(&check, &config.destinations)?;
    store(&check, &config.store)?;
    log(&check, &config.log)?;
    auth(&check, &config.auth)?;
    for (index, rule) in config.acl.iter().enumerate() {
        acl(&check, rule, index)?;
    }
    if let Some(cluster_config) = &config.cluster {
        cluster::cluster(&check, cluster_config, &config.store, &mut seen)?;
        cluster::peer_tls(&check, cluster_config, &config.tls)?;
    }
    Ok(())
}

/// Problems worth a log line but not a refusal.
pub(crate) fn warnings(config: &Config, origin: &Path) -> Vec<ConfigError> {
    let mut found = Vec::new();
    if let Some(cluster) = &config.cluster {
        let n = cluster.members.len();
        if n > 0 && n % 2 == 0 {
            found.push(ConfigError::new(
                origin,
                "cluster.members",
                format!(
                    "{n} members tolerate {} failed node(s), no more than {} members do; an odd number (3 or 5) is better",
                    (n - 1) / 2,
                    n - 1
                ),
            ));
        }
    }
    found
}

fn broker(check: &Check<'_>, config: &Config) -> Result<(), ConfigError> {
    let broker = &config.broker;
    check.ensure(
        !broker.name.trim().is_empty(),
        "broker.name",
        "must not be empty",
    )?;
    check.ensure(
        !broker.name.chars().any(char::is_control),
        "broker.name",
        "must not contain control characters (it is sent in a STOMP header)",
    )?;
    check.ensure(
        !broker.data_dir.as_os_str().is_empty(),
        "broker.data_dir",
        "must not be empty",
    )
}

fn stomp(
    check: &Check<'_>,
    stomp: &StompConfig,
    seen: &mut HashMap<SocketAddr, &'static str>,
) -> Result<(), ConfigError> {
    check.listen(stomp.listen.as_ref(), "stomp.listen", seen)?;
    check.listen(stomp.tls_listen.as_ref(), "stomp.tls_listen", seen)?;
    check.min_size(stomp.max_frame_size, MIN_FRAME, "stomp.max_frame_size")?;
    check.positive(u64::from(stomp.max_headers), "stomp.max_headers")?;
    check.min_size(
        stomp.max_header_line,
        ByteSize(128),
        "stomp.max_header_line",
    )?;
    check.ensure(
        stomp.max_header_line <= stomp.max_frame_size,
        "stomp.max_header_line",
        format!(
            "must not exceed stomp.max_frame_size ({})",
            stomp.max_frame_size
        ),
    )?;
    check.positive_duration(stomp.heartbeat_send_min, "stomp.heartbeat_send_min")?;
    check.positive_duration(stomp.heartbeat_receive_min, "stomp.heartbeat_receive_min")?;
    check.factor(stomp.heartbeat_grace, "stomp.heartbeat_grace")?;
    check.positive_duration(stomp.connect_timeout, "stomp.connect_timeout")?;
    check.positive_duration(stomp.frame_timeout, "stomp.frame_timeout")
}

fn websocket(
    check: &Check<'_>,
    websocket: &WebSocketConfig,
    seen: &mut HashMap<SocketAddr, &'static str>,
) -> Result<(), ConfigError> {
    check.listen(websocket.listen.as_ref(), "websocket.listen", seen)?;
    check.listen(websocket.tls_listen.as_ref(), "websocket.tls_listen", seen)?;
    Ok(())
}

fn native(
    check: &Check<'_>,
    native: &NativeConfig,
    seen: &mut HashMap<SocketAddr, &'static str>,
) -> Result<(), ConfigError> {
    check.listen(native.listen.as_ref(), "native.listen", seen)?;
    check.listen(native.tls_listen.as_ref(), "native.tls_listen", seen)?;
    check.min_size(native.max_frame_size, MIN_FRAME, "native.max_frame_size")?;
    check.positive_duration(native.idle_timeout, "native.idle_timeout")
}

fn admin(
    check: &Check<'_>,
    admin: &AdminConfig,
    seen: &mut HashMap<SocketAddr, &'static str>,
) -> Result<(), ConfigError> {
    for (value, key) in [
        (admin.listen.as_ref(), "admin.listen"),
        (admin.tls_listen.as_ref(), "admin.tls_listen"),
    ] {
        if let Some(addr) = check.listen(value, key, seen)? {
            check.ensure(
                addr.ip().is_loopback() || admin.allow_remote,
                key,
                format!(
                    "{addr} is not a loopback address: set admin.allow_remote = true to expose the \
                     admin endpoint off this machine (with users configured it requires an `admins` login)"
                ),
            )?;
        }
    }
    check.positive(
        u64::from(admin.metrics_destination_limit),
        "admin.metrics_destination_limit",
    )
}

fn tls(check: &Check<'_>, tls: &TlsConfig) -> Result<(), ConfigError> {
    match (&tls.cert, &tls.key) {
        (Some(_), None) => {
            return Err(check.fail(
                "tls.key",
                "must be set when tls.cert is set (the certificate's private key)",
            ))
        }
        (None, Some(_)) => {
            return Err(check.fail(
                "tls.cert",
                "must be set when tls.key is set (the key's certificate chain)",
            ))
        }
        _ => {}
    }
    if tls.client_auth != ClientAuth::None && tls.client_ca.is_none() {
        return Err(check.fail(
            "tls.client_ca",
            "must be set when tls.client_auth is \"optional\" or \"required\"",
        ));
    }
    if tls.client_ca.is_some() && tls.cert.is_none() {
        return Err(check.fail(
            "tls.client_ca",
            "is only used by TLS listeners: set tls.cert and tls.key too",
        ));
    }
    Ok(())
}

fn limits(check: &Check<'_>, limits: &LimitsConfig) -> Result<(), ConfigError> {
    for (value, key) in [
        (limits.max_connections, "limits.max_connections"),
        (
            limits.max_connections_per_ip,
            "limits.max_connections_per_ip",
        ),
        (
            limits.max_subscriptions_per_connection,
            "limits.max_subscriptions_per_connection",
        ),
        (limits.max_destinations, "limits.max_destinations"),
        (
            limits.max_unacked_per_connection,
            "limits.max_unacked_per_connection",
        ),
    ] {
        check.positive(u64::from(value), key)?;
    }
    check.min_size(limits.outbound_buffer, MIN_FRAME, "limits.outbound_buffer")
}

/// Largest `destinations.queue_window`: a million waiting messages per
/// queue is already a gigabyte of 1 KiB messages in memory.
const MAX_QUEUE_WINDOW: u32 = 1_000_000;

fn destinations(check: &Check<'_>, dest: &DestinationsConfig) -> Result<(), ConfigError> {
    check.min_size(dest.memory_limit, MIN_FRAME, "destinations.memory_limit")?;
    check.positive(
        u64::from(dest.queue_prefetch),
        "destinations.queue_prefetch",
    )?;
    check.positive(
        u64::from(dest.topic_prefetch),
        "destinations.topic_prefetch",
    )?;
    check.positive(u64::from(dest.queue_window), "destinations.queue_window")?;
    check.ensure(
        dest.queue_window <= MAX_QUEUE_WINDOW,
        "destinations.queue_window",
        format!(
            "{} is more than {MAX_QUEUE_WINDOW} messages (the window is held in memory, per queue)",
            dest.queue_window
        ),
    )?;
    let dlq = &dest.dead_letter_queue;
    check.ensure(
        !dlq.is_empty()
            && !dlq.starts_with('/')
            && !dlq.split('.').any(|e| e.is_empty() || e == "*" || e == ">")
            && !dlq.chars().any(|c| c.is_whitespace() || c.is_control()),
        "destinations.dead_letter_queue",
        format!("`{dlq}` is not a queue name (dot-separated, no wildcards, no /queue/ prefix)"),
    )?;
    check.factor(dest.redelivery_backoff, "destinations.redelivery_backoff")?;
    check.positive(
        u64::from(dest.durable_subscription_limit),
        "destinations.durable_subscription_limit",
    )
}

fn store(check: &Check<'_>, store: &StoreConfig) -> Result<(), ConfigError> {
    if store.sync == StoreSync::Batch {
        check.positive_duration(store.batch_delay, "store.batch_delay")?;
    }
    check.ensure(
        store.batch_delay <= Millis::secs(1),
        "store.batch_delay",
        "must be at most 1s (every receipt may wait this long)",
    )?;
    check.min_size(store.memory_limit, ByteSize::mib(1), "store.memory_limit")?;
    check.min_size(store.disk_limit, ByteSize::mib(1), "store.disk_limit")?;
    check.min_size(
        store.compact_threshold,
        ByteSize::mib(1),
        "store.compact_threshold",
    )?;
    check.ensure(
        store.body_inline_max <= ByteSize::mib(1),
        "store.body_inline_max",
        "must be at most 1MiB (a larger body inside sled's pages is rewritten whole every time its page is)",
    )?;
    // Each checkpoint pauses the writer for a reopen (tens of milliseconds):
    // more often than every 16 MiB it would cost more than it saves.
    check.min_size(
        store.checkpoint_every,
        ByteSize::mib(16),
        "store.checkpoint_every",
    )
}

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Accepts what `tracing_subscriber::EnvFilter` accepts in the common forms:
/// comma-separated `level`, `target` or `target=level` directives, where a
/// bare `target` must look like a module path (`ferromq_store`, `a::b`).
fn log(check: &Check<'_>, log: &LogConfig) -> Result<(), ConfigError> {
    let is_level = |s: &str| LEVELS.contains(&s.to_ascii_lowercase().as_str());
    let is_target = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'))
    };
    let bad = |directive: &str| {
        check.fail(
            "log.level",
            format!(
                "`{directive}` is not a level ({}) nor a `target=level` directive",
                LEVELS.join(", ")
            ),
        )
    };
    if log.level.trim().is_empty() {
        return Err(check.fail("log.level", "must not be empty (use \"off\" for no logs)"));
    }
    for directive in log.level.split(',').map(str::trim) {
        let ok = match directive.split_once('=') {
            Some((target, level)) => is_target(target) && is_level(level),
            // EnvFilter reads a bare word as "everything from this target",
            // so a misspelt level ("verbose") would silently log nothing
            // useful. Only accept bare targets that look like module paths.
            None => {
                is_level(directive)
                    || (is_target(directive)
                        && (directive.contains('_') || directive.contains("::")))
            }
        };
        if !ok {
            return Err(bad(directive));
        }
    }
    Ok(())
}

fn auth(check: &Check<'_>, auth: &AuthConfig) -> Result<(), ConfigError> {
    check.ensure(
        auth.anonymous || !auth.users.is_empty() || auth.users_file.is_some(),
        "auth.anonymous",
        "is false but no users are defined (auth.users or auth.users_file): every client would be refused",
    )?;
    check_users(check, &auth.users, "auth.users")
}

/// Validates a list of users; `key` is the list's dotted key (`auth.users`
/// in the main file, `users` in a users file).
pub(crate) fn users(users: &[User], key: &str, origin: &Path) -> Result<(), ConfigError> {
    check_users(&Check { origin }, users, key)
}

fn check_users(check: &Check<'_>, users: &[User], key: &str) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    for (index, user) in users.iter().enumerate() {
        let at = format!("{key}[{index}]");
        check.ensure(
            !user.name.is_empty()
                && !user
                    .name
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control()),
            format!("{at}.name"),
            format!("`{}` is not a user name (non-empty, no spaces)", user.name),
        )?;
        check.ensure(
            !user.name.starts_with("group:") && user.name != "*",
            format!("{at}.name"),
            format!("`{}` is reserved for ACL principals", user.name),
        )?;
        check.ensure(
            names.insert(user.name.as_str()),
            format!("{at}.name"),
            format!("user `{}` is defined twice", user.name),
        )?;
        check.ensure(
            user.password_hash.starts_with("$argon2"),
            format!("{at}.password_hash"),
            "plaintext passwords are not accepted: store a hash made by `ferromq passwd`",
        )?;
        for (group_index, group) in user.groups.iter().enumerate() {
            check.ensure(
                !group.is_empty() && !group.chars().any(|c| c.is_whitespace() || c.is_control()),
                format!("{at}.groups[{group_index}]"),
                format!("`{group}` is not a group name (non-empty, no spaces)"),
            )?;
        }
    }
    Ok(())
}

const DESTINATION_PREFIXES: [&str; 4] = ["/queue/", "/topic/", "/temp-queue/", "/temp-topic/"];

fn acl(check: &Check<'_>, rule: &AclRule, index: usize) -> Result<(), ConfigError> {
    let at = format!("acl[{index}]");
    if let Err(reason) = destination_pattern(&rule.destination) {
        return Err(check.fail(format!("{at}.destination"), reason));
    }
    for (list, field) in [
        (&rule.read, "read"),
        (&rule.write, "write"),
        (&rule.admin, "admin"),
    ] {
        for (i, principal) in list.iter().enumerate() {
            let name = principal.strip_prefix("group:").unwrap_or(principal);
            check.ensure(
                !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c.is_control()),
                format!("{at}.{field}[{i}]"),
                format!("`{principal}` is not a principal (a user name, \"group:NAME\" or \"*\")"),
            )?;
        }
    }
    Ok(())
}

/// Checks an ACL destination pattern; `Err` holds the reason.
pub(crate) fn destination_pattern(pattern: &str) -> Result<(), String> {
    let Some(rest) = DESTINATION_PREFIXES
        .iter()
        .find_map(|prefix| pattern.strip_prefix(prefix))
    else {
        return Err(format!(
            "`{pattern}` must start with {}",
            DESTINATION_PREFIXES.join(", ")
        ));
    };
    let elements: Vec<&str> = rest.split('.').collect();
    for (i, element) in elements.iter().enumerate() {
        if element.is_empty() {
            return Err(format!(
                "`{pattern}` has an empty element (`..`, or a leading/trailing `.`)"
            ));
        }
        if *element == ">" && i + 1 != elements.len() {
            return Err(format!("`{pattern}`: `>` may only be the last element"));
        }
        if element.len() > 1 && element.contains(['*', '>']) {
            return Err(format!(
                "`{pattern}`: `*` and `>` must be whole elements (`orders.*`, not `orders*`)"
            ));
        }
        if element.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("`{pattern}` contains whitespace"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::destination_pattern;

    #[test]
    fn destination_patterns() {
        for ok in [
            "/queue/orders.>",
            "/topic/a.*.c",
            "/temp-queue/x",
            "/queue/>",
            "/topic/*",
        ] {
            assert_eq!(destination_pattern(ok), Ok(()), "{ok}");
        }
        for bad in [
            "orders",
            "/queues/x",
            "/queue/",
            "/queue/a..b",
            "/queue/a.>.b",
            "/queue/orders*",
            "/topic/a b",
            "/queue/a.",
        ] {
            assert!(destination_pattern(bad).is_err(), "{bad}");
        }
    }
}
