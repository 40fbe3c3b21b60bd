"""Hypothesis strategies for request records (shared by the metrics tests)."""

from __future__ import annotations

from hypothesis import strategies as st

from chatprobe.metrics import RequestRecord

MS = 1_000_000

ERRORS = ["http 500", "reset", "timeout", "stream.terminator_missing"]


@st.composite
def records(draw: st.DrawFn, t_max_ms: int = 5_000) -> RequestRecord:
    """A plausible record: sent within t_max_ms, ok or failed, 0..20 token events."""
    t_sent = draw(st.integers(0, t_max_ms * MS))
    scheduled = draw(st.one_of(st.none(), st.integers(0, 50 * MS).map(lambda d: t_sent - d)))
    gaps = draw(st.lists(st.integers(0, 300 * MS), max_size=20))
    arrivals: list[int] = []
    t = t_sent + draw(st.integers(0, 200 * MS))
    first_byte = t
    for gap in gaps:
        t += gap
        arrivals.append(t)
    ok = draw(st.booleans())
    usage = draw(st.one_of(st.none(), st.integers(0, 40)))
    rec = RequestRecord(
        request_id=f"r{draw(st.integers(0, 10**9))}",
        dialect=draw(st.sampled_from(["openai", "elastic-chat", "atoma"])),
        t_sent_ns=t_sent,
        t_scheduled_ns=scheduled,
        t_first_byte_ns=first_byte,
        t_first_choices_ns=first_byte if arrivals else None,
        t_end_ns=t + draw(st.integers(0, 5 * MS)),
        status=200 if ok else draw(st.sampled_from([200, 500, None])),
        ok=ok,
        error=None if ok else draw(st.sampled_from(ERRORS)),
        user_id=draw(st.one_of(st.none(), st.sampled_from(["u1", "u2"]))),
    )
    for a in arrivals:
        rec.add_token_event(a)
    if usage is not None:
        rec.output_tokens, rec.output_tokens_source = usage, "usage"
    elif arrivals:
        rec.output_tokens, rec.output_tokens_source = len(arrivals), "events"
    if arrivals and draw(st.booleans()):  # a reasoning model's stream: output from some event on
        rec.reasoning_tokens = draw(st.integers(0, 40))
        rec.reasoning_tokens_source = draw(st.sampled_from(["usage", "events"]))
        rec.first_output_index = draw(st.one_of(st.none(), st.integers(0, len(arrivals) - 1)))
    if draw(st.booleans()):  # a turn of a multi-turn session
        rec.session_id = draw(st.sampled_from(["s1", "s2", "s3"]))
        rec.turn = draw(st.integers(1, 4))
    return rec
