#!/usr/bin/env python3
"""Markdown tables from committed benchmark results files.

Every table of results in BENCHMARKS.md, README.md, docs/ and
bench-client/results/ is the output of one of these commands, named on a
line `Table: `scripts/bench-table.py ...`` right above it (a blank line
between), and `check` regenerates them all:

    scripts/bench-table.py summary FERROMQ.json OTHER.json ...   ratios by scenario kind
    scripts/bench-table.py rows FERROMQ.json OTHER.json ...      one row per scenario
    scripts/bench-table.py losses FERROMQ.json OTHER.json ...    scenarios ferromq loses
    scripts/bench-table.py could-not-run FERROMQ.json OTHER.json ...
    scripts/bench-table.py staging FERROMQ.json OTHER.json ...   queue_staging, as counts
    scripts/bench-table.py rounds DIR         native-vs-stomp.sh rounds (PROTO-rN.json)
    scripts/bench-table.py before-after [--round N] DIR [DIR2]
                                              before-after.sh rounds (LABEL-PROTO-rN.json)
    scripts/bench-table.py store-layout FILE.jsonl
                                              scripts/store-layout.sh runs, docs/store-layout.md
    scripts/bench-table.py admin-timing DIR [DIR...]
                                              admin-api-timing.sh runs (timings.jsonl)
    scripts/bench-table.py body-files bytes|large|small DIR
                                              body-files.sh runs (bytes.jsonl; large.jsonl, large-*.json; small-*.json)
    scripts/bench-table.py cluster-commit rates|stages-base|stages-new DIR
                                              bench-client/scripts/cluster-commit.sh runs (cluster-commit-summary.py)
    scripts/bench-table.py check [--write]    regenerate every table and diff (exit 1)
    scripts/bench-table.py A.json B.json ...  summary, a blank line, rows

Options before the files: `--only SUBSTR` keeps the scenarios whose name
contains SUBSTR.

What a scenario measures: the median over its samples of the consumed msg/s
when it has consumers, of the sent msg/s when it has none ("sent"). A
scenario "ran cleanly" on a broker when the broker's JSON records no error
for it (no error in any sample, none outside the samples, no `last_error`)
and it has samples. The first file is ferromq; for each other broker:

- a ratio (ferromq ÷ other) is formed only where both ran cleanly and both
  moved messages; the summary gives their geometric mean and, beside it,
  their median;
- "ferromq faster" counts, out of the scenarios both ran cleanly, those
  with a ratio above 1 and those where only the other broker moved nothing;
  a scenario where ferromq moved nothing, or recorded errors, is a loss,
  and `losses` lists it;
- scenarios where the other broker recorded errors (timed out connecting,
  broken pipes, out of memory) and ferromq did not are left out of the
  ratios and counted, and listed by `could-not-run`, on their own;
- queue_staging scenarios are left out of the ratios: their producers fill
  a queue and then wait, so a median rate says little. `staging` reports how
  many messages each broker took and gave back instead.

`rounds` reads the files native-vs-stomp.sh writes (stomp-rN.json,
native-rN.json, activemq-rN.json; N the round): medians over the rounds of
each run's median msg/s and end-to-end p99, and ratios formed per round
(the runs of one round ran back to back), given as median (min–max).

`before-after` reads the files before-after.sh writes
(before-PROTO-rN.json, after-PROTO-rN.json): per scenario and protocol the
median over rounds of each build's msg/s (the median of a run's samples,
as above: consumed, or sent without consumers) with its range over rounds,
and the after ÷ before ratio formed per round (the two builds ran back to
back within a round), as median (min–max); one value where only one round
has both builds. With DIR2 (another run of the
same script, often a subset of the scenarios) a last column gives DIR2's
ratios. `--round N` keeps only round N (one value per cell). A
† marks a value from a run that recorded errors for the scenario.
"""
import glob
import json
import math
import os
import re
import shlex
import statistics
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISPLAY = {"activemq": "ActiveMQ", "rabbitmq": "RabbitMQ", "stomp": "STOMP"}
STAGING = "queue_staging"
MARKER = re.compile(r"^Table: `scripts/bench-table\.py ([^`]+)`")


