from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from goalrt.errors import InvalidEventError
from goalrt.log.event import Event, NewEvent, coerce_events, new_event


def test_new_event_folds_metadata_helpers() -> None:
    e = new_event("s", "t", {"a": 1}, metadata={"x": 1}, causation_id=7, correlation_id="c", actor="me")
    assert e.metadata == {"x": 1, "causation_id": "7", "correlation_id": "c", "actor": "me"}
    assert e.data == {"a": 1}


def test_new_event_defaults_data_to_empty_object() -> None:
    assert new_event("s", "t").data == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stream": "", "type": "t"}, "stream: must not be empty"),
        ({"stream": "s", "type": ""}, "type: must not be empty"),
        ({"stream": "s", "type": "x" * 513}, "type: String should have at most 512 characters"),
        ({"stream": "s", "type": "t", "data": {"v": math.nan}}, "data: JSON has no NaN or Infinity"),
        ({"stream": "s", "type": "t", "data": {"v": object()}}, "data"),
    ],
)
def test_new_event_names_the_bad_field(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        new_event(**kwargs)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_coerce_events_names_the_element() -> None:
    with pytest.raises(InvalidEventError, match=r"^events\[1\]\.type: must not be empty$"):
        coerce_events([{"stream": "s", "type": "t"}, {"stream": "s", "type": ""}])
    with pytest.raises(InvalidEventError, match=r"^events\[0\]\.stream: is required$"):
        coerce_events([{"type": "t"}])
    with pytest.raises(InvalidEventError, match=r"^events\[0\]\.extra: Extra inputs are not permitted$"):
        coerce_events([{"stream": "s", "type": "t", "extra": 1}])
    with pytest.raises(InvalidEventError, match=r"^events\[0\]: must be a mapping"):
        coerce_events(["nope"])  # type: ignore[list-item]


def test_coerce_events_accepts_models_and_mappings() -> None:
    batch = coerce_events([NewEvent(stream="a", type="b"), {"stream": "c", "type": "d", "data": [1]}])
    assert [(e.stream, e.type, e.data) for e in batch] == [("a", "b", {}), ("c", "d", [1])]


def test_event_to_json_is_plain() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    e = Event(3, 9, "s", "t", {"a": 1}, {"m": 2}, when, b"\x00", b"\xab", "app")
    assert e.to_json() == {
        "pos": 3,
        "id": 9,
        "stream": "s",
        "type": "t",
        "data": {"a": 1},
        "metadata": {"m": 2},
        "recorded_at": "2026-01-02T03:04:05+00:00",
        "db_role": "app",
        "hash": "ab",
    }
