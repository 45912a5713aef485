//! `ferromq admin`: the management API from the command line, like
//! `rabbitmqctl` or `activemq`'s command line tools, speaking the same HTTP
//! API as the web console.
//!
//! Output is a table by default and the API's JSON with `--json`. Exit
//! codes: 0 done, 1 failed (unreachable broker, bad credentials, refused
//! request: one line on stderr saying which), 2 bad usage (from clap).
//!
//! HTTP is ureq: a small, blocking, well-kept client (rustls for https with
//! the ring provider the broker already uses), which suits a command that
//! makes one or a few requests and exits; no async runtime is started.

use base64::Engine;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;
use std::fmt::Write as _;
use std::time::Duration;

/// How to reach an admin endpoint and how to print its answers: the
/// options `ferromq admin` and `ferromq cluster` share.
#[derive(Debug, Args)]
pub struct Endpoint {
    /// The broker's admin endpoint (cluster membership changes need the
    /// leader's).
    #[arg(
        long,
        env = "FERROMQ_ADMIN_URL",
        default_value = "http://127.0.0.1:8161"
    )]
    pub url: String,
    /// User (in group admins; monitoring is enough for reading).
    #[arg(long, env = "FERROMQ_ADMIN_USER")]
    pub user: Option<String>,
    /// Password of --user.
    #[arg(long, env = "FERROMQ_ADMIN_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// PEM CA certificate to trust for an https --url (a broker with its
    /// own CA); without it the usual public roots are used.
    #[arg(long, env = "FERROMQ_ADMIN_CACERT", value_name = "FILE")]
    pub cacert: Option<std::path::PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `ferromq admin` options.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Where and how.
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// What `ferromq admin` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Listing {
    /// Queues with depth, unacked, consumers, counters.
    Queues,
    /// Topics.
    Topics,
    /// Client connections.
    Connections,
    /// Durable topic subscriptions.
    Durables,
}

/// `ferromq admin` subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Version, uptime, totals, rates, connections, store usage.
    Overview,
    /// List queues, topics, connections or durable subscriptions.
    List {
        /// queues, topics, connections or durables.
        what: Listing,
        /// Only destinations whose name contains this (or matches it, with `*`).
        #[arg(long)]
        name: Option<String>,
    },
    /// Show waiting messages of a queue without consuming them.
    Browse {
        /// The queue (`orders` or `/queue/orders`).
        queue: String,
        /// Most messages shown.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Drop every waiting message of a queue.
    Purge {
        /// The queue (`orders` or `/queue/orders`).
        queue: String,
    },
    /// Delete a destination and its waiting messages (refused while it has consumers).
    Delete {
        /// `/queue/NAME`, `/topic/NAME` (or a queue's plain name).
        destination: String,
    },
    /// Send one message.
    Send {
        /// `/queue/NAME`, `/topic/NAME` (or a queue's plain name).
        destination: String,
        /// The message body (text).
        body: String,
        /// A header, `name=value`; repeatable.
        #[arg(long = "header", value_name = "NAME=VALUE", value_parser = header_pair)]
        headers: Vec<(String, String)>,
        /// Store the message (survives a restart).
        #[arg(long)]
        persistent: bool,
    },
    /// Close a client connection (by id, from `list connections`).
    Close {
        /// The connection id.
        connection: u64,
        /// Told to the client.
        #[arg(long)]
        reason: Option<String>,
    },
}

fn header_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}

/// Why a command failed: one line for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