# ---- reading ---------------------------------------------------------------


def load(path):
    with open(path) as f:
        run = json.load(f)
    name = run["benchmark_settings"].get("broker_name") or path
    scenarios = {s["name"]: s for s in run["scenarios"]}
    return DISPLAY.get(name, name), scenarios


def consumers(s):
    return s["parameters"].get("consumers", 1)


def rate(s):
    """What the scenario measures: (msg/s, suffix)."""
    if consumers(s):
        tp = s["consumer tp"]
        return (statistics.median(tp) if tp else 0), ""
    tp = s["producer tp"]
    return (statistics.median(tp) if tp else 0), " sent"


def failed(s):
    """The broker recorded errors for the scenario, or it has no samples."""
    return bool(
        sum(s.get("errors") or [])
        or s.get("errors_outside_samples")
        or s.get("last_error")
        or not s["producer tp"]
    )


def p99(s):
    """(nanoseconds, label): end-to-end p99, else send→receipt p99."""
    hdr = s.get("latency_hdr") or {}
    ns = (hdr.get("e2e") or {}).get("p99", 0)
    if ns:
        return ns, ""
    ns = (hdr.get("receipt") or {}).get("p99", 0)
    return ns, "receipt p99 " if ns else ""


def kind(name):
    group, rest = name.split("/", 1)
    mode = rest.split("-")[0]
    persistence = "persistent" if "-p-" in rest else "non-persistent"
    return f"{group} {mode} {persistence}"


def short(name):
    return name[len("custom/"):] if name.startswith("custom/") else name


# ---- formatting ------------------------------------------------------------


def human_rate(v):
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    if v >= 10 or v == 0:
        return f"{v:.0f}"
    return f"{v:.1f}"


def human_ns(ns):
    if ns == 0:
        return "-"
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e3:.0f} µs"


def ratio(r):
    # Two decimals below 1 so that a heavy loss (0.06×) does not read as
    # 0.1× and a narrow one (0.99×) not as a tie; none at 100 and above,
    # where the tenths mean nothing.
    if r == 0:
        return "0×"
    if r >= 100:
        return f"{r:.0f}×"
    if r >= 1:
        return f"{r:.1f}×"
    return f"{r:.2f}×"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def cell(s):
    if s is None:
        return "-"
    v, suffix = rate(s)
    ns, label = p99(s)
    mark = " †" if failed(s) else ""
    if v == 0 and consumers(s) and s["producer tp"]:
        # Nothing consumed: say what the producers managed, so a zero reads
        # as "delivered nothing", not as "did nothing".
        suffix = f", {human_rate(statistics.median(s['producer tp']))} sent"
    return f"{human_rate(v)}{suffix} ({label}{human_ns(ns)}){mark}"


# ---- comparing brokers -----------------------------------------------------


def compare(a, b):
    """One scenario, ferromq (a) against another broker (b).

    Returns (verdict, ratio): verdict is "ours-failed" (a recorded errors)
    or "ours-zero" (a moved nothing), both losses whatever b did;
    "other-failed" (b recorded errors), "other-zero" (b moved nothing
    without an error: a win without a ratio) or "ratio"."""
    x, y = rate(a)[0], rate(b)[0]
    if failed(a):
        return "ours-failed", None
    if x == 0:
        return "ours-zero", None
    if failed(b):
        return "other-failed", None
    if y == 0:
        return "other-zero", None
    return "ratio", x / y


def common(ref, other, only):
    names = [n for n in ref if n in other and only in n]
    return [n for n in names if not n.startswith(STAGING + "/")]


def geo_mean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


