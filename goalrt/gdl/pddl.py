"""Write a PDDL task as a GDL workspace (``goalrt gdl import-pddl``): the same problem in GDL's words.

The workspace holds one app named after the domain: a ``type`` per PDDL type
(``under _objects.TYPE``), a ``pure`` action per PDDL action, the goal
``solve`` (the problem's goal), and a test whose ``given`` lines are the
initial state. GDL has no subtypes, so the hierarchy is flattened into the
state: an object is listed under its type and under every ancestor type
(``_objects.vehicle.truck1`` beside ``_objects.truck.truck1``), so a
parameter of a parent type ranges over the objects of its subtypes, as in
PDDL. Planning ``solve`` from the test's state gives the plan ``goalrt plan
--pddl`` gives (tests/unit/test_pddl_cli.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from goalrt.errors import GoalrtError
from goalrt.planner.actions import Delete, Set
from goalrt.planner.pddl import Task, conjunction, initial_state, object_types, schemas

GOAL: Final = "solve"


def _ident(text: str, prefix: str) -> str:
    """A GDL identifier from a PDDL name (``-`` and other characters become ``_``)."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return out if re.match(r"[A-Za-z_]", out) else f"{prefix}_{out}"


def _files(task: Task) -> dict[str, str]:
    domain = task.domain.name
    app = _ident(domain, "domain")
    head = f"# Imported from PDDL by `goalrt gdl import-pddl` (domain {domain}, problem {task.name}).\n"
    types = [head, "# GDL has no subtypes: the test lists each object under its type and every ancestor type.\n"]
    for t in object_types(task):
        parent = f"  # subtype of {t.parent}" if t.parent else ""
        types.append(f"type {t.name} under {t.keys_under[0]} {{ }}{parent}\n")
    actions = [head]
    for schema in schemas(task):
        params = ", ".join(f"{p}: {kind}" for p, kind in schema.params)
        actions.append(f"\naction {schema.name}({params}) {{\n")
        if str(schema.pre) != "true":
            actions.append(f"  require {schema.pre}\n")
        for effect in schema.effects:
            if isinstance(effect, Delete):
                actions.append(f"  effect delete {effect.path}\n")
            else:
                assert isinstance(effect, Set)
                actions.append(f"  effect {effect.path} = true\n")
        actions.append("  pure\n}\n")
    goal = conjunction(task.goal)
    goals = [head, f"\ngoal {GOAL} {{\n  achieve {goal}\n}}\n"]
    test = [head, f"\ntest {_ident(task.name, 'problem')} {{\n"]
    test += [f"  given {path} = true\n" for path in initial_state(task, flatten=True)]
    test.append(f"  when goal {GOAL}()\n  expect goal complete\n  expect state {goal}\n}}\n")
    manifest = f'{head}name = "{domain}"\nversion = "1"\napps = ["{app}"]\n'
    return {
        "goalrt.toml": manifest,
        f"apps/{app}/types.gdl": "".join(types),
        f"apps/{app}/actions.gdl": "".join(actions),
        f"apps/{app}/goals.gdl": "".join(goals),
        "tests/problem.gdl": "".join(test),
    }


def write_workspace(task: Task, root: str | Path) -> list[str]:
    """Write the workspace into ``root`` (new or empty); return the files written, relative to it."""
    folder = Path(root)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise GoalrtError(f"{folder}: exists and is not an empty folder")
    files = _files(task)
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)
