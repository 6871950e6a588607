"""argv[1] tasks passing a token around through memory channels (the agent must stay bounded)."""

import sys

import trio


async def relay(receive: trio.MemoryReceiveChannel[int], send: trio.MemorySendChannel[int]) -> None:
    async for token in receive:
        if token == 0:
            await send.send(0)
            return
        await send.send(token - 1)


async def main() -> None:
    n, laps = int(sys.argv[1]), int(sys.argv[2])
    first_send, receive = trio.open_memory_channel[int](1)
    async with trio.open_nursery() as nursery:
        send = first_send
        channels = []
        for i in range(n):
            nxt_send, nxt_receive = trio.open_memory_channel[int](1)
            channels.append((receive, nxt_send))
            nursery.start_soon(relay, receive, nxt_send, name=f"relay-{i}")
            receive = nxt_receive
        await send.send(n * laps)
        async for token in receive:
            if token == 0:
                break
            await first_send.send(token)
        nursery.cancel_scope.cancel()
    print("done", flush=True)


trio.run(main)