def cmd_summary(runs, only):
    ref_name, ref = runs[0]
    header = ["scenario kind", "scenarios"]
    for o, _ in runs[1:]:
        header += [
            f"{ref_name} ÷ {o}: geo. mean",
            "median",
            f"{ref_name} faster",
            f"{o} could not run",
            f"{o} moved nothing, no error",
        ]
    header += [f"{ref_name} moved nothing or failed"]
    by_kind = defaultdict(list)
    for n in ref:
        if only in n and not n.startswith(STAGING + "/"):
            by_kind[kind(n)].append(n)
    rows = []
    for k in sorted(by_kind):
        row = [k, str(len(by_kind[k]))]
        ours_lost = [n for n in by_kind[k] if failed(ref[n]) or rate(ref[n])[0] == 0]
        for _, other in runs[1:]:
            verdicts = defaultdict(list)
            for n in by_kind[k]:
                if n in other:
                    v, r = compare(ref[n], other[n])
                    verdicts[v].append(r)
            ratios = verdicts["ratio"]
            decided = len(ratios) + len(verdicts["other-zero"])
            decided += len(verdicts["ours-zero"]) + len(verdicts["ours-failed"])
            wins = sum(r > 1 for r in ratios) + len(verdicts["other-zero"])
            if ratios:
                row += [ratio(geo_mean(ratios)), ratio(statistics.median(ratios))]
            else:
                row += ["-", "-"]
            row += [f"{wins}/{decided}", str(len(verdicts["other-failed"])), str(len(verdicts["other-zero"]))]
        row.append(str(len(ours_lost)))
        rows.append(row)
    return table(header, rows)


def cmd_rows(runs, only):
    ref_name, ref = runs[0]
    names = [n for n in ref if only in n]
    for _, scenarios in runs[1:]:
        names += [n for n in scenarios if n not in names and only in n]
    header = ["scenario"] + [f"{n} msg/s (p99)" for n, _ in runs]
    header += [f"{ref_name} ÷ {o}" for o, _ in runs[1:]]
    rows = []
    for n in names:
        row = [short(n)] + [cell(scenarios.get(n)) for _, scenarios in runs]
        for _, other in runs[1:]:
            if n not in ref or n not in other:
                row.append("-")
                continue
            x, y = rate(ref[n])[0], rate(other[n])[0]
            text = ratio(x / y) if y > 0 else ("∞" if x > 0 else "-")
            if failed(ref[n]) or failed(other[n]):
                text += " †"
            row.append(text)
        rows.append(row)
    return table(header, rows)


def cmd_losses(runs, only):
    ref_name, ref = runs[0]
    header = ["scenario", "against", f"{ref_name} msg/s (p99)", "their msg/s (p99)", f"{ref_name} ÷ them", "why a loss"]
    rows = []
    for o, other in runs[1:]:
        for n in common(ref, other, only):
            v, r = compare(ref[n], other[n])
            if v == "ratio" and r < 1:
                why = "slower"
            elif v == "ours-zero":
                why = f"{ref_name} moved nothing"
            elif v == "ours-failed":
                why = f"{ref_name} recorded errors"
            else:
                continue
            text = ratio(r) if r is not None else "-"
            rows.append([short(n), o, cell(ref[n]), cell(other[n]), text, why])
    return table(header, rows)


def cmd_could_not_run(runs, only):
    ref_name, ref = runs[0]
    header = ["scenario", "broker", f"{ref_name} msg/s (p99)", "its msg/s (p99)", "errors recorded", "its last error"]
    rows = []
    for o, other in runs[1:]:
        for n in common(ref, other, only):
            v, _ = compare(ref[n], other[n])
            if v != "other-failed":
                continue
            s = other[n]
            count = sum(s.get("errors") or []) + (s.get("errors_outside_samples") or 0)
            err = (s.get("last_error") or "").replace("|", "/")
            err = re.sub(r"stomp://[0-9.:]+: ", "", err)
            rows.append([short(n), o, cell(ref[n]), cell(s), str(count), err])
    return table(header, rows)


