"""GDL, the Goal Definition Language: parse, check and compile workspaces of ``.gdl`` files.

    from goalrt.gdl import check

    compiled = check("path/to/workspace")  # raises GdlError listing every problem
    print(compiled.summary(), compiled.content_hash)

See docs/gdl.md for the language reference.
"""

from __future__ import annotations

from goalrt.gdl.compiled import CompiledWorkspace
from goalrt.gdl.compiler import compile_sources
from goalrt.gdl.parser import parse_source
from goalrt.gdl.workspace import Workspace, check, compile_workspace, load_workspace, source_for

__all__ = [
    "CompiledWorkspace",
    "Workspace",
    "check",
    "compile_sources",
    "compile_workspace",
    "load_workspace",
    "parse_source",
    "source_for",
]
