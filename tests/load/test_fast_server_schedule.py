"""benchmarks/fast_server.py's token schedules (the cost benchmark's fairness rests on them):
``step`` puts every first token on the global ITL grid, at or after received + TTFT;
``random`` delays it by less than one ITL, spread over the whole cycle; ``free`` not at all."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
TTFT_NS, ITL_NS = 50_000_000, 5_000_000


@pytest.fixture(scope="module")
def fast_server() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("fast_server", ROOT / "benchmarks" / "fast_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield module
    finally:
        asyncio.set_event_loop(None)
        loop.close()


STARTS = [0, 1, 4_999_999, 5_000_000, 123_456_789, 10**15 + 7]


def test_free_writes_the_first_token_at_received_plus_ttft(fast_server: ModuleType) -> None:
    server = fast_server.Server(50, 5, 10, "free")
    assert [server.first_due(t) for t in STARTS] == [t + TTFT_NS for t in STARTS]


def test_step_puts_every_first_token_on_the_grid(fast_server: ModuleType) -> None:
    server = fast_server.Server(50, 5, 10, "step")
    for t in STARTS:
        due = server.first_due(t)
        assert due % ITL_NS == 0 and t + TTFT_NS <= due < t + TTFT_NS + ITL_NS, (t, due)


def test_random_spreads_first_tokens_over_one_itl(fast_server: ModuleType) -> None:
    server = fast_server.Server(50, 5, 10, "random")
    delays = [server.first_due(1_000) - 1_000 - TTFT_NS for _ in range(2000)]
    assert all(0 <= d < ITL_NS for d in delays)
    # every fifth of the cycle gets its share (a phase of its own, not one cluster)
    fifths = [sum(1 for d in delays if k * ITL_NS // 5 <= d < (k + 1) * ITL_NS // 5) for k in range(5)]
    assert min(fifths) > 300, fifths
