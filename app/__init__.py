"""trio-echo: the coroutine tutorial made real with Trio and structured concurrency."""

__version__ = "0.1.0"
