"""Control messages a page sends on ``/ws/events``: start a scenario run, cancel one.

Rules of this module:

* Pure: validates text into typed messages, or raises :class:`BadControlMessage`
  whose text says what was expected and what came.  The socket shell sends
  that text back as an ``error`` message and keeps the connection.
* Parameters are checked against the scenario's declared bounds by
  :func:`app.scenarios.catalog.validate_params`; out of bounds is refused,
  never clamped.

Wire form::

    {"type": "start", "scenario": "spawn-join", "params": {"sleep": 0.5}, "id": 1}
    {"type": "cancel", "run": "r3", "id": 2}
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from app.units import KiB

# Control messages are a few hundred bytes; anything bigger is refused unread.
MAX_CONTROL_MESSAGE: Final = 16 * KiB
# Ids are echoed back; keep them small.
MAX_ID_LENGTH: Final = 64


class BadControlMessage(ValueError):
    """A control message was refused; ``str(exc)`` is the answer for the client."""


class Start(msgspec.Struct, tag_field="type", tag="start", forbid_unknown_fields=True):
    """``{"type": "start", "scenario": NAME, "params": {...}, "id": ANY}``: start a run."""

    scenario: str
    params: dict[str, Any] = {}
    id: str | int | None = None


class Cancel(msgspec.Struct, tag_field="type", tag="cancel", forbid_unknown_fields=True):
    """``{"type": "cancel", "run": RUN_ID, "id": ANY}``: cancel a run."""

    run: str
    id: str | int | None = None


Control = Start | Cancel

_decoder: Final = msgspec.json.Decoder(Control)


def parse_control(data: str | bytes) -> Control:
    """Validate one control message.

    Raises:
        BadControlMessage: not JSON, not an object, an unknown ``type``, a
            missing or mistyped field, an unknown field, or too big.
    """
    size = len(data)
    if size > MAX_CONTROL_MESSAGE:
        raise BadControlMessage(
            f"control messages are at most {MAX_CONTROL_MESSAGE} bytes, got {size}"
        )
    try:
        message: Control = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise BadControlMessage(_explain(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise BadControlMessage(f"expected a JSON object, got something else ({exc})") from None
    if isinstance(message.id, str) and len(message.id) > MAX_ID_LENGTH:
        raise BadControlMessage(f"id is at most {MAX_ID_LENGTH} characters")
    return message


def request_id(data: str | bytes) -> str | int | None:
    """The ``id`` of a message that failed validation, if it has a usable one (for the reply)."""
    try:
        raw = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    if isinstance(raw, dict):
        value = raw.get("id")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**53:
            return value
        if isinstance(value, str) and len(value) <= MAX_ID_LENGTH:
            return value
    return None


def _explain(detail: str) -> str:
    if "Expected `object`, got" in detail and " - at " not in detail:
        return f"expected a JSON object with a 'type', got {detail.split('got ')[-1]}"
    if "Invalid value" in detail and "$.type" in detail:
        return f"expected 'type' to be 'start' or 'cancel': {detail}"
    if "missing required field `type`" in detail:
        return "expected a 'type' field ('start' or 'cancel')"
    return f"bad control message: {detail}"
