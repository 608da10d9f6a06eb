"""Anchor text: POS:HASH, parsed, read from a file and appended to one (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from goalrt.errors import GoalrtError, InvalidAnchorError
from goalrt.log.anchors import Anchor

HASH = "5f1c" * 16


def test_parse_and_print_round_trip() -> None:
    anchor = Anchor.parse(f"  42:{HASH.upper()}\n")
    assert anchor == Anchor(42, HASH)
    assert str(anchor) == f"42:{HASH}"
    assert anchor.hash_bytes == bytes.fromhex(HASH)
    assert Anchor.parse(str(anchor)) == anchor
    assert Anchor.parse(f"{2**63 - 1}:{HASH}").pos == 2**63 - 1


@pytest.mark.parametrize(
    "text",
    ["", "42", f"42 {HASH}", f"-1:{HASH}", f"x:{HASH}", "42:abc", f"42:{HASH}0", f"42:{HASH[:-1]}g", f"{2**63}:{HASH}"],
)
def test_bad_text_is_refused_naming_it(text: str) -> None:
    with pytest.raises(InvalidAnchorError, match="expected POS:HASH") as info:
        Anchor.parse(text)
    assert isinstance(info.value, GoalrtError) and isinstance(info.value, ValueError)
    assert repr(text) in str(info.value)


def test_a_long_bad_text_is_cut_in_the_message() -> None:
    with pytest.raises(InvalidAnchorError) as info:
        Anchor.parse("x" * 100_000)
    assert "(100000 characters)" in str(info.value) and len(str(info.value)) < 300


def test_read_skips_blank_lines_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "anchors.txt"
    path.write_text(f"# kept by ops\n\n10:{HASH}\n  20:{'ab' * 32}  # after the deploy\n", encoding="utf-8")
    assert Anchor.read(path) == [Anchor(10, HASH), Anchor(20, "ab" * 32)]


def test_read_names_the_bad_line_the_missing_file_and_an_empty_one(tmp_path: Path) -> None:
    path = tmp_path / "anchors.txt"
    path.write_text(f"10:{HASH}\n\n11:nope\n", encoding="utf-8")
    with pytest.raises(InvalidAnchorError, match=r"anchors\.txt:3: bad anchor '11:nope'"):
        Anchor.read(path)
    with pytest.raises(InvalidAnchorError, match=r"cannot read anchors from .*missing\.txt.*No such file"):
        Anchor.read(tmp_path / "missing.txt")
    path.write_text("# nothing yet\n", encoding="utf-8")
    with pytest.raises(InvalidAnchorError, match="no anchors in"):
        Anchor.read(path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(InvalidAnchorError, match="cannot read anchors from"):
        Anchor.read(path)


def test_append_to_adds_one_line_each_time(tmp_path: Path) -> None:
    path = tmp_path / "anchors.txt"
    Anchor(1, HASH).append_to(path)
    Anchor(2, HASH).append_to(path)
    assert path.read_text(encoding="utf-8") == f"1:{HASH}\n2:{HASH}\n"
    # A file someone edited without a final newline still gets the anchor on a line of its own.
    path.write_text("# mine", encoding="utf-8")
    Anchor(3, HASH).append_to(path)
    assert path.read_text(encoding="utf-8") == f"# mine\n3:{HASH}\n"
    assert Anchor.read(path) == [Anchor(3, HASH)]
