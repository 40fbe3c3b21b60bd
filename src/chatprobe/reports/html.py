"""The shared HTML page shell: one self-contained file, inline CSS, no network assets."""

from __future__ import annotations

from html import escape
from typing import Any

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1d2330}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d8dce4}
.meta{color:#5b6475}table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #eceff4;vertical-align:top}
th{background:#f5f7fa;font-weight:600}code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px}
pre{background:#f5f7fa;padding:.5rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all;margin:.3rem 0}
.v{display:inline-block;min-width:6.5rem;padding:0 .4rem;border-radius:3px;font-weight:600;text-align:center}
.v-pass{background:#dcf5e3;color:#14622f}.v-fail{background:#fbdcdc;color:#8a1616}.v-warn{background:#fdf0cf;color:#7a5400}
.v-unsupported{background:#e4e8f7;color:#2f3f86}.v-na{background:#eeeeee;color:#555}
.v-accepted,.v-live{background:#e6e0f5;color:#4a2d86}.v-stale{background:#fdf0cf;color:#7a5400}.v-expired{background:#fbdcdc;color:#8a1616}
details{margin:.4rem 0 1rem 0}summary{cursor:pointer}
"""


def verdict_badge(verdict: str) -> str:
    css = "na" if verdict == "n/a" else verdict
    return f'<span class="v v-{escape(css)}">{escape(verdict)}</span>'


def page(title: str, body: str) -> str:
    """A whole HTML document around ``body`` (already-escaped HTML)."""
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{escape(title)}</title>"
        f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n"
    )


def table(head: list[str], rows: list[list[str]]) -> str:
    """An HTML table: ``head`` is escaped here; cells are HTML already (escape them first)."""
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def num(x: Any, digits: int = 2) -> str:
    """A number for a table cell ("-" for none), escaped."""
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return escape(str(x))
