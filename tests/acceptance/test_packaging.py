"""What a user installs can migrate a database; alembic from the repo does the same."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from goalrt import migrate

from ..integration.catalog import describe

REPO = Path(__file__).resolve().parent.parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOALRT_") and k != "PYTHONPATH"}
    env.update(extra)
    return env


def test_wheel_outside_the_repo_can_migrate(tmp_path: Path, empty_db_url: str, db_url: str) -> None:
    dist, site, elsewhere = tmp_path / "dist", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("goalrt-*.whl")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = clean_env(PYTHONPATH=str(site), GOALRT_DATABASE_URL=empty_db_url)
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import goalrt, goalrt.resources as r; print(goalrt.__file__); "
            "print(r.sql_dir()); print(r.migrations_dir())",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=elsewhere,
        check=True,
    ).stdout.split()
    assert all(path.startswith(str(site)) for path in where), where

    result = subprocess.run(
        [sys.executable, "-m", "goalrt", "migrate"],
        capture_output=True,
        text=True,
        env=env,
        cwd=elsewhere,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert describe(empty_db_url) == describe(db_url)


def test_alembic_upgrade_head_from_the_repo_equals_goalrt_migrate(empty_db_url: str, db_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        capture_output=True,
        text=True,
        env=clean_env(GOALRT_DATABASE_URL=empty_db_url),
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert migrate.status(empty_db_url).up_to_date
    assert describe(empty_db_url) == describe(db_url)
