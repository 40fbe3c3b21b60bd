"""`chatprobe report` on a load run: report.html and records.csv from summary.json + records.jsonl."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatprobe.metrics import percentile
from chatprobe.server.runner import spawn_server
from tests.load.conftest import QUICK, run_load
from tests.report.report_run import (
    KEY_ENV,
    SECRET,
    assert_no_secret,
    assert_recreated,
    csv_rows,
    report,
)

RENDERINGS = ["report.html", "records.csv"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A ~2 s closed-loop run through the CLI against a reference server that wants a key."""
    directory = tmp_path_factory.mktemp("load") / "run"
    with pytest.MonkeyPatch.context() as mp, spawn_server(ttft_ms=5, itl_ms=1, api_key=SECRET) as url:
        mp.setenv(KEY_ENV, SECRET)  # run_load passes the environment on to the generator
        proc = run_load(["--target", url, "--api-key-env", KEY_ENV, "--users", "2", "--duration", "2",
                         "--warmup", "0.5", *QUICK], directory)
    assert proc.returncode == 0, proc.stderr[-2000:]
    yield directory


@pytest.fixture
def copy(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def _summary(directory: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((directory / "summary.json").read_text(encoding="utf-8"))
    return doc


def test_renderings_recreated(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_recreated(capsys, copy, RENDERINGS)
    assert_no_secret(copy)


def test_records_csv_agrees_with_the_summary(run_dir: Path) -> None:
    doc = _summary(run_dir)
    header, *rows = csv_rows(run_dir / "records.csv")
    lines = (run_dir / "records.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(rows) == doc["run"]["records"] == len(lines) > 0
    col = {name: i for i, name in enumerate(header)}
    assert [r[col["request_id"]] for r in rows] == [json.loads(line)["request_id"] for line in lines]
    # The rows the summary counted: the same number, the same TTFT percentiles.
    counted = [r for r in rows if r[col["in_window"]] == "true"]
    assert len(counted) == doc["summary"]["requests"]["total"] < len(rows)  # the warm-up is out
    ttfts = [float(r[col["ttft_ms"]]) for r in counted if r[col["ok"]] == "true"]
    for q in (50, 95):
        assert percentile(ttfts, q) == pytest.approx(doc["summary"]["latency_ms"]["ttft_ms"][f"p{q}"], abs=1e-9)
    assert {r[col["output_tokens_source"]] for r in rows} <= {"usage", "events", "estimate", ""}
    sent = [float(r[col["sent_ms"]]) for r in rows]
    assert sent == sorted(sent) and 0 <= sent[0] < sent[-1] < 1000 * doc["run"]["measured_s"]


def test_out_dir_still_reads_the_records(copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert report(capsys, str(copy), "--out", str(out), "--format", "html")[0] == 0
    assert (out / "report.html").read_bytes() == (copy / "report.html").read_bytes()
    assert "records.jsonl not found" not in (out / "report.html").read_text(encoding="utf-8")


def test_missing_or_broken_records(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = copy / "records.jsonl"
    records.write_text(records.read_text(encoding="utf-8") + "{not json\n", encoding="utf-8")
    code, _, err = report(capsys, str(copy))
    assert code == 2 and len(err.splitlines()) == 1 and "records.jsonl" in err
    records.unlink()
    code, _, err = report(capsys, str(copy), "--format", "csv")
    assert code == 2 and len(err.splitlines()) == 1 and "records.jsonl not found" in err
    # By default the page alone is made (without the distributions), and the CSV's absence said.
    (copy / "report.html").unlink()
    code, out, err = report(capsys, str(copy))
    assert code == 0 and out == f"wrote {copy / 'report.html'}\n" and "no records.csv" in err
    assert "records.jsonl not found: distributions not drawn" in (copy / "report.html").read_text(encoding="utf-8")
