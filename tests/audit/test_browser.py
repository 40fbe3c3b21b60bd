"""audit.html in a real headless browser (Chromium from the system packages; skipped without one):
the matrix is in the rendered DOM with every cell the audit.json has, and the page paints."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.audit.conftest import Audited

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium installed (CI: apt-get install -y chromium)")


def _run(browser: str, tmp_path: Path, *argv: str) -> str:
    done = subprocess.run(
        [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}", *argv,
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class _Cells(HTMLParser):
    """The matrix cells of the rendered DOM: (target, check, verdict) from the data attributes,
    and the verdict text the cell shows."""

    def __init__(self) -> None:
        super().__init__()
        self.in_matrix = False
        self.cells: dict[tuple[str, str], str] = {}
        self.shown: dict[tuple[str, str], str] = {}
        self._cell: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self.in_matrix = a.get("id") == "matrix"
        if self.in_matrix and tag == "td" and a.get("data-check"):
            self._cell = (str(a["data-target"]), str(a["data-check"]))
            self.cells[self._cell] = str(a["data-verdict"])
            self.shown[self._cell] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None
        if tag == "table":
            self.in_matrix = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self.shown[self._cell] += data.strip()


@pytest.mark.slow  # (default tier trim: CI's slow tier runs it)
def test_browser_renders_the_matrix(audited: Audited, tmp_path: Path) -> None:
    browser = _browser()
    page = (audited.report_dir / "audit.html").resolve()
    dom = _run(browser, tmp_path, "--dump-dom", page.as_uri())
    parser = _Cells()
    parser.feed(dom)
    expected = {
        (t["name"], key): verdict for t in audited.document["targets"] if t["status"] == "ok" for key, verdict in t["checks"].items()
    }
    assert parser.cells == expected
    assert parser.shown == expected  # the badge text is the verdict
    shot = tmp_path / "audit.png"
    _run(browser, tmp_path, f"--screenshot={shot}", "--window-size=1400,2000", page.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1400, 2000)
    assert len(data) > 20_000  # a painted page of tables, not a blank one (a blank PNG is a few kB)
