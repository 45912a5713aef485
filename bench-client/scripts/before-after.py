#!/usr/bin/env python3
"""Summarises before-after.sh output: per scenario and protocol the median
over rounds of each build's throughput (consumed msg/s, or produced msg/s
without consumers; median of a run's samples), and the after/before ratio
computed per round (neighbouring runs), then its median and range."""
import glob
import json
import os
import re
import statistics
import sys

out = sys.argv[1]
runs = {}  # (label, proto, round) -> {scenario: tp}
for path in glob.glob(os.path.join(out, "*-r*.json")):
    m = re.match(r"(before|after)-(\w+)-r(\d+)\.json$", os.path.basename(path))
    if not m:
        continue
    with open(path) as f:
        report = json.load(f)
    rows = {}
    for s in report["scenarios"]:
        tp = s["consumer tp"] if s["parameters"].get("consumers", 1) else s["producer tp"]
        rows[s["name"]] = statistics.median(tp) if tp else 0
    runs[(m.group(1), m.group(2), int(m.group(3)))] = rows

protos = sorted({p for _, p, _ in runs}, key=["stomp", "native"].index)
rounds = sorted({r for _, _, r in runs})
names = []
for key in sorted(runs):
    for n in runs[key]:
        if n not in names:
            names.append(n)


def fmt(v):
    return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"


print("| scenario | protocol | before msg/s (range) | after msg/s (range) | after ÷ before, median (range over rounds) |")
print("|---|---|---|---|---|")
for n in names:
    for p in protos:
        b = [runs[("before", p, r)].get(n) for r in rounds if ("before", p, r) in runs]
        a = [runs[("after", p, r)].get(n) for r in rounds if ("after", p, r) in runs]
        b = [x for x in b if x]
        a = [x for x in a if x]
        ratios = []
        for r in rounds:
            x = runs.get(("before", p, r), {}).get(n)
            y = runs.get(("after", p, r), {}).get(n)
            if x and y:
                ratios.append(y / x)
        if not b or not a:
            continue
        cell = lambda v: f"{fmt(statistics.median(v))} ({fmt(min(v))}–{fmt(max(v))})"
        rc = f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})" if ratios else "–"
        print(f"| {n} | {p} | {cell(b)} | {cell(a)} | {rc} |")
