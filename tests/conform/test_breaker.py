"""The run's breaker and deadline (chatprobe.breaker, used by Target / CheckRecord), and the caps
on what a run asks for."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import given, settings

from chatprobe.breaker import DEADLINE_RULE, Breaker, no_answer
from chatprobe.conformance import DEFAULT_MAX_TOKENS, CheckRecord, ConformSettings, NotRun, Target
from chatprobe.specs import bundled_dialects, load_profile
from chatprobe.strategies import MAX_GENERATED_CHOICES, MAX_GENERATED_TOKENS, valid_requests
from tests import hostile

FAST = ConformSettings(timeout_s=1.0, total_timeout_s=2.0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_deadline_opens_the_breaker() -> None:
    clock = Clock()
    breaker = Breaker(10.0, clock=clock)
    clock.now += 9.9
    assert breaker.refuse() is None and not breaker.is_open
    clock.now += 0.2
    cause = breaker.refuse()
    assert cause is not None and cause["rule"] == DEADLINE_RULE and cause["check"] is None
    assert "--max-duration 10 s" in cause["detail"]


def test_no_deadline_and_the_first_cause_stays() -> None:
    clock = Clock()
    breaker = Breaker(None, clock=clock)
    clock.now += 1e9
    assert breaker.refuse() is None
    breaker.trip("http.timeout", "a.py::first", 0, "first")
    breaker.trip("http.reset", "a.py::second", 1, "second")
    assert breaker.refuse() == {"rule": "http.timeout", "check": "a.py::first", "exchange": 0, "detail": "first"}


@pytest.mark.parametrize(
    ("transport_error", "status", "expected"),
    [
        ("timeout", None, True),
        ("timeout", 200, True),  # headers, then silence
        ("connect", None, True),
        ("reset", None, True),  # reset before a status line
        ("reset", 200, False),  # an answer cut short is an answer
        ("too_large", 200, False),
        (None, 500, False),
    ],
)
def test_what_counts_as_no_answer(transport_error: str | None, status: int | None, expected: bool) -> None:
    assert no_answer(transport_error, status) is expected


@pytest.fixture
def silent_target() -> Iterator[Target]:
    with hostile.silent() as server:
        target = Target(server.url, FAST)
        try:
            yield target
        finally:
            target.close()


def test_breaker_opens_after_a_stall_and_a_failed_probe(silent_target: Target) -> None:
    record = CheckRecord(silent_target, name="test_x", nodeid="suite.py::test_x")
    ex = record.exchange(silent_target.chat("hi", stream=False))
    assert ex.transport_error == "timeout"
    assert len(record.exchanges) == 2  # the exchange and the recovery probe, kept as evidence
    probe = record.exchanges[1]
    assert probe.request_json[silent_target.profile.max_tokens_field] == 1 and not probe.stream
    cause = silent_target.breaker.cause
    assert cause is not None and cause["rule"] == "http.timeout"
    assert (cause["check"], cause["exchange"]) == ("suite.py::test_x", 0)
    later = CheckRecord(silent_target, name="test_y", nodeid="suite.py::test_y")
    with pytest.raises(NotRun) as raised:
        later.exchange(silent_target.chat("hi"))
    assert raised.value.cause == cause and later.exchanges == []
    assert "suite.py::test_x" in str(raised.value)


def test_breaker_stays_closed_when_the_probe_is_answered() -> None:
    """One stalled request, then the server answers (even with an error): it still answers."""

    def handler(conn: socket.socket, server: hostile.Server) -> None:
        if hostile.read_request(conn, server) is None:
            return
        if server.requests == 1:
            server.stopping.wait()  # the first request stalls
        else:
            conn.sendall(hostile.ERROR_500)

    with hostile.serving(handler) as server:
        target = Target(server.url, FAST)
        try:
            record = CheckRecord(target, name="t", nodeid="s.py::t")
            record.exchange(target.chat("hi", stream=False))
            assert not target.breaker.is_open
            assert record.exchanges[1].status == 500
            assert record.exchange(target.chat("hi", stream=False)).status == 500
        finally:
            target.close()


def test_chat_requests_carry_a_cap_unless_told_otherwise() -> None:
    target = Target("http://127.0.0.1:9", ConformSettings())
    try:
        assert target.chat("hi").body["max_tokens"] == DEFAULT_MAX_TOKENS
        assert target.base_request().body["max_tokens"] == DEFAULT_MAX_TOKENS
        assert "max_tokens" not in target.chat("hi", max_tokens=None).body
    finally:
        target.close()


@pytest.mark.parametrize("dialect", sorted(bundled_dialects()))
def test_generated_valid_requests_are_capped(dialect: str) -> None:
    profile = load_profile(dialect)

    @settings(max_examples=30, deadline=None, database=None)
    @given(valid_requests(dialect))
    def check(spec: object) -> None:
        body = spec.body  # type: ignore[attr-defined]
        if profile.max_tokens_field:
            assert 1 <= body[profile.max_tokens_field] <= MAX_GENERATED_TOKENS
        assert body.get("n", 1) <= MAX_GENERATED_CHOICES

    check()


def test_probe_after_a_midstream_stall_asks_past_the_stall_point() -> None:
    """Every stream stalls after two events: a one-token probe would pass; one asking for a
    little more than the stalled stream delivered stalls too, and the breaker opens."""

    def handler(conn: socket.socket, server: hostile.Server) -> None:
        if hostile.read_request(conn, server) is None:
            return
        conn.sendall(hostile.SSE_HEAD)
        for text in ("a", "b"):
            chunk = b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}\n\n'
            conn.sendall(hostile.chunk(chunk % text.encode()))
        server.stopping.wait()

    with hostile.serving(handler) as server:
        target = Target(server.url, FAST)
        try:
            record = CheckRecord(target, name="t", nodeid="s.py::t")
            ex = record.exchange(target.chat("hi"))
            assert ex.transport_error == "timeout" and len(ex.events) == 2
            probe = record.exchanges[1]
            assert probe.stream and probe.request_json["max_tokens"] == 4
            assert target.breaker.is_open and "4 token(s)" in target.breaker.cause["detail"]  # type: ignore[index]
        finally:
            target.close()
