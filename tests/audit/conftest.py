"""One audit over several reference-server instances (faults, legal variants, another dialect, an
unreachable target), shared by the tests of this directory: each instance's column is checked
against its known behaviour, the pages are checked, and the baseline tests reuse the servers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chatprobe.server.faults import BY_NAME
from chatprobe.server.runner import running_server
from tests.audit.audit_run import UNREACHABLE_URL, audit, write_targets

# name -> (dialect, faults of its server). "clean" and "elastic clean" are the references
# the other columns are derived from.
INSTANCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "clean": ("openai", ()),
    "usage-merged": ("openai", ("usage-merged",)),
    "tool-index-reused": ("openai", ("tool-index-reused",)),
    "error-envelope-detail": ("openai", ("error-envelope-detail",)),
    "no-done": ("openai", ("no-done",)),
    "crlf": ("openai", ("crlf",)),
    "keepalive": ("openai", ("keepalive",)),
    "elastic clean": ("elastic-chat", ()),
    "elastic bom": ("elastic-chat", ("elastic-bom-every-event",)),
}
REFERENCE = {"openai": "clean", "elastic-chat": "elastic clean"}
HEADER = ("X-Chatprobe-Route", "audit-test")


@dataclass(frozen=True)
class Audited:
    code: int
    document: dict[str, Any]
    report_dir: Path
    urls: dict[str, str]


@pytest.fixture(scope="package")
def servers() -> Iterator[dict[str, str]]:
    with contextlib.ExitStack() as stack:
        urls = {name: stack.enter_context(running_server(faults=list(faults))) for name, (_, faults) in INSTANCES.items()}
        urls["headers"] = stack.enter_context(running_server())
        yield urls


@pytest.fixture(scope="package")
def audited(servers: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Audited:
    for name, (_, faults) in INSTANCES.items():
        assert all(f in BY_NAME for f in faults), name
    root = tmp_path_factory.mktemp("audit")
    targets: list[dict[str, Any]] = [
        {"name": name, "url": servers[name], "dialect": dialect} for name, (dialect, _) in INSTANCES.items()
    ]
    targets.append({"name": "down", "url": UNREACHABLE_URL, "dialect": "openai"})
    # Extra headers reach the server (a clean server of its own).
    targets.append({"name": "with headers", "url": servers["headers"], "dialect": "openai", "headers": {HEADER[0]: HEADER[1]}})
    targets_file = write_targets(root / "TARGETS.yaml", targets)
    code, document = audit(targets_file, root / "report", "--workers", "4")
    return Audited(code, document, root / "report", servers)
