"""The reference server's GET /metrics: vLLM's names, counts that match what it served, and
histograms whose percentiles land within a bucket of its own truth records."""

from __future__ import annotations

import math
import time

import httpx
import pytest

from chatprobe.metrics import percentile
from chatprobe.metrics.server_metrics import ScrapeLog
from chatprobe.scraper import parse_exposition, scrape_once
from chatprobe.server.metrics import E2E_BOUNDS, ITL_BOUNDS, TTFT_BOUNDS
from chatprobe.server.runner import running_server

BODY = {"model": "m", "messages": [{"role": "user", "content": "one two three"}], "stream": True,
        "max_tokens": 12, "ignore_eos": True, "stream_options": {"include_usage": True}}


NON_STREAM = {k: v for k, v in BODY.items() if k != "stream_options"} | {"stream": False}


def _stream(url: str, request_id: str, body: dict[str, object] = BODY) -> bytes:
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, headers={"x-request-id": request_id},
                      timeout=10) as response:
        return b"".join(response.iter_bytes())


def _scrape_when_counted(url: str, requests: int) -> ScrapeLog:
    """A scrape once the server has counted ``requests`` (it counts a request right after its
    last write, which the client may read first)."""
    deadline = time.monotonic() + 5.0
    while True:
        log = scrape_once(url + "/metrics")
        if log.kept[0].scalars.get("requests") == requests or time.monotonic() > deadline:
            return log


def test_counts_and_histograms_match_the_truth_records() -> None:
    with running_server(ttft_ms=8, itl_ms=1, max_concurrency=2) as url:
        for i in range(6):
            _stream(url, f"req-{i}")
        non_stream = httpx.post(url + "/v1/chat/completions", json=NON_STREAM, timeout=10).json()
        log = _scrape_when_counted(url, 7)
        truth = httpx.get(url + "/_chatprobe/truth", timeout=10).json()["records"]
    reading = log.kept[0]
    assert log.engine == "vLLM" and log.gave_up is None
    assert reading.scalars["requests"] == 7
    assert reading.scalars["generation_tokens"] == 7 * 12
    assert reading.scalars["prompt_tokens"] == 7 * non_stream["usage"]["prompt_tokens"]
    assert reading.scalars["running"] == 0 and reading.scalars["waiting"] == 0
    assert reading.scalars["cache_usage"] == 0  # only with --max-concurrency: busy slots / K
    ttft = reading.histograms["ttft"]
    assert ttft.count == 6 and ttft.bounds[:-1] == TTFT_BOUNDS  # streams: a non-stream answer has E2E only
    assert reading.histograms["e2e"].count == 7
    assert reading.histograms["itl"].count == 6 * 11 and reading.histograms["itl"].bounds[:-1] == ITL_BOUNDS
    assert reading.histograms["e2e"].bounds[:-1] == E2E_BOUNDS
    true_ttfts = sorted((t["token_ns"][0] - t["received_ns"]) / 1e9 for t in truth if t["token_ns"])
    estimate, bucket = ttft.quantile(0.5), ttft.bucket_of(0.5)
    assert estimate is not None and bucket is not None
    truth_p50 = true_ttfts[math.ceil(0.5 * len(true_ttfts)) - 1]
    assert bucket[0] <= truth_p50 <= bucket[1]
    assert bucket[1] - bucket[0] <= 0.001 + 1e-12  # 1 ms wide up to 100 ms
    assert abs(estimate - percentile(true_ttfts, 50)) < 0.001  # within 1 ms of the truth


def test_a_client_that_leaves_is_not_a_success() -> None:
    with running_server(ttft_ms=0, itl_ms=20) as url:
        with httpx.stream("POST", url + "/v1/chat/completions", json={**BODY, "max_tokens": 200},
                          timeout=10) as response:
            next(response.iter_bytes())  # the first bytes, then the client goes away
        _stream(url, "whole")
        _scrape_when_counted(url, 1)
        text = httpx.get(url + "/metrics", timeout=10).text
    samples = {(s.name, s.labels): s.value for s in parse_exposition(text)}
    assert samples[("vllm:request_success_total", (("finished_reason", "length"), ("model_name", "chatprobe-reference")))] == 1
    assert ("vllm:kv_cache_usage_perc", (("model_name", "chatprobe-reference"),)) not in samples  # no capacity model


def test_metrics_are_not_behind_the_api_key(keyed_server_url: str) -> None:
    response = httpx.get(keyed_server_url + "/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert "vllm:num_requests_running" in response.text
    assert httpx.post(keyed_server_url + "/metrics", timeout=10).status_code == 404  # GET only


@pytest.mark.parametrize("bounds", [TTFT_BOUNDS, ITL_BOUNDS, E2E_BOUNDS])
def test_bucket_edges_ascend_and_stay_few(bounds: tuple[float, ...]) -> None:
    assert list(bounds) == sorted(set(bounds)) and len(bounds) <= 150
