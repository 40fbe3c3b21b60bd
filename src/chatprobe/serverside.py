"""The server's side of a load run: its ``/metrics`` while the load runs, and the generator's error.

Shared by ``chatprobe load`` and ``chatprobe sweep`` (one level = one run):

* :func:`add_server_side_arguments`: ``--server-metrics URL`` (default: the
  target's ``/metrics``), ``--no-server-metrics``, ``--scrape-interval S``,
  ``--server-metric NAME``; for ``load`` also ``--calibrate`` and
  ``--calibrate-first``.
* :class:`ServerWatch`, around the generator's run (``with watch:
  run_generator(...)``): the scraper (:mod:`chatprobe.scraper`, a thread of
  this process, never the generator's) reads the server's metrics, aimed at
  the window the generator announces (``window.json``); afterwards the
  run's summary.json gets its ``server_metrics`` block (window differences,
  the client's counts beside them, from records.jsonl) and its
  ``measurement_error`` block: measured on the run itself when the target
  is the embedded reference server (its truth records), taken from a
  calibration when one ran first, else "not measured".
* :func:`calibrate`: the generator at the run's load (users or rate, message
  sizes, workload) against the embedded reference server on this machine
  (pinned to another CPU than the generator), its TTFT / ITL matched with
  the server's truth (:mod:`chatprobe.metrics.accuracy`): "measurement error
  at this load: TTFT p50 x ms, p99 y ms; ITL ...".
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from chatprobe import inputs
from chatprobe.errors import UsageError
from chatprobe.inputs import finite_float
from chatprobe.loadplan import LoadSettings
from chatprobe.metrics import RequestRecord
from chatprobe.metrics.accuracy import measurement_error, not_measured
from chatprobe.metrics.server_metrics import WindowCounts, not_scraped, server_block
from chatprobe.scraper import Scraper

__all__ = [
    "CALIBRATION_S",
    "ServerWatch",
    "add_server_side_arguments",
    "calibrate",
    "calibration_settings",
    "metrics_url",
    "server_side_lines",
]

WINDOW_FILE = "window.json"  # written by the generator as the load starts (loadtests/run.py)
CALIBRATION_S = 10.0  # a calibration's length (warm-up included) unless --duration says otherwise
CALIBRATION_WARMUP_S = 2.0
CALIBRATION_DIR = "calibration"  # --calibrate-first: the calibration's own report, inside --report-dir
MAX_SERVER_METRICS = 32
TRUTH_TIMEOUT_S = 60.0
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def add_server_side_arguments(parser: argparse.ArgumentParser, *, calibration: bool = False) -> None:
    g = parser.add_argument_group("the server's side: its /metrics and the generator's error "
                                  "(README: Read the server's own metrics)")
    g.add_argument("--server-metrics", metavar="URL", type=inputs.url_arg, default=None,
                   help="scrape this Prometheus endpoint during the run (default: the target's /metrics; "
                        "a quiet note in the report when there is none)")
    g.add_argument("--no-server-metrics", action="store_true", help="do not scrape the server's metrics")
    g.add_argument("--scrape-interval", type=finite_float(0.1, 600), default=1.0, metavar="S",
                   help="seconds between scrapes (default 1)")
    g.add_argument("--server-metric", action="append", default=[], metavar="NAME", type=_metric_name,
                   help="also show this series of the server's metrics (a sample name, summed over its "
                        "labels), e.g. vllm:num_requests_swapped; repeatable")
    if calibration:
        g.add_argument("--calibrate", action="store_true",
                       help="only measure the generator's error at this load: the run's users or rate and "
                            "message sizes against the embedded reference server "
                            f"({CALIBRATION_S:g} s unless --duration), matched with its truth records")
        g.add_argument("--calibrate-first", action="store_true",
                       help="measure that error first, then run; the report carries it "
                            f"(the calibration's own report in {CALIBRATION_DIR}/)")


def _metric_name(text: str) -> str:
    if not _METRIC_NAME.match(text) or len(text) > 200:
        raise argparse.ArgumentTypeError(f"{text[:60]!r} is not a Prometheus metric name "
                                         "([a-zA-Z_:][a-zA-Z0-9_:]*)")
    return text


def metrics_url(args: argparse.Namespace, target: str) -> str | None:
    """The URL to scrape (None: off): --server-metrics, else the target's origin + /metrics."""
    if getattr(args, "no_server_metrics", False):
        return None
    if len(getattr(args, "server_metric", []) or []) > MAX_SERVER_METRICS:
        raise UsageError(f"--server-metric: at most {MAX_SERVER_METRICS} series")
    if getattr(args, "server_metrics", None):
        return str(args.server_metrics)
    parts = urlsplit(target)
    return urlunsplit((parts.scheme, parts.netloc, "/metrics", "", ""))


