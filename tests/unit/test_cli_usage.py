"""CLI input errors that are caught before any database is touched."""

from __future__ import annotations

import pytest

from goalrt.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(["--database-url", "postgresql://nobody@127.0.0.1:1/none", *argv])
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["events", "append", "--stream", "s", "--type", "t", "--data", "{bad"], "not valid JSON"),
        (["events", "append", "--stream", "s", "--type", "t", "--bogus"], "No such option '--bogus'"),
        (["events", "append", "--type", "t"], "Missing option '--stream'"),
        (["events", "list", "--limit", "0"], "--limit"),
        (["nosuchcommand"], "No such command 'nosuchcommand'"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("goalrt: error: ")
    assert needle in err


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "events", "--help")
    assert code == 0 and "append" in out and "follow" in out
