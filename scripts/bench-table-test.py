#!/usr/bin/env python3
"""Unit tests of scripts/bench-table.py's counting rules and of its check.

    python3 scripts/bench-table-test.py    (scripts/bench-tables-check.sh runs it first)

Each test builds small results files in a temporary directory, so the rules
are pinned down independently of the committed runs: a scenario ferromq moved
nothing in is a loss and is listed; a scenario the other broker recorded
errors in stays out of the ratios and is listed apart; a scenario without
consumers is measured by what its producers sent; before/after ratios are
formed per round; store_layout runs of one configuration form one row;
admin timings show min / median / max and any status other than 200;
`check` fails on a table that differs from its command's output and
`check --write` repairs it.
"""
import importlib.util
import io
import json
import os
import tempfile
import unittest
from contextlib import redirect_stderr, redirect_stdout

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = importlib.util.spec_from_file_location("bench_table", os.path.join(HERE, "bench-table.py"))
bt = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bt)


def scenario(name, consumed, sent=None, consumers=1, errors=0, last_error=None):
    s = {
        "name": name,
        "parameters": {"consumers": consumers, "group": name.split("/")[0]},
        "producer tp": [sent if sent is not None else consumed] * 2,
        "consumer tp": [consumed] * 2 if consumers else [0, 0],
        "errors": [errors, 0],
        "errors_outside_samples": 0,
        "latency_hdr": {"e2e": {"p99": 1_000_000}, "receipt": {"p99": 0}},
        "drained": 0,
    }
    if last_error:
        s["last_error"] = last_error
    return s


def write_run(root, broker, scenarios):
    path = os.path.join(root, f"{broker}.json")
    with open(path, "w") as f:
        json.dump({"benchmark_settings": {"broker_name": broker}, "scenarios": scenarios}, f)
    return path


