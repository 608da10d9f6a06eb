"""Print the CREATE OR REPLACE text of named functions from the schema files, for a migration delta.

    python tools/fnsync.py plan_goals_v1 complete_steps_v1            # from sql/schema (the new text)
    python tools/fnsync.py --rev HEAD plan_goals_v1 complete_steps_v1 # as committed (the old text, for a down)

A function's text runs from its ``CREATE FUNCTION goalrt.<name>(`` line to the
first line that is ``$$;`` (CREATE OR REPLACE keeps the function's COMMENT).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def schema_text(rev: str | None) -> str:
    if rev is None:
        files = sorted((REPO / "sql" / "schema").glob("*.sql"))
        return "\n".join(f.read_text(encoding="utf-8") for f in files)
    # The files as they were at rev (a file added since is not there).
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", rev, "sql/schema/"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.split()
    return "\n".join(
        subprocess.run(["git", "show", f"{rev}:{name}"], cwd=REPO, check=True, capture_output=True, text=True).stdout
        for name in sorted(n for n in names if n.endswith(".sql"))
    )


def function_text(text: str, name: str) -> str:
    start = re.search(rf"^CREATE FUNCTION goalrt\.{re.escape(name)}\(", text, re.M)
    if start is None:
        raise SystemExit(f"fnsync: no function goalrt.{name} in the schema files")
    end = text.index("\n$$;\n", start.start()) + len("\n$$;\n")
    return "CREATE OR REPLACE FUNCTION" + text[start.start() + len("CREATE FUNCTION") : end]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", help="function names (without the goalrt. schema)")
    parser.add_argument("--rev", help="read the schema files as of this git revision")
    args = parser.parse_args()
    text = schema_text(args.rev)
    sys.stdout.write("\n".join(function_text(text, name) for name in args.names))


if __name__ == "__main__":
    main()
