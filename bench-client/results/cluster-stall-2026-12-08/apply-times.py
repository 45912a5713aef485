#!/usr/bin/env python3
"""Per state-machine command of the leader's openraft=debug log: the wait
from the core sending an Apply to the worker receiving it, and from the
worker receiving it to the core hearing it is done; split at CUT (the
moment the bench's producers closed and its post-run drain began).

    apply-times.py LEADER_LOG CUT_ISO
"""
import datetime
import re
import sys


def ts(line):
    return datetime.datetime.fromisoformat(line[:26])


log, cut = sys.argv[1], datetime.datetime.fromisoformat(sys.argv[2])
recv, runs = {}, {"during the run": [], "after the producers closed": []}
for line in open(log, errors="replace"):
    if "worker_loop: received command" in line and "payload: Apply" in line:
        recv[int(re.search(r"seq: (\d+)", line).group(1))] = ts(line)
    elif "StateMachine command done" in line and "Apply(" in line:
        seq = int(re.search(r"command_seq: (\d+)", line).group(1))
        if seq in recv:
            ms = (ts(line) - recv[seq]).total_seconds() * 1000
            entries = re.search(r"since: (\d+), end: (\d+)", line).groups()
            key = "during the run" if recv[seq] < cut else "after the producers closed"
            runs[key].append((ms, seq, entries, recv[seq].isoformat()))
for name, v in runs.items():
    v.sort()
    if not v:
        continue
    ms = [x[0] for x in v]
    print(f"{name}: {len(v)} applies, worker received -> done: p50 {ms[len(ms) // 2]:.2f} ms, "
          f"p99 {ms[int(len(ms) * 0.99)]:.2f} ms, max {ms[-1]:.2f} ms")
    for x in v[-3:]:
        print(f"  {x[0]:.1f} ms: command {x[1]}, log entries {x[2][0]}..{x[2][1]}, at {x[3]}")
