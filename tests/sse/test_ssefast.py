"""The compiled accelerator chatprobe._ssefast.scan, tested directly: against a
naive block-by-block reading and the pure-Python _scan_py, on its argument
checks, on the Event instances it builds, and on reference counts and memory.
(The decoder tests run over both implementations: see conftest.py.)"""

from __future__ import annotations

import gc
import importlib.util
import pickle
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sse_reference import reference_events

import chatprobe.sse
from chatprobe.sse import Event, SSEDecoder, _scan_py

pytestmark = pytest.mark.one_impl

_BOM = b"\xef\xbb\xbf"
_SHAPES = [  # (prefix, sep, back) as the decoder passes them
    (b"data: ", b"\n\n", 0),
    (_BOM + b"event: message\ndata: ", b"\n\n", 0),
    (b"data: ", b"\r\n\r\n", 1),
    (b"event: message\r\ndata: ", b"\r\n\r\n", 1),
]

needs_ext = pytest.mark.skipif(
    chatprobe.sse._scan_c is None,
    reason="chatprobe._ssefast is not built (no compiler at install, or CHATPROBE_NO_EXT=1)",
)


def _scan() -> Callable[..., tuple[list[Event], int, int]]:
    assert chatprobe.sse._scan_c is not None
    return chatprobe.sse._scan_c


def reference_scan(
    region: bytes, start: int, stop: int, prefix: bytes, sep: bytes, back: int, pos: int,
    last_id: str, first: int | None, arrival: int | None,
) -> tuple[list[Event], int, int]:  # fmt: skip
    """scan() written plainly: take blocks while each is prefix + value + sep,
    the value holding no CR, LF or BOM and decoding as UTF-8."""
    events: list[Event] = []
    at = start
    stamp = first
    while stop - at >= len(prefix) + len(sep) and region.startswith(prefix, at):
        begin = at + len(prefix)
        ends = [i for i in (region.find(b"\n", begin, stop), region.find(b"\r", begin, stop)) if i >= 0]
        eol = min(ends, default=stop)
        value = region[begin:eol]
        if eol + len(sep) > stop or region[eol : eol + len(sep)] != sep or _BOM in value:
            break
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            break
        nxt = pos + (eol + len(sep) - at)
        events.append(Event("message", text, last_id, pos, nxt - back, stamp, None))
        at = eol + len(sep)
        pos = nxt
        stamp = arrival
    return events, at, pos


_VALUES = st.one_of(
    st.text("ab{}\":é日\uff0c ", max_size=8).map(str.encode),
    st.lists(
        st.sampled_from([b"x", b"\n", b"\r", _BOM, b"\xef", b"\xff", b"\xe2\x82", b"\xc3\xa9"]),
        max_size=4,
    ).map(b"".join),
)


