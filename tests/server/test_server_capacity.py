"""The latency and capacity model: unit tests of the formulas, and FIFO queueing over HTTP."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx

from chatprobe.server.latency import Capacity, Schedule
from chatprobe.server.runner import running_server

MS = 1_000_000
TIMER_RESOLUTION = 1 * MS  # libuv timers count whole milliseconds


def test_schedule_is_absolute_and_grows_with_active_streams() -> None:
    capacity = Capacity(limit=4, itl_per_active_ms=2)
    schedule = Schedule(start_ns=1000, ttft_ns=50 * MS, itl_ns=10 * MS, jitter_ns=0,
                        capacity=capacity, seed=1)
    capacity.active = 1
    assert schedule.due(0) == 1000 + 50 * MS
    assert schedule.due(2) == 1000 + 70 * MS  # itl alone with one active stream
    capacity.active = 3  # two more streams: +2 ms each per token
    assert schedule.due(3) == 1000 + 70 * MS + 14 * MS
    capacity.active = 9  # capped at K = 4
    assert schedule.due(4) == 1000 + 84 * MS + 16 * MS
    assert schedule.due(4) == schedule.due(4)  # asking again does not advance


def test_jitter_is_seeded_bounded_and_monotonic() -> None:
    def times(seed: int) -> list[int]:
        s = Schedule(0, 0, 1 * MS, 5 * MS, Capacity(None, 0), seed)
        return [s.due(k) for k in range(50)]

    first = times(7)
    assert first == times(7) and first != times(8)
    assert first == sorted(first)
    assert all(k * MS <= t < k * MS + 5 * MS for k, t in enumerate(first))


def test_capacity_is_fifo() -> None:
    async def scenario() -> list[str]:
        capacity = Capacity(limit=1, itl_per_active_ms=0)
        order: list[str] = []
        await capacity.acquire()

        async def waiter(name: str) -> None:
            await capacity.acquire()
            order.append(name)
            capacity.release()

        tasks = [asyncio.create_task(waiter(n)) for n in "abc"]
        await asyncio.sleep(0)  # let every waiter queue
        assert capacity.active == 1
        capacity.release()
        await asyncio.gather(*tasks)
        assert capacity.active == 0
        return order

    assert asyncio.run(scenario()) == ["a", "b", "c"]


def test_queued_request_starts_after_the_first_finishes() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "max_tokens": 5}
    with running_server(max_concurrency=1, itl_ms=4, ttft_ms=20) as url, \
            httpx.Client(base_url=url, timeout=10) as client:
        # the first request holds the only slot (its headers came: it has the slot) ...
        with client.stream("POST", "/v1/chat/completions", json=body,
                           headers={"X-Request-Id": "first"}) as first, ThreadPoolExecutor(1) as pool:
            second = pool.submit(client.post, "/v1/chat/completions", json=body,
                                 headers={"X-Request-Id": "second"})
            first.read()
            assert second.result(10).status_code == 200
        records = {r["request_id"]: r for r in client.get("/_chatprobe/truth").json()["records"]}
    a, b = records["first"], records["second"]
    assert a["tokens"] == b["tokens"] == 5
    # b waited in the queue: its slot, hence its first token, came after a's last token
    assert b["started_ns"] >= a["token_ns"][-1]
    # ttft counted from the slot (from b's arrival, its first token would be due before a's
    # last one: at once on getting the slot); the timer may fire up to its resolution early
    assert b["first_token_ns"] - b["started_ns"] >= 20 * MS - TIMER_RESOLUTION
    # tokens go out on their absolute due times, within the event loop's 1 ms timer resolution
    for record in (a, b):
        for k, written in enumerate(record["token_ns"]):
            assert written >= record["started_ns"] + 20 * MS + k * 4 * MS - TIMER_RESOLUTION


def test_max_queue_refuses_with_503_and_retry_after() -> None:
    """K=1 and no queue: while one stream holds the slot, the next request is refused at once
    with 503, Retry-After and the dialect's error envelope; once the slot frees, requests pass."""
    import httpx

    from chatprobe.server.runner import running_server
    from chatprobe.specs import load_profile

    body = {"model": "m", "stream": True, "max_tokens": 40, "messages": [{"role": "user", "content": "hi"}]}
    with running_server(max_concurrency=1, max_queue=0, itl_ms=20) as url, httpx.Client(base_url=url, timeout=10) as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as first:
            lines = first.iter_lines()
            next(lines)  # the first token: this request holds the only slot
            refused = http.post("/v1/chat/completions", json={**body, "stream": False})
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert load_profile("openai").validator("error").errors(refused.json()) == []
            for _ in lines:
                pass
        assert http.post("/v1/chat/completions", json={**body, "stream": False}).status_code == 200
