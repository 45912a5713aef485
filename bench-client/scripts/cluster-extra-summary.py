#!/usr/bin/env python3
"""Summary of a cluster-extra.sh run (cluster vs single node, ABBA rounds).

    bench-client/scripts/cluster-extra-summary.py OUT_DIR

Throughput: per scenario and run the median over the samples of the
consumed msg/s (of the sent msg/s without consumers); cluster ÷ single is
formed per round (the two runs of a round ran back to back) and given as
median (min–max) over the rounds.

Bytes written per persistent message: each node's write_bytes
(/proc/PID/io, polled every 0.1 s into io-LABEL-ROLE.csv) is interpolated at
the start and end of the bench's sample window (the first sample's end
minus 1 s, the last sample's end; the JSON's `timestamp`s are sample ends
in unix ms) and divided by the messages accepted in that window (the sum of
the samples' `producer tp`: a producer counts a message when its RECEIPT
arrives). "whole run" divides the growth over the whole poll (warm-up,
samples and the bench's drain of the queues, so acks too) by the
`failover.receipted` count (every receipt of the run).
"""
import bisect
import csv
import glob
import json
import os
import re
import statistics
import sys

PERSISTENT = "queue-p-10p10d0c-1kib-tx0"


def rate(s):
    if s["parameters"]["consumers"] > 0:
        return statistics.median(s["consumer tp"])
    return statistics.median(s["producer tp"])


def io_at(rows, t):
    """write_bytes at unix ms t, linearly interpolated between polls."""
    times = [r[0] for r in rows]
    i = bisect.bisect_left(times, t)
    if i == 0:
        return rows[0][1]
    if i >= len(rows):
        return rows[-1][1]
    (t0, b0), (t1, b1) = rows[i - 1], rows[i]
    return b0 + (b1 - b0) * (t - t0) / max(t1 - t0, 1)


def read_io(path):
    with open(path) as f:
        return [(int(r["unix_ms"]), int(r["write_bytes"])) for r in csv.DictReader(f)]


def fmt_ratio(vals):
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.2f}×"
    return f"{statistics.median(vals):.2f}× ({min(vals):.2f}–{max(vals):.2f})"


def fmt_rate(v):
    return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"


def main(out):
    runs = {}  # (config, round) -> {scenario short name: scenario}
    for path in glob.glob(os.path.join(out, "*-r*.json")):
        m = re.match(r"(cluster|single)-r(\d+)\.json$", os.path.basename(path))
        if not m:
            continue
        with open(path) as f:
            report = json.load(f)
        runs[(m.group(1), int(m.group(2)))] = {s["name"].split("/")[-1]: s for s in report["scenarios"]}
    rounds = sorted({r for _, r in runs})
    names = []
    for key in sorted(runs):
        names += [n for n in runs[key] if n not in names]

    print(f"Throughput, {len(rounds)} rounds (msg/s: median of the rounds, range):\n")
    print("| scenario | 3-node cluster msg/s | single node msg/s | cluster ÷ single, per round, median (min–max) |")
    print("|---|---|---|---|")
    for n in names:
        cells = []
        for c in ("cluster", "single"):
            vals = [rate(runs[(c, r)][n]) for r in rounds if n in runs.get((c, r), {})]
            cells.append(f"{fmt_rate(statistics.median(vals))} ({fmt_rate(min(vals))}–{fmt_rate(max(vals))})" if vals else "–")
        ratios = []
        for r in rounds:
            a, b = runs.get(("cluster", r), {}).get(n), runs.get(("single", r), {}).get(n)
            if a and b and rate(b) > 0:
                ratios.append(rate(a) / rate(b))
        errors = sum(sum(runs[k][n]["errors"]) + runs[k][n].get("errors_outside_samples", 0) for k in runs if n in runs[k])
        mark = f" ({errors} errors)" if errors else ""
        print(f"| {n} | {cells[0]} | {cells[1]} | {fmt_ratio(ratios)}{mark} |")

    print(f"\nBytes written per accepted persistent message ({PERSISTENT}, write_bytes of /proc/PID/io):\n")
    print("| run | node | accepted in samples | bytes/msg in samples | receipted in whole run | bytes/msg whole run |")
    print("|---|---|---|---|---|---|")
    per_role = {}
    for (c, r) in sorted(runs, key=lambda k: (k[1], k[0])):
        s = runs[(c, r)].get(PERSISTENT)
        if not s:
            continue
        start, end = s["timestamp"][0] - 1000, s["timestamp"][-1]
        accepted = sum(s["producer tp"])
        receipted = (s.get("failover") or {}).get("receipted", 0)
        for path in sorted(glob.glob(os.path.join(out, f"io-{c}-r{r}-*.csv"))):
            role = os.path.basename(path)[len(f"io-{c}-r{r}-"):-len(".csv")]
            rows = read_io(path)
            if len(rows) < 2:
                continue
            window = io_at(rows, end) - io_at(rows, start)
            whole = rows[-1][1] - rows[0][1]
            per = window / accepted if accepted else 0
            per_whole = whole / receipted if receipted else 0
            kind = "follower" if role.startswith("follower") else role
            per_role.setdefault((c, kind), []).append(per)
            print(f"| {c} r{r} | {role} | {accepted} | {per:,.0f} | {receipted} | {per_whole:,.0f} |")
    print("\nMedian bytes/msg in the sample window, by role (range over runs):\n")
    for (c, kind), vals in sorted(per_role.items()):
        print(f"- {c} {kind}: {statistics.median(vals):,.0f} ({min(vals):,.0f}–{max(vals):,.0f}), {len(vals)} values")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
