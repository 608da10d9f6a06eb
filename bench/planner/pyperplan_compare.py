"""goalrt against pyperplan's A* + LM-cut on the same STRIPS tasks, side by side.

What it measures
----------------
Two suites (``--suite``):

- ``ipc`` (the default): the IPC tasks under ``ipc/`` (domain and problem
  files as pyperplan's ``benchmarks/`` ship them, see ``ipc/README.md``):
  per domain the first tasks that pyperplan solves within 30 s.
- ``generated``: the tasks of ``pddl_tasks.py`` (gripper, blocks, miconic,
  logistics, small to medium), written as PDDL under ``pddl/``.

Each task runs twice, one run at a time:

- **pyperplan** (``pyperplan -H lmcut -s astar``, optimal) in a subprocess
  of the interpreter given by ``--pyperplan`` (a separate venv with ``pip
  install pyperplan``; it is not a dependency of goalrt). Its time is from
  its own log: from "Parsing Domain" to "Search end", so parsing, grounding
  and search, without interpreter start-up. Past ``--timeout`` seconds (30)
  it counts as unsolved.
- **goalrt** on the same PDDL files through its importer
  (``goalrt.planner.pddl``: ``load_pddl`` then ``to_problem``, as ``goalrt
  plan --pddl`` does), with each heuristic of ``--heuristics`` (the default
  ``auto`` first): parsing, translation, grounding, compiling, heuristic
  set-up and search, all timed, as pyperplan's parsing and grounding are. It
  gets ``--goalrt-timeout`` seconds (60). One untimed run of the first task
  comes first (imports, first calls), as pyperplan's time leaves out its
  interpreter's start-up and imports.

The table shows plan length, seconds and expansions of each, whether
goalrt's plan is optimal (its length equals pyperplan's, whose A*+LM-cut is
optimal; every action costs 1), and the speedup (pyperplan's time over
goalrt's first heuristic's). At the end: the median speedup, the least one,
and the tasks pyperplan solved but goalrt did not, or solved slower or
longer. On a shared machine expect noise of tens of percent (compare the
expansions, which do not vary except pyperplan's on some domains, with the
hash seed); the load average is printed at the start and the end.

Run: ``.venv/bin/python bench/planner/pyperplan_compare.py --pyperplan /tmp/ppvenv/bin/python``
(options: ``--quick``, ``--suite ipc|generated``, ``--only DOMAIN,...``)
"""

from __future__ import annotations

import argparse
import os
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

IPC = Path(__file__).resolve().parent / "ipc"


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
    if length is None:
        return Run(None, None, int(expanded.group(1)) if expanded else None)
    return Run(int(length.group(1)), seconds, int(expanded.group(1)) if expanded else None)


def run_goalrt(domain: Path, problem_file: Path, heuristic: str, timeout: float) -> Run:
    """Return goalrt's result on the PDDL files, read through goalrt's importer (reading is timed)."""
    started = time.perf_counter()
    problem = to_problem(load_pddl(domain, problem_file))
    found = plan(problem, Budget(max_expansions=None, time_limit=timeout), heuristic=heuristic)
    seconds = time.perf_counter() - started
    if not isinstance(found, Plan):
        return Run(None, None, found.expanded)
    return Run(found.length, seconds, found.expanded)


def ipc_tasks(quick: bool, only: set[str] | None) -> list[tuple[str, Path, Path]]:
    """(name, domain file, problem file) of the IPC suite; ``quick``: the first three tasks of each domain."""
    out = []
    for folder in sorted(p for p in IPC.iterdir() if p.is_dir()):
        if only and folder.name not in only:
            continue
        problems = sorted(folder.glob("task*.pddl"))
        for problem in problems[:3] if quick else problems:
            number = problem.stem[4:]
            domain = folder / "domain.pddl"
            if not domain.exists():  # psr-small: one domain file per task
                domain = folder / f"domain{number}.pddl"
            out.append((f"{folder.name}-{number}", domain, problem))
    return out


