"""Browser tests: the page in headless Chromium against a real ``trio-echo serve`` process.

This folder is a package on purpose: its ``conftest.py`` is then imported as
``browser.conftest`` and does not replace ``tests/conftest.py`` in
``sys.modules["conftest"]``, which other test modules import by that name.
"""
