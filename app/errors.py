"""How an unexpected error is told in one log line."""

from __future__ import annotations


def describe(exc: BaseException) -> str:
    """``Type: message`` of the first error inside nested exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"