@st.composite
def _runs(draw: st.DrawFn) -> tuple[bytes, int, int, bytes, bytes, int]:
    prefix, sep, back = draw(st.sampled_from(_SHAPES))
    blocks = draw(st.lists(_VALUES, max_size=8))
    other = draw(st.sampled_from([b"", b": keep-alive" + sep[: len(sep) // 2], b"id: 1" + sep]))
    body = b"".join(prefix + v + sep for v in blocks)
    lead = draw(st.sampled_from([b"", b"junk"]))
    region = lead + body + other
    stop = draw(st.sampled_from([len(region), len(lead) + len(body), max(len(region) - 1, len(lead))]))
    return region, len(lead), stop, prefix, sep, back


@needs_ext
@settings(max_examples=400, deadline=None)
@given(run=_runs(), pos=st.integers(0, 2**40), last_id=st.sampled_from(["", "7", "é"]))
def test_scan_matches_a_plain_reading_and_the_python_loop(
    run: tuple[bytes, int, int, bytes, bytes, int], pos: int, last_id: str
) -> None:
    region, start, stop, prefix, sep, back = run
    args = (region, start, stop, prefix, sep, back, pos, last_id, 11, 22)
    got = _scan()(*args, Event)
    assert got == reference_scan(*args)
    assert all(type(e) is Event for e in got[0])
    # _scan_py takes a run whole or not at all, and whole exactly when scan reaches stop.
    if region.startswith(prefix, start) and region.endswith(sep, start, stop):
        py = _scan_py(*args, Event)
        if got[1] == stop:
            assert py == got
        else:
            assert py == ([], start, pos)


@needs_ext
def test_scan_stops_before_a_block_that_is_not_clean() -> None:
    scan = _scan()
    good = b"data: ok\n\n"
    for bad in (b"data: \xff\n\n", b"data: a\xef\xbb\xbfb\n\n", b"data: a\rb\n\n", b"data: a\n: c\n\n"):
        region = good + bad + good
        events, at, pos = scan(region, 0, len(region), b"data: ", b"\n\n", 0, 100, "", 1, 2, Event)
        assert [e.data for e in events] == ["ok"]
        assert (at, pos) == (len(good), 100 + len(good))
        assert scan(bad, 0, len(bad), b"data: ", b"\n\n", 0, 5, "", 1, 2, Event) == ([], 0, 5)
    # A fullwidth comma (EF BC 8C) is not a BOM.
    comma = b"data: \xef\xbc\x8c\n\n"
    assert scan(comma, 0, len(comma), b"data: ", b"\n\n", 0, 0, "", 1, 2, Event)[1] == len(comma)


@needs_ext
def test_scan_builds_real_events() -> None:
    region = "data: café\n\ndata: x\n\n".encode()
    events, at, pos = _scan()(region, 0, len(region), b"data: ", b"\n\n", 0, 3, "id9", 5, 6, Event)
    assert (at, pos) == (len(region), 3 + len(region))
    first, second = events
    assert first == Event("message", "café", "id9", 3, 16, 5, None)
    assert second == ("message", "x", "id9", 16, 25, 6, None)
    assert type(first) is Event and isinstance(first, tuple)
    assert (first.type, first.data, first.id, first.retry) == ("message", "café", "id9", None)
    assert hash(first) == hash(Event("message", "café", "id9", 3, 16, 5, None))
    assert pickle.loads(pickle.dumps(first)) == first
    assert first._replace(data="y").data == "y"
    assert repr(second) == (
        "Event(type='message', data='x', id='id9', offset=16, end=25, arrival_ns=6, retry=None)"
    )
    assert {first: 1}[Event("message", "café", "id9", 3, 16, 5, None)] == 1


_OK = (b"data: x\n\n", 0, 9, b"data: ", b"\n\n", 0, 0, "", None, None, Event)


@needs_ext
@pytest.mark.parametrize(
    ("index", "bad"),
    [
        (0, "data: x\n\n"),  # region must be bytes
        (0, bytearray(b"data: x\n\n")),
        (1, 0.0),
        (2, None),
        (3, "data: "),
        (4, b"\n\n".decode()),
        (5, "0"),
        (6, 1.5),
        (7, b""),
        (8, "1"),
        (9, 2.0),
        (10, list),
        (10, object()),
        (10, dict),
    ],
)
def test_scan_rejects_wrong_types(index: int, bad: Any) -> None:
    args = list(_OK)
    args[index] = bad
    with pytest.raises(TypeError):
        _scan()(*args)


@needs_ext
@pytest.mark.parametrize(
    ("index", "bad"), [(1, -1), (1, 5), (2, 10), (5, 3), (5, -1), (6, -1), (6, 2**63 - 2), (4, b"")]
)
def test_scan_rejects_bad_ranges(index: int, bad: Any) -> None:
    args = list(_OK)
    args[index] = bad
    if index == 1 and bad == 5:
        args[2] = 4  # start after stop
    with pytest.raises(ValueError):
        _scan()(*args)


@needs_ext
def test_scan_argument_count_and_huge_ints() -> None:
    with pytest.raises(TypeError):
        _scan()(*_OK[:-1])
    args = list(_OK)
    args[6] = 2**70
    with pytest.raises(OverflowError):
        _scan()(*args)


@needs_ext
def test_scan_leaks_no_references_and_no_memory() -> None:
    scan = _scan()
    region = b"data: " + b"v" * 300 + b"\n\n" + b"data: \xff\n\n"
    last_id = "".join(["id-", "42"])  # not interned or cached
    stamp = 10**30  # a big int: not a cached small one
    args = (region, 0, len(region), b"data: ", b"\n\n", 0, 5, last_id, stamp, stamp + 1, Event)

    def run(n: int) -> None:
        for _ in range(n):
            events, _at, _pos = scan(*args)
            assert len(events) == 1
            with pytest.raises(TypeError):
                scan(*args[:-1], list)

    run(1000)  # warm up caches
    gc.collect()
    watched = (region, last_id, stamp, Event)
    before = [sys.getrefcount(o) for o in watched]
    tracemalloc.start()
    try:
        run(100)
        gc.collect()
        base, _ = tracemalloc.get_traced_memory()
        run(100_000)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [sys.getrefcount(o) for o in watched] == before
    assert after - base < 64 * 1024  # a leak of one object per call would be MBs


def reference_scan_named(
    region: bytes, start: int, stop: int, pos: int, last_id: str, first: int | None, arrival: int | None,
) -> tuple[list[Event], int, int]:  # fmt: skip
    """scan_named() written plainly: take blocks while each is event: <name> LF data: <value>
    LF LF, the name not empty, neither holding CR, LF or BOM, both decoding as UTF-8."""
    events: list[Event] = []
    at = start
    stamp = first
    while True:
        end = region.find(b"\n\n", at, stop)
        if end < 0:
            break
        head, sep, tail = region[at:end].partition(b"\ndata: ")
        if not (sep and head.startswith(b"event: ")):
            break
        name, value = head[len(b"event: "):], tail
        if not name or any(x in name + value for x in (b"\n", b"\r", _BOM)):
            break
        try:
            text, kind = value.decode("utf-8"), name.decode("utf-8")
        except UnicodeDecodeError:
            break
        nxt = pos + (end + 2 - at)
        events.append(Event(kind, text, last_id, pos, nxt, stamp, None))
        at, pos, stamp = end + 2, nxt, arrival
    return events, at, pos


_NAMES = st.one_of(
    st.sampled_from([b"content_block_delta", b"response.output_text.delta", b"message", b"a:b", b" x"]),
    _VALUES,
)


@st.composite
def _named_runs(draw: st.DrawFn) -> tuple[bytes, int, int]:
    blocks = draw(st.lists(st.tuples(_NAMES, _VALUES), max_size=8))
    body = b"".join(b"event: " + n + b"\ndata: " + v + b"\n\n" for n, v in blocks)
    other = draw(st.sampled_from([b"", b": keep-alive\n", b"event: x\n", b"event: x\ndata: y\n", b"id: 1\n\n"]))
    lead = draw(st.sampled_from([b"", b"junk"]))
    region = lead + body + other
    stop = draw(st.sampled_from([len(region), len(lead) + len(body), max(len(region) - 1, len(lead))]))
    return region, len(lead), stop


@settings(max_examples=400, deadline=None)
@given(run=_named_runs(), pos=st.integers(0, 2**40), last_id=st.sampled_from(["", "7", "é"]))
def test_scan_named_matches_a_plain_reading_in_c_and_in_python(
    run: tuple[bytes, int, int], pos: int, last_id: str
) -> None:
    region, start, stop = run
    args = (region, start, stop, pos, last_id, 11, 22)
    expected = reference_scan_named(*args)
    assert chatprobe.sse._named_py(*args, Event) == expected
    if chatprobe.sse._scan_named_c is not None:
        got = chatprobe.sse._scan_named_c(*args, Event)
        assert got == expected
        assert all(type(e) is Event for e in got[0])


@needs_ext
def test_scan_named_checks_its_arguments_and_leaks_nothing() -> None:
    scan = chatprobe.sse._scan_named_c
    assert scan is not None
    ok = (b"event: x\ndata: y\n\n", 0, 17, 0, "", None, None, Event)
    for index, bad in ((0, "event"), (1, 0.0), (3, None), (4, b""), (5, "1"), (7, list)):
        args = list(ok)
        args[index] = bad
        with pytest.raises(TypeError):
            scan(*args)
    for index, bad in ((1, -1), (2, 99), (3, -1)):
        args = list(ok)
        args[index] = bad
        with pytest.raises(ValueError):
            scan(*args)
    with pytest.raises(TypeError):
        scan(*ok[:-1])
    region = b"event: content_block_delta\ndata: " + b"v" * 300 + b"\n\n" + b"event: \xff\ndata: v\n\n"
    last_id = "".join(["id-", "42"])
    stamp = 10**30
    args = (region, 0, len(region), 5, last_id, stamp, stamp + 1, Event)

    def run(n: int) -> None:
        for _ in range(n):
            events, _at, _pos = scan(*args)
            assert len(events) == 1

    run(1000)
    gc.collect()
    watched = (region, last_id, stamp, Event)
    before = [sys.getrefcount(o) for o in watched]
    tracemalloc.start()
    try:
        run(100)
        gc.collect()
        base, _ = tracemalloc.get_traced_memory()
        run(100_000)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [sys.getrefcount(o) for o in watched] == before
    assert after - base < 64 * 1024


def test_the_decoder_falls_back_when_the_extension_cannot_be_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A second copy of chatprobe.sse, loaded while chatprobe._ssefast cannot be.
    monkeypatch.setitem(sys.modules, "chatprobe._ssefast", None)
    spec = importlib.util.spec_from_file_location("_sse_pure_copy", chatprobe.sse.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.ACCELERATED is False and module._scan_c is None and module._scan_named_c is None
    stream = (b"data: a\n\n" * 50 + b"\xef\xbb\xbfevent: message\ndata: b\n\n: c\n\ndata: d\n\n"
              + b"event: ping\ndata: {}\n\n" * 20)
    decoder = module.SSEDecoder()
    events = [e for i in range(0, len(stream), 64) for e in decoder.feed(stream[i : i + 64])]
    assert [(e.type, e.data, e.id, e.retry) for e in events] == reference_events(stream)


def test_accelerated_says_which_implementation_is_in_use() -> None:
    assert chatprobe.sse.ACCELERATED is (chatprobe.sse._scan_c is not None)
    assert isinstance(SSEDecoder().feed(b"data: x\n\n")[0], Event)
