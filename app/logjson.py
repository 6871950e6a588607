"""``--log-format json``: one JSON object per log line, for log shippers.

Each line is ``{"time": ISO 8601 UTC, "level", "logger", "message", ...}``,
plus the connection's fields when the record carries them (passed as
``extra=`` by the code that logs about a connection: :data:`CONNECTION_FIELDS`),
plus ``exc`` with the traceback when there is one.  Built with the standard
library's ``json``: log lines are rare, and this must never be what fails.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Final

#: ``extra=`` keys that describe the connection a line is about; copied when present.
CONNECTION_FIELDS: Final = ("conn", "peer", "transport", "path", "worker", "inst")


class JsonFormatter(logging.Formatter):
    """Format each record as one line of JSON (no newline inside: tracebacks are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONNECTION_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)
