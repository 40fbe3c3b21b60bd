"""A server's /metrics read beside the client's: engines' names, histogram_quantile, window differences.

Pages are written by hand in each engine's naming (the names chatprobe.metrics.server_metrics
cites) and parsed with the scraper's parser (prometheus_client's), as in a run.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatprobe.metrics.server_metrics import (
    HistogramReading,
    Reading,
    ScrapeLog,
    WindowCounts,
    histogram_quantile,
    level_view,
    read_samples,
    server_block,
)
from chatprobe.scraper import parse_exposition

VLLM = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="m"}} {running}
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="m"}} 2.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",model_name="m"}} 0.25
# TYPE vllm:request_success_total counter
vllm:request_success_total{{finished_reason="stop",model_name="m"}} {stop}
vllm:request_success_total{{finished_reason="length",model_name="m"}} {length}
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{{model_name="m"}} {prompt}
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{{model_name="m"}} {generation}
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{{model_name="m"}} 0.0
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{{le="0.01",model_name="m"}} {b1}
vllm:time_to_first_token_seconds_bucket{{le="0.02",model_name="m"}} {b2}
vllm:time_to_first_token_seconds_bucket{{le="0.04",model_name="m"}} {b3}
vllm:time_to_first_token_seconds_bucket{{le="+Inf",model_name="m"}} {b3}
vllm:time_to_first_token_seconds_count{{model_name="m"}} {b3}
vllm:time_to_first_token_seconds_sum{{model_name="m"}} {ttft_sum}
# TYPE vllm:num_requests_swapped gauge
vllm:num_requests_swapped{{model_name="m"}} 7.0
"""

SGLANG = """\
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="m"} 3.0
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="m"} 1.0
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="m"} 0.5
# TYPE sglang:num_requests_total counter
sglang:num_requests_total{model_name="m"} 11.0
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="m"} 120.0
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{model_name="m"} 80.0
# TYPE sglang:inter_token_latency_seconds histogram
sglang:inter_token_latency_seconds_bucket{le="0.005",model_name="m"} 4.0
sglang:inter_token_latency_seconds_bucket{le="+Inf",model_name="m"} 5.0
sglang:inter_token_latency_seconds_count{model_name="m"} 5.0
sglang:inter_token_latency_seconds_sum{model_name="m"} 0.03
"""

TGI = """\
# TYPE tgi_queue_size gauge
tgi_queue_size 4
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 8
# TYPE tgi_request_success counter
tgi_request_success 21
# TYPE tgi_request_input_length histogram
tgi_request_input_length_bucket{le="100"} 10
tgi_request_input_length_bucket{le="+Inf"} 21
tgi_request_input_length_sum 2100
tgi_request_input_length_count 21
# TYPE tgi_request_generated_tokens histogram
tgi_request_generated_tokens_bucket{le="+Inf"} 21
tgi_request_generated_tokens_sum 672
tgi_request_generated_tokens_count 21
# TYPE tgi_request_duration histogram
tgi_request_duration_bucket{le="0.5"} 20
tgi_request_duration_bucket{le="+Inf"} 21
tgi_request_duration_sum 6.0
tgi_request_duration_count 21
"""

# As llama.cpp's server-task.cpp to_metrics() writes it (a counter without _total included).
LLAMACPP = """\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed, excluding cached tokens
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 300
# HELP llamacpp:prompt_tokens_cached_total Number of prompt tokens reused from the cache
# TYPE llamacpp:prompt_tokens_cached_total counter
llamacpp:prompt_tokens_cached_total 100
# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total 512
# TYPE llamacpp:n_tokens_max counter
llamacpp:n_tokens_max 170
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 4
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 6
"""


def vllm_page(running: float = 1, stop: float = 0, length: float = 0, prompt: float = 0,
              generation: float = 0, b1: float = 0, b2: float = 0, b3: float = 0, ttft_sum: float = 0) -> str:
    return VLLM.format(running=running, stop=stop, length=length, prompt=prompt, generation=generation,
                       b1=b1, b2=b2, b3=b3, ttft_sum=ttft_sum)


def reading(text: str, t_s: float, edge: bool = False, user: tuple[str, ...] = ()) -> Reading:
    r = read_samples(parse_exposition(text), int(t_s * 1e9), user)
    r.edge = edge
    return r


# --------------------------------------------------------------------------- the engines' names
def test_vllm_signals_summed_over_label_sets() -> None:
    r = reading(vllm_page(running=3, stop=5, length=2, prompt=700, generation=90, b1=1, b2=4, b3=7), 0.0,
                user=("vllm:num_requests_swapped", "vllm:time_to_first_token_seconds"))
    assert r.engine == "vLLM"
    assert r.scalars == {"running": 3, "waiting": 2, "cache_usage": 0.25, "requests": 7, "prompt_tokens": 700,
                         "generation_tokens": 90, "preemptions": 0}
    assert r.sources["requests"] == "vllm:request_success_total"
    ttft = r.histograms["ttft"]
    assert ttft.bounds == (0.01, 0.02, 0.04, math.inf) and ttft.counts == (1, 4, 7, 7) and ttft.count == 7
    # a user-named gauge, and a histogram named by its base name (its count)
    assert r.user == {"vllm:num_requests_swapped": 7.0, "vllm:time_to_first_token_seconds": 7.0}


