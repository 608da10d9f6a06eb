"""The schema files define each object once, in its final form."""

from __future__ import annotations

import re

from goalrt.db.resources import EXTENSIONS_FILE, schema_files


def code_of(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))


def test_each_object_is_created_once_and_never_altered() -> None:
    # Plain CREATE: a second definition of a function fails the build instead
    # of silently replacing the first. Changes are made where the object is
    # defined, never by a later ALTER or DROP.
    for path in schema_files():
        code = code_of(path.read_text(encoding="utf-8"))
        assert not re.search(r"\bCREATE\s+OR\s+REPLACE\b", code), path.name
        assert not re.search(r"^\s*(ALTER|DROP)\s+(TABLE|FUNCTION|INDEX|VIEW|TRIGGER)\b", code, re.MULTILINE), path.name


def test_only_the_extensions_file_creates_extensions() -> None:
    # Forks leave that file out, and only that file.
    creating = [p.name for p in schema_files() if "CREATE EXTENSION" in code_of(p.read_text(encoding="utf-8"))]
    assert creating == [EXTENSIONS_FILE]
    assert schema_files()[0].name == EXTENSIONS_FILE
