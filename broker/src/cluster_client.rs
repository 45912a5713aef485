//! `ferromq cluster status|add|promote|remove`: the cluster's state and
//! membership from the command line, through a node's admin API
//! (`/api/cluster`, see `admin::cluster`), with the same connection
//! options, output styles (a table, or the API's JSON with `--json`) and
//! exit codes as `ferromq admin`: 0 done, 1 failed (one line on stderr,
//! naming the leader when a follower was asked to change membership), 2
//! bad usage.

use crate::admin_client::{pretty, table, text, Client, Endpoint, Failure};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// `ferromq cluster` options.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Where and how (the same options as `ferromq admin`).
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// What to do.
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// `ferromq cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// This node's view: role, term, leader, indexes, members, followers' lag.
    Status,
    /// Add a node as a learner (start it first with `cluster.join = true`);
    /// with --voter, promote it once it has caught up.
    Add {
        /// The new node's id (its `cluster.node_id`).
        id: u64,
        /// Its cluster listener, ip:port (its `cluster.listen`).
        #[arg(long, value_name = "IP:PORT")]
        cluster: String,
        /// Its STOMP address as clients reach it (for redirects).
        #[arg(long, value_name = "HOST:PORT", default_value = "")]
        stomp: String,
        /// Its STOMP+TLS address as clients reach it.
        #[arg(long, value_name = "HOST:PORT", default_value = "")]
        stomp_tls: String,
        /// Its STOMP-over-WebSocket address as clients reach it.
        #[arg(long, value_name = "HOST:PORT", default_value = "")]
        websocket: String,
        /// Its STOMP-over-WebSocket+TLS address as clients reach it.
        #[arg(long, value_name = "HOST:PORT", default_value = "")]
        websocket_tls: String,
        /// Its native address as clients reach it.
        #[arg(long, value_name = "HOST:PORT", default_value = "")]
        native: String,
        /// Its native+TLS address as clients reach it.
        #[arg(long, value_name = "HOST:PORT", default_value = "")]
        native_tls: String,
        /// Its admin address.
        #[arg(long, value_name = "HOST:PORT", default_value = "")]
        admin: String,
        /// Make it a voter once it has caught up.
        #[arg(long)]
        voter: bool,
    },
    /// Make a learner a voter.
    Promote {
        /// The learner's node id.
        id: u64,
    },
    /// Remove a node (voter or learner) from the cluster; stop its process
    /// afterwards.
    Remove {
        /// The node id.
        id: u64,
    },
}

/// Runs one command; `Ok` holds what to print.
pub fn run(args: &ClusterArgs) -> Result<String, Failure> {
    let client = Client::connect(&args.endpoint)?;
    let (value, summary) = match &args.command {
        ClusterCommand::Status => {
            let v = client.call("GET", "/api/cluster", None)?;
            let s = status_text(&v);
            (v, s)
        }
        ClusterCommand::Add {
            id,
            cluster,
            stomp,
            stomp_tls,
            websocket,
            websocket_tls,
            native,
            native_tls,
            admin,
            voter,
        } => {
            let request = json!({
                "id": id,
                "cluster": cluster,
                "stomp": stomp,
                "stomp_tls": stomp_tls,
                "websocket": websocket,
                "websocket_tls": websocket_tls,
                "native": native,
                "native_tls": native_tls,
                "admin": admin,
                "voter": voter,
            });
            let v = client.call("POST", "/api/cluster/members", Some(&request))?;
            let s = format!("node {id}: {}\n", text(&v["note"]));
            (v, s)
        }
        ClusterCommand::Promote { id } => {
            let v = client.call("POST", &format!("/api/cluster/members/{id}/promote"), None)?;
            (v, format!("node {id} is a voter\n"))
        }
        ClusterCommand::Remove { id } => {
            let v = client.call("DELETE", &format!("/api/cluster/members/{id}"), None)?;
            (v, format!("node {id} removed; stop its process\n"))
        }
    };
    Ok(if args.endpoint.json {
        pretty(&value)
    } else {
        summary
    })
}

