"""How a conformance run is launched: the pytest plugin's arguments, the hypothesis budgets, the accept files.

Shared by the `conform` and `audit` commands and by the pytest plugin, so that
neither command imports the plugin (which pytest loads in every run) and the
plugin owns no constant a command needs. Stdlib and paths (accept when its files are read).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from chatprobe.paths import data_dir

if TYPE_CHECKING:  # the plugin imports this module in every pytest run: accept (PyYAML) only when used
    from chatprobe.accept import Acceptance

__all__ = ["HYPOTHESIS_PROFILES", "PLUGIN_MODULE", "known_suite_check", "load_accept", "plugin_args", "suite_checks"]

HYPOTHESIS_PROFILES = {"dev": 10, "ci": 25, "thorough": 200}  # max_examples per property check
PLUGIN_MODULE = "chatprobe.pytest_plugin"


def plugin_args() -> list[str]:
    """``-p chatprobe.pytest_plugin`` for a pytest run, unless the installed entry point loads
    it already (loading it twice is an error)."""
    import importlib.metadata

    installed = any(ep.value == PLUGIN_MODULE for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", PLUGIN_MODULE]


@functools.cache
def suite_checks() -> frozenset[str]:
    """The bundled suites' checks, ``test_<area>.py::test_<name>`` (without parameters), read from
    their sources (no pytest collection: this is for checking an accept file before a run)."""
    out: set[str] = set()
    for path in sorted(data_dir("suites").glob("test_*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                out.add(f"{path.name}::{node.name}")
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                out |= {f"{path.name}::{node.name}::{f.name}" for f in node.body
                        if isinstance(f, ast.FunctionDef) and f.name.startswith("test")}
    return frozenset(out)


def known_suite_check(check_id: str) -> bool:
    """Whether ``check_id`` names a check of the bundled suites (its parameters are the run's to
    tell: the plugin checks them against what it collects)."""
    return check_id.partition("[")[0] in suite_checks()


def load_accept(files: Iterable[str | Path]) -> tuple[Acceptance, ...]:
    """Accept files for a run of the bundled suites, checked before anything runs: every mistake,
    and an id that names no rule and no check of the suites, is one UsageError line."""
    from chatprobe.accept import check_known, load

    acceptances = load(files)
    check_known(acceptances, known_suite_check)
    return acceptances