@pytest.mark.parametrize(("page", "engine", "expected"), [
    (SGLANG, "SGLang", {"running": 3, "waiting": 1, "cache_usage": 0.5, "requests": 11, "prompt_tokens": 120,
                        "generation_tokens": 80}),
    (TGI, "TGI", {"running": 8, "waiting": 4, "requests": 21, "prompt_tokens": 2100, "generation_tokens": 672}),
    # llama.cpp counts cached prompt tokens apart: both are the prompt's tokens
    (LLAMACPP, "llama.cpp", {"running": 4, "waiting": 6, "prompt_tokens": 400, "generation_tokens": 512}),
])
def test_other_engines(page: str, engine: str, expected: dict[str, float]) -> None:
    r = reading(page, 0.0)
    assert r.engine == engine
    assert r.scalars == expected


def test_histograms_of_other_engines() -> None:
    assert reading(SGLANG, 0).histograms["itl"].counts == (4, 5)
    tgi = reading(TGI, 0)
    assert tgi.histograms["e2e"].bounds == (0.5, math.inf) and tgi.sources["e2e"] == "tgi_request_duration"
    assert reading(LLAMACPP, 0).histograms == {}  # llama-server has no latency histograms


def test_an_unknown_server_gives_only_the_named_series() -> None:
    r = reading("# TYPE my_queue gauge\nmy_queue{shard=\"a\"} 2\nmy_queue{shard=\"b\"} 3\nother 1\n", 0.0,
                user=("my_queue", "absent"))
    assert r.engine is None and r.scalars == {} and r.user == {"my_queue": 5.0}


# --------------------------------------------------------------------------- histogram_quantile
BOUNDS = (0.1, 0.2, 0.5, math.inf)


@pytest.mark.parametrize(("q", "counts", "expected"), [
    (0.5, (10, 20, 30, 30), 0.15),  # rank 15: half-way through (0.1, 0.2]
    (0.99, (10, 20, 30, 30), 0.2 + 0.3 * 0.97),
    (0.05, (10, 20, 30, 30), 0.015),  # the first bucket starts at 0
    (0.9, (10, 20, 30, 40), 0.5),  # in the +Inf bucket: the highest finite bound
    (0.5, (10, 5, 30, 30), 0.275),  # non-monotonic (a scrape mid-update): made (10, 10, 30, 30)
])
def test_histogram_quantile_as_prometheus(q: float, counts: tuple[float, ...], expected: float) -> None:
    value = histogram_quantile(q, BOUNDS, counts)
    assert value is not None and value == pytest.approx(expected)


def test_histogram_quantile_edge_cases() -> None:
    assert histogram_quantile(0.5, BOUNDS, (0, 0, 0, 0)) is None  # no observations
    assert histogram_quantile(0.5, (0.1, 0.2), (1, 2)) is None  # no +Inf bucket
    assert histogram_quantile(-0.1, BOUNDS, (1, 2, 3, 3)) == -math.inf
    assert histogram_quantile(1.1, BOUNDS, (1, 2, 3, 3)) == math.inf


@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.floats(0.0005, 2.0), min_size=1, max_size=200), q=st.floats(0.01, 1.0))
def test_the_estimate_lies_in_the_bucket_of_the_true_order_statistic(values: list[float], q: float) -> None:
    """The error of histogram_quantile is below the width of the bucket that holds the rank."""
    bounds = (*[round(0.001 * k, 3) for k in range(1, 101)], 0.2, 0.5, 1.0, 2.0, math.inf)
    counts = [float(sum(1 for v in values if v <= b)) for b in bounds]
    estimate = histogram_quantile(q, bounds, counts)
    ordered = sorted(values)
    truth = ordered[max(math.ceil(q * len(values)) - 1, 0)]
    hist = HistogramReading(bounds, tuple(counts), sum(values), len(values))
    bucket = hist.bucket_of(q)
    assert estimate is not None and bucket is not None
    assert bucket[0] <= truth <= bucket[1]
    assert abs(estimate - truth) <= bucket[1] - bucket[0] + 1e-12


# --------------------------------------------------------------------------- window differences
SWAPPED = ("vllm:num_requests_swapped",)