/// Runs one command; `Ok` holds what to print.
pub fn run(args: &AdminArgs) -> Result<String, Failure> {
    let client = Client::connect(&args.endpoint)?;
    let json = args.endpoint.json;
    match &args.command {
        AdminCommand::Overview => {
            let v = client.call("GET", "/api/overview", None)?;
            Ok(if json { pretty(&v) } else { overview_text(&v) })
        }
        AdminCommand::List { what, name } => {
            let v = match what {
                Listing::Queues => client.all_destinations("queue", name.as_deref())?,
                Listing::Topics => client.all_destinations("topic", name.as_deref())?,
                Listing::Connections => client.call("GET", "/api/connections", None)?,
                Listing::Durables => client.call("GET", "/api/subscriptions/durable", None)?,
            };
            if json {
                return Ok(pretty(&v));
            }
            let columns: &[&str] = match what {
                Listing::Queues => &[
                    "name",
                    "messages",
                    "unacked",
                    "consumers",
                    "enqueued",
                    "dequeued",
                    "store_bytes",
                ],
                Listing::Topics => &["name", "consumers", "messages", "enqueued"],
                Listing::Connections => &[
                    "id",
                    "protocol",
                    "peer",
                    "user",
                    "subscriptions",
                    "unacked",
                    "bytes_in",
                    "bytes_out",
                    "messages_in",
                    "messages_out",
                ],
                Listing::Durables => &["queue", "client_id", "name", "topic", "messages", "active"],
            };
            Ok(table(columns, v.as_array().map_or(&[], Vec::as_slice)))
        }
        AdminCommand::Browse { queue, limit } => {
            let path = format!("{}/messages?limit={limit}", destination_path(queue));
            let v = client.call("GET", &path, None)?;
            if json {
                return Ok(pretty(&v));
            }
            let rows: Vec<Value> = v["messages"]
                .as_array()
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .map(|m| {
                    let mut m = m.clone();
                    m["body"] = Value::String(preview(&m));
                    m
                })
                .collect();
            Ok(table(
                &["message_id", "size", "persistent", "priority", "body"],
                &rows,
            ))
        }
        AdminCommand::Purge { queue } => {
            let v = client.call("POST", &format!("{}/purge", destination_path(queue)), None)?;
            Ok(if json {
                pretty(&v)
            } else {
                format!(
                    "purged {} messages from {}\n",
                    v["purged"],
                    text(&v["destination"])
                )
            })
        }
        AdminCommand::Delete { destination } => {
            let v = client.call("DELETE", &destination_path(destination), None)?;
            Ok(if json {
                pretty(&v)
            } else {
                format!(
                    "deleted {} ({} messages dropped)\n",
                    text(&v["deleted"]),
                    v["messages_dropped"]
                )
            })
        }
        AdminCommand::Send {
            destination,
            body,
            headers,
            persistent,
        } => {
            let headers: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let request = serde_json::json!({
                "body": body,
                "headers": headers,
                "persistent": persistent,
            });
            let path = format!("{}/messages", destination_path(destination));
            let v = client.call("POST", &path, Some(&request))?;
            Ok(if json {
                pretty(&v)
            } else {
                format!(
                    "sent {} to {}\n",
                    text(&v["message_id"]),
                    text(&v["destination"])
                )
            })
        }
        AdminCommand::Close { connection, reason } => {
            let mut path = format!("/api/connections/{connection}");
            if let Some(r) = reason {
                path.push_str("?reason=");
                path.push_str(&encode(r));
            }
            let v = client.call("DELETE", &path, None)?;
            Ok(if json {
                pretty(&v)
            } else {
                format!("closing connection {connection}\n")
            })
        }
    }
}

/// The API path of a destination given as `/queue/x`, `/topic/x`, a
/// durable subscription's `/durable/...` queue, or a plain queue name.
pub fn destination_path(destination: &str) -> String {
    let (kind, name) = if let Some(n) = destination.strip_prefix("/queue/") {
        ("queue", n.to_owned())
    } else if let Some(n) = destination.strip_prefix("/topic/") {
        ("topic", n.to_owned())
    } else if destination.starts_with('/') {
        // Other canonical names (durable subscription queues, remote
        // temporary queues) travel whole.
        let kind = if destination.contains("-topic/") {
            "topic"
        } else {
            "queue"
        };
        (kind, destination.to_owned())
    } else {
        ("queue", destination.to_owned())
    };
    format!("/api/destinations/{kind}/{}", encode(&name))
}

