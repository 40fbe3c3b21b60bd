"""Reading a server's Prometheus ``/metrics`` while a load runs: one thread in the CLI's process.

The load generator is a child process (``loadtests/run.py``); the scraper runs
in the parent that waits for it, so it takes nothing from the generator's
process, its event loop or its garbage collector. Every ``interval_s`` it GETs
the URL (httpx, one keep-alive connection), parses the text with
prometheus_client's parser (the OpenMetrics one when the server answers in
that format) and keeps a :class:`~chatprobe.metrics.server_metrics.Reading`
stamped with the middle of the request on the generator's clock
(``perf_counter_ns``). Only the lines of the series it knows or was asked for
reach the parser (which takes ~30 us a sample), and the histograms' (most of a
page) only every :data:`HISTOGRAMS_EVERY_S`, at the window's edges and at the
first and last scrapes: the thread's CPU time is in the report
(``scraper_cpu_s``). Once the generator announces its measured window
(``window.json`` in the report directory, written as the load starts), the
scrapes are aimed at it: one as the window opens (after the warm-up), one at
its planned end, the others on the interval's grid from the window's start;
the parent takes a last one when the generator has exited.

Harmless by construction: a scrape has a deadline (:data:`SCRAPE_TIMEOUT_S`)
and a body cap (:data:`MAX_BODY_BYTES`); 404, 401/403, a redirect, a body that
is not Prometheus text or holds no sample, a body over the cap, or
:data:`MAX_FAILURES_IN_A_ROW` failures in a row (no answer, refused, 5xx) stop
the scraping; every problem is noted once in the report (with how often it
happened) and nothing is raised into the run.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from chatprobe import redact
from chatprobe.metrics.server_metrics import Reading, Sample, ScrapeLog, read_samples, series_names

__all__ = ["MAX_BODY_BYTES", "SCRAPE_TIMEOUT_S", "Scraper", "parse_exposition", "scrape_once"]

SCRAPE_TIMEOUT_S = 3.0  # per scrape, connect to last byte
MAX_BODY_BYTES = 8 << 20  # vLLM's page is ~100-300 KB; a body past this is not a metrics page
MAX_FAILURES_IN_A_ROW = 3
# prometheus_client's parser takes ~30 us a sample: a page's histogram buckets (most of its
# lines) are parsed only at the window's edges, the first and last scrapes, and every this often
# (the server's TTFT / ITL p50 over time); the other scrapes parse their gauges and counters.
HISTOGRAMS_EVERY_S = 10.0
_LATE_EDGE_S = 0.5  # a window edge seen this late is still scraped at once (and its skew reported)
_POLL_S = 0.05  # how often the window file is looked for until it is there
_ACCEPT = "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5,*/*;q=0.1"


class _GiveUp(Exception):
    """The endpoint will not give metrics (404, auth, not Prometheus text): stop scraping."""


class _Failed(Exception):
    """This scrape failed (no answer, refused, 5xx): try again at the next tick."""


def parse_exposition(text: str, content_type: str = "") -> list[Sample]:
    """The samples of a Prometheus text (or OpenMetrics) exposition; ValueError when it is not one."""
    if "openmetrics" in content_type.lower():
        from prometheus_client.openmetrics import parser as openmetrics

        families = openmetrics.text_string_to_metric_families(text)  # type: ignore[no-untyped-call]
    else:
        families = text_string_to_metric_families(text)
    samples: list[Sample] = []
    for family in families:
        for s in family.samples:
            samples.append(Sample(s.name, tuple(sorted(s.labels.items())), float(s.value)))
    return samples


class Scraper:
    """Scrape ``url`` every ``interval_s`` in a thread, into :attr:`log`, until :meth:`stop`.

    ``window_file``: where the generator announces its window (``t0_ns``, ``start_ns``,
    ``end_ns``); the scrapes are aimed at its edges once it is there.
    """

    def __init__(self, url: str, interval_s: float, user_names: Sequence[str] = (),
                 window_file: Path | None = None, *, timeout_s: float = SCRAPE_TIMEOUT_S,
                 max_bytes: int = MAX_BODY_BYTES, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.headers = {"accept": _ACCEPT, **(headers or {})}
        self.interval_ns = max(int(interval_s * 1e9), 1)
        self.window_file = window_file
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.user_names = tuple(user_names)
        self.scalar_names, self.histogram_names = series_names(user_names)
        self._type_names = frozenset({*self.scalar_names, *self.histogram_names,
                                      *(n.rsplit("_", 1)[0] for n in self.histogram_names),
                                      *(n.removesuffix("_total") for n in self.scalar_names)})
        self._histograms_at = 0  # perf_counter_ns of the last scrape that parsed histograms
        self._edges = 0  # window edges scraped so far
        self.log = ScrapeLog(redact.redact_url(url), interval_s, user_names)
        self._stop = threading.Event()
        self._in_a_row = 0
        self._thread = threading.Thread(target=self._run, name="chatprobe-scraper", daemon=True)

    def start(self) -> Scraper:
        self._thread.start()
        return self

    def stop(self) -> ScrapeLog:
        """Take a last reading, stop, and return the log (bounded: one scrape's deadline)."""
        self._stop.set()
        self._thread.join(self.timeout_s + 2.0)
        if self._thread.is_alive():
            self.log.note("the last scrape did not end in time")
        return self.log

    # -- the thread -----------------------------------------------------------------------
    def _run(self) -> None:
        started = time.thread_time()
        try:
            with _client(self.url, self.timeout_s, self.headers) as client:
                self._loop(client)
        except Exception as exc:  # never into the run: noted, and the scraping ends
            self.log.gave_up = f"the scraper stopped: {type(exc).__name__}: {exc}"
            self.log.note(self.log.gave_up)
        finally:
            self.log.cpu_s = time.thread_time() - started  # what scraping cost this process

    def _loop(self, client: httpx.Client) -> None:
        next_due = time.perf_counter_ns()
        edges: list[int] = []
        aligned = self.window_file is None
        while not self.log.gave_up:
            now = time.perf_counter_ns()
            if not aligned:
                window = self._window()
                if window is not None:
                    aligned = True
                    start, end = window
                    edges = [e for e in (start, end) if e >= now - int(_LATE_EDGE_S * 1e9)]
                    # the regular scrapes: on the grid through the window's start
                    next_due = start + ((now - start) // self.interval_ns + 1) * self.interval_ns
            due = min(next_due, edges[0]) if edges else next_due
            if due > now:
                wait = (due - now) / 1e9
                if self._stop.wait(wait if aligned else min(wait, _POLL_S)):
                    break
                continue
            edge = bool(edges) and edges[0] <= now
            if edge:
                edges.pop(0)
            while next_due <= now:
                next_due += self.interval_ns
            self._scrape(client, edge)
        if not self.log.gave_up:
            self._scrape(client, False, final=True)  # the run has ended: the last reading

    def _window(self) -> tuple[int, int] | None:
        assert self.window_file is not None
        try:
            data = json.loads(self.window_file.read_text(encoding="utf-8"))
            return int(data["start_ns"]), int(data["end_ns"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # not there yet (it is written whole, by a rename)

    def _scrape(self, client: httpx.Client, edge: bool, final: bool = False) -> None:
        sent = time.perf_counter_ns()
        first = not self.log.points
        # Histograms where the window needs them: at its edges (the last scrape stands in for an
        # end edge never reached: an interrupted run; the first for a window never announced),
        # and every HISTOGRAMS_EVERY_S for the server's TTFT / ITL over time.
        histograms = (edge or (final and self._edges < 2) or (first and self.window_file is None)
                      or (not first and sent - self._histograms_at >= HISTOGRAMS_EVERY_S * 1e9))
        try:
            text, content_type = self._get(client)
            received = time.perf_counter_ns()
            at = (sent + received) // 2
            reading = _reading(self._only_wanted(text, histograms), content_type, at, self.user_names, self.url)
            if first and reading.empty:  # nothing we know: is it Prometheus text at all (whole page)?
                reading = _reading(text, content_type, at, self.user_names, self.url, whole=True)
        except _GiveUp as stop:
            self.log.gave_up = str(stop)
            self.log.note(str(stop))
            return
        except _Failed as failure:
            self.log.failures += 1
            self.log.note(str(failure))
            self._in_a_row += 1
            if self._in_a_row >= MAX_FAILURES_IN_A_ROW:
                self.log.gave_up = f"{MAX_FAILURES_IN_A_ROW} scrapes in a row failed"
            return
        reading.edge = edge
        self._in_a_row = 0
        self._edges += edge
        if histograms:
            self._histograms_at = sent
        self.log.add(reading)

    def _only_wanted(self, text: str, histograms: bool) -> str:
        """The lines of the series worth parsing (and their TYPE lines, OpenMetrics' EOF)."""
        keep: list[str] = []
        names = self.scalar_names | self.histogram_names if histograms else self.scalar_names
        for line in text.splitlines():
            if line.startswith("#"):
                parts = line.split(None, 3)
                if line.startswith("# EOF") or (len(parts) >= 3 and parts[1] == "TYPE" and parts[2] in self._type_names):
                    keep.append(line)
                continue
            cut = len(line)
            for mark in ("{", " "):
                at = line.find(mark)
                if 0 <= at < cut:
                    cut = at
            if line[:cut] in names:
                keep.append(line)
        keep.append("")
        return "\n".join(keep)

    def _get(self, client: httpx.Client) -> tuple[str, str]:
        shown = redact.redact_url(self.url)
        deadline = time.monotonic() + self.timeout_s
        try:
            with client.stream("GET", self.url) as response:
                status = response.status_code
                if status in (401, 403):
                    raise _GiveUp(f"{shown} needs credentials (HTTP {status}): not scraped")
                if status == 404:
                    raise _GiveUp(f"{shown} answered 404: the server exposes no metrics there")
                if 300 <= status < 400:
                    raise _GiveUp(f"{shown} redirects (HTTP {status}): give --server-metrics the final URL")
                if status != 200:
                    if status >= 500:
                        raise _Failed(f"{shown} answered HTTP {status}")
                    raise _GiveUp(f"{shown} answered HTTP {status}: not scraped")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise _GiveUp(f"{shown} sent more than {self.max_bytes} bytes: not a metrics page")
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise _Failed(f"{shown} did not finish its answer within {self.timeout_s:g} s")
                return b"".join(chunks).decode("utf-8", "replace"), response.headers.get("content-type", "")
        except httpx.TimeoutException:
            raise _Failed(f"{shown} did not answer within {self.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise _Failed(f"{shown} could not be read: {type(exc).__name__}") from None


def _reading(text: str, content_type: str, t_ns: int, user_names: Sequence[str], url: str,
             whole: bool = False) -> Reading:
    try:
        samples = parse_exposition(text, content_type)
    except Exception as exc:  # the parser's errors are not one class: any of them means "not metrics"
        raise _GiveUp(f"{redact.redact_url(url)} did not answer Prometheus text: "
                      f"{str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__}") from None
    if not samples and whole:
        raise _GiveUp(f"{redact.redact_url(url)} answered, but with no Prometheus sample")
    return read_samples(samples, t_ns, user_names)


def scrape_once(url: str, user_names: Sequence[str] = (), timeout_s: float = SCRAPE_TIMEOUT_S) -> ScrapeLog:
    """One scrape into a fresh log (tests, and a quick look at what a server exposes)."""
    scraper = Scraper(url, 1.0, user_names, timeout_s=timeout_s)
    with _client(url, timeout_s, scraper.headers) as client:
        scraper._scrape(client, False)
    return scraper.log


def _client(url: str, timeout_s: float, headers: dict[str, str]) -> httpx.Client:
    """One keep-alive connection's client. A plain-http URL needs no TLS context (loading the CA
    bundle is most of a client's set-up cost); https verifies as usual."""
    plain = url.lower().startswith("http://")
    return httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=False, headers=headers,
                        verify=not plain)