def generated_tasks(quick: bool, only: set[str] | None) -> list[tuple[str, Path, Path]]:
    return [(t.name, d, p) for t, d, p in write_all(quick) if not only or t.domain in only]


def _cell(run: Run) -> str:
    if run.seconds is None:
        return f"{'-':>5} {'-':>8} {'-':>9}"
    return f"{run.length:>5} {run.seconds:>8.3f} {run.expanded:>9,}"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyperplan", required=True, help="python of a venv where pyperplan is installed")
    parser.add_argument("--suite", choices=("ipc", "generated"), default="ipc", help="the tasks (default: ipc)")
    parser.add_argument("--only", default="", help="comma-separated domains to run (default: all)")
    parser.add_argument("--heuristics", default="auto", help="goalrt heuristics (first: the speedup's)")
    parser.add_argument("--quick", action="store_true", help="the smaller tasks only")
    parser.add_argument("--timeout", type=float, default=30.0, help="pyperplan's seconds per task")
    parser.add_argument("--goalrt-timeout", type=float, default=60.0, help="goalrt's seconds per task")
    args = parser.parse_args()
    heuristics = args.heuristics.split(",")
    only = set(args.only.split(",")) if args.only else None
    runs = ipc_tasks(args.quick, only) if args.suite == "ipc" else generated_tasks(args.quick, only)
    print(f"suite {args.suite}, {len(runs)} tasks; load average {_load()}")
    if runs:  # one untimed run first: imports and first calls, as pyperplan's time leaves out its start-up
        run_goalrt(runs[0][1], runs[0][2], heuristics[0], args.goalrt_timeout)
    header = f"{'task':<16} {'pyperplan len/s/expanded':>24}" + "".join(
        f" {h + ' len/s/expanded':>24}" for h in heuristics
    )
    print(header + f" {'optimal':>8} {'speedup':>8}")
    print("-" * (len(header) + 18))
    speedups: list[tuple[float, str]] = []
    missed: list[str] = []
    for name, domain, problem in runs:
        theirs = run_pyperplan(args.pyperplan, domain, problem, args.timeout)
        ours = [run_goalrt(domain, problem, h, args.goalrt_timeout) for h in heuristics]
        first = ours[0]
        optimal = "-"
        ratio = f"{'-':>8}"
        if theirs.seconds is not None and first.seconds is not None:
            speedups.append((theirs.seconds / first.seconds, name))
            ratio = f"{speedups[-1][0]:>7.1f}x"
            optimal = "yes" if first.length == theirs.length else "NO"
            if first.length != theirs.length:
                missed.append(f"{name}: plan length {first.length}, pyperplan's {theirs.length}")
            elif first.seconds > theirs.seconds:
                missed.append(f"{name}: slower ({first.seconds:.3f} s, pyperplan {theirs.seconds:.3f} s)")
        elif theirs.seconds is not None:
            missed.append(f"{name}: not solved by goalrt within {args.goalrt_timeout:g} s")
        cells = "".join(f"   {_cell(run)}" for run in ours)
        print(f"{name:<16}    {_cell(theirs)}{cells} {optimal:>8} {ratio}", flush=True)
    print(f"\nload average {_load()}")
    if speedups:
        low, low_name = min(speedups)
        median = statistics.median(s for s, _ in speedups)
        print(f"{len(speedups)} tasks solved by both; median speedup {median:.1f}x, least {low:.1f}x ({low_name})")
    unsolved = [name for name, _, _ in runs if name not in {n for _, n in speedups}]
    if unsolved:
        print(f"not compared (pyperplan over {args.timeout:g} s or goalrt unsolved): {', '.join(unsolved)}")
    print("goalrt not solved, not optimal or slower: " + ("; ".join(missed) if missed else "none"))


if __name__ == "__main__":
    main()