class Rules(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        root = self.dir.name
        ours = [
            scenario("throughput/queue-np-a", 1000),
            scenario("throughput/queue-np-b", 4000),
            scenario("throughput/queue-np-c", 0, sent=50),  # we delivered nothing
            scenario("throughput/queue-np-d", 9000),  # they failed here
            scenario("throughput/queue-p-e", 0, sent=300, consumers=0),  # producers only
        ]
        theirs = [
            scenario("throughput/queue-np-a", 500),
            scenario("throughput/queue-np-b", 500),
            scenario("throughput/queue-np-c", 20),
            scenario("throughput/queue-np-d", 1, errors=5, last_error="timed out waiting for CONNECTED"),
            scenario("throughput/queue-p-e", 0, sent=100, consumers=0),
        ]
        self.runs = [bt.load(write_run(root, "ferromq", ours)), bt.load(write_run(root, "activemq", theirs))]

    def tearDown(self):
        self.dir.cleanup()

    def row(self, lines, kind):
        return [c.strip() for c in next(l for l in lines if l.startswith(f"| {kind} ")).strip("|").split("|")]

    def test_summary_counts_our_zero_as_a_loss_and_their_failure_apart(self):
        lines = bt.cmd_summary(self.runs, "")
        row = self.row(lines, "throughput queue non-persistent")
        # kind, scenarios, geo mean, median, faster, could not run, they moved nothing, we moved nothing
        self.assertEqual(row[1], "4")
        self.assertEqual(row[2], "4.0×", "geometric mean of 2× and 8× only")
        self.assertEqual(row[3], "5.0×", "median of 2× and 8×")
        self.assertEqual(row[4], "2/3", "our zero is a decided loss")
        self.assertEqual(row[5], "1", "their failure counted apart")
        self.assertEqual(row[7], "1", "our zero counted")

    def test_losses_list_our_zero(self):
        lines = bt.cmd_losses(self.runs, "")
        self.assertEqual(len(lines), 3, lines)
        self.assertIn("queue-np-c", lines[2])
        self.assertIn("ferromq moved nothing", lines[2])
        self.assertIn("0, 50 sent", lines[2])

    def test_could_not_run_lists_their_failure_with_its_error(self):
        lines = bt.cmd_could_not_run(self.runs, "")
        self.assertEqual(len(lines), 3, lines)
        self.assertIn("queue-np-d", lines[2])
        self.assertIn("timed out waiting for CONNECTED", lines[2])

    def test_a_scenario_without_consumers_is_measured_by_what_was_sent(self):
        row = self.row(bt.cmd_summary(self.runs, ""), "throughput queue persistent")
        self.assertEqual(row[2], "3.0×", "300 sent ÷ 100 sent")
        rows = bt.cmd_rows(self.runs, "queue-p-e")
        self.assertIn("300 sent", rows[2])


class BeforeAfter(unittest.TestCase):
    def test_ratios_are_formed_per_round_and_errors_are_marked(self):
        with tempfile.TemporaryDirectory() as root:
            # Round by round after ÷ before is 2, 0.5 and 1: median 1, while
            # the ratio of the medians (2000 ÷ 1000) would say 2.
            for r, (b, a) in enumerate([(1000, 2000), (4000, 2000), (1000, 1000)], 1):
                write_run(root, f"before-stomp-r{r}", [scenario("custom/queue-p-x", b)])
                errors = 3 if r == 2 else 0
                write_run(root, f"after-stomp-r{r}", [scenario("custom/queue-p-x", a, errors=errors)])
            saved = bt.ROOT
            bt.ROOT = root
            try:
                lines = bt.cmd_before_after(["."])
                one = bt.cmd_before_after(["--round", "1", "."])
            finally:
                bt.ROOT = saved
        self.assertEqual(len(lines), 3, lines)
        self.assertEqual(
            lines[2], "| queue-p-x | STOMP | 1.0k (1.0k–4.0k) | 2.0k (1.0k–2.0k) † | 1.00× (0.50–2.00) † |"
        )
        self.assertEqual(one[2], "| queue-p-x | STOMP | 1.0k | 2.0k | 2.00× |")


class StoreLayout(unittest.TestCase):
    def test_runs_of_one_configuration_form_one_row_of_ranges(self):
        def run(layout, written, segment=524288):
            return {
                "layout": layout, "mode": "LowSpace", "segment_size": segment, "cache": 134217728,
                "flush_every_ms": None, "inline_max": 0, "per_flush": 10, "messages": 1000, "body": 1024,
                "fill_bytes_per_msg": written, "fill_bytes_per_flush": written * 10, "drain_bytes_per_msg": 500,
                "disk_alloc_after_fill": 2e6, "disk_alloc_after_drain": 1e6, "disk_alloc_after_reopen": 1e6,
                "fill_msgs_per_s": 12345.6,
            }
        with tempfile.TemporaryDirectory() as root:
            path = os.path.join(root, "runs.jsonl")
            with open(path, "w") as f:
                for r in [run("Current", 7300), run("Current", 7400), run("Current", 8700, segment=65536)]:
                    f.write(json.dumps(r) + "\n")
            lines = bt.cmd_store_layout(path)
        self.assertEqual(len(lines), 4, lines)
        self.assertEqual(lines[2], "| Current | 10 | 1000 | 2 | 7.3–7.4 | 73.0–74.0 | 0.5 | 2.0 | 1.0 | 1.0 | 12,346 |")
        self.assertTrue(lines[3].startswith("| Current, segment 64 KiB | 10 | 1000 | 1 | 8.7 |"), lines[3])


class AdminTiming(unittest.TestCase):
    def test_each_query_gets_min_median_max_and_a_failed_status_shows(self):
        with tempfile.TemporaryDirectory() as root:
            os.mkdir(os.path.join(root, "run"))
            with open(os.path.join(root, "run", "run.json"), "w") as f:
                json.dump({"build": "debug"}, f)
            with open(os.path.join(root, "run", "timings.jsonl"), "w") as f:
                f.write(json.dumps({"query": "/a", "http_status": 200, "body_bytes": 9,
                                    "time_total_s": [0.003, 0.001, 0.002]}) + "\n")
                f.write(json.dumps({"query": "/b", "http_status": 503, "body_bytes": 9,
                                    "time_total_s": [0.010, 0.010, 0.010]}) + "\n")
            saved = bt.ROOT
            bt.ROOT = root
            try:
                lines = bt.cmd_admin_timing(["run"])
            finally:
                bt.ROOT = saved
        self.assertEqual(lines[0], "| query | debug build, min / median / max of 3 |")
        self.assertEqual(lines[2], "| `/a` | 1.0 / 2.0 / 3.0 ms |")
        self.assertEqual(lines[3], "| `/b` | 10.0 / 10.0 / 10.0 ms (HTTP 503) |")


class Check(unittest.TestCase):
    def test_check_fails_on_a_stale_table_and_write_repairs_it(self):
        with tempfile.TemporaryDirectory() as root:
            write_run(root, "ferromq", [scenario("custom/queue-np-x", 2000)])
            write_run(root, "activemq", [scenario("custom/queue-np-x", 1000)])
            doc = os.path.join(root, "BENCHMARKS.md")
            with open(doc, "w") as f:
                f.write("Intro.\n\nTable: `scripts/bench-table.py rows ferromq.json activemq.json`\n\n"
                        "| scenario | stale |\n|---|---|\n\nAfter.\n")
            saved = bt.ROOT
            bt.ROOT = root
            try:
                out = io.StringIO()
                with redirect_stdout(out), redirect_stderr(io.StringIO()):
                    self.assertEqual(bt.check(False), 1, "a stale table passes")
                self.assertIn("2.0×", out.getvalue(), "the diff shows the regenerated table")
                with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
                    bt.check(True)
                    self.assertEqual(bt.check(False), 0, "--write did not repair the table")
                with open(doc) as f:
                    text = f.read()
                self.assertTrue(text.endswith("\n\nAfter.\n"), "text after the table was changed")
                self.assertIn("| queue-np-x | 2.0k (1.0 ms) | 1.0k (1.0 ms) | 2.0× |", text)
            finally:
                bt.ROOT = saved


if __name__ == "__main__":
    unittest.main()