def cmd_staging(runs, only):
    header = [
        "scenario",
        "broker",
        "sent while sampled",
        "received while sampled",
        "left, drained after",
        "producer-phase seconds with nothing sent",
        "errors recorded",
    ]
    rows = []
    names = [n for n in runs[0][1] if n.startswith(STAGING + "/") and only in n]
    for n in names:
        for b, scenarios in runs:
            s = scenarios.get(n)
            if s is None:
                continue
            sent, got = sum(s["producer tp"]), sum(s["consumer tp"])
            # Producers run for the first half of the samples, consumers for
            # the second (the runner's staging midpoint).
            half = len(s["producer tp"]) // 2
            idle = sum(1 for v in s["producer tp"][:half] if v == 0)
            count = sum(s.get("errors") or []) + (s.get("errors_outside_samples") or 0)
            rows.append([
                short(n), b, f"{sent:,}", f"{got:,}", f"{s.get('drained', 0):,}",
                f"{idle} of {half}", str(count),
            ])
    return table(header, rows)


# ---- native-vs-stomp rounds ------------------------------------------------


def fmt_rate_rounds(v):
    return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"


def fmt_ns_rounds(v):
    if v >= 1e6:
        return f"{v / 1e6:.1f} ms"
    return f"{v / 1e3:.0f} µs"


def ratio_range(values):
    if not values:
        return "–"
    med = statistics.median(values)
    return f"{med:.2f}× ({min(values):.2f}–{max(values):.2f})"


def cmd_rounds(out):
    runs = {}  # (proto, round) -> {scenario: (msg/s, p99 ns)}
    for path in glob.glob(os.path.join(out, "*-r*.json")):
        m = re.match(r"(\w+)-r(\d+)\.json$", os.path.basename(path))
        if not m:
            continue
        with open(path) as f:
            report = json.load(f)
        rows = {}
        for s in report["scenarios"]:
            p = ((s.get("latency_hdr") or {}).get("e2e") or {}).get("p99", 0)
            rows[s["name"]] = (rate(s)[0], p)
        runs[(m.group(1), int(m.group(2)))] = rows
    protos = sorted({p for p, _ in runs}, key=["stomp", "native", "activemq"].index)
    rounds = sorted({r for _, r in runs})
    names = []
    for _, rows in sorted(runs.items()):
        names += [n for n in rows if n not in names]

    def ratios(a, b, n, i):
        vals = []
        for r in rounds:
            x, y = runs.get((a, r), {}).get(n), runs.get((b, r), {}).get(n)
            if x and y and y[i] > 0:
                vals.append(x[i] / y[i])
        return vals

    per = f"per round, median (min–max) of {len(rounds)}"
    header = ["scenario"] + [f"{DISPLAY.get(p, p)} msg/s (p99)" for p in protos]
    header += [f"native ÷ STOMP msg/s, {per}", "native ÷ STOMP p99, same"]
    amq = "activemq" in protos
    if amq:
        header += ["ferromq STOMP ÷ ActiveMQ msg/s, same", "native ÷ ActiveMQ msg/s, same"]
    rows = []
    for n in names:
        row = [short(n)]
        for p in protos:
            got = [runs[(p, r)][n] for r in rounds if n in runs.get((p, r), {})]
            if not got:
                row.append("–")
                continue
            tp = statistics.median(g[0] for g in got)
            lat = statistics.median(g[1] for g in got)
            row.append(f"{fmt_rate_rounds(tp)} ({fmt_ns_rounds(lat)})")
        row.append(ratio_range(ratios("native", "stomp", n, 0)))
        row.append(ratio_range(ratios("native", "stomp", n, 1)))
        if amq:
            row.append(ratio_range(ratios("stomp", "activemq", n, 0)))
            row.append(ratio_range(ratios("native", "activemq", n, 0)))
        rows.append(row)
    return table(header, rows)


