"""The harness's own rules, without a browser: a missing Chromium skips, except under CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import require_chromium

MISSING = Path("/nonexistent/chromium")


def test_missing_browser_skips_locally() -> None:
    with pytest.raises(pytest.skip.Exception, match="not found"):
        require_chromium(MISSING, None)


@pytest.mark.parametrize("ci", ["false", "1", ""])
def test_only_ci_true_turns_the_skip_into_a_failure(ci: str) -> None:
    with pytest.raises(pytest.skip.Exception):
        require_chromium(MISSING, ci)


def test_missing_browser_fails_under_ci() -> None:
    with pytest.raises(pytest.fail.Exception, match="under CI"):
        require_chromium(MISSING, "true")


def test_present_browser_passes(tmp_path: Path) -> None:
    browser = tmp_path / "chromium"
    browser.touch()
    require_chromium(browser, "true")  # returns: nothing to skip or fail
