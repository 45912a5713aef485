#!/usr/bin/env python3
"""Markdown tables from ferromq-bench results files of several brokers.

    scripts/bench-table.py OUTDIR/ferromq.json OUTDIR/activemq.json ... > table.md

The first file is the reference: every other broker gets a ratio column
(first broker's consumed msg/s divided by theirs). Prints a summary by
scenario group and kind (geometric mean of the ratios where both moved messages, how
many of those the first broker wins, and in how many the other moved
nothing: failed, refused connections, or was unmeasured), then one row per scenario: median consumed msg/s of
the samples (sent msg/s where nothing consumes) and the end-to-end p99 over
the whole scenario. Scenarios missing from a file are shown as "-".
"""
import json
import math
import statistics
import sys
from collections import defaultdict


def load(path):
    with open(path) as f:
        run = json.load(f)
    name = run["benchmark_settings"].get("broker_name") or path
    scenarios = {s["name"]: s for s in run["scenarios"]}
    return name, scenarios


def rate(s):
    consumed = statistics.median(s["consumer tp"]) if s["consumer tp"] else 0
    if consumed > 0:
        return consumed, ""
    sent = statistics.median(s["producer tp"]) if s["producer tp"] else 0
    return sent, " sent"


def p99(s):
    ns = s.get("latency_hdr", {}).get("e2e", {}).get("p99", 0)
    if not ns:
        ns = s.get("latency_hdr", {}).get("receipt", {}).get("p99", 0)
    return ns


def human_rate(v):
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def human_ns(ns):
    if ns == 0:
        return "-"
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e3:.0f} µs"


def kind(name):
    group, rest = name.split("/", 1)
    mode = rest.split("-")[0]
    persistence = "persistent" if "-p-" in rest else "non-persistent"
    return f"{group} {mode} {persistence}"


def main(paths):
    runs = [load(p) for p in paths]
    ref_name, ref = runs[0]
    others = runs[1:]
    names = list(ref)
    for _, scenarios in others:
        names += [n for n in scenarios if n not in names]

    print("| scenario kind | scenarios | " + " | ".join(
        f"{ref_name} ÷ {o} (geo. mean) | {ref_name} faster | {o} moved nothing"
        for o, _ in others) + " |")
    print("|---|---|" + "---|---|---|" * len(others))
    by_kind = defaultdict(list)
    for n in names:
        by_kind[kind(n)].append(n)
    for k in sorted(by_kind):
        cells = []
        for _, scenarios in others:
            ratios = []
            nothing = 0
            for n in by_kind[k]:
                if n in ref and n in scenarios:
                    a, b = rate(ref[n])[0], rate(scenarios[n])[0]
                    if a > 0 and b > 0:
                        ratios.append(a / b)
                    elif a > 0:
                        nothing += 1
            if ratios:
                geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
                wins = sum(r > 1 for r in ratios)
                cells += [f"{geo:.1f}×", f"{wins}/{len(ratios)}", str(nothing)]
            else:
                cells += ["-", "-", str(nothing)]
        print(f"| {k} | {len(by_kind[k])} | " + " | ".join(cells) + " |")
    print()
    header = ["scenario"] + [f"{n} msg/s (p99)" for n, _ in runs]
    header += [f"÷ {o}" for o, _ in others]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for n in names:
        row = [n]
        for _, scenarios in runs:
            s = scenarios.get(n)
            if s is None:
                row.append("-")
            else:
                v, suffix = rate(s)
                row.append(f"{human_rate(v)}{suffix} ({human_ns(p99(s))})")
        for _, scenarios in others:
            if n in ref and n in scenarios:
                a, b = rate(ref[n])[0], rate(scenarios[n])[0]
                row.append(f"{a / b:.1f}×" if b > 0 else ("∞" if a > 0 else "-"))
            else:
                row.append("-")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