/// `ferromq cluster status` as text: a few lines, then the members.
pub fn status_text(v: &Value) -> String {
    let mut out = String::new();
    if v["role"] == "standalone" {
        let _ = writeln!(out, "role      standalone (no [cluster] table)");
        return out;
    }
    let _ = writeln!(out, "cluster   {}", text(&v["cluster_id"]));
    let serving = if v["serving"] == true { "yes" } else { "no" };
    let _ = writeln!(
        out,
        "node      {}  role {}  term {}  serving {serving}",
        text(&v["node_id"]),
        text(&v["role"]),
        text(&v["term"])
    );
    let leader = &v["leader"];
    if leader.is_null() {
        let _ = writeln!(out, "leader    none (election running)");
    } else {
        let a = &leader["addresses"];
        let _ = writeln!(
            out,
            "leader    {}  stomp {}  native {}  admin {}",
            text(&leader["id"]),
            or_dash(&a["stomp"]),
            or_dash(&a["native"]),
            or_dash(&a["admin"])
        );
    }
    let _ = writeln!(
        out,
        "log       last {}  commit {}  applied {}",
        text(&v["last_log_index"]),
        text(&v["commit_index"]),
        text(&v["applied_index"])
    );
    let followers = v["followers"].as_array().map_or(&[][..], Vec::as_slice);
    let rows: Vec<Value> = v["members"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|m| {
            let id = &m["id"];
            let lag = followers
                .iter()
                .find(|f| &f["id"] == id)
                .map_or(Value::Null, |f| f["lag"].clone());
            let a = &m["addresses"];
            json!({
                "id": id,
                "kind": if m["voter"] == true { "voter" } else { "learner" },
                "cluster": or_dash(&a["cluster"]),
                "stomp": or_dash(&a["stomp"]),
                "native": or_dash(&a["native"]),
                "admin": or_dash(&a["admin"]),
                "lag": lag,
            })
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &["id", "kind", "cluster", "stomp", "native", "admin", "lag"],
        &rows,
    ));
    out
}

fn or_dash(v: &Value) -> String {
    match v.as_str() {
        Some("") | None => "-".into(),
        Some(s) => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_shows_the_leader_and_each_members_lag() {
        let v = json!({
            "cluster_id": "c",
            "node_id": 1,
            "role": "leader",
            "term": 3,
            "serving": true,
            "leader": {"id": 1, "addresses": {"cluster": "127.0.0.1:1", "stomp": "127.0.0.1:2", "native": "", "admin": "127.0.0.1:4"}},
            "last_log_index": 9,
            "commit_index": 9,
            "applied_index": 9,
            "members": [
                {"id": 1, "voter": true, "addresses": {"cluster": "127.0.0.1:1", "stomp": "127.0.0.1:2", "native": "", "admin": "127.0.0.1:4"}},
                {"id": 4, "voter": false, "addresses": {"cluster": "127.0.0.1:5", "stomp": "", "native": "", "admin": ""}},
            ],
            "followers": [{"id": 4, "matched_index": 7, "lag": 2}],
        });
        let text = status_text(&v);
        assert!(
            text.contains("node      1  role leader  term 3  serving yes"),
            "{text}"
        );
        assert!(
            text.contains("leader    1  stomp 127.0.0.1:2  native -  admin 127.0.0.1:4"),
            "{text}"
        );
        assert!(
            text.contains("log       last 9  commit 9  applied 9"),
            "{text}"
        );
        let rows: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("id")).collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert!(rows[1].starts_with("1   voter"), "{text}");
        assert!(
            rows[2].starts_with("4   learner") && rows[2].ends_with('2'),
            "{text}"
        );
    }

    #[test]
    fn a_standalone_broker_says_so() {
        let text = status_text(&json!({"role": "standalone"}));
        assert!(text.contains("standalone"), "{text}");
    }
}
