"""GDL workspaces: a folder with ``goalrt.toml``, ``apps/<app>/*.gdl``, ``shared/*.gdl`` and ``tests/*.gdl``.

Every ``.gdl`` file under ``apps/<app>/`` (at any depth) belongs to that app;
``shared/`` holds declarations every app may use; ``tests/`` holds ``test``
blocks only. ``goalrt.toml`` names the workspace and its version and may list
the apps (then every folder under ``apps/`` must be listed and every listed
app must have one).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from goalrt.errors import GdlError
from goalrt.gdl import ast
from goalrt.gdl.compiled import SHARED, TESTS, CompiledWorkspace
from goalrt.gdl.compiler import compile_sources
from goalrt.gdl.diagnostics import Problem, render_all

_MANIFEST: Final = "goalrt.toml"
_APP_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_TOML_AT: Final = re.compile(r"\(at line (\d+), column (\d+)\)")


@dataclass(frozen=True, slots=True)
class Workspace:
    """A workspace read from disk: its manifest and every source, with paths relative to ``root``."""

    root: Path
    name: str
    version: str
    apps: tuple[str, ...]
    sources: tuple[ast.Source, ...]


def find_root(path: str | Path) -> Path:
    """Return the workspace folder: ``path`` or the nearest parent holding ``goalrt.toml``."""
    start = Path(path).resolve()
    for folder in (start, *start.parents):
        if (folder / _MANIFEST).is_file():
            return folder
    raise GdlError(f"{path}: not a goalrt workspace (no {_MANIFEST} here or above; create one with `goalrt init NAME`)")


def load_workspace(path: str | Path = ".") -> Workspace:
    """Read the manifest and every .gdl source of the workspace at (or above) ``path``."""
    root = find_root(path)
    manifest_text = (root / _MANIFEST).read_text(encoding="utf-8")
    problems: list[Problem] = []
    manifest = _manifest(manifest_text, problems)
    name = _text(manifest, "name", root.name, problems)
    version = _text(manifest, "version", "0", problems)
    listed = manifest.get("apps")
    apps_line = next((i for i, line in enumerate(manifest_text.splitlines(), 1) if line.startswith("apps")), 1)
    at_apps = ast.Pos(_MANIFEST, apps_line, 1)
    found = sorted(p.name for p in (root / "apps").iterdir() if p.is_dir()) if (root / "apps").is_dir() else []
    for app in found:
        if app in (SHARED, TESTS) or not _APP_NAME.fullmatch(app):
            problems.append(Problem(ast.Pos(f"apps/{app}", 1, 1), f"invalid app name {app!r}"))
    apps = tuple(found)
    if listed is not None:
        if not isinstance(listed, list) or not all(isinstance(a, str) for a in listed):
            problems.append(Problem(at_apps, "apps must be a list of app names"))
        else:
            for app in sorted(set(listed) - set(found)):
                problems.append(Problem(at_apps, f"app {app!r} is listed but apps/{app}/ is missing"))
            for app in sorted(set(found) - set(listed)):
                problems.append(Problem(at_apps, f"apps/{app}/ is not listed in apps"))
    sources: list[ast.Source] = []
    for app in found:
        sources.extend(_read(root, root / "apps" / app, app, recursive=True))
    sources.extend(_read(root, root / "shared", SHARED, recursive=True))
    sources.extend(_read(root, root / "tests", TESTS, recursive=True))
    for stray in sorted(root.glob("*.gdl")):
        problems.append(Problem(ast.Pos(stray.name, 1, 1), "a .gdl file belongs in apps/<app>/, shared/ or tests/"))
    if problems:
        raise GdlError(render_all(problems, {_MANIFEST: manifest_text}))
    return Workspace(root, name, version, apps, tuple(sources))


def manifest_handlers(root: Path) -> list[str]:
    """Return the handler modules ``goalrt.toml`` names (``handlers = ["workers.shop"]``), or none."""
    try:
        manifest = tomllib.loads((root / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise GdlError(f"{_MANIFEST}:1:1: cannot read: {exc}") from None
    handlers = manifest.get("handlers", [])
    if not isinstance(handlers, list) or not all(isinstance(h, str) and h for h in handlers):
        raise GdlError(f'{_MANIFEST}:1:1: handlers must be a list of module names, e.g. ["workers.shop"]')
    return list(handlers)


def compile_workspace(workspace: Workspace) -> CompiledWorkspace:
    """Check and compile a loaded workspace (every problem reported at once)."""
    return compile_sources(workspace.sources, name=workspace.name, version=workspace.version, apps=workspace.apps)


def check(path: str | Path = ".") -> CompiledWorkspace:
    """Load and compile the workspace at ``path``; raise ``GdlError`` listing every problem."""
    return compile_workspace(load_workspace(path))


def _read(root: Path, folder: Path, app: str, *, recursive: bool) -> list[ast.Source]:
    if not folder.is_dir():
        return []
    files = sorted(folder.rglob("*.gdl") if recursive else folder.glob("*.gdl"))
    out = []
    for file in files:
        rel = file.relative_to(root).as_posix()
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise GdlError(f"{rel}:1:1: not UTF-8 text ({exc.reason})") from None
        out.append(ast.Source(rel, app, text))
    return out


def _manifest(text: str, problems: list[Problem]) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_AT.search(str(exc))
        line, column = (int(match.group(1)), int(match.group(2))) if match else (1, 1)
        message = _TOML_AT.sub("", str(exc)).strip()
        problems.append(Problem(ast.Pos(_MANIFEST, line, column), f"invalid TOML: {message}"))
        return {}


def _text(manifest: dict[str, Any], key: str, default: str, problems: list[Problem]) -> str:
    value = manifest.get(key, default)
    if not isinstance(value, str) or not value:
        problems.append(Problem(ast.Pos(_MANIFEST, 1, 1), f"{key} must be a non-empty string"))
        return default
    return value


def source_for(path: str, text: str) -> ast.Source:
    """Return a source placed by its workspace-relative path (``apps/shop/x.gdl`` belongs to app ``shop``)."""
    parts = path.split("/")
    if len(parts) >= 3 and parts[0] == "apps":
        return ast.Source(path, parts[1], text)
    if parts[0] in (SHARED, TESTS) and len(parts) >= 2:
        return ast.Source(path, parts[0], text)
    raise GdlError(f"{path}:1:1: a .gdl file belongs in apps/<app>/, shared/ or tests/")


__all__ = [
    "Workspace",
    "check",
    "compile_workspace",
    "find_root",
    "load_workspace",
    "manifest_handlers",
    "source_for",
]