def _log() -> ScrapeLog:
    """Scrapes at -1, 0 (the window opens), 1, 2 (it closes) and 3 s; the counters start after
    the first scrape (a labelled counter has no sample until then)."""
    log = ScrapeLog("http://127.0.0.1:1/metrics", 1.0, SWAPPED)
    log.add(reading(vllm_page(running=0), -1.0, user=SWAPPED))
    log.add(reading(vllm_page(running=2, stop=3, prompt=300, generation=30, b1=1, b2=3, b3=3, ttft_sum=0.04), 0.0,
                    edge=True, user=SWAPPED))
    log.add(reading(vllm_page(running=4, stop=8, length=1, prompt=900, generation=90, b1=2, b2=6, b3=9,
                              ttft_sum=0.1), 1.0, user=SWAPPED))
    log.add(reading(vllm_page(running=4, stop=12, length=2, prompt=1400, generation=140, b1=2, b2=10, b3=14,
                              ttft_sum=0.2), 2.0, edge=True, user=SWAPPED))
    log.add(reading(vllm_page(running=0, stop=13, length=2, prompt=1500, generation=150, b1=2, b2=11, b3=15,
                              ttft_sum=0.21), 3.0, user=SWAPPED))
    return log


def test_counters_and_histograms_over_the_window_only() -> None:
    client = WindowCounts(requests=11, ok=11, prompt_tokens=1100, output_tokens=110, in_flight_start=2,
                          in_flight_end=0)
    block = server_block(_log(), (int(0.0005e9), int(2.0e9)), 0, client,
                         {"ttft_ms": {"p50": 18.0, "p99": 30.0, "mean": 20.0}})
    assert block["status"] == "scraped" and block["engine"] == "vLLM" and block["scrapes"] == 5
    assert block["window"]["start_t_s"] == 0.0 and block["window"]["end_t_s"] == 2.0
    requests = block["counters"]["requests"]
    assert requests["server"] == 11 and requests["client"] == 11 and requests["matches"]
    assert block["counters"]["prompt_tokens"]["server"] == 1100
    assert block["counters"]["generation_tokens"]["tolerance"] == 20  # 2 in flight x 10 tokens each
    ttft = block["latency_ms"]["ttft"]
    assert ttft["count"] == 11  # 14 - 3: the warm-up's observations left out
    # window buckets: (0.01: 1, 0.02: 7, 0.04: 11): rank 5.5 is in (0.01, 0.02]
    assert ttft["server"]["p50"] == pytest.approx((0.01 + 0.01 * 4.5 / 6) * 1000, abs=1e-3)
    assert ttft["bucket_ms"]["p50"] == [10.0, 20.0]
    assert ttft["client_minus_server"]["p50"] == pytest.approx(18.0 - ttft["server"]["p50"], abs=1e-3)
    assert [p["in_window"] for p in block["series"]] == [False, True, True, True, False]
    assert block["series"][2]["requests_per_s"] == pytest.approx(6.0)
    assert block["user_series"][0]["points"][0] == [-1.0, 7.0]


def test_a_counter_reset_counts_as_prometheus_increase() -> None:
    log = ScrapeLog("u", 1.0)
    for t, n in ((0, 10), (1, 15), (2, 3), (3, 8)):  # the server restarted between 1 and 2 s
        log.add(reading(vllm_page(stop=n), t))
    block = server_block(log, (0, int(3e9)), 0)
    assert block["counters"]["requests"]["server"] == 5 + 3 + 5


def test_a_reset_histogram_is_not_differenced() -> None:
    log = ScrapeLog("u", 1.0)
    log.add(reading(vllm_page(b1=5, b2=5, b3=5), 0, edge=True))
    log.add(reading(vllm_page(b1=1, b2=1, b3=1), 1, edge=True))
    block = server_block(log, (0, int(1e9)), 0)
    assert block["latency_ms"]["ttft"]["count"] is None and "reset" in block["latency_ms"]["ttft"]["note"]


def test_nothing_scraped_says_why() -> None:
    log = ScrapeLog("http://127.0.0.1:1/metrics", 1.0)
    log.gave_up = "http://127.0.0.1:1/metrics answered 404: the server exposes no metrics there"
    log.note(log.gave_up)
    block = server_block(log, (0, 1), 0)
    assert block["status"] == "not scraped" and "404" in block["reason"] and block["notes"] == [log.gave_up]


def test_level_view_for_a_sweep() -> None:
    block = server_block(_log(), (0, int(2e9)), 0, None)
    view = level_view(block)
    assert view is not None
    assert view["running"] == {"mean": pytest.approx(10 / 3, abs=1e-3), "max": 4.0}
    assert view["requests"]["server"] == 11 and view["requests"]["per_s"] == pytest.approx(5.5)
    assert view["ttft_ms"]["p50"] is not None
    assert level_view(None) is None


# --------------------------------------------------------------------------- the layering
def test_the_generator_never_imports_prometheus_client() -> None:
    """The load generator's modules (and the metrics package it imports) stay free of it:
    the scraper runs in the CLI's process."""
    root = Path(__file__).resolve().parents[2]
    files = [*sorted((root / "src" / "chatprobe" / "metrics").glob("*.py")),
             *sorted((root / "src" / "chatprobe" / "load").glob("*.py")), root / "loadtests" / "run.py"]
    bad = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad.extend(f"{path.name}: {n}" for n in names
                       if n.split(".")[0] == "prometheus_client" or n in ("chatprobe.scraper", "chatprobe.serverside"))
    assert not bad, bad
