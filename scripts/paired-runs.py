#!/usr/bin/env python3
"""Paired differences between two arms of a study, from its runs.csv: for each task,
the mean Δ (ARM − OTHER) of each metric over the seeds both arms ran, with its Student-t
95% interval, and every seed's Δ. For comparisons a plan did not name as an arm's
reference (a study's report.md gives Δ against the reference only).

    scripts/paired-runs.py runs/study-pixels-lab/runs.csv cpc-simclr-init cpc
    scripts/paired-runs.py RUNS.csv ARM OTHER --metrics final_return,auc
"""

import argparse
import csv
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tstats import interval  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", help="a study's runs.csv")
    p.add_argument("arm")
    p.add_argument("other", help="the arm Δ is taken against")
    p.add_argument("--metrics", default="final_return,auc,mmer", help="comma-separated columns")
    a = p.parse_args()
    try:
        with open(a.runs, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("stage", "eval") == "eval"]
    except OSError as e:
        sys.exit(f"{a.runs}: {e.strerror}")
    metrics = a.metrics.split(",")
    if rows:
        missing = [m for m in metrics + ["task", "arm", "seed"] if m not in rows[0]]
        if missing:
            sys.exit(f"{a.runs}: no column {', '.join(missing)} (columns: {', '.join(rows[0])})")
    by = {(r["task"], r["arm"], r["seed"]): r for r in rows}
    arms = {r["arm"] for r in rows}
    for name in (a.arm, a.other):
        if name not in arms:
            sys.exit(f"{a.runs}: no arm '{name}' (arms: {', '.join(sorted(arms)) or 'none'})")
    tasks = sorted({r["task"] for r in rows if r["arm"] == a.arm})
    print(f"Δ = {a.arm} − {a.other}, paired by seed; mean [Student-t 95% CI]")
    for task in tasks:
        seeds = sorted(
            (s for (t, arm, s) in by if t == task and arm == a.arm and (t, a.other, s) in by),
            key=lambda s: int(s) if s.isdigit() else s,
        )
        if not seeds:
            print(f"{task}: no seed that both arms finished")
            continue
        print(f"{task} (seeds {', '.join(seeds)})")
        for m in metrics:
            try:
                d = [float(by[(task, a.arm, s)][m]) - float(by[(task, a.other, s)][m]) for s in seeds]
            except ValueError:
                print(f"  {m}: not recorded for every run of both arms")
                continue
            mean, half = interval(d)
            ci = "n/a" if math.isnan(half) else f"[{mean - half:+.4f}, {mean + half:+.4f}]"
            each = ", ".join(f"{x:+.4f}" for x in d)
            print(f"  {m}: {mean:+.4f} {ci}  (per seed: {each})")


if __name__ == "__main__":
    main()
