"""How a conformance run is launched: the pytest plugin's arguments and the hypothesis budgets.

Shared by the `conform` and `audit` commands and by the pytest plugin, so that
neither command imports the plugin (which pytest loads in every run) and the
plugin owns no constant a command needs. Stdlib only.
"""

from __future__ import annotations

__all__ = ["HYPOTHESIS_PROFILES", "PLUGIN_MODULE", "plugin_args"]

HYPOTHESIS_PROFILES = {"dev": 10, "ci": 25, "thorough": 200}  # max_examples per property check
PLUGIN_MODULE = "chatprobe.pytest_plugin"


def plugin_args() -> list[str]:
    """``-p chatprobe.pytest_plugin`` for a pytest run, unless the installed entry point loads
    it already (loading it twice is an error)."""
    import importlib.metadata

    installed = any(ep.value == PLUGIN_MODULE for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", PLUGIN_MODULE]