# ---- before-after.sh rounds -----------------------------------------------


def read_before_after(out, only_round):
    """{(label, proto, round): {scenario: result}} from one before-after.sh run."""
    runs = {}
    for path in glob.glob(os.path.join(out, "*-r*.json")):
        m = re.match(r"(before|after)-(\w+)-r(\d+)\.json$", os.path.basename(path))
        if not m or (only_round is not None and int(m.group(3)) != only_round):
            continue
        with open(path) as f:
            report = json.load(f)
        runs[(m.group(1), m.group(2), int(m.group(3)))] = {s["name"]: s for s in report["scenarios"]}
    return runs


def before_after_ratios(runs, n, p):
    """after ÷ before per round where both builds moved messages; and
    whether any of those runs recorded errors."""
    vals, marked = [], False
    for r in sorted({r for _, _, r in runs}):
        b = runs.get(("before", p, r), {}).get(n)
        a = runs.get(("after", p, r), {}).get(n)
        if b and a and rate(b)[0] > 0 and rate(a)[0] > 0:
            vals.append(rate(a)[0] / rate(b)[0])
            marked = marked or failed(a) or failed(b)
    return vals, marked


def cmd_before_after(args):
    only_round = None
    if len(args) >= 2 and args[0] == "--round":
        only_round = int(args[1])
        args = args[2:]
    if not args or len(args) > 2:
        sys.exit(__doc__)
    runs = read_before_after(os.path.join(ROOT, args[0]), only_round)
    second = read_before_after(os.path.join(ROOT, args[1]), only_round) if len(args) == 2 else None
    protos = sorted({p for _, p, _ in runs}, key=["stomp", "native"].index)
    names = []
    for key in sorted(runs):
        names += [n for n in runs[key] if n not in names]

    def build(label, n, p):
        got = [s[n] for (lb, pr, _), s in sorted(runs.items()) if lb == label and pr == p and n in s]
        vals = [rate(s)[0] for s in got if rate(s)[0] > 0]
        if not vals:
            return None
        mark = " †" if any(failed(s) for s in got) else ""
        med = fmt_rate_rounds(statistics.median(vals))
        spread = f" ({fmt_rate_rounds(min(vals))}–{fmt_rate_rounds(max(vals))})" if len(vals) > 1 else ""
        return f"{med}{rate(got[0])[1]}{spread}{mark}"

    def ratios_cell(vals, marked):
        if not vals:
            return "–"
        text = ratio_range(vals) if len(vals) > 1 else f"{vals[0]:.2f}×"
        return text + (" †" if marked else "")

    which = f"round {only_round}" if only_round is not None else "median (min–max) over rounds"
    header = ["scenario", "protocol", "before msg/s", "after msg/s", f"after ÷ before, {which}"]
    if second is not None:
        header.append(f"same, {os.path.basename(os.path.normpath(args[1]))}")
    rows = []
    for n in names:
        for p in protos:
            b, a = build("before", n, p), build("after", n, p)
            if b is None or a is None:
                continue
            vals, marked = before_after_ratios(runs, n, p)
            row = [short(n), DISPLAY.get(p, p), b, a, ratios_cell(vals, marked)]
            if second is not None:
                row.append(ratios_cell(*before_after_ratios(second, n, p)))
            rows.append(row)
    return table(header, rows)


# ---- store_layout example runs ---------------------------------------------


def layout_config(r):
    """A run's configuration: its layout and what differs from the defaults."""
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


def value_range(values, fmt):
    a, b = fmt(min(values)), fmt(max(values))
    return a if a == b else f"{a}–{b}"


