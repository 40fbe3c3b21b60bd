"""Where the data directories (specs/, suites/, loadtests/, reports/) live.

In a source checkout they sit at the top of the repository; in an installed
wheel they travel inside the package as ``chatprobe/_bundled/<name>``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the directory ``name`` (``specs``, ``suites``, ``loadtests`` or ``reports``)."""
    bundled = _PACKAGE_DIR / "_bundled" / name
    if bundled.is_dir():
        return bundled
    checkout = _PACKAGE_DIR.parent.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"chatprobe data directory {name!r} not found (broken install?)")


def specs_dir() -> Path:
    return data_dir("specs")
