"""Bounded numbers: one parser and one checker, one way to say a refusal."""

from __future__ import annotations

import argparse

import pytest

from app.bounds import NumberKind, check_number, number_type, parse_number, show


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [("8001", "int", 8001), ("1_000", "int", 1000), (" 0.5 ", "float", 0.5), ("1e3", "float", 1e3)],
)
def test_text_parses_as_its_kind(text: str, kind: NumberKind, expected: float) -> None:
    value = parse_number(text, kind)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        ("ten", "int", "expected a whole number, got 'ten'"),
        ("1.5", "int", "expected a whole number, got '1.5'"),
        ("soon", "float", "expected a number, got 'soon'"),
        ("nan", "float", "expected a number, got 'nan'"),
        ("inf", "float", "expected a number, got 'inf'"),
    ],
)
def test_text_that_is_not_a_number_of_the_kind_is_refused(
    text: str, kind: NumberKind, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        parse_number(text, kind)


@pytest.mark.parametrize(
    ("value", "kind", "message"),
    [
        (True, "int", "expected a number, got True"),
        ("3", "int", "expected a number, got '3'"),
        (2.5, "int", "expected a whole number, got 2.5"),
        (float("inf"), "float", "expected a finite number, got inf"),
        (11, "float", "11 is outside 0..10"),
        (-0.5, "float", "-0.5 is outside 0..10"),
    ],
)
def test_a_value_of_the_wrong_kind_or_out_of_bounds_is_refused_never_clamped(
    value: object, kind: NumberKind, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_number(value, kind, 0, 10)


def test_the_bounds_themselves_are_accepted() -> None:
    assert check_number(0, "float", 0, 10) == 0.0
    assert check_number(10.0, "int", 0, 10) == 10  # JSON's 10.0 is a whole number
    assert isinstance(check_number(10.0, "int", 0, 10), int)


@pytest.mark.parametrize(
    ("value", "shown"), [(10.0, "10"), (0.05, "0.05"), (99_999, "99999"), (1_000_000, "1,000,000")]
)
def test_bounds_are_shown_as_people_read_them(value: float, shown: str) -> None:
    assert show(value) == shown


def test_an_argparse_type_says_the_same_refusal() -> None:
    port = number_type("int", 0, 65535)
    assert port("8001") == 8001
    for text, message in (("x", "expected a whole number, got 'x'"), ("70000", "70000 is outside")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            port(text)
    assert number_type("float")("1e9") == 1e9  # no bounds given: parsed only
