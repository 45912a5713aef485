//! What the admin endpoint reports on `/metrics`, in the Prometheus text
//! exposition format (version 0.0.4), read from live broker state at
//! request time; and [`Sources`], what every admin route reads from.
//!
//! Per-destination series are capped by `admin.metrics_destination_limit`:
//! a broker with 100,000 temporary queues must not turn one scrape into
//! hundreds of megabytes. Past the cap the destinations holding the most
//! messages are kept, and `ferromq_metrics_destinations_omitted` says how
//! many were left out (the JSON API lists them all, paged).
//!
//! In cluster mode [`raft`] adds the `ferromq_raft_*` series from the
//! node's status (`/api/cluster` has the same numbers); a standalone broker
//! has none.

use crate::auth::Authenticator;
use crate::cluster::stages::{self, Stage, StageSnapshot};
use crate::cluster::{ClusterStatus, Role};
use crate::router::{Destination, DestinationKind, Router};
use crate::server::Admission;
use crate::store::Store;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// What the metrics are read from.
pub struct Sources {
    /// Destinations and their counters.
    pub router: Arc<Router>,
    /// Connection counts.
    pub admission: Arc<Admission>,
    /// Authentication failures.
    pub auth: Arc<Authenticator>,
    /// Store size and flush latency.
    pub store: Arc<dyn Store>,
    /// Process start, for uptime.
    pub started: Instant,
    /// The cluster role `/healthz` reports (a single node says just `ok`).
    pub leadership: Arc<crate::leadership::Leadership>,
    /// Message rates, sampled once a second.
    pub rates: super::rates::Rates,
    /// Most destinations given per-destination series on `/metrics`.
    pub metrics_destination_limit: usize,
}

/// One destination's numbers at one moment.
pub(super) struct Row {
    pub(super) name: String,
    pub(super) kind: &'static str,
    pub(super) temporary: bool,
    pub(super) waiting: usize,
    pub(super) unacked: usize,
    pub(super) consumers: usize,
    pub(super) bytes: usize,
    /// Bytes of its stored (persistent, unacknowledged) message records.
    pub(super) store_bytes: u64,
    pub(super) blocked_producers: usize,
    pub(super) enqueued: u64,
    pub(super) dequeued: u64,
    pub(super) redelivered: u64,
    pub(super) expired: u64,
    pub(super) discarded: u64,
}

pub(super) fn row(d: &Destination, store: &dyn Store) -> Row {
    let snap = d.snapshot();
    let s = &d.stats;
    Row {
        name: d.name().to_owned(),
        kind: match d.kind() {
            DestinationKind::Queue => "queue",
            DestinationKind::Topic => "topic",
        },
        temporary: d.address.is_temporary(),
        waiting: snap.waiting,
        unacked: snap.unacked,
        consumers: snap.consumers,
        bytes: snap.bytes,
        store_bytes: store.destination_bytes(d.name()),
        blocked_producers: d.blocked_producers(),
        enqueued: s.enqueued.load(Ordering::Relaxed),
        dequeued: s.dequeued.load(Ordering::Relaxed),
        redelivered: s.redelivered.load(Ordering::Relaxed),
        expired: s.expired.load(Ordering::Relaxed),
        discarded: s.discarded.load(Ordering::Relaxed),
    }
}

