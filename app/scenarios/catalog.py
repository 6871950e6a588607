"""What a scenario is, as data: its name, title, the tutorial idea it shows, and its parameters.

Rules of this module:

* Pure: no trio.  The page, ``trio-echo demo`` and the runner all read the
  same :class:`ScenarioInfo`, so a parameter has one name, one default and
  one bound everywhere.
* :func:`validate_params` refuses unknown names, wrong types and values out
  of bounds with a message naming the parameter; it never clamps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from app.bounds import NumberKind, check_number

#: A parameter is a bounded number (:data:`~app.bounds.NumberKind`) or one of ``choices``.
ParamKind = NumberKind | Literal["choice"]


class BadParams(ValueError):
    """Parameters were refused; the message names the parameter and the bound."""


@dataclass(frozen=True, slots=True)
class Param:
    """One scenario parameter: a bounded number, or one of a few choices."""

    name: str
    kind: ParamKind
    default: int | float | str | None
    help: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    #: None is accepted (and means "pick one": the runner reports the one it picked).
    optional: bool = False

    def describe(self) -> dict[str, Any]:
        """The JSON form the page builds its form from."""
        info: dict[str, Any] = {
            "name": self.name,
            "type": self.kind,
            "default": self.default,
            "help": self.help,
        }
        if self.lo is not None:
            info["min"] = self.lo
            info["max"] = self.hi
        if self.choices:
            info["choices"] = list(self.choices)
        if self.optional:
            info["optional"] = True
        return info

    def check(self, value: Any) -> int | float | str | None:
        """The value if it is acceptable, else :class:`BadParams`."""
        if value is None and self.optional:
            return None
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                expected = ", ".join(self.choices)
                raise BadParams(f"{self.name}: expected one of {expected}, got {value!r}")
            return str(value)
        assert self.lo is not None and self.hi is not None
        try:
            return check_number(value, self.kind, self.lo, self.hi)
        except ValueError as exc:
            raise BadParams(f"{self.name}: {exc}") from None


@dataclass(frozen=True, slots=True)
class ScenarioInfo:
    """A scenario's metadata."""

    name: str
    title: str
    #: The tutorial section it ports, in the tutorial's words.
    idea: str
    #: What to look for on the page while it runs.
    watch: str
    params: tuple[Param, ...] = ()
    #: False when its tasks run in a quiet nursery (thousands of them): the page shows the
    #: run's summary instead of lanes.
    lanes: bool = True

    def describe(self) -> dict[str, Any]:
        """The JSON form sent in ``hello``."""
        return {
            "name": self.name,
            "title": self.title,
            "idea": self.idea,
            "watch": self.watch,
            "params": [p.describe() for p in self.params],
            "lanes": self.lanes,
        }

    def defaults(self) -> dict[str, Any]:
        """Every parameter at its default (``None`` where an optional one has none)."""
        return {p.name: p.default for p in self.params}


def validate_params(info: ScenarioInfo, given: Mapping[str, Any]) -> dict[str, Any]:
    """The full parameter set for a run: defaults, overridden by *given*, all checked.

    Raises:
        BadParams: an unknown name, a wrong type or a value out of bounds.
    """
    known = {p.name: p for p in info.params}
    unknown = sorted(set(given) - set(known))
    if unknown:
        expected = ", ".join(known) or "none"
        raise BadParams(f"{info.name} has no parameter {unknown[0]!r} (it takes: {expected})")
    values = info.defaults()
    for name, value in given.items():
        values[name] = known[name].check(value)
    return values