def _credentials(args: argparse.Namespace, target: str, url: str | None) -> dict[str, str]:
    """The run's API key as a bearer token, for a metrics URL on the target's own origin only
    (llama-server's /metrics is behind its --api-key; vLLM's is not). Never written anywhere."""
    from chatprobe.targets import api_key_from

    key = api_key_from(getattr(args, "api_key_env", None))
    if not key or url is None:
        return {}
    mine, theirs = urlsplit(url), urlsplit(target)
    same = (mine.scheme, mine.hostname, mine.port) == (theirs.scheme, theirs.hostname, theirs.port)
    return {"authorization": f"Bearer {key}"} if same else {}


class ServerWatch:
    """Around one generator run: scrape while it runs, then add the server's side to summary.json.

    ``truth_url``: the embedded reference server's base URL (its truth records measure the
    run's error); ``calibration``: a ``measurement_error`` block measured before the run.
    """

    def __init__(self, args: argparse.Namespace, settings: LoadSettings, target: str, *,
                 truth_url: str | None = None, calibration: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.report_dir = Path(settings.report_dir)
        self.url = metrics_url(args, target)
        self.headers = _credentials(args, target, self.url)
        self.interval_s = float(getattr(args, "scrape_interval", 1.0) or 1.0)
        self.user_names = tuple(getattr(args, "server_metric", []) or [])
        self.truth_url = truth_url
        self.calibration = calibration
        self.scraper: Scraper | None = None
        self.document: dict[str, Any] | None = None  # summary.json as written, once attached

    def __enter__(self) -> ServerWatch:
        window = self.report_dir / WINDOW_FILE
        window.unlink(missing_ok=True)  # an earlier run's window must not aim this one's scrapes
        if self.url is not None:
            self.scraper = Scraper(self.url, self.interval_s, self.user_names, window, headers=self.headers).start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        log = self.scraper.stop() if self.scraper is not None else None
        (self.report_dir / WINDOW_FILE).unlink(missing_ok=True)  # the generator's note to the scraper
        if kind is not None:
            return  # interrupted before it measured (or failed): nothing to add to
        summary_path = self.report_dir / "summary.json"
        if not summary_path.is_file():
            return
        doc: dict[str, Any] = json.loads(summary_path.read_text(encoding="utf-8"))
        window = (doc["summary"]["window"]["start_ns"], doc["summary"]["window"]["end_ns"])
        records_path = self.report_dir / str(doc["run"].get("records_file") or "records.jsonl")
        counts, firsts = _window_counts(records_path, window, _mean_in_flight(doc))
        if log is None:
            doc["server_metrics"] = not_scraped("--no-server-metrics")
        else:
            doc["server_metrics"] = server_block(log, window, int(doc["run"]["t0_ns"]), counts,
                                                 doc["summary"]["latency_ms"])
        if self.calibration is not None:
            doc["measurement_error"] = self.calibration
        elif self.truth_url is not None:
            doc["measurement_error"] = _measured(self.truth_url, records_path, firsts, window, "this run",
                                                 load_text(self.settings))
        else:
            doc["measurement_error"] = not_measured(
                "the target is not the reference server: run with --calibrate-first, or "
                "`chatprobe load --calibrate` at the same load")
        from chatprobe.reports.files import write_text

        write_text(summary_path, json.dumps(doc, indent=2))
        self.document = doc


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    """records.jsonl, one record at a time (a long run's file is not held in memory)."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _records(path: Path) -> Iterator[RequestRecord]:
    return (RequestRecord.from_json(data) for data in _lines(path))


def _mean_in_flight(doc: dict[str, Any]) -> int:
    """Requests in flight on average over the window (Little's law: throughput x mean E2E)."""
    rate = doc["summary"]["throughput"].get("requests_per_s")
    e2e = doc["summary"]["latency_ms"]["e2e_ms"].get("mean")
    return math.ceil(rate * e2e / 1000.0) if rate and e2e else 0


def _window_counts(path: Path, window: tuple[int, int], in_flight: int = 0) -> tuple[WindowCounts, set[str]]:
    """The client's counts for the window (the summary's rule: a request belongs to the window
    it finished in), and each user's first request (its connection's first: it pays for the
    TCP connect). In flight at the window's end: the generator stops there and cuts what is in
    flight (not in its records), while the server may finish some of them before its reading:
    as many as were in flight on average (``in_flight``) are allowed."""
    start, end = window
    total = ok = output = prompt = 0
    prompt_known = False
    edge_start = edge_end = 0
    first: dict[str, tuple[int, str]] = {}
    for r in _lines(path):
        sent = int(r["t_sent_ns"])
        finished = int(r.get("t_end_ns") or sent)
        if r.get("user_id") is not None:
            user = f"{r.get('worker_id')}/{r['user_id']}"
            if user not in first or sent < first[user][0]:
                first[user] = (sent, str(r["request_id"]))
        if sent <= start < finished:
            edge_start += 1
        if sent <= end < finished:
            edge_end += 1
        if not start <= finished <= end:
            continue
        total += 1
        if r.get("ok"):
            ok += 1
            output += int(r.get("output_tokens") or 0)
            if r.get("prompt_tokens") is not None:
                prompt += int(r["prompt_tokens"])
                prompt_known = True
    counts = WindowCounts(total, ok, prompt if prompt_known else None, output, edge_start, max(edge_end, in_flight))
    return counts, {rid for _, rid in first.values()}


def _measured(truth_url: str, records: Path, firsts: set[str], window: tuple[int, int], source: str,
              load: str) -> dict[str, Any]:
    """The ``measurement_error`` block from the reference server's truth records."""
    import httpx

    try:
        response = httpx.get(truth_url.rstrip("/") + "/_chatprobe/truth", timeout=TRUTH_TIMEOUT_S)
        response.raise_for_status()
        truth = {t["request_id"]: t for t in response.json()["records"]}
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        return not_measured(f"the reference server's truth records could not be read: {type(exc).__name__}")
    steady = measurement_error((r for r in _records(records) if r.request_id not in firsts), truth, window)
    everything = measurement_error(_records(records), truth, window, gaps=False)
    if not steady.matched:
        return not_measured("no request of the window matched the server's truth records")
    block = steady.to_json()
    ttft, itl = block["ttft_ms"], block["itl_ms"]
    sentence = (f"measurement error at this load ({load}): TTFT p50 {_ms(ttft['p50'])}, p99 {_ms(ttft['p99'])};"
                f" ITL p50 {_ms(itl['p50'])}, p99 {_ms(itl['p99'])}"
                f" ({steady.matched} requests matched with the reference server's truth)")
    return {
        "status": "measured", "source": source, "load": load, **block,
        "with_first_requests": {"matched": everything.matched, "ttft_ms": everything.to_json()["ttft_ms"]},
        "how": "client figure - the reference server's truth for the same request (X-Request-Id), "
               "requests that finished in the window; each user's first request is left out "
               "(its TCP connect, which the server never sees: see with_first_requests); "
               "TTFT error = send (the request's way in) + delivery (the first token's way out)",
        "sentence": sentence,
    }


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{0.0 if abs(x) < 0.005 else x:.2f} ms"  # never "-0.00"


def load_text(s: LoadSettings) -> str:
    if s.stages:
        return "a plan of stages"
    if s.mode == "closed":
        return f"{s.users} stream{'s' if s.users != 1 else ''}"
    if s.rate is not None:
        return f"{s.rate:g} requests/s"
    return str(s.mode)


def calibration_settings(s: LoadSettings, report_dir: Path, duration_s: float | None,
                         warmup_s: float | None) -> LoadSettings:
    """The run's settings for a calibration: the same requests and generator, the load held at
    the run's level (a plan's busiest stage), a short run, exact output lengths."""
    changes: dict[str, Any] = {"report_dir": str(report_dir), "ignore_eos": True, "progress": False,
                               "master_bind": None, "expect_workers": 0}
    if s.stages:
        users = max((st.users or 0 for st in s.stages), default=0)
        rate = max((max(st.rate or 0.0, st.rate_end or 0.0) for st in s.stages), default=0.0)
        if users:
            changes.update(users=users, rate=None, mode="closed")
        else:
            changes.update(rate=rate, mode=s.mode if s.mode in ("poisson", "constant") else "poisson")
        changes["stages"] = ()
    if s.mode != "trace":
        changes["duration_s"] = duration_s or CALIBRATION_S
        changes["warmup_s"] = CALIBRATION_WARMUP_S if warmup_s is None else warmup_s
        if changes["warmup_s"] >= changes["duration_s"]:
            changes["warmup_s"] = changes["duration_s"] / 5
    return replace(s, **changes).validate()


def calibrate(args: argparse.Namespace, s: LoadSettings, report_dir: Path) -> dict[str, Any]:
    """Run the calibration (the embedded reference server, the run's load) into ``report_dir``;
    return its ``measurement_error`` block (source "calibration before the run")."""
    from chatprobe.loadrun import cpu_split, run_generator, server_options
    from chatprobe.server.runner import spawn_server

    settings = calibration_settings(s, report_dir, None, None)
    server_cpu, generator_cpus = cpu_split(True)
    # As if no --target were given: the embedded server with the run's --server-* flags, its own
    # /metrics scraped (not a --server-metrics URL of the real target's), no key sent to it.
    own = argparse.Namespace(**{**vars(args), "target": None, "server_metrics": None, "api_key_env": None})
    options = server_options(own, server_cpu)
    with spawn_server(truth_records=200_000, **options) as url:
        settings = replace(settings, target=url)
        with ServerWatch(own, settings, url, truth_url=url) as watch:
            run_generator(settings, generator_cpus)
    doc = watch.document
    if doc is None:
        return not_measured("the calibration run wrote no summary")
    block = dict(doc["measurement_error"])
    if block.get("status") == "measured":
        block["source"] = "calibration before the run"
        block["report_dir"] = str(report_dir)
    return block


def server_side_lines(doc: dict[str, Any]) -> list[str]:
    """The console lines of the server's side (summary.json's two blocks)."""
    out: list[str] = []
    error = doc.get("measurement_error")
    if error:
        out.append(error["sentence"])
    block = doc.get("server_metrics")
    if not block:
        return out
    if block["status"] != "scraped":
        out.append(f"server metrics: {block['status']} ({block.get('reason')})")
        return out
    parts = []
    for key, label in (("requests", "requests"), ("prompt_tokens", "prompt tokens"),
                       ("generation_tokens", "generation tokens")):
        c = block["counters"].get(key)
        if c is None:
            continue
        if "client" in c:
            mark = "match" if c["matches"] else "DIFFER"
            parts.append(f"{label} {c['server']:g} (client {c['client']}, {mark} within {c['tolerance']})")
        else:
            parts.append(f"{label} {c['server']:g}")
    engine = block.get("engine") or "unknown engine"
    out.append(f"server metrics ({engine}, {block['scrapes']} scrapes): " + ("; ".join(parts) or "no counters"))
    for key, label in (("ttft", "TTFT"), ("itl", "ITL"), ("e2e", "E2E")):
        entry = block["latency_ms"].get(key)
        if not entry or not entry.get("server"):
            continue
        srv = entry["server"]
        cli = entry.get("client") or {}
        out.append(f"  server {label:4} p50 {_ms(srv.get('p50'))}  p95 {_ms(srv.get('p95'))}  p99 {_ms(srv.get('p99'))}"
                   + (f"   (client p50 {_ms(cli.get('p50'))})" if cli else ""))
    for note in block.get("notes", []):
        out.append(f"  note: {note}")
    return out