/// Percent-encodes everything but unreserved characters (a path segment or
/// query value).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A connection to one admin endpoint (also used by `ferromq cluster`).
pub(crate) struct Client {
    agent: ureq::Agent,
    base: String,
    authorization: Option<String>,
}

impl Client {
    /// A client of the endpoint at `--url`, with Basic credentials when
    /// `--user` is given and `--cacert` trusted for https.
    pub(crate) fn connect(endpoint: &Endpoint) -> Result<Client, Failure> {
        let url = endpoint.url.as_str();
        let (user, password) = (endpoint.user.as_deref(), endpoint.password.as_deref());
        let cacert = endpoint.cacert.as_deref();
        let base = url.trim_end_matches('/').to_owned();
        let parsed: Result<ureq::http::Uri, _> = base.parse();
        match parsed {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {}
            _ => {
                return Err(Failure(format!(
                    "bad --url {url:?}: expected http://HOST:PORT or https://HOST:PORT"
                )))
            }
        }
        let authorization = user.map(|u| {
            let pair = format!("{u}:{}", password.unwrap_or(""));
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        });
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)));
        if let Some(path) = cacert {
            let pem = std::fs::read(path)
                .map_err(|e| Failure(format!("cannot read --cacert {}: {e}", path.display())))?;
            let cert = ureq::tls::Certificate::from_pem(&pem).map_err(|e| {
                Failure(format!(
                    "--cacert {}: not a PEM certificate: {e}",
                    path.display()
                ))
            })?;
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
                    .build(),
            );
        }
        let agent: ureq::Agent = config.build().into();
        Ok(Client {
            agent,
            base,
            authorization,
        })
    }

    /// One request; the JSON answer, or a one-line failure.
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        self.call_with_total(method, path, body).map(|(v, _)| v)
    }

    fn call_with_total(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(Value, Option<usize>), Failure> {
        let url = format!("{}{path}", self.base);
        let builder = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Accept", "application/json");
        let builder = match &self.authorization {
            Some(a) => builder.header("Authorization", a),
            None => builder,
        };
        let sent = match body {
            Some(b) => {
                let request = builder
                    .header("Content-Type", "application/json")
                    .body(b.to_string())
                    .map_err(|e| Failure(format!("bad request for {url}: {e}")))?;
                self.agent.run(request)
            }
            None => {
                let request = builder
                    .body(())
                    .map_err(|e| Failure(format!("bad request for {url}: {e}")))?;
                self.agent.run(request)
            }
        };
        let mut response =
            sent.map_err(|e| Failure(format!("cannot reach the broker at {}: {e}", self.base)))?;
        let status = response.status().as_u16();
        let total = response
            .headers()
            .get("x-total-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let text = response
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| Failure(format!("cannot read the answer from {url}: {e}")))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status == 401 {
            return Err(Failure(format!(
                "authentication failed at {} (give --user/--password or FERROMQ_ADMIN_USER/FERROMQ_ADMIN_PASSWORD of a user in group admins)",
                self.base
            )));
        }
        if !(200..300).contains(&status) {
            let reason = value["error"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("HTTP {status} from {url}"));
            return Err(Failure(reason));
        }
        if value.is_null() {
            return Err(Failure(format!(
                "{url} did not answer JSON: is this a ferromq admin endpoint?"
            )));
        }
        Ok((value, total))
    }

    /// Every destination of `kind`, page by page (at most 100 pages).
    fn all_destinations(&self, kind: &str, name: Option<&str>) -> Result<Value, Failure> {
        let mut all = Vec::new();
        for page in 1..=100 {
            let mut path = format!("/api/destinations?kind={kind}&page_size=1000&page={page}");
            if let Some(n) = name {
                path.push_str("&name=");
                path.push_str(&encode(n));
            }
            let (v, total) = self.call_with_total("GET", &path, None)?;
            let items = v.as_array().cloned().unwrap_or_default();
            let done = items.len() < 1000 || total.is_some_and(|t| all.len() + items.len() >= t);
            all.extend(items);
            if done {
                break;
            }
        }
        Ok(Value::Array(all))
    }
}

