"""What a user installs can migrate a database and run the demo; alembic from the repo migrates the same."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from goalrt.db import migrate

from ..integration.catalog import describe

REPO = Path(__file__).resolve().parent.parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOALRT_") and k != "PYTHONPATH"}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from the repository, installed (without its dependencies) into a folder of its own."""
    root = tmp_path_factory.mktemp("wheel")
    dist, site = root / "dist", root / "site"
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
    return site


def test_wheel_outside_the_repo_can_migrate(site: Path, tmp_path: Path, empty_db_url: str, db_url: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = clean_env(PYTHONPATH=str(site), GOALRT_DATABASE_URL=empty_db_url)
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import goalrt, goalrt.db.resources as r; print(goalrt.__file__); "
            "print(r.sql_dir()); print(r.migrations_dir()); print(*r.schema_files())",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=elsewhere,
        check=True,
    ).stdout.split()
    assert all(path.startswith(str(site)) for path in where), where
    # The schema ships whole: every file of sql/schema, in the package.
    assert [Path(p).name for p in where[3:]] == sorted(p.name for p in (REPO / "sql" / "schema").glob("*.sql"))

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


def test_wheel_outside_the_repo_runs_the_demo(site: Path, tmp_path: Path, db_url: str) -> None:
    """`pip install .` is not editable: the shop workspace and its handlers ship inside the package."""
    shop = site / "goalrt" / "examples" / "shop"
    assert (shop / "goalrt.toml").is_file() and (shop / "workers" / "shop.py").is_file()
    assert sorted(p.relative_to(shop).as_posix() for p in shop.rglob("*.gdl")) == sorted(
        p.relative_to(REPO / "gdl" / "examples" / "shop").as_posix()
        for p in (REPO / "gdl" / "examples" / "shop").rglob("*.gdl")
    )
    env = clean_env(PYTHONPATH=str(site), GOALRT_DATABASE_URL=db_url)
    result = subprocess.run(
        [sys.executable, "-m", "goalrt", "demo"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    # The workspace and the handlers came from the wheel, not from this clone.
    assert f"  workspace  shop from {shop}: " in result.stdout
    assert f"  handlers   {shop / 'workers' / 'shop.py'} (label.print is pure" in result.stdout
    assert "  goals     4: 4 complete (checkout 2, fulfill 1, refund 1)" in result.stdout
    assert result.stdout.rstrip().endswith("demo ok")


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


def test_wheel_outside_the_repo_checks_a_workspace_against_the_builtin_contracts(site: Path, tmp_path: Path) -> None:
    """The built-ins' contracts (gdl/builtin) ship as goalrt/builtin: gdl check knows http.call's arguments."""
    assert sorted(p.name for p in (site / "goalrt" / "builtin").glob("*.gdl")) == sorted(
        p.name for p in (REPO / "gdl" / "builtin").glob("*.gdl")
    )
    ws = tmp_path / "ws"
    (ws / "apps" / "a").mkdir(parents=True)
    (ws / "goalrt.toml").write_text('name = "ws"\n')
    action = 'type T { }\naction ping(t: T) { handler http.call with { url = "https://example.com/{t}" %s } }\n'
    (ws / "apps" / "a" / "a.gdl").write_text(action % "")
    env = clean_env(PYTHONPATH=str(site))
    ok = subprocess.run(
        [sys.executable, "-m", "goalrt", "gdl", "check"], capture_output=True, text=True, env=env, cwd=ws
    )
    assert ok.returncode == 0, ok.stderr
    (ws / "apps" / "a" / "a.gdl").write_text(action % "retries = 3")
    bad = subprocess.run(
        [sys.executable, "-m", "goalrt", "gdl", "check"], capture_output=True, text=True, env=env, cwd=ws
    )
    assert bad.returncode == 1 and "retries is not an argument of http.call" in bad.stderr
