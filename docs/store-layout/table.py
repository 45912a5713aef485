#!/usr/bin/env python3
"""Prints the markdown tables of docs/store-layout.md from the result lines:
one row per configuration, each figure as the range over its runs."""
import json
import sys
from collections import OrderedDict


def config_of(r):
    parts = [r["layout"]]
    if r["mode"] != "LowSpace":
        parts.append(r["mode"])
    if r["segment_size"] != 524288:
        parts.append(f"segment {r['segment_size'] // 1024} KiB")
    if r["cache"] != 134217728:
        parts.append(f"cache {r['cache'] >> 20} MiB")
    if r["flush_every_ms"] is not None:
        parts.append(f"flush_every_ms {r['flush_every_ms']}")
    if r["layout"] == "Wal" and r.get("index_flush_every", 100) != 100:
        parts.append(f"index flush every {r['index_flush_every']}")
    if r.get("index_per_commit"):
        parts.append("index per commit")
    if r["inline_max"]:
        parts.append(f"inline ≤ {r['inline_max']}")
    return ", ".join(parts)


def rng(values, fmt):
    lo, hi = min(values), max(values)
    a, b = fmt(lo), fmt(hi)
    return a if a == b else f"{a}–{b}"


def kb(v):
    return f"{v / 1000:.1f}"


def mb(v):
    return f"{v / 1e6:.1f}"


def gb(v):
    return f"{v / 1e9:.2f}"


def rate(v):
    return f"{v:,.0f}"


for path in sys.argv[1:]:
    groups = OrderedDict()
    for line in open(path):
        r = json.loads(line)
        groups.setdefault((config_of(r), r["per_flush"], r["messages"], r["body"]), []).append(r)
    print(f"\n{path}\n")
    print("| layout / settings | msgs per flush | N | runs | written per msg, fill (KB) | per flush (KB) "
          "| written per msg, drain (KB) | disk after fill (MB) | after drain (MB) | after reopen (MB) "
          "| fill msg/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (cfg, k, n, body), rs in groups.items():
        col = lambda f: [r[f] for r in rs]
        print(f"| {cfg} | {k} | {n} | {len(rs)} | {rng(col('fill_bytes_per_msg'), kb)} "
              f"| {rng(col('fill_bytes_per_flush'), kb)} | {rng(col('drain_bytes_per_msg'), kb)} "
              f"| {rng(col('disk_alloc_after_fill'), mb)} | {rng(col('disk_alloc_after_drain'), mb)} "
              f"| {rng(col('disk_alloc_after_reopen'), mb)} | {rng(col('fill_msgs_per_s'), rate)} |")