pub(crate) fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

/// A JSON value as table text: strings without quotes, null as `-`.
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A message body for one table cell: escaped, at most 60 characters.
fn preview(m: &Value) -> String {
    let body = m["body"].as_str().unwrap_or("");
    let mut shown: String = body
        .chars()
        .take(60)
        .collect::<String>()
        .escape_debug()
        .collect();
    if m["body_encoding"] == "base64" {
        shown = format!("base64:{shown}");
    }
    if body.chars().count() > 60 || m["body_truncated"] == true {
        shown.push('…');
    }
    shown
}

/// Columns aligned with spaces under a header line, as `rabbitmqctl
/// list_queues` prints.
pub fn table(columns: &[&str], rows: &[Value]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| text(&r[*c])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let mut line = |values: Vec<&str>| {
        let mut l = String::new();
        for (i, v) in values.iter().enumerate() {
            if i + 1 == values.len() {
                l.push_str(v);
            } else {
                let _ = write!(l, "{v:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(columns.to_vec());
    for r in &cells {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

fn overview_text(v: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "version      {}", text(&v["version"]));
    let _ = writeln!(out, "node         {}", text(&v["node"]));
    let _ = writeln!(out, "role         {}", text(&v["role"]));
    let _ = writeln!(out, "uptime       {} s", v["uptime_seconds"]);
    let t = &v["totals"];
    let _ = writeln!(
        out,
        "destinations {} ({} queues, {} topics)",
        t["destinations"], t["queues"], t["topics"]
    );
    let _ = writeln!(
        out,
        "messages     {} waiting, {} unacked, {} scheduled",
        t["messages"], t["unacked"], t["scheduled"]
    );
    let _ = writeln!(out, "consumers    {}", t["consumers"]);
    let r = &v["rates"];
    let _ = writeln!(
        out,
        "rates        {:.1} published/s, {:.1} acked/s",
        r["published_per_second"].as_f64().unwrap_or(0.0),
        r["acked_per_second"].as_f64().unwrap_or(0.0)
    );
    let c = &v["connections"];
    let by: Vec<String> = c["by_protocol"]
        .as_object()
        .map(|m| m.iter().map(|(k, n)| format!("{k} {n}")).collect())
        .unwrap_or_default();
    let _ = writeln!(out, "connections  {} ({})", c["total"], by.join(", "));
    if let Some(s) = v["store"].as_object() {
        let _ = writeln!(
            out,
            "store        {} live bytes, {} on disk",
            s.get("live_bytes").unwrap_or(&Value::Null),
            s.get("disk_bytes").unwrap_or(&Value::Null)
        );
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn destination_paths_take_every_form() {
        assert_eq!(destination_path("orders"), "/api/destinations/queue/orders");
        assert_eq!(
            destination_path("/queue/a b"),
            "/api/destinations/queue/a%20b"
        );
        assert_eq!(
            destination_path("/topic/t.x"),
            "/api/destinations/topic/t.x"
        );
        assert_eq!(
            destination_path("/durable/c/s"),
            "/api/destinations/queue/%2Fdurable%2Fc%2Fs"
        );
    }

    #[test]
    fn tables_align_columns_under_their_header() {
        let rows = vec![
            serde_json::json!({"name": "/queue/a", "messages": 10}),
            serde_json::json!({"name": "/queue/long-name", "messages": null}),
        ];
        let t = table(&["name", "messages"], &rows);
        assert_eq!(
            t,
            "name              messages\n/queue/a          10\n/queue/long-name  -\n"
        );
        assert_eq!(header_pair("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(header_pair("=x").is_err());
    }
}
