"""Check and rule ids are stable across releases: every id ever released (tests/released_ids.txt)
is a current rule or bundled suite check, or an alias of one (chatprobe.rules.ALIASES), so accept
files and `report diff` of runs of different releases keep resolving it."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatprobe import rules
from chatprobe.conformrun import suite_checks

RELEASED = Path(__file__).with_name("released_ids.txt")


def _current(ident: str) -> bool:
    return ident in rules.RULES or ident.partition("[")[0] in suite_checks()


def _released() -> list[str]:
    lines = RELEASED.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_every_released_id_is_current_or_aliased() -> None:
    assert {"usage.not_separate", "test_usage.py::test_usage_stream"} <= set(_released())
    lost = [ident for ident in _released() if not _current(rules.canonical(ident))]
    assert not lost, f"ids released before and gone now (add each to rules.ALIASES, old -> new): {lost}"


def test_every_alias_leads_to_a_current_id_and_shadows_none() -> None:
    for old, new in rules.ALIASES.items():
        # a parametrised alias renames one parametrisation; its check (the base) stays current
        shadows = old in rules.RULES or old in suite_checks()
        assert not shadows, f"{old} is an alias and a current id"
        assert _current(rules.canonical(old)), f"alias {old} -> {new} leads nowhere"


def test_canonical_follows_chains_and_carries_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(rules.ALIASES, "usage.a", "usage.b")
    monkeypatch.setitem(rules.ALIASES, "usage.b", "usage.totals")
    monkeypatch.setitem(rules.ALIASES, "test_x.py::test_old", "test_usage.py::test_usage_stream")
    assert rules.canonical("usage.a") == "usage.totals"
    assert rules.canonical("test_x.py::test_old[p-1]") == "test_usage.py::test_usage_stream[p-1]"
    assert rules.canonical("usage.missing") == "usage.missing"
    monkeypatch.setitem(rules.ALIASES, "usage.totals", "usage.a")  # a cycle: a bug, but no hang
    assert rules.canonical("usage.a") in {"usage.a", "usage.b", "usage.totals"}

