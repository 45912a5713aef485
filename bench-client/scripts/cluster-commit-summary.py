#!/usr/bin/env python3
"""Summarises a cluster-commit.sh run.

Two tables: per configuration the producers' msg/s (median of the bench's
one-second samples; median and min-max over rounds), its ratio to the
single node and to `base` formed per round, and the receipt latency p50
and p99 (the bench's HDR histogram, median over rounds); then, for each
configuration whose binary has them, the per-stage breakdown of a
replicated commit: median and p99 of ferromq_raft_stage_seconds over all
its rounds pooled (the /metrics histograms after the run minus before,
quantiles interpolated linearly within a bucket, as Prometheus'
histogram_quantile does), the leader's stages from the leader and the
per-append stages (log_write, log_flush, rpc_append) from the followers.

    bench-client/scripts/cluster-commit-summary.py OUT_DIR

scripts/bench-table.py's `cluster-commit rates|stages DIR` prints the same
tables (BENCHMARKS.md's Table: lines) through `rates` and `stages` here.
"""
import csv
import glob
import json
import os
import re
import statistics
import sys

STAGES = ["gather", "encode", "propose", "leader_write", "leader_flush", "send", "follower",
          "commit", "apply", "respond", "receipt", "total"]
FOLLOWER_STAGES = ["log_write", "log_flush", "rpc_append"]
LINE = re.compile(r'^ferromq_raft_stage_seconds_bucket\{stage="([a-z_]+)",le="([^"]+)"\} (\d+)$')
SUM = re.compile(r'^ferromq_raft_stage_seconds_sum\{stage="([a-z_]+)"\} (\S+)$')


def buckets(path):
    """{stage: [(le, cumulative count)]} from one /metrics file."""
    out = {}
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            m = LINE.match(line.strip())
            if m:
                le = float("inf") if m.group(2) == "+Inf" else float(m.group(2))
                out.setdefault(m.group(1), []).append((le, int(m.group(3))))
            m = SUM.match(line.strip())
            if m:
                # The sum rides as a pseudo-bucket "sum" (seconds).
                out.setdefault(m.group(1), []).append(("sum", float(m.group(2))))
    return out


def add(total, after, before):
    for stage, rows in after.items():
        prev = dict(before.get(stage, []))
        acc = total.setdefault(stage, {})
        for le, count in rows:
            acc[le] = acc.get(le, 0) + count - prev.get(le, 0)


def quantile(rows, q):
    """rows: {le: cumulative count}; linear within the bucket."""
    pairs = sorted((le, c) for le, c in rows.items() if le != "sum")
    n = pairs[-1][1] if pairs else 0
    if n <= 0:
        return None
    rank = q * n
    lo_le, lo_count = 0.0, 0
    for le, count in pairs:
        if count >= rank:
            if le == float("inf"):
                return lo_le
            width = count - lo_count
            return lo_le + (le - lo_le) * ((rank - lo_count) / width if width else 1)
        lo_le, lo_count = le, count
    return pairs[-1][0]


def count(rows):
    return rows.get(float("inf"), 0)


def mean(rows):
    n = count(rows)
    return rows.get("sum", 0.0) / n if n else None


def ms(seconds):
    return "n/a" if seconds is None else f"{seconds * 1000:.3f}"


def leaders_of(out):
    leaders = {}
    with open(os.path.join(out, "runs.tsv")) as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row.get("config") and row.get("leader") not in (None, "-"):
                leaders[(row["config"], int(row["round"]))] = row["leader"]
    return leaders


def rates(out):
    """The throughput and receipt latency table, as lines."""
    runs = {}
    for path in glob.glob(os.path.join(out, "*-r*.json")):
        m = re.match(r"(base|new|single)-r(\d+)\.json$", os.path.basename(path))
        if not m:
            continue
        with open(path) as f:
            s = json.load(f)["scenarios"][-1]
        hdr = s["latency_hdr"]["receipt"]
        runs.setdefault(m.group(1), {})[int(m.group(2))] = (
            statistics.median(s["producer tp"]), hdr["p50"] / 1e6, hdr["p99"] / 1e6)
    order = [c for c in ("base", "new", "single") if c in runs]

    def rng(values):
        if not values:
            return ""
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    lines = ["| config | msg/s sent, median (min-max) | ÷ single, per round | ÷ base, per round | receipt p50 ms | receipt p99 ms |",
             "|---|---|---|---|---|---|"]
    for c in order:
        rounds = runs[c]
        tps = [rounds[r][0] for r in sorted(rounds)]
        vs_single = [rounds[r][0] / runs["single"][r][0] for r in rounds if c != "single" and r in runs.get("single", {})]
        vs_base = [rounds[r][0] / runs["base"][r][0] for r in rounds if c not in ("base", "single") and r in runs.get("base", {})]
        name = {"base": "cluster, base", "new": "cluster, new", "single": "single node (new)"}[c]
        lines.append(f"| {name} | {statistics.median(tps):,.0f} ({min(tps):,.0f}-{max(tps):,.0f}) | {rng(vs_single)} | "
                     f"{rng(vs_base)} | {statistics.median(r[1] for r in rounds.values()):.2f} | "
                     f"{statistics.median(r[2] for r in rounds.values()):.2f} |")
    return lines


def stages(out, config):
    """The per-stage table of one configuration's runs, as lines (none
    when its binary has no stage histograms)."""
    leaders = leaders_of(out)
    lines = []
    for c in (config,):
        leader_total, follower_total = {}, {}
        for (config, rnd), leader in leaders.items():
            if config != c:
                continue
            for node in "123":
                after = buckets(os.path.join(out, f"metrics-{c}-r{rnd}-n{node}-after.prom"))
                before = buckets(os.path.join(out, f"metrics-{c}-r{rnd}-n{node}-before.prom"))
                add(leader_total if node == leader else follower_total, after, before)
        if not leader_total:
            continue
        lines.append(f"| stage ({c}) | where | count | median ms | p99 ms | mean ms |")
        lines.append("|---|---|---|---|---|---|")
        for stage in STAGES:
            rows = leader_total.get(stage, {})
            n = count(rows)
            lines.append(f"| {stage} | leader | {n:,} | {ms(quantile(rows, 0.5))} | {ms(quantile(rows, 0.99))} | {ms(mean(rows))} |")
        for stage in FOLLOWER_STAGES:
            rows = follower_total.get(stage, {})
            n = count(rows)
            lines.append(f"| {stage} | followers | {n:,} | {ms(quantile(rows, 0.5))} | {ms(quantile(rows, 0.99))} | {ms(mean(rows))} |")
    return lines


def main(out):
    print("\n".join(rates(out)))
    for config in ("base", "new"):
        table = stages(out, config)
        if table:
            print()
            print("\n".join(table))


if __name__ == "__main__":
    main(sys.argv[1])
