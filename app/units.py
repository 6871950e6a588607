"""Units for the bounds used across the package, so that a limit reads as its size."""

from typing import Final

KiB: Final = 1024
MiB: Final = 1024 * KiB