/// Escapes a label value (`\`, `"` and newlines, as the format requires).
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders `/metrics`.
pub fn prometheus(src: &Sources) -> String {
    let mut rows: Vec<Row> = src
        .router
        .destinations()
        .iter()
        .map(|d| row(d, src.store.as_ref()))
        .collect();
    let total_destinations = rows.len();
    let omitted = cap(&mut rows, src.metrics_destination_limit);
    let mut out = String::with_capacity(512 + rows.len() * 1024);
    let scalars: [(&str, &str, &str, u64); 7] = [
        (
            "ferromq_connections",
            "gauge",
            "Client connections open now.",
            src.admission.open() as u64,
        ),
        (
            "ferromq_connections_total",
            "counter",
            "Client connections admitted since start.",
            src.admission.admitted_total(),
        ),
        (
            "ferromq_connections_refused_total",
            "counter",
            "Connections refused by limits.max_connections or max_connections_per_ip.",
            src.admission.refused_total(),
        ),
        (
            "ferromq_auth_failures_total",
            "counter",
            "Failed authentications (STOMP CONNECT and admin endpoint).",
            src.auth.failures(),
        ),
        (
            "ferromq_auth_password_checks_total",
            "counter",
            "Argon2 password verifications run (admin requests repeating recently verified credentials skip them).",
            src.auth.verifications(),
        ),
        (
            "ferromq_destinations",
            "gauge",
            "Queues and topics that exist now.",
            total_destinations as u64,
        ),
        (
            "ferromq_uptime_seconds",
            "gauge",
            "Seconds since the broker started.",
            src.started.elapsed().as_secs(),
        ),
    ];
    for (name, kind, help, value) in scalars {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    type Column = fn(&Row) -> u64;
    let columns: [(&str, &str, &str, Column); 12] = [
        (
            "ferromq_destination_messages",
            "gauge",
            "Messages waiting for a consumer (queue depth; topic subscriber backlogs).",
            |r| r.waiting as u64,
        ),
        (
            "ferromq_destination_unacked",
            "gauge",
            "Messages delivered and not yet acknowledged.",
            |r| r.unacked as u64,
        ),
        (
            "ferromq_destination_consumers",
            "gauge",
            "Subscriptions.",
            |r| r.consumers as u64,
        ),
        (
            "ferromq_destination_bytes",
            "gauge",
            "Bytes held (waiting and unacknowledged).",
            |r| r.bytes as u64,
        ),
        (
            "ferromq_destination_store_bytes",
            "gauge",
            "Bytes of stored persistent message records not yet acknowledged or removed.",
            |r| r.store_bytes,
        ),
        (
            "ferromq_destination_blocked_producers",
            "gauge",
            "Producers waiting for producer flow control.",
            |r| r.blocked_producers as u64,
        ),
        (
            "ferromq_destination_enqueued_total",
            "counter",
            "Messages published.",
            |r| r.enqueued,
        ),
        (
            "ferromq_destination_dequeued_total",
            "counter",
            "Messages acknowledged (consumed).",
            |r| r.dequeued,
        ),
        (
            "ferromq_destination_redelivered_total",
            "counter",
            "Deliveries of messages delivered before.",
            |r| r.redelivered,
        ),
        (
            "ferromq_destination_expired_total",
            "counter",
            "Messages dropped because they expired.",
            |r| r.expired,
        ),
        (
            "ferromq_destination_discarded_total",
            "counter",
            "Topic messages dropped because a subscriber's backlog was full.",
            |r| r.discarded,
        ),
        (
            "ferromq_destination_temporary",
            "gauge",
            "1 for a temporary destination.",
            |r| u64::from(r.temporary),
        ),
    ];
    family(
        &mut out,
        "ferromq_metrics_destinations_omitted",
        "gauge",
        "Destinations left out of the per-destination series (admin.metrics_destination_limit).",
    );
    let _ = writeln!(out, "ferromq_metrics_destinations_omitted {omitted}");
    family(
        &mut out,
        "ferromq_connections_by_protocol",
        "gauge",
        "Client connections open now, by protocol.",
    );
    let by_protocol = src.router.connections().count_by_protocol();
    for protocol in ["native", "stomp"] {
        let n = by_protocol
            .iter()
            .find(|(p, _)| *p == protocol)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(
            out,
            "ferromq_connections_by_protocol{{protocol=\"{protocol}\"}} {n}"
        );
    }
    store_metrics(&mut out, src.store.as_ref());
    for (name, kind, help, value) in columns {
        family(&mut out, name, kind, help);
        for r in &rows {
            let _ = writeln!(
                out,
                "{name}{{destination=\"{}\",kind=\"{}\"}} {}",
                label(&r.name),
                r.kind,
                value(r)
            );
        }
    }
    out
}

/// The store's gauges and its flush latency histogram.
fn store_metrics(out: &mut String, store: &dyn Store) {
    let Some(m) = store.metrics() else {
        return;
    };
    family(
        out,
        "ferromq_store_live_bytes",
        "gauge",
        "Bytes of stored persistent messages not yet acknowledged.",
    );
    let _ = writeln!(out, "ferromq_store_live_bytes {}", m.live_bytes);
    family(
        out,
        "ferromq_store_disk_bytes",
        "gauge",
        "Bytes the store's files take on disk.",
    );
    let _ = writeln!(out, "ferromq_store_disk_bytes {}", m.disk_bytes);
    family(
        out,
        "ferromq_store_resident_bytes",
        "gauge",
        "Bytes of stored message bodies held in memory (bounded by store.memory_limit).",
    );
    let _ = writeln!(out, "ferromq_store_resident_bytes {}", m.resident_bytes);
    family(
        out,
        "ferromq_store_paged_messages",
        "gauge",
        "Stored messages whose body is paged out to disk, read back when dispatched.",
    );
    let _ = writeln!(out, "ferromq_store_paged_messages {}", m.paged_messages);
    family(
        out,
        "ferromq_store_messages_written_total",
        "counter",
        "Persistent messages written to disk.",
    );
    let _ = writeln!(
        out,
        "ferromq_store_messages_written_total {}",
        m.messages_written
    );
    family(
        out,
        "ferromq_store_messages_elided_total",
        "counter",
        "Persistent messages consumed and acknowledged before they reached the disk, so never written.",
    );
    let _ = writeln!(
        out,
        "ferromq_store_messages_elided_total {}",
        m.messages_elided
    );
    let name = "ferromq_store_flush_seconds";
    family(out, name, "histogram", "Store flush (fsync) latency.");
    let h = &m.flush_latency;
    for (bound, count) in &h.buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", h.sum_seconds);
    let _ = writeln!(out, "{name}_count {}", h.count);
}

/// The `ferromq_raft_*` series of a cluster node. An index not known yet
/// (an empty log) has no sample rather than a made-up 0: indexes start at 0.
pub fn raft(out: &mut String, status: &ClusterStatus) {
    let gauges: [(&str, &str, Option<u64>); 6] = [
        (
            "ferromq_raft_node_id",
            "This node's id.",
            Some(status.node_id),
        ),
        (
            "ferromq_raft_term",
            "The current Raft term.",
            Some(status.term),
        ),
        (
            "ferromq_raft_leader_id",
            "The leader's node id as this node knows it (0: none, an election is running).",
            Some(status.leader.as_ref().map_or(0, |l| l.id)),
        ),
        (
            "ferromq_raft_last_log_index",
            "The last index in this node's log.",
            status.last_log_index,
        ),
        (
            "ferromq_raft_commit_index",
            "The last index this node knows to be on a majority's disk.",
            status.commit_index,
        ),
        (
            "ferromq_raft_applied_index",
            "The last index applied to this node's store.",
            status.applied_index,
        ),
    ];
    for (name, help, value) in gauges {
        family(out, name, "gauge", help);
        if let Some(value) = value {
            let _ = writeln!(out, "{name} {value}");
        }
    }
    let name = "ferromq_raft_role";
    family(
        out,
        name,
        "gauge",
        "1 for this node's Raft role, 0 for the others.",
    );
    for (role, label) in [
        (Role::Leader, "leader"),
        (Role::Follower, "follower"),
        (Role::Candidate, "candidate"),
        (Role::Learner, "learner"),
        (Role::Stopped, "stopped"),
    ] {
        let on = u8::from(status.role == role);
        let _ = writeln!(out, "{name}{{role=\"{label}\"}} {on}");
    }
    let name = "ferromq_raft_fenced";
    family(out, name, "gauge", "1 while this node must send no receipts (not the leader, or a leader without a quorum's recent acknowledgement).");
    let _ = writeln!(out, "{name} {}", u8::from(status.fenced));
    let name = "ferromq_raft_members";
    family(
        out,
        name,
        "gauge",
        "Members of the current membership, voters and learners.",
    );
    let voters = status.members.iter().filter(|m| m.voter).count();
    let learners = status.members.len() - voters;
    let _ = writeln!(out, "{name}{{kind=\"voter\"}} {voters}");
    let _ = writeln!(out, "{name}{{kind=\"learner\"}} {learners}");
    let name = "ferromq_raft_follower_lag";
    family(
        out,
        name,
        "gauge",
        "On the leader: entries each follower or learner lacks.",
    );
    for f in &status.followers {
        let _ = writeln!(out, "{name}{{node=\"{}\"}} {}", f.id, f.lag);
    }
    if let Some(millis) = status.millis_since_quorum_ack {
        let name = "ferromq_raft_quorum_ack_age_seconds";
        family(
            out,
            name,
            "gauge",
            "On the leader: time since a quorum last acknowledged it.",
        );
        let _ = writeln!(out, "{name} {}", millis as f64 / 1000.0);
    }
    let counters = [
        (
            "ferromq_raft_role_changes_total",
            "Role changes of this node since it started.",
            status.role_changes,
        ),
        (
            "ferromq_raft_elections_total",
            "Terms this node has seen begin since it started (one election each).",
            status.elections,
        ),
        (
            "ferromq_raft_campaigns_total",
            "Elections this node started (after a quorum's pre-vote) since it started.",
            status.campaigns,
        ),
        (
            "ferromq_raft_pre_votes_refused_total",
            "Rounds of pre-votes this node asked for without getting a quorum.",
            status.pre_votes_refused,
        ),
    ];
    for (name, help, value) in counters {
        family(out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    raft_stages(out, &stages::snapshot());
}

/// `ferromq_raft_stage_seconds`: where a replicated commit's time goes, one
/// histogram per stage (`cluster::stages` says what each one spans).
fn raft_stages(out: &mut String, snapshot: &[(Stage, StageSnapshot)]) {
    let name = "ferromq_raft_stage_seconds";
    family(
        out,
        name,
        "histogram",
        "Time of each stage of a replicated commit, from the writer taking a batch to its receipts.",
    );
    for (stage, h) in snapshot {
        let stage = stage.name();
        for (bound, count) in &h.buckets {
            let _ = writeln!(
                out,
                "{name}_bucket{{stage=\"{stage}\",le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{stage=\"{stage}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "{name}_sum{{stage=\"{stage}\"}} {}", h.sum_seconds);
        let _ = writeln!(out, "{name}_count{{stage=\"{stage}\"}} {}", h.count);
    }
}

/// Keeps the `limit` rows holding the most messages (then by name), in
/// name order; returns how many were dropped.
fn cap(rows: &mut Vec<Row>, limit: usize) -> usize {
    if rows.len() <= limit {
        return 0;
    }
    let omitted = rows.len() - limit;
    rows.sort_by(|a, b| b.waiting.cmp(&a.waiting).then_with(|| a.name.cmp(&b.name)));
    rows.truncate(limit);
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    omitted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, waiting: usize) -> Row {
        Row {
            name: name.into(),
            kind: "queue",
            temporary: false,
            waiting,
            unacked: 0,
            consumers: 0,
            bytes: 0,
            store_bytes: 0,
            blocked_producers: 0,
            enqueued: 0,
            dequeued: 0,
            redelivered: 0,
            expired: 0,
            discarded: 0,
        }
    }

    #[test]
    fn the_cap_keeps_the_deepest_destinations_in_name_order() {
        let mut rows = vec![named("a", 1), named("b", 9), named("c", 5), named("d", 0)];
        assert_eq!(cap(&mut rows, 2), 2);
        let names: Vec<_> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(cap(&mut rows, 10), 0);
    }

    #[test]
    fn raft_stages_are_one_histogram_labelled_by_stage() {
        let h = StageSnapshot {
            buckets: vec![(0.001, 2), (0.005, 3)],
            count: 4,
            sum_seconds: 1.5,
        };
        let mut out = String::new();
        raft_stages(
            &mut out,
            &[(Stage::LeaderFlush, h.clone()), (Stage::Follower, h)],
        );
        let has = |line: &str| out.lines().any(|l| l == line);
        for line in [
            "# TYPE ferromq_raft_stage_seconds histogram",
            "ferromq_raft_stage_seconds_bucket{stage=\"leader_flush\",le=\"0.001\"} 2",
            "ferromq_raft_stage_seconds_bucket{stage=\"follower\",le=\"0.005\"} 3",
            "ferromq_raft_stage_seconds_bucket{stage=\"follower\",le=\"+Inf\"} 4",
            "ferromq_raft_stage_seconds_sum{stage=\"leader_flush\"} 1.5",
            "ferromq_raft_stage_seconds_count{stage=\"follower\"} 4",
        ] {
            assert!(has(line), "missing {line} in\n{out}");
        }
        assert_eq!(out.matches("# TYPE").count(), 1);
    }

    #[test]
    fn raft_series_describe_the_status() {
        use crate::cluster::{FollowerStatus, LeaderInfo, Member, MemberStatus};
        let member = |id, voter| MemberStatus {
            id,
            voter,
            addresses: Member::default(),
        };
        let status = ClusterStatus {
            cluster_id: "c".into(),
            node_id: 1,
            role: Role::Leader,
            term: 5,
            leader: Some(LeaderInfo {
                id: 1,
                addresses: Member::default(),
            }),
            last_log_index: Some(12),
            commit_index: Some(11),
            applied_index: None,
            snapshot_index: None,
            purged_index: None,
            millis_since_quorum_ack: Some(250),
            fenced: false,
            members: vec![member(1, true), member(2, true), member(4, false)],
            followers: vec![FollowerStatus {
                id: 2,
                matched_index: Some(10),
                lag: 2,
            }],
            role_changes: 2,
            elections: 1,
            campaigns: 1,
            pre_votes_refused: 3,
        };
        let mut out = String::new();
        raft(&mut out, &status);
        let has = |line: &str| out.lines().any(|l| l == line);
        for line in [
            "ferromq_raft_term 5",
            "ferromq_raft_leader_id 1",
            "ferromq_raft_commit_index 11",
            "ferromq_raft_role{role=\"leader\"} 1",
            "ferromq_raft_role{role=\"follower\"} 0",
            "ferromq_raft_members{kind=\"voter\"} 2",
            "ferromq_raft_members{kind=\"learner\"} 1",
            "ferromq_raft_follower_lag{node=\"2\"} 2",
            "ferromq_raft_quorum_ack_age_seconds 0.25",
            "ferromq_raft_role_changes_total 2",
            "ferromq_raft_elections_total 1",
            "ferromq_raft_campaigns_total 1",
            "ferromq_raft_pre_votes_refused_total 3",
        ] {
            assert!(has(line), "{line} missing from:\n{out}");
        }
        // No sample for an index not known yet.
        assert!(
            !out.lines()
                .any(|l| l.starts_with("ferromq_raft_applied_index ")),
            "{out}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("/queue/a\"b\\c\nd"), "/queue/a\\\"b\\\\c\\nd");
    }
}
