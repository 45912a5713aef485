#!/usr/bin/env python3
"""Summarises native-vs-stomp.sh output: per scenario and protocol the median
over rounds of the consumed msg/s (median of a run's samples) and of the
end-to-end p99, and the native/STOMP (and STOMP/ActiveMQ) ratios computed
per round (back-to-back runs), then their median and range."""
import glob
import json
import os
import re
import statistics
import sys

out = sys.argv[1]
runs = {}  # (proto, round) -> {scenario: (tp, p99_ns)}
for path in glob.glob(os.path.join(out, "*-r*.json")):
    m = re.match(r"(\w+)-r(\d+)\.json$", os.path.basename(path))
    if not m:
        continue
    with open(path) as f:
        report = json.load(f)
    rows = {}
    for s in report["scenarios"]:
        tp = s["consumer tp"] if s["parameters"].get("consumers", 1) else s["producer tp"]
        p99 = ((s.get("latency_hdr") or {}).get("e2e") or {}).get("p99", 0)
        rows[s["name"]] = (statistics.median(tp) if tp else 0, p99)
    runs[(m.group(1), int(m.group(2)))] = rows

protos = sorted({p for p, _ in runs}, key=["stomp", "native", "activemq"].index)
rounds = sorted({r for _, r in runs})
names = []
for (p, r), rows in sorted(runs.items()):
    for n in rows:
        if n not in names:
            names.append(n)


def fmt_rate(v):
    return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"


def fmt_ns(v):
    if v >= 1e6:
        return f"{v / 1e6:.1f} ms"
    return f"{v / 1e3:.0f} µs"


def ratio_cell(values):
    if not values:
        return "–"
    med = statistics.median(values)
    return f"{med:.2f}× ({min(values):.2f}–{max(values):.2f})"


head = ["scenario"] + [f"{p} msg/s (p99)" for p in protos]
head += ["native ÷ STOMP msg/s", "native ÷ STOMP p99"]
if "activemq" in protos:
    head += ["ferromq STOMP ÷ ActiveMQ msg/s"]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for n in names:
    cells = [n.replace("custom/", "")]
    for p in protos:
        got = [runs[(p, r)][n] for r in rounds if n in runs.get((p, r), {})]
        if not got:
            cells.append("–")
            continue
        tp = statistics.median(g[0] for g in got)
        p99 = statistics.median(g[1] for g in got)
        cells.append(f"{fmt_rate(tp)} ({fmt_ns(p99)})")

    def ratios(a, b, i):
        vals = []
        for r in rounds:
            x, y = runs.get((a, r), {}).get(n), runs.get((b, r), {}).get(n)
            if x and y and y[i] > 0:
                vals.append(x[i] / y[i])
        return vals

    cells.append(ratio_cell(ratios("native", "stomp", 0)))
    cells.append(ratio_cell(ratios("native", "stomp", 1)))
    if "activemq" in protos:
        cells.append(ratio_cell(ratios("stomp", "activemq", 0)))
    print("| " + " | ".join(cells) + " |")
print(f"\n{len(rounds)} rounds; ratios are per round (back-to-back runs), median (min–max).")
