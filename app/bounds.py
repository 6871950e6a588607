"""Bounded numbers: the one parser and checker behind flags, environment and scenario parameters.

Rules of this module:

* Pure.  A number is refused with a message that says what was expected and
  what came (``expected a whole number, got 'ten'``, ``11 is outside 0..10``);
  the caller puts the name of the flag, variable or parameter in front.  Out of
  bounds is refused, never clamped.
* Used by :mod:`app.config` (flags and ``TRIO_ECHO_*``), the ``bench`` and
  ``demo`` commands' flags (:func:`number_type`) and
  :mod:`app.scenarios.catalog` (parameters from the page and from ``demo``),
  so each says a refusal the same way.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Final, Literal

#: ``int`` is a whole number (``_`` separators allowed in text); ``float`` any finite number.
NumberKind = Literal["int", "float"]

_EXPECTED: Final[dict[NumberKind, str]] = {"int": "a whole number", "float": "a number"}


def parse_number(text: str, kind: NumberKind) -> int | float:
    """*text* as a number of *kind*.

    Raises:
        ValueError: not a number of that kind, or not finite.
    """
    stripped = text.strip()
    try:
        value: int | float = int(stripped.replace("_", "")) if kind == "int" else float(stripped)
    except ValueError:
        raise ValueError(f"expected {_EXPECTED[kind]}, got {stripped!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a number, got {stripped!r}")
    return value


def check_number(value: object, kind: NumberKind, lo: float, hi: float) -> int | float:
    """*value* (a JSON number, or one from :func:`parse_number`) as *kind*, within ``lo..hi``.

    A whole float is accepted as ``int`` (JSON does not tell ``2`` from ``2.0``).

    Raises:
        ValueError: not a number (``True`` is not one), not whole for ``int``, not
            finite, or outside the bounds.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    number: int | float
    if kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected a whole number, got {value!r}")
        number = int(value)
    elif not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    else:
        number = float(value)
    if not lo <= number <= hi:
        raise ValueError(f"{value!r} is outside {show(lo)}..{show(hi)}")
    return number


def number_type(
    kind: NumberKind, lo: float | None = None, hi: float | None = None
) -> Callable[[str], int | float]:
    """An argparse ``type=`` for a number of *kind* (within ``lo..hi`` when given).

    Its refusal is :class:`argparse.ArgumentTypeError` with the message above, so
    argparse prints it instead of a generic "invalid value".
    """

    def parse(text: str) -> int | float:
        try:
            value = parse_number(text, kind)
            return value if lo is None or hi is None else check_number(value, kind, lo, hi)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def show(value: float) -> str:
    """A bound as people read it: ``10`` not ``10.0``, ``1,000,000`` not ``1000000``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and value >= 100_000:
        return f"{value:,}"
    return str(value)
