"""Interop tests: chatprobe against real third-party servers (tox -e interop).

They install and start foreign software, so they run only when CHATPROBE_INTEROP=1
(the tox env sets it); in the default run they are skipped.
"""

from __future__ import annotations

import os

import pytest

ENABLED = os.environ.get("CHATPROBE_INTEROP") == "1"


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too so that the marker is known even before pyproject lists it
    # (an unknown marker is a warning, and warnings are errors).
    config.addinivalue_line("markers", "interop: against a real third-party server; only with CHATPROBE_INTEROP=1 (tox -e interop)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ENABLED:
        return
    skip = pytest.mark.skip(reason="interop test: runs only with CHATPROBE_INTEROP=1 (tox -e interop)")
    for item in items:
        if item.get_closest_marker("interop") is not None:
            item.add_marker(skip)
