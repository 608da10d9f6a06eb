"""goalrt against pyperplan's A* + LM-cut on the same STRIPS tasks, side by side.

What it measures
----------------
Each task of ``pddl_tasks.py`` (gripper, blocks, miconic, logistics; small
to medium) runs twice:

- **pyperplan** (``pyperplan -H lmcut -s astar``) on the PDDL files under
  ``pddl/``, in a subprocess of the interpreter given by ``--pyperplan``
  (a separate venv with ``pip install pyperplan``; it is not a dependency of
  goalrt). Its time is from its own log: from "Parsing Domain" to "Search
  end", so parsing, grounding and search, without interpreter start-up.
- **goalrt** on the same PDDL files through its importer
  (``goalrt.planner.pddl``: ``load_pddl`` then ``to_problem``, as
  ``goalrt plan --pddl`` does), once per heuristic given by
  ``--heuristics``: parsing, translation, grounding, compiling, heuristic
  set-up and search, all timed, as pyperplan's parsing and grounding are.

The table shows plan length, time and expansions of each, and the median
over tasks of pyperplan's time / goalrt's (first heuristic). Both run one at
a time on the same machine; on a shared machine expect noise of tens of
percent (compare the expansions, which do not vary). A run past
``--timeout`` seconds shows as ``-``.

Run: ``.venv/bin/python bench/planner/pyperplan_compare.py --pyperplan /tmp/ppvenv/bin/python [--quick]``
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pddl_tasks import write_all

from goalrt.planner import Budget, Plan, plan
from goalrt.planner.pddl import load_pddl, to_problem


@dataclass
class Run:
    length: int | None
    seconds: float | None
    expanded: int | None


def _stamp(line: str) -> datetime:
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


def run_pyperplan(python: str, domain: Path, problem: Path, timeout: float) -> Run:
    """Return pyperplan's A*+LM-cut result on a PDDL task (run in a scratch directory: it writes a .soln file)."""
    with tempfile.TemporaryDirectory() as scratch:
        d, p = Path(scratch) / "domain.pddl", Path(scratch) / problem.name
        shutil.copy(domain, d)
        shutil.copy(problem, p)
        try:
            done = subprocess.run(
                [python, "-m", "pyperplan", "-H", "lmcut", "-s", "astar", str(d), str(p)],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return Run(None, None, None)
    log = done.stdout + done.stderr
    length = re.search(r"Plan length: (\d+)", log)
    expanded = re.search(r"(\d+) Nodes expanded", log)
    lines = log.splitlines()
    begin = next((_stamp(x) for x in lines if "Parsing Domain" in x), None)
    end = next((_stamp(x) for x in lines if "Search end" in x), None)
    seconds = (end - begin).total_seconds() if begin and end else None
    return Run(int(length.group(1)) if length else None, seconds, int(expanded.group(1)) if expanded else None)


def run_goalrt(domain: Path, problem_file: Path, heuristic: str, timeout: float) -> Run:
    """Return goalrt's result on the PDDL files, read through goalrt's importer (reading is timed)."""
    started = time.perf_counter()
    problem = to_problem(load_pddl(domain, problem_file))
    found = plan(problem, Budget(max_expansions=None, time_limit=timeout), heuristic=heuristic)
    seconds = time.perf_counter() - started
    if not isinstance(found, Plan):
        return Run(None, None, found.expanded)
    return Run(found.length, seconds, found.expanded)


def _cell(run: Run) -> str:
    if run.seconds is None:
        return f"{'-':>5} {'-':>8} {'-':>9}"
    return f"{run.length:>5} {run.seconds:>8.3f} {run.expanded:>9,}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyperplan", required=True, help="python of a venv where pyperplan is installed")
    parser.add_argument("--heuristics", default="auto,landmarks", help="goalrt heuristics (first: the speedup's)")
    parser.add_argument("--quick", action="store_true", help="the smaller tasks only")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per run")
    args = parser.parse_args()
    heuristics = args.heuristics.split(",")
    header = f"{'task':<14} {'pyperplan len/s/expanded':>24}" + "".join(
        f" {h + ' len/s/expanded':>24}" for h in heuristics
    )
    print(header + f" {'speedup':>8}")
    print("-" * (len(header) + 9))
    speedups = []
    for task, domain, problem in write_all(args.quick):
        theirs = run_pyperplan(args.pyperplan, domain, problem, args.timeout)
        ours = [run_goalrt(domain, problem, h, args.timeout) for h in heuristics]
        if theirs.seconds is not None and ours[0].seconds is not None:
            speedups.append(theirs.seconds / ours[0].seconds)
            ratio = f"{speedups[-1]:>7.1f}x"
        else:
            ratio = f"{'-':>8}"
        cells = "".join(f"   {_cell(run)}" for run in ours)
        print(f"{task.name:<14}    {_cell(theirs)}{cells} {ratio}", flush=True)
        if theirs.length is not None and ours[0].length is not None and theirs.length != ours[0].length:
            print(f"  !! plan lengths differ: pyperplan {theirs.length}, goalrt {ours[0].length}")
    if speedups:
        print(f"\nmedian speedup (pyperplan time / goalrt {heuristics[0]} time): {statistics.median(speedups):.1f}x")


if __name__ == "__main__":
    main()
