#!/usr/bin/env python3
"""Summarises a cluster-inflight.sh run: per configuration, the median
(min-max) over rounds of the producers' msg/s (median of the bench's
one-second samples), each cluster configuration's ratio to the single node
and to the first configuration, formed per round, and messages per Raft
batch within the sample window (receipted messages over the growth of the
leader's applied index, interpolated at the window's ends).

    bench-client/scripts/cluster-inflight-summary.py OUT_DIR
"""
import csv
import glob
import json
import os
import re
import statistics
import sys


def scenario(path):
    with open(path) as f:
        return json.load(f)["scenarios"][-1]


def index_at(rows, t):
    """The applied index at unix ms t, linearly interpolated."""
    for (t0, i0), (t1, i1) in zip(rows, rows[1:]):
        if t0 <= t <= t1:
            return i0 + (i1 - i0) * (t - t0) / max(t1 - t0, 1)
    return None


def main(out):
    runs = {}
    for path in glob.glob(os.path.join(out, "*-r*.json")):
        m = re.match(r"(.+)-r(\d+)\.json$", os.path.basename(path))
        if not m:
            continue
        config, rnd = m.group(1), int(m.group(2))
        s = scenario(path)
        tp = statistics.median(s["producer tp"])
        per_batch = None
        idx = os.path.join(out, f"index-{config}-r{rnd}.csv")
        if os.path.exists(idx):
            with open(idx) as f:
                rows = [(int(r["unix_ms"]), int(r["index"])) for r in csv.DictReader(f) if r["index"]]
            ends = s["timestamp"]
            start, end = ends[0] - 1000, ends[-1]
            a, b = index_at(rows, start), index_at(rows, end)
            if a is not None and b is not None and b > a:
                per_batch = sum(s["producer tp"]) / (b - a)
        runs.setdefault(config, {})[rnd] = (tp, per_batch)
    configs = sorted(runs, key=lambda c: (c == "single", -int(c) if c.isdigit() else 0))
    first = next((c for c in configs if c != "single"), None)

    def rng(values):
        values = [v for v in values if v is not None]
        if not values:
            return "n/a"
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    print("| config | msg/s sent, median (min-max) | ÷ single, per round | ÷ max_in_flight=%s, per round | messages per Raft batch |" % first)
    print("|---|---|---|---|---|")
    for c in configs:
        rounds = runs[c]
        tps = [rounds[r][0] for r in sorted(rounds)]
        vs_single = [rounds[r][0] / runs["single"][r][0] for r in rounds if "single" in runs and r in runs["single"]]
        vs_first = [rounds[r][0] / runs[first][r][0] for r in rounds if first and r in runs[first]]
        batches = [rounds[r][1] for r in sorted(rounds)]
        name = "single node" if c == "single" else f"cluster, max_in_flight = {c}"
        print(
            f"| {name} | {statistics.median(tps):,.0f} ({min(tps):,.0f}-{max(tps):,.0f}) | "
            f"{rng(vs_single) if c != 'single' else '1'} | {rng(vs_first) if c != 'single' else ''} | "
            f"{rng(batches) if c != 'single' else ''} |"
        )


if __name__ == "__main__":
    main(sys.argv[1])