def cmd_store_layout(path):
    groups = {}  # insertion order: the order the runs were made
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            key = (layout_config(r), r["per_flush"], r["messages"], r["body"])
            groups.setdefault(key, []).append(r)
    kb = lambda v: f"{v / 1000:.1f}"
    mb = lambda v: f"{v / 1e6:.1f}"
    per_s = lambda v: f"{v:,.0f}"
    columns = [
        ("fill_bytes_per_msg", kb),
        ("fill_bytes_per_flush", kb),
        ("drain_bytes_per_msg", kb),
        ("disk_alloc_after_fill", mb),
        ("disk_alloc_after_drain", mb),
        ("disk_alloc_after_reopen", mb),
        ("fill_msgs_per_s", per_s),
    ]
    header = [
        "layout / settings", "msgs per flush", "N", "runs", "written per msg, fill (KB)", "per flush (KB)",
        "written per msg, drain (KB)", "disk after fill (MB)", "after drain (MB)", "after reopen (MB)",
        "fill msg/s",
    ]
    rows = []
    for (cfg, per_flush, n, _), rs in groups.items():
        row = [cfg, str(per_flush), str(n), str(len(rs))]
        row += [value_range([r[field] for r in rs], fmt) for field, fmt in columns]
        rows.append(row)
    return table(header, rows)


# ---- admin-api-timing.sh runs ---------------------------------------------


def cmd_admin_timing(dirs):
    runs = []
    for d in dirs:
        with open(os.path.join(ROOT, d, "run.json")) as f:
            meta = json.load(f)
        with open(os.path.join(ROOT, d, "timings.jsonl")) as f:
            runs.append((meta, [json.loads(line) for line in f if line.strip()]))
    queries = []
    for _, timings in runs:
        queries += [t["query"] for t in timings if t["query"] not in queries]
    header = ["query"]
    for meta, timings in runs:
        n = len(timings[0]["time_total_s"]) if timings else 0
        header.append(f"{meta['build']} build, min / median / max of {n}")
    rows = []
    for q in queries:
        row = [f"`{q}`"]
        for _, timings in runs:
            t = next((t for t in timings if t["query"] == q), None)
            if t is None:
                row.append("-")
                continue
            ms = [v * 1000 for v in t["time_total_s"]]
            text = f"{min(ms):.1f} / {statistics.median(ms):.1f} / {max(ms):.1f} ms"
            if t["http_status"] != 200:
                text += f" (HTTP {t['http_status']})"
            row.append(text)
        rows.append(row)
    return table(header, rows)


# ---- commands and the check ------------------------------------------------

BROKER_COMMANDS = {
    "summary": cmd_summary,
    "rows": cmd_rows,
    "losses": cmd_losses,
    "could-not-run": cmd_could_not_run,
    "staging": cmd_staging,
}


def generate(args):
    """The lines one command prints (paths relative to the repository)."""
    args = list(args)
    if args and args[0] == "rounds":
        return cmd_rounds(os.path.join(ROOT, args[1]))
    if args and args[0] == "before-after":
        return cmd_before_after(args[1:])
    if args and args[0] == "admin-timing" and len(args) >= 2:
        return cmd_admin_timing(args[1:])
    if args and args[0] == "store-layout" and len(args) == 2:
        return cmd_store_layout(os.path.join(ROOT, args[1]))
    if args and args[0] == "body-files" and len(args) == 3 and args[1] in ("bytes", "large", "small"):
        return cmd_body_files(args[1], os.path.join(ROOT, args[2]))
    if args and args[0] == "cluster-commit" and len(args) == 3:
        return cmd_cluster_commit(args[1], os.path.join(ROOT, args[2]))
    command = "all"
    if args and args[0] in BROKER_COMMANDS:
        command = args.pop(0)
    only = ""
    if len(args) >= 2 and args[0] == "--only":
        only = args[1]
        args = args[2:]
    if not args:
        sys.exit(__doc__)
    runs = [load(os.path.join(ROOT, p)) for p in args]
    if command == "all":
        return cmd_summary(runs, only) + [""] + cmd_rows(runs, only)
    return BROKER_COMMANDS[command](runs, only)


