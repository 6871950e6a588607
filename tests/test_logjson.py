"""``--log-format json``: every record is one line of JSON, connection fields included."""

from __future__ import annotations

import json
import logging
import sys

from app.logjson import JsonFormatter


def record(**extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(
        "app.echo", logging.WARNING, __file__, 1, "conn %s: %s", ("7", "x"), None
    )
    rec.__dict__.update(extra)
    return rec


def test_a_record_is_one_json_object_with_its_connection_fields() -> None:
    line = JsonFormatter().format(record(conn=7, peer="127.0.0.1:5000", transport="tcp"))
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "warning" and data["logger"] == "app.echo"
    assert data["message"] == "conn 7: x"
    assert data["time"].endswith("+00:00")
    assert (data["conn"], data["peer"], data["transport"]) == (7, "127.0.0.1:5000", "tcp")


def test_a_traceback_stays_on_one_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        rec = record()
        rec.exc_info = sys.exc_info()
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc"]


def test_lines_without_a_connection_have_no_connection_fields() -> None:
    assert set(json.loads(JsonFormatter().format(record()))) == {
        "time",
        "level",
        "logger",
        "message",
    }
