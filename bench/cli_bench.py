"""CLI start-up: the CPU time of a ``goalrt`` process that prints help, and how much of it is imports.

What it measures
----------------
Each case runs the installed ``goalrt`` console script (the entry point
pyproject.toml declares) in a fresh process, ``--runs`` times, one at a
time, and reports medians:

- **cpu ms**: user + system CPU of the whole child process (interpreter
  start, imports, the command, exit), from ``resource.getrusage`` of the
  children before and after each run.
- **import ms**: the same command under ``python -X importtime``: the sum of
  the cumulative times of the top-level imports, i.e. every import the
  process ran, the interpreter's own included (wall time inside the process).
- **modules**: how many modules that run imported.

The first row, ``python -c pass``, is the interpreter's own floor on this
machine. These cases need no database: they only print help or the version.

With ``--url``, three more cases run commands that do their work against
that database: ``goalrt submit bench.cli_submit n=1`` (a goal type the bench
registers with ``goalrt.register_goal_type``; no handler), ``goalrt get ID``
(a goal the bench submitted first) and ``goalrt list --limit 5``. The
database must be migrated (``goalrt migrate``); every submit run adds a
pending goal that no worker will run, so give it a scratch database and drop
it after. Their cpu ms include the client's share of the round trips (the
server's work is another process's CPU); their wall time is not measured.
Without ``--url`` they are skipped, with a note.

The figures move with the machine's load; compare runs made on the same
machine, close together. No pass/fail: the figures are for reading.

Run: ``.venv/bin/python bench/cli_bench.py [--runs N] [--quick] [--json] [--url URL]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

CASES: list[tuple[str, ...]] = [
    ("--help",),
    ("--version",),
    ("submit", "--help"),
    ("state", "get", "--help"),
    ("worker", "--help"),
    ("gdl", "check", "--help"),
    ("demo", "--help"),
]

# The goal type the --url cases submit: registered by the bench, no handler anywhere.
GOAL_TYPE = "bench.cli_submit"
GOAL_SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}


@dataclass
class Row:
    case: str
    runs: int
    cpu_ms: float
    cpu_ms_min: float
    import_ms: float
    modules: int


def goalrt_command() -> list[str]:
    """Return the argv prefix that runs the ``goalrt`` console script with this interpreter."""
    script = Path(sys.executable).parent / "goalrt"
    if not script.exists():
        found = shutil.which("goalrt")
        if found is None:
            raise SystemExit("no goalrt script found: install goalrt (pip install -e .) into this interpreter's env")
        script = Path(found)
    return [str(script)]


def cpu_seconds(argv: list[str]) -> float:
    """Run argv to completion and return its user + system CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def import_profile(argv: list[str]) -> tuple[float, int]:
    """Run argv under ``-X importtime``; return (total import seconds, modules imported)."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, check=True)
    total_us, modules = 0, 0
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        modules += 1
        if not name.startswith("  "):  # top level: its cumulative time holds everything it imported
            total_us += int(cumulative)
    return total_us / 1e6, modules


def measure(case: str, argv: list[str], runs: int) -> Row:
    cpu_seconds(argv)  # warm-up: the first run pays for a cold page cache and writing .pyc files
    cpu = [cpu_seconds(argv) for _ in range(runs)]
    profiles = [import_profile(argv) for _ in range(runs)]
    return Row(
        case=case,
        runs=runs,
        cpu_ms=round(statistics.median(cpu) * 1000, 1),
        cpu_ms_min=round(min(cpu) * 1000, 1),
        import_ms=round(statistics.median(p[0] for p in profiles) * 1000, 1),
        modules=round(statistics.median(p[1] for p in profiles)),
    )


def database_cases(goalrt: list[str], url: str) -> list[tuple[str, list[str]]]:
    """Register the bench's goal type on ``url``, submit one goal to get, and return the cases that use them."""
    import psycopg  # only here: the bench's own process, never a measured one

    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT goalrt.register_goal_type(%s, %s::jsonb)", (GOAL_TYPE, json.dumps(GOAL_SCHEMA)))
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = "is it reachable and migrated (goalrt migrate)?"
        raise SystemExit(f"--url: cannot register {GOAL_TYPE} ({reason}); {hint}") from None
    prefix = [sys.executable, *goalrt, "--database-url", url]
    done = subprocess.run([*prefix, "submit", GOAL_TYPE, "n=0"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"--url: goalrt submit failed: {done.stderr.strip()}")
    goal_id = done.stdout.strip()
    cases = [("submit", GOAL_TYPE, "n=1"), ("get", goal_id), ("list", "--limit", "5")]
    return [("goalrt " + " ".join(case), [*prefix, *case]) for case in cases]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="Runs per case (default 10; --quick: 3).")
    parser.add_argument("--quick", action="store_true", help="3 runs per case.")
    parser.add_argument("--json", action="store_true", help="One JSON object per case.")
    parser.add_argument(
        "--url", default=None, help="A migrated scratch database: also measure submit, get and list against it."
    )
    args = parser.parse_args()
    runs = 3 if args.quick else max(1, args.runs)
    goalrt = goalrt_command()
    rows = [measure("python -c pass", [sys.executable, "-c", "pass"], runs)]
    rows += [measure("goalrt " + " ".join(case), [sys.executable, *goalrt, *case], runs) for case in CASES]
    if args.url is not None:
        rows += [measure(case, argv, runs) for case, argv in database_cases(goalrt, args.url)]
    if args.json:
        for row in rows:
            print(json.dumps(asdict(row)))
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}; median of {runs}")
    print(f"{'case':<36} {'cpu ms':>8} {'(min)':>8} {'import ms':>10} {'modules':>8}")
    for r in rows:
        print(f"{r.case:<36} {r.cpu_ms:>8.1f} {r.cpu_ms_min:>8.1f} {r.import_ms:>10.1f} {r.modules:>8}")
    if args.url is None:
        print("(submit, get, list skipped: they need a migrated scratch database, --url URL)")


if __name__ == "__main__":
    main()
