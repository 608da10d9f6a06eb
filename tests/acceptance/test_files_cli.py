"""`goalrt replay --verify --files`: a stored file that no longer matches its recorded sha256 is found."""

from __future__ import annotations

import json
from pathlib import Path

from goalrt.actions.files import write
from goalrt.state.state import State

from .test_cli import goalrt


def test_replay_verify_files_finds_a_changed_or_missing_file(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "goalrt.toml").write_text('name = "files"\n[actions.file]\nroot = "store"\n')
    root = tmp_path / "store"
    with State.connect(db_url) as state:
        for key in ("a", "b", "c"):
            # What file.upload records at files.<key> with its step's completion.
            state.set(f"files.docs.{key}", write(root, f"docs/{key}.txt", iter([key.encode() * 10]), 1000).as_json())
        state.set("files.note", "not a file's identity: skipped")

    result = goalrt(db_url, "replay", "--verify", "--files", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"files: 3 checked under {root.resolve()}, all match"

    (root / "docs" / "b.txt").write_text("bbbbbbbbbX")  # same size, other bytes
    (root / "docs" / "c.txt").unlink()
    result = goalrt(db_url, "replay", "--verify", "--files", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("identical at position")
    assert lines[1].startswith("files.docs.b: docs/b.txt: differs (recorded 10 bytes sha256 ")
    assert lines[2] == "files.docs.c: docs/c.txt: missing"
    assert result.stderr.strip() == "goalrt: error: files: 2 of 3 differ from what the state records"

    as_json = goalrt(db_url, "replay", "--verify", "--files", "--json", cwd=tmp_path)
    report = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and report["identical"] is True
    assert report["files"]["checked"] == 3 and len(report["files"]["problems"]) == 2

    # Without a root configured, a one-line error; --files needs --verify.
    bare = tmp_path.with_name(tmp_path.name + "-bare")  # beside, not under, the goalrt.toml
    bare.mkdir()
    result = goalrt(db_url, "replay", "--verify", "--files", cwd=bare)
    assert result.returncode == 1 and "file storage has no root" in result.stderr and "Traceback" not in result.stderr
    assert goalrt(db_url, "replay", "--to", "1", "--files").returncode == 2
