"""``python -m app``: the same entry point as the ``trio-echo`` command."""

from app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
