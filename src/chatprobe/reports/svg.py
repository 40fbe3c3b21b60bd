"""Small inline SVG plots for the HTML reports: no matplotlib, no CDN, no scripts.

Each function returns one ``<svg>`` element as a string (text escaped), sized
by ``width`` x ``height`` pixels, with axes, a few ticks and a legend; ``None``
values in a series leave a gap in its line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

__all__ = ["histogram", "line_chart", "nice_ticks"]

PALETTE = ("#2f6fdb", "#e0702b", "#2a9d55", "#b23a8f", "#6b7280")
_ML, _MR, _MT, _MB = 58, 16, 28, 40  # margins: left, right, top, bottom


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 5 x 10^k steps)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        if t >= lo - step * 1e-9:
            ticks.append(round(t, 12))
        t += step
    return ticks


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.0f}"
    return f"{x:.3g}"


class _Frame:
    def __init__(self, width: int, height: int, x: tuple[float, float], y: tuple[float, float]) -> None:
        self.w, self.h = width, height
        self.x0, self.x1 = x if x[1] > x[0] else (x[0], x[0] + 1.0)
        self.y0, self.y1 = y if y[1] > y[0] else (y[0], y[0] + 1.0)

    def px(self, x: float) -> float:
        return _ML + (x - self.x0) / (self.x1 - self.x0) * (self.w - _ML - _MR)

    def py(self, y: float) -> float:
        return self.h - _MB - (y - self.y0) / (self.y1 - self.y0) * (self.h - _MT - _MB)

    def axes(self, title: str, xlabel: str, ylabel: str) -> list[str]:
        parts = [
            f'<text x="{_ML}" y="16" font-size="13" font-weight="600">{escape(title)}</text>',
            f'<line x1="{_ML}" y1="{self.h - _MB}" x2="{self.w - _MR}" y2="{self.h - _MB}" stroke="#888"/>',
            f'<line x1="{_ML}" y1="{_MT}" x2="{_ML}" y2="{self.h - _MB}" stroke="#888"/>',
        ]
        for t in nice_ticks(self.x0, self.x1):
            X = self.px(t)
            parts.append(f'<line x1="{X:.1f}" y1="{self.h - _MB}" x2="{X:.1f}" y2="{self.h - _MB + 4}" stroke="#888"/>')
            parts.append(f'<text x="{X:.1f}" y="{self.h - _MB + 16}" font-size="11" text-anchor="middle">{_fmt(t)}</text>')
        for t in nice_ticks(self.y0, self.y1, 4):
            Y = self.py(t)
            parts.append(f'<line x1="{_ML}" y1="{Y:.1f}" x2="{self.w - _MR}" y2="{Y:.1f}" stroke="#eee"/>')
            parts.append(f'<text x="{_ML - 6}" y="{Y + 4:.1f}" font-size="11" text-anchor="end">{_fmt(t)}</text>')
        parts.append(f'<text x="{(self.w + _ML) / 2:.0f}" y="{self.h - 6}" font-size="11" text-anchor="middle">{escape(xlabel)}</text>')
        parts.append(
            f'<text x="12" y="{(self.h - _MB + _MT) / 2:.0f}" font-size="11" text-anchor="middle"'
            f' transform="rotate(-90 12 {(self.h - _MB + _MT) / 2:.0f})">{escape(ylabel)}</text>'
        )
        return parts


def _svg(width: int, height: int, parts: list[str]) -> str:
    body = "".join(parts)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="system-ui,sans-serif" role="img">{body}</svg>')


def _empty(title: str, width: int, height: int) -> str:
    return _svg(width, height, [
        f'<text x="{_ML}" y="16" font-size="13" font-weight="600">{escape(title)}</text>',
        f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" font-size="12" text-anchor="middle" fill="#888">no data</text>',
    ])


def histogram(values: Sequence[float], title: str, xlabel: str, *, bins: int = 40,
              clip_percentile: float = 99.5, width: int = 560, height: int = 240) -> str:
    """Counts of ``values`` in equal bins from the minimum to the ``clip_percentile``-th value
    (the rest, a long tail, counted in the last bin and said in the title)."""
    vals = sorted(v for v in values if math.isfinite(v))
    if not vals:
        return _empty(title, width, height)
    lo = vals[0]
    hi = vals[min(len(vals) - 1, int(len(vals) * clip_percentile / 100))]
    if hi <= lo:
        hi = lo + max(abs(lo) * 0.01, 1e-3)
    step = (hi - lo) / bins
    counts = [0] * bins
    clipped = 0
    for v in vals:
        k = int((v - lo) / step)
        if k >= bins:
            clipped += v > hi
            k = bins - 1
        counts[k] += 1
    if clipped:
        title = f"{title} ({clipped} values > {_fmt(hi)} in the last bin)"
    f = _Frame(width, height, (lo, hi), (0.0, max(counts) * 1.05))
    parts = f.axes(title, xlabel, "count")
    for k, c in enumerate(counts):
        if c:
            x0, x1 = f.px(lo + k * step), f.px(lo + (k + 1) * step)
            y = f.py(c)
            parts.append(f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0 - 0.5, 0.5):.1f}" '
                         f'height="{f.py(0) - y:.1f}" fill="{PALETTE[0]}"/>')
    return _svg(width, height, parts)


def line_chart(series: Sequence[tuple[str, Sequence[float], Sequence[float | None]]], title: str,
               xlabel: str, ylabel: str, *, width: int = 560, height: int = 240) -> str:
    """One line per (label, xs, ys); a None y breaks the line."""
    pts = [(x, y) for _, xs, ys in series for x, y in zip(xs, ys, strict=True) if y is not None]
    if not pts:
        return _empty(title, width, height)
    xs_all = [p[0] for p in pts]
    ys_all = [p[1] for p in pts]
    f = _Frame(width, height, (min(xs_all), max(xs_all)), (min(0.0, min(ys_all)), max(ys_all) * 1.08 or 1.0))
    parts = f.axes(title, xlabel, ylabel)
    for i, (label, xs, ys) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        segment: list[str] = []
        segments: list[list[str]] = [segment]
        for x, y in zip(xs, ys, strict=True):
            if y is None:
                segment = []
                segments.append(segment)
                continue
            segment.append(f"{f.px(x):.1f},{f.py(y):.1f}")
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{color}"/>')
            elif seg:
                parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{" ".join(seg)}"/>')
        lx = width - _MR - 150
        ly = _MT + 4 + 14 * i
        parts.append(f'<rect x="{lx}" y="{ly}" width="10" height="3" fill="{color}"/>')
        parts.append(f'<text x="{lx + 14}" y="{ly + 5}" font-size="11">{escape(label)}</text>')
    return _svg(width, height, parts)