def cmd_cluster_commit(table, directory):
    """bench-client/scripts/cluster-commit.sh: its summary script's tables
    (one implementation, loaded from beside the script)."""
    import importlib.util

    path = os.path.join(ROOT, "bench-client", "scripts", "cluster-commit-summary.py")
    spec = importlib.util.spec_from_file_location("cluster_commit_summary", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if table == "rates":
        return module.rates(directory)
    if table in ("stages-base", "stages-new"):
        return module.stages(directory, table.split("-", 1)[1])
    sys.exit(f"cluster-commit: unknown table {table}")


def _span(values, fmt):
    """`a` or `a–b` (min–max) of values, formatted."""
    lo, hi = fmt(min(values)), fmt(max(values))
    return lo if lo == hi else f"{lo}–{hi}"


def cmd_body_files(table, directory):
    """bench-client/scripts/body-files.sh: bytes written per persistent 1 KiB
    message by build and scenario (ranges over rounds, ratios per round
    against the base run of the same round), and 10 MB bodies (consumed
    msg/s, the median of each run's samples) by build, or 1 KiB 10/10/10
    (consumed msg/s, new ÷ base per round)."""
    out = []
    rows = []
    path = os.path.join(directory, "bytes.jsonl")
    if table == "bytes" and os.path.exists(path):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    if rows:
        builds = [b for b in ("base", "new", "inline") if any(r["build"] == b for r in rows)]
        out.append("| scenario | build | runs | written per message (KB) | bytes ÷ base, per round | msg/s in the window | msg/s ÷ base, per round |")
        out.append("|---|---|---|---|---|---|---|")
        for scenario, label in (("1p", "1 producer, no consumer"), ("10p", "10 producers, 10 queues, no consumer")):
            base = {r["round"]: r for r in rows if r["scenario"] == scenario and r["build"] == "base"}
            for build in builds:
                runs = [r for r in rows if r["scenario"] == scenario and r["build"] == build and r["messages"]]
                if not runs:
                    continue
                kb = [r["kb_per_message"] for r in runs]
                rate = [r["msg_per_s"] for r in runs]
                ratios = [r["kb_per_message"] / base[r["round"]]["kb_per_message"]
                          for r in runs if r["round"] in base and build != "base"]
                ratio = _span(ratios, lambda v: f"{v:.2f}×") if ratios else "–"
                speed = [r["msg_per_s"] / base[r["round"]]["msg_per_s"]
                         for r in runs if r["round"] in base and build != "base"]
                speed = _span(speed, lambda v: f"{v:.2f}×") if speed else "–"
                out.append(f"| {label} | {build} | {len(runs)} | {_span(kb, lambda v: f'{v:.1f}')} | {ratio} | "
                           f"{_span(rate, lambda v: f'{v:,.0f}')} | {speed} |")
    large = []
    path = os.path.join(directory, "large.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            large = [json.loads(line) for line in f if line.strip()]
    rates = {}
    files = glob.glob(os.path.join(directory, f"{table}-*-r*.json")) if table in ("large", "small") else []
    for f in sorted(files):
        m = re.match(rf"{table}-(.+)-r(\d+)\.json$", os.path.basename(f))
        if not m:
            continue
        try:
            with open(f) as fh:
                scenarios = json.load(fh)["scenarios"]
        except (OSError, ValueError, KeyError):
            continue
        for sc in scenarios:
            tp = sc.get("consumer tp") or []
            if tp:
                rates.setdefault(m.group(1), {})[int(m.group(2))] = statistics.median(tp)
    if table == "small" and rates:
        out.append("| 1 KiB, 10/10/10, persistent, receipt per SEND | runs | consumed msg/s (median of samples) | ÷ base, per round |")
        out.append("|---|---|---|---|")
        for build in ("base", "new"):
            if build not in rates:
                continue
            per_round = rates[build]
            ratios = [v / rates["base"][r] for r, v in per_round.items()
                      if build != "base" and r in rates.get("base", {}) and rates["base"][r]]
            out.append(f"| ferromq {build} | {len(per_round)} | {_span(list(per_round.values()), lambda v: f'{v:,.0f}')} | "
                       f"{_span(ratios, lambda v: f'{v:.2f}×') if ratios else '–'} |")
        return out
    if rates:
        out.append("| 10 MB bodies, 10/10/10, persistent | runs | consumed msg/s (median of samples) | ÷ ActiveMQ, per round | written per message written to the store (MB) | data dir after the run (MB) |")
        out.append("|---|---|---|---|---|---|")
        for build in ("base", "new", "activemq"):
            if build not in rates:
                continue
            per_round = rates[build]
            ratios = [v / rates["activemq"][r] for r, v in per_round.items()
                      if build != "activemq" and r in rates.get("activemq", {}) and rates["activemq"][r]]
            runs = [r for r in large if r["build"] == build]
            written = [r["write_bytes"] / 1e6 / r["messages_written"] for r in runs if r["messages_written"]]
            disk = [(r["store_dir_bytes_after"] + r["bodies_dir_bytes_after"]) / 1e6 for r in runs]
            name = "ActiveMQ 5.17" if build == "activemq" else f"ferromq {build}"
            out.append(f"| {name} | {len(per_round)} | {_span(list(per_round.values()), lambda v: f'{v:.0f}')} | "
                       f"{_span(ratios, lambda v: f'{v:.2f}×') if ratios else '–'} | "
                       f"{_span(written, lambda v: f'{v:.1f}') if written else '–'} | "
                       f"{_span(disk, lambda v: f'{v:.0f}') if disk else '–'} |")
    return out


def documents():
    paths = [os.path.join(ROOT, "BENCHMARKS.md"), os.path.join(ROOT, "README.md")]
    for pattern in ("docs/**/*.md", "bench-client/results/**/*.md"):
        paths += sorted(glob.glob(os.path.join(ROOT, pattern), recursive=True))
    return [p for p in paths if os.path.exists(p)]


def check(write):
    """Regenerates every marked table; prints a diff of each that differs."""
    import difflib

    stale = 0
    tables = 0
    for path in documents():
        with open(path) as f:
            lines = f.read().split("\n")
        out = []
        i = 0
        changed = False
        while i < len(lines):
            line = lines[i]
            out.append(line)
            i += 1
            m = MARKER.match(line)
            if not m:
                continue
            tables += 1
            rel = os.path.relpath(path, ROOT)
            want = generate(shlex.split(m.group(1)))
            if i >= len(lines) or lines[i] != "":
                print(f"{rel}:{i}: no blank line after the Table: line", file=sys.stderr)
                stale += 1
                continue
            out.append("")
            i += 1
            start = i
            while i < len(lines) and lines[i].startswith("|"):
                i += 1
            have = lines[start:i]
            if have != want:
                stale += 1
                changed = True
                sys.stdout.writelines(
                    difflib.unified_diff(
                        [h + "\n" for h in have], [w + "\n" for w in want],
                        f"{rel}:{start + 1} (committed)", f"{rel} (regenerated)",
                    )
                )
            out += want
        if write and changed:
            with open(path, "w") as f:
                f.write("\n".join(out))
    verb = "rewritten" if write else "differ"
    print(f"{tables} tables checked, {stale} {verb}", file=sys.stderr)
    return 0 if stale == 0 or write else 1


def main(argv):
    if not argv:
        sys.exit(__doc__)
    if argv[0] == "check":
        sys.exit(check("--write" in argv[1:]))
    # Files given on the command line are relative to the working directory.
    cwd = os.getcwd()
    args = [os.path.relpath(os.path.join(cwd, a), ROOT) if a.endswith((".json", ".jsonl")) or os.path.isdir(a) else a for a in argv]
    print("\n".join(generate(args)))


if __name__ == "__main__":
    main(sys.argv[1:])
