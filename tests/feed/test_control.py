"""Control messages: each refusal is a clear BadControlMessage; random input never escapes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.feed.control import (
    MAX_CONTROL_MESSAGE,
    BadControlMessage,
    Cancel,
    Start,
    parse_control,
    request_id,
)
from app.scenarios import SCENARIOS
from app.scenarios.catalog import BadParams, validate_params


def test_start_and_cancel_parse() -> None:
    assert parse_control('{"type": "start", "scenario": "switch", "id": 7}') == Start(
        scenario="switch", id=7
    )
    assert parse_control(b'{"type": "cancel", "run": "r2"}') == Cancel(run="r2")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected a JSON object"),
        ("nonsense", "expected a JSON object"),
        ("[1, 2]", "expected a JSON object with a 'type', got `array`"),
        ("{}", "expected a 'type' field ('start' or 'cancel')"),
        ('{"type": "explode"}', "expected 'type' to be 'start' or 'cancel'"),
        ('{"type": "start"}', "missing required field `scenario`"),
        ('{"type": "start", "scenario": 5}', "Expected `str`, got `int` - at `$.scenario`"),
        (
            '{"type": "start", "scenario": "x", "params": []}',
            "Expected `object`, got `array` - at `$.params`",
        ),
        ('{"type": "cancel", "run": "r1", "force": true}', "unknown field `force`"),
        (
            '{"type": "cancel", "run": "r1", "id": "' + "x" * 65 + '"}',
            "id is at most 64 characters",
        ),
        ("{" + " " * MAX_CONTROL_MESSAGE + "}", f"at most {MAX_CONTROL_MESSAGE} bytes"),
    ],
)
def test_refusals_say_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(BadControlMessage) as info:
        parse_control(text)
    assert message in str(info.value)


def test_request_id_is_echoed_only_when_usable() -> None:
    assert request_id('{"id": 3, "type": "bogus"}') == 3
    assert request_id('{"id": "abc"}') == "abc"
    assert request_id('{"id": [1]}') is None
    assert request_id('{"id": true}') is None
    assert request_id("not json") is None
    assert request_id('{"id": 1e300}') is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_is_accepted_or_refused_cleanly(value: Any) -> None:
    try:
        text = json.dumps(value)
    except ValueError:
        return  # NaN is not JSON
    try:
        message = parse_control(text)
    except BadControlMessage as exc:
        assert str(exc)
    else:
        assert isinstance(message, Start | Cancel)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_accepted_or_refused_cleanly(data: bytes) -> None:
    try:
        parse_control(data)
    except BadControlMessage as exc:
        assert str(exc)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(SCENARIOS)),
    st.dictionaries(
        st.sampled_from(
            ["rounds", "tasks", "n", "sleep", "count", "scale", "seed", "mode", "duration", "x"]
        ),
        st.none()
        | st.booleans()
        | st.integers(min_value=-(10**20), max_value=10**20)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=12),
        max_size=4,
    ),
)
def test_params_are_in_bounds_or_refused_never_clamped(name: str, params: dict[str, Any]) -> None:
    info = SCENARIOS[name].info
    try:
        values = validate_params(info, params)
    except BadParams as exc:
        assert str(exc)
        return
    for param in info.params:
        value = values[param.name]
        if param.name in params:
            given_value = params[param.name]
            assert value == given_value  # accepted as given, not adjusted
        if value is None:
            assert param.optional
        elif param.kind == "choice":
            assert value in param.choices
        else:
            assert param.lo is not None and param.hi is not None
            assert param.lo <= value <= param.hi
