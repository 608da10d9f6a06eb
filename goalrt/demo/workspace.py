"""Where the shop example lives: inside the package in a wheel, or at the top of a clone; its handlers' import.

A wheel ships the workspace as ``goalrt/examples/shop`` with its handlers in its
``workers/shop.py`` (see pyproject.toml); a clone has ``gdl/examples/shop`` and
``workers/shop.py`` at its top.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from goalrt.errors import GoalrtError

# The goalrt package folder (this module is goalrt/demo/workspace.py).
PACKAGE_DIR = Path(__file__).resolve().parent.parent


def shop_workspace() -> Path:
    """Return the shop workspace folder: inside the package (a wheel) or at the top of a clone."""
    for candidate in (PACKAGE_DIR / "examples" / "shop", PACKAGE_DIR.parent / "gdl" / "examples" / "shop"):
        if (candidate / "goalrt.toml").is_file():
            return candidate
    raise GoalrtError(f"goalrt is installed without the shop example (looked in {PACKAGE_DIR}/examples and beside it)")


def shop_handlers(workspace: Path) -> Path:
    """Return the shop's handler module: in the workspace's workers/ (a wheel) or the clone's workers/."""
    for candidate in (workspace / "workers" / "shop.py", PACKAGE_DIR.parent / "workers" / "shop.py"):
        if candidate.is_file():
            return candidate.resolve()
    raise GoalrtError(f"goalrt is installed without the shop's handlers (workers/shop.py beside {workspace})")


def import_handlers(path: Path) -> ModuleType:
    """Import the handler module at ``path`` once; its decorators register into the default registry.

    Loaded by its file rather than as ``workers.shop``: a ``workers`` package of
    the user's own may be on the path, and a wheel has no such package.
    """
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve() == path:
            return module
    name = "goalrt_demo_shop_handlers"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise GoalrtError(f"cannot import the shop's handlers from {path}")
    module = importlib.util.module_from_spec(spec)
    # In sys.modules before it runs: pydantic resolves the models' annotations through it.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
