"""The reference server's per-request objects are freed by reference counting.

Cyclic garbage is freed only by the cyclic collector, whose pauses stall every
stream the server is writing (and its truth stamps)."""

from __future__ import annotations

import asyncio
import gc
import weakref

from chatprobe.server.app import _Disconnect


def test_disconnect_watch_leaves_no_cycle() -> None:
    async def main() -> weakref.ref[asyncio.Task[None]]:
        async def receive() -> dict[str, str]:
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        watch = _Disconnect(receive)
        await asyncio.sleep(0)  # the watcher now waits in receive()
        watch.close()
        await asyncio.sleep(0)  # ... and ends
        assert watch.task.done()
        return weakref.ref(watch.task)

    gc.collect()
    gc.disable()
    try:
        ref = asyncio.run(main())
        assert ref() is None  # freed without the collector: no cycle held it
    finally:
        gc.enable()
