"""Handles Ctrl-C its own way: prints a line and exits 5; with "stubborn", ignores it forever."""

import signal
import sys

import trio


async def main() -> None:
    print("ready", flush=True)
    await trio.sleep_forever()


if sys.argv[1:] == ["stubborn"]:

    def ignore(signum: int, frame: object) -> None:
        print("ignoring SIGINT", flush=True)

    signal.signal(signal.SIGINT, ignore)
    print("ready", flush=True)
    signal.pause()
    signal.pause()
    signal.pause()
else:
    try:
        trio.run(main)
    except KeyboardInterrupt:
        print("got KeyboardInterrupt", flush=True)
        sys.exit(5)
